//! The manifest of a digested build context: for every entry the digest covered, its path and
//! a fingerprint of what the digest folded in for it (type, mode, size and content hash, link
//! target or device number). Two manifests say which files differ between two digests.
//!
//! `digest_context` writes one as it digests, from values it computes anyway, so a manifest
//! costs no extra read. The file is streamed in walk order, like the stat cache, and read
//! back as a merge join, so neither side is loaded whole:
//!
//! ```text
//! magic line | context digest (71 bytes, filled in last) |
//! records: u32 path length, path, kind tag, fingerprint | u32::MAX
//! ```
//!
//! A Dockerfile outside the context is one last record, under its own path, tagged `D`.

use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::ContextError;
use super::digest::temp_file_beside;

const MAGIC: &[u8] = b"shipit-context-manifest v1\n";
/// `sha256:` and 64 hex digits.
const DIGEST_LEN: usize = 71;
/// Bytes of an entry's fingerprint: enough to tell a change, small enough for large contexts.
const FINGERPRINT_LEN: usize = 16;
/// Ends the records, so a cut-off file is told from a complete one.
const END_OF_RECORDS: u32 = u32::MAX;
/// The kind tag of a Dockerfile kept outside the context.
pub(crate) const OUTSIDE_DOCKERFILE: u8 = b'D';
/// The kind tag of a directory (the digest's own tag).
pub(crate) const DIRECTORY: u8 = b'd';

pub(crate) type Fingerprint = [u8; FINGERPRINT_LEN];

/// The manifest written by the latest digest computed with this stat cache.
pub(crate) fn digested_manifest_path(stat_cache: &Path) -> PathBuf {
    stat_cache.with_extension("manifest")
}

/// The fingerprint of one entry, from the bytes the digest hashes for it after its path.
pub(crate) fn fingerprint(kind: u8, parts: &[&[u8]]) -> Fingerprint {
    let mut hasher = Sha256::new();
    hasher.update([kind]);
    for part in parts {
        hasher.update((part.len() as u64).to_le_bytes());
        hasher.update(part);
    }
    let digest = hasher.finalize();
    let mut fingerprint = [0u8; FINGERPRINT_LEN];
    fingerprint.copy_from_slice(&digest[..FINGERPRINT_LEN]);
    fingerprint
}

/// Streams a manifest next to its final place and swaps it in once the digest is known, so a
/// digest that fails half-way leaves the previous manifest as it was.
pub(crate) struct ManifestWriter {
    path: PathBuf,
    file: BufWriter<tempfile::NamedTempFile>,
    record: Vec<u8>,
    failed: Option<io::Error>,
}

impl ManifestWriter {
    pub(crate) fn create(path: &Path) -> Result<Self, ContextError> {
        let fail = |source| ContextError::ManifestWrite {
            path: path.to_path_buf(),
            source,
        };
        let mut file = BufWriter::with_capacity(1 << 20, temp_file_beside(path).map_err(fail)?);
        file.write_all(MAGIC).map_err(fail)?;
        file.write_all(&[0u8; DIGEST_LEN]).map_err(fail)?;
        Ok(ManifestWriter {
            path: path.to_path_buf(),
            file,
            record: Vec::with_capacity(256),
            failed: None,
        })
    }

    /// Adds one entry; entries must come in walk order, the outside Dockerfile last.
    pub(crate) fn append(&mut self, path: &[u8], kind: u8, fingerprint: &Fingerprint) {
        if self.failed.is_some() {
            return;
        }
        self.record.clear();
        self.record
            .extend_from_slice(&(path.len() as u32).to_le_bytes());
        self.record.extend_from_slice(path);
        self.record.push(kind);
        self.record.extend_from_slice(fingerprint);
        if let Err(err) = self.file.write_all(&self.record) {
            self.failed = Some(err);
        }
    }

    /// Ends the records, writes the digest they add up to, and puts the manifest in place.
    pub(crate) fn commit(mut self, digest: &str) -> Result<(), ContextError> {
        let path = self.path.clone();
        let fail = |source| ContextError::ManifestWrite {
            path: path.clone(),
            source,
        };
        if digest.len() != DIGEST_LEN {
            return Err(fail(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("`{digest}` is not a sha256 digest"),
            )));
        }
        if let Some(err) = self.failed.take() {
            return Err(fail(err));
        }
        self.file
            .write_all(&END_OF_RECORDS.to_le_bytes())
            .map_err(fail)?;
        let mut temp = self
            .file
            .into_inner()
            .map_err(|err| fail(err.into_error()))?;
        let file = temp.as_file_mut();
        file.seek(SeekFrom::Start(MAGIC.len() as u64))
            .map_err(fail)?;
        file.write_all(digest.as_bytes()).map_err(fail)?;
        temp.persist(&self.path).map_err(|err| fail(err.error))?;
        Ok(())
    }
}

/// A manifest cut off or damaged after its header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Damaged;

/// One entry of a manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ManifestRecord {
    pub path: Vec<u8>,
    pub kind: u8,
    pub fingerprint: Fingerprint,
}

/// Reads a manifest's records in the order they were written.
pub(crate) struct ManifestReader {
    input: BufReader<File>,
    digest: String,
}

impl ManifestReader {
    /// Opens a manifest; `None` when it is missing, foreign or damaged at the start.
    pub(crate) fn open(path: &Path) -> Option<Self> {
        let mut input = BufReader::with_capacity(1 << 20, File::open(path).ok()?);
        let mut header = [0u8; MAGIC.len() + DIGEST_LEN];
        input.read_exact(&mut header).ok()?;
        if &header[..MAGIC.len()] != MAGIC {
            return None;
        }
        let digest = std::str::from_utf8(&header[MAGIC.len()..]).ok()?;
        if !digest.starts_with("sha256:") {
            return None;
        }
        Some(ManifestReader {
            digest: digest.to_owned(),
            input,
        })
    }

    /// The context digest this manifest was written for.
    pub(crate) fn digest(&self) -> &str {
        &self.digest
    }

    /// The next record, `Ok(None)` at the end.
    pub(crate) fn next_record(&mut self) -> Result<Option<ManifestRecord>, Damaged> {
        let mut len = [0u8; 4];
        self.input.read_exact(&mut len).map_err(|_| Damaged)?;
        let len = u32::from_le_bytes(len);
        if len == END_OF_RECORDS {
            return Ok(None);
        }
        // A path longer than this is certainly a damaged file, not a real entry.
        if len > 1 << 20 {
            return Err(Damaged);
        }
        let mut path = vec![0u8; len as usize];
        self.input.read_exact(&mut path).map_err(|_| Damaged)?;
        let mut kind = [0u8; 1];
        self.input.read_exact(&mut kind).map_err(|_| Damaged)?;
        let mut fingerprint = [0u8; FINGERPRINT_LEN];
        self.input
            .read_exact(&mut fingerprint)
            .map_err(|_| Damaged)?;
        Ok(Some(ManifestRecord {
            path,
            kind: kind[0],
            fingerprint,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIGEST: &str = "sha256:0000000000000000000000000000000000000000000000000000000000000001";

    #[test]
    fn records_read_back_in_the_order_written_with_their_digest() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.manifest");
        let mut writer = ManifestWriter::create(&path).unwrap();
        let a = fingerprint(b'f', &[b"a"]);
        writer.append(b"a", b'f', &a);
        writer.append(b"b", DIRECTORY, &fingerprint(DIRECTORY, &[]));
        writer.commit(DIGEST).unwrap();

        let mut reader = ManifestReader::open(&path).unwrap();
        assert_eq!(reader.digest(), DIGEST);
        let first = reader.next_record().unwrap().unwrap();
        assert_eq!(
            (first.path.as_slice(), first.kind, first.fingerprint),
            (&b"a"[..], b'f', a)
        );
        assert_eq!(reader.next_record().unwrap().unwrap().path, b"b");
        assert_eq!(reader.next_record(), Ok(None));
    }

    #[test]
    fn a_cut_off_manifest_is_damaged_not_short() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.manifest");
        let mut writer = ManifestWriter::create(&path).unwrap();
        writer.append(b"a", b'f', &fingerprint(b'f', &[b"a"]));
        writer.commit(DIGEST).unwrap();
        let mut bytes = std::fs::read(&path).unwrap();
        bytes.truncate(bytes.len() - 4);
        std::fs::write(&path, bytes).unwrap();

        let mut reader = ManifestReader::open(&path).unwrap();
        assert!(reader.next_record().unwrap().is_some());
        assert_eq!(reader.next_record(), Err(Damaged));
    }

    #[test]
    fn an_uncommitted_manifest_leaves_the_previous_one_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.manifest");
        ManifestWriter::create(&path)
            .unwrap()
            .commit(DIGEST)
            .unwrap();
        let mut abandoned = ManifestWriter::create(&path).unwrap();
        abandoned.append(b"a", b'f', &fingerprint(b'f', &[b"a"]));
        drop(abandoned);
        let mut reader = ManifestReader::open(&path).unwrap();
        assert_eq!(reader.digest(), DIGEST);
        assert_eq!(reader.next_record(), Ok(None));
    }

    #[test]
    fn a_foreign_file_is_not_a_manifest() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.manifest");
        std::fs::write(&path, b"garbage").unwrap();
        assert!(ManifestReader::open(&path).is_none());
        assert!(ManifestReader::open(&dir.path().join("missing")).is_none());
    }
}
