//! The synchronous journal store the CLI uses today: files under `.shipit/runs/<id>/journal.json`.
//! The asynchronous `RunStore` (`run_store.rs`) replaces it once its callers have moved over.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use super::error::JournalError;
use super::journal_file::{Durability, JOURNAL_FILE, parse_record, read_if_present, replace_file};
use super::record::RunRecord;
use super::run_id::is_run_id;

/// One entry of a run listing: a readable journal, or the reason it is not.
#[derive(Debug)]
pub enum RunListing {
    Readable(Box<RunRecord>),
    Unreadable { run_id: String, error: JournalError },
}

pub trait JournalStore: Send + Sync {
    /// Writes the whole record atomically: a reader sees the old record or the new one.
    fn save(&self, run: &RunRecord) -> Result<(), JournalError>;
    fn load(&self, run_id: &str) -> Result<RunRecord, JournalError>;
    /// Every run, oldest first.
    fn list(&self) -> Result<Vec<RunListing>, JournalError>;
}

/// Journals as JSON files, one folder per run.
pub struct FsJournalStore {
    root: PathBuf,
}

impl FsJournalStore {
    /// `root` is the `.shipit` folder.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        FsJournalStore { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn runs_dir(&self) -> PathBuf {
        self.root.join("runs")
    }

    pub fn run_dir(&self, run_id: &str) -> PathBuf {
        self.runs_dir().join(run_id)
    }

    fn journal_path(&self, run_id: &str) -> PathBuf {
        self.run_dir(run_id).join(JOURNAL_FILE)
    }

    /// Takes the store's exclusive lock for as long as the returned guard lives, so two
    /// processes never write the same journals at once.
    pub fn lock(&self) -> Result<StoreLock, JournalError> {
        let io = |action, source| JournalError::Io {
            action,
            path: self.root.clone(),
            source,
        };
        fs::create_dir_all(&self.root).map_err(|e| io("create", e))?;
        let path = self.root.join("lock");
        let mut file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|e| io("open the lock file in", e))?;
        match fs4::fs_std::FileExt::try_lock_exclusive(&file) {
            Ok(true) => {}
            Ok(false) => {
                let holder = fs::read_to_string(&path)
                    .ok()
                    .map(|pid| pid.trim().to_owned())
                    .filter(|pid| !pid.is_empty())
                    .map(|pid| format!(" (pid {pid})"))
                    .unwrap_or_default();
                return Err(JournalError::Busy {
                    dir: self.root.clone(),
                    holder,
                });
            }
            Err(e) => return Err(io("lock", e)),
        }
        file.set_len(0).ok();
        let _ = write!(file, "{}", std::process::id());
        Ok(StoreLock { _file: file })
    }
}

/// Holds the store's lock; dropping it (or the process dying) releases it.
pub struct StoreLock {
    _file: File,
}

impl JournalStore for FsJournalStore {
    fn save(&self, run: &RunRecord) -> Result<(), JournalError> {
        let dir = self.run_dir(&run.run_id);
        fs::create_dir_all(&dir).map_err(|source| JournalError::Io {
            action: "create",
            path: dir.clone(),
            source,
        })?;
        let bytes = serde_json::to_vec_pretty(run)?;
        replace_file(&self.journal_path(&run.run_id), &bytes, Durability::Synced)?;
        Ok(())
    }

    fn load(&self, run_id: &str) -> Result<RunRecord, JournalError> {
        let unknown = || JournalError::UnknownRun {
            run_id: run_id.to_owned(),
            dir: self.runs_dir(),
        };
        if !is_run_id(run_id) {
            return Err(unknown());
        }
        let path = self.journal_path(run_id);
        let bytes = read_if_present(&path)?.ok_or_else(unknown)?;
        parse_record(&path, run_id, &bytes)
    }

    fn list(&self) -> Result<Vec<RunListing>, JournalError> {
        let dir = self.runs_dir();
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => {
                return Err(JournalError::Io {
                    action: "list",
                    path: dir,
                    source,
                });
            }
        };
        let mut ids: Vec<String> = entries
            .filter_map(|e| e.ok())
            .filter(|e| e.path().is_dir())
            .filter_map(|e| e.file_name().to_str().map(str::to_owned))
            .collect();
        // Run ids start with their UTC start time, so name order is time order.
        ids.sort();
        Ok(ids
            .into_iter()
            .map(|id| match self.load(&id) {
                Ok(record) => RunListing::Readable(Box::new(record)),
                Err(error) => RunListing::Unreadable { run_id: id, error },
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::record::{GitSnapshot, JOURNAL_FORMAT, RunStatus, StageRecord};
    use crate::plan::{Selection, StageId};

    fn run(id: &str) -> RunRecord {
        RunRecord {
            format: JOURNAL_FORMAT,
            revision: 0,
            run_id: id.into(),
            pipeline: "p".into(),
            pipeline_file: "shipit.yaml".into(),
            pipeline_digest: "d".into(),
            environment: None,
            selection: Selection::default(),
            git: GitSnapshot {
                sha: None,
                branch: None,
                dirty: false,
            },
            status: RunStatus::Running,
            started_at: chrono::Utc::now(),
            finished_at: None,
            stopped_by: None,
            stages: vec![StageRecord::pending(StageId::build("web"))],
        }
    }

    #[test]
    fn saved_runs_load_back_and_list_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let store = FsJournalStore::new(dir.path());
        store.save(&run("20260101-000002-aaaa")).unwrap();
        store.save(&run("20260101-000001-bbbb")).unwrap();
        assert_eq!(
            store.load("20260101-000002-aaaa").unwrap(),
            run_with_time(&store, "20260101-000002-aaaa")
        );
        let ids: Vec<String> = store
            .list()
            .unwrap()
            .into_iter()
            .map(|l| match l {
                RunListing::Readable(r) => r.run_id,
                RunListing::Unreadable { run_id, .. } => run_id,
            })
            .collect();
        assert_eq!(ids, ["20260101-000001-bbbb", "20260101-000002-aaaa"]);
    }

    fn run_with_time(store: &FsJournalStore, id: &str) -> RunRecord {
        store.load(id).unwrap()
    }

    #[test]
    fn a_truncated_journal_is_reported_and_left_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let store = FsJournalStore::new(dir.path());
        store.save(&run("r1")).unwrap();
        let path = store.journal_path("r1");
        let text = fs::read_to_string(&path).unwrap();
        fs::write(&path, &text[..text.len() / 2]).unwrap();
        let err = store.load("r1").unwrap_err();
        assert!(matches!(err, JournalError::Corrupt { .. }), "{err}");
        assert_eq!(fs::read_to_string(&path).unwrap(), text[..text.len() / 2]);
        assert!(matches!(
            store.list().unwrap()[0],
            RunListing::Unreadable { .. }
        ));
    }

    #[test]
    fn unknown_and_path_like_run_ids_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = FsJournalStore::new(dir.path());
        assert!(matches!(
            store.load("nope"),
            Err(JournalError::UnknownRun { .. })
        ));
        assert!(matches!(
            store.load("../../etc"),
            Err(JournalError::UnknownRun { .. })
        ));
    }

    #[test]
    fn the_lock_is_exclusive() {
        let dir = tempfile::tempdir().unwrap();
        let store = FsJournalStore::new(dir.path());
        let first = store.lock().unwrap();
        assert!(matches!(store.lock(), Err(JournalError::Busy { .. })));
        drop(first);
        assert!(store.lock().is_ok());
    }
}
