//! The walk over the context directory: the single place deciding which entries
//! are in the build context, in the order the docker CLI sends them.
//!
//! The order is Go's `filepath.Walk`: depth first, a directory before its
//! children, siblings sorted bytewise. Symlinks are reported, never followed, so a
//! symlink loop or a link pointing out of the context cannot make the walk escape
//! or spin. Memory stays bounded by the depth of the tree times the width of its
//! widest directory (one sorted name list per open directory).

use std::ffi::OsString;
use std::fs::Metadata;
use std::io;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};

use super::ContextError;
use super::dockerignore::PatternMatcher;

/// What kind of file system object an entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EntryKind {
    Directory,
    File,
    Symlink,
    Fifo,
    CharDevice,
    BlockDevice,
}

/// One entry of the context, handed to the walk's visitor.
pub(crate) struct WalkEntry<'a> {
    /// Slash-separated path relative to the context root.
    pub(crate) relative: &'a [u8],
    pub(crate) absolute: &'a Path,
    pub(crate) metadata: &'a Metadata,
    pub(crate) kind: EntryKind,
}

struct OpenDir {
    absolute: PathBuf,
    relative: Vec<u8>,
    names: std::vec::IntoIter<OsString>,
}

/// What the walk does with one entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Hand it to the visitor (and walk into it, if it is a directory).
    Send,
    /// Walk into the directory without sending it: an exception may bring back
    /// something below it.
    EnterOnly,
    /// Neither send it nor look below it.
    Skip,
}

/// Decides which entries of the tree are in the context.
pub(crate) trait EntryFilter {
    /// `relative` is slash-separated; called in walk order, parents first.
    fn verdict(&mut self, relative: &[u8], is_dir: bool) -> Verdict;
}

/// `.dockerignore` as the CLI's tar writer applies it: an excluded directory is
/// never sent, but is entered when an exception names something below it.
struct TarFilter<'a>(&'a PatternMatcher);

impl EntryFilter for TarFilter<'_> {
    fn verdict(&mut self, relative: &[u8], is_dir: bool) -> Verdict {
        if !self.0.matches(relative) {
            Verdict::Send
        } else if is_dir && self.0.may_reinclude_below(relative) {
            Verdict::EnterOnly
        } else {
            Verdict::Skip
        }
    }
}

/// Walks `root`, calling `visit` for every entry the matcher keeps (the CLI's
/// tar semantics).
pub(crate) fn walk_context(
    root: &Path,
    matcher: &PatternMatcher,
    visit: &mut dyn FnMut(WalkEntry<'_>) -> Result<(), ContextError>,
) -> Result<(), ContextError> {
    walk_filtered(root, &mut TarFilter(matcher), visit)
}

/// Walks `root`, calling `visit` for every entry `filter` sends.
///
/// Sockets are skipped (neither the CLI's tar writer nor its file sync sends
/// them). An entry that disappears during the walk is skipped; any other I/O
/// error names its path.
pub(crate) fn walk_filtered(
    root: &Path,
    filter: &mut dyn EntryFilter,
    visit: &mut dyn FnMut(WalkEntry<'_>) -> Result<(), ContextError>,
) -> Result<(), ContextError> {
    let mut stack = vec![OpenDir {
        absolute: root.to_path_buf(),
        relative: Vec::new(),
        names: read_sorted_names(root)?.into_iter(),
    }];
    while let Some(top) = stack.last_mut() {
        let Some(name) = top.names.next() else {
            stack.pop();
            continue;
        };
        let absolute = top.absolute.join(&name);
        let mut relative = top.relative.clone();
        if !relative.is_empty() {
            relative.push(b'/');
        }
        relative.extend_from_slice(name.as_bytes());

        let metadata = match std::fs::symlink_metadata(&absolute) {
            Ok(metadata) => metadata,
            Err(err) if err.kind() == io::ErrorKind::NotFound => continue,
            Err(source) => {
                return Err(ContextError::Unreadable {
                    path: absolute,
                    source,
                });
            }
        };
        let file_type = metadata.file_type();
        let kind = if file_type.is_dir() {
            EntryKind::Directory
        } else if file_type.is_file() {
            EntryKind::File
        } else if file_type.is_symlink() {
            EntryKind::Symlink
        } else if file_type.is_fifo() {
            EntryKind::Fifo
        } else if file_type.is_char_device() {
            EntryKind::CharDevice
        } else if file_type.is_block_device() {
            EntryKind::BlockDevice
        } else {
            continue;
        };

        let is_dir = kind == EntryKind::Directory;
        let descend = match filter.verdict(&relative, is_dir) {
            Verdict::Skip => false,
            Verdict::EnterOnly => is_dir,
            Verdict::Send => {
                visit(WalkEntry {
                    relative: &relative,
                    absolute: &absolute,
                    metadata: &metadata,
                    kind,
                })?;
                is_dir
            }
        };
        if descend {
            let names = read_sorted_names(&absolute)?;
            stack.push(OpenDir {
                absolute,
                relative,
                names: names.into_iter(),
            });
        }
    }
    Ok(())
}

fn read_sorted_names(dir: &Path) -> Result<Vec<OsString>, ContextError> {
    let unreadable = |source| ContextError::Unreadable {
        path: dir.to_path_buf(),
        source,
    };
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(unreadable)? {
        names.push(entry.map_err(unreadable)?.file_name());
    }
    names.sort_unstable_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    Ok(names)
}

/// Orders two slash-separated relative paths the way the walk visits them
/// (component by component), which is not plain byte order: `a/b` comes before
/// `a.txt` because the directory `a` sorts before the file `a.txt`.
pub(crate) fn walk_order(a: &[u8], b: &[u8]) -> std::cmp::Ordering {
    let mut left = a.split(|byte| *byte == b'/');
    let mut right = b.split(|byte| *byte == b'/');
    loop {
        match (left.next(), right.next()) {
            (None, None) => return std::cmp::Ordering::Equal,
            (None, Some(_)) => return std::cmp::Ordering::Less,
            (Some(_), None) => return std::cmp::Ordering::Greater,
            (Some(x), Some(y)) => match x.cmp(y) {
                std::cmp::Ordering::Equal => continue,
                other => return other,
            },
        }
    }
}

/// Turns a relative path from the walk back into an `OsString`.
pub(crate) fn relative_os(relative: &[u8]) -> OsString {
    OsString::from_vec(relative.to_vec())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::{PermissionsExt, symlink};

    pub(crate) fn visited(root: &Path, ignore: &str) -> Vec<String> {
        let lines = super::super::dockerignore::parse_dockerignore(ignore.as_bytes());
        let patterns: Vec<String> = lines.into_iter().map(|line| line.pattern).collect();
        let matcher = PatternMatcher::new(&patterns).unwrap();
        let mut seen = Vec::new();
        walk_context(root, &matcher, &mut |entry| {
            seen.push(String::from_utf8_lossy(entry.relative).into_owned());
            Ok(())
        })
        .unwrap();
        seen
    }

    /// Creates `files` under `root`, each holding its own name; a name ending in `/` is an
    /// empty directory.
    pub(crate) fn tree(root: &Path, files: &[&str]) {
        for file in files {
            let path = root.join(file);
            if let Some(rest) = file.strip_suffix('/') {
                fs::create_dir_all(root.join(rest)).unwrap();
            } else {
                fs::create_dir_all(path.parent().unwrap()).unwrap();
                fs::write(path, file).unwrap();
            }
        }
    }

    #[test]
    fn entries_come_depth_first_with_sorted_siblings() {
        let dir = tempfile::tempdir().unwrap();
        tree(dir.path(), &["b", "a.txt", "a/z", "a/b/c", "A"]);
        assert_eq!(
            visited(dir.path(), ""),
            ["A", "a", "a/b", "a/b/c", "a/z", "a.txt", "b"]
        );
    }

    #[test]
    fn walk_order_agrees_with_the_walk() {
        let mut paths = vec!["b", "a.txt", "a/z", "a/b/c", "A", "a", "a/b"];
        paths.sort_by(|x, y| walk_order(x.as_bytes(), y.as_bytes()));
        assert_eq!(paths, ["A", "a", "a/b", "a/b/c", "a/z", "a.txt", "b"]);
    }

    #[test]
    fn excluded_directories_are_not_entered() {
        let dir = tempfile::tempdir().unwrap();
        tree(dir.path(), &["keep", "skip/a", "skip/b/c"]);
        assert_eq!(visited(dir.path(), "skip"), ["keep"]);
    }

    #[test]
    fn an_exception_below_an_excluded_directory_is_reached_without_the_directory() {
        let dir = tempfile::tempdir().unwrap();
        tree(dir.path(), &["docs/a.md", "docs/keep.md", "docs/sub/x"]);
        assert_eq!(visited(dir.path(), "docs\n!docs/keep.md"), ["docs/keep.md"]);
    }

    #[test]
    fn symlinks_are_reported_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        tree(dir.path(), &["real/file"]);
        symlink("real", dir.path().join("link")).unwrap();
        symlink("loop", dir.path().join("loop")).unwrap();
        symlink("/etc", dir.path().join("outside")).unwrap();
        assert_eq!(
            visited(dir.path(), ""),
            ["link", "loop", "outside", "real", "real/file"]
        );
    }

    #[test]
    fn an_unreadable_directory_is_an_error_naming_it() {
        if is_root() {
            return; // root reads everything; the permission check cannot fail.
        }
        let dir = tempfile::tempdir().unwrap();
        tree(dir.path(), &["locked/x"]);
        fs::set_permissions(dir.path().join("locked"), fs::Permissions::from_mode(0o000)).unwrap();
        let matcher = PatternMatcher::default();
        let err = walk_context(dir.path(), &matcher, &mut |_| Ok(())).unwrap_err();
        fs::set_permissions(dir.path().join("locked"), fs::Permissions::from_mode(0o755)).unwrap();
        assert_eq!(err.path(), Some(dir.path().join("locked").as_path()));
    }

    pub(crate) fn is_root() -> bool {
        std::fs::metadata("/proc/self")
            .map(|meta| std::os::unix::fs::MetadataExt::uid(&meta) == 0)
            .unwrap_or(false)
    }
}
