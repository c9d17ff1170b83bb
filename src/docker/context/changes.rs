//! Which files of an image's build context changed since its last successful build, for
//! `shipit plan`: `context changed: 3 files (app/main.go changed, static/logo.png added,
//! old.txt removed)`.
//!
//! Every digest computed with the image's stat cache leaves the manifest of what it digested
//! (see `manifest`). After a successful build the caller keeps that manifest as the built one
//! ([`record_built_manifest`]); at plan time, once the plan has digested the context again,
//! [`context_changes`] compares the two manifests. Neither step reads a file of the context:
//! the digest already read only what the stat cache could not vouch for.

use std::io;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::ContextError;
use super::manifest::{self, Damaged, ManifestReader, ManifestRecord};
use super::walk::walk_order;

/// The files shipit keeps about one image's build context, under the state directory's
/// `cache/context/`: the stat cache the digest reads and updates, the manifest of the latest
/// digest, and the manifest of the last successful build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContextStateFiles {
    stat_cache: PathBuf,
}

impl ContextStateFiles {
    pub fn new(state_dir: &Path, pipeline: &str, image: &str) -> Self {
        ContextStateFiles {
            stat_cache: state_dir
                .join("cache/context")
                .join(format!("{pipeline}-{image}.stat")),
        }
    }

    /// The stat cache to give `digest_context`; the digest writes its manifest beside it.
    pub fn stat_cache(&self) -> &Path {
        &self.stat_cache
    }

    fn digested_manifest(&self) -> PathBuf {
        manifest::digested_manifest_path(&self.stat_cache)
    }

    fn built_manifest(&self) -> PathBuf {
        self.stat_cache.with_extension("built-manifest")
    }
}

/// What [`record_built_manifest`] could keep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BuiltManifest {
    /// The manifest of the build's context digest is now the built one.
    Recorded,
    /// The latest digest was of other contents (or left no manifest): the built manifest was
    /// cleared rather than left describing an older build, and `context_changes` answers
    /// `None` until the next successful build.
    Unavailable,
}

/// Keeps the manifest of `context_digest` (the build's `sha256:` context digest) as the one
/// of the last successful build. Call it once the build succeeded.
pub fn record_built_manifest(
    files: &ContextStateFiles,
    context_digest: &str,
) -> Result<BuiltManifest, ContextError> {
    let digested = files.digested_manifest();
    let built = files.built_manifest();
    let fail = |source| ContextError::ManifestWrite {
        path: built.clone(),
        source,
    };
    let matches =
        ManifestReader::open(&digested).is_some_and(|reader| reader.digest() == context_digest);
    if !matches {
        return match std::fs::remove_file(&built) {
            Ok(()) => Ok(BuiltManifest::Unavailable),
            Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(BuiltManifest::Unavailable),
            Err(err) => Err(fail(err)),
        };
    }
    // Copied, not moved: the latest digest's manifest stays for a plan that follows.
    let dir = built.parent().unwrap_or(Path::new("."));
    let temp = tempfile::NamedTempFile::new_in(dir).map_err(fail)?;
    std::fs::copy(&digested, temp.path()).map_err(fail)?;
    temp.persist(&built).map_err(|err| fail(err.error))?;
    Ok(BuiltManifest::Recorded)
}

/// How the context of the latest digest differs from the one of the last successful build.
/// Each list is in the context's walk order (sorted by path); a directory is named with a
/// trailing `/`, and only when it is not implied by an entry below it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ContextChanges {
    /// The context digest of the last successful build.
    pub built_digest: String,
    /// The context digest of the latest digest (the plan's own, when the plan just computed it).
    pub current_digest: String,
    pub added: Vec<String>,
    pub changed: Vec<String>,
    pub removed: Vec<String>,
}

/// Compares the latest digest's manifest with the last successful build's. `None` when either
/// is missing or damaged (no build recorded one yet, or its digest was not available).
pub fn context_changes(files: &ContextStateFiles) -> Option<ContextChanges> {
    let mut built = ManifestReader::open(&files.built_manifest())?;
    let mut current = ManifestReader::open(&files.digested_manifest())?;
    let mut changes = ContextChanges {
        built_digest: built.digest().to_owned(),
        current_digest: current.digest().to_owned(),
        added: Vec::new(),
        changed: Vec::new(),
        removed: Vec::new(),
    };
    if changes.built_digest == changes.current_digest {
        return Some(changes);
    }
    let mut added = Vec::new();
    let mut removed = Vec::new();
    let mut old = Side::new(&mut built).ok()?;
    let mut new = Side::new(&mut current).ok()?;
    loop {
        let order = match (&old.head, &new.head) {
            (None, None) => break,
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (Some(a), Some(b)) => walk_order(&a.path, &b.path),
        };
        match order {
            std::cmp::Ordering::Less => {
                removed.extend(old.head.take());
                old.advance().ok()?;
            }
            std::cmp::Ordering::Greater => {
                added.extend(new.head.take());
                new.advance().ok()?;
            }
            std::cmp::Ordering::Equal => {
                if let (Some(a), Some(b)) = (&old.head, &new.head)
                    && (a.kind, a.fingerprint) != (b.kind, b.fingerprint)
                {
                    changes.changed.push(display_path(b));
                }
                old.advance().ok()?;
                new.advance().ok()?;
            }
        }
    }
    match (old.outside_dockerfile, new.outside_dockerfile) {
        (Some(a), Some(b)) if a.path == b.path => {
            if a.fingerprint != b.fingerprint {
                changes.changed.push(display_path(&b));
            }
        }
        (a, b) => {
            removed.extend(a);
            added.extend(b);
        }
    }
    changes.added = without_implied_directories(added);
    changes.removed = without_implied_directories(removed);
    Some(changes)
}

/// One manifest read in step with the other; its outside Dockerfile record set aside.
struct Side<'a> {
    reader: &'a mut ManifestReader,
    head: Option<ManifestRecord>,
    outside_dockerfile: Option<ManifestRecord>,
}

impl<'a> Side<'a> {
    fn new(reader: &'a mut ManifestReader) -> Result<Self, Damaged> {
        let mut side = Side {
            reader,
            head: None,
            outside_dockerfile: None,
        };
        side.advance()?;
        Ok(side)
    }

    fn advance(&mut self) -> Result<(), Damaged> {
        self.head = match self.reader.next_record()? {
            Some(record) if record.kind == manifest::OUTSIDE_DOCKERFILE => {
                self.outside_dockerfile = Some(record);
                // The outside Dockerfile is the last record.
                None
            }
            other => other,
        };
        Ok(())
    }
}

fn display_path(record: &ManifestRecord) -> String {
    let path = String::from_utf8_lossy(&record.path);
    if record.kind == manifest::DIRECTORY {
        format!("{path}/")
    } else {
        path.into_owned()
    }
}

/// Drops an added (or removed) directory when an entry below it is added (or removed) too:
/// `static/logo.png added` says `static/` is new. The walk puts a directory right before
/// its entries.
fn without_implied_directories(records: Vec<ManifestRecord>) -> Vec<String> {
    let mut kept = Vec::with_capacity(records.len());
    for (index, record) in records.iter().enumerate() {
        let implied = record.kind == manifest::DIRECTORY
            && records.get(index + 1).is_some_and(|next| {
                next.path.len() > record.path.len()
                    && next.path.starts_with(&record.path)
                    && next.path[record.path.len()] == b'/'
            });
        if !implied {
            kept.push(display_path(record));
        }
    }
    kept
}

impl ContextChanges {
    /// How many paths differ.
    pub fn len(&self) -> usize {
        self.added.len() + self.changed.len() + self.removed.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// `3 files (app/main.go changed, static/logo.png added, old.txt removed)`, naming at most
    /// `first` of them (changed ones first, then added, then removed).
    pub fn summary(&self, first: usize) -> String {
        let total = self.len();
        if total == 0 {
            return "no files changed".to_owned();
        }
        let count = format!("{total} file{}", if total == 1 { "" } else { "s" });
        let named: Vec<String> = self
            .changed
            .iter()
            .map(|path| format!("{path} changed"))
            .chain(self.added.iter().map(|path| format!("{path} added")))
            .chain(self.removed.iter().map(|path| format!("{path} removed")))
            .take(first)
            .collect();
        if named.is_empty() {
            return count;
        }
        let more = total - named.len();
        let tail = if more > 0 {
            format!(" and {more} more")
        } else {
            String::new()
        };
        format!("{count} ({}{tail})", named.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::docker::context::BuildContext;
    use crate::docker::context::digest::digest_context_at;
    use std::fs;
    use std::os::unix::fs::PermissionsExt;
    use std::time::{Duration, SystemTime};

    struct Fixture {
        context: tempfile::TempDir,
        _state: tempfile::TempDir,
        files: ContextStateFiles,
    }

    impl Fixture {
        fn new(files: &[(&str, &str)]) -> Self {
            let context = tempfile::tempdir().unwrap();
            let state = tempfile::tempdir().unwrap();
            let fixture = Fixture {
                files: ContextStateFiles::new(state.path(), "shop", "web"),
                context,
                _state: state,
            };
            fixture.write(&[("Dockerfile", "FROM scratch\n")]);
            fixture.write(files);
            fixture
        }

        fn write(&self, files: &[(&str, &str)]) {
            for (path, contents) in files {
                let full = self.context.path().join(path);
                fs::create_dir_all(full.parent().unwrap()).unwrap();
                fs::write(full, contents).unwrap();
            }
        }

        fn path(&self, relative: &str) -> PathBuf {
            self.context.path().join(relative)
        }

        /// Digests as the build stage does (with the image's stat cache), as if a minute had
        /// passed since the files were written, so the cache trusts them.
        fn digest(&self) -> crate::docker::ContextDigest {
            self.digest_dockerfile(None)
        }

        fn digest_dockerfile(&self, dockerfile: Option<&Path>) -> crate::docker::ContextDigest {
            let context = BuildContext::open(self.context.path(), dockerfile).unwrap();
            let later = SystemTime::now() + Duration::from_secs(60);
            let digest = digest_context_at(&context, Some(self.files.stat_cache()), later).unwrap();
            assert_eq!(digest.stat_cache_warning, None);
            digest
        }

        /// A successful build of what the context holds now.
        fn build(&self) -> String {
            let digest = self.digest().digest;
            assert_eq!(
                record_built_manifest(&self.files, &digest).unwrap(),
                BuiltManifest::Recorded
            );
            digest
        }

        /// What `plan` says after digesting the context again.
        fn plan(&self) -> ContextChanges {
            self.digest();
            context_changes(&self.files).expect("both manifests are there")
        }
    }

    fn strs(list: &[String]) -> Vec<&str> {
        list.iter().map(String::as_str).collect()
    }

    fn lists(changes: &ContextChanges) -> (Vec<&str>, Vec<&str>, Vec<&str>) {
        (
            strs(&changes.changed),
            strs(&changes.added),
            strs(&changes.removed),
        )
    }

    #[test]
    fn a_changed_file_is_named_and_only_it_is_read_again() {
        let fixture = Fixture::new(&[("app/main.go", "package main"), ("big.bin", "x")]);
        let built = fixture.build();
        // Same size: only the content hash tells the change.
        fixture.write(&[("app/main.go", "package MAIN")]);
        let digest = fixture.digest();
        assert_eq!(
            digest.hashed_bytes,
            "package MAIN".len() as u64,
            "the stat cache vouches for every other file"
        );
        let changes = context_changes(&fixture.files).expect("manifests");
        assert_eq!(changes.built_digest, built);
        assert_eq!(changes.current_digest, digest.digest);
        assert_eq!(lists(&changes), (vec!["app/main.go"], vec![], vec![]));
    }

    #[test]
    fn an_added_file_in_a_new_directory_is_named_without_its_directory() {
        let fixture = Fixture::new(&[("a", "a")]);
        fixture.build();
        fixture.write(&[("static/logo.png", "png")]);
        assert_eq!(
            lists(&fixture.plan()),
            (vec![], vec!["static/logo.png"], vec![])
        );
    }

    #[test]
    fn a_removed_file_is_named() {
        let fixture = Fixture::new(&[("old.txt", "old"), ("keep", "k")]);
        fixture.build();
        fs::remove_file(fixture.path("old.txt")).unwrap();
        assert_eq!(lists(&fixture.plan()), (vec![], vec![], vec!["old.txt"]));
    }

    #[test]
    fn a_renamed_file_is_removed_under_its_old_name_and_added_under_the_new() {
        let fixture = Fixture::new(&[("src/a.rs", "fn a() {}")]);
        fixture.build();
        fs::rename(fixture.path("src/a.rs"), fixture.path("src/b.rs")).unwrap();
        assert_eq!(
            lists(&fixture.plan()),
            (vec![], vec!["src/b.rs"], vec!["src/a.rs"])
        );
    }

    #[test]
    fn a_change_to_an_ignored_file_is_not_a_change() {
        let fixture = Fixture::new(&[(".dockerignore", "logs\n"), ("logs/today", "1")]);
        let built = fixture.build();
        fixture.write(&[("logs/today", "2"), ("logs/tomorrow", "3")]);
        let changes = fixture.plan();
        assert!(changes.is_empty(), "{changes:?}");
        assert_eq!(changes.current_digest, built);
        assert_eq!(changes.summary(3), "no files changed");
    }

    #[test]
    fn nothing_changed_is_an_empty_list() {
        let fixture = Fixture::new(&[("a", "a"), ("d/b", "b")]);
        fixture.build();
        let changes = fixture.plan();
        assert!(changes.is_empty(), "{changes:?}");
    }

    #[test]
    fn a_mode_change_and_a_removed_directory_are_named() {
        let fixture = Fixture::new(&[("run.sh", "echo"), ("gone/x", "x"), ("gone/y", "y")]);
        fixture.build();
        fs::set_permissions(fixture.path("run.sh"), fs::Permissions::from_mode(0o755)).unwrap();
        fs::remove_dir_all(fixture.path("gone")).unwrap();
        assert_eq!(
            lists(&fixture.plan()),
            (vec!["run.sh"], vec![], vec!["gone/x", "gone/y"])
        );
        fs::create_dir(fixture.path("empty")).unwrap();
        assert_eq!(
            lists(&fixture.plan()).1,
            vec!["empty/"],
            "a new empty directory is named as one"
        );
    }

    #[test]
    fn a_dockerfile_outside_the_context_is_compared_too() {
        let outside = tempfile::tempdir().unwrap();
        let dockerfile = outside.path().join("app.Dockerfile");
        fs::write(&dockerfile, "FROM scratch\n").unwrap();
        let fixture = Fixture::new(&[("a", "a")]);
        let digest = fixture.digest_dockerfile(Some(&dockerfile)).digest;
        record_built_manifest(&fixture.files, &digest).unwrap();
        fs::write(&dockerfile, "FROM busybox\n").unwrap();
        fixture.digest_dockerfile(Some(&dockerfile));
        let changes = context_changes(&fixture.files).expect("manifests");
        let canonical = fs::canonicalize(&dockerfile).unwrap();
        assert_eq!(changes.changed, vec![canonical.display().to_string()]);
        assert!(changes.added.is_empty() && changes.removed.is_empty());
    }

    #[test]
    fn the_summary_names_the_first_few_and_counts_the_rest() {
        let changes = ContextChanges {
            built_digest: String::new(),
            current_digest: String::new(),
            added: vec!["static/logo.png".into()],
            changed: vec!["app/main.go".into()],
            removed: vec!["old.txt".into(), "older.txt".into()],
        };
        assert_eq!(
            changes.summary(3),
            "4 files (app/main.go changed, static/logo.png added, old.txt removed and 1 more)"
        );
        assert_eq!(
            changes.summary(10),
            "4 files (app/main.go changed, static/logo.png added, old.txt removed, older.txt \
             removed)"
        );
        assert_eq!(changes.summary(0), "4 files");
    }

    #[test]
    fn no_build_on_record_means_no_answer() {
        let fixture = Fixture::new(&[("a", "a")]);
        fixture.digest();
        assert_eq!(context_changes(&fixture.files), None);
    }

    #[test]
    fn a_build_of_other_contents_clears_the_record_instead_of_keeping_a_stale_one() {
        let fixture = Fixture::new(&[("a", "a")]);
        let first = fixture.build();
        fixture.write(&[("a", "b")]);
        fixture.digest();
        assert_eq!(
            record_built_manifest(&fixture.files, &first).unwrap(),
            BuiltManifest::Unavailable,
            "the latest digest is not the one built"
        );
        assert_eq!(context_changes(&fixture.files), None);
    }

    #[test]
    fn a_damaged_manifest_means_no_answer() {
        let fixture = Fixture::new(&[("a", "a"), ("b", "b")]);
        fixture.build();
        fixture.write(&[("a", "changed")]);
        fixture.digest();
        let built = fixture.files.built_manifest();
        let mut bytes = fs::read(&built).unwrap();
        bytes.truncate(bytes.len() - 10);
        fs::write(&built, bytes).unwrap();
        assert_eq!(context_changes(&fixture.files), None);
    }

    #[test]
    fn the_stat_cache_is_where_the_build_stage_keeps_it() {
        let files = ContextStateFiles::new(Path::new(".shipit"), "shop", "web");
        assert_eq!(
            files.stat_cache(),
            Path::new(".shipit/cache/context/shop-web.stat")
        );
    }
}
