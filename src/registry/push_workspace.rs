//! A push's place on disk, under the cache folder: the layer cache (what earlier pushes
//! learned about which layers the registry holds) and a spool folder for the blobs in flight,
//! removed with the push.

use std::path::Path;

use super::layer_assembly::AssembledLayer;
use super::layer_cache::LayerCache;
use super::pass_result::LayerOutcome;
use super::push_error::PushError;
use super::push_progress::Notify;
use crate::docker::image_source::archive_layout::{EntryRole, entry_role};

pub(crate) struct Workspace {
    pub cache: LayerCache,
    pub spool: tempfile::TempDir,
}

impl Workspace {
    /// Creates `cache_dir` when needed, loads the layer cache (a damaged one is said to
    /// `notify` and started afresh) and makes a spool folder in it.
    pub(crate) fn open(cache_dir: &Path, notify: &Notify) -> Result<Self, PushError> {
        std::fs::create_dir_all(cache_dir).map_err(|source| PushError::LocalIo {
            action: "create the cache directory",
            path: cache_dir.to_path_buf(),
            source,
        })?;
        let (cache, warning) = LayerCache::load(cache_dir);
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
        Ok(Workspace { cache, spool })
    }

    /// Remembers what this push put in `repository` of `registry` (each layer's blob, and
    /// which classic export directory held which layer), and saves the cache.
    pub(crate) fn remember(
        &mut self,
        registry: &str,
        repository: &str,
        layers: &[AssembledLayer],
        outcomes: impl IntoIterator<Item = (String, LayerOutcome)>,
        notify: &Notify,
    ) {
        for layer in layers {
            self.cache.record_layer(
                registry,
                repository,
                &layer.diff_id,
                layer.compression,
                &layer.descriptor.digest,
                layer.descriptor.size,
                layer.uncompressed_size,
            );
        }
        for (entry, outcome) in outcomes {
            if let EntryRole::ClassicLayer { dir } = entry_role(&entry) {
                match outcome {
                    LayerOutcome::Packed { diff_id, .. }
                    | LayerOutcome::Verified { diff_id, .. }
                    | LayerOutcome::Mispredicted { diff_id, .. } => {
                        self.cache.record_dir(&dir, &diff_id)
                    }
                    _ => {}
                }
            }
        }
        if let Err(err) = self.cache.save() {
            notify(format!("the layer cache was not saved: {err}"));
        }
    }
}
