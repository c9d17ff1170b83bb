//! A reading pass over an image archive (the daemon's export, or an archive file) turned into
//! blobs: which layers are packed (hashed and compressed), which only hashed to prove they are
//! the ones the registry already has, which passed through as they are stored, and when the
//! pass may stop before the end of the archive.

use std::collections::{HashMap, HashSet};
use std::io::Read;
use std::path::Path;

use tokio_util::sync::CancellationToken;

use super::layer_packer::{self, PackedLayer, Packing};
use super::pass_result::{BlobSink, LayerOutcome, ScanError, ScanResult};
use super::push_config::Compression;
use crate::docker::image_source::archive_layout::{ArchiveMetadata, EntryRole};
use crate::docker::image_source::archive_scan::{
    LayerConsumer, LayerEntry, StoredCompression, read_archive,
};

/// What is known before reading.
#[derive(Debug, Default, Clone)]
pub(crate) struct ScanPlan {
    /// How to compress the layers shipit packs.
    pub packing: Packing,
    /// Diff ids the registry already holds in compressed form, with the uncompressed size seen
    /// on an earlier push when known.
    pub present: HashMap<String, Option<u64>>,
    /// Classic layout directory → diff id, learned on earlier pushes of related images.
    pub dir_hints: HashMap<String, String>,
    /// A second pass packs only these entries and skips everything else.
    pub only_entries: Option<HashSet<String>>,
    /// Stop reading once this is all in hand (see `EarlyStop`).
    pub stop_early: Option<EarlyStop>,
}

/// When the reader may stop before the end of the archive: the classic layout names the config
/// `<image id hex>.json`, and once it and every layer the registry lacks have been read, the
/// rest of the export holds only layers the registry already has, so reading on would only
/// cost time. The layer order then comes from the config, which is checked against the image id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct EarlyStop {
    /// `<hex>.json`, named after the image id the daemon reported.
    pub config_entry: String,
    /// Diff ids the registry lacks: each must have been packed.
    pub needed: HashSet<String>,
}

/// What to do with an uncompressed layer entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum LayerAction {
    /// Read past it.
    Skip,
    /// Hash it and expect this diff id (the registry has the layer).
    Verify { expected: String },
    /// Hash and compress it.
    Pack,
}

/// The only place that decides how an uncompressed layer entry is read. `claimed` holds the
/// diff ids already verified in this pass, so two entries are never predicted to be the same
/// layer.
pub(crate) fn decide_layer_action(
    role: &EntryRole,
    path: &str,
    size: u64,
    plan: &ScanPlan,
    claimed: &HashSet<String>,
) -> LayerAction {
    if let Some(only) = &plan.only_entries {
        return if only.contains(path) {
            LayerAction::Pack
        } else {
            LayerAction::Skip
        };
    }
    let available =
        |diff_id: &String| plan.present.contains_key(diff_id) && !claimed.contains(diff_id);
    match role {
        // OCI layout: an uncompressed blob is named by its diff id.
        EntryRole::Blob { digest } if available(digest) => LayerAction::Verify {
            expected: digest.clone(),
        },
        EntryRole::ClassicLayer { dir } => {
            if let Some(hint) = plan.dir_hints.get(dir).filter(|d| available(d)) {
                return LayerAction::Verify {
                    expected: hint.clone(),
                };
            }
            // Otherwise a size seen before for exactly one present layer is a good guess; the
            // hash settles it, and a wrong guess costs a second pass, never a wrong push.
            let mut same_size = plan
                .present
                .iter()
                .filter(|(diff_id, known)| **known == Some(size) && available(diff_id));
            match (same_size.next(), same_size.next()) {
                (Some((diff_id, _)), None) => LayerAction::Verify {
                    expected: diff_id.clone(),
                },
                _ => LayerAction::Pack,
            }
        }
        _ => LayerAction::Pack,
    }
}

/// Packs the layers of one archive pass as `plan` says, on the reading thread.
struct ExportPacker<'a> {
    plan: &'a ScanPlan,
    sink: &'a dyn BlobSink,
    spool_dir: &'a Path,
    on_bytes: &'a mut dyn FnMut(u64),
    cancel: &'a CancellationToken,
    /// Diff ids verified in this pass, so two entries are never predicted to be one layer.
    claimed: HashSet<String>,
    /// Diff ids packed in this pass.
    packed: HashSet<String>,
}

impl LayerConsumer for ExportPacker<'_> {
    type Outcome = LayerOutcome;
    type Error = ScanError;

    fn uncompressed(
        &mut self,
        entry: &LayerEntry<'_>,
        content: &mut dyn Read,
    ) -> Result<LayerOutcome, ScanError> {
        let path = entry.path;
        let action = decide_layer_action(entry.role, path, entry.size, self.plan, &self.claimed);
        let outcome = match action {
            LayerAction::Skip => LayerOutcome::Skipped,
            LayerAction::Verify { expected } => {
                let (diff_id, uncompressed_size) =
                    layer_packer::hash_layer(content, self.on_bytes, self.cancel)
                        .map_err(|err| ScanError::reading(path, err))?;
                if diff_id == expected {
                    self.claimed.insert(diff_id.clone());
                    LayerOutcome::Verified {
                        diff_id,
                        uncompressed_size,
                    }
                } else {
                    LayerOutcome::Mispredicted {
                        diff_id,
                        uncompressed_size,
                    }
                }
            }
            LayerAction::Pack => {
                let PackedLayer {
                    diff_id,
                    uncompressed_size,
                    blob,
                } = layer_packer::pack_layer(
                    content,
                    self.plan.packing,
                    self.spool_dir,
                    self.on_bytes,
                    self.cancel,
                )
                .map_err(|err| ScanError::reading(path, err))?;
                self.packed.insert(diff_id.clone());
                let outcome = LayerOutcome::Packed {
                    diff_id,
                    uncompressed_size,
                    digest: blob.digest.clone(),
                    size: blob.size,
                };
                self.sink.submit(blob)?;
                outcome
            }
        };
        Ok(outcome)
    }

    fn compressed(
        &mut self,
        entry: &LayerEntry<'_>,
        compression: StoredCompression,
        content: &mut dyn Read,
    ) -> Result<LayerOutcome, ScanError> {
        let compression = match compression {
            StoredCompression::Gzip => Compression::Gzip,
            StoredCompression::Zstd => Compression::Zstd,
        };
        if let Some(only) = &self.plan.only_entries
            && !only.contains(entry.path)
        {
            return Ok(LayerOutcome::Skipped);
        }
        // An OCI blob is named by its digest, so the registry can be asked before reading it.
        let named = match entry.role {
            EntryRole::Blob { digest } => Some(digest.clone()),
            _ => None,
        };
        if let Some(digest) = &named
            && self.sink.has_blob(digest)?
        {
            (self.on_bytes)(entry.size);
            return Ok(LayerOutcome::Stored {
                digest: digest.clone(),
                size: entry.size,
                compression,
            });
        }
        let blob = layer_packer::spool_blob(
            content,
            named.as_deref(),
            self.spool_dir,
            self.on_bytes,
            self.cancel,
        )
        .map_err(|err| ScanError::reading(entry.path, err))?;
        let outcome = LayerOutcome::Stored {
            digest: blob.digest.clone(),
            size: blob.size,
            compression,
        };
        self.sink.submit(blob)?;
        Ok(outcome)
    }

    fn has_enough(&self, metadata: &ArchiveMetadata) -> bool {
        self.plan.stop_early.as_ref().is_some_and(|stop| {
            metadata.files.contains_key(&stop.config_entry) && stop.needed.is_subset(&self.packed)
        })
    }
}

/// Reads one archive from `reader`, start to end (or to `plan.stop_early`), packing its layers
/// as `plan` says and handing the blobs to `sink`.
pub(crate) fn pack_export(
    reader: impl Read,
    plan: &ScanPlan,
    sink: &dyn BlobSink,
    spool_dir: &Path,
    on_bytes: &mut dyn FnMut(u64),
    cancel: &CancellationToken,
) -> Result<ScanResult, ScanError> {
    let mut packer = ExportPacker {
        plan,
        sink,
        spool_dir,
        on_bytes,
        cancel,
        claimed: HashSet::new(),
        packed: HashSet::new(),
    };
    let pass = read_archive(reader, &mut packer, cancel)?;
    Ok(ScanResult {
        metadata: pass.metadata,
        layers: pass.layers,
        stopped_early: pass.stopped_early,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;
    use std::sync::Mutex;

    use crate::docker::image_source::archive_fixtures::{
        classic_archive, gzip, layer_tar, oci_archive,
    };
    use crate::docker::image_source::archive_layout::read_source_image;
    use crate::docker::image_source::digest::{sha256_digest, sha256_hex};
    use crate::registry::layer_packer::SpooledBlob;
    use crate::registry::push_error::PushError;

    /// Collects submitted blobs and answers `has_blob` from a fixed set.
    #[derive(Default)]
    struct RecordingSink {
        present: HashSet<String>,
        submitted: Mutex<Vec<SpooledBlob>>,
        asked: Mutex<Vec<String>>,
    }

    impl BlobSink for RecordingSink {
        fn has_blob(&self, digest: &str) -> Result<bool, PushError> {
            self.asked.lock().unwrap().push(digest.to_string());
            Ok(self.present.contains(digest))
        }
        fn submit(&self, blob: SpooledBlob) -> Result<(), PushError> {
            self.submitted.lock().unwrap().push(blob);
            Ok(())
        }
    }

    fn scan(
        archive: &[u8],
        plan: &ScanPlan,
        sink: &RecordingSink,
    ) -> (ScanResult, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let result = pack_export(
            Cursor::new(archive),
            plan,
            sink,
            dir.path(),
            &mut |_| {},
            &CancellationToken::new(),
        )
        .unwrap();
        (result, dir)
    }

    #[test]
    fn classic_archive_packs_every_new_layer_once_and_maps_them() {
        let layers = vec![layer_tar(1, 300_000), layer_tar(2, 5_000), layer_tar(3, 0)];
        let (archive, config_digest) = classic_archive(&layers, true);
        let sink = RecordingSink::default();
        let (result, _dir) = scan(&archive, &ScanPlan::default(), &sink);

        let image = read_source_image(&result.metadata, "linux/amd64").unwrap();
        assert_eq!(image.config_digest, config_digest);
        assert_eq!(image.layers.len(), 4);
        assert_eq!(image.layers[3].entry, image.layers[0].entry);
        for layer in &image.layers {
            match &result.layers[&layer.entry] {
                LayerOutcome::Packed { diff_id, .. } => assert_eq!(diff_id, &layer.diff_id),
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(sink.submitted.lock().unwrap().len(), 3);
    }

    #[test]
    fn present_layers_are_verified_by_hash_not_packed() {
        let layers = vec![layer_tar(1, 300_000), layer_tar(2, 5_000)];
        let (archive, _) = classic_archive(&layers, false);
        let base = sha256_digest(&layers[0]);
        let plan = ScanPlan {
            present: HashMap::from([(base.clone(), Some(layers[0].len() as u64))]),
            ..ScanPlan::default()
        };
        let sink = RecordingSink::default();
        let (result, _dir) = scan(&archive, &plan, &sink);
        let outcomes: Vec<&LayerOutcome> = result.layers.values().collect();
        assert!(outcomes.contains(&&LayerOutcome::Verified {
            diff_id: base,
            uncompressed_size: layers[0].len() as u64
        }));
        assert_eq!(sink.submitted.lock().unwrap().len(), 1);
    }

    #[test]
    fn a_wrong_size_guess_is_caught_by_the_hash() {
        // Same size, other content: the size hint points at the wrong layer.
        let layers = [layer_tar(1, 4096), layer_tar(2, 4096)];
        let (archive, _) = classic_archive(&layers[1..], false);
        let plan = ScanPlan {
            present: HashMap::from([(sha256_digest(&layers[0]), Some(layers[0].len() as u64))]),
            ..ScanPlan::default()
        };
        let sink = RecordingSink::default();
        let (result, _dir) = scan(&archive, &plan, &sink);
        let outcome = result.layers.values().next().unwrap();
        assert_eq!(
            outcome,
            &LayerOutcome::Mispredicted {
                diff_id: sha256_digest(&layers[1]),
                uncompressed_size: layers[1].len() as u64
            }
        );
        assert!(sink.submitted.lock().unwrap().is_empty());
    }

    #[test]
    fn a_second_pass_packs_only_the_named_entries() {
        let layers = vec![layer_tar(1, 1000), layer_tar(2, 2000)];
        let (archive, _) = classic_archive(&layers, false);
        let sink = RecordingSink::default();
        let (first, _dir) = scan(&archive, &ScanPlan::default(), &sink);
        let wanted = first.layers.keys().next().unwrap().clone();
        let plan = ScanPlan {
            only_entries: Some(HashSet::from([wanted.clone()])),
            ..ScanPlan::default()
        };
        let sink = RecordingSink::default();
        let (second, _dir) = scan(&archive, &plan, &sink);
        assert!(matches!(
            second.layers[&wanted],
            LayerOutcome::Packed { .. }
        ));
        assert_eq!(
            second
                .layers
                .values()
                .filter(|o| **o == LayerOutcome::Skipped)
                .count(),
            1
        );
    }

    #[test]
    fn the_reader_stops_once_the_config_and_every_needed_layer_are_in() {
        let layers = vec![layer_tar(1, 3000), layer_tar(2, 2000), layer_tar(3, 1000)];
        let (archive, config_digest) = classic_archive(&layers, false);
        let config_entry = format!("{}.json", sha256_hex(&config_digest).unwrap());
        let needed_layer = sha256_digest(&layers[1]);
        let plan = ScanPlan {
            present: [&layers[0], &layers[2]]
                .iter()
                .map(|l| (sha256_digest(l), Some(l.len() as u64)))
                .collect(),
            stop_early: Some(EarlyStop {
                config_entry: config_entry.clone(),
                needed: HashSet::from([needed_layer.clone()]),
            }),
            ..ScanPlan::default()
        };
        let sink = RecordingSink::default();
        let (result, _dir) = scan(&archive, &plan, &sink);
        assert!(result.stopped_early);
        assert!(result.metadata.files.contains_key(&config_entry));
        assert!(!result.metadata.files.contains_key("manifest.json"));
        assert!(result.layers.values().any(
            |o| matches!(o, LayerOutcome::Packed { diff_id, .. } if *diff_id == needed_layer)
        ));
        // Without the needed layer in the archive, the reader reads to the end.
        let plan = ScanPlan {
            stop_early: Some(EarlyStop {
                config_entry,
                needed: HashSet::from(["sha256:elsewhere".to_string()]),
            }),
            ..ScanPlan::default()
        };
        let (result, _dir) = scan(&archive, &plan, &RecordingSink::default());
        assert!(!result.stopped_early);
        assert!(result.metadata.files.contains_key("manifest.json"));
    }

    #[test]
    fn decide_prefers_directory_hints_and_refuses_ambiguous_sizes() {
        let (a, b) = ("sha256:a".to_string(), "sha256:b".to_string());
        let plan = ScanPlan {
            present: HashMap::from([(a.clone(), Some(10)), (b.clone(), Some(10))]),
            dir_hints: HashMap::from([("dir1".to_string(), b.clone())]),
            ..ScanPlan::default()
        };
        let none = HashSet::new();
        let role = |dir: &str| EntryRole::ClassicLayer { dir: dir.into() };
        assert_eq!(
            decide_layer_action(&role("dir1"), "dir1/layer.tar", 10, &plan, &none),
            LayerAction::Verify {
                expected: b.clone()
            }
        );
        assert_eq!(
            decide_layer_action(&role("dir2"), "dir2/layer.tar", 10, &plan, &none),
            LayerAction::Pack
        );
        let claimed = HashSet::from([b.clone()]);
        assert_eq!(
            decide_layer_action(&role("dir2"), "dir2/layer.tar", 10, &plan, &claimed),
            LayerAction::Verify { expected: a }
        );
        assert_eq!(
            decide_layer_action(&role("dir1"), "dir1/layer.tar", 11, &plan, &claimed),
            LayerAction::Pack
        );
    }

    #[test]
    fn oci_layout_packs_plain_layers_and_passes_compressed_ones_through() {
        let plain = layer_tar(7, 50_000);
        let inner = layer_tar(8, 20_000);
        let gzipped = gzip(&inner);
        let (archive, gz_digest) = oci_archive(&plain, &gzipped, &sha256_digest(&inner));
        let sink = RecordingSink::default();
        let (result, _dir) = scan(&archive, &ScanPlan::default(), &sink);
        let image = read_source_image(&result.metadata, "linux/amd64").unwrap();
        assert_eq!(image.layers.len(), 2);
        assert!(matches!(
            &result.layers[&image.layers[0].entry],
            LayerOutcome::Packed { diff_id, .. } if *diff_id == sha256_digest(&plain)
        ));
        assert_eq!(
            result.layers[&image.layers[1].entry],
            LayerOutcome::Stored {
                digest: gz_digest.clone(),
                size: gzipped.len() as u64,
                compression: Compression::Gzip
            }
        );
        // The compressed blob is spooled byte for byte, not recompressed.
        let submitted = sink.submitted.lock().unwrap();
        let spooled = submitted.iter().find(|b| b.digest == gz_digest).unwrap();
        assert_eq!(std::fs::read(&spooled.path).unwrap(), gzipped);
    }

    #[test]
    fn compressed_blobs_the_registry_has_are_not_read() {
        let plain = layer_tar(7, 1000);
        let inner = layer_tar(9, 1000);
        let gzipped = gzip(&inner);
        let (archive, gz_digest) = oci_archive(&plain, &gzipped, &sha256_digest(&inner));
        let sink = RecordingSink {
            present: HashSet::from([gz_digest.clone()]),
            ..RecordingSink::default()
        };
        let plan = ScanPlan {
            present: HashMap::from([(sha256_digest(&plain), None)]),
            ..ScanPlan::default()
        };
        let (result, _dir) = scan(&archive, &plan, &sink);
        assert!(sink.submitted.lock().unwrap().is_empty());
        assert!(sink.asked.lock().unwrap().contains(&gz_digest));
        assert!(
            result
                .layers
                .values()
                .any(|o| matches!(o, LayerOutcome::Verified { .. }))
        );
    }
}
