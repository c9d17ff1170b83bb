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
use crate::daemon::queue::{QueueError, QueuedRun};
use crate::exit;
use crate::journal::{JournalError, RunStatus, new_run_id};
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
    match ending(ran, cancel_reason, shutting_down) {
        Ending::Finish(finished) => {
            match context
                .queue
                .finish(&context.settings.daemon_id, id, finished)
                .await
            {
                Ok(()) => {}
                Err(QueueError::LeaseLost { .. }) => {
                    tracing::warn!(run = id, "the run was taken over by another daemon")
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
    let outcome = match begun {
        Some(run_id) => app::resume(workspace, pipeline, Some(&run_id), env, log, &control.stop)
            .await
            .map(|resumed| match resumed {
                ResumeOutcome::Resumed(outcome) => (outcome.record.status, outcome.exit_code),
                ResumeOutcome::AlreadySucceeded { .. } => (RunStatus::Succeeded, exit::OK),
            }),
        None => {
            // The id goes to the queue before the journal has the run, so that no moment
            // exists in which a daemon's death leaves a journal run the queue does not name.
            let run_id = run
                .run_id
                .clone()
                .unwrap_or_else(|| new_run_id(chrono::Utc::now()));
            if let Err(err) = context
                .queue
                .set_run_id(&context.settings.daemon_id, run.id, &run_id)
                .await
            {
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
                .map(|outcome| (outcome.record.status, outcome.exit_code))
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
