//! The rolling deploy's loop: update the service, journal the deployment it created before
//! waiting, then follow that deployment under the poll pace until the gate decides, the
//! timeout or the no-progress timeout passes, or the run is cancelled (the deployment goes on
//! then, and a resume re-attaches).

use std::collections::HashSet;
use std::time::{Duration, Instant};

use aws_sdk_ecs::types::Service;
use chrono::Utc;
use tokio_util::sync::CancellationToken;

use crate::deploy::ecs::EcsObserver;
use crate::deploy::ecs::clients::EcsClients;
use crate::deploy::ecs::ecs_calls::{
    describe_service, describe_service_deployment, stopped_tasks_of,
    unhealthy_targets as unhealthy_targets_of, update_service,
};
use crate::deploy::ecs::error::{EcsDeployError, EcsErrorKind};
use crate::deploy::ecs::outcome::{EcsCheckpoint, EcsDeployOutcome};
use crate::deploy::ecs::pace::PollPace;
use crate::deploy::ecs::service_changes::ServiceChanges;
use crate::deploy::ecs::snapshot::{DeploymentSnapshot, ServiceSnapshot, UnhealthyTarget};
use crate::deploy::ecs::spec::EcsDeploySpec;
use crate::deploy::ecs::task_definition::document::TaskDefinitionDocument;

use super::diagnosis::explain;
use super::gate::{GateInput, GateLimits, OurDeployment, ProgressMark, Verdict, decide};

const DEFAULT_TIMEOUT: Duration = Duration::from_secs(15 * 60);
const DEFAULT_NO_PROGRESS: Duration = Duration::from_secs(5 * 60);

/// What a rolling deploy rolls out.
pub(crate) struct Rollout<'a> {
    pub(crate) live: &'a Service,
    pub(crate) snapshot: &'a ServiceSnapshot,
    pub(crate) changes: &'a ServiceChanges,
    pub(crate) document: Option<&'a TaskDefinitionDocument>,
    pub(crate) checkpoint: EcsCheckpoint,
    pub(crate) registered: bool,
}

/// What waiting saw: the last look at the service, and the load balancer targets found not
/// healthy while our tasks ran (ECS deregisters a failed task's target, so by the time a
/// deployment has failed the reason code is gone from the target group).
struct Seen {
    last: ServiceSnapshot,
    /// Our deployment as last seen: after a rollback it leaves the service's list, and the
    /// result must still say how far it got.
    ours: Option<DeploymentSnapshot>,
    unhealthy_targets: Vec<UnhealthyTarget>,
}

/// How waiting ended without a verdict.
enum Stop {
    Verdict(Verdict),
    TimedOut,
    NoProgress,
}

pub(crate) async fn roll_out(
    clients: &EcsClients,
    spec: &EcsDeploySpec,
    rollout: Rollout<'_>,
    observer: &dyn EcsObserver,
    cancel: CancellationToken,
) -> Result<EcsDeployOutcome, EcsDeployError> {
    let mut checkpoint = rollout.checkpoint.clone();
    let task_definition = checkpoint.task_definition_arn.clone().unwrap_or_default();
    let mut outcome = base_outcome(spec, &checkpoint, rollout.registered);
    let deployment_id = match adopt(&checkpoint, rollout.snapshot, &task_definition) {
        Some(id) => {
            observer.on_progress(&format!("re-attached to deployment {id}"));
            id
        }
        None => {
            checkpoint.update_requested_at = Some(Utc::now().to_rfc3339());
            journal(observer, &checkpoint)
                .await
                .map_err(|e| e.with_outcome(outcome.clone()))?;
            let id = update_service(
                clients,
                spec,
                rollout.live,
                &task_definition,
                rollout.changes,
            )
            .await
            .map_err(|failure| EcsDeployError::from(failure).with_outcome(outcome.clone()))?;
            let id = match id {
                Some(id) => id,
                None => {
                    let (now, _) = describe_service(clients, spec).await?;
                    now.primary().map(|p| p.id.clone()).unwrap_or_default()
                }
            };
            observer.on_progress(&format!(
                "service updated to {}; deployment {id}",
                short(&task_definition)
            ));
            id
        }
    };
    checkpoint.deployment_id = Some(deployment_id.clone());
    outcome.deployment_id = Some(deployment_id.clone());
    journal(observer, &checkpoint)
        .await
        .map_err(|e| e.with_outcome(outcome.clone()))?;

    let breaker = rollout.changes.circuit_breaker_after(rollout.snapshot);
    let limits = GateLimits {
        circuit_breaker_enabled: breaker.is_some_and(|b| b.enable),
        failed_tasks_limit: spec.config.failed_tasks_limit,
    };
    let ours = OurDeployment {
        id: &deployment_id,
        task_definition: &task_definition,
        previous_task_definition: checkpoint.previous_task_definition_arn.as_deref(),
    };
    let (stop, seen) = wait(
        clients,
        spec,
        ours,
        limits,
        rollout.snapshot,
        observer,
        &cancel,
    )
    .await?;
    let last = &seen.last;
    fill(&mut outcome, last, &deployment_id);
    if last.deployment(&deployment_id).is_none()
        && let Some(ours) = &seen.ours
    {
        fill_counts(&mut outcome, ours);
    }
    let failure_of =
        |headline: String, kind: EcsErrorKind, outcome: &mut EcsDeployOutcome, evidence: String| {
            let message = if evidence.is_empty() {
                headline
            } else {
                format!("{headline}\n{evidence}")
            };
            outcome.failure = Some(message.clone());
            EcsDeployError::new(kind, message).with_outcome(outcome.clone())
        };
    // Shipit gives up waiting: explain, and roll back itself when asked to.
    let give_up = |headline: String, kind: EcsErrorKind| {
        let gave_up = GaveUp {
            checkpoint: &checkpoint,
            seen: &seen,
            deployment_id: &deployment_id,
            document: rollout.document,
            headline,
            kind,
        };
        give_up(clients, spec, gave_up, observer, &cancel, outcome.clone())
    };
    match stop {
        Stop::Verdict(Verdict::Done) => Ok(outcome),
        Stop::Verdict(Verdict::RolledBack { to, reason }) => {
            outcome.rolled_back_to = Some(to.clone());
            // Ours may be gone from the list, last seen still in progress: it failed.
            outcome.rollout_state = Some("FAILED".to_owned());
            let evidence = explain(
                clients,
                spec,
                &seen.last,
                &seen.unhealthy_targets,
                &deployment_id,
                rollout.document,
            )
            .await;
            let reason = reason.map(|r| format!(" ({r})")).unwrap_or_default();
            Err(failure_of(
                format!(
                    "deployment {deployment_id} failed and the service rolled back to {}{reason}",
                    short(&to)
                ),
                EcsErrorKind::RolledBack,
                &mut outcome,
                evidence,
            ))
        }
        Stop::Verdict(Verdict::Competing {
            deployment,
            task_definition,
        }) => Err(failure_of(
            format!(
                "a competing deploy replaced ours: deployment {deployment} ({}) became the service's primary while ours ({deployment_id}) ran",
                short(&task_definition)
            ),
            EcsErrorKind::CompetingDeploy,
            &mut outcome,
            String::new(),
        )),
        Stop::Verdict(Verdict::Failed { reason }) => {
            let evidence = explain(
                clients,
                spec,
                &seen.last,
                &seen.unhealthy_targets,
                &deployment_id,
                rollout.document,
            )
            .await;
            Err(failure_of(
                format!("deployment {deployment_id} failed: {reason}"),
                EcsErrorKind::Remote,
                &mut outcome,
                evidence,
            ))
        }
        Stop::Verdict(Verdict::Waiting { .. }) => unreachable_waiting(&mut outcome),
        Stop::Verdict(Verdict::FailedTaskLimit { failed, limit }) => {
            let headline = format!(
                "{failed} tasks of deployment {deployment_id} stopped (the limit is {limit})"
            );
            give_up(headline, EcsErrorKind::Remote).await
        }
        Stop::TimedOut => {
            let headline = format!(
                "deployment {deployment_id} did not finish within {}",
                human(timeout(spec))
            );
            give_up(headline, EcsErrorKind::TimedOut).await
        }
        Stop::NoProgress => {
            let headline = format!(
                "deployment {deployment_id} made no progress for {}",
                human(no_progress(spec))
            );
            give_up(headline, EcsErrorKind::TimedOut).await
        }
    }
}

fn unreachable_waiting(outcome: &mut EcsDeployOutcome) -> Result<EcsDeployOutcome, EcsDeployError> {
    // `wait` never stops on Waiting; answer sensibly rather than panic should that change.
    Err(
        EcsDeployError::remote("the deployment stopped being followed before it finished")
            .with_outcome(outcome.clone()),
    )
}

/// Why and where shipit gave up waiting.
struct GaveUp<'a> {
    checkpoint: &'a EcsCheckpoint,
    seen: &'a Seen,
    deployment_id: &'a str,
    document: Option<&'a TaskDefinitionDocument>,
    headline: String,
    kind: EcsErrorKind,
}

/// Gives up waiting: explains, and when `rollback_on_timeout` is set returns the service to the
/// previous task definition and waits for it. A timeout stays TimedOut either way; a failed
/// task limit becomes RolledBack after shipit's own rollback.
async fn give_up(
    clients: &EcsClients,
    spec: &EcsDeploySpec,
    gave_up: GaveUp<'_>,
    observer: &dyn EcsObserver,
    cancel: &CancellationToken,
    mut outcome: EcsDeployOutcome,
) -> Result<EcsDeployOutcome, EcsDeployError> {
    let GaveUp {
        checkpoint,
        seen,
        deployment_id,
        document,
        headline,
        kind,
    } = gave_up;
    let evidence = explain(
        clients,
        spec,
        &seen.last,
        &seen.unhealthy_targets,
        deployment_id,
        document,
    )
    .await;
    let mut message = format!("{headline}\n{evidence}");
    let mut kind = kind;
    match (&checkpoint.previous_task_definition_arn, spec.config.rollback_on_timeout) {
        (Some(previous), true) => {
            observer.on_progress(&format!("rolling back to {}", short(previous)));
            match return_to(clients, spec, previous, checkpoint.task_definition_arn.as_deref(), observer, cancel).await {
                Ok(()) => {
                    outcome.rolled_back_to = Some(previous.clone());
                    message.push_str(&format!("\nshipit rolled the service back to {}", short(previous)));
                    if kind != EcsErrorKind::TimedOut {
                        kind = EcsErrorKind::RolledBack;
                    }
                }
                Err(err) => message.push_str(&format!("\nshipit's rollback to {} did not finish: {}", short(previous), err.message)),
            }
        }
        _ => message.push_str("\nthe deployment goes on; `rollback_on_timeout: true` would return the service to the previous version"),
    }
    outcome.failure = Some(message.clone());
    Err(EcsDeployError::new(kind, message).with_outcome(outcome))
}

/// Updates the service back to `previous` and waits for that deployment with the same gate.
async fn return_to(
    clients: &EcsClients,
    spec: &EcsDeploySpec,
    previous: &str,
    failed: Option<&str>,
    observer: &dyn EcsObserver,
    cancel: &CancellationToken,
) -> Result<(), EcsDeployError> {
    let (snapshot, live) = describe_service(clients, spec).await?;
    let id = update_service(clients, spec, &live, previous, &ServiceChanges::default())
        .await?
        .unwrap_or_default();
    let ours = OurDeployment {
        id: &id,
        task_definition: previous,
        previous_task_definition: failed,
    };
    let limits = GateLimits {
        circuit_breaker_enabled: true,
        failed_tasks_limit: None,
    };
    match wait(clients, spec, ours, limits, &snapshot, observer, cancel)
        .await?
        .0
    {
        Stop::Verdict(Verdict::Done) => Ok(()),
        _ => Err(EcsDeployError::remote(format!(
            "the rollback deployment {id} did not become stable"
        ))),
    }
}

/// Polls until the gate decides or a timeout passes. Streams new service events and our
/// counts, one line per change.
async fn wait(
    clients: &EcsClients,
    spec: &EcsDeploySpec,
    ours: OurDeployment<'_>,
    limits: GateLimits,
    before: &ServiceSnapshot,
    observer: &dyn EcsObserver,
    cancel: &CancellationToken,
) -> Result<(Stop, Seen), EcsDeployError> {
    let started = Instant::now();
    let mut last_change = started;
    let mut pace = PollPace::default();
    let mut mark: Option<ProgressMark> = None;
    let mut seen: HashSet<String> = before.events.iter().map(|e| e.id.clone()).collect();
    let mut service_deployments_answer = true;
    let mut stopped_of_ours = 0;
    let mut last = before.clone();
    let mut unhealthy_targets: Vec<UnhealthyTarget> = Vec::new();
    let mut ours_seen: Option<DeploymentSnapshot> = before.deployment(ours.id).cloned();
    let mut last_counts = String::new();
    loop {
        pace.record_calls(Instant::now(), 1);
        match describe_service(clients, spec).await {
            Ok((snapshot, _)) => last = snapshot,
            Err(failure) if failure.throttled => {
                pace.on_throttled();
                if let Some(stop) =
                    sleep_or_stop(&mut pace, 1, started, last_change, spec, cancel).await
                {
                    return stop.map(|stop| {
                        let seen = Seen {
                            last: last.clone(),
                            ours: ours_seen.clone(),
                            unhealthy_targets: unhealthy_targets.clone(),
                        };
                        (stop, seen)
                    });
                }
                continue;
            }
            Err(failure) => return Err(failure.into()),
        }
        for event in last.events.iter().rev().filter(|e| !seen.contains(&e.id)) {
            observer.on_progress(&event.message);
        }
        seen.extend(last.events.iter().map(|e| e.id.clone()));
        if let Some(deployment) = last.deployment(ours.id) {
            ours_seen = Some(deployment.clone());
            let counts = format!("{}: {}", ours.id, deployment.counts());
            if counts != last_counts {
                observer.on_progress(&counts);
                last_counts = counts;
            }
        }
        let new_mark = ProgressMark::of(&last, ours.id);
        // While new tasks run, the load balancer's view of them is the evidence a failed
        // health check leaves; look when our counts move.
        if mark.as_ref() != Some(&new_mark)
            && !last.target_groups.is_empty()
            && last.deployment(ours.id).is_some_and(|d| d.running > 0)
        {
            pace.record_calls(Instant::now(), last.target_groups.len());
            if let Ok(found) = unhealthy_targets_of(clients, &last.target_groups).await
                && !found.is_empty()
            {
                unhealthy_targets = found;
            }
        }
        if !limits.circuit_breaker_enabled && mark.as_ref() != Some(&new_mark) {
            pace.record_calls(Instant::now(), 2);
            if let Ok(stopped) = stopped_tasks_of(clients, spec, ours.id).await {
                stopped_of_ours = i64::try_from(stopped.len()).unwrap_or(i64::MAX);
            }
        }
        let input = |service_deployment| GateInput {
            ours,
            service: &last,
            service_deployment,
            stopped_tasks_of_ours: stopped_of_ours,
            limits,
            previous_mark: mark.as_ref(),
        };
        let mut verdict = decide(&input(None));
        let looks_terminal = !matches!(verdict, Verdict::Waiting { .. })
            || last
                .deployment(ours.id)
                .and_then(|d| d.rollout_state.as_deref())
                .is_some_and(|s| s != "IN_PROGRESS");
        if looks_terminal
            && service_deployments_answer
            && let Some(arn) = last.current_service_deployment.clone()
        {
            pace.record_calls(Instant::now(), 1);
            match describe_service_deployment(clients, spec, &arn).await {
                Ok(state) => verdict = decide(&input(state.as_ref())),
                Err(failure) if failure.is_unknown_operation() => {
                    service_deployments_answer = false
                }
                Err(_) => {}
            }
        }
        mark = Some(new_mark);
        match verdict {
            Verdict::Waiting { changed } => {
                if changed {
                    pace.on_change();
                    last_change = Instant::now();
                } else {
                    pace.on_quiet();
                }
                if let Some(stop) =
                    sleep_or_stop(&mut pace, 1, started, last_change, spec, cancel).await
                {
                    return stop.map(|stop| {
                        let seen = Seen {
                            last: last.clone(),
                            ours: ours_seen.clone(),
                            unhealthy_targets: unhealthy_targets.clone(),
                        };
                        (stop, seen)
                    });
                }
            }
            decided => {
                let seen = Seen {
                    last,
                    ours: ours_seen,
                    unhealthy_targets,
                };
                return Ok((Stop::Verdict(decided), seen));
            }
        }
    }
}

/// Sleeps until the next poll; returns a stop when a timeout passed or the run was cancelled.
async fn sleep_or_stop(
    pace: &mut PollPace,
    next_calls: usize,
    started: Instant,
    last_change: Instant,
    spec: &EcsDeploySpec,
    cancel: &CancellationToken,
) -> Option<Result<Stop, EcsDeployError>> {
    let now = Instant::now();
    if now.duration_since(started) >= timeout(spec) {
        return Some(Ok(Stop::TimedOut));
    }
    if now.duration_since(last_change) >= no_progress(spec) {
        return Some(Ok(Stop::NoProgress));
    }
    let delay = pace.next_delay(now, next_calls);
    tokio::select! {
        () = cancel.cancelled() => Some(Err(EcsDeployError::new(
            EcsErrorKind::Cancelled,
            "interrupted while waiting; the deployment goes on and `shipit resume` re-attaches to it",
        ))),
        () = tokio::time::sleep(delay) => None,
    }
}

/// The deployment an interrupted attempt created: the recorded id, or, when it was killed
/// between the update and the journal, the PRIMARY running our task definition created at or
/// after the recorded request time.
pub(crate) fn adopt(
    checkpoint: &EcsCheckpoint,
    service: &ServiceSnapshot,
    task_definition: &str,
) -> Option<String> {
    if let Some(id) = &checkpoint.deployment_id {
        return Some(id.clone());
    }
    let requested =
        chrono::DateTime::parse_from_rfc3339(checkpoint.update_requested_at.as_deref()?).ok()?;
    let primary = service.primary()?;
    (primary.task_definition == task_definition
        && primary.created_at.is_some_and(|created| {
            created >= requested.with_timezone(&Utc) - chrono::Duration::seconds(1)
        }))
    .then(|| primary.id.clone())
}

async fn journal(
    observer: &dyn EcsObserver,
    checkpoint: &EcsCheckpoint,
) -> Result<(), EcsDeployError> {
    observer.on_checkpoint(checkpoint).await.map_err(|why| {
        EcsDeployError::remote(format!(
            "the deploy could not be journaled, so a resume could not find it: {why}"
        ))
    })
}

pub(crate) fn base_outcome(
    spec: &EcsDeploySpec,
    checkpoint: &EcsCheckpoint,
    registered: bool,
) -> EcsDeployOutcome {
    EcsDeployOutcome {
        cluster: spec.config.cluster.clone(),
        service: spec.config.service.clone(),
        strategy: match spec.config.strategy {
            crate::pipeline::model::EcsStrategy::Rolling => "rolling",
            crate::pipeline::model::EcsStrategy::BlueGreen => "blue_green",
        }
        .to_owned(),
        task_definition_arn: checkpoint.task_definition_arn.clone().unwrap_or_default(),
        previous_task_definition_arn: checkpoint.previous_task_definition_arn.clone(),
        registered,
        deployment_id: checkpoint.deployment_id.clone(),
        images: spec.images.clone(),
        ..EcsDeployOutcome::default()
    }
}

/// Our deployment's last state and the last events, into the outcome.
pub(crate) fn fill(outcome: &mut EcsDeployOutcome, service: &ServiceSnapshot, deployment_id: &str) {
    if let Some(ours) = service
        .deployment(deployment_id)
        .or_else(|| service.primary())
    {
        fill_counts(outcome, ours);
    }
    outcome.last_events = service
        .events
        .iter()
        .take(10)
        .rev()
        .map(|e| e.message.clone())
        .collect();
}

fn fill_counts(outcome: &mut EcsDeployOutcome, deployment: &DeploymentSnapshot) {
    outcome.rollout_state = deployment.rollout_state.clone();
    outcome.desired_count = deployment.desired;
    outcome.running_count = deployment.running;
    outcome.pending_count = deployment.pending;
    outcome.failed_tasks = deployment.failed_tasks;
}

fn timeout(spec: &EcsDeploySpec) -> Duration {
    spec.config
        .timeout
        .as_ref()
        .map_or(DEFAULT_TIMEOUT, |t| t.0)
}

fn no_progress(spec: &EcsDeploySpec) -> Duration {
    spec.config
        .no_progress_timeout
        .as_ref()
        .map_or(DEFAULT_NO_PROGRESS, |t| t.0)
}

fn human(duration: Duration) -> String {
    humantime::format_duration(duration).to_string()
}

/// `family:revision` of a task definition ARN.
pub(crate) fn short(arn: &str) -> &str {
    arn.rsplit('/').next().unwrap_or(arn)
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;
    use crate::deploy::ecs::snapshot::DeploymentSnapshot;

    fn service_with_primary(td: &str, created_secs: i64) -> ServiceSnapshot {
        ServiceSnapshot {
            deployments: vec![DeploymentSnapshot {
                id: "ecs-svc/9".to_owned(),
                status: "PRIMARY".to_owned(),
                task_definition: td.to_owned(),
                created_at: Some(Utc.timestamp_opt(created_secs, 0).unwrap()),
                ..DeploymentSnapshot::default()
            }],
            ..ServiceSnapshot::default()
        }
    }

    #[test]
    fn a_resume_adopts_only_the_deployment_its_killed_attempt_created() {
        let requested = Utc.timestamp_opt(1_000, 0).unwrap().to_rfc3339();
        let checkpoint = EcsCheckpoint {
            update_requested_at: Some(requested),
            ..EcsCheckpoint::default()
        };
        assert_eq!(
            adopt(&checkpoint, &service_with_primary("td:8", 1_002), "td:8"),
            Some("ecs-svc/9".to_owned())
        );
        assert_eq!(
            adopt(&checkpoint, &service_with_primary("td:8", 900), "td:8"),
            None,
            "older than our request"
        );
        assert_eq!(
            adopt(&checkpoint, &service_with_primary("td:9", 1_002), "td:8"),
            None,
            "another revision"
        );
        assert_eq!(
            adopt(
                &EcsCheckpoint::default(),
                &service_with_primary("td:8", 1_002),
                "td:8"
            ),
            None,
            "never requested"
        );
        let recorded = EcsCheckpoint {
            deployment_id: Some("ecs-svc/1".to_owned()),
            ..EcsCheckpoint::default()
        };
        assert_eq!(
            adopt(&recorded, &service_with_primary("td:8", 1_002), "td:8"),
            Some("ecs-svc/1".to_owned())
        );
    }
}
