//! A rolling deploy: apply (skipping what is unchanged), journal the checkpoint before
//! waiting, watch every changed workload to completion, and on failure return the Deployments
//! to their previous revision as `kubectl rollout undo` does, explaining why.

use std::time::Duration;

use kube::Client;
use kube::api::{ListParams, Patch, PatchParams};
use kube::core::ApiResource;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use super::api_failure::kube_failure;
use super::cluster_apply::{ClusterKinds, FIELD_MANAGER, api_for, apply, to_value};
use super::controller_revisions::latest_revision;
use super::diagnosis::{event_lines, explain, problem_summary};
use super::error::{EksDeployError, EksErrorKind};
use super::failure_read::read_failure;
use super::gate::RolloutState;
use super::manifests::{PreparedObject, applied_digest, is_gated_workload, prepare};
use super::observer::EksObserver;
use super::outcome::{AppliedWorkload, EksCheckpoint, EksDeployOutcome, WorkloadOutcome};
use super::pods::PodLimits;
use super::rollback_choice::{RevisionChoice, rollback_template};
use super::rollout_watch::{WaitEnd, WaitResult, short_name, wait_for_rollouts};
use super::spec::EksDeploySpec;
use super::stateful_set_pods::{stateful_set_observed, stuck_pods};
use super::workload_verdict::WorkloadVerdict;
use crate::pipeline::model::EksStrategy;

const DEFAULT_TIMEOUT: Duration = Duration::from_secs(600);
const DEFAULT_UNREADY: Duration = Duration::from_secs(180);

pub(super) fn limits(spec: &EksDeploySpec) -> PodLimits {
    PodLimits {
        max_restarts: spec.config.max_restarts.unwrap_or(2),
        unready_timeout: spec
            .config
            .unready_timeout
            .as_ref()
            .map(|d| d.0)
            .unwrap_or(DEFAULT_UNREADY),
    }
}

pub(super) fn timeout(spec: &EksDeploySpec) -> Duration {
    spec.config
        .timeout
        .as_ref()
        .map(|d| d.0)
        .unwrap_or(DEFAULT_TIMEOUT)
}

pub(super) fn base_outcome(spec: &EksDeploySpec) -> EksDeployOutcome {
    EksDeployOutcome {
        cluster: spec
            .config
            .cluster
            .clone()
            .or_else(|| spec.config.context.clone())
            .unwrap_or_default(),
        namespace: spec.config.namespace.clone(),
        strategy: match spec.config.strategy {
            EksStrategy::Rolling => "rolling",
            EksStrategy::BlueGreen => "blue_green",
        }
        .to_owned(),
        images: spec.images.clone(),
        ..EksDeployOutcome::default()
    }
}

/// The manifests as applied, with the kinds resolved by discovery.
pub(crate) async fn prepared_objects(
    client: &Client,
    spec: &EksDeploySpec,
) -> Result<(ClusterKinds, Vec<PreparedObject>), EksDeployError> {
    let kinds = ClusterKinds::discover(
        client,
        spec.documents.iter().map(|d| {
            (
                d.object["apiVersion"].as_str().unwrap_or_default(),
                d.object["kind"].as_str().unwrap_or_default(),
            )
        }),
    )
    .await;
    let prepared = prepare(spec, &|api_version, kind| kinds.scope(api_version, kind))?;
    Ok((kinds, prepared))
}

pub async fn deploy(
    client: &Client,
    spec: &EksDeploySpec,
    previous: Option<&EksCheckpoint>,
    observer: &dyn EksObserver,
    cancel: CancellationToken,
) -> Result<EksDeployOutcome, EksDeployError> {
    if spec.config.strategy == EksStrategy::BlueGreen {
        return super::blue_green::deploy(client, spec, previous, observer, cancel).await;
    }
    let mut outcome = base_outcome(spec);
    let fail = |error: EksDeployError, outcome: &EksDeployOutcome| {
        let mut outcome = outcome.clone();
        outcome.failure.get_or_insert_with(|| error.message.clone());
        error.with_outcome(outcome)
    };
    let (mut kinds, prepared) = prepared_objects(client, spec)
        .await
        .map_err(|e| fail(e, &outcome))?;
    let digest = applied_digest(&prepared);
    let workloads = match previous {
        Some(checkpoint) if checkpoint.applied_digest.as_deref() == Some(digest.as_str()) => {
            observer.on_progress(
                "resuming: the same manifests were applied; re-attaching to their rollout",
            );
            outcome.applied = checkpoint.workloads.iter().map(workload_key).collect();
            checkpoint.workloads.clone()
        }
        _ => {
            let mut workloads = Vec::new();
            for object in &prepared {
                if cancel.is_cancelled() {
                    return Err(fail(
                        EksDeployError::new(EksErrorKind::Cancelled, "cancelled while applying"),
                        &outcome,
                    ));
                }
                let applied = apply(client, &mut kinds, object, spec.config.force_conflicts)
                    .await
                    .map_err(|e| fail(e, &outcome))?;
                let verb = if applied.changed {
                    "applied"
                } else {
                    "unchanged"
                };
                observer.on_progress(&format!("{verb} {}", applied.key));
                if applied.changed {
                    outcome.applied.push(applied.key.to_string());
                    if is_gated_workload(&applied.key.kind) {
                        workloads.push(AppliedWorkload {
                            kind: applied.key.kind.clone(),
                            namespace: applied.key.namespace.clone().unwrap_or_default(),
                            name: applied.key.name.clone(),
                            generation: applied
                                .object
                                .pointer("/metadata/generation")
                                .and_then(Value::as_i64)
                                .unwrap_or(0),
                        });
                    }
                } else {
                    outcome.unchanged.push(applied.key.to_string());
                }
            }
            // Journaled before waiting: an interrupted run re-attaches instead of applying again.
            let checkpoint = EksCheckpoint {
                applied_digest: Some(digest),
                workloads: workloads.clone(),
                ..EksCheckpoint::default()
            };
            observer.on_checkpoint(&checkpoint).await.map_err(|why| {
                fail(
                    EksDeployError::remote(format!("could not journal the checkpoint: {why}")),
                    &outcome,
                )
            })?;
            workloads
        }
    };
    let waited = wait_for_rollouts(
        client,
        &mut kinds,
        &workloads,
        &limits(spec),
        timeout(spec),
        observer,
        &cancel,
    )
    .await
    .map_err(|e| fail(e, &outcome))?;
    outcome.workloads = workload_outcomes(&waited);
    match waited.end {
        WaitEnd::Complete => {
            record_controller_revisions(client, &mut outcome.workloads).await;
            return Ok(outcome);
        }
        WaitEnd::Cancelled => {
            return Err(fail(
                EksDeployError::new(
                    EksErrorKind::Cancelled,
                    "cancelled; the rollout goes on in the cluster, and a resume re-attaches to it",
                ),
                &outcome,
            ));
        }
        WaitEnd::TimedOut | WaitEnd::Failed { .. } => {}
    }
    let WaitFailure {
        kind,
        mut message,
        last_events,
    } = explain_wait(client, spec, &waited).await;
    outcome.last_events = last_events;
    if !spec.config.rollback_on_failure {
        message.push_str("\nnot rolled back (rollback_on_failure: false)");
        let error = EksDeployError::new(kind, message).with_hint(
            "fix the cause, then rerun; or `shipit rollback` to return to the previous deploy",
        );
        return Err(fail(error, &outcome));
    }
    let targets = rollback_targets(client, &mut kinds, &workloads, &|_| {
        Some(RevisionChoice::Previous)
    })
    .await;
    let rolled = undo(
        client, &mut kinds, spec, &prepared, &targets, observer, &cancel,
    )
    .await;
    let (kind, rolled_back) = match (&rolled, kind) {
        (Ok(names), EksErrorKind::TimedOut) => {
            message.push_str(&format!("\nrolled back: {}", names.join(", ")));
            (EksErrorKind::TimedOut, !names.is_empty())
        }
        (Ok(names), _) if !names.is_empty() => {
            message.push_str(&format!("\nrolled back: {}", names.join(", ")));
            (EksErrorKind::RolledBack, true)
        }
        (Ok(_), kind) => {
            message.push_str(
                "\nnothing to roll back to (no previous revision: the workloads are new)",
            );
            (kind, false)
        }
        (Err(error), kind) => {
            message.push_str(&format!("\nthe rollback failed too: {}", error.message));
            (kind, false)
        }
    };
    outcome.rolled_back = rolled_back;
    Err(fail(EksDeployError::new(kind, message), &outcome))
}

/// Why a wait that neither completed nor was cancelled ended: timed out or failed, explained
/// with the failing workload's and pod's events and the failing container's logs.
pub(super) struct WaitFailure {
    /// `TimedOut`, or `Remote` for a failed rollout (the caller decides whether it was rolled
    /// back).
    pub(super) kind: EksErrorKind,
    pub(super) message: String,
    pub(super) last_events: Vec<String>,
}

pub(super) async fn explain_wait(
    client: &Client,
    spec: &EksDeploySpec,
    waited: &WaitResult,
) -> WaitFailure {
    let (failed, why, problem, kind, unready) = match waited.end {
        WaitEnd::Failed { failed } => {
            let verdict = waited.verdicts.get(failed).and_then(|(_, v)| v.clone());
            let problem = verdict.as_ref().and_then(|v| v.problem.clone());
            let why = match (&problem, verdict.as_ref().map(|v| &v.state)) {
                (Some(problem), _) => format!("a new pod fails: {}", problem_summary(problem)),
                (None, Some(RolloutState::Failed(why))) => why.clone(),
                _ => "failed".to_owned(),
            };
            (failed, why, problem, EksErrorKind::Remote, Vec::new())
        }
        _ => {
            let failed = waited
                .verdicts
                .iter()
                .position(|(_, v)| {
                    !v.as_ref()
                        .is_some_and(|v| matches!(v.state, RolloutState::Complete(_)))
                })
                .unwrap_or(0);
            let why = match waited.verdicts.get(failed).and_then(|(_, v)| v.as_ref()) {
                Some(verdict) => match &verdict.state {
                    RolloutState::Waiting(what) => format!(
                        "timed out after {} waiting: {what}",
                        humantime::format_duration(timeout(spec))
                    ),
                    other => format!("timed out: {other:?}"),
                },
                None => "timed out before the workload could be read".to_owned(),
            };
            let unready = waited
                .verdicts
                .get(failed)
                .and_then(|(_, v)| v.as_ref())
                .map(|v| v.unready_pods.clone())
                .unwrap_or_default();
            (failed, why, None, EksErrorKind::TimedOut, unready)
        }
    };
    let Some((workload, _)) = waited.verdicts.get(failed) else {
        return WaitFailure {
            kind,
            message: why,
            last_events: Vec::new(),
        };
    };
    let report = read_failure(client, workload, why, problem, unready, None).await;
    let last_events = report
        .workload_events
        .iter()
        .chain(report.pod_events.iter())
        .filter_map(|events| events.as_ref().ok())
        .flat_map(|events| event_lines(events))
        .collect();
    WaitFailure {
        kind,
        message: explain(&report),
        last_events,
    }
}

/// Records the ControllerRevision each StatefulSet and DaemonSet completed at, for a later
/// `shipit rollback` (a Deployment's ReplicaSet is in its verdict already). A revision that
/// cannot be read is left out: that rollback then says so.
async fn record_controller_revisions(client: &Client, workloads: &mut [WorkloadOutcome]) {
    let mut kinds = ClusterKinds::default();
    for workload in workloads
        .iter_mut()
        .filter(|w| matches!(w.kind.as_str(), "StatefulSet" | "DaemonSet"))
    {
        let Ok(resource) = kinds.resolve(client, "apps/v1", &workload.kind).await else {
            continue;
        };
        let Ok(live) = api_for(client, &resource, Some(&workload.namespace))
            .get(&workload.name)
            .await
        else {
            continue;
        };
        let Ok(history) = history(client, &workload.kind, &workload.namespace).await else {
            continue;
        };
        workload.controller_revision = latest_revision(&to_value(live), &history)
            .and_then(|revision| revision.pointer("/metadata/name"))
            .and_then(Value::as_str)
            .map(str::to_owned);
    }
}

fn workload_key(workload: &AppliedWorkload) -> String {
    format!("{}/{}/{}", workload.kind, workload.namespace, workload.name)
}

pub(super) fn workload_outcomes(waited: &WaitResult) -> Vec<WorkloadOutcome> {
    waited
        .verdicts
        .iter()
        .map(|(workload, verdict)| {
            let verdict: Option<&WorkloadVerdict> = verdict.as_ref();
            WorkloadOutcome {
                kind: workload.kind.clone(),
                namespace: workload.namespace.clone(),
                name: workload.name.clone(),
                generation: workload.generation,
                revision: verdict.and_then(|v| v.revision).map(|r| r.to_string()),
                replica_set: verdict.and_then(|v| v.replica_set.clone()),
                previous_replica_set: verdict.and_then(|v| v.previous_replica_set.clone()),
                desired: verdict.map(|v| v.counts.desired).unwrap_or_default(),
                updated: verdict.map(|v| v.counts.updated).unwrap_or_default(),
                ready: verdict.map(|v| v.counts.ready).unwrap_or_default(),
                available: verdict.map(|v| v.counts.available).unwrap_or_default(),
                complete: verdict.is_some_and(|v| matches!(v.state, RolloutState::Complete(_))),
                controller_revision: None,
            }
        })
        .collect()
}

/// A workload to return to an earlier pod template, and the revision (ReplicaSet or
/// ControllerRevision) the template comes from.
pub(super) struct RollbackTarget {
    pub(super) workload: AppliedWorkload,
    pub(super) template: Value,
    pub(super) revision: String,
}

/// The namespace's revisions of `kind`'s workloads: ReplicaSets for Deployments,
/// ControllerRevisions for StatefulSets and DaemonSets.
async fn history(client: &Client, kind: &str, namespace: &str) -> Result<Vec<Value>, kube::Error> {
    let resource = if kind == "Deployment" {
        ApiResource::erase::<k8s_openapi::api::apps::v1::ReplicaSet>(&())
    } else {
        ApiResource::erase::<k8s_openapi::api::apps::v1::ControllerRevision>(&())
    };
    let list = api_for(client, &resource, Some(namespace))
        .list(&ListParams::default())
        .await?;
    Ok(list.items.into_iter().map(to_value).collect())
}

/// Each Deployment, StatefulSet and DaemonSet among `workloads` with the revision `choose`
/// names for it, when it has one.
pub(super) async fn rollback_targets(
    client: &Client,
    kinds: &mut ClusterKinds,
    workloads: &[AppliedWorkload],
    choose: &(dyn Fn(&AppliedWorkload) -> Option<RevisionChoice> + Send + Sync),
) -> Vec<RollbackTarget> {
    let mut targets = Vec::new();
    for workload in workloads.iter().filter(|w| is_gated_workload(&w.kind)) {
        let Some(choice) = choose(workload) else {
            continue;
        };
        let Ok(resource) = kinds.resolve(client, "apps/v1", &workload.kind).await else {
            continue;
        };
        let Ok(live) = api_for(client, &resource, Some(&workload.namespace))
            .get(&workload.name)
            .await
        else {
            continue;
        };
        let Ok(history) = history(client, &workload.kind, &workload.namespace).await else {
            continue;
        };
        if let Some((template, revision)) =
            rollback_template(&workload.kind, &to_value(live), &history, &choice)
        {
            targets.push(RollbackTarget {
                workload: workload.clone(),
                template,
                revision,
            });
        }
    }
    targets
}

/// Puts each target's template back (server-side apply of the manifest with that template, by
/// the same field manager, so the next deploy owns exactly the same fields) and waits.
pub(super) async fn undo(
    client: &Client,
    kinds: &mut ClusterKinds,
    spec: &EksDeploySpec,
    prepared: &[PreparedObject],
    targets: &[RollbackTarget],
    observer: &dyn EksObserver,
    cancel: &CancellationToken,
) -> Result<Vec<String>, EksDeployError> {
    let mut rolled = Vec::new();
    for target in targets {
        let workload = &target.workload;
        let name = short_name(workload);
        let Some(document) = prepared.iter().find(|p| {
            p.key.kind == workload.kind
                && p.key.name == workload.name
                && p.key.namespace.as_deref() == Some(workload.namespace.as_str())
        }) else {
            return Err(EksDeployError::remote(format!(
                "{name} is not in the manifests; roll it back with `kubectl rollout undo {name}`"
            )));
        };
        let mut object = document.object.clone();
        object["spec"]["template"] = target.template.clone();
        let resource = kinds
            .resolve(client, "apps/v1", &workload.kind)
            .await
            .map_err(|e| kube_failure(&format!("find {name}"), &e))?;
        let result = api_for(client, &resource, Some(&workload.namespace))
            .patch(
                &workload.name,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(&object),
            )
            .await
            .map_err(|e| kube_failure(&format!("roll back {name}"), &e))?;
        observer.on_progress(&format!(
            "{name}: rolling back to the previous revision ({})",
            target.revision
        ));
        let generation = result.metadata.generation.unwrap_or(0);
        if workload.kind == "StatefulSet" {
            replace_stuck_pods(
                client,
                &resource,
                workload,
                generation,
                &target.revision,
                observer,
            )
            .await?;
        }
        rolled.push(AppliedWorkload {
            generation,
            ..workload.clone()
        });
    }
    let waited = wait_for_rollouts(
        client,
        kinds,
        &rolled,
        &limits(spec),
        timeout(spec),
        observer,
        cancel,
    )
    .await?;
    match waited.end {
        WaitEnd::Complete => Ok(rolled.iter().map(short_name).collect()),
        WaitEnd::Cancelled => Err(EksDeployError::new(
            EksErrorKind::Cancelled,
            "cancelled while rolling back",
        )),
        WaitEnd::TimedOut => Err(EksDeployError::new(
            EksErrorKind::TimedOut,
            "the rollback did not complete in time",
        )),
        WaitEnd::Failed { .. } => Err(EksDeployError::remote("the previous revision fails too")),
    }
}

/// How long a StatefulSet's controller may take to observe the reverted template.
const OBSERVE_TIMEOUT: Duration = Duration::from_secs(30);

/// A StatefulSet (podManagementPolicy OrderedReady) waits for a broken pod to become ready
/// before it replaces it, so reverting the template alone never ends a crash loop: "you must
/// also delete any Pods that StatefulSet had already attempted to run with the bad
/// configuration" (Kubernetes docs, StatefulSets, "Forced rollback"). Once the controller has
/// observed the revert, the pods of other revisions that are not ready are deleted, and the
/// controller recreates them at the restored one.
async fn replace_stuck_pods(
    client: &Client,
    resource: &ApiResource,
    workload: &AppliedWorkload,
    generation: i64,
    revision: &str,
    observer: &dyn EksObserver,
) -> Result<(), EksDeployError> {
    let name = short_name(workload);
    let api = api_for(client, resource, Some(&workload.namespace));
    let deadline = tokio::time::Instant::now() + OBSERVE_TIMEOUT;
    let live = loop {
        let live = to_value(
            api.get(&workload.name)
                .await
                .map_err(|e| kube_failure(&format!("read {name}"), &e))?,
        );
        if stateful_set_observed(&live, generation, revision) {
            break live;
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(EksDeployError::remote(format!(
                "{name}: the controller did not observe the rollback to {revision} within {}s",
                OBSERVE_TIMEOUT.as_secs()
            )));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let pods: kube::Api<k8s_openapi::api::core::v1::Pod> =
        kube::Api::namespaced(client.clone(), &workload.namespace);
    let selector = super::rollout_watch::selector_of(&live);
    let list = pods
        .list(&ListParams::default().labels(&selector))
        .await
        .map_err(|e| kube_failure(&format!("list the pods of {name}"), &e))?;
    let listed: Vec<Value> = list
        .items
        .iter()
        .filter_map(|pod| serde_json::to_value(pod).ok())
        .collect();
    for pod in stuck_pods(&listed, revision) {
        pods.delete(&pod, &Default::default())
            .await
            .map_err(|e| kube_failure(&format!("delete pod {pod} of {name}"), &e))?;
        observer.on_progress(&format!(
            "{name}: deleted pod {pod}, stuck at the failed revision, for the controller to recreate"
        ));
    }
    Ok(())
}

/// `shipit rollback`: each Deployment of `to` back to the pod template of the ReplicaSet it
/// recorded, gated like a deploy.
pub async fn roll_back(
    client: &Client,
    spec: &EksDeploySpec,
    to: &EksDeployOutcome,
    observer: &dyn EksObserver,
    cancel: CancellationToken,
) -> Result<EksDeployOutcome, EksDeployError> {
    if spec.config.strategy == EksStrategy::BlueGreen {
        return super::blue_green::roll_back(client, spec, to, observer, cancel).await;
    }
    let mut outcome = base_outcome(spec);
    outcome.images = to.images.clone();
    let (mut kinds, prepared) = prepared_objects(client, spec)
        .await
        .map_err(|e| e.with_outcome(outcome.clone()))?;
    // The revision each workload ran at the end of that run: its ReplicaSet (Deployments) or
    // ControllerRevision (StatefulSets, DaemonSets).
    let recorded: Vec<(AppliedWorkload, String)> = to
        .workloads
        .iter()
        .filter_map(|w| {
            let revision = w
                .replica_set
                .clone()
                .or_else(|| w.controller_revision.clone())?;
            Some((
                AppliedWorkload {
                    kind: w.kind.clone(),
                    namespace: w.namespace.clone(),
                    name: w.name.clone(),
                    generation: w.generation,
                },
                revision,
            ))
        })
        .collect();
    let workloads: Vec<AppliedWorkload> = recorded.iter().map(|(w, _)| w.clone()).collect();
    let targets = rollback_targets(client, &mut kinds, &workloads, &|workload| {
        recorded
            .iter()
            .find(|(w, _)| w == workload)
            .map(|(_, revision)| RevisionChoice::Named(revision.clone()))
    })
    .await;
    let missing: Vec<String> = recorded
        .iter()
        .filter(|(w, _)| !targets.iter().any(|t| &t.workload == w))
        .map(|(w, revision)| format!("{} (revision {revision})", short_name(w)))
        .collect();
    if !missing.is_empty() {
        return Err(EksDeployError::remote(format!(
            "the recorded revision is gone for {} (revisionHistoryLimit pruned it)",
            missing.join(", ")
        ))
        .with_hint("redeploy that version's images instead")
        .with_outcome(outcome));
    }
    let rolled = undo(
        client, &mut kinds, spec, &prepared, &targets, observer, &cancel,
    )
    .await
    .map_err(|e| e.with_outcome(outcome.clone()))?;
    outcome.rolled_back = true;
    outcome.applied = rolled;
    outcome.workloads = to.workloads.clone();
    Ok(outcome)
}

/// Whether the cluster still runs what `outcome` deployed: each Deployment's current
/// ReplicaSet is the one recorded, each other workload at the recorded generation.
pub async fn still_deployed(
    client: &Client,
    spec: &EksDeploySpec,
    outcome: &EksDeployOutcome,
) -> Result<bool, EksDeployError> {
    if spec.config.strategy == EksStrategy::BlueGreen
        && !super::blue_green::still_serving(client, spec, outcome).await?
    {
        return Ok(false);
    }
    let mut kinds = ClusterKinds::default();
    for workload in &outcome.workloads {
        let resource = kinds
            .resolve(client, "apps/v1", &workload.kind)
            .await
            .map_err(|e| kube_failure(&format!("find {}", workload.kind), &e))?;
        let live = api_for(client, &resource, Some(&workload.namespace))
            .get_opt(&workload.name)
            .await
            .map_err(|e| kube_failure(&format!("read {}/{}", workload.kind, workload.name), &e))?;
        let Some(live) = live else { return Ok(false) };
        let live = to_value(live);
        let same = match &workload.revision {
            Some(revision) => {
                super::replica_sets::revision(&live)
                    .map(|r| r.to_string())
                    .as_ref()
                    == Some(revision)
            }
            None => {
                live.pointer("/metadata/generation").and_then(Value::as_i64)
                    == Some(workload.generation)
            }
        };
        if !same {
            return Ok(false);
        }
    }
    Ok(true)
}
