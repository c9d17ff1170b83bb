//! Where a push reads the image from (the daemon, or an image archive file), and what is known
//! of the image before any layer is read.

use std::io::Read;
use std::path::{Path, PathBuf};

use bollard::Docker;

use super::image_push::PushObserver;
use super::push_config::LayerSource;
use super::push_error::PushError;
use crate::docker::image_source::archive_file::{
    ArchiveFileError, host_platform, open_archive_file, summarize_archive,
};
use crate::docker::image_source::archive_layout::LayoutProblem;
use crate::docker::image_source::daemon_image::inspect_image;
use crate::docker::image_source::export_stream::open_export;
use crate::docker::image_source::layer_store::StoredImage;

/// Where the archive bytes come from; opened again for a second pass.
enum Origin {
    Daemon { docker: Docker, image: String },
    File(PathBuf),
}

/// An image to push, before it is read.
pub(crate) struct PushSource {
    origin: Origin,
    /// Layer diff ids in order.
    pub diff_ids: Vec<String>,
    /// `os/architecture`, to pick the image out of a multi-platform index.
    pub platform: String,
    /// The daemon's image id, which names the config in a classic export.
    pub image_id: Option<String>,
    /// About how many layer bytes the export holds, for progress.
    pub total_bytes: u64,
    /// The image in the daemon's layer store, read instead of the export when present.
    pub stored: Option<StoredImage>,
}

impl PushSource {
    /// An image in the daemon (by id or name), with its layer store when `layer_source` allows
    /// it and the store can serve it. Why the store cannot is said to `observer`, or is the
    /// error when the push block asked for the store alone.
    pub(crate) async fn daemon(
        docker: &Docker,
        image: &str,
        layer_source: LayerSource,
        observer: &dyn PushObserver,
    ) -> Result<Self, PushError> {
        let described =
            inspect_image(docker, image)
                .await
                .map_err(|source| PushError::Inspect {
                    image: image.to_string(),
                    source,
                })?;
        let stored = match layer_source {
            LayerSource::Export => None,
            mode => match described.find_in_layer_store(docker).await {
                Ok(stored) => Some(stored),
                Err(why) if mode == LayerSource::Auto => {
                    observer.on_progress(&format!(
                        "reading the daemon's export: its layer store is not readable here ({why})"
                    ));
                    None
                }
                Err(why) => {
                    return Err(PushError::Export {
                        image: image.to_string(),
                        reason: format!("layer_source is layer-store, but {why}"),
                    });
                }
            },
        };
        Ok(PushSource {
            origin: Origin::Daemon {
                docker: docker.clone(),
                image: image.to_string(),
            },
            diff_ids: described.diff_ids,
            platform: described.platform,
            image_id: described.id,
            total_bytes: described.size,
            stored,
        })
    }

    /// An image archive file, summarized from its metadata.
    pub(crate) async fn archive(path: &Path) -> Result<Self, PushError> {
        let platform = host_platform();
        let (scan_path, scan_platform) = (path.to_path_buf(), platform.clone());
        let summary =
            tokio::task::spawn_blocking(move || summarize_archive(&scan_path, &scan_platform))
                .await
                .map_err(|err| PushError::Export {
                    image: path.display().to_string(),
                    reason: format!("the archive reader stopped: {err}"),
                })?
                .map_err(|err| match err {
                    ArchiveFileError::Io { path, source } => PushError::LocalIo {
                        action: "read the image archive",
                        path,
                        source,
                    },
                    ArchiveFileError::Layout(problem) => PushError::Export {
                        image: path.display().to_string(),
                        reason: problem.0,
                    },
                })?;
        Ok(PushSource {
            origin: Origin::File(path.to_path_buf()),
            diff_ids: summary.diff_ids,
            platform,
            image_id: None,
            total_bytes: summary.size,
            stored: None,
        })
    }

    /// The image's name in messages.
    pub(crate) fn name(&self) -> String {
        match &self.origin {
            Origin::Daemon { image, .. } => image.clone(),
            Origin::File(path) => path.display().to_string(),
        }
    }

    /// A problem with what the image's metadata says, as the push reports it.
    pub(crate) fn layout_error(&self, problem: LayoutProblem) -> PushError {
        PushError::Export {
            image: self.name(),
            reason: problem.0,
        }
    }

    /// The export, asked for now so that the daemon prepares it while the registry is set up;
    /// none when the layer store is read instead (the daemon would write out the whole image
    /// for nothing).
    pub(crate) fn open_export_early(&self) -> Result<Option<Box<dyn Read + Send>>, PushError> {
        match self.stored {
            Some(_) => Ok(None),
            None => self.open_export().map(Some),
        }
    }

    /// A blocking reader over the whole archive (the daemon's export, or the file), for a
    /// reading pass. The daemon starts preparing the export at once.
    pub(crate) fn open_export(&self) -> Result<Box<dyn Read + Send>, PushError> {
        match &self.origin {
            Origin::Daemon { docker, image } => Ok(open_export(docker, image)),
            Origin::File(path) => open_archive_file(path).map_err(|source| PushError::LocalIo {
                action: "open the image archive",
                path: path.clone(),
                source,
            }),
        }
    }
}
