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

    /// The folder the deploy targets' lock files are kept in (see `file_holds.rs`).
    pub fn locks_dir(&self) -> PathBuf {
        self.root.join("locks")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
