//! The daemon's worker: claims queued runs and executes them through the application layer,
//! at most `concurrency` at once, each in its own checkout.
//!
//! - A claim is a lease (`LEASE`), renewed by one heartbeat for all of this daemon's runs
//!   (`HEARTBEAT`). The heartbeat's answer names the runs asked to cancel (a newer push, the
//!   API): their builds stop, a deploy in flight finishes (`Stop::request_sparing_deploys`),
//!   and the run ends `Cancelled`.
//! - A claimed run that already has a journal run id was started by a daemon that died: it is
//!   resumed (`app::resume`), never started again, so a deploy it had begun is continued from
//!   its journal.
//! - Shutdown (the caller's token): nothing more is claimed; running runs start no new stage
//!   and their running stages get `shutdown_grace` to finish; then every stage is stopped.
//!   A run interrupted this way stays `Running` in the queue with its lease running out, and the
//!   next daemon resumes it. On start, the runs this daemon id left running are made
//!   claimable at once instead of waiting for their leases.

mod ending;
mod execution;
mod patient_store;
mod queue_log;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::checkout::Checkouts;
use super::config::DaemonConfig;
use super::http::Metrics;
use super::queue::{Queue, QueueId, QueueState};
use crate::app::{Stop, Workspace};
use crate::journal::{RunStore, StopCause};
use crate::stages::Executors;
use patient_store::{Patience, PatientStore};

/// How long a claim lasts without a heartbeat.
const LEASE: Duration = Duration::from_secs(30);
/// How often leases are renewed and cancels picked up: three beats per lease.
const HEARTBEAT: Duration = Duration::from_secs(10);
/// How often the queue is asked for work when nothing else happens.
const POLL: Duration = Duration::from_secs(1);

/// The worker's timings and name; `for_config` gives the daemon's, tests shorten them.
#[derive(Debug, Clone)]
pub struct WorkerSettings {
    /// This daemon's name in the queue (`claimed_by`): the same across restarts, so that a
    /// restarted daemon takes back the runs it left at once.
    pub daemon_id: String,
    pub lease: Duration,
    pub heartbeat: Duration,
    pub poll: Duration,
}

impl WorkerSettings {
    /// The host's name and the work dir: one daemon per work dir per host.
    pub fn for_config(config: &DaemonConfig) -> Self {
        let host = std::fs::read_to_string("/etc/hostname")
            .map(|name| name.trim().to_owned())
            .ok()
            .filter(|name| !name.is_empty())
            .unwrap_or_else(|| "localhost".to_owned());
        WorkerSettings {
            daemon_id: format!("{host}:{}", config.work_dir.display()),
            lease: LEASE,
            heartbeat: HEARTBEAT,
            poll: POLL,
        }
    }
}

/// The running worker.
pub struct WorkerHandle {
    task: tokio::task::JoinHandle<()>,
}

impl WorkerHandle {
    /// Resolves once the worker stopped (after `shutdown` and the grace).
    pub async fn stopped(self) {
        let _ = self.task.await;
    }
}

/// One running run, as the heartbeat and the shutdown reach it.
struct RunControl {
    stop: Stop,
    cancelled: AtomicBool,
    /// Another daemon holds the run now: this execution stops and records nothing of its end.
    lost: AtomicBool,
}

pub(crate) struct Context {
    config: Arc<DaemonConfig>,
    queue: Arc<dyn Queue>,
    workspace: Workspace,
    checkouts: Checkouts,
    settings: WorkerSettings,
    /// Where the stages' durations go (`/metrics`).
    metrics: Arc<Metrics>,
    /// How the runs wait out an unreachable database: until the shutdown grace is over.
    patience: Patience,
    give_up: CancellationToken,
    running: Mutex<HashMap<QueueId, Arc<RunControl>>>,
    shutting_down: AtomicBool,
}

/// Starts the worker with the daemon's executors (Docker from the daemon's environment, ECS,
/// EKS); stops once `shutdown` is cancelled and the running runs drained.
pub fn start(
    config: Arc<DaemonConfig>,
    queue: Arc<dyn Queue>,
    store: Arc<dyn RunStore>,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) -> WorkerHandle {
    let executors = Executors::default_set(&config.work_dir.join("state"));
    let settings = WorkerSettings::for_config(&config);
    start_with(config, queue, store, executors, settings, metrics, shutdown)
}

/// `start` with the executors and settings given.
pub fn start_with(
    config: Arc<DaemonConfig>,
    queue: Arc<dyn Queue>,
    store: Arc<dyn RunStore>,
    executors: Executors,
    settings: WorkerSettings,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) -> WorkerHandle {
    let give_up = CancellationToken::new();
    let patience = Patience::new(give_up.clone());
    // A run's journal writes wait while the database is away, instead of failing the run.
    let store: Arc<dyn RunStore> = Arc::new(PatientStore::new(store, patience.clone()));
    let context = Arc::new(Context {
        checkouts: Checkouts::new(&config.work_dir),
        config,
        queue,
        workspace: Workspace { store, executors },
        settings,
        metrics,
        patience,
        give_up,
        running: Mutex::default(),
        shutting_down: AtomicBool::new(false),
    });
    WorkerHandle {
        task: tokio::spawn(work(context, shutdown)),
    }
}

impl Context {
    fn controls(&self) -> std::sync::MutexGuard<'_, HashMap<QueueId, Arc<RunControl>>> {
        self.running.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

async fn work(context: Arc<Context>, shutdown: CancellationToken) {
    release_own_leftovers(&context).await;
    let beats = CancellationToken::new();
    // The heartbeat is part of this task, not a task of its own: a worker that dies (or is
    // aborted) stops renewing its leases with it, so that another daemon can take its runs.
    let claims = async {
        let mut runs = JoinSet::new();
        claim_and_run(&context, &shutdown, &mut runs).await;
        drain(&context, &mut runs).await;
        beats.cancel();
    };
    tokio::join!(claims, heartbeat(context.clone(), beats.clone()));
}

/// Claims runs while there is room, until `shutdown`.
async fn claim_and_run(
    context: &Arc<Context>,
    shutdown: &CancellationToken,
    runs: &mut JoinSet<()>,
) {
    let concurrency = context.config.concurrency.max(1);
    loop {
        while runs.len() < concurrency && !shutdown.is_cancelled() {
            match context
                .queue
                .claim(&context.settings.daemon_id, context.settings.lease)
                .await
            {
                // This daemon's own run, still executing here, whose lease ran out while the
                // database was away: the claim renewed it; a second execution must not start.
                Ok(Some(run)) if context.controls().contains_key(&run.id) => {}
                Ok(Some(run)) => {
                    let control = Arc::new(RunControl {
                        stop: Stop::default(),
                        cancelled: AtomicBool::new(false),
                        lost: AtomicBool::new(false),
                    });
                    context.controls().insert(run.id, control.clone());
                    runs.spawn(execution::execute(context.clone(), run, control));
                }
                Ok(None) => break,
                Err(err) => {
                    tracing::warn!(error = %err, "failed to claim a run");
                    break;
                }
            }
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            Some(_) = runs.join_next(), if !runs.is_empty() => {}
            () = tokio::time::sleep(context.settings.poll) => {}
        }
    }
}

/// Lets the running runs finish their running stages for the grace, then stops them.
async fn drain(context: &Context, runs: &mut JoinSet<()>) {
    context.shutting_down.store(true, Ordering::SeqCst);
    for control in context.controls().values() {
        control.stop.request_drain(StopCause::Terminate);
    }
    let all_done = async { while runs.join_next().await.is_some() {} };
    if tokio::time::timeout(context.config.shutdown_grace, all_done)
        .await
        .is_err()
    {
        // Runs waiting for an unreachable database stop waiting: they stay resumable from
        // what their journal holds.
        context.give_up.cancel();
        for control in context.controls().values() {
            control.stop.request(StopCause::Terminate);
        }
        while runs.join_next().await.is_some() {}
    }
}

/// Renews the leases of the running runs and stops those asked to cancel, until `beats` ends.
async fn heartbeat(context: Arc<Context>, beats: CancellationToken) {
    loop {
        tokio::select! {
            () = beats.cancelled() => return,
            () = tokio::time::sleep(context.settings.heartbeat) => {}
        }
        let ids: Vec<QueueId> = context.controls().keys().copied().collect();
        if ids.is_empty() {
            continue;
        }
        let renewal = match context
            .queue
            .heartbeat(&context.settings.daemon_id, &ids, context.settings.lease)
            .await
        {
            Ok(renewal) => renewal,
            Err(err) => {
                tracing::warn!(error = %err, "failed to renew the leases");
                continue;
            }
        };
        for id in renewal.cancel {
            if let Some(control) = context.controls().get(&id) {
                control.cancelled.store(true, Ordering::SeqCst);
                control.stop.request_sparing_deploys(StopCause::Terminate);
            }
        }
        // Another daemon took these over after their leases ran out (this one could not
        // renew them for that long) and resumes them from their journals: this copy stops
        // everything, deploys included, which the other re-attaches to.
        for id in renewal.lost {
            if let Some(control) = context.controls().get(&id) {
                tracing::warn!(
                    run = id,
                    "another daemon took the run over; stopping this copy"
                );
                control.lost.store(true, Ordering::SeqCst);
                control.stop.request(StopCause::Terminate);
            }
        }
    }
}

/// Runs this daemon id left running in an earlier life (it died, or was stopped mid-run) are
/// made claimable now rather than when their leases run out: a heartbeat with a zero lease.
async fn release_own_leftovers(context: &Context) {
    const LOOK_BACK: usize = 1000;
    let own: Vec<QueueId> = match context.queue.list(LOOK_BACK).await {
        Ok(runs) => runs
            .into_iter()
            .filter(|run| {
                run.state == QueueState::Running
                    && run.claimed_by.as_deref() == Some(context.settings.daemon_id.as_str())
            })
            .map(|run| run.id)
            .collect(),
        Err(err) => {
            tracing::warn!(error = %err, "failed to list the runs left by this daemon");
            return;
        }
    };
    if !own.is_empty()
        && let Err(err) = context
            .queue
            .heartbeat(&context.settings.daemon_id, &own, Duration::ZERO)
            .await
    {
        tracing::warn!(error = %err, "failed to release the runs left by this daemon");
    }
}

#[cfg(test)]
mod tests;
