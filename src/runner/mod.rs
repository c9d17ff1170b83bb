//! Runs a pipeline's stages: in dependency order, independent stages at the same time, each one
//! skipped when its inputs are unchanged and its outputs still exist, every step journaled the
//! moment it happens so that an interrupted run can be resumed.

mod history;
mod sink;
mod stop;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::sync::Mutex;

use crate::journal::{
    JournalError, Lease, RunRecord, RunStatus, RunStore, StageError, StageStatus,
};
use crate::pipeline::interpolate::{Values, interpolate_value};
use crate::pipeline::{DocPath, Pipeline};
use crate::plan::{Decision, Participation, StageGraph, StageHistory, StageId, StageKind, decide};
use crate::report::{Event, Reporter};
use crate::stages::{
    AwsIdentity, Executors, ImageArtifact, Outputs, StageConfig, StageContext, StageExecutor,
    StageFailure, StageInput,
};

pub use history::History;
use sink::JournalSink;
pub use stop::Stop;

/// How long a stage may take to wind down after Ctrl-C before it is abandoned (its journal
/// entry then says interrupted, and `shipit resume` picks it up).
const CANCEL_GRACE: Duration = Duration::from_secs(30);

/// How often a deploy waiting for its target asks again.
const TARGET_RETRY: Duration = Duration::from_millis(250);

/// How long a waiting deploy waits for the holder of its target to be named before it says
/// only that another run holds it.
const HOLDER_NAME_WAIT: Duration = Duration::from_secs(2);

pub struct Runner<'a> {
    pub pipeline: &'a Pipeline,
    pub graph: &'a StageGraph,
    pub store: &'a dyn RunStore,
    pub executors: &'a Executors,
    pub reporter: &'a dyn Reporter,
    /// env, vars, git and run.id; image outputs are added from the journal as stages finish.
    pub values: Values,
    pub history: History,
    pub participation: BTreeMap<StageId, Participation>,
    /// Asked by Ctrl-C, SIGTERM (or the daemon) to stop: no new stage starts.
    pub stop: Stop,
    /// Whose credentials the stages' AWS calls sign with.
    pub aws: AwsIdentity,
}

/// A stage ready to run or be skipped: its resolved configuration, inputs and decision.
pub struct PreparedStage {
    pub id: StageId,
    /// The configuration with its expressions resolved, as the input digest hashes it.
    pub resolved: Value,
    /// The same, typed and checked, as the executor receives it.
    pub config: StageConfig,
    pub upstream: BTreeMap<StageId, Outputs>,
    pub input_digest: String,
    pub decision: Decision,
    /// For a skip: the outputs being reused.
    pub reused_outputs: Outputs,
    /// What runs the stage.
    pub executor: Arc<dyn StageExecutor>,
    /// What the executor's fingerprint was, handed to it when it runs.
    pub fingerprint: Value,
}

/// The raw configuration a stage reads: `images.<name>` or `deploy.<name>`.
pub fn config_path(id: &StageId) -> DocPath {
    match id.kind {
        StageKind::Build | StageKind::Push => DocPath::root().key("images").key(id.name.clone()),
        StageKind::Deploy | StageKind::Down | StageKind::Rollback => {
            DocPath::root().key("deploy").key(id.name.clone())
        }
    }
}

/// `images.<name>.*` values from the stages of `record` that have finished.
pub fn image_values(record: &RunRecord) -> BTreeMap<String, BTreeMap<String, String>> {
    let finished: BTreeMap<StageId, Outputs> = record
        .stages
        .iter()
        .filter(|s| s.status.is_success())
        .map(|s| (s.stage.clone(), s.outputs.clone()))
        .collect();
    let names: BTreeSet<&str> = finished.keys().map(|id| id.name.as_str()).collect();
    names
        .into_iter()
        .filter_map(|name| {
            let artifact = ImageArtifact::of_image(name, &finished)?;
            Some((name.to_owned(), artifact.expression_values()))
        })
        .collect()
}

/// The input digest: a hash of the resolved configuration, the executor's fingerprint and the
/// upstream outputs. Equal digests mean the stage would do the same work.
pub fn input_digest(
    id: &StageId,
    config: &Value,
    fingerprint: &Value,
    upstream: &BTreeMap<StageId, Outputs>,
) -> String {
    let upstream: BTreeMap<String, &Outputs> =
        upstream.iter().map(|(k, v)| (k.to_string(), v)).collect();
    let material = json!({ "stage": id.to_string(), "config": config, "fingerprint": fingerprint, "upstream": upstream });
    let bytes = serde_json::to_vec(&material).unwrap_or_default();
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

impl Runner<'_> {
    /// Resolves a stage's configuration and inputs and decides whether it runs.
    pub async fn prepare(
        &self,
        id: &StageId,
        record: &RunRecord,
    ) -> Result<PreparedStage, StageFailure> {
        let node = self
            .graph
            .get(id)
            .ok_or_else(|| StageFailure::failed(format!("{id} is not in the graph")))?;
        let mut upstream = BTreeMap::new();
        for need in &node.needs {
            let outputs = record
                .stage(need)
                .filter(|s| s.status.is_success())
                .map(|s| s.outputs.clone());
            let Some(outputs) = outputs else {
                return Err(StageFailure::failed(format!(
                    "{id} needs {need}, which has not succeeded"
                )));
            };
            upstream.insert(need.clone(), outputs);
        }
        let mut values = self.values.clone();
        values.images = image_values(record);
        let path = config_path(id);
        let raw = self.pipeline.raw(&path).cloned().unwrap_or(Value::Null);
        let resolved = interpolate_value(&raw, &values, &path).map_err(|(at, message)| {
            StageFailure::failed(self.pipeline.diagnostic_at(&at, message).to_string())
        })?;
        let config = StageConfig::resolve(self.pipeline, id, &path, &resolved)?;
        let executor = self.executors.for_stage(id, self.pipeline)?;
        let input = StageInput {
            id,
            pipeline: self.pipeline,
            run_id: &record.run_id,
            config: &config,
            upstream: &upstream,
            values: &self.values,
            aws: &self.aws,
        };
        let fingerprint = executor.fingerprint(&input).await?;
        let digest = input_digest(id, &resolved, &fingerprint, &upstream);

        let participation = self
            .participation
            .get(id)
            .copied()
            .unwrap_or(Participation::Selected);
        let own = record
            .stage(id)
            .filter(|s| s.status.is_success() && s.input_digest.as_deref() == Some(&digest));
        let prior = match own {
            Some(s) => Some(history::Candidate {
                run_id: s
                    .reused_from
                    .clone()
                    .unwrap_or_else(|| record.run_id.clone()),
                outputs: s.outputs.clone(),
            }),
            None => self.history.same_inputs(id, &digest),
        };
        let outputs_exist = match &prior {
            Some(candidate) => executor.outputs_exist(&input, &candidate.outputs).await?,
            None => false,
        };
        let history = StageHistory {
            done_in_this_run: own.is_some(),
            same_inputs: prior.as_ref().map(|c| crate::plan::decide::PriorSuccess {
                run_id: c.run_id.clone(),
                outputs_exist,
            }),
            latest_success_run: self.history.latest_success(id),
        };
        let decision = match participation {
            Participation::NotSelected => match (&prior, outputs_exist) {
                (Some(c), true) => Decision::Skip {
                    reason: format!("not selected; reusing run {}", c.run_id),
                    reused_from: c.run_id.clone(),
                },
                (Some(c), false) => {
                    return Err(StageFailure::failed(format!(
                        "{id} is not selected, and the outputs of its last success (run {}) are gone", c.run_id
                    ))
                    .with_hint(format!("run it as well: add --only {id}, or drop --only")));
                }
                (None, _) => {
                    let why = match self.history.latest_success(id) {
                        Some(run) => {
                            format!("its inputs changed since its last success (run {run})")
                        }
                        None => "it has never succeeded".to_owned(),
                    };
                    return Err(
                        StageFailure::failed(format!("{id} is not selected, but {why}"))
                            .with_hint(format!("run it as well: add --only {id}, or drop --only")),
                    );
                }
            },
            // A resumed forced run does not redo what it already finished.
            Participation::Forced if history.done_in_this_run && outputs_exist => {
                decide(&history, false, &record.run_id)
            }
            Participation::Forced => decide(&history, true, &record.run_id),
            Participation::Excluded => Decision::Skip {
                reason: crate::journal::record::NOT_SELECTED.to_owned(),
                reused_from: String::new(),
            },
            Participation::Selected => decide(&history, false, &record.run_id),
        };
        let reused_outputs = match (&decision, prior) {
            (Decision::Skip { .. }, Some(candidate)) => candidate.outputs,
            _ => Outputs::new(),
        };
        Ok(PreparedStage {
            id: id.clone(),
            resolved,
            config,
            upstream,
            input_digest: digest,
            decision,
            reused_outputs,
            executor,
            fingerprint,
        })
    }

    /// Runs (or resumes) `record` to its end. `record` must already be in the store (the
    /// application layer creates it); every change from here on is saved as it happens.
    pub async fn execute(&self, mut record: RunRecord, resumed: bool) -> Executed {
        let started = Instant::now();
        let run_id = record.run_id.clone();
        self.reporter.report(&Event::RunStarted {
            run_id: run_id.clone(),
            pipeline: record.pipeline.clone(),
            resumed,
            stages: self.graph.stages.iter().map(|s| s.id.clone()).collect(),
        });
        // A resumed record was reopened in memory: journal that before any stage starts.
        if let Err(err) = self.store.save(&mut record).await {
            return self.finish(record, Some(err), started);
        }
        let shared = Mutex::new(record);

        let mut started_stages: BTreeSet<StageId> = BTreeSet::new();
        // Stages the record holds outside the graph (the earlier deploy a rollback returns
        // to) are done already.
        let mut succeeded: BTreeSet<StageId> = {
            let record = shared.lock().await;
            record
                .stages
                .iter()
                .filter(|s| s.status.is_success() && !self.graph.contains(&s.stage))
                .map(|s| s.stage.clone())
                .collect()
        };
        let mut unsuccessful = false;
        let mut in_flight = FuturesUnordered::new();
        loop {
            if !unsuccessful && !self.stop.is_requested() {
                for node in &self.graph.stages {
                    if !started_stages.contains(&node.id)
                        && node.needs.iter().all(|n| succeeded.contains(n))
                    {
                        started_stages.insert(node.id.clone());
                        in_flight.push(self.run_stage(node.id.clone(), &shared));
                    }
                }
            }
            let Some((id, status)) = in_flight.next().await else {
                break;
            };
            if status.is_success() {
                succeeded.insert(id);
            } else {
                // Stop starting stages; the ones already running finish (a deploy is never
                // abandoned half-way because another stage failed).
                unsuccessful = true;
            }
        }

        drop(in_flight);
        let mut record = shared.into_inner();
        self.block_downstream_of_failures(&mut record);
        // A stop that came when every stage had finished (a spared deploy was the last one)
        // interrupted nothing: the run succeeded.
        let all_done = record.stages.iter().all(|s| s.status.is_success());
        if self.stop.is_requested() && !all_done {
            record.status = RunStatus::Interrupted;
            record.stopped_by = self.stop.cause();
        } else {
            record.status = record.derive_status();
        }
        record.finished_at = Some(chrono::Utc::now());
        let saved = self.store.save(&mut record).await;
        self.finish(record, saved.err(), started)
    }

    /// Reports the end of the run. A run whose journal could not be written has failed,
    /// whatever its stages did: the journal is what a resume and the next run rely on.
    fn finish(
        &self,
        mut record: RunRecord,
        journal_error: Option<JournalError>,
        started: Instant,
    ) -> Executed {
        if let Some(err) = &journal_error {
            if record.status == RunStatus::Running || record.status == RunStatus::Succeeded {
                record.status = RunStatus::Failed;
            }
            self.reporter.report(&Event::Warning {
                message: format!("the run's journal could not be written: {err}"),
            });
        }
        self.reporter.report(&Event::RunFinished {
            run_id: record.run_id.clone(),
            status: record.status,
            elapsed: started.elapsed(),
        });
        Executed {
            record,
            journal_error,
        }
    }

    fn block_downstream_of_failures(&self, record: &mut RunRecord) {
        let failed: Vec<StageId> = record
            .stages
            .iter()
            .filter(|s| s.status.is_failure() || s.status == StageStatus::Interrupted)
            .map(|s| s.stage.clone())
            .collect();
        for upstream in failed {
            for downstream in self.graph.downstream_of(&upstream) {
                if let Some(stage) = record.stage_mut(&downstream)
                    && stage.status == StageStatus::Pending
                {
                    let _ = stage.block(&upstream);
                }
            }
        }
    }

    async fn run_stage(&self, id: StageId, shared: &Mutex<RunRecord>) -> (StageId, StageStatus) {
        let sink = JournalSink {
            id: &id,
            shared,
            store: self.store,
            reporter: self.reporter,
        };
        let started = Instant::now();
        if self.participation.get(&id) == Some(&Participation::Excluded) {
            return match sink.leave_out().await {
                Ok(()) => (id.clone(), StageStatus::Skipped),
                Err(err) => (id.clone(), sink.report_unjournaled(err, started.elapsed())),
            };
        }
        let snapshot = shared.lock().await.clone();
        let prepared = match self.prepare(&id, &snapshot).await {
            Ok(prepared) => prepared,
            Err(failure) => {
                let reason = "preparing the stage failed".to_owned();
                let status = sink
                    .fail_unstarted(String::new(), reason, failure, started)
                    .await;
                return (id.clone(), status);
            }
        };
        if let Decision::Skip {
            reason,
            reused_from,
        } = &prepared.decision
        {
            return match sink.skip(&prepared, reason, reused_from).await {
                Ok(()) => (id.clone(), StageStatus::Skipped),
                Err(err) => (id.clone(), sink.report_unjournaled(err, started.elapsed())),
            };
        }
        // Two runs may build at once, but never deploy the same target at once.
        let _target_hold = match id.kind {
            StageKind::Deploy | StageKind::Down | StageKind::Rollback => {
                match self.hold_target(&id, &snapshot.run_id).await {
                    Ok(lease) => Some(lease),
                    Err(failure) => {
                        let digest = prepared.input_digest.clone();
                        let reason = prepared.decision.reason().to_owned();
                        let status = sink.fail_unstarted(digest, reason, failure, started).await;
                        return (id.clone(), status);
                    }
                }
            }
            _ => None,
        };
        let started = Instant::now();
        let previous_attempt = match sink
            .start(
                prepared.input_digest.clone(),
                prepared.decision.reason().to_owned(),
                true,
            )
            .await
        {
            Ok(outputs) => outputs,
            // Not journaled as running, so not started: a resume must never find a deploy
            // it knows nothing about.
            Err(err) => return (id.clone(), sink.report_unjournaled(err, started.elapsed())),
        };
        let input = StageInput {
            id: &id,
            pipeline: self.pipeline,
            run_id: &snapshot.run_id,
            config: &prepared.config,
            upstream: &prepared.upstream,
            values: &self.values,
            aws: &self.aws,
        };
        let context = StageContext {
            sink: &sink,
            input_digest: prepared.input_digest.clone(),
            // A deploy in flight is spared by a stop that spares deploys (a newer push, a
            // cancel through the daemon): it finishes, then the run ends.
            cancel: self.stop.token_for(id.kind).child_token(),
            previous_attempt,
            fingerprint: prepared.fingerprint.clone(),
        };
        let outcome = tokio::select! {
            outcome = prepared.executor.run(&input, &context) => outcome,
            _ = async { self.stop.token_for(id.kind).cancelled().await; tokio::time::sleep(CANCEL_GRACE).await } => Err(StageFailure::interrupted()),
        };
        let outcome = match outcome {
            Err(failure)
                if self.stop.stops(id.kind)
                    && failure.kind != crate::stages::FailureKind::RolledBack =>
            {
                Err(StageFailure {
                    kind: crate::stages::FailureKind::Interrupted,
                    ..failure
                })
            }
            other => other,
        };
        (id.clone(), sink.finish(outcome, started.elapsed()).await)
    }

    /// Waits until this run holds deploy target `id`, saying once who holds it meanwhile.
    async fn hold_target(&self, id: &StageId, run_id: &str) -> Result<Lease, StageFailure> {
        let pipeline = &self.pipeline.file.name;
        let mut announced = false;
        let first_refusal = Instant::now();
        loop {
            match self.store.try_lock_target(pipeline, &id.name, run_id).await {
                Ok(lease) => return Ok(lease),
                Err(JournalError::TargetBusy {
                    holder_run,
                    holder_pid,
                    ..
                }) => {
                    // A holder writes who it is just after it takes the hold: a refusal in
                    // that moment cannot name it yet, so wait a little for the name.
                    let named = holder_run.is_some();
                    if !announced && (named || first_refusal.elapsed() >= HOLDER_NAME_WAIT) {
                        announced = true;
                        let holder = match (holder_run, holder_pid) {
                            (Some(run), Some(pid)) => format!("run {run} (pid {pid})"),
                            (Some(run), None) => format!("run {run}"),
                            _ => "another run".to_owned(),
                        };
                        self.reporter.report(&Event::Warning {
                            message: format!(
                                "{id} waits: {holder} is deploying target `{}` of pipeline {pipeline}; it starts when that deploy ends",
                                id.name
                            ),
                        });
                    }
                }
                Err(err) => {
                    return Err(StageFailure::failed(format!(
                        "failed to take hold of deploy target `{}`: {err}",
                        id.name
                    )));
                }
            }
            tokio::select! {
                _ = self.stop.requested() => return Err(StageFailure::interrupted()),
                _ = tokio::time::sleep(TARGET_RETRY) => {}
            }
        }
    }
}

/// A run at its end: the record as journaled, and the journal write that failed, if one did
/// (the record then holds what could not be written).
#[derive(Debug)]
pub struct Executed {
    pub record: RunRecord,
    pub journal_error: Option<JournalError>,
}

impl From<&StageFailure> for StageError {
    fn from(failure: &StageFailure) -> Self {
        StageError {
            message: failure.message.clone(),
            hint: failure.hint.clone(),
        }
    }
}
