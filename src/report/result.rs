//! The machine-readable result of a run: printed on stdout with `--output json` and written to
//! `--result-file`. It is the journal's record plus the exit code and durations.

use serde::Serialize;

use crate::journal::{RunRecord, StageRecord};

#[derive(Debug, Serialize)]
pub struct RunResult<'a> {
    pub run_id: &'a str,
    pub pipeline: &'a str,
    pub status: &'static str,
    pub exit_code: i32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub environment: Option<&'a str>,
    pub git: &'a crate::journal::GitSnapshot,
    pub started_at: chrono::DateTime<chrono::Utc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<chrono::DateTime<chrono::Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration_seconds: Option<f64>,
    pub stages: Vec<StageResult<'a>>,
}

#[derive(Debug, Serialize)]
pub struct StageResult<'a> {
    #[serde(flatten)]
    pub record: &'a StageRecord,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration_seconds: Option<f64>,
}

fn seconds(
    start: Option<chrono::DateTime<chrono::Utc>>,
    end: Option<chrono::DateTime<chrono::Utc>>,
) -> Option<f64> {
    let millis = (end? - start?).num_milliseconds();
    Some(millis as f64 / 1000.0)
}

impl<'a> RunResult<'a> {
    pub fn new(run: &'a RunRecord, exit_code: i32) -> Self {
        RunResult {
            run_id: &run.run_id,
            pipeline: &run.pipeline,
            status: run.status.as_str(),
            exit_code,
            environment: run.environment.as_deref(),
            git: &run.git,
            started_at: run.started_at,
            finished_at: run.finished_at,
            duration_seconds: seconds(Some(run.started_at), run.finished_at),
            stages: run
                .stages
                .iter()
                .map(|record| StageResult {
                    record,
                    duration_seconds: seconds(record.started_at, record.finished_at),
                })
                .collect(),
        }
    }
}
