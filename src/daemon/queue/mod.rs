//! The daemon's durable queue: webhook deliveries and the runs they ask for.
//!
//! # The contract (every store keeps it; the SQLite and PostgreSQL stores share one conformance
//! suite)
//!
//! - `accept` records a delivery and its runs in one transaction, and only then does the HTTP
//!   handler answer 202: an acknowledged delivery is never lost. A delivery id seen before is
//!   `Accepted::Duplicate` and records nothing (redeliveries reuse their id).
//! - Queuing a run for a (repository, git ref) *supersedes* the older runs of that key: queued
//!   ones end `Superseded` at once; running ones get `cancel_requested`, which their worker
//!   sees at its next heartbeat and turns into a stop of unstarted and building stages (a
//!   deploy in flight is never cancelled; it finishes, then the run ends).
//! - `claim` hands out the oldest queued run whose key has no running run, to one daemon at a
//!   time (`FOR UPDATE SKIP LOCKED` on PostgreSQL, an immediate transaction on SQLite), with a
//!   lease. A running run whose lease expired (its daemon died) is claimable again, with its
//!   journal `run_id` kept so the new holder resumes it instead of starting over.
//! - `heartbeat` renews the leases a daemon holds and tells it which of them were asked to
//!   cancel. `finish` ends a run; only the lease holder can.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Serialize;

#[cfg(test)]
pub(crate) mod conformance;
mod group_commit;
mod postgres;
mod sqlite;

pub use postgres::PostgresQueue;
pub use sqlite::SqliteQueue;

/// A run's number in the queue (not its journal run id, which exists once it starts).
pub type QueueId = i64;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum HookSource {
    Github,
    Gitlab,
    Generic,
}

/// What a verified webhook delivery was, as recorded (the body itself is not kept).
#[derive(Debug, Clone)]
pub struct NewDelivery {
    pub source: HookSource,
    /// `X-GitHub-Delivery`, GitLab's `X-Gitlab-Event-UUID`, the generic `X-Shipit-Delivery`.
    pub delivery_id: String,
    /// `push`, `ping`, `tag_push`…
    pub event: String,
    pub repository: Option<String>,
    pub git_ref: Option<String>,
    pub sha: Option<String>,
    /// Why no run was queued, when none was (`[skip ci]`, branch not configured…).
    pub ignored_because: Option<String>,
    pub received_at: DateTime<Utc>,
}

/// A run to queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NewRun {
    pub repository: String,
    /// `refs/heads/main`, `refs/tags/v1`: with the repository, the supersession key.
    pub git_ref: String,
    /// The exact commit to check out (40 hex digits).
    pub sha: String,
    /// The pipeline file, relative to the repository root.
    pub pipeline_file: String,
    pub environment: Option<String>,
    pub trigger: Trigger,
}

// Deserialize: the stores keep the trigger as JSON and read it back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Trigger {
    Webhook {
        delivery_id: String,
    },
    /// Through the API, by the token whose sha256 prefix is named.
    Api {
        token: String,
    },
    Retry {
        of: QueueId,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Accepted {
    Recorded { runs: Vec<QueueId> },
    Duplicate,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum QueueState {
    Queued,
    Running,
    Succeeded,
    Failed,
    /// Cancelled through the API, or stopped by a newer push while it ran.
    Cancelled,
    /// A newer push to the same ref came before it started.
    Superseded,
}

/// A queued run as stored.
#[derive(Debug, Clone, Serialize)]
pub struct QueuedRun {
    pub id: QueueId,
    #[serde(flatten)]
    pub run: NewRun,
    pub state: QueueState,
    /// The journal's run id, set when execution starts; a reclaimed run resumes it.
    pub run_id: Option<String>,
    /// The daemon holding the lease while running.
    pub claimed_by: Option<String>,
    pub lease_until: Option<DateTime<Utc>>,
    pub cancel_requested: bool,
    pub exit_code: Option<i32>,
    /// One line on why it failed or was cancelled.
    pub message: Option<String>,
    pub queued_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
}

/// What a heartbeat tells its daemon, each in ascending id order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Renewal {
    /// Renewed, and asked to cancel (a newer push, the API).
    pub cancel: Vec<QueueId>,
    /// Not renewed: the daemon no longer holds them, and must stop running them.
    pub lost: Vec<QueueId>,
}

impl Renewal {
    /// The renewal of `asked` when `renewed` came back (id, cancel requested).
    pub(crate) fn of(asked: &[QueueId], renewed: &[(QueueId, bool)]) -> Renewal {
        let mut cancel: Vec<QueueId> = renewed
            .iter()
            .filter(|(_, cancel)| *cancel)
            .map(|(id, _)| *id)
            .collect();
        let mut lost: Vec<QueueId> = asked
            .iter()
            .copied()
            .filter(|id| !renewed.iter().any(|(r, _)| r == id))
            .collect();
        cancel.sort_unstable();
        lost.sort_unstable();
        lost.dedup();
        Renewal { cancel, lost }
    }
}

/// How a run ended, as its worker reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finished {
    pub state: QueueState,
    pub exit_code: Option<i32>,
    pub message: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// The database refused the statement, or failed it.
    #[error("failed to {action}: {message}")]
    Database {
        action: &'static str,
        message: String,
    },
    /// The database could not be reached, or the connection broke: the same call may succeed
    /// once it is back (a run waits for it rather than failing).
    #[error("failed to {action}: {message}")]
    Unavailable {
        action: &'static str,
        message: String,
    },
    #[error("no queued run {id}")]
    UnknownRun { id: QueueId },
    /// `finish` or `set_run_id` by a daemon that no longer holds the lease.
    #[error("run {id} is no longer held by this daemon")]
    LeaseLost { id: QueueId },
}

impl QueueError {
    /// Whether the queue's database could not be reached: worth waiting for.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, QueueError::Unavailable { .. })
    }
}

#[async_trait]
pub trait Queue: Send + Sync {
    /// Records a delivery and queues `runs`, in one durable transaction.
    async fn accept(
        &self,
        delivery: NewDelivery,
        runs: Vec<NewRun>,
    ) -> Result<Accepted, QueueError>;
    /// Queues a run that no delivery asked for (API trigger, retry).
    async fn enqueue(&self, run: NewRun) -> Result<QueueId, QueueError>;
    /// The oldest claimable run, now leased to `daemon` for `lease`.
    async fn claim(&self, daemon: &str, lease: Duration) -> Result<Option<QueuedRun>, QueueError>;
    /// Renews `daemon`'s leases on `ids`: which of them are asked to cancel, and which
    /// `daemon` no longer holds (another daemon took them after their lease ran out).
    async fn heartbeat(
        &self,
        daemon: &str,
        ids: &[QueueId],
        lease: Duration,
    ) -> Result<Renewal, QueueError>;
    /// Notes the journal run id once the run has one.
    async fn set_run_id(&self, daemon: &str, id: QueueId, run_id: &str) -> Result<(), QueueError>;
    async fn finish(&self, daemon: &str, id: QueueId, finished: Finished)
    -> Result<(), QueueError>;
    /// Asks a queued or running run to stop (a queued one ends `Cancelled` at once).
    async fn request_cancel(&self, id: QueueId) -> Result<QueuedRun, QueueError>;
    async fn get(&self, id: QueueId) -> Result<QueuedRun, QueueError>;
    /// The newest runs first, at most `limit`.
    async fn list(&self, limit: usize) -> Result<Vec<QueuedRun>, QueueError>;
    /// Runs by state, for `/metrics` (`queued`, `running`, …).
    async fn count_by_state(&self) -> Result<Vec<(QueueState, u64)>, QueueError>;
    /// Appends lines to a run's log (what its reporter printed, masked), numbered from 1 in
    /// the order appended; any daemon can serve them.
    async fn append_log(&self, id: QueueId, lines: &[String]) -> Result<(), QueueError>;
    /// The run's log lines numbered above `after`, in order, at most `limit`.
    async fn log_after(
        &self,
        id: QueueId,
        after: u64,
        limit: usize,
    ) -> Result<Vec<(u64, String)>, QueueError>;
    /// Reachable and writable, for `/readyz`.
    async fn ping(&self) -> Result<(), QueueError>;
}
