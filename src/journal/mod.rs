//! The run journal: what happened in each run, stage by stage, written the moment it happens so
//! that an interrupted run can be resumed and unchanged work skipped.
//!
//! Two store APIs live side by side while the callers move over:
//! - `JournalStore` / `FsJournalStore` (`store.rs`): synchronous, one writer per state dir.
//! - `RunStore` (`run_store.rs`, whose module docs are the contract every implementation
//!   keeps) / `FsRunStore` (`fs_run_store/`): asynchronous, revision-checked saves, cheap
//!   listing through summaries, holds on runs and deploy targets, so that several runs can
//!   share a store. The daemon's database stores implement the same trait and run the same
//!   conformance suite (`conformance.rs`).

#[cfg(test)]
pub(crate) mod conformance;
mod error;
mod fs_run_store;
mod journal_file;
pub mod record;
mod run_id;
mod run_store;
pub mod store;
mod summary;

pub use error::JournalError;
pub use fs_run_store::FsRunStore;
pub use record::{
    GitSnapshot, RunRecord, RunStatus, StageError, StageRecord, StageStatus, StopCause,
};
pub use run_id::{is_run_id, new_run_id};
pub use run_store::{Lease, RunStore};
pub use store::{FsJournalStore, JournalStore, RunListing};
pub use summary::{ListedRun, RunSummary};
