//! The run journal: what happened in each run, stage by stage, written the moment it happens so
//! that an interrupted run can be resumed and unchanged work skipped.

pub mod record;
pub mod store;

pub use record::{
    GitSnapshot, RunRecord, RunStatus, StageError, StageRecord, StageStatus, StopCause,
};
pub use store::{FsJournalStore, JournalError, JournalStore, RunListing, new_run_id};
