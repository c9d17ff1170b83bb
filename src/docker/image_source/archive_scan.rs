//! One streaming pass over an image archive: the Engine API's export (the body of
//! `docker save`), or an image archive file in either layout.
//!
//! The archive is a tar read front to back exactly once. Small metadata files are kept in
//! memory; every layer entry is handed, while it streams past, to a `LayerConsumer`, which
//! decides what its bytes become (a push hashes and compresses them, or only hashes a layer it
//! expects the registry to hold). The order of entries is not relied on: `docker save`
//! (Docker ≤ 24) writes layer directories in the order of their random-looking ids, not in
//! layer order.

use std::collections::HashMap;
use std::io::{self, Cursor, Read};

use tokio_util::sync::CancellationToken;

use super::archive_layout::{
    ArchiveMetadata, ContentKind, EntryRole, LayoutProblem, MAX_METADATA_BYTES, entry_role,
    normalize_entry_path, resolve_link, sniff_content,
};

/// How a layer entry the archive holds compressed is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StoredCompression {
    Gzip,
    Zstd,
}

/// A layer entry as the reader meets it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LayerEntry<'a> {
    /// The entry's archive path, normalized.
    pub path: &'a str,
    /// Where it sits in the layout: a classic `<dir>/layer.tar` or an OCI blob.
    pub role: &'a EntryRole,
    /// Its size in the archive.
    pub size: u64,
}

/// Takes the layer entries of one pass, in archive order.
pub(crate) trait LayerConsumer {
    /// What became of one layer entry.
    type Outcome;
    /// The consumer's failures; the reader's own become one of them.
    type Error: From<ArchiveError>;

    /// An uncompressed layer tar; `content` reads it. What is left unread is skipped.
    fn uncompressed(
        &mut self,
        entry: &LayerEntry<'_>,
        content: &mut dyn Read,
    ) -> Result<Self::Outcome, Self::Error>;

    /// A layer stored compressed, as it is stored; `content` reads it.
    fn compressed(
        &mut self,
        entry: &LayerEntry<'_>,
        compression: StoredCompression,
        content: &mut dyn Read,
    ) -> Result<Self::Outcome, Self::Error>;

    /// Whether the consumer has all it needs from the archive, given the metadata kept so far:
    /// the reader then stops before the end.
    fn has_enough(&self, metadata: &ArchiveMetadata) -> bool;
}

/// Everything one pass learned.
#[derive(Debug)]
pub(crate) struct ArchivePass<O> {
    pub metadata: ArchiveMetadata,
    /// What the consumer made of each layer entry, by archive path.
    pub layers: HashMap<String, O>,
    /// The reader stopped before the end (`LayerConsumer::has_enough`).
    pub stopped_early: bool,
}

/// Why the reader stopped.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ArchiveError {
    #[error("failed to read {}: {source}", entry.as_deref().unwrap_or("the archive"))]
    Io {
        entry: Option<String>,
        #[source]
        source: io::Error,
    },
    #[error("{0}")]
    Layout(#[from] LayoutProblem),
    #[error("the read was cancelled")]
    Cancelled,
}

fn entry_error(entry: &str, source: io::Error) -> ArchiveError {
    ArchiveError::Io {
        entry: Some(entry.to_string()),
        source,
    }
}

/// Reads the first bytes of an entry so it can be sniffed, then gives them back in front of
/// the rest.
fn peek(source: &mut impl Read, len: usize) -> io::Result<Vec<u8>> {
    let mut head = Vec::with_capacity(len);
    source.by_ref().take(len as u64).read_to_end(&mut head)?;
    Ok(head)
}

/// Reads one archive from `reader`, handing its layers to `consumer`, until the end or until
/// the consumer has enough. `cancel` is checked between entries (the consumer checks it within
/// a layer).
pub(crate) fn read_archive<C: LayerConsumer>(
    reader: impl Read,
    consumer: &mut C,
    cancel: &CancellationToken,
) -> Result<ArchivePass<C::Outcome>, C::Error> {
    let mut archive = tar::Archive::new(reader);
    let mut pass = ArchivePass {
        metadata: ArchiveMetadata::default(),
        layers: HashMap::new(),
        stopped_early: false,
    };
    let archive_error = |source| ArchiveError::Io {
        entry: None,
        source,
    };
    let entries = archive.entries().map_err(archive_error)?;
    for entry in entries {
        if cancel.is_cancelled() {
            return Err(ArchiveError::Cancelled.into());
        }
        let mut entry = entry.map_err(archive_error)?;
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
                pass.metadata.links.insert(path, resolved);
            }
            continue;
        }
        if !entry_type.is_file() {
            continue;
        }
        let size = entry
            .header()
            .size()
            .map_err(|err| entry_error(&path, err))?;
        let role = entry_role(&path);
        match role {
            EntryRole::Ignored => {}
            EntryRole::Metadata => {
                let bytes = read_metadata(&mut entry, &path, size)?;
                pass.metadata.files.insert(path, bytes);
            }
            EntryRole::Blob { .. } | EntryRole::ClassicLayer { .. } => {
                let head = peek(&mut entry, 512).map_err(|err| entry_error(&path, err))?;
                let kind = sniff_content(&head);
                let mut content = Cursor::new(head).chain(&mut entry);
                let layer = LayerEntry {
                    path: &path,
                    role: &role,
                    size,
                };
                let outcome = match kind {
                    ContentKind::Json => {
                        let bytes = read_metadata(&mut content, &path, size)?;
                        pass.metadata.files.insert(path.clone(), bytes);
                        None
                    }
                    ContentKind::UnsupportedCompression => {
                        return Err(ArchiveError::Layout(LayoutProblem(format!(
                            "{path} is compressed with bzip2 or xz, which registries do not \
                             accept; rebuild the image with a current Docker"
                        )))
                        .into());
                    }
                    ContentKind::Gzip => {
                        Some(consumer.compressed(&layer, StoredCompression::Gzip, &mut content)?)
                    }
                    ContentKind::Zstd => {
                        Some(consumer.compressed(&layer, StoredCompression::Zstd, &mut content)?)
                    }
                    ContentKind::Tar => Some(consumer.uncompressed(&layer, &mut content)?),
                };
                if let Some(outcome) = outcome {
                    pass.layers.insert(path, outcome);
                }
            }
        }
        if consumer.has_enough(&pass.metadata) {
            pass.stopped_early = true;
            break;
        }
    }
    Ok(pass)
}

fn read_metadata(source: &mut impl Read, path: &str, size: u64) -> Result<Vec<u8>, ArchiveError> {
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
        .map_err(|err| entry_error(path, err))?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::docker::image_source::archive_fixtures::{
        classic_archive, gzip, layer_tar, oci_archive,
    };
    use crate::docker::image_source::archive_layout::read_source_image;
    use crate::docker::image_source::digest::sha256_digest;

    /// Reads every layer to its end and keeps what it was shown; has enough once `enough`
    /// says so.
    #[derive(Default)]
    struct Recorder {
        seen: Vec<(String, EntryRole, Option<StoredCompression>, Vec<u8>)>,
        enough: Option<fn(&ArchiveMetadata, usize) -> bool>,
    }

    impl Recorder {
        fn keep(
            &mut self,
            entry: &LayerEntry<'_>,
            compression: Option<StoredCompression>,
            content: &mut dyn Read,
        ) -> Result<String, ArchiveError> {
            let mut bytes = Vec::new();
            content
                .read_to_end(&mut bytes)
                .map_err(|err| entry_error(entry.path, err))?;
            assert_eq!(bytes.len() as u64, entry.size, "{}", entry.path);
            let digest = sha256_digest(&bytes);
            self.seen.push((
                entry.path.to_string(),
                entry.role.clone(),
                compression,
                bytes,
            ));
            Ok(digest)
        }
    }

    impl LayerConsumer for Recorder {
        type Outcome = String;
        type Error = ArchiveError;

        fn uncompressed(
            &mut self,
            entry: &LayerEntry<'_>,
            content: &mut dyn Read,
        ) -> Result<String, ArchiveError> {
            self.keep(entry, None, content)
        }

        fn compressed(
            &mut self,
            entry: &LayerEntry<'_>,
            compression: StoredCompression,
            content: &mut dyn Read,
        ) -> Result<String, ArchiveError> {
            self.keep(entry, Some(compression), content)
        }

        fn has_enough(&self, metadata: &ArchiveMetadata) -> bool {
            self.enough
                .is_some_and(|enough| enough(metadata, self.seen.len()))
        }
    }

    fn read(archive: &[u8], recorder: &mut Recorder) -> Result<ArchivePass<String>, ArchiveError> {
        read_archive(Cursor::new(archive), recorder, &CancellationToken::new())
    }

    #[test]
    fn every_layer_entry_is_handed_over_whole_and_the_metadata_kept() {
        let layers = vec![layer_tar(1, 300_000), layer_tar(2, 5_000), layer_tar(3, 0)];
        let (archive, config_digest) = classic_archive(&layers, true);
        let mut recorder = Recorder::default();
        let pass = read(&archive, &mut recorder).unwrap();

        assert!(!pass.stopped_early);
        let image = read_source_image(&pass.metadata, "linux/amd64").unwrap();
        assert_eq!(image.config_digest, config_digest);
        // The repeated layer is a symlink: three entries handed over, four layers described.
        assert_eq!(recorder.seen.len(), 3);
        assert_eq!(image.layers.len(), 4);
        assert_eq!(image.layers[3].entry, image.layers[0].entry);
        for layer in &image.layers {
            assert_eq!(pass.layers[&layer.entry], layer.diff_id);
        }
        for (path, role, compression, _) in &recorder.seen {
            assert!(matches!(role, EntryRole::ClassicLayer { .. }), "{path}");
            assert_eq!(*compression, None, "{path}");
        }
    }

    #[test]
    fn compressed_blobs_are_handed_over_as_they_are_stored() {
        let plain = layer_tar(7, 50_000);
        let inner = layer_tar(8, 20_000);
        let gzipped = gzip(&inner);
        let (archive, gz_digest) = oci_archive(&plain, &gzipped, &sha256_digest(&inner));
        let mut recorder = Recorder::default();
        let pass = read(&archive, &mut recorder).unwrap();

        let image = read_source_image(&pass.metadata, "linux/amd64").unwrap();
        assert_eq!(pass.layers[&image.layers[0].entry], sha256_digest(&plain));
        assert_eq!(pass.layers[&image.layers[1].entry], gz_digest);
        let (_, role, compression, bytes) = recorder
            .seen
            .iter()
            .find(|(path, ..)| *path == image.layers[1].entry)
            .unwrap();
        assert_eq!(
            *role,
            EntryRole::Blob {
                digest: gz_digest.clone()
            }
        );
        assert_eq!(*compression, Some(StoredCompression::Gzip));
        assert_eq!(*bytes, gzipped);
    }

    #[test]
    fn the_reader_stops_as_soon_as_the_consumer_has_enough() {
        let layers = vec![layer_tar(1, 3000), layer_tar(2, 2000), layer_tar(3, 1000)];
        let (archive, _) = classic_archive(&layers, false);
        let mut recorder = Recorder {
            enough: Some(|_, seen| seen == 1),
            ..Recorder::default()
        };
        let pass = read(&archive, &mut recorder).unwrap();
        assert!(pass.stopped_early);
        assert_eq!(recorder.seen.len(), 1);
        assert!(!pass.metadata.files.contains_key("manifest.json"));
    }

    #[test]
    fn a_cancelled_read_stops_before_the_next_entry() {
        let (archive, _) = classic_archive(&[layer_tar(1, 1000)], false);
        let cancel = CancellationToken::new();
        cancel.cancel();
        let mut recorder = Recorder::default();
        let err = read_archive(Cursor::new(archive), &mut recorder, &cancel).unwrap_err();
        assert!(matches!(err, ArchiveError::Cancelled), "{err}");
        assert!(recorder.seen.is_empty());
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
        let err = read(&archive, &mut Recorder::default()).unwrap_err();
        assert!(err.to_string().contains("too large"), "{err}");
    }

    #[test]
    fn layers_compressed_with_bzip2_are_refused_by_name() {
        let mut builder = tar::Builder::new(Vec::new());
        let mut header = tar::Header::new_gnu();
        let content = b"BZh91AY&SY not really bzip2";
        header.set_size(content.len() as u64);
        header.set_cksum();
        builder
            .append_data(&mut header, "abc/layer.tar", &content[..])
            .unwrap();
        let archive = builder.into_inner().unwrap();
        let err = read(&archive, &mut Recorder::default()).unwrap_err();
        assert!(
            err.to_string()
                .contains("abc/layer.tar is compressed with bzip2"),
            "{err}"
        );
    }
}
