//! `FsRunStore`: the `RunStore` contract (see `run_store.rs`) kept in files under the state dir:
//!
//! ```text
//! runs/<id>/journal.json     the record, replaced atomically and synced on every write
//! runs/<id>/summary.json     its summary, written after it, for cheap listing
//! runs/<id>/write.lock       flock held around revision check + rename, across processes
//! runs/<id>/lock             flock held by lock_run, the holder's pid inside
//! locks/<pipeline>/<target>.lock   flock held by try_lock_target, run id and pid inside
//! ```
//!
//! All file work runs on tokio's blocking pool, never on the async workers; only serialising a
//! record happens before it.

mod holds;
mod layout;
mod reads;
mod summary_file;
mod writes;

#[cfg(test)]
mod disk_full_tests;
#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};

use async_trait::async_trait;

use super::blocking_pool::blocking;
use super::encoded_record::EncodedRecord;
use super::error::JournalError;
use super::record::RunRecord;
use super::run_store::{Lease, RunStore};
use super::summary::ListedRun;
use layout::Layout;

pub struct FsRunStore {
    layout: Layout,
}

impl FsRunStore {
    /// `root` is the state dir (`.shipit`), laid out as journals have always been.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        FsRunStore {
            layout: Layout::new(root.into()),
        }
    }

    pub fn root(&self) -> &Path {
        self.layout.root()
    }
}

#[async_trait]
impl RunStore for FsRunStore {
    async fn create(&self, run: &mut RunRecord) -> Result<(), JournalError> {
        let files = self.layout.run(&run.run_id)?;
        let encoded = EncodedRecord::at(run, 1)?;
        let layout = self.layout.clone();
        blocking(move || writes::create(&layout, &files, encoded)).await?;
        run.revision = 1;
        Ok(())
    }

    async fn save(&self, run: &mut RunRecord) -> Result<(), JournalError> {
        let files = self.layout.run(&run.run_id)?;
        let read = run.revision;
        let next = read.checked_add(1).ok_or_else(|| JournalError::Corrupt {
            path: files.journal.clone(),
            message: format!("its revision {read} cannot grow any further"),
        })?;
        let encoded = EncodedRecord::at(run, next)?;
        let layout = self.layout.clone();
        blocking(move || writes::save(&layout, &files, read, encoded)).await?;
        run.revision = next;
        Ok(())
    }

    async fn load(&self, run_id: &str) -> Result<RunRecord, JournalError> {
        let files = self.layout.run(run_id)?;
        let layout = self.layout.clone();
        blocking(move || reads::load(&layout, &files)).await
    }

    async fn list(&self) -> Result<Vec<ListedRun>, JournalError> {
        let layout = self.layout.clone();
        blocking(move || reads::list(&layout)).await
    }

    async fn runs_of(&self, pipeline: &str) -> Result<Vec<RunRecord>, JournalError> {
        let layout = self.layout.clone();
        let pipeline = pipeline.to_owned();
        blocking(move || reads::runs_of(&layout, &pipeline)).await
    }

    async fn lock_run(&self, run_id: &str) -> Result<Lease, JournalError> {
        let files = self.layout.run(run_id)?;
        let layout = self.layout.clone();
        blocking(move || holds::lock_run(&layout, &files)).await
    }

    async fn try_lock_target(
        &self,
        pipeline: &str,
        target: &str,
        run_id: &str,
    ) -> Result<Lease, JournalError> {
        let layout = self.layout.clone();
        let (pipeline, target, run_id) =
            (pipeline.to_owned(), target.to_owned(), run_id.to_owned());
        blocking(move || holds::try_lock_target(&layout, &pipeline, &target, &run_id)).await
    }
}
