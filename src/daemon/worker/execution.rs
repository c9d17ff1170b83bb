//! One claimed run, from checkout to the queue's end state: check out the pushed commit, load
//! and confine the pipeline file, run or resume it through the application layer with the
//! repository's configured environment, and finish it in the queue.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::ending::{Ending, Ran, ending};
use super::queue_log::QueueLog;
use super::{Context, RunControl};
use crate::app::{self, EnvVars, ResumeOutcome, RunRequest};
use crate::daemon::checkout::confine;
use crate::daemon::config::RepositoryConfig;
use crate::daemon::http::StageLabels;
use crate::daemon::queue::{QueueError, QueuedRun};
use crate::exit;
use crate::journal::{JournalError, RunRecord, RunStatus, StageStatus, new_run_id};
use crate::plan::Selection;

pub(super) async fn execute(context: Arc<Context>, run: QueuedRun, control: Arc<RunControl>) {
    let id = run.id;
    let repository = context
        .config
        .repositories
        .iter()
        .find(|r| r.name == run.run.repository)
        .cloned();
    let masks = repository
        .as_ref()
        .map(|r| r.env.iter().map(|(_, v)| v.expose().to_owned()).collect())
        .unwrap_or_default();
    let (log, writer) = QueueLog::start(
        context.queue.clone(),
        context.settings.daemon_id.clone(),
        id,
        masks,
        context.patience.clone(),
    );
    if run.cancel_requested {
        control.cancelled.store(true, Ordering::SeqCst);
    }
    let ran = if control.cancelled.load(Ordering::SeqCst) {
        // Asked to cancel before this daemon began (or resumed) it: nothing starts.
        Ran::NotStarted {
            message: "cancelled before it started".to_owned(),
            exit_code: exit::INTERRUPTED_SIGTERM,
        }
    } else {
        match repository {
            Some(repository) => attempt(&context, &run, &repository, &control, &log).await,
            None => Ran::NotStarted {
                message: format!(
                    "repository {} is not in the daemon's configuration",
                    run.run.repository
                ),
                exit_code: exit::INVALID_INPUT,
            },
        }
    };
    if let Ran::NotStarted { message, .. } = &ran {
        log.line(&format!("error: {message}"));
    }
    drop(log);
    writer.finished().await;

    let cancel_reason = if control.cancelled.load(Ordering::SeqCst) {
        let reason = context.queue.get(id).await.ok().and_then(|r| r.message);
        Some(reason.unwrap_or_else(|| "cancel requested".to_owned()))
    } else {
        None
    };
    let shutting_down = context.shutting_down.load(Ordering::SeqCst);
    if control.lost.load(Ordering::SeqCst) {
        // The daemon that took the run over records its end; its checkout here has served.
        if let Err(err) = context.checkouts.remove(id).await {
            tracing::warn!(run = id, error = %err, "failed to remove the run's checkout");
        }
        context.controls().remove(&id);
        return;
    }
    match ending(ran, cancel_reason, shutting_down) {
        Ending::Finish(finished) => {
            // The end waits for an unreachable database too: a run that ended is recorded
            // as ended, not left for another daemon to resume.
            let recorded = context
                .patience
                .call("record the run's end", QueueError::is_unavailable, || {
                    context
                        .queue
                        .finish(&context.settings.daemon_id, id, finished.clone())
                })
                .await;
            match recorded {
                Ok(()) => {}
                Err(QueueError::LeaseLost { .. }) => {
                    // A try whose answer was lost with the connection may have recorded the
                    // end already: then the run is ended, not taken over.
                    let ended_here = context.queue.get(id).await.is_ok_and(|stored| {
                        stored.finished_at.is_some()
                            && stored.claimed_by.as_deref()
                                == Some(context.settings.daemon_id.as_str())
                    });
                    if !ended_here {
                        tracing::warn!(run = id, "the run was taken over by another daemon")
                    }
                }
                Err(err) => {
                    tracing::warn!(run = id, error = %err, "failed to record the run's end")
                }
            }
            // The log is in the queue and the journal in the store: the files have served.
            if let Err(err) = context.checkouts.remove(id).await {
                tracing::warn!(run = id, error = %err, "failed to remove the run's checkout");
            }
        }
        Ending::LeaveResumable => {}
    }
    context.controls().remove(&id);
}

async fn attempt(
    context: &Context,
    run: &QueuedRun,
    repository: &RepositoryConfig,
    control: &RunControl,
    log: &QueueLog,
) -> Ran {
    let refused = |message: String| Ran::NotStarted {
        message,
        exit_code: exit::INVALID_INPUT,
    };
    let root = match context
        .checkouts
        .prepare(repository, &run.run.git_ref, &run.run.sha, run.id)
        .await
    {
        Ok(root) => root,
        Err(err) => {
            return Ran::NotStarted {
                message: err.to_string(),
                exit_code: exit::STAGE_FAILED,
            };
        }
    };
    let file = match pipeline_file(&root, &run.run.pipeline_file) {
        Ok(file) => file,
        Err(message) => return refused(message),
    };
    let pipeline = match app::load_pipeline(&file, run.run.environment.as_deref()) {
        Ok(pipeline) => pipeline,
        Err(err) => return refused(err.to_string()),
    };
    if let Err(escape) = confine(&pipeline, &root) {
        return refused(escape.to_string());
    }
    // The run's environment is the repository's entry in the daemon's configuration: never
    // the daemon's own process environment, never the pushed file.
    let env: EnvVars = repository
        .env
        .iter()
        .map(|(name, value)| (name.clone(), value.expose().to_owned()))
        .collect();
    let workspace = &context.workspace;
    // A run id in the queue is a run this or another daemon began: resumed from its journal.
    // Its journal may not exist yet (the daemon died between noting the id and creating the
    // run): then it begins under that id.
    let begun = match &run.run_id {
        Some(run_id) => match workspace.store.load(run_id).await {
            Ok(_) => Some(run_id.clone()),
            Err(JournalError::UnknownRun { .. }) => None,
            Err(err) => {
                return Ran::NotStarted {
                    message: format!("failed to read the journal of run {run_id}: {err}"),
                    exit_code: exit::STAGE_FAILED,
                };
            }
        },
        None => None,
    };
    // Stages that ended from here on ran in this daemon: theirs are the durations it reports.
    let since = chrono::Utc::now();
    let observe = |record: &RunRecord| {
        for (kind, status, seconds) in stage_durations(record, since) {
            let labels = StageLabels {
                repository: repository.name.clone(),
                kind: kind.to_owned(),
                status: status.to_owned(),
            };
            context.metrics.stage(labels, seconds);
        }
    };
    let outcome = match begun {
        Some(run_id) => app::resume(workspace, pipeline, Some(&run_id), env, log, &control.stop)
            .await
            .map(|resumed| match resumed {
                ResumeOutcome::Resumed(outcome) => {
                    observe(&outcome.record);
                    (outcome.record.status, outcome.exit_code)
                }
                ResumeOutcome::AlreadySucceeded { .. } => (RunStatus::Succeeded, exit::OK),
            }),
        None => {
            // The id goes to the queue before the journal has the run, so that no moment
            // exists in which a daemon's death leaves a journal run the queue does not name.
            let run_id = run
                .run_id
                .clone()
                .unwrap_or_else(|| new_run_id(chrono::Utc::now()));
            let noted = context
                .patience
                .call("note the run id", QueueError::is_unavailable, || {
                    context
                        .queue
                        .set_run_id(&context.settings.daemon_id, run.id, &run_id)
                })
                .await;
            if let Err(err) = noted {
                return Ran::NotStarted {
                    message: format!("failed to note the run id in the queue: {err}"),
                    exit_code: exit::STAGE_FAILED,
                };
            }
            let request = RunRequest {
                pipeline,
                selection: Selection::default(),
                env,
                run_id: Some(run_id),
            };
            app::run(workspace, request, log, &control.stop)
                .await
                .map(|outcome| {
                    observe(&outcome.record);
                    (outcome.record.status, outcome.exit_code)
                })
        }
    };
    match outcome {
        Ok((status, exit_code)) => Ran::Executed { status, exit_code },
        Err(err) => Ran::NotStarted {
            message: err.to_string(),
            exit_code: err.exit_code(),
        },
    }
}

/// The pipeline file named by the queued run, which must be a file inside the checkout.
fn pipeline_file(root: &Path, named: &str) -> Result<std::path::PathBuf, String> {
    let root = root
        .canonicalize()
        .map_err(|e| format!("failed to read the checkout: {e}"))?;
    if let Some(reason) = crate::daemon::checkout::lexical_escape(&root, &root, named) {
        return Err(format!("the pipeline file `{named}` {reason}"));
    }
    let file = root.join(named);
    match file.canonicalize() {
        Ok(real) if !real.starts_with(&root) => Err(format!(
            "the pipeline file `{named}` is a symlink leading out of the checkout"
        )),
        _ => Ok(file),
    }
}

/// The stages of `record` that ran and ended at or after `since`: their kind, how they ended
/// and how long they ran. Skipped stages did no work and are left out.
fn stage_durations(
    record: &RunRecord,
    since: chrono::DateTime<chrono::Utc>,
) -> Vec<(&'static str, &'static str, f64)> {
    record
        .stages
        .iter()
        .filter(|stage| !matches!(stage.status, StageStatus::Skipped | StageStatus::Pending))
        .filter_map(|stage| {
            let (started, finished) = (stage.started_at?, stage.finished_at?);
            (finished >= since).then(|| {
                let seconds = (finished - started).num_milliseconds().max(0) as f64 / 1000.0;
                (stage.stage.kind.as_str(), stage.status.as_str(), seconds)
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone, Utc};

    use super::*;
    use crate::journal::StageRecord;
    use crate::plan::StageId;

    fn stage(id: StageId, status: StageStatus, times: Option<(u32, u32)>) -> StageRecord {
        let at = |second| Utc.with_ymd_and_hms(2026, 12, 1, 9, 0, second).unwrap();
        StageRecord {
            status,
            started_at: times.map(|(start, _)| at(start)),
            finished_at: times.map(|(_, end)| at(end)),
            ..StageRecord::pending(id)
        }
    }

    #[test]
    fn only_stages_that_ran_and_ended_here_are_timed() {
        let record = RunRecord::for_test(
            "20261201T090000Z-a1b2",
            "shop",
            vec![
                // Ended before this daemon took the run over: another daemon timed it.
                stage(StageId::build("api"), StageStatus::Succeeded, Some((0, 5))),
                stage(
                    StageId::build("web"),
                    StageStatus::Succeeded,
                    Some((10, 14)),
                ),
                stage(StageId::push("web"), StageStatus::Skipped, Some((14, 14))),
                stage(
                    StageId::deploy("web"),
                    StageStatus::RolledBack,
                    Some((15, 45)),
                ),
                stage(StageId::deploy("worker"), StageStatus::Pending, None),
            ],
        );
        let since = Utc.with_ymd_and_hms(2026, 12, 1, 9, 0, 8).unwrap();
        assert_eq!(
            stage_durations(&record, since),
            vec![("build", "succeeded", 4.0), ("deploy", "rolled_back", 30.0)]
        );
    }
}
