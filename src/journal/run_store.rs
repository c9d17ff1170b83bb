//! The contract every run store keeps: the file store (`FsRunStore`) today, the daemon's SQLite
//! and PostgreSQL stores later. The conformance suite (`conformance.rs`) checks each behaviour
//! below; a new store runs it with one line (see `run_store_conformance!`).
//!
//! # Records and revisions
//!
//! A store keeps whole `RunRecord`s, one per run id, each with a revision: the number of times
//! the store has written it.
//!
//! - `create` records a new run at revision 1 and sets `run.revision = 1`. It refuses an id that
//!   is already recorded (`RunExists`), also when two processes create the same id at once:
//!   exactly one of them succeeds.
//! - `save` is a compare-and-swap. It replaces the stored record only if the stored revision
//!   equals `run.revision` (the revision the writer read), stores the record at revision + 1
//!   and then sets `run.revision` to it. Otherwise it returns `Conflict { read, stored }` and
//!   writes nothing: two writers, in one process or in several, on one machine or on several,
//!   can never silently overwrite each other. The comparison and the write are one atomic step.
//!   A record that was never created is `UnknownRun`.
//! - A failed `create` or `save` leaves the stored record exactly as it was and `run.revision`
//!   unchanged, so the same call can be made again once the cause is gone (a full disk freed).
//!   A call whose future is dropped before it returns may or may not have written: the caller
//!   loads the record again before its next save.
//! - Writes are durable when they return: a crash or power cut after that loses nothing.
//! - Records written before revisions existed have revision 0 and are saved like any other.
//! - Reads never change anything; in particular a damaged record is reported (`Corrupt`),
//!   never repaired, replaced or removed, and a save over a damaged record is refused.
//!
//! # Run ids
//!
//! Ids come from `new_run_id`. Every method refuses a string that `is_run_id` rejects with
//! `InvalidRunId` before doing anything else, and an id that names no run with `UnknownRun`.
//!
//! # Listing
//!
//! - `list` returns every run as a `RunSummary` (`ListedRun::Readable`), or as
//!   `ListedRun::Unreadable` with the reason, in run id order, which is start time order since
//!   ids begin with their UTC start time. It must not read whole records: a store keeps the
//!   summary beside the record, written with it, and each summary carries the revision it was
//!   taken at and equals `RunSummary::of` the stored record.
//! - `runs_of(pipeline)` returns the whole readable records of that pipeline's runs, newest
//!   (highest id) first, and leaves unreadable ones out.
//!
//! # Holds
//!
//! Holds are advisory: they do not stop `save`, which has its own check. Each is a `Lease`;
//! dropping the lease releases the hold, and so does the holding process dying (a store whose
//! holds could outlive their process must expire them).
//!
//! - `lock_run(id)`: one holder per run at a time, for a run being executed or resumed. A
//!   second caller, in this process or another, gets `RunBusy` naming the holder's pid when it
//!   is known. The run must exist.
//! - `try_lock_target(pipeline, target, run_id)`: one holder per (pipeline, deploy target)
//!   pair, so two runs may build at once but never deploy the same target at once. Names are
//!   taken literally: any strings, including ones with `/` or `.`, name distinct targets, and
//!   never reach outside the store. It never waits: a held target is `TargetBusy` naming the
//!   holding run and pid when known; the caller waits and retries, saying so.
//!
//! # Threads
//!
//! Methods never block the async workers: file and database work runs on the blocking pool or
//! on an async driver.

use async_trait::async_trait;

use super::error::JournalError;
use super::record::RunRecord;
use super::summary::ListedRun;

#[async_trait]
pub trait RunStore: Send + Sync {
    /// Records a new run at revision 1; refuses an id already taken.
    async fn create(&self, run: &mut RunRecord) -> Result<(), JournalError>;
    /// Replaces the stored record if its revision is still `run.revision`, then bumps
    /// `run.revision`; otherwise `Conflict` and nothing is written.
    async fn save(&self, run: &mut RunRecord) -> Result<(), JournalError>;
    async fn load(&self, run_id: &str) -> Result<RunRecord, JournalError>;
    /// Every run, oldest first, as summaries, without reading whole records.
    async fn list(&self) -> Result<Vec<ListedRun>, JournalError>;
    /// The whole readable records of `pipeline`'s runs, newest first (the skip decisions need
    /// their stages' input digests and outputs).
    async fn runs_of(&self, pipeline: &str) -> Result<Vec<RunRecord>, JournalError>;
    /// This process's exclusive hold on one run; `RunBusy` while another holder has it.
    async fn lock_run(&self, run_id: &str) -> Result<Lease, JournalError>;
    /// An exclusive hold on a deploy target for run `run_id`; never waits: `TargetBusy` while
    /// another holder has it.
    async fn try_lock_target(
        &self,
        pipeline: &str,
        target: &str,
        run_id: &str,
    ) -> Result<Lease, JournalError>;
}

/// Sorts `runs` (in descending id order) newest first. An id names the second a run started,
/// then a random part, so runs of one second are put in the order they started; the sort is
/// stable, so equal start times keep their id order.
pub(crate) fn newest_first(runs: &mut [RunRecord]) {
    runs.sort_by_key(|run| std::cmp::Reverse(run.started_at));
}

/// A hold on a run or a deploy target, released when the lease is dropped.
#[must_use = "the hold is released as soon as the lease is dropped"]
pub struct Lease {
    /// Whatever keeps the hold: a locked file, a database session. Only its drop matters.
    _hold: Box<dyn std::any::Any + Send + Sync>,
}

impl Lease {
    /// A lease that keeps `hold` until it is dropped; dropping `hold` must release the hold.
    pub fn new(hold: impl Send + Sync + 'static) -> Self {
        Lease {
            _hold: Box::new(hold),
        }
    }
}

impl std::fmt::Debug for Lease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Lease")
    }
}
