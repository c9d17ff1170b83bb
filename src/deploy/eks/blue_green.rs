//! A blue/green deploy with plain Deployments: the new slot (`<name>-blue` or `<name>-green`,
//! whichever the Service does not select) is applied with the pinned images and gated like a
//! rolling deploy, the smoke check runs against it, then the Service's selector switches to it
//! (server-side apply), the old slot is kept for `scale_down_delay` so that a rollback is a
//! selector flip, and is then scaled to zero. A failure before the switch switches nothing and
//! scales the new slot to zero. Each step is journaled, so a resume re-attaches.

use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Service;
use kube::Client;
use kube::api::{Api, Patch, PatchParams};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use super::api_failure::kube_failure;
use super::blue_green_slots::{
    Slot, SlotChoice, SlotReturn, choose_slot, first_port, is_slot_deployment, service, service_on,
    slot_deployment, slot_objects, slot_return,
};
use super::cluster_apply::{ClusterKinds, FIELD_MANAGER, apply};
use super::error::{EksDeployError, EksErrorKind};
use super::manifests::{PreparedObject, applied_digest, is_gated_workload};
use super::observer::EksObserver;
use super::outcome::{AppliedWorkload, EksCheckpoint, EksDeployOutcome};
use super::rollback_choice::RevisionChoice;
use super::rollout::{
    WaitFailure, base_outcome, explain_wait, limits, prepared_objects, rollback_targets, timeout,
    undo, workload_outcomes,
};
use super::rollout_watch::{WaitEnd, wait_for_rollouts};
use super::smoke_check::{CheckResult, http_check, job_check, smoke_timeout};
use super::spec::EksDeploySpec;
use crate::pipeline::model::EksBlueGreen;

const DEFAULT_SCALE_DOWN_DELAY: Duration = Duration::from_secs(300);

fn settings(spec: &EksDeploySpec) -> Result<&EksBlueGreen, EksDeployError> {
    spec.config.blue_green.as_ref().ok_or_else(|| {
        EksDeployError::config("`strategy: blue_green` needs `blue_green: { deployment, service }`")
    })
}

/// The namespace of the Service the switch repoints (the slots live beside it).
fn namespace_of(object: &PreparedObject, spec: &EksDeploySpec) -> String {
    object
        .key
        .namespace
        .clone()
        .unwrap_or_else(|| spec.config.namespace.clone())
}

async fn live_service(
    client: &Client,
    namespace: &str,
    name: &str,
) -> Result<Option<Value>, EksDeployError> {
    let api: Api<Service> = Api::namespaced(client.clone(), namespace);
    let live = api
        .get_opt(name)
        .await
        .map_err(|e| kube_failure(&format!("read service/{name}"), &e))?;
    Ok(live.and_then(|service| serde_json::to_value(service).ok()))
}

async fn live_deployment(
    client: &Client,
    namespace: &str,
    name: &str,
) -> Result<Option<Value>, EksDeployError> {
    let api: Api<Deployment> = Api::namespaced(client.clone(), namespace);
    let live = api
        .get_opt(name)
        .await
        .map_err(|e| kube_failure(&format!("read deployment/{name}"), &e))?;
    Ok(live.and_then(|deployment| serde_json::to_value(deployment).ok()))
}

/// What a blue/green deploy would apply now: the slot it goes to and its objects. `plan` and
/// the dry run use it too, so they show what the run does.
pub(crate) async fn planned_objects(
    client: &Client,
    spec: &EksDeploySpec,
) -> Result<(ClusterKinds, Vec<PreparedObject>, SlotChoice), EksDeployError> {
    let config = settings(spec)?;
    let (kinds, prepared) = prepared_objects(client, spec).await?;
    let service = service(&prepared, config)?;
    let namespace = namespace_of(service, spec);
    let live = live_service(client, &namespace, &config.service).await?;
    let choice = choose_slot(live.as_ref());
    let objects = slot_objects(&prepared, config, choice)?;
    Ok((kinds, objects, choice))
}

/// `plan`'s line on the slots.
pub(crate) fn slot_line(config: &EksBlueGreen, choice: SlotChoice) -> String {
    let serving = match choice.serving {
        Some(slot) => format!(
            "slot {slot} ({}) serves until the switch",
            slot.deployment(&config.deployment)
        ),
        None => format!("service/{} selects no slot yet", config.service),
    };
    format!(
        "blue/green: the deploy goes to slot {} ({}); {serving}",
        choice.new,
        choice.new.deployment(&config.deployment)
    )
}

/// Sets a slot's replicas (a merge patch: the slot's Deployment is shipit's own, and its next
/// apply takes `replicas` back with force).
async fn scale(
    client: &Client,
    namespace: &str,
    name: &str,
    replicas: i64,
) -> Result<i64, EksDeployError> {
    let api: Api<Deployment> = Api::namespaced(client.clone(), namespace);
    let patched = api
        .patch(
            name,
            &PatchParams {
                field_manager: Some(FIELD_MANAGER.into()),
                ..PatchParams::default()
            },
            &Patch::Merge(json!({"spec": {"replicas": replicas}})),
        )
        .await
        .map_err(|e| kube_failure(&format!("scale deployment/{name} to {replicas}"), &e))?;
    Ok(patched.metadata.generation.unwrap_or(0))
}

/// Points the Service at `slot` (server-side apply of the manifests' Service with the slot
/// label added to its selector).
async fn switch(
    client: &Client,
    kinds: &mut ClusterKinds,
    service: &PreparedObject,
    slot: Slot,
    force: bool,
) -> Result<(), EksDeployError> {
    apply(client, kinds, &service_on(service, Some(slot)), force).await?;
    Ok(())
}

fn slot_text(slot: Option<Slot>) -> Option<String> {
    slot.map(|slot| slot.as_str().to_owned())
}

pub(crate) async fn deploy(
    client: &Client,
    spec: &EksDeploySpec,
    previous: Option<&EksCheckpoint>,
    observer: &dyn EksObserver,
    cancel: CancellationToken,
) -> Result<EksDeployOutcome, EksDeployError> {
    let mut outcome = base_outcome(spec);
    let fail = |error: EksDeployError, outcome: &EksDeployOutcome| {
        let mut outcome = outcome.clone();
        outcome.failure.get_or_insert_with(|| error.message.clone());
        error.with_outcome(outcome)
    };
    let config = settings(spec).map_err(|e| fail(e, &outcome))?;
    let (mut kinds, prepared) = prepared_objects(client, spec)
        .await
        .map_err(|e| fail(e, &outcome))?;
    let service = service(&prepared, config)
        .map_err(|e| fail(e, &outcome))?
        .clone();
    let namespace = namespace_of(&service, spec);
    // A resumed deploy keeps the slot it started with: the Service may have been switched
    // already, and reading it again would pick the other slot.
    let resumed_choice = previous.and_then(|checkpoint| {
        Some(SlotChoice {
            new: Slot::parse(checkpoint.slot.as_deref()?)?,
            serving: checkpoint.previous_slot.as_deref().and_then(Slot::parse),
        })
    });
    let choice = match resumed_choice {
        Some(choice) => choice,
        None => choose_slot(
            live_service(client, &namespace, &config.service)
                .await
                .map_err(|e| fail(e, &outcome))?
                .as_ref(),
        ),
    };
    let objects = slot_objects(&prepared, config, choice).map_err(|e| fail(e, &outcome))?;
    let digest = applied_digest(&objects);
    let new_name = choice.new.deployment(&config.deployment);
    outcome.slot = slot_text(choice.serving);
    let resumed = previous.filter(|checkpoint| {
        checkpoint.applied_digest.as_deref() == Some(digest.as_str())
            && checkpoint.slot.as_deref() == Some(choice.new.as_str())
    });
    let (workloads, switched) = match resumed {
        Some(checkpoint) => {
            observer.on_progress(&format!(
                "resuming: slot {} was applied already; re-attaching",
                choice.new
            ));
            outcome.applied = checkpoint
                .workloads
                .iter()
                .map(|w| format!("{}/{}/{}", w.kind, w.namespace, w.name))
                .collect();
            (checkpoint.workloads.clone(), checkpoint.switched)
        }
        None => {
            observer.on_progress(&slot_line(config, choice));
            let mut workloads = Vec::new();
            for object in &objects {
                if cancel.is_cancelled() {
                    return Err(fail(
                        EksDeployError::new(EksErrorKind::Cancelled, "cancelled while applying"),
                        &outcome,
                    ));
                }
                let is_slot = is_slot_deployment(object, config);
                let force = spec.config.force_conflicts || is_slot;
                let applied = apply(client, &mut kinds, object, force)
                    .await
                    .map_err(|e| fail(e, &outcome))?;
                observer.on_progress(&format!(
                    "{} {}",
                    if applied.changed {
                        "applied"
                    } else {
                        "unchanged"
                    },
                    applied.key
                ));
                if applied.changed {
                    outcome.applied.push(applied.key.to_string());
                } else {
                    outcome.unchanged.push(applied.key.to_string());
                }
                // The new slot is always gated: an unchanged slot may still be scaling.
                if (applied.changed || is_slot) && is_gated_workload(&applied.key.kind) {
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
            }
            let checkpoint = EksCheckpoint {
                applied_digest: Some(digest.clone()),
                workloads: workloads.clone(),
                slot: Some(choice.new.as_str().to_owned()),
                previous_slot: slot_text(choice.serving),
                switched: false,
            };
            observer.on_checkpoint(&checkpoint).await.map_err(|why| {
                fail(
                    EksDeployError::remote(format!("could not journal the checkpoint: {why}")),
                    &outcome,
                )
            })?;
            (workloads, false)
        }
    };

    if !switched {
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
            WaitEnd::Complete => {}
            WaitEnd::Cancelled => {
                return Err(fail(
                    EksDeployError::new(
                        EksErrorKind::Cancelled,
                        "cancelled before the switch; the new slot goes on rolling out, and a resume re-attaches to it",
                    ),
                    &outcome,
                ));
            }
            WaitEnd::TimedOut | WaitEnd::Failed { .. } => {
                let WaitFailure {
                    kind,
                    message,
                    last_events,
                } = explain_wait(client, spec, &waited).await;
                outcome.last_events = last_events;
                let error = abandon(
                    client,
                    &mut kinds,
                    spec,
                    &prepared,
                    &workloads,
                    &namespace,
                    &new_name,
                    choice,
                    kind,
                    message,
                    observer,
                    &cancel,
                    &mut outcome,
                )
                .await;
                return Err(fail(error, &outcome));
            }
        }
        let checked = run_smoke_check(
            client,
            spec,
            config,
            &objects,
            &namespace,
            resumed.is_some(),
            observer,
            &cancel,
        )
        .await
        .map_err(|e| fail(e, &outcome))?;
        match checked {
            None => {}
            Some(Ok(passed)) => {
                observer.on_progress(&passed);
                outcome.smoke_check = Some(passed);
            }
            Some(Err(failed)) => {
                let error = abandon(
                    client,
                    &mut kinds,
                    spec,
                    &prepared,
                    &workloads,
                    &namespace,
                    &new_name,
                    choice,
                    EksErrorKind::Remote,
                    failed,
                    observer,
                    &cancel,
                    &mut outcome,
                )
                .await;
                return Err(fail(error, &outcome));
            }
        }
        switch(
            client,
            &mut kinds,
            &service,
            choice.new,
            spec.config.force_conflicts,
        )
        .await
        .map_err(|e| fail(e, &outcome))?;
        observer.on_progress(&format!(
            "switched service/{} to slot {} ({new_name})",
            config.service, choice.new
        ));
        let checkpoint = EksCheckpoint {
            applied_digest: Some(digest),
            workloads: workloads.clone(),
            slot: Some(choice.new.as_str().to_owned()),
            previous_slot: slot_text(choice.serving),
            switched: true,
        };
        observer.on_checkpoint(&checkpoint).await.map_err(|why| {
            fail(
                EksDeployError::remote(format!("could not journal the checkpoint: {why}")),
                &outcome,
            )
        })?;
    }
    outcome.slot = Some(choice.new.as_str().to_owned());
    outcome.previous_slot = slot_text(choice.serving);

    if let Some(old) = choice.serving {
        let old_name = old.deployment(&config.deployment);
        let delay = config
            .scale_down_delay
            .as_ref()
            .map(|d| d.0)
            .unwrap_or(DEFAULT_SCALE_DOWN_DELAY);
        if !delay.is_zero() {
            observer.on_progress(&format!(
                "keeping {old_name} for {} so that a rollback is a selector flip",
                humantime::format_duration(delay)
            ));
        }
        tokio::select! {
            _ = cancel.cancelled() => {
                return Err(fail(
                    EksDeployError::new(
                        EksErrorKind::Cancelled,
                        format!("cancelled after the switch to slot {}; {old_name} still runs, and a resume scales it down", choice.new),
                    ),
                    &outcome,
                ));
            }
            _ = tokio::time::sleep(delay) => {}
        }
        scale(client, &namespace, &old_name, 0)
            .await
            .map_err(|e| fail(e, &outcome))?;
        observer.on_progress(&format!("scaled {old_name} to 0"));
        outcome.previous_slot_scaled_down = true;
    }
    Ok(outcome)
}

/// The smoke check the target names, if any: `None` when there is none.
#[allow(clippy::too_many_arguments)]
async fn run_smoke_check(
    client: &Client,
    spec: &EksDeploySpec,
    config: &EksBlueGreen,
    objects: &[PreparedObject],
    namespace: &str,
    resume: bool,
    observer: &dyn EksObserver,
    cancel: &CancellationToken,
) -> Result<Option<CheckResult>, EksDeployError> {
    let Some(check) = &config.smoke_check else {
        return Ok(None);
    };
    let limit = smoke_timeout(check.timeout.as_ref().map(|t| t.0));
    if let Some(http) = &check.http {
        let Some(preview) = config.preview_service.as_deref() else {
            return Err(EksDeployError::config(
                "blue_green.smoke_check.http needs `blue_green.preview_service` to send it through",
            ));
        };
        let port = match http.port {
            Some(port) => port,
            None => objects
                .iter()
                .find(|o| o.key.kind == "Service" && o.key.name == preview)
                .and_then(|o| first_port(&o.object))
                .ok_or_else(|| {
                    EksDeployError::config(format!(
                        "blue_green.smoke_check.http: service/{preview} has no port; name one with `port`"
                    ))
                })?,
        };
        observer.on_progress(&format!(
            "smoke check: GET {} through service/{preview}:{port}",
            http.path
        ));
        return http_check(client, namespace, preview, port, http, limit, cancel)
            .await
            .map(Some);
    }
    if check.job.is_some() {
        let Some(job) = &spec.smoke_job else {
            return Err(EksDeployError::config(
                "blue_green.smoke_check.job: the Job manifest was not read",
            ));
        };
        return job_check(
            client,
            namespace,
            &job.object,
            resume,
            limit,
            observer,
            cancel,
        )
        .await
        .map(Some);
    }
    Ok(None)
}

/// A failure before the switch: nothing switched; with `rollback_on_failure` the new slot is
/// scaled to zero and the other workloads the deploy changed return to their previous
/// revisions. Returns the error to end the deploy with (exit 3 when rolled back, 4 on a
/// timeout, 1 otherwise).
#[allow(clippy::too_many_arguments)]
async fn abandon(
    client: &Client,
    kinds: &mut ClusterKinds,
    spec: &EksDeploySpec,
    prepared: &[PreparedObject],
    workloads: &[AppliedWorkload],
    namespace: &str,
    new_name: &str,
    choice: SlotChoice,
    kind: EksErrorKind,
    mut message: String,
    observer: &dyn EksObserver,
    cancel: &CancellationToken,
    outcome: &mut EksDeployOutcome,
) -> EksDeployError {
    let serving = match choice.serving {
        Some(slot) => format!("the service still selects slot {slot}"),
        None => "the service selects no slot yet".to_owned(),
    };
    message.push_str(&format!("\nnot switched: {serving}"));
    if !spec.config.rollback_on_failure {
        message.push_str(&format!(
            "\n{new_name} is left running for inspection (rollback_on_failure: false)"
        ));
        return EksDeployError::new(kind, message)
            .with_hint("fix the cause, then rerun: the next deploy goes to the same slot");
    }
    match scale(client, namespace, new_name, 0).await {
        Ok(_) => {
            observer.on_progress(&format!("scaled {new_name} to 0"));
            message.push_str(&format!("\n{new_name} scaled to 0"));
        }
        Err(error) => message.push_str(&format!(
            "\n{new_name} could not be scaled to 0: {}",
            error.message
        )),
    }
    let others: Vec<AppliedWorkload> = workloads
        .iter()
        .filter(|w| !(w.kind == "Deployment" && w.name == new_name))
        .cloned()
        .collect();
    if !others.is_empty() {
        let targets =
            rollback_targets(client, kinds, &others, &|_| Some(RevisionChoice::Previous)).await;
        match undo(client, kinds, spec, prepared, &targets, observer, cancel).await {
            Ok(names) if !names.is_empty() => {
                message.push_str(&format!("\nrolled back: {}", names.join(", ")));
            }
            Ok(_) => {}
            Err(error) => {
                message.push_str(&format!("\nthe rollback failed too: {}", error.message));
            }
        }
    }
    outcome.rolled_back = true;
    let kind = match kind {
        EksErrorKind::TimedOut => EksErrorKind::TimedOut,
        _ => EksErrorKind::RolledBack,
    };
    EksDeployError::new(kind, message)
}

/// `shipit rollback` of a blue/green target: the Service back to the slot the earlier run
/// made live. When that slot still runs the earlier images with ready replicas this is a
/// selector flip; otherwise it is scaled up (or applied again with the earlier images) and
/// gated first. The other slot is then scaled to zero.
pub(crate) async fn roll_back(
    client: &Client,
    spec: &EksDeploySpec,
    to: &EksDeployOutcome,
    observer: &dyn EksObserver,
    cancel: CancellationToken,
) -> Result<EksDeployOutcome, EksDeployError> {
    let mut outcome = base_outcome(spec);
    outcome.images = to.images.clone();
    let fail = |error: EksDeployError, outcome: &EksDeployOutcome| {
        let mut outcome = outcome.clone();
        outcome.failure.get_or_insert_with(|| error.message.clone());
        error.with_outcome(outcome)
    };
    let config = settings(spec).map_err(|e| fail(e, &outcome))?;
    let Some(target) = to.slot.as_deref().and_then(Slot::parse) else {
        return Err(fail(
            EksDeployError::remote("the run to return to recorded no blue/green slot"),
            &outcome,
        ));
    };
    let (mut kinds, prepared) = prepared_objects(client, spec)
        .await
        .map_err(|e| fail(e, &outcome))?;
    let service = service(&prepared, config)
        .map_err(|e| fail(e, &outcome))?
        .clone();
    let namespace = namespace_of(&service, spec);
    let serving = super::blue_green_slots::serving_slot(
        live_service(client, &namespace, &config.service)
            .await
            .map_err(|e| fail(e, &outcome))?
            .as_ref(),
    );
    let name = target.deployment(&config.deployment);
    let desired = to
        .workloads
        .iter()
        .find(|w| w.kind == "Deployment" && w.name == name)
        .map(|w| w.desired)
        .filter(|d| *d > 0);
    let live = live_deployment(client, &namespace, &name)
        .await
        .map_err(|e| fail(e, &outcome))?;
    let generation = match slot_return(live.as_ref(), &to.images) {
        SlotReturn::Flip => None,
        SlotReturn::ScaleUp => {
            let replicas = desired.unwrap_or_else(|| {
                prepared
                    .iter()
                    .find(|p| p.key.kind == "Deployment" && p.key.name == config.deployment)
                    .and_then(|p| p.object.pointer("/spec/replicas").and_then(Value::as_i64))
                    .unwrap_or(1)
            });
            observer.on_progress(&format!("scaling {name} back up to {replicas}"));
            Some(
                scale(client, &namespace, &name, replicas)
                    .await
                    .map_err(|e| fail(e, &outcome))?,
            )
        }
        SlotReturn::Reapply => {
            // The slot was redeployed since (or deleted): the earlier images go back into it.
            let Some(deployment) = prepared
                .iter()
                .find(|p| p.key.kind == "Deployment" && p.key.name == config.deployment)
            else {
                return Err(fail(
                    EksDeployError::config(format!(
                        "blue_green.deployment: the manifests have no Deployment named `{}`",
                        config.deployment
                    )),
                    &outcome,
                ));
            };
            observer.on_progress(&format!("applying {name} with the earlier run's images"));
            let applied = apply(
                client,
                &mut kinds,
                &slot_deployment(deployment, target),
                true,
            )
            .await
            .map_err(|e| fail(e, &outcome))?;
            Some(
                applied
                    .object
                    .pointer("/metadata/generation")
                    .and_then(Value::as_i64)
                    .unwrap_or(0),
            )
        }
    };
    if let Some(generation) = generation {
        let workload = AppliedWorkload {
            kind: "Deployment".into(),
            namespace: namespace.clone(),
            name: name.clone(),
            generation,
        };
        let waited = wait_for_rollouts(
            client,
            &mut kinds,
            std::slice::from_ref(&workload),
            &limits(spec),
            timeout(spec),
            observer,
            &cancel,
        )
        .await
        .map_err(|e| fail(e, &outcome))?;
        outcome.workloads = workload_outcomes(&waited);
        match waited.end {
            WaitEnd::Complete => {}
            WaitEnd::Cancelled => {
                return Err(fail(
                    EksDeployError::new(EksErrorKind::Cancelled, "cancelled while rolling back"),
                    &outcome,
                ));
            }
            WaitEnd::TimedOut | WaitEnd::Failed { .. } => {
                let failure = explain_wait(client, spec, &waited).await;
                outcome.last_events = failure.last_events;
                let message = format!(
                    "{}\nnot switched: slot {target} does not become ready",
                    failure.message
                );
                return Err(fail(EksDeployError::new(failure.kind, message), &outcome));
            }
        }
    } else {
        outcome.workloads = to.workloads.clone();
    }
    switch(
        client,
        &mut kinds,
        &service,
        target,
        spec.config.force_conflicts,
    )
    .await
    .map_err(|e| fail(e, &outcome))?;
    observer.on_progress(&format!(
        "switched service/{} back to slot {target} ({name})",
        config.service
    ));
    outcome.rolled_back = true;
    outcome.slot = Some(target.as_str().to_owned());
    outcome.applied = vec![format!("Service/{namespace}/{}", config.service)];
    let other = target.other();
    if serving == Some(other)
        || live_deployment(client, &namespace, &other.deployment(&config.deployment))
            .await
            .ok()
            .flatten()
            .is_some()
    {
        let other_name = other.deployment(&config.deployment);
        scale(client, &namespace, &other_name, 0)
            .await
            .map_err(|e| fail(e, &outcome))?;
        observer.on_progress(&format!("scaled {other_name} to 0"));
        outcome.previous_slot = Some(other.as_str().to_owned());
        outcome.previous_slot_scaled_down = true;
    }
    Ok(outcome)
}

/// Whether the Service still selects the slot `outcome` made live.
pub(crate) async fn still_serving(
    client: &Client,
    spec: &EksDeploySpec,
    outcome: &EksDeployOutcome,
) -> Result<bool, EksDeployError> {
    let config = settings(spec)?;
    let namespace = spec.config.namespace.clone();
    let live = live_service(client, &namespace, &config.service).await?;
    Ok(
        super::blue_green_slots::serving_slot(live.as_ref()).map(Slot::as_str)
            == outcome.slot.as_deref(),
    )
}
