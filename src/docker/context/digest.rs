//! A content digest of the build context, for the build stage's input digest.
//!
//! The digest covers exactly what the tar stream sends for the classic builder
//! (the superset of both builders): every entry's path, type and mode, file
//! contents, symlink targets and device numbers, in walk order. Modification times
//! and owners are left out so that a fresh checkout of the same tree digests the
//! same.
//!
//! Speed comes from a stat cache in the spirit of git's index: for each regular
//! file it remembers (path, size, mtime, ctime, inode, mode) and the content hash,
//! so an unchanged file is never read again. The cache file is written in walk
//! order and read back as a merge join alongside the walk, so it is never loaded
//! into memory whole. Files whose mtime or ctime is too close to the time of
//! hashing are not cached ("racily clean" in git's terms): a write in the same
//! timestamp tick could otherwise go unnoticed. Files that do need reading are
//! hashed in parallel, a bounded batch at a time.
//!
//! With a stat cache, the digest also writes the context's manifest beside it
//! (`manifest`): each entry's path and a fingerprint of what the digest folded in
//! for it, so a later `plan` can say which files changed since a build.

use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};

use super::manifest::{self, ManifestWriter};
use super::walk::{EntryKind, walk_context, walk_order};
use super::{BuildContext, ContextError, DockerfileLocation};

/// Entries gathered before the files among them are hashed in parallel.
const BATCH_ENTRIES: usize = 4096;
/// Read buffer for hashing file contents.
const HASH_BUFFER: usize = 256 * 1024;
/// How close to the time of hashing a timestamp may be before the file is not
/// trusted to the stat cache.
const RACY_WINDOW: Duration = Duration::from_secs(1);
const CACHE_MAGIC: &[u8] = b"shipit-context-stat-cache v1\n";

/// The digest of a build context and what it took to compute it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContextDigest {
    /// `sha256:<hex>`.
    pub digest: String,
    pub entries: u64,
    /// Total size of the regular files in the context.
    pub content_bytes: u64,
    /// Bytes actually read to compute the digest (the rest came from the cache).
    pub hashed_bytes: u64,
    pub cache_hits: u64,
    /// Why the stat cache could not be saved, if it could not; the digest itself
    /// is still correct.
    pub stat_cache_warning: Option<String>,
}

/// Digests the context, reading and updating the stat cache at `stat_cache` when
/// given, and then also writing the context's manifest beside it. A missing,
/// foreign or damaged cache only makes the digest slower.
pub fn digest_context(
    context: &BuildContext,
    stat_cache: Option<&Path>,
) -> Result<ContextDigest, ContextError> {
    digest_context_at(context, stat_cache, SystemTime::now())
}

/// [`digest_context`] with the time of hashing given, so tests can place files
/// outside the racy window without waiting.
pub(super) fn digest_context_at(
    context: &BuildContext,
    stat_cache: Option<&Path>,
    started: SystemTime,
) -> Result<ContextDigest, ContextError> {
    let racy_after = started.checked_sub(RACY_WINDOW).unwrap_or(UNIX_EPOCH);
    let root = context.root();
    let mut old = stat_cache.and_then(|path| CacheReader::open(path, root));
    let (mut new, mut warning) = match stat_cache {
        Some(path) => match CacheWriter::create(path, root) {
            Ok(writer) => (Some(writer), None),
            Err(err) => (None, Some(err.to_string())),
        },
        None => (None, None),
    };
    let mut manifest = match stat_cache {
        Some(path) => match ManifestWriter::create(&manifest::digested_manifest_path(path)) {
            Ok(writer) => Some(writer),
            Err(err) => {
                warning.get_or_insert(err.to_string());
                None
            }
        },
        None => None,
    };

    let mut state = DigestState {
        hasher: Sha256::new(),
        summary: ContextDigest {
            digest: String::new(),
            entries: 0,
            content_bytes: 0,
            hashed_bytes: 0,
            cache_hits: 0,
            stat_cache_warning: None,
        },
        racy_after,
    };
    state.hasher.update(b"shipit-context-digest v1\0");
    let workers = std::thread::available_parallelism()
        .map(|count| count.get())
        .unwrap_or(1);

    let matcher = context.matcher();
    let mut batch: Vec<Pending> = Vec::with_capacity(BATCH_ENTRIES);
    walk_context(root, &matcher, &mut |entry| {
        let meta = entry.metadata;
        let mut pending = Pending {
            relative: entry.relative.to_vec(),
            absolute: entry.absolute.to_path_buf(),
            kind: entry.kind,
            mode: meta.mode() & 0o7777,
            key: StatKey::of(meta),
            extra: Vec::new(),
            hash: None,
            from_cache: false,
        };
        match entry.kind {
            EntryKind::File => {
                if let Some(hash) = old
                    .as_mut()
                    .and_then(|cache| cache.lookup(&pending.relative, &pending.key))
                {
                    pending.hash = Some(hash);
                    pending.from_cache = true;
                }
            }
            EntryKind::Symlink => {
                let target = std::fs::read_link(entry.absolute).map_err(|source| {
                    ContextError::Unreadable {
                        path: entry.absolute.to_path_buf(),
                        source,
                    }
                })?;
                pending.extra = target.as_os_str().as_bytes().to_vec();
            }
            EntryKind::CharDevice | EntryKind::BlockDevice => {
                pending.extra = meta.rdev().to_le_bytes().to_vec();
            }
            EntryKind::Directory | EntryKind::Fifo => {}
        }
        batch.push(pending);
        if batch.len() >= BATCH_ENTRIES {
            state.flush(&mut batch, workers, new.as_mut(), manifest.as_mut())?;
        }
        Ok(())
    })?;
    state.flush(&mut batch, workers, new.as_mut(), manifest.as_mut())?;

    if let DockerfileLocation::Outside(path) = context.dockerfile() {
        let contents =
            std::fs::read(path).map_err(|source| ContextError::DockerfileUnreadable {
                path: path.clone(),
                source,
            })?;
        let hash = Sha256::digest(&contents);
        state.hasher.update(b"D");
        state.hasher.update(hash);
        if let Some(writer) = manifest.as_mut() {
            writer.append(
                path.as_os_str().as_bytes(),
                manifest::OUTSIDE_DOCKERFILE,
                &manifest::fingerprint(manifest::OUTSIDE_DOCKERFILE, &[&hash]),
            );
        }
    }

    let mut summary = state.summary;
    summary.digest = format!("sha256:{}", hex::encode(state.hasher.finalize()));
    if let Some(writer) = new.take()
        && let Err(err) = writer.commit()
    {
        warning = Some(err.to_string());
    }
    if let Some(writer) = manifest.take()
        && let Err(err) = writer.commit(&summary.digest)
    {
        warning.get_or_insert(err.to_string());
    }
    summary.stat_cache_warning = warning;
    Ok(summary)
}

struct DigestState {
    hasher: Sha256,
    summary: ContextDigest,
    racy_after: SystemTime,
}

impl DigestState {
    /// Hashes the batch's uncached files in parallel, then folds the batch into the
    /// digest, the new cache and the manifest in walk order.
    fn flush(
        &mut self,
        batch: &mut Vec<Pending>,
        workers: usize,
        mut cache: Option<&mut CacheWriter>,
        mut manifest: Option<&mut ManifestWriter>,
    ) -> Result<(), ContextError> {
        let todo: Vec<usize> = batch
            .iter()
            .enumerate()
            .filter(|(_, pending)| pending.kind == EntryKind::File && pending.hash.is_none())
            .map(|(index, _)| index)
            .collect();
        for (index, result) in hash_files(batch, &todo, workers) {
            batch[index].hash = Some(result?);
        }
        for pending in batch.drain(..) {
            self.summary.entries += 1;
            let tag: &[u8] = match pending.kind {
                EntryKind::Directory => b"d",
                EntryKind::File => b"f",
                EntryKind::Symlink => b"l",
                EntryKind::Fifo => b"p",
                EntryKind::CharDevice => b"c",
                EntryKind::BlockDevice => b"b",
            };
            self.hasher.update(tag);
            self.hasher
                .update((pending.relative.len() as u64).to_le_bytes());
            self.hasher.update(&pending.relative);
            self.hasher.update(pending.mode.to_le_bytes());
            if pending.kind == EntryKind::File {
                let hash = pending.hash.unwrap_or_default();
                self.hasher.update(pending.key.size.to_le_bytes());
                self.hasher.update(hash);
                self.summary.content_bytes += pending.key.size;
                if pending.from_cache {
                    self.summary.cache_hits += 1;
                } else {
                    self.summary.hashed_bytes += pending.key.size;
                }
                if let Some(cache) = cache.as_deref_mut()
                    && !pending.key.is_racy(self.racy_after)
                {
                    cache.append(&pending.relative, &pending.key, &hash);
                }
                if let Some(manifest) = manifest.as_deref_mut() {
                    let parts: [&[u8]; 3] = [
                        &pending.mode.to_le_bytes(),
                        &pending.key.size.to_le_bytes(),
                        &hash,
                    ];
                    let fingerprint = manifest::fingerprint(tag[0], &parts);
                    manifest.append(&pending.relative, tag[0], &fingerprint);
                }
            } else {
                self.hasher
                    .update((pending.extra.len() as u64).to_le_bytes());
                self.hasher.update(&pending.extra);
                if let Some(manifest) = manifest.as_deref_mut() {
                    let parts: [&[u8]; 2] = [&pending.mode.to_le_bytes(), &pending.extra];
                    let fingerprint = manifest::fingerprint(tag[0], &parts);
                    manifest.append(&pending.relative, tag[0], &fingerprint);
                }
            }
        }
        Ok(())
    }
}

/// Hashes the files at `indexes` of `batch` on up to `workers` threads.
fn hash_files(
    batch: &[Pending],
    indexes: &[usize],
    workers: usize,
) -> Vec<(usize, Result<[u8; 32], ContextError>)> {
    if indexes.is_empty() {
        return Vec::new();
    }
    let threads = workers.min(indexes.len()).max(1);
    if threads == 1 {
        return indexes
            .iter()
            .map(|&index| (index, hash_file(&batch[index].absolute)))
            .collect();
    }
    let next = AtomicUsize::new(0);
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    let mut done = Vec::new();
                    loop {
                        let position = next.fetch_add(1, Ordering::Relaxed);
                        let Some(&index) = indexes.get(position) else {
                            break;
                        };
                        done.push((index, hash_file(&batch[index].absolute)));
                    }
                    done
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|handle| handle.join().unwrap_or_default())
            .collect()
    })
}

fn hash_file(path: &Path) -> Result<[u8; 32], ContextError> {
    let unreadable = |source| ContextError::Unreadable {
        path: path.to_path_buf(),
        source,
    };
    let mut file = File::open(path).map_err(unreadable)?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; HASH_BUFFER];
    loop {
        let read = match file.read(&mut buffer) {
            Ok(0) => break,
            Ok(read) => read,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(err) => return Err(unreadable(err)),
        };
        hasher.update(&buffer[..read]);
    }
    Ok(hasher.finalize().into())
}

struct Pending {
    relative: Vec<u8>,
    absolute: PathBuf,
    kind: EntryKind,
    mode: u32,
    key: StatKey,
    /// Symlink target or device number.
    extra: Vec<u8>,
    hash: Option<[u8; 32]>,
    from_cache: bool,
}

/// What must be unchanged for a cached content hash to be trusted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct StatKey {
    size: u64,
    mtime_sec: i64,
    mtime_nsec: u32,
    ctime_sec: i64,
    ctime_nsec: u32,
    ino: u64,
    mode: u32,
}

impl StatKey {
    fn of(meta: &std::fs::Metadata) -> Self {
        StatKey {
            size: meta.len(),
            mtime_sec: meta.mtime(),
            mtime_nsec: u32::try_from(meta.mtime_nsec()).unwrap_or(0),
            ctime_sec: meta.ctime(),
            ctime_nsec: u32::try_from(meta.ctime_nsec()).unwrap_or(0),
            ino: meta.ino(),
            mode: meta.mode(),
        }
    }

    fn is_racy(&self, racy_after: SystemTime) -> bool {
        let limit = racy_after
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO);
        let limit = (limit.as_secs() as i64, limit.subsec_nanos());
        (self.mtime_sec, self.mtime_nsec) >= limit || (self.ctime_sec, self.ctime_nsec) >= limit
    }

    const ENCODED_LEN: usize = 8 + 8 + 4 + 8 + 4 + 8 + 4;

    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.size.to_le_bytes());
        out.extend_from_slice(&self.mtime_sec.to_le_bytes());
        out.extend_from_slice(&self.mtime_nsec.to_le_bytes());
        out.extend_from_slice(&self.ctime_sec.to_le_bytes());
        out.extend_from_slice(&self.ctime_nsec.to_le_bytes());
        out.extend_from_slice(&self.ino.to_le_bytes());
        out.extend_from_slice(&self.mode.to_le_bytes());
    }

    fn decode(bytes: &[u8]) -> Option<Self> {
        let u64_at = |at: usize| Some(u64::from_le_bytes(bytes.get(at..at + 8)?.try_into().ok()?));
        let u32_at = |at: usize| Some(u32::from_le_bytes(bytes.get(at..at + 4)?.try_into().ok()?));
        Some(StatKey {
            size: u64_at(0)?,
            mtime_sec: u64_at(8)? as i64,
            mtime_nsec: u32_at(16)?,
            ctime_sec: u64_at(20)? as i64,
            ctime_nsec: u32_at(28)?,
            ino: u64_at(32)?,
            mode: u32_at(40)?,
        })
    }
}

/// Reads the previous cache in walk order, in step with the walk.
struct CacheReader {
    input: BufReader<File>,
    current: Option<CacheRecord>,
}

struct CacheRecord {
    relative: Vec<u8>,
    key: StatKey,
    hash: [u8; 32],
}

impl CacheReader {
    fn open(path: &Path, root: &Path) -> Option<Self> {
        let mut input = BufReader::with_capacity(1 << 20, File::open(path).ok()?);
        let mut magic = vec![0u8; CACHE_MAGIC.len()];
        input.read_exact(&mut magic).ok()?;
        if magic != CACHE_MAGIC {
            return None;
        }
        // A cache written for another context directory is useless here.
        let stored_root = read_chunk(&mut input)?;
        if stored_root != root.as_os_str().as_bytes() {
            return None;
        }
        let mut reader = CacheReader {
            input,
            current: None,
        };
        reader.advance();
        Some(reader)
    }

    fn advance(&mut self) {
        self.current = self.read_record();
    }

    fn read_record(&mut self) -> Option<CacheRecord> {
        let relative = read_chunk(&mut self.input)?;
        let mut fixed = [0u8; StatKey::ENCODED_LEN + 32];
        self.input.read_exact(&mut fixed).ok()?;
        let key = StatKey::decode(&fixed[..StatKey::ENCODED_LEN])?;
        let hash = fixed[StatKey::ENCODED_LEN..].try_into().ok()?;
        Some(CacheRecord {
            relative,
            key,
            hash,
        })
    }

    /// The cached hash for `relative` when its stat is unchanged. Lookups must come
    /// in walk order; records for paths no longer present are skipped.
    fn lookup(&mut self, relative: &[u8], key: &StatKey) -> Option<[u8; 32]> {
        loop {
            let record = self.current.as_ref()?;
            match walk_order(&record.relative, relative) {
                std::cmp::Ordering::Less => self.advance(),
                std::cmp::Ordering::Greater => return None,
                std::cmp::Ordering::Equal => {
                    let hit = (record.key == *key).then_some(record.hash);
                    self.advance();
                    return hit;
                }
            }
        }
    }
}

fn read_chunk(input: &mut impl Read) -> Option<Vec<u8>> {
    let mut len = [0u8; 4];
    input.read_exact(&mut len).ok()?;
    let len = u32::from_le_bytes(len) as usize;
    // A path longer than this is certainly a damaged file, not a real entry.
    if len > 1 << 20 {
        return None;
    }
    let mut bytes = vec![0u8; len];
    input.read_exact(&mut bytes).ok()?;
    Some(bytes)
}

/// A temporary file in the folder of `path` (made if missing), to be renamed over `path` once
/// complete: a reader sees the old file or the new one, never half of one.
pub(super) fn temp_file_beside(path: &Path) -> io::Result<tempfile::NamedTempFile> {
    let dir = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&dir)?;
    tempfile::NamedTempFile::new_in(&dir)
}

/// Writes the new cache beside the old one and swaps it in at the end, so an
/// interrupted run leaves the previous cache intact.
struct CacheWriter {
    path: PathBuf,
    file: BufWriter<tempfile::NamedTempFile>,
    record: Vec<u8>,
    failed: Option<io::Error>,
}

impl CacheWriter {
    fn create(path: &Path, root: &Path) -> Result<Self, ContextError> {
        let fail = |source| ContextError::StatCacheWrite {
            path: path.to_path_buf(),
            source,
        };
        let mut file = BufWriter::with_capacity(1 << 20, temp_file_beside(path).map_err(fail)?);
        let root = root.as_os_str().as_bytes();
        file.write_all(CACHE_MAGIC).map_err(fail)?;
        file.write_all(&(root.len() as u32).to_le_bytes())
            .map_err(fail)?;
        file.write_all(root).map_err(fail)?;
        Ok(CacheWriter {
            path: path.to_path_buf(),
            file,
            record: Vec::with_capacity(256),
            failed: None,
        })
    }

    fn append(&mut self, relative: &[u8], key: &StatKey, hash: &[u8; 32]) {
        if self.failed.is_some() {
            return;
        }
        self.record.clear();
        self.record
            .extend_from_slice(&(relative.len() as u32).to_le_bytes());
        self.record.extend_from_slice(relative);
        key.encode(&mut self.record);
        self.record.extend_from_slice(hash);
        if let Err(err) = self.file.write_all(&self.record) {
            self.failed = Some(err);
        }
    }

    fn commit(self) -> Result<(), ContextError> {
        let fail = |source| ContextError::StatCacheWrite {
            path: self.path.clone(),
            source,
        };
        if let Some(err) = self.failed {
            return Err(fail(err));
        }
        let temp = self
            .file
            .into_inner()
            .map_err(|err| fail(err.into_error()))?;
        temp.persist(&self.path).map_err(|err| fail(err.error))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::{PermissionsExt, symlink};

    fn context_with(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (path, contents) in files {
            let full = dir.path().join(path);
            fs::create_dir_all(full.parent().unwrap()).unwrap();
            fs::write(full, contents).unwrap();
        }
        dir
    }

    /// Digests as if a minute had passed since the files were written, so they are
    /// outside the racy window and the cache accepts them.
    fn digest(dir: &Path, cache: Option<&Path>) -> ContextDigest {
        let context = BuildContext::open(dir, None).unwrap();
        let later = SystemTime::now() + Duration::from_secs(60);
        digest_context_at(&context, cache, later).unwrap()
    }

    fn digest_now(dir: &Path, cache: Option<&Path>) -> ContextDigest {
        let context = BuildContext::open(dir, None).unwrap();
        digest_context(&context, cache).unwrap()
    }

    #[test]
    fn the_same_tree_in_another_place_digests_the_same() {
        let files = [("Dockerfile", "FROM scratch\n"), ("src/a", "a"), ("b", "b")];
        let one = context_with(&files);
        let two = context_with(&files);
        assert_eq!(
            digest(one.path(), None).digest,
            digest(two.path(), None).digest
        );
    }

    #[test]
    fn contents_paths_modes_and_link_targets_change_the_digest() {
        let files = [("Dockerfile", "FROM scratch\n"), ("a", "a")];
        let dir = context_with(&files);
        let base = digest(dir.path(), None).digest;

        fs::write(dir.path().join("a"), "A").unwrap();
        let contents = digest(dir.path(), None).digest;
        assert_ne!(base, contents);

        fs::set_permissions(dir.path().join("a"), fs::Permissions::from_mode(0o755)).unwrap();
        let mode = digest(dir.path(), None).digest;
        assert_ne!(contents, mode);

        fs::rename(dir.path().join("a"), dir.path().join("b")).unwrap();
        let path = digest(dir.path(), None).digest;
        assert_ne!(mode, path);

        symlink("b", dir.path().join("l")).unwrap();
        let link = digest(dir.path(), None).digest;
        fs::remove_file(dir.path().join("l")).unwrap();
        symlink("Dockerfile", dir.path().join("l")).unwrap();
        assert_ne!(link, digest(dir.path(), None).digest);
    }

    #[test]
    fn modification_times_do_not_change_the_digest() {
        let dir = context_with(&[("Dockerfile", "FROM scratch\n"), ("a", "a")]);
        let before = digest(dir.path(), None).digest;
        let old = SystemTime::now() - Duration::from_secs(3600);
        File::options()
            .write(true)
            .open(dir.path().join("a"))
            .unwrap()
            .set_modified(old)
            .unwrap();
        assert_eq!(before, digest(dir.path(), None).digest);
    }

    #[test]
    fn ignored_files_do_not_change_the_digest() {
        let dir = context_with(&[
            ("Dockerfile", "FROM scratch\n"),
            (".dockerignore", "logs\n"),
            ("logs/today", "1"),
        ]);
        let before = digest(dir.path(), None).digest;
        fs::write(dir.path().join("logs/today"), "2").unwrap();
        assert_eq!(before, digest(dir.path(), None).digest);
    }

    #[test]
    fn a_warm_cache_reads_no_file_and_gives_the_same_digest() {
        let dir = context_with(&[
            ("Dockerfile", "FROM scratch\n"),
            ("a/x", "x"),
            ("a.txt", "t"),
            ("b", "b"),
        ]);
        let cache_dir = tempfile::tempdir().unwrap();
        let cache = cache_dir.path().join("stat-cache");
        let cold = digest(dir.path(), Some(&cache));
        assert_eq!(cold.cache_hits, 0);
        let warm = digest(dir.path(), Some(&cache));
        assert_eq!(warm.digest, cold.digest);
        assert_eq!(warm.cache_hits, 4);
        assert_eq!(warm.hashed_bytes, 0);
    }

    #[test]
    fn a_changed_file_is_rehashed_despite_the_cache() {
        let dir = context_with(&[("Dockerfile", "FROM scratch\n"), ("a", "aaaa")]);
        let cache_dir = tempfile::tempdir().unwrap();
        let cache = cache_dir.path().join("stat-cache");
        let cold = digest(dir.path(), Some(&cache));
        fs::write(dir.path().join("a"), "bbbb").unwrap();
        let after = digest(dir.path(), Some(&cache));
        assert_ne!(cold.digest, after.digest);
        assert_eq!(after.digest, digest(dir.path(), None).digest);
        assert_eq!(after.hashed_bytes, 4);
    }

    #[test]
    fn recently_modified_files_are_not_trusted_to_the_cache() {
        let dir = context_with(&[("Dockerfile", "FROM scratch\n")]);
        let cache_dir = tempfile::tempdir().unwrap();
        let cache = cache_dir.path().join("stat-cache");
        digest_now(dir.path(), Some(&cache));
        let again = digest_now(dir.path(), Some(&cache));
        assert_eq!(again.cache_hits, 0, "a file written just now is racy");
    }

    #[test]
    fn a_damaged_cache_is_ignored() {
        let dir = context_with(&[("Dockerfile", "FROM scratch\n"), ("a", "a")]);
        let cache_dir = tempfile::tempdir().unwrap();
        let cache = cache_dir.path().join("stat-cache");
        let expected = digest(dir.path(), None).digest;
        fs::write(&cache, b"garbage").unwrap();
        assert_eq!(digest(dir.path(), Some(&cache)).digest, expected);
        let mut truncated = fs::read(&cache).unwrap();
        truncated.truncate(truncated.len() - 5);
        fs::write(&cache, truncated).unwrap();
        assert_eq!(digest(dir.path(), Some(&cache)).digest, expected);
    }

    #[test]
    fn a_cache_for_another_context_is_not_used() {
        let files = [("Dockerfile", "FROM scratch\n"), ("a", "a")];
        let one = context_with(&files);
        let two = context_with(&files);
        let cache_dir = tempfile::tempdir().unwrap();
        let cache = cache_dir.path().join("stat-cache");
        digest(one.path(), Some(&cache));
        assert_eq!(digest(two.path(), Some(&cache)).cache_hits, 0);
    }

    #[test]
    fn an_unwritable_cache_is_a_warning_not_a_failure() {
        let dir = context_with(&[("Dockerfile", "FROM scratch\n")]);
        let blocker = dir.path().join("file");
        fs::write(&blocker, "x").unwrap();
        let result = digest(dir.path(), Some(&blocker.join("cache")));
        assert!(result.stat_cache_warning.is_some());
    }

    #[test]
    fn many_files_across_batches_digest_like_a_single_pass() {
        let dir = context_with(&[("Dockerfile", "FROM scratch\n")]);
        for index in 0..(BATCH_ENTRIES + 50) {
            let path = dir.path().join(format!("d{}/f{index}", index % 7));
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(path, index.to_string()).unwrap();
        }
        let cache_dir = tempfile::tempdir().unwrap();
        let cache = cache_dir.path().join("stat-cache");
        let cold = digest(dir.path(), Some(&cache));
        let warm = digest(dir.path(), Some(&cache));
        assert_eq!(cold.digest, warm.digest);
        assert_eq!(warm.cache_hits, (BATCH_ENTRIES + 51) as u64);
    }
}
