//! What a run listing shows of each run: a few fields of its record, cheap to keep beside it.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::error::JournalError;
use super::record::{RunRecord, RunStatus};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunSummary {
    pub run_id: String,
    pub pipeline: String,
    pub status: RunStatus,
    pub started_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub git_sha: Option<String>,
    /// Stages that succeeded or were skipped.
    pub stages_done: usize,
    pub stages_total: usize,
    /// The revision of the record this summary was taken from.
    pub revision: u64,
}

impl RunSummary {
    pub fn of(run: &RunRecord) -> Self {
        RunSummary {
            run_id: run.run_id.clone(),
            pipeline: run.pipeline.clone(),
            status: run.status,
            started_at: run.started_at,
            finished_at: run.finished_at,
            git_sha: run.git.sha.clone(),
            stages_done: run.stages.iter().filter(|s| s.status.is_success()).count(),
            stages_total: run.stages.len(),
            revision: run.revision,
        }
    }
}

/// One entry of `RunStore::list`: a run's summary, or why the run cannot be read.
#[derive(Debug)]
pub enum ListedRun {
    Readable(RunSummary),
    Unreadable { run_id: String, error: JournalError },
}

impl ListedRun {
    pub fn run_id(&self) -> &str {
        match self {
            ListedRun::Readable(summary) => &summary.run_id,
            ListedRun::Unreadable { run_id, .. } => run_id,
        }
    }
}
