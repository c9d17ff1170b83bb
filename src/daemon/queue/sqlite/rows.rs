//! The queue's rows as SQLite holds them: states and triggers as text, timestamps as RFC 3339
//! text in UTC with nanoseconds (fixed width, so that text order is time order).

use chrono::{DateTime, SecondsFormat, Utc};
use rusqlite::Row;

use crate::daemon::queue::{HookSource, NewRun, QueueError, QueueState, QueuedRun, Trigger};

/// Every column of `queued_runs`, in the order `queued_run` reads them.
pub(super) const COLUMNS: &str = "id, repository, git_ref, sha, pipeline_file, environment, \
     trigger, state, run_id, claimed_by, lease_until, cancel_requested, exit_code, message, \
     queued_at, started_at, finished_at";

pub(super) fn timestamp(at: &DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Nanos, true)
}

pub(super) fn state_text(state: QueueState) -> &'static str {
    match state {
        QueueState::Queued => "queued",
        QueueState::Running => "running",
        QueueState::Succeeded => "succeeded",
        QueueState::Failed => "failed",
        QueueState::Cancelled => "cancelled",
        QueueState::Superseded => "superseded",
    }
}

pub(super) const ALL_STATES: [QueueState; 6] = [
    QueueState::Queued,
    QueueState::Running,
    QueueState::Succeeded,
    QueueState::Failed,
    QueueState::Cancelled,
    QueueState::Superseded,
];

pub(super) fn parse_state(text: &str) -> Result<QueueState, QueueError> {
    ALL_STATES
        .into_iter()
        .find(|state| state_text(*state) == text)
        .ok_or_else(|| damaged(format!("unknown run state `{text}`")))
}

pub(super) fn source_text(source: HookSource) -> &'static str {
    match source {
        HookSource::Github => "github",
        HookSource::Gitlab => "gitlab",
        HookSource::Generic => "generic",
    }
}

pub(super) fn trigger_text(trigger: &Trigger) -> Result<String, QueueError> {
    serde_json::to_string(trigger).map_err(|e| QueueError::Database {
        action: "encode a run's trigger",
        message: e.to_string(),
    })
}

fn parse_timestamp(text: &str) -> Result<DateTime<Utc>, QueueError> {
    DateTime::parse_from_rfc3339(text)
        .map(|at| at.with_timezone(&Utc))
        .map_err(|e| damaged(format!("timestamp `{text}`: {e}")))
}

fn optional_timestamp(text: Option<String>) -> Result<Option<DateTime<Utc>>, QueueError> {
    text.as_deref().map(parse_timestamp).transpose()
}

fn damaged(message: String) -> QueueError {
    QueueError::Database {
        action: "read a queued run",
        message,
    }
}

/// The columns of one row, read as SQLite types before they are checked.
pub(super) struct RawRun {
    id: i64,
    repository: String,
    git_ref: String,
    sha: String,
    pipeline_file: String,
    environment: Option<String>,
    trigger: String,
    state: String,
    run_id: Option<String>,
    claimed_by: Option<String>,
    lease_until: Option<String>,
    cancel_requested: bool,
    exit_code: Option<i32>,
    message: Option<String>,
    queued_at: String,
    started_at: Option<String>,
    finished_at: Option<String>,
}

pub(super) fn raw_run(row: &Row<'_>) -> rusqlite::Result<RawRun> {
    Ok(RawRun {
        id: row.get(0)?,
        repository: row.get(1)?,
        git_ref: row.get(2)?,
        sha: row.get(3)?,
        pipeline_file: row.get(4)?,
        environment: row.get(5)?,
        trigger: row.get(6)?,
        state: row.get(7)?,
        run_id: row.get(8)?,
        claimed_by: row.get(9)?,
        lease_until: row.get(10)?,
        cancel_requested: row.get(11)?,
        exit_code: row.get(12)?,
        message: row.get(13)?,
        queued_at: row.get(14)?,
        started_at: row.get(15)?,
        finished_at: row.get(16)?,
    })
}

impl RawRun {
    pub(super) fn checked(self) -> Result<QueuedRun, QueueError> {
        let trigger: Trigger = serde_json::from_str(&self.trigger)
            .map_err(|e| damaged(format!("the trigger of run {}: {e}", self.id)))?;
        Ok(QueuedRun {
            id: self.id,
            run: NewRun {
                repository: self.repository,
                git_ref: self.git_ref,
                sha: self.sha,
                pipeline_file: self.pipeline_file,
                environment: self.environment,
                trigger,
            },
            state: parse_state(&self.state)?,
            run_id: self.run_id,
            claimed_by: self.claimed_by,
            lease_until: optional_timestamp(self.lease_until)?,
            cancel_requested: self.cancel_requested,
            exit_code: self.exit_code,
            message: self.message,
            queued_at: parse_timestamp(&self.queued_at)?,
            started_at: optional_timestamp(self.started_at)?,
            finished_at: optional_timestamp(self.finished_at)?,
        })
    }
}

/// The open-run columns the decisions need: `id, repository, git_ref, state, lease_until`.
pub(super) fn open_run(
    row: &Row<'_>,
) -> rusqlite::Result<(i64, String, String, String, Option<String>)> {
    Ok((
        row.get(0)?,
        row.get(1)?,
        row.get(2)?,
        row.get(3)?,
        row.get(4)?,
    ))
}

pub(super) fn checked_open_run(
    (id, repository, git_ref, state, lease_until): (i64, String, String, String, Option<String>),
) -> Result<super::open_runs::OpenRun, QueueError> {
    Ok(super::open_runs::OpenRun {
        id,
        repository,
        git_ref,
        state: parse_state(&state)?,
        lease_until: optional_timestamp(lease_until)?,
    })
}
