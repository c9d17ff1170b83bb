//! `SqliteRunStore`: the `RunStore` contract (see `run_store.rs`) kept in one SQLite database
//! file, for the daemon:
//!
//! ```text
//! <database>                          table `runs`: each record's JSON, its revision and its
//!                                     summary's columns beside it (see `schema.rs`)
//! <database>-holds/runs/<id>.lock     flock held by lock_run, the holder's pid inside
//! <database>-holds/targets/<pipeline>/<target>.lock
//!                                     flock held by try_lock_target, run id and pid inside
//! ```
//!
//! The database runs in WAL mode with `synchronous=FULL`, so a save that returned is on disk,
//! and a busy timeout, so that processes and connections sharing it wait for each other's
//! writes instead of failing. A save is one immediate transaction: the stored revision is
//! checked and the row replaced by `UPDATE … WHERE run_id = ? AND revision = ?`.
//!
//! The holds are not rows: a row cannot be released by the death of the process that wrote it.
//! They are advisory `flock`s on files beside the database, taken through the file store's
//! lock-file code (`file_holds.rs`), which the operating system releases when the lease is
//! dropped or its process dies.
//!
//! All SQLite and file work runs on tokio's blocking pool, never on the async workers.

pub(crate) mod connections;
mod records;
mod schema;

#[cfg(test)]
mod tests;

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;

use super::blocking_pool::blocking;
use super::encoded_record::EncodedRecord;
use super::error::JournalError;
use super::file_holds::{hold_run, hold_target};
use super::record::RunRecord;
use super::run_id::is_run_id;
use super::run_store::{Lease, RunStore};
use super::summary::ListedRun;
use connections::Connections;

pub struct SqliteRunStore {
    connections: Arc<Connections>,
    /// `<database>-holds`: the lock files of the holds.
    holds_dir: PathBuf,
}

impl SqliteRunStore {
    /// The store in the database file at `database`, created with its schema on first use.
    /// Nothing is opened here: every call opens or reuses a connection on the blocking pool.
    pub fn new(database: impl Into<PathBuf>) -> Self {
        let database = database.into();
        let mut holds_dir = OsString::from(database.as_os_str());
        holds_dir.push("-holds");
        SqliteRunStore {
            connections: Arc::new(Connections::new(database)),
            holds_dir: PathBuf::from(holds_dir),
        }
    }

    pub fn database(&self) -> &Path {
        self.connections.path()
    }
}

/// `InvalidRunId` unless `run_id` is one; every method checks this before anything else.
fn checked(run_id: &str) -> Result<String, JournalError> {
    if is_run_id(run_id) {
        Ok(run_id.to_owned())
    } else {
        Err(JournalError::InvalidRunId {
            run_id: run_id.to_owned(),
        })
    }
}

#[async_trait]
impl RunStore for SqliteRunStore {
    async fn create(&self, run: &mut RunRecord) -> Result<(), JournalError> {
        checked(&run.run_id)?;
        let encoded = EncodedRecord::at(run, 1)?;
        let connections = self.connections.clone();
        blocking(move || connections.with(|db| records::create(db, &encoded))).await?;
        run.revision = 1;
        Ok(())
    }

    async fn save(&self, run: &mut RunRecord) -> Result<(), JournalError> {
        checked(&run.run_id)?;
        let read = run.revision;
        let next = read.checked_add(1).ok_or_else(|| JournalError::Corrupt {
            path: self.database().to_path_buf(),
            message: format!(
                "run `{}` has revision {read}, which cannot grow any further",
                run.run_id
            ),
        })?;
        let encoded = EncodedRecord::at(run, next)?;
        let connections = self.connections.clone();
        blocking(move || connections.with(|db| records::save(db, read, &encoded))).await?;
        run.revision = next;
        Ok(())
    }

    async fn load(&self, run_id: &str) -> Result<RunRecord, JournalError> {
        let run_id = checked(run_id)?;
        let connections = self.connections.clone();
        blocking(move || connections.with(|db| records::load(db, &run_id))).await
    }

    async fn list(&self) -> Result<Vec<ListedRun>, JournalError> {
        let connections = self.connections.clone();
        blocking(move || connections.with(records::list)).await
    }

    async fn runs_of(&self, pipeline: &str) -> Result<Vec<RunRecord>, JournalError> {
        let pipeline = pipeline.to_owned();
        let connections = self.connections.clone();
        blocking(move || connections.with(|db| records::runs_of(db, &pipeline))).await
    }

    async fn lock_run(&self, run_id: &str) -> Result<Lease, JournalError> {
        let run_id = checked(run_id)?;
        let connections = self.connections.clone();
        let lock = self.holds_dir.join("runs").join(format!("{run_id}.lock"));
        blocking(move || {
            connections.with(|db| records::check_exists(db, &run_id))?;
            hold_run(&lock, &run_id)
        })
        .await
    }

    async fn try_lock_target(
        &self,
        pipeline: &str,
        target: &str,
        run_id: &str,
    ) -> Result<Lease, JournalError> {
        let run_id = checked(run_id)?;
        let locks_dir = self.holds_dir.join("targets");
        let (pipeline, target) = (pipeline.to_owned(), target.to_owned());
        blocking(move || hold_target(&locks_dir, &pipeline, &target, &run_id)).await
    }
}
