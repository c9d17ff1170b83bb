//! The run journal: what happened in each run, stage by stage, written the moment it happens so
//! that an interrupted run can be resumed and unchanged work skipped.
//!
//! - `record.rs`: what a run's journal holds, and the legal transitions of a stage's record.
//! - `RunStore` (`run_store.rs`, whose module docs are the contract every implementation
//!   keeps): revision-checked saves, cheap listing through summaries, holds on runs and deploy
//!   targets, so that several runs can share a store. `FsRunStore` (`fs_run_store/`) keeps it
//!   in files under the state dir; `SqliteRunStore` (`sqlite_store/`) in one SQLite database,
//!   for the daemon; every store runs the same conformance suite (`conformance.rs`).
//! - `file_holds.rs` and `lock_file.rs`: holds as `flock`ed files, shared by both stores.

pub(crate) mod blocking_pool;
#[cfg(test)]
pub(crate) mod conformance;
mod encoded_record;
mod error;
mod file_holds;
mod fs_run_store;
mod journal_file;
mod lock_file;
mod migrations;
pub(crate) mod postgres_store;
pub mod record;
mod run_id;
mod run_store;
pub(crate) mod sqlite_store;
mod summary;
mod summary_columns;

pub use error::JournalError;
pub use fs_run_store::FsRunStore;
pub use postgres_store::PostgresRunStore;
pub use record::{
    GitSnapshot, RunRecord, RunStatus, StageError, StageRecord, StageStatus, StopCause,
};
pub use run_id::{is_run_id, new_run_id};
pub use run_store::{Lease, RunStore};
pub use sqlite_store::SqliteRunStore;
pub use summary::{ListedRun, RunSummary};
