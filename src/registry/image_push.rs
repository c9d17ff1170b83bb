//! The push itself: read → pack → upload → manifest → tags → verify, with layer reuse.
//!
//! Before reading anything, the layer cache says which of the image's layers the registry
//! should already hold, and a HEAD (or a cross-repository mount) confirms it. The other layers
//! are then read on a blocking thread, from the daemon's layer store when it is readable here
//! (`layer_store`, only those layers) or else from the export (`archive_reader`, read once,
//! front to back), compressed on every core, and each finished blob is handed to up to four
//! concurrent uploads while reading goes on. A layer store that fails part way hands over to
//! the export. When a guess about which classic-layout entry of the export is which layer turns
//! out wrong, a second export pass packs just those entries. Only then are the config and the manifest pushed, every tag pointed
//! at the manifest, and the manifest fetched back to check its digest.

use std::collections::{HashMap, HashSet};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bollard::Docker;
use futures::{StreamExt as _, TryStreamExt as _};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::archive_reader::{
    BlobSink, EarlyStop, LayerOutcome, ScanError, ScanPlan, ScanResult, scan_archive,
};
use super::ecr_repository::{existing_tags, immutable_tag_plan, wait_for_scan};
use super::image_layout::{
    ArchiveMetadata, BlobDescriptor, ContentKind, EntryRole, LayoutProblem, MAX_METADATA_BYTES,
    SourceImage, build_manifest, config_media_type, entry_role, layer_media_type,
    manifest_media_type, normalize_entry_path, read_source_image, sha256_digest, sniff_content,
    source_image_from_config,
};
use super::layer_cache::{CachedLayer, LayerCache};
use super::layer_packer::{Packing, SpooledBlob};
use super::layer_store::{
    DaemonStorage, StoredImage, Unavailable, choose_store, find_image, layers_to_read,
    pack_stored_layers, store_from_graph_driver,
};
use super::push_config::{Compression, LayerSource, ManifestFormat, PushConfig};
use super::push_error::PushError;
use super::push_progress::{Notify, PushProgress, human_size, short};
use super::push_target::{RepositorySettings, open_target};
use super::registry_session::RegistrySession;

/// Blobs uploaded at once. Four keeps a fast link busy without opening a burst of
/// connections that rate-limited registries answer with 429.
const UPLOAD_CONCURRENCY: usize = 4;
/// Concurrent HEAD checks of cached layers before the export.
const CHECK_CONCURRENCY: usize = 8;
/// Spool files waiting for an upload slot; bounds the disk the spool can take.
const PENDING_BLOBS: usize = 2;
/// Chunks of the daemon's export buffered ahead of the reader (each up to a few hundred KB).
const EXPORT_CHUNKS_AHEAD: usize = 16;

/// Hears about a push while it runs.
pub trait PushObserver: Send + Sync {
    /// A line worth showing: a layer uploaded, a retry, a repository created.
    fn on_progress(&self, message: &str);
    /// Bytes of the image's layers read so far, of about `total`.
    fn on_bytes(&self, done: u64, total: u64);
}

/// What a push produced, for the journal and the deploy stages.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PushedImage {
    /// The registry host pushed to.
    pub registry: String,
    pub repository: String,
    /// Digest of the manifest.
    pub digest: String,
    /// Bytes stored in the registry: manifest, config and compressed layers.
    pub size: u64,
    /// `host/repository@digest`, then `host/repository:tag` for every tag.
    pub refs: Vec<String>,
}

/// Pushes an image from the Docker daemon (by id or name) to the registry `cfg` names.
/// `cache_dir` keeps the layer cache and, while the push runs, its spool files.
pub async fn push_image(
    docker: &Docker,
    image: &str,
    cfg: &PushConfig,
    cache_dir: &Path,
    observer: &dyn PushObserver,
    cancel: CancellationToken,
) -> Result<PushedImage, PushError> {
    cfg.validate()?;
    let inspect = docker
        .inspect_image(image)
        .await
        .map_err(|source| PushError::Inspect {
            image: image.to_string(),
            source,
        })?;
    let diff_ids = inspect
        .root_fs
        .and_then(|root| root.layers)
        .unwrap_or_default();
    let platform = format!(
        "{}/{}",
        inspect.os.unwrap_or_else(|| "linux".into()),
        inspect.architecture.unwrap_or_else(|| "amd64".into())
    );
    let stored = match cfg.layer_source {
        LayerSource::Export => None,
        mode => match find_in_layer_store(
            docker,
            inspect.id.as_deref(),
            inspect.graph_driver.as_ref(),
            &diff_ids,
        )
        .await
        {
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
    let source = ArchiveSource::Daemon {
        docker: docker.clone(),
        image: image.to_string(),
    };
    let hints = SourceHints {
        diff_ids,
        platform,
        image_id: inspect.id,
        total_bytes: inspect.size.unwrap_or(0).max(0) as u64,
        stored,
    };
    push_from(source, hints, cfg, cache_dir, observer, cancel).await
}

/// The image in the daemon's layer store, when the store is on this machine and readable.
async fn find_in_layer_store(
    docker: &Docker,
    image_id: Option<&str>,
    graph_driver: Option<&bollard::models::DriverData>,
    diff_ids: &[String],
) -> Result<StoredImage, Unavailable> {
    let image_id = image_id
        .ok_or_else(|| Unavailable("the daemon reported no image id".into()))?
        .to_string();
    let from_image = graph_driver.and_then(|graph| {
        store_from_graph_driver(&graph.name, graph.data.get("UpperDir").map(String::as_str))
    });
    let (root, driver) = match from_image {
        Some(found) => found,
        None => {
            let info = docker
                .info()
                .await
                .map_err(|err| Unavailable(format!("docker info failed: {err}")))?;
            choose_store(&DaemonStorage {
                root_dir: info.docker_root_dir,
                driver: info.driver,
                driver_status: info.driver_status.unwrap_or_default(),
            })?
        }
    };
    let diff_ids = diff_ids.to_vec();
    tokio::task::spawn_blocking(move || find_image(&root, driver, &image_id, &diff_ids))
        .await
        .map_err(|err| Unavailable(format!("the layer store lookup stopped: {err}")))?
}

/// Pushes an image archive file: the output of `docker save`, or an OCI image layout archive
/// (`skopeo copy … oci-archive:FILE`, `docker save` of Docker 25+).
pub async fn push_archive(
    archive: &Path,
    cfg: &PushConfig,
    cache_dir: &Path,
    observer: &dyn PushObserver,
    cancel: CancellationToken,
) -> Result<PushedImage, PushError> {
    cfg.validate()?;
    let path = archive.to_path_buf();
    let platform = current_platform();
    let scan_path = path.clone();
    let platform_for_scan = platform.clone();
    let (diff_ids, total) = tokio::task::spawn_blocking(move || {
        let metadata = read_archive_metadata(&scan_path)?;
        let image = read_source_image(&metadata, &platform_for_scan).map_err(|problem| {
            PushError::Export {
                image: scan_path.display().to_string(),
                reason: problem.0,
            }
        })?;
        let total = std::fs::metadata(&scan_path).map(|m| m.len()).unwrap_or(0);
        Ok::<_, PushError>((
            image
                .layers
                .into_iter()
                .map(|l| l.diff_id)
                .collect::<Vec<_>>(),
            total,
        ))
    })
    .await
    .map_err(|err| PushError::Export {
        image: path.display().to_string(),
        reason: format!("the archive reader stopped: {err}"),
    })??;
    let source = ArchiveSource::File(path);
    let hints = SourceHints {
        diff_ids,
        platform,
        image_id: None,
        total_bytes: total,
        stored: None,
    };
    push_from(source, hints, cfg, cache_dir, observer, cancel).await
}

/// Whether the registry `cfg` names still holds the manifest `digest` (to skip a rerun's push).
pub async fn manifest_exists(cfg: &PushConfig, digest: &str) -> Result<bool, PushError> {
    cfg.validate()?;
    let cancel = CancellationToken::new();
    let notify: Notify = Arc::new(|_| {});
    let target = open_target(cfg, &cancel, notify, RepositorySettings::Leave).await?;
    target.session.manifest_exists(digest).await
}

fn current_platform() -> String {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        other => other,
    };
    format!("linux/{arch}")
}

/// Where the archive bytes come from; opened again for a second pass.
enum ArchiveSource {
    Daemon { docker: Docker, image: String },
    File(PathBuf),
}

impl ArchiveSource {
    fn name(&self) -> String {
        match self {
            ArchiveSource::Daemon { image, .. } => image.clone(),
            ArchiveSource::File(path) => path.display().to_string(),
        }
    }

    /// A blocking reader over the archive, for the reader thread. The daemon is asked for the
    /// export at once, not at the first read: it writes the whole image out before it sends a
    /// byte (about a second per 100 MB), and the registry can be connected to meanwhile.
    /// Dropping the reader ends the request.
    fn open(&self) -> Result<Box<dyn Read + Send>, PushError> {
        match self {
            ArchiveSource::Daemon { docker, image } => {
                let (chunks, mut received) = mpsc::channel(EXPORT_CHUNKS_AHEAD);
                let mut export = docker.export_image(image);
                tokio::spawn(async move {
                    loop {
                        let item = tokio::select! {
                            item = export.next() => item,
                            // The reader is gone (done, stopped early, failed): stop the export.
                            () = chunks.closed() => break,
                        };
                        let Some(item) = item else { break };
                        let item = item.map_err(|err| {
                            std::io::Error::other(DaemonStreamError(err.to_string()))
                        });
                        let failed = item.is_err();
                        if chunks.send(item).await.is_err() || failed {
                            break;
                        }
                    }
                });
                let stream = futures::stream::poll_fn(move |cx| received.poll_recv(cx));
                let reader = tokio_util::io::StreamReader::new(stream);
                Ok(Box::new(tokio_util::io::SyncIoBridge::new(reader)))
            }
            ArchiveSource::File(path) => {
                let file = std::fs::File::open(path).map_err(|source| PushError::LocalIo {
                    action: "open the image archive",
                    path: path.clone(),
                    source,
                })?;
                Ok(Box::new(std::io::BufReader::with_capacity(
                    256 * 1024,
                    file,
                )))
            }
        }
    }
}

/// The daemon's export stream broke; the text is bollard's.
#[derive(Debug, thiserror::Error)]
#[error("the Docker daemon's export stream failed: {0}")]
struct DaemonStreamError(String);

/// Reads only the metadata of an archive file, seeking past layer content.
fn read_archive_metadata(path: &Path) -> Result<ArchiveMetadata, PushError> {
    let io_error = |source: std::io::Error| PushError::LocalIo {
        action: "read the image archive",
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::File::open(path).map_err(io_error)?;
    let mut archive = tar::Archive::new(file);
    let mut metadata = ArchiveMetadata::default();
    for entry in archive.entries_with_seek().map_err(io_error)? {
        let mut entry = entry.map_err(io_error)?;
        let entry_path = normalize_entry_path(&String::from_utf8_lossy(&entry.path_bytes()));
        let entry_type = entry.header().entry_type();
        if entry_type.is_symlink() || entry_type.is_hard_link() {
            if let Some(target) = entry.link_name_bytes() {
                let target = String::from_utf8_lossy(&target).into_owned();
                let resolved = if entry_type.is_symlink() {
                    super::image_layout::resolve_link(&entry_path, &target)
                } else {
                    normalize_entry_path(&target)
                };
                metadata.links.insert(entry_path, resolved);
            }
            continue;
        }
        let size = entry.header().size().map_err(io_error)?;
        if size > MAX_METADATA_BYTES {
            continue;
        }
        let keep = match entry_role(&entry_path) {
            EntryRole::Metadata => true,
            EntryRole::Blob { .. } => {
                let mut head = [0u8; 64];
                let n = entry.read(&mut head).map_err(io_error)?;
                if sniff_content(&head[..n]) == ContentKind::Json {
                    let mut bytes = head[..n].to_vec();
                    entry.read_to_end(&mut bytes).map_err(io_error)?;
                    metadata.files.insert(entry_path.clone(), bytes);
                }
                false
            }
            _ => false,
        };
        if keep {
            let mut bytes = Vec::with_capacity(size as usize);
            entry.read_to_end(&mut bytes).map_err(io_error)?;
            metadata.files.insert(entry_path, bytes);
        }
    }
    Ok(metadata)
}

/// Hands blobs from the reader thread to the uploads, and answers its HEAD questions.
struct UploadSink {
    handle: tokio::runtime::Handle,
    session: Arc<RegistrySession>,
    blobs: mpsc::Sender<SpooledBlob>,
}

impl BlobSink for UploadSink {
    fn has_blob(&self, digest: &str) -> Result<bool, PushError> {
        self.handle.block_on(self.session.blob_exists(digest))
    }

    fn submit(&self, blob: SpooledBlob) -> Result<(), PushError> {
        self.blobs.blocking_send(blob).map_err(|returned| {
            let _ = std::fs::remove_file(&returned.0.path);
            // The uploads stopped; their own error is the one reported.
            PushError::Cancelled {
                registry: self.session.host.clone(),
                repository: self.session.repository.clone(),
            }
        })
    }
}

/// What happened to a blob handed to the uploads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BlobFate {
    AlreadyThere,
    Mounted,
    Uploaded,
}

async fn upload_one(
    session: &RegistrySession,
    blob: &SpooledBlob,
    mount_from: &[String],
) -> Result<BlobFate, PushError> {
    if session.blob_exists(&blob.digest).await? {
        return Ok(BlobFate::AlreadyThere);
    }
    for repository in mount_from.iter().take(3) {
        if session.mount_blob(&blob.digest, repository).await {
            return Ok(BlobFate::Mounted);
        }
    }
    session.upload_blob(blob).await?;
    Ok(BlobFate::Uploaded)
}

/// Runs the uploads for everything the reader submits, `UPLOAD_CONCURRENCY` at a time.
async fn run_uploads(
    session: Arc<RegistrySession>,
    mut blobs: mpsc::Receiver<SpooledBlob>,
    mount_sources: Arc<HashMap<String, Vec<String>>>,
    notify: Notify,
) -> Result<(), PushError> {
    let incoming = futures::stream::poll_fn(move |cx| blobs.poll_recv(cx));
    incoming
        .map(|blob| {
            let session = session.clone();
            let mount_sources = mount_sources.clone();
            let notify = notify.clone();
            async move {
                let mount_from = mount_sources.get(&blob.digest).cloned().unwrap_or_default();
                let fate = upload_one(&session, &blob, &mount_from).await;
                let _ = std::fs::remove_file(&blob.path);
                let fate = fate?;
                notify(match fate {
                    BlobFate::AlreadyThere => {
                        format!("blob {} already in the registry", short(&blob.digest))
                    }
                    BlobFate::Mounted => format!(
                        "blob {} mounted from another repository",
                        short(&blob.digest)
                    ),
                    BlobFate::Uploaded => format!(
                        "uploaded blob {} ({})",
                        short(&blob.digest),
                        human_size(blob.size)
                    ),
                });
                Ok::<_, PushError>(())
            }
        })
        .buffer_unordered(UPLOAD_CONCURRENCY)
        .try_collect::<Vec<()>>()
        .await
        .map(|_| ())
}

/// A layer as it goes into the manifest, with what the cache should remember about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AssembledLayer {
    pub descriptor: BlobDescriptor,
    pub diff_id: String,
    pub compression: Compression,
    pub uncompressed_size: Option<u64>,
}

/// The manifest's layers, or the entries a second pass must pack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Assembly {
    Complete(Vec<AssembledLayer>),
    NeedsPass(HashSet<String>),
}

/// Matches what the passes produced against the layers the image declares. Pure: the only
/// place that decides whether the push has every layer it needs.
pub(crate) fn assemble_layers(
    image: &SourceImage,
    outcomes: &HashMap<String, LayerOutcome>,
    present: &HashMap<String, CachedLayer>,
    format: ManifestFormat,
    compression: Compression,
) -> Result<Assembly, LayoutProblem> {
    let mut layers = Vec::with_capacity(image.layers.len());
    let mut missing = HashSet::new();
    let check_diff = |actual: &str, expected: &str, entry: &str| {
        if actual == expected {
            Ok(())
        } else {
            Err(LayoutProblem(format!(
                "layer {entry} hashes to {actual} but the image config says {expected}"
            )))
        }
    };
    let from_cache =
        |cached: &CachedLayer, diff_id: &str| -> Result<AssembledLayer, LayoutProblem> {
            Ok(AssembledLayer {
                descriptor: BlobDescriptor {
                    media_type: layer_media_type(format, cached.compression)?.to_string(),
                    digest: cached.digest.clone(),
                    size: cached.size,
                },
                diff_id: diff_id.to_string(),
                compression: cached.compression,
                uncompressed_size: cached.uncompressed_size,
            })
        };
    for (index, layer) in image.layers.iter().enumerate() {
        let entry = &layer.entry;
        let outcome = outcomes.get(entry).ok_or_else(|| {
            LayoutProblem(format!(
                "layer {} ({entry}) is not in the archive",
                index + 1
            ))
        })?;
        match outcome {
            LayerOutcome::Packed {
                diff_id,
                uncompressed_size,
                digest,
                size,
            } => {
                check_diff(diff_id, &layer.diff_id, entry)?;
                layers.push(AssembledLayer {
                    descriptor: BlobDescriptor {
                        media_type: layer_media_type(format, compression)?.to_string(),
                        digest: digest.clone(),
                        size: *size,
                    },
                    diff_id: diff_id.clone(),
                    compression,
                    uncompressed_size: Some(*uncompressed_size),
                });
            }
            LayerOutcome::Verified { diff_id, .. } => {
                check_diff(diff_id, &layer.diff_id, entry)?;
                let cached = present.get(diff_id).ok_or_else(|| {
                    LayoutProblem(format!("layer {diff_id} was verified but is not known"))
                })?;
                layers.push(from_cache(cached, diff_id)?);
            }
            LayerOutcome::Mispredicted { diff_id, .. } => {
                check_diff(diff_id, &layer.diff_id, entry)?;
                match present.get(diff_id) {
                    Some(cached) => layers.push(from_cache(cached, diff_id)?),
                    None => {
                        missing.insert(entry.clone());
                    }
                }
            }
            LayerOutcome::Stored {
                digest,
                size,
                compression: stored,
            } => {
                if let Some(expected) = &layer.stored_digest
                    && expected != digest
                {
                    return Err(LayoutProblem(format!(
                        "layer {entry} is {digest}, its manifest says {expected}"
                    )));
                }
                layers.push(AssembledLayer {
                    descriptor: BlobDescriptor {
                        media_type: layer_media_type(format, *stored)?.to_string(),
                        digest: digest.clone(),
                        size: *size,
                    },
                    diff_id: layer.diff_id.clone(),
                    compression: *stored,
                    uncompressed_size: None,
                });
            }
            LayerOutcome::Skipped => {
                missing.insert(entry.clone());
            }
        }
    }
    if missing.is_empty() {
        Ok(Assembly::Complete(layers))
    } else {
        Ok(Assembly::NeedsPass(missing))
    }
}

/// Which of the image's layers the registry already has, per the cache and a HEAD (or a mount
/// from a repository the cache saw the blob in).
async fn find_present_layers(
    session: &RegistrySession,
    cache: &LayerCache,
    diff_ids: &[String],
    compression: Compression,
) -> Result<HashMap<String, CachedLayer>, PushError> {
    let unique: HashSet<&String> = diff_ids.iter().collect();
    let candidates: Vec<(String, CachedLayer)> = unique
        .into_iter()
        .filter_map(|diff_id| {
            cache
                .layer(&session.host, compression, diff_id)
                .map(|c| (diff_id.clone(), c.clone()))
        })
        .collect();
    let checks = futures::stream::iter(candidates)
        .map(|(diff_id, cached)| async move {
            if session.blob_exists(&cached.digest).await? {
                return Ok::<_, PushError>(Some((diff_id, cached)));
            }
            for repository in cached.repositories.iter().take(3) {
                if session.mount_blob(&cached.digest, repository).await {
                    return Ok(Some((diff_id, cached)));
                }
            }
            Ok(None)
        })
        .buffer_unordered(CHECK_CONCURRENCY)
        .try_collect::<Vec<_>>()
        .await?;
    Ok(checks.into_iter().flatten().collect())
}

/// What is known of the image before its export is read.
struct SourceHints {
    /// Layer diff ids in order.
    diff_ids: Vec<String>,
    /// `os/architecture`, to pick the image out of a multi-platform index.
    platform: String,
    /// The daemon's image id, which names the config in a classic export.
    image_id: Option<String>,
    /// About how many layer bytes the export holds, for progress.
    total_bytes: u64,
    /// The image in the daemon's layer store, read instead of the export when present.
    stored: Option<StoredImage>,
}

async fn push_from(
    source: ArchiveSource,
    hints: SourceHints,
    cfg: &PushConfig,
    cache_dir: &Path,
    observer: &dyn PushObserver,
    cancel: CancellationToken,
) -> Result<PushedImage, PushError> {
    let push_progress = PushProgress::new(hints.total_bytes);
    let notify = push_progress.notify();
    let (progress, total) = (push_progress.read.clone(), push_progress.total.clone());
    let cancel = cancel.child_token();
    let image_name = source.name();
    let SourceHints {
        diff_ids,
        platform,
        image_id,
        total_bytes,
        stored,
    } = hints;

    let run = async {
        // The export first: the daemon prepares it while the registry is set up. Not when the
        // layer store is read instead: the daemon would write out the whole image for nothing.
        let mut first_reader = match stored {
            Some(_) => None,
            None => Some(source.open()?),
        };
        let target = open_target(cfg, &cancel, notify.clone(), RepositorySettings::Apply).await?;
        let session = target.session.clone();
        let registry = session.host.clone();
        let repository = cfg.repository.clone();

        std::fs::create_dir_all(cache_dir).map_err(|source| PushError::LocalIo {
            action: "create the cache directory",
            path: cache_dir.to_path_buf(),
            source,
        })?;
        let (mut cache, warning) = LayerCache::load(cache_dir);
        if let Some(warning) = warning {
            notify(warning);
        }
        let spool = tempfile::Builder::new()
            .prefix("push-spool-")
            .tempdir_in(cache_dir)
            .map_err(|source| PushError::LocalIo {
                action: "create a spool directory in",
                path: cache_dir.to_path_buf(),
                source,
            })?;

        let present = find_present_layers(&session, &cache, &diff_ids, cfg.compression).await?;
        if !present.is_empty() {
            notify(format!(
                "{} of {} layers already in {registry}",
                present.len(),
                diff_ids.iter().collect::<HashSet<_>>().len()
            ));
        }
        let plan = ScanPlan {
            packing: Packing {
                compression: cfg.compression,
                level: cfg.level(),
            },
            present: present
                .iter()
                .map(|(diff_id, cached)| (diff_id.clone(), cached.uncompressed_size))
                .collect(),
            dir_hints: cache
                .dir_hints()
                .map(|(dir, diff_id)| (dir.clone(), diff_id.clone()))
                .collect(),
            only_entries: None,
            stop_early: image_id
                .as_deref()
                .and_then(super::image_layout::sha256_hex)
                .map(|hex| EarlyStop {
                    config_entry: format!("{hex}.json"),
                    needed: diff_ids
                        .iter()
                        .filter(|d| !present.contains_key(*d))
                        .cloned()
                        .collect(),
                }),
        };
        // Blobs a cached layer of another repository may be mounted from.
        let mount_sources: HashMap<String, Vec<String>> = diff_ids
            .iter()
            .filter_map(|d| cache.layer(&registry, cfg.compression, d))
            .map(|c| (c.digest.clone(), c.repositories.clone()))
            .collect();
        let passes = Passes {
            source: &source,
            session: &session,
            spool_dir: spool.path(),
            mount_sources: Arc::new(mount_sources),
            notify: notify.clone(),
            progress: progress.clone(),
            cancel: &cancel,
        };

        let export_problem = |problem: LayoutProblem| PushError::Export {
            image: image_name.clone(),
            reason: problem.0,
        };

        // The layer store, when the daemon's is readable here: only the layers the registry
        // lacks are read. A store that cannot be read after all (a file gone, a layer that
        // does not hash to its diff id) leaves the export to do the job, unless the pipeline
        // asked for the store alone.
        let mut from_store = None;
        if let (Some(stored), Some(id)) = (&stored, image_id.as_deref()) {
            notify(format!(
                "reading {image_name} from the daemon's layer store in {}",
                stored.description
            ));
            let present_ids: HashSet<String> = present.keys().cloned().collect();
            // Progress counts what this pass reads, not the whole image.
            total.store(
                layers_to_read(stored, &present_ids)
                    .iter()
                    .map(|layer| layer.content_size)
                    .sum(),
                Ordering::Relaxed,
            );
            let packing = plan.packing;
            let to_read = stored.clone();
            let spool_dir = spool.path().to_path_buf();
            let pass = passes
                .run(move |sink, on_bytes, cancel| {
                    pack_stored_layers(
                        &to_read,
                        &present_ids,
                        packing,
                        sink,
                        &spool_dir,
                        on_bytes,
                        cancel,
                    )
                })
                .await;
            match pass {
                Ok(pass) => {
                    let image = source_image_from_config(stored.config.clone(), id)
                        .map_err(export_problem)?;
                    let mut outcomes = pass.layers;
                    add_present_layers(&mut outcomes, &present);
                    from_store = Some((image, outcomes));
                }
                Err(PushError::Export { reason, .. }) if cfg.layer_source == LayerSource::Auto => {
                    notify(format!(
                        "the layer store could not be read ({reason}); reading the daemon's \
                         export instead"
                    ));
                    total.store(total_bytes, Ordering::Relaxed);
                    progress.store(0, Ordering::Relaxed);
                }
                Err(err) => return Err(err),
            }
        }

        let (image, mut outcomes) = match from_store {
            Some(found) => found,
            None => {
                notify(format!("reading {image_name}"));
                let reader = match first_reader.take() {
                    Some(reader) => reader,
                    None => source.open()?,
                };
                let first = passes.export(reader, plan.clone()).await?;
                let mut outcomes = first.layers;
                let image = match (&plan.stop_early, first.stopped_early, image_id.as_deref()) {
                    (Some(stop), true, Some(id)) => {
                        // Read part way: the config orders the layers, each one packed in this
                        // pass or already in the registry.
                        let config = first
                            .metadata
                            .files
                            .get(&stop.config_entry)
                            .cloned()
                            .unwrap_or_default();
                        let image = source_image_from_config(config, id).map_err(export_problem)?;
                        let packed: Vec<LayerOutcome> = outcomes
                            .values()
                            .filter(|o| matches!(o, LayerOutcome::Packed { .. }))
                            .cloned()
                            .collect();
                        for outcome in packed {
                            if let LayerOutcome::Packed { diff_id, .. } = &outcome {
                                outcomes.insert(format!("diff:{diff_id}"), outcome.clone());
                            }
                        }
                        add_present_layers(&mut outcomes, &present);
                        image
                    }
                    _ => read_source_image(&first.metadata, &platform).map_err(export_problem)?,
                };
                (image, outcomes)
            }
        };
        let mut assembly =
            assemble_layers(&image, &outcomes, &present, cfg.format, cfg.compression)
                .map_err(export_problem)?;
        if let Assembly::NeedsPass(entries) = &assembly {
            notify(format!(
                "{} layer(s) were not the ones expected; reading the export again",
                entries.len()
            ));
            let second_plan = ScanPlan {
                only_entries: Some(entries.clone()),
                stop_early: None,
                ..plan
            };
            let second = passes.export(source.open()?, second_plan).await?;
            for (entry, outcome) in second.layers {
                if entries.contains(&entry) {
                    outcomes.insert(entry, outcome);
                }
            }
            assembly = assemble_layers(&image, &outcomes, &present, cfg.format, cfg.compression)
                .map_err(export_problem)?;
        }
        let layers = match assembly {
            Assembly::Complete(layers) => layers,
            Assembly::NeedsPass(entries) => {
                return Err(PushError::Export {
                    image: image_name.clone(),
                    reason: format!(
                        "{} layer(s) could not be read from the export: {}",
                        entries.len(),
                        entries.into_iter().collect::<Vec<_>>().join(", ")
                    ),
                });
            }
        };

        // The config, as exported: its digest is the image id.
        if !session.blob_exists(&image.config_digest).await? {
            session
                .upload_bytes(&image.config, &image.config_digest)
                .await?;
        }
        let config_descriptor = BlobDescriptor {
            media_type: config_media_type(cfg.format).to_string(),
            digest: image.config_digest.clone(),
            size: image.config.len() as u64,
        };
        let descriptors: Vec<BlobDescriptor> =
            layers.iter().map(|l| l.descriptor.clone()).collect();
        let manifest = build_manifest(cfg.format, &config_descriptor, &descriptors);
        let digest = sha256_digest(&manifest);
        let media_type = manifest_media_type(cfg.format);

        // Tags: on an immutable ECR repository, a tag already on this manifest is left alone
        // and one on another manifest is an error before anything is written.
        let mut tags_to_push: Vec<String> = cfg.tags.clone();
        if let Some((ecr, state)) = &target.ecr
            && state.immutable
            && !cfg.tags.is_empty()
        {
            let existing = existing_tags(ecr, &repository, &cfg.tags).await?;
            let (conflicts, done) = immutable_tag_plan(&existing, &cfg.tags, &digest);
            if let Some((tag, existing_digest)) = conflicts.into_iter().next() {
                return Err(PushError::ImmutableTag {
                    registry: registry.clone(),
                    repository: repository.clone(),
                    tag,
                    existing_digest,
                });
            }
            tags_to_push.retain(|tag| !done.contains(tag));
        }
        if cfg.tags.is_empty() {
            session.push_manifest(&manifest, media_type, None).await?;
        }
        for tag in &tags_to_push {
            session
                .push_manifest(&manifest, media_type, Some(tag))
                .await
                .map_err(|err| immutable_tag_error(err, &registry, &repository, tag))?;
        }
        notify(format!(
            "pushed manifest {}{}",
            short(&digest),
            if cfg.tags.is_empty() {
                String::new()
            } else {
                format!(" as {}", cfg.tags.join(", "))
            }
        ));

        // Read it back: the registry must serve exactly these bytes under this digest. A
        // push-only identity may not read; that skips the check rather than failing a push
        // that succeeded.
        match session.fetch_manifest(&digest).await {
            Ok(Some(stored)) if sha256_digest(&stored) == digest => {}
            Ok(Some(_)) => {
                return Err(PushError::Registry {
                    registry: registry.clone(),
                    repository: repository.clone(),
                    action: format!("verify manifest {digest}"),
                    reason: "the registry serves different bytes under the manifest's digest"
                        .into(),
                    attempts: 1,
                });
            }
            Ok(None) => {
                return Err(PushError::Registry {
                    registry: registry.clone(),
                    repository: repository.clone(),
                    action: format!("verify manifest {digest}"),
                    reason: "the registry accepted the manifest but does not serve it".into(),
                    attempts: 1,
                });
            }
            Err(PushError::Authentication { .. }) => notify(format!(
                "not allowed to read manifest {} back; skipped verifying it",
                short(&digest)
            )),
            Err(err) => return Err(err),
        }

        for layer in &layers {
            cache.record_layer(
                &registry,
                &repository,
                &layer.diff_id,
                layer.compression,
                &layer.descriptor.digest,
                layer.descriptor.size,
                layer.uncompressed_size,
            );
        }
        for (entry, outcome) in &outcomes {
            if let EntryRole::ClassicLayer { dir } = entry_role(entry) {
                match outcome {
                    LayerOutcome::Packed { diff_id, .. }
                    | LayerOutcome::Verified { diff_id, .. }
                    | LayerOutcome::Mispredicted { diff_id, .. } => cache.record_dir(&dir, diff_id),
                    _ => {}
                }
            }
        }
        if let Err(err) = cache.save() {
            notify(format!("the layer cache was not saved: {err}"));
        }

        if let (Some((ecr, _)), Some(gate)) = (
            &target.ecr,
            cfg.ecr.as_ref().and_then(|e| e.scan_gate.as_ref()),
        ) {
            let counts = wait_for_scan(
                ecr,
                &registry,
                &repository,
                &digest,
                gate,
                &cancel,
                &*notify,
            )
            .await?;
            let total: i32 = counts.values().sum();
            notify(format!(
                "scan gate passed ({total} findings below {})",
                gate.severity
            ));
        }

        let size = manifest.len() as u64
            + config_descriptor.size
            + layers.iter().map(|l| l.descriptor.size).sum::<u64>();
        let mut refs = vec![format!("{registry}/{repository}@{digest}")];
        refs.extend(
            cfg.tags
                .iter()
                .map(|tag| format!("{registry}/{repository}:{tag}")),
        );
        Ok(PushedImage {
            registry,
            repository,
            digest,
            size,
            refs,
        })
    };

    push_progress.drive(observer, run).await
}

fn immutable_tag_error(err: PushError, registry: &str, repository: &str, tag: &str) -> PushError {
    match &err {
        PushError::Registry { reason, .. }
            if reason.contains("TAG_INVALID")
                && reason.to_ascii_lowercase().contains("immutable") =>
        {
            PushError::ImmutableTag {
                registry: registry.to_string(),
                repository: repository.to_string(),
                tag: tag.to_string(),
                existing_digest: "another manifest".into(),
            }
        }
        _ => err,
    }
}

/// Layers already in the registry, as outcomes keyed by diff id like the packed ones.
fn add_present_layers(
    outcomes: &mut HashMap<String, LayerOutcome>,
    present: &HashMap<String, CachedLayer>,
) {
    for (diff_id, cached) in present {
        outcomes
            .entry(format!("diff:{diff_id}"))
            .or_insert_with(|| LayerOutcome::Verified {
                diff_id: diff_id.clone(),
                uncompressed_size: cached.uncompressed_size.unwrap_or(0),
            });
    }
}

/// What every reading pass of one push shares: where the blobs it packs go, and how progress
/// and failures are reported.
struct Passes<'a> {
    source: &'a ArchiveSource,
    session: &'a Arc<RegistrySession>,
    spool_dir: &'a Path,
    mount_sources: Arc<HashMap<String, Vec<String>>>,
    notify: Notify,
    progress: Arc<AtomicU64>,
    cancel: &'a CancellationToken,
}

impl Passes<'_> {
    /// One pass over the export archive (`reader`, opened from the source).
    async fn export(
        &self,
        reader: Box<dyn Read + Send>,
        plan: ScanPlan,
    ) -> Result<ScanResult, PushError> {
        let spool_dir = self.spool_dir.to_path_buf();
        self.run(move |sink, on_bytes, cancel| {
            scan_archive(reader, &plan, sink, &spool_dir, on_bytes, cancel)
        })
        .await
    }

    /// One reading pass (`read`, on a blocking thread: the export or the layer store) with the
    /// uploads of the blobs it hands over running beside it.
    async fn run<F>(&self, read: F) -> Result<ScanResult, PushError>
    where
        F: FnOnce(
                &dyn BlobSink,
                &mut dyn FnMut(u64),
                &CancellationToken,
            ) -> Result<ScanResult, ScanError>
            + Send
            + 'static,
    {
        let Passes {
            source,
            session,
            mount_sources,
            notify,
            progress,
            cancel,
            ..
        } = self;
        let pass_cancel = cancel.child_token();
        let (blob_tx, blob_rx) = mpsc::channel(PENDING_BLOBS);
        let sink = UploadSink {
            handle: tokio::runtime::Handle::current(),
            session: Arc::clone(session),
            blobs: blob_tx,
        };
        let reader_cancel = pass_cancel.clone();
        let reader_progress = progress.clone();
        let scan = tokio::task::spawn_blocking(move || {
            let mut on_bytes = |n: u64| {
                reader_progress.fetch_add(n, Ordering::Relaxed);
            };
            let result = read(&sink, &mut on_bytes, &reader_cancel);
            // Closing the channel lets the uploads finish.
            drop(sink);
            result
        });
        let uploads = run_uploads(
            Arc::clone(session),
            blob_rx,
            mount_sources.clone(),
            notify.clone(),
        );
        tokio::pin!(scan);
        tokio::pin!(uploads);
        let mut scan_result: Option<Result<ScanResult, ScanError>> = None;
        let mut upload_result: Option<Result<(), PushError>> = None;
        let (scan_result, upload_result) = loop {
            match (scan_result.take(), upload_result.take()) {
                (Some(scanned), Some(uploaded)) => break (scanned, uploaded),
                (scanned, uploaded) => {
                    scan_result = scanned;
                    upload_result = uploaded;
                }
            }
            tokio::select! {
                joined = &mut scan, if scan_result.is_none() => {
                    let result = joined.unwrap_or_else(|err| Err(ScanError::Io {
                        entry: None,
                        source: std::io::Error::other(format!("the archive reader stopped: {err}")),
                    }));
                    if result.is_err() {
                        pass_cancel.cancel();
                    }
                    scan_result = Some(result);
                }
                result = &mut uploads, if upload_result.is_none() => {
                    if result.is_err() {
                        pass_cancel.cancel();
                    }
                    upload_result = Some(result);
                }
            }
        };
        decide_pass_result(scan_result, upload_result, source, session)
    }
}

/// Which failure to report when a pass fails. An upload failure stops the reader (its blobs
/// have nowhere to go), so it is the cause; a cancelled upload is not.
fn decide_pass_result(
    scan_result: Result<ScanResult, ScanError>,
    upload_result: Result<(), PushError>,
    source: &ArchiveSource,
    session: &RegistrySession,
) -> Result<ScanResult, PushError> {
    match (scan_result, upload_result) {
        (Ok(scan), Ok(())) => Ok(scan),
        (_, Err(upload)) if !matches!(upload, PushError::Cancelled { .. }) => Err(upload),
        (Err(scan), _) => Err(scan_error(scan, source, session)),
        (Ok(_), Err(cancelled)) => Err(cancelled),
    }
}

fn scan_error(err: ScanError, source: &ArchiveSource, session: &RegistrySession) -> PushError {
    match err {
        ScanError::Sink(err) => err,
        ScanError::Cancelled => PushError::Cancelled {
            registry: session.host.clone(),
            repository: session.repository.clone(),
        },
        ScanError::Layout(problem) => PushError::Export {
            image: source.name(),
            reason: problem.0,
        },
        ScanError::Io { entry, source: io } => PushError::Export {
            image: source.name(),
            reason: match entry {
                Some(entry) => format!("reading {entry} failed: {io}"),
                None => format!("reading the archive failed: {io}"),
            },
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::image_layout::SourceLayer;

    fn image(layers: &[(&str, &str, Option<&str>)]) -> SourceImage {
        SourceImage {
            config: b"{}".to_vec(),
            config_digest: sha256_digest(b"{}"),
            layers: layers
                .iter()
                .map(|(entry, diff_id, stored)| SourceLayer {
                    entry: entry.to_string(),
                    diff_id: diff_id.to_string(),
                    stored_digest: stored.map(str::to_string),
                    stored_media_type: None,
                })
                .collect(),
        }
    }

    fn cached(digest: &str) -> CachedLayer {
        CachedLayer {
            digest: digest.into(),
            size: 5,
            compression: Compression::Gzip,
            uncompressed_size: Some(9),
            repositories: vec![],
            last_used: 0,
        }
    }

    fn assemble(
        image: &SourceImage,
        outcomes: &[(&str, LayerOutcome)],
        present: &[(&str, &str)],
    ) -> Result<Assembly, LayoutProblem> {
        let outcomes = outcomes
            .iter()
            .map(|(entry, outcome)| (entry.to_string(), outcome.clone()))
            .collect();
        let present = present
            .iter()
            .map(|(diff_id, digest)| (diff_id.to_string(), cached(digest)))
            .collect();
        assemble_layers(
            image,
            &outcomes,
            &present,
            ManifestFormat::Oci,
            Compression::Gzip,
        )
    }

    #[test]
    fn packed_verified_and_stored_layers_keep_their_order() {
        let image = image(&[
            ("a/layer.tar", "sha256:d1", None),
            ("b/layer.tar", "sha256:d2", None),
            ("blobs/sha256/c", "sha256:d3", Some("sha256:c3")),
        ]);
        let assembly = assemble(
            &image,
            &[
                (
                    "a/layer.tar",
                    LayerOutcome::Packed {
                        diff_id: "sha256:d1".into(),
                        uncompressed_size: 10,
                        digest: "sha256:c1".into(),
                        size: 4,
                    },
                ),
                (
                    "b/layer.tar",
                    LayerOutcome::Verified {
                        diff_id: "sha256:d2".into(),
                        uncompressed_size: 9,
                    },
                ),
                (
                    "blobs/sha256/c",
                    LayerOutcome::Stored {
                        digest: "sha256:c3".into(),
                        size: 7,
                        compression: Compression::Zstd,
                    },
                ),
            ],
            &[("sha256:d2", "sha256:c2")],
        )
        .unwrap();
        let Assembly::Complete(layers) = assembly else {
            panic!("expected a complete assembly");
        };
        let digests: Vec<&str> = layers
            .iter()
            .map(|l| l.descriptor.digest.as_str())
            .collect();
        assert_eq!(digests, vec!["sha256:c1", "sha256:c2", "sha256:c3"]);
        assert_eq!(
            layers[2].descriptor.media_type,
            "application/vnd.oci.image.layer.v1.tar+zstd"
        );
    }

    #[test]
    fn a_layer_that_hashes_to_another_diff_id_is_refused() {
        let image = image(&[("a/layer.tar", "sha256:d1", None)]);
        let err = assemble(
            &image,
            &[(
                "a/layer.tar",
                LayerOutcome::Packed {
                    diff_id: "sha256:other".into(),
                    uncompressed_size: 1,
                    digest: "sha256:c".into(),
                    size: 1,
                },
            )],
            &[],
        )
        .unwrap_err();
        assert!(err.0.contains("the image config says sha256:d1"), "{err}");
    }

    #[test]
    fn a_wrong_guess_uses_the_cache_when_it_can_and_asks_for_a_pass_otherwise() {
        let image = image(&[
            ("a/layer.tar", "sha256:d1", None),
            ("b/layer.tar", "sha256:d2", None),
        ]);
        let wrong = |diff: &str| LayerOutcome::Mispredicted {
            diff_id: diff.into(),
            uncompressed_size: 1,
        };
        let assembly = assemble(
            &image,
            &[
                ("a/layer.tar", wrong("sha256:d1")),
                ("b/layer.tar", wrong("sha256:d2")),
            ],
            &[("sha256:d1", "sha256:c1")],
        )
        .unwrap();
        assert_eq!(
            assembly,
            Assembly::NeedsPass(HashSet::from(["b/layer.tar".to_string()]))
        );
    }

    #[test]
    fn missing_entries_and_mismatched_stored_digests_are_refused() {
        let image1 = image(&[("a/layer.tar", "sha256:d1", None)]);
        assert!(
            assemble(&image1, &[], &[])
                .unwrap_err()
                .0
                .contains("not in the archive")
        );
        let image2 = image(&[("blobs/sha256/c", "sha256:d1", Some("sha256:expected"))]);
        let err = assemble(
            &image2,
            &[(
                "blobs/sha256/c",
                LayerOutcome::Stored {
                    digest: "sha256:actual".into(),
                    size: 1,
                    compression: Compression::Gzip,
                },
            )],
            &[],
        )
        .unwrap_err();
        assert!(err.0.contains("its manifest says sha256:expected"), "{err}");
    }
}
