//! Text and JSON renderings of what the application layer returns: the plan, the run list and
//! one run. Pure functions from data to text, so they can be checked without a process.

use crate::app::PlanReport;
use crate::journal::{ListedRun, RunRecord};
use crate::report::result::RunResult;

pub(crate) fn plan_text(plan: &PlanReport) -> String {
    let mut out = format!("pipeline {} ({} stages)", plan.pipeline, plan.stages.len());
    let width = plan
        .stages
        .iter()
        .map(|s| s.stage.to_string().len())
        .max()
        .unwrap_or(0);
    let action_width = plan
        .stages
        .iter()
        .map(|s| s.action.as_str().len())
        .max()
        .unwrap_or(0);
    for stage in &plan.stages {
        out.push_str(&format!(
            "\n  {:<width$}  {:<action_width$}  {}",
            stage.stage.to_string(),
            stage.action.as_str(),
            stage.reason
        ));
        for detail in &stage.details {
            out.push_str(&format!(
                "\n  {:<width$}  {:<action_width$}  {detail}",
                "", ""
            ));
        }
    }
    out
}

pub(crate) fn plan_json(plan: &PlanReport) -> String {
    serde_json::to_string(plan).unwrap_or_else(|err| format!("{{\"error\":\"{err}\"}}"))
}

pub(crate) fn runs_json(listing: &[ListedRun]) -> String {
    let rows: Vec<_> = listing
        .iter()
        .map(|entry| match entry {
            ListedRun::Readable(run) => serde_json::json!({
                "run_id": run.run_id, "pipeline": run.pipeline, "status": run.status.as_str(),
                "started_at": run.started_at, "finished_at": run.finished_at, "git_sha": run.git_sha,
            }),
            ListedRun::Unreadable { run_id, error } => {
                serde_json::json!({"run_id": run_id, "error": error.to_string()})
            }
        })
        .collect();
    serde_json::Value::Array(rows).to_string()
}

pub(crate) fn runs_text(listing: &[ListedRun]) -> String {
    let lines: Vec<String> = listing
        .iter()
        .map(|entry| match entry {
            ListedRun::Readable(run) => format!(
                "{}  {:<11}  {}  {}/{} stages done  {}",
                run.run_id,
                run.status.as_str(),
                run.started_at.format("%Y-%m-%d %H:%M:%S"),
                run.stages_done,
                run.stages_total,
                run.pipeline
            ),
            ListedRun::Unreadable { run_id, error } => format!("{run_id}  unreadable   {error}"),
        })
        .collect();
    lines.join("\n")
}

/// The JSON result of a run (`--output json`, `--result-file`, `show --output json`).
pub(crate) fn result_json(record: &RunRecord, exit_code: i32) -> Result<String, serde_json::Error> {
    serde_json::to_string_pretty(&RunResult::new(record, exit_code))
}

pub(crate) fn show_text(record: &RunRecord, exit_code: i32) -> String {
    let mut out = format!(
        "run {} of pipeline {}: {} (exit {exit_code})",
        record.run_id,
        record.pipeline,
        record.status.as_str()
    );
    let mut line = |text: String| {
        out.push('\n');
        out.push_str(&text);
    };
    line(format!("  started  {}", record.started_at.to_rfc3339()));
    if let Some(finished) = record.finished_at {
        line(format!("  finished {}", finished.to_rfc3339()));
    }
    if let Some(sha) = &record.git.sha {
        let dirty = if record.git.dirty { " (dirty)" } else { "" };
        line(format!("  git      {sha}{dirty}"));
    }
    for stage in &record.stages {
        line(format!("  {}  {}", stage.stage, stage.status.as_str()));
        if let Some(reason) = &stage.reason {
            line(format!("      why: {reason}"));
        }
        if stage.attempts > 1 {
            line(format!("      attempts: {}", stage.attempts));
        }
        for (key, value) in &stage.outputs {
            let shown = value
                .as_str()
                .map(str::to_owned)
                .unwrap_or_else(|| value.to_string());
            line(format!("      {key}: {shown}"));
        }
        if let Some(error) = &stage.error {
            line(format!(
                "      error: {}",
                error.message.replace('\n', "\n             ")
            ));
            if let Some(hint) = &error.hint {
                line(format!("      hint: {hint}"));
            }
        }
    }
    out
}
