//! One streaming pass over an image archive (the body of `docker save`, or an OCI archive).
//!
//! The archive is a tar read front to back exactly once: small metadata files are kept in
//! memory, each uncompressed layer is hashed and compressed on the fly into a spool file that is
//! handed to the uploader while the next layer is read, already compressed blobs are spooled as
//! they are, and layers the registry already has are only hashed to prove they are the ones
//! expected. The order of entries is not relied on: `docker save` (Docker ≤ 24) writes layer
//! directories in the order of their random-looking ids, not in layer order.

use std::collections::{HashMap, HashSet};
use std::io::{self, Cursor, Read};
use std::path::Path;

use tokio_util::sync::CancellationToken;

use super::image_layout::{
    ArchiveMetadata, ContentKind, EntryRole, LayoutProblem, MAX_METADATA_BYTES, entry_role,
    normalize_entry_path, resolve_link, sniff_content,
};
use super::layer_packer::{self, PackedLayer, Packing, SpooledBlob, is_cancelled};
use super::push_config::Compression;
use super::push_error::PushError;

/// Where the reader sends blobs, and how it asks what the registry has. Both calls block the
/// reading thread, which is what keeps spool files from piling up when uploads are slower than
/// compression.
pub(crate) trait BlobSink: Sync {
    /// Whether the target repository already holds this blob.
    fn has_blob(&self, digest: &str) -> Result<bool, PushError>;
    /// Takes ownership of a spool file to upload (and delete).
    fn submit(&self, blob: SpooledBlob) -> Result<(), PushError>;
}

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

/// What became of one layer entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum LayerOutcome {
    /// Compressed by shipit and handed to the uploader.
    Packed {
        diff_id: String,
        uncompressed_size: u64,
        digest: String,
        size: u64,
    },
    /// Predicted to be a layer the registry has, and the hash proved it.
    Verified {
        diff_id: String,
        uncompressed_size: u64,
    },
    /// Predicted to be a layer the registry has, but it is another one: it needs a second
    /// pass to be packed.
    Mispredicted {
        diff_id: String,
        uncompressed_size: u64,
    },
    /// Stored compressed in the archive and pushed as it is (or already in the registry).
    Stored {
        digest: String,
        size: u64,
        compression: Compression,
    },
    /// Not read: a second pass needs only other entries.
    Skipped,
}

/// Everything one pass learned.
#[derive(Debug, Default)]
pub(crate) struct ScanResult {
    pub metadata: ArchiveMetadata,
    pub layers: HashMap<String, LayerOutcome>,
    /// The reader stopped before the end (`ScanPlan::stop_early`).
    pub stopped_early: bool,
}

/// Why a pass stopped.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ScanError {
    #[error("failed to read {}: {source}", entry.as_deref().unwrap_or("the archive"))]
    Io {
        entry: Option<String>,
        #[source]
        source: io::Error,
    },
    #[error("{0}")]
    Layout(#[from] LayoutProblem),
    #[error("the push was cancelled")]
    Cancelled,
    #[error(transparent)]
    Sink(#[from] PushError),
}

fn io_error(entry: &str, source: io::Error) -> ScanError {
    if is_cancelled(&source) {
        ScanError::Cancelled
    } else {
        ScanError::Io {
            entry: Some(entry.to_string()),
            source,
        }
    }
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

/// Reads the first bytes of an entry so it can be sniffed, then gives them back in front of
/// the rest.
fn peek(source: &mut impl Read, len: usize) -> io::Result<Vec<u8>> {
    let mut head = Vec::with_capacity(len);
    source.by_ref().take(len as u64).read_to_end(&mut head)?;
    Ok(head)
}

/// Reads one archive from `reader`, start to end.
pub(crate) fn scan_archive(
    reader: impl Read,
    plan: &ScanPlan,
    sink: &dyn BlobSink,
    spool_dir: &Path,
    on_bytes: &mut dyn FnMut(u64),
    cancel: &CancellationToken,
) -> Result<ScanResult, ScanError> {
    let mut archive = tar::Archive::new(reader);
    let mut result = ScanResult::default();
    let mut claimed: HashSet<String> = HashSet::new();
    let mut packed: HashSet<String> = HashSet::new();
    let entries = archive.entries().map_err(|source| ScanError::Io {
        entry: None,
        source,
    })?;
    for entry in entries {
        if cancel.is_cancelled() {
            return Err(ScanError::Cancelled);
        }
        let mut entry = entry.map_err(|source| ScanError::Io {
            entry: None,
            source,
        })?;
        let path = normalize_entry_path(&String::from_utf8_lossy(&entry.path_bytes()));
        let entry_type = entry.header().entry_type();
        if entry_type.is_symlink() || entry_type.is_hard_link() {
            if let Some(target) = entry.link_name_bytes() {
                let target = String::from_utf8_lossy(&target).into_owned();
                // Symlink targets are relative to the link; hard link targets are archive paths.
                let resolved = if entry_type.is_symlink() {
                    resolve_link(&path, &target)
                } else {
                    normalize_entry_path(&target)
                };
                result.metadata.links.insert(path, resolved);
            }
            continue;
        }
        if !entry_type.is_file() {
            continue;
        }
        let size = entry.header().size().map_err(|err| io_error(&path, err))?;
        let role = entry_role(&path);
        match role {
            EntryRole::Ignored => {}
            EntryRole::Metadata => {
                let bytes = read_metadata(&mut entry, &path, size)?;
                result.metadata.files.insert(path, bytes);
            }
            EntryRole::Blob { .. } | EntryRole::ClassicLayer { .. } => {
                let head = peek(&mut entry, 512).map_err(|err| io_error(&path, err))?;
                let kind = sniff_content(&head);
                let mut source = Cursor::new(head).chain(&mut entry);
                match kind {
                    ContentKind::Json => {
                        let bytes = read_metadata(&mut source, &path, size)?;
                        result.metadata.files.insert(path, bytes);
                    }
                    ContentKind::UnsupportedCompression => {
                        return Err(LayoutProblem(format!(
                            "{path} is compressed with bzip2 or xz, which registries do not \
                             accept; rebuild the image with a current Docker"
                        ))
                        .into());
                    }
                    ContentKind::Gzip | ContentKind::Zstd => {
                        let compression = if kind == ContentKind::Gzip {
                            Compression::Gzip
                        } else {
                            Compression::Zstd
                        };
                        let outcome = store_compressed(
                            &mut source,
                            &role,
                            &path,
                            size,
                            compression,
                            plan,
                            sink,
                            spool_dir,
                            on_bytes,
                            cancel,
                        )?;
                        result.layers.insert(path, outcome);
                    }
                    ContentKind::Tar => {
                        let action = decide_layer_action(&role, &path, size, plan, &claimed);
                        let outcome = match action {
                            LayerAction::Skip => LayerOutcome::Skipped,
                            LayerAction::Verify { expected } => {
                                let (diff_id, uncompressed_size) =
                                    layer_packer::hash_layer(&mut source, on_bytes, cancel)
                                        .map_err(|err| io_error(&path, err))?;
                                if diff_id == expected {
                                    claimed.insert(diff_id.clone());
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
                                    &mut source,
                                    plan.packing,
                                    spool_dir,
                                    on_bytes,
                                    cancel,
                                )
                                .map_err(|err| io_error(&path, err))?;
                                let outcome = LayerOutcome::Packed {
                                    diff_id,
                                    uncompressed_size,
                                    digest: blob.digest.clone(),
                                    size: blob.size,
                                };
                                sink.submit(blob)?;
                                outcome
                            }
                        };
                        if let LayerOutcome::Packed { diff_id, .. } = &outcome {
                            packed.insert(diff_id.clone());
                        }
                        result.layers.insert(path, outcome);
                    }
                }
            }
        }
        if let Some(stop) = &plan.stop_early
            && result.metadata.files.contains_key(&stop.config_entry)
            && stop.needed.is_subset(&packed)
        {
            result.stopped_early = true;
            break;
        }
    }
    Ok(result)
}

fn read_metadata(source: &mut impl Read, path: &str, size: u64) -> Result<Vec<u8>, ScanError> {
    if size > MAX_METADATA_BYTES {
        return Err(LayoutProblem(format!(
            "{path} is {size} bytes, too large for image metadata"
        ))
        .into());
    }
    let mut bytes = Vec::with_capacity(size as usize);
    source
        .take(MAX_METADATA_BYTES)
        .read_to_end(&mut bytes)
        .map_err(|err| io_error(path, err))?;
    Ok(bytes)
}

#[allow(clippy::too_many_arguments)]
fn store_compressed(
    source: &mut dyn Read,
    role: &EntryRole,
    path: &str,
    size: u64,
    compression: Compression,
    plan: &ScanPlan,
    sink: &dyn BlobSink,
    spool_dir: &Path,
    on_bytes: &mut dyn FnMut(u64),
    cancel: &CancellationToken,
) -> Result<LayerOutcome, ScanError> {
    if let Some(only) = &plan.only_entries
        && !only.contains(path)
    {
        return Ok(LayerOutcome::Skipped);
    }
    // An OCI blob is named by its digest, so the registry can be asked before reading it.
    let named = match role {
        EntryRole::Blob { digest } => Some(digest.clone()),
        _ => None,
    };
    if let Some(digest) = &named
        && sink.has_blob(digest)?
    {
        on_bytes(size);
        return Ok(LayerOutcome::Stored {
            digest: digest.clone(),
            size,
            compression,
        });
    }
    let blob = layer_packer::spool_blob(source, named.as_deref(), spool_dir, on_bytes, cancel)
        .map_err(|err| io_error(path, err))?;
    let outcome = LayerOutcome::Stored {
        digest: blob.digest.clone(),
        size: blob.size,
        compression,
    };
    sink.submit(blob)?;
    Ok(outcome)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::sync::Mutex;

    use crate::registry::image_layout::{self, read_source_image, sha256_digest};

    /// Collects submitted blobs and answers `has_blob` from a fixed set.
    #[derive(Default)]
    pub(crate) struct RecordingSink {
        pub present: HashSet<String>,
        pub submitted: Mutex<Vec<SpooledBlob>>,
        pub asked: Mutex<Vec<String>>,
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

    /// A tar layer whose content depends on `seed`, `len` bytes of file data.
    pub(crate) fn layer_tar(seed: u8, len: usize) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        let data: Vec<u8> = (0..len)
            .map(|i| seed.wrapping_add((i % 251) as u8))
            .collect();
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        builder
            .append_data(&mut header, format!("file-{seed}"), data.as_slice())
            .unwrap();
        builder.into_inner().unwrap()
    }

    fn add_file(builder: &mut tar::Builder<Vec<u8>>, path: &str, data: &[u8]) {
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        builder.append_data(&mut header, path, data).unwrap();
    }

    fn add_symlink(builder: &mut tar::Builder<Vec<u8>>, path: &str, target: &str) {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Symlink);
        header.set_size(0);
        header.set_mode(0o777);
        builder.append_link(&mut header, path, target).unwrap();
    }

    /// A classic `docker save` archive of the given layers (in layer order), written with the
    /// directories sorted by name as Docker 20.10 does, and the last layer repeated as a
    /// symlink when `repeat_first` is set.
    pub(crate) fn classic_archive(layers: &[Vec<u8>], repeat_first: bool) -> (Vec<u8>, String) {
        let mut diff_ids: Vec<String> = layers.iter().map(|l| sha256_digest(l)).collect();
        let mut dirs: Vec<String> = layers
            .iter()
            .enumerate()
            .map(|(i, l)| {
                // Directory names unrelated to layer order, like Docker's v1 ids.
                let name = sha256_digest(&[l.as_slice(), &[i as u8]].concat());
                image_layout::sha256_hex(&name).unwrap().to_string()
            })
            .collect();
        let mut layer_paths: Vec<String> = dirs.iter().map(|d| format!("{d}/layer.tar")).collect();
        if repeat_first {
            diff_ids.push(diff_ids[0].clone());
            let dir = "f".repeat(64);
            layer_paths.push(format!("{dir}/layer.tar"));
            dirs.push(dir);
        }
        let config = serde_json::to_vec(&serde_json::json!({
            "architecture": "amd64", "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
        }))
        .unwrap();
        let config_digest = sha256_digest(&config);
        let config_name = format!("{}.json", image_layout::sha256_hex(&config_digest).unwrap());
        let manifest = serde_json::to_vec(&serde_json::json!([{
            "Config": config_name, "RepoTags": ["app:1"], "Layers": layer_paths,
        }]))
        .unwrap();

        let mut builder = tar::Builder::new(Vec::new());
        let mut order: Vec<usize> = (0..dirs.len()).collect();
        order.sort_by(|a, b| dirs[*a].cmp(&dirs[*b]));
        add_file(&mut builder, &config_name, &config);
        for i in order {
            let dir = &dirs[i];
            add_file(&mut builder, &format!("{dir}/VERSION"), b"1.0");
            add_file(&mut builder, &format!("{dir}/json"), b"{\"id\":\"x\"}");
            if i < layers.len() {
                add_file(&mut builder, &format!("{dir}/layer.tar"), &layers[i]);
            } else {
                add_symlink(
                    &mut builder,
                    &format!("{dir}/layer.tar"),
                    &format!("../{}/layer.tar", dirs[0]),
                );
            }
        }
        add_file(&mut builder, "manifest.json", &manifest);
        add_file(&mut builder, "repositories", b"{}");
        (builder.into_inner().unwrap(), config_digest)
    }

    fn scan(
        archive: &[u8],
        plan: &ScanPlan,
        sink: &RecordingSink,
    ) -> (ScanResult, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let result = scan_archive(
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
        let config_entry = format!("{}.json", image_layout::sha256_hex(&config_digest).unwrap());
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

    /// A Docker 25 style OCI layout: one uncompressed layer, one already gzipped, blobs first
    /// and index.json last.
    fn oci_archive(plain: &[u8], gzipped: &[u8], gzipped_diff: &str) -> (Vec<u8>, String) {
        let plain_digest = sha256_digest(plain);
        let gz_digest = sha256_digest(gzipped);
        let config = serde_json::to_vec(&serde_json::json!({
            "architecture": "amd64", "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": [plain_digest, gzipped_diff]},
        }))
        .unwrap();
        let config_digest = sha256_digest(&config);
        let manifest = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2, "mediaType": image_layout::OCI_MANIFEST,
            "config": {"mediaType": image_layout::OCI_CONFIG, "digest": config_digest, "size": config.len()},
            "layers": [
                {"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": plain_digest, "size": plain.len()},
                {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": gz_digest, "size": gzipped.len()},
            ]
        }))
        .unwrap();
        let manifest_digest = sha256_digest(&manifest);
        let index = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "manifests": [{"mediaType": image_layout::OCI_MANIFEST, "digest": manifest_digest, "size": manifest.len()}]
        }))
        .unwrap();
        let blob = |d: &str| format!("blobs/sha256/{}", image_layout::sha256_hex(d).unwrap());
        let mut builder = tar::Builder::new(Vec::new());
        add_file(&mut builder, &blob(&plain_digest), plain);
        add_file(&mut builder, &blob(&gz_digest), gzipped);
        add_file(&mut builder, &blob(&config_digest), &config);
        add_file(&mut builder, &blob(&manifest_digest), &manifest);
        add_file(
            &mut builder,
            "oci-layout",
            b"{\"imageLayoutVersion\":\"1.0.0\"}",
        );
        add_file(&mut builder, "index.json", &index);
        (builder.into_inner().unwrap(), gz_digest)
    }

    fn gzip(data: &[u8]) -> Vec<u8> {
        use std::io::Write as _;
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        encoder.write_all(data).unwrap();
        encoder.finish().unwrap()
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

    #[test]
    fn oversized_metadata_is_refused() {
        let mut builder = tar::Builder::new(Vec::new());
        let mut header = tar::Header::new_gnu();
        header.set_size(MAX_METADATA_BYTES + 1);
        header.set_cksum();
        // Only the header matters: the reader refuses before reading the content.
        builder
            .append_data(
                &mut header,
                "manifest.json",
                io::repeat(b' ').take(MAX_METADATA_BYTES + 1),
            )
            .unwrap();
        let archive = builder.into_inner().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let err = scan_archive(
            Cursor::new(archive),
            &ScanPlan::default(),
            &RecordingSink::default(),
            dir.path(),
            &mut |_| {},
            &CancellationToken::new(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("too large"), "{err}");
    }
}
