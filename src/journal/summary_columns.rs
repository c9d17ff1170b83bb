//! How a run's summary is kept in a database row: the columns beside each record that let a
//! listing read no record, the same on SQLite and PostgreSQL.

use std::path::Path;

use chrono::{DateTime, SecondsFormat, Utc};

use super::error::JournalError;
use super::record::RunStatus;
use super::summary::RunSummary;

/// RFC 3339 in UTC with nanoseconds: exact, and in time order as text.
pub(crate) fn timestamp(at: &DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Nanos, true)
}

/// A `runs` row's summary columns as both databases hold them (see `migrations.rs`).
pub(crate) struct StoredSummary {
    pub run_id: String,
    pub revision: i64,
    pub pipeline: String,
    pub status: String,
    pub started_at: String,
    pub finished_at: Option<String>,
    pub git_sha: Option<String>,
    pub stages_done: i64,
    pub stages_total: i64,
}

impl StoredSummary {
    /// The summary, or what is wrong with the columns.
    pub fn summary(self) -> Result<RunSummary, String> {
        let status: RunStatus =
            serde_json::from_value(serde_json::Value::String(self.status.clone()))
                .map_err(|_| format!("has an unknown status `{}`", self.status))?;
        let finished_at = self
            .finished_at
            .as_deref()
            .map(parse_timestamp)
            .transpose()?;
        let number = |n: i64, what: &str| {
            usize::try_from(n).map_err(|_| format!("has a negative {what} ({n})"))
        };
        Ok(RunSummary {
            status,
            started_at: parse_timestamp(&self.started_at)?,
            finished_at,
            git_sha: self.git_sha,
            stages_done: number(self.stages_done, "count of stages done")?,
            stages_total: number(self.stages_total, "count of stages")?,
            revision: u64::try_from(self.revision)
                .map_err(|_| format!("has a negative revision ({})", self.revision))?,
            run_id: self.run_id,
            pipeline: self.pipeline,
        })
    }
}

fn parse_timestamp(text: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(text)
        .map(|at| at.with_timezone(&Utc))
        .map_err(|e| format!("has a bad timestamp `{text}`: {e}"))
}

/// The summary's numbers as the databases' 64-bit integers.
pub(crate) struct Columns {
    pub revision: i64,
    pub stages_done: i64,
    pub stages_total: i64,
}

impl Columns {
    /// `database` names the store in errors: a file, or a PostgreSQL address.
    pub fn of(database: &Path, summary: &RunSummary) -> Result<Self, JournalError> {
        let count = |n: usize| {
            i64::try_from(n).map_err(|_| JournalError::Corrupt {
                path: database.to_path_buf(),
                message: format!("run `{}` has more stages than it can store", summary.run_id),
            })
        };
        Ok(Columns {
            revision: revision_column(database, summary.revision)?,
            stages_done: count(summary.stages_done)?,
            stages_total: count(summary.stages_total)?,
        })
    }
}

pub(crate) fn revision_column(database: &Path, revision: u64) -> Result<i64, JournalError> {
    i64::try_from(revision).map_err(|_| JournalError::Corrupt {
        path: database.to_path_buf(),
        message: format!("revision {revision} is larger than it can store"),
    })
}
