//! The run journal: what happened in each run, stage by stage, written the moment it happens so
//! that an interrupted run can be resumed and unchanged work skipped.

pub mod error;
pub(crate) mod journal_file;
pub mod record;
pub mod run_id;
pub mod store;

pub use error::JournalError;
pub use record::{GitSnapshot, RunRecord, RunStatus, StageError, StageRecord, StageStatus};
pub use run_id::{is_run_id, new_run_id};
pub use store::{FsJournalStore, JournalStore, RunListing};
