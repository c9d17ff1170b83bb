//! Where the file store keeps each thing, and the checks that keep every path it builds inside
//! its state dir.

use std::path::{Path, PathBuf};

use crate::journal::error::JournalError;
use crate::journal::journal_file::JOURNAL_FILE;
use crate::journal::run_id::is_run_id;

/// The file a run's folder keeps its summary in.
const SUMMARY_FILE: &str = "summary.json";

#[derive(Debug, Clone)]
pub(super) struct Layout {
    /// The state dir, `.shipit` by default.
    root: PathBuf,
}

/// The files of one run, for an id that passed `is_run_id`.
#[derive(Debug, Clone)]
pub(super) struct RunFiles {
    pub run_id: String,
    pub dir: PathBuf,
    pub journal: PathBuf,
    pub summary: PathBuf,
    /// Held for a moment around each write: the revision check and the rename.
    pub write_lock: PathBuf,
    /// Held by `lock_run` for as long as a run is executed.
    pub run_lock: PathBuf,
}

impl Layout {
    pub fn new(root: PathBuf) -> Self {
        Layout { root }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn runs_dir(&self) -> PathBuf {
        self.root.join("runs")
    }

    /// The files of run `run_id`; `InvalidRunId` for anything that could be read as a path.
    pub fn run(&self, run_id: &str) -> Result<RunFiles, JournalError> {
        if !is_run_id(run_id) {
            return Err(JournalError::InvalidRunId {
                run_id: run_id.to_owned(),
            });
        }
        let dir = self.runs_dir().join(run_id);
        Ok(RunFiles {
            run_id: run_id.to_owned(),
            journal: dir.join(JOURNAL_FILE),
            summary: dir.join(SUMMARY_FILE),
            write_lock: dir.join("write.lock"),
            run_lock: dir.join("lock"),
            dir,
        })
    }

    pub fn unknown_run(&self, run_id: &str) -> JournalError {
        JournalError::UnknownRun {
            run_id: run_id.to_owned(),
            dir: self.runs_dir(),
        }
    }

    /// `locks/<pipeline>/<target>.lock`, with both names made safe as file names.
    pub fn target_lock(&self, pipeline: &str, target: &str) -> PathBuf {
        self.root
            .join("locks")
            .join(literal_file_name(pipeline))
            .join(format!("{}.lock", literal_file_name(target)))
    }
}

/// A file name that stands for `name` and for no other string: letters, digits, `-` and `_`
/// stay, as do dots after the first character; every other byte becomes `%XX`, and the empty
/// name becomes a lone `%` (every other `%` has two hex digits after it). So no name can climb
/// out of its folder, and two names never share a file.
fn literal_file_name(name: &str) -> String {
    if name.is_empty() {
        return "%".to_owned();
    }
    let mut file_name = String::with_capacity(name.len());
    for (index, byte) in name.bytes().enumerate() {
        let kept = byte.is_ascii_alphanumeric()
            || byte == b'-'
            || byte == b'_'
            || (byte == b'.' && index > 0);
        if kept {
            file_name.push(char::from(byte));
        } else {
            file_name.push_str(&format!("%{byte:02X}"));
        }
    }
    file_name
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn pipeline_file_names_are_kept_as_they_are() {
        for name in ["web", "shop-api", "a_b", "v1.2"] {
            assert_eq!(literal_file_name(name), name);
        }
    }

    #[test]
    fn other_names_cannot_climb_out_or_collide() {
        let names = [
            "", ".", "..", "../x", "a/b", "a%2Fb", "%", ".hidden", "ü", "a b",
        ];
        let file_names: Vec<String> = names.iter().map(|n| literal_file_name(n)).collect();
        for (name, file_name) in names.iter().zip(&file_names) {
            assert!(
                !file_name.is_empty() && !file_name.starts_with('.'),
                "{name:?} → {file_name}"
            );
            assert!(!file_name.contains('/'), "{name:?} → {file_name}");
        }
        let distinct: HashSet<&String> = file_names.iter().collect();
        assert_eq!(distinct.len(), names.len(), "{file_names:?}");
    }

    #[test]
    fn run_files_refuse_path_like_ids() {
        let layout = Layout::new(PathBuf::from("state"));
        for id in ["..", "../../etc", "a/b", ""] {
            assert!(
                matches!(layout.run(id), Err(JournalError::InvalidRunId { .. })),
                "{id:?}"
            );
        }
        assert_eq!(
            layout.run("r1").unwrap().journal,
            Path::new("state/runs/r1/journal.json")
        );
    }
}
