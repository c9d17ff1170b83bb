//! Whether the deployment this deploy created has finished, and how. The answer comes from
//! our deployment only (found by its id), never from "the service looks stable": a circuit
//! breaker rollback leaves a stable service on the old revision, and a competing deploy leaves
//! a stable service on someone else's. When the service deployments API answers, its terminal
//! statuses decide; DescribeServices alone is enough on endpoints without it.

use crate::deploy::ecs::snapshot::{DeploymentSnapshot, ServiceDeploymentState, ServiceSnapshot};

/// The deployment a deploy waits for.
#[derive(Debug, Clone, Copy)]
pub(crate) struct OurDeployment<'a> {
    pub(crate) id: &'a str,
    pub(crate) task_definition: &'a str,
    /// What the service ran before: a PRIMARY back on it means a rollback.
    pub(crate) previous_task_definition: Option<&'a str>,
}

#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct GateLimits {
    /// Whether the service's circuit breaker watches the deployment; shipit counts failed
    /// tasks itself only when it does not.
    pub(crate) circuit_breaker_enabled: bool,
    /// Failed tasks after which shipit gives up; the breaker's own threshold when absent.
    pub(crate) failed_tasks_limit: Option<u32>,
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct GateInput<'a> {
    pub(crate) ours: OurDeployment<'a>,
    pub(crate) service: &'a ServiceSnapshot,
    /// The service deployment behind ours, when the API answers and it is ours.
    pub(crate) service_deployment: Option<&'a ServiceDeploymentState>,
    /// Stopped tasks started by our deployment (DescribeTasks), for services without the
    /// circuit breaker, whose deployments count no failed tasks.
    pub(crate) stopped_tasks_of_ours: i64,
    pub(crate) limits: GateLimits,
    /// What the previous poll saw.
    pub(crate) previous_mark: Option<&'a ProgressMark>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Not finished; `changed` says whether our counts or the events moved since the last
    /// poll (the no-progress clock restarts and the next poll comes sooner).
    Waiting { changed: bool },
    /// Ours is the only deployment, PRIMARY, completed, with every desired task running.
    Done,
    /// Ours failed and the service went back to `to`.
    RolledBack { to: String, reason: Option<String> },
    /// Another deployment took over while ours ran.
    Competing {
        deployment: String,
        task_definition: String,
    },
    /// Ours failed and the service stays where it is (a detect-only circuit breaker, a
    /// stopped deployment, a failed rollback).
    Failed { reason: String },
    /// More tasks of ours stopped than the limit, on a service without the circuit breaker:
    /// shipit gives up (and rolls back when asked to).
    FailedTaskLimit { failed: i64, limit: i64 },
}

/// What moves when a deployment makes progress: our counts and state, and the newest event.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ProgressMark {
    ours: Option<DeploymentSnapshot>,
    primary: Option<String>,
    newest_event: Option<String>,
}

impl ProgressMark {
    pub(crate) fn of(service: &ServiceSnapshot, our_id: &str) -> ProgressMark {
        ProgressMark {
            ours: service.deployment(our_id).map(|ours| DeploymentSnapshot {
                // When it was made never changes; leaving it out keeps the mark about progress.
                created_at: None,
                ..ours.clone()
            }),
            primary: service.primary().map(|primary| primary.id.clone()),
            newest_event: service.events.first().map(|event| event.id.clone()),
        }
    }
}

/// The circuit breaker's threshold: `max(3, min(200, ceil(desired / 2)))`.
pub(crate) fn breaker_threshold(desired: i64) -> i64 {
    let half = (desired.max(0) + 1) / 2;
    half.clamp(3, 200)
}

pub(crate) fn decide(input: &GateInput<'_>) -> Verdict {
    if let Some(verdict) = from_service_deployment(input) {
        return verdict;
    }
    let verdict = from_deployments(input);
    // A stopped service deployment that DescribeServices does not explain yet is a failure:
    // nobody will finish it.
    match (&verdict, input.service_deployment) {
        (Verdict::Waiting { .. }, Some(state)) if state.status == "STOPPED" => Verdict::Failed {
            reason: with_reason("the deployment was stopped", state.status_reason.as_deref()),
        },
        _ => verdict,
    }
}

fn from_service_deployment(input: &GateInput<'_>) -> Option<Verdict> {
    let state = input.service_deployment?;
    let service = input.service;
    match state.status.as_str() {
        "SUCCESSFUL" => {
            let ours = service.deployment(input.ours.id)?;
            (ours.is_primary() && ours.task_definition == input.ours.task_definition)
                .then_some(Verdict::Done)
        }
        "ROLLBACK_SUCCESSFUL" => Some(Verdict::RolledBack {
            to: service
                .primary()
                .map(|primary| primary.task_definition.clone())
                .or(input.ours.previous_task_definition.map(str::to_owned))
                .unwrap_or_default(),
            reason: state.status_reason.clone().or_else(|| our_reason(input)),
        }),
        "ROLLBACK_FAILED" => Some(Verdict::Failed {
            reason: with_reason(
                "the deployment failed and so did its rollback",
                state.status_reason.as_deref(),
            ),
        }),
        _ => None,
    }
}

fn from_deployments(input: &GateInput<'_>) -> Verdict {
    let service = input.service;
    let ours = service.deployment(input.ours.id);
    let other_primary = service
        .primary()
        .filter(|primary| primary.id != input.ours.id);
    match ours {
        Some(ours) if ours.rollout_state.as_deref() == Some("FAILED") => match other_primary {
            Some(primary) => Verdict::RolledBack {
                to: primary.task_definition.clone(),
                reason: ours.rollout_state_reason.clone(),
            },
            None => Verdict::Failed {
                reason: with_reason(
                    "the circuit breaker stopped the deployment (without a rollback)",
                    ours.rollout_state_reason.as_deref(),
                ),
            },
        },
        Some(ours) if ours.is_primary() => {
            let completed = ours
                .rollout_state
                .as_deref()
                .is_none_or(|s| s == "COMPLETED");
            if completed && ours.running == ours.desired && service.deployments.len() == 1 {
                return Verdict::Done;
            }
            if !input.limits.circuit_breaker_enabled {
                let failed = ours.failed_tasks.max(input.stopped_tasks_of_ours);
                let limit = input
                    .limits
                    .failed_tasks_limit
                    .map_or_else(|| breaker_threshold(ours.desired), i64::from);
                if failed >= limit {
                    return Verdict::FailedTaskLimit { failed, limit };
                }
            }
            waiting(input)
        }
        _ => match other_primary {
            Some(primary)
                if input.ours.previous_task_definition
                    == Some(primary.task_definition.as_str()) =>
            {
                Verdict::RolledBack {
                    to: primary.task_definition.clone(),
                    reason: our_reason(input),
                }
            }
            Some(primary) => Verdict::Competing {
                deployment: primary.id.clone(),
                task_definition: primary.task_definition.clone(),
            },
            // No PRIMARY listed: a moment between two states; the next poll will tell.
            None => waiting(input),
        },
    }
}

fn waiting(input: &GateInput<'_>) -> Verdict {
    let mark = ProgressMark::of(input.service, input.ours.id);
    Verdict::Waiting {
        changed: input.previous_mark != Some(&mark),
    }
}

fn our_reason(input: &GateInput<'_>) -> Option<String> {
    input
        .service
        .deployment(input.ours.id)
        .and_then(|ours| ours.rollout_state_reason.clone())
}

fn with_reason(what: &str, reason: Option<&str>) -> String {
    match reason {
        Some(reason) if !reason.trim().is_empty() => format!("{what}: {reason}"),
        _ => what.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deploy::ecs::snapshot::EventSnapshot;

    const OURS: &str = "ecs-svc/2222";
    const NEW_TD: &str = "arn:aws:ecs:eu-west-1:1:task-definition/web:8";
    const OLD_TD: &str = "arn:aws:ecs:eu-west-1:1:task-definition/web:7";
    const THIRD_TD: &str = "arn:aws:ecs:eu-west-1:1:task-definition/web:9";

    fn deployment(
        id: &str,
        status: &str,
        td: &str,
        running: i64,
        rollout: Option<&str>,
    ) -> DeploymentSnapshot {
        DeploymentSnapshot {
            id: id.to_owned(),
            status: status.to_owned(),
            task_definition: td.to_owned(),
            desired: 4,
            running,
            pending: 0,
            failed_tasks: 0,
            rollout_state: rollout.map(str::to_owned),
            rollout_state_reason: None,
            created_at: None,
        }
    }

    fn service(deployments: Vec<DeploymentSnapshot>) -> ServiceSnapshot {
        ServiceSnapshot {
            status: "ACTIVE".to_owned(),
            deployments,
            events: vec![EventSnapshot {
                id: "e1".to_owned(),
                ..EventSnapshot::default()
            }],
            ..ServiceSnapshot::default()
        }
    }

    fn ours_new(running: i64, rollout: Option<&str>) -> DeploymentSnapshot {
        deployment(OURS, "PRIMARY", NEW_TD, running, rollout)
    }

    fn old_active(running: i64) -> DeploymentSnapshot {
        deployment("ecs-svc/1111", "ACTIVE", OLD_TD, running, Some("COMPLETED"))
    }

    fn state(status: &str, reason: Option<&str>) -> ServiceDeploymentState {
        ServiceDeploymentState {
            arn: "arn:sd".to_owned(),
            status: status.to_owned(),
            status_reason: reason.map(str::to_owned),
            created_at: None,
        }
    }

    fn decide_on(
        service: &ServiceSnapshot,
        service_deployment: Option<&ServiceDeploymentState>,
        stopped: i64,
        limits: GateLimits,
    ) -> Verdict {
        let mark = ProgressMark::of(service, OURS);
        decide(&GateInput {
            ours: OurDeployment {
                id: OURS,
                task_definition: NEW_TD,
                previous_task_definition: Some(OLD_TD),
            },
            service,
            service_deployment,
            stopped_tasks_of_ours: stopped,
            limits,
            previous_mark: Some(&mark),
        })
    }

    fn with_breaker() -> GateLimits {
        GateLimits {
            circuit_breaker_enabled: true,
            failed_tasks_limit: None,
        }
    }

    fn rolled_back_to_old(reason: Option<&str>) -> Verdict {
        Verdict::RolledBack {
            to: OLD_TD.to_owned(),
            reason: reason.map(str::to_owned),
        }
    }

    #[test]
    fn the_deployments_alone_decide_on_endpoints_without_the_service_deployments_api() {
        let mut failed_with_rollback = ours_new(1, Some("FAILED"));
        failed_with_rollback.status = "ACTIVE".to_owned();
        failed_with_rollback.rollout_state_reason =
            Some("ECS deployment circuit breaker: tasks failed to start.".to_owned());
        let mut detect_only = ours_new(1, Some("FAILED"));
        detect_only.rollout_state_reason = Some("tasks failed to start".to_owned());
        let cases: Vec<(&str, ServiceSnapshot, Verdict)> = vec![
            ("rollout under way", service(vec![ours_new(2, Some("IN_PROGRESS")), old_active(2)]), Verdict::Waiting { changed: false }),
            ("completed but the old deployment still drains", service(vec![ours_new(4, Some("COMPLETED")), old_active(1)]), Verdict::Waiting { changed: false }),
            ("completed, all running, alone", service(vec![ours_new(4, Some("COMPLETED"))]), Verdict::Done),
            ("no rolloutState on this endpoint, all running, alone", service(vec![ours_new(4, None)]), Verdict::Done),
            ("no rolloutState, not all running", service(vec![ours_new(3, None)]), Verdict::Waiting { changed: false }),
            ("completed but a task short", service(vec![ours_new(3, Some("COMPLETED"))]), Verdict::Waiting { changed: false }),
            ("in progress though all run", service(vec![ours_new(4, Some("IN_PROGRESS"))]), Verdict::Waiting { changed: false }),
            (
                "the breaker failed ours and rolled back",
                service(vec![deployment("ecs-svc/3333", "PRIMARY", OLD_TD, 0, Some("IN_PROGRESS")), failed_with_rollback]),
                rolled_back_to_old(Some("ECS deployment circuit breaker: tasks failed to start.")),
            ),
            (
                "the breaker failed ours without a rollback",
                service(vec![detect_only, old_active(4)]),
                Verdict::Failed { reason: "the circuit breaker stopped the deployment (without a rollback): tasks failed to start".to_owned() },
            ),
            (
                "ours is gone and the PRIMARY runs the previous revision",
                service(vec![deployment("ecs-svc/3333", "PRIMARY", OLD_TD, 4, Some("COMPLETED"))]),
                rolled_back_to_old(None),
            ),
            (
                "another deployment of a third revision took over",
                service(vec![deployment("ecs-svc/4444", "PRIMARY", THIRD_TD, 1, Some("IN_PROGRESS")), deployment(OURS, "ACTIVE", NEW_TD, 2, Some("IN_PROGRESS"))]),
                Verdict::Competing { deployment: "ecs-svc/4444".to_owned(), task_definition: THIRD_TD.to_owned() },
            ),
            (
                "a forced redeploy of our own revision took over",
                service(vec![deployment("ecs-svc/4444", "PRIMARY", NEW_TD, 1, Some("IN_PROGRESS"))]),
                Verdict::Competing { deployment: "ecs-svc/4444".to_owned(), task_definition: NEW_TD.to_owned() },
            ),
            ("no PRIMARY at all for a moment", service(vec![deployment(OURS, "ACTIVE", NEW_TD, 2, Some("IN_PROGRESS"))]), Verdict::Waiting { changed: false }),
            ("an empty answer", service(vec![]), Verdict::Waiting { changed: false }),
        ];
        for (case, service, expected) in cases {
            assert_eq!(
                decide_on(&service, None, 0, with_breaker()),
                expected,
                "{case}"
            );
        }
    }

    #[test]
    fn terminal_service_deployment_statuses_decide() {
        let running = service(vec![ours_new(2, Some("IN_PROGRESS")), old_active(2)]);
        let cases = [
            (
                "SUCCESSFUL while ours is PRIMARY",
                state("SUCCESSFUL", None),
                running.clone(),
                Verdict::Done,
            ),
            (
                "IN_PROGRESS",
                state("IN_PROGRESS", None),
                running.clone(),
                Verdict::Waiting { changed: false },
            ),
            (
                "ROLLBACK_IN_PROGRESS waits for the end",
                state("ROLLBACK_IN_PROGRESS", None),
                running.clone(),
                Verdict::Waiting { changed: false },
            ),
            (
                "ROLLBACK_SUCCESSFUL",
                state("ROLLBACK_SUCCESSFUL", Some("alarm web-5xx went into ALARM")),
                service(vec![deployment(
                    "ecs-svc/3333",
                    "PRIMARY",
                    OLD_TD,
                    4,
                    Some("COMPLETED"),
                )]),
                rolled_back_to_old(Some("alarm web-5xx went into ALARM")),
            ),
            (
                "ROLLBACK_FAILED",
                state("ROLLBACK_FAILED", Some("no capacity")),
                running.clone(),
                Verdict::Failed {
                    reason: "the deployment failed and so did its rollback: no capacity".to_owned(),
                },
            ),
            (
                "STOPPED by someone, service unchanged",
                state("STOPPED", Some("stopped by a user")),
                running.clone(),
                Verdict::Failed {
                    reason: "the deployment was stopped: stopped by a user".to_owned(),
                },
            ),
            (
                "STOPPED because a competing deploy replaced ours",
                state("STOPPED", None),
                service(vec![deployment(
                    "ecs-svc/4444",
                    "PRIMARY",
                    THIRD_TD,
                    1,
                    Some("IN_PROGRESS"),
                )]),
                Verdict::Competing {
                    deployment: "ecs-svc/4444".to_owned(),
                    task_definition: THIRD_TD.to_owned(),
                },
            ),
        ];
        for (case, sd, service, expected) in cases {
            assert_eq!(
                decide_on(&service, Some(&sd), 0, with_breaker()),
                expected,
                "{case}"
            );
        }
    }

    #[test]
    fn successful_is_not_done_when_the_primary_is_not_ours() {
        let service = service(vec![deployment(
            "ecs-svc/4444",
            "PRIMARY",
            THIRD_TD,
            4,
            Some("COMPLETED"),
        )]);
        assert_eq!(
            decide_on(
                &service,
                Some(&state("SUCCESSFUL", None)),
                0,
                with_breaker()
            ),
            Verdict::Competing {
                deployment: "ecs-svc/4444".to_owned(),
                task_definition: THIRD_TD.to_owned()
            }
        );
    }

    #[test]
    fn without_the_breaker_shipit_counts_failed_tasks_against_the_limit() {
        let no_breaker = GateLimits {
            circuit_breaker_enabled: false,
            failed_tasks_limit: None,
        };
        let under_way = service(vec![ours_new(1, Some("IN_PROGRESS")), old_active(3)]);
        // desired 4: the breaker's formula gives max(3, min(200, 2)) = 3.
        assert_eq!(
            decide_on(&under_way, None, 2, no_breaker),
            Verdict::Waiting { changed: false }
        );
        assert_eq!(
            decide_on(&under_way, None, 3, no_breaker),
            Verdict::FailedTaskLimit {
                failed: 3,
                limit: 3
            }
        );
        let mut counted = under_way.clone();
        counted.deployments[0].failed_tasks = 5;
        assert_eq!(
            decide_on(&counted, None, 0, no_breaker),
            Verdict::FailedTaskLimit {
                failed: 5,
                limit: 3
            }
        );
        let own_limit = GateLimits {
            circuit_breaker_enabled: false,
            failed_tasks_limit: Some(10),
        };
        assert_eq!(
            decide_on(&counted, None, 9, own_limit),
            Verdict::Waiting { changed: false }
        );
        assert_eq!(
            decide_on(&counted, None, 10, own_limit),
            Verdict::FailedTaskLimit {
                failed: 10,
                limit: 10
            }
        );
        // With the breaker on, the breaker decides.
        assert_eq!(
            decide_on(&counted, None, 50, with_breaker()),
            Verdict::Waiting { changed: false }
        );
    }

    #[test]
    fn the_breaker_threshold_follows_ecs_formula() {
        for (desired, threshold) in [
            (0, 3),
            (1, 3),
            (4, 3),
            (7, 4),
            (10, 5),
            (399, 200),
            (1000, 200),
            (-1, 3),
        ] {
            assert_eq!(breaker_threshold(desired), threshold, "desired {desired}");
        }
    }

    #[test]
    fn waiting_says_whether_counts_or_events_moved() {
        let before = service(vec![ours_new(1, Some("IN_PROGRESS")), old_active(3)]);
        let before_mark = ProgressMark::of(&before, OURS);
        let mut more_running = before.clone();
        more_running.deployments[0].running = 2;
        let mut new_event = before.clone();
        new_event.events.insert(
            0,
            EventSnapshot {
                id: "e2".to_owned(),
                ..EventSnapshot::default()
            },
        );
        let mut only_old_moved = before.clone();
        only_old_moved.deployments[1].running = 2;
        for (case, now, changed) in [
            ("same answer", &before, false),
            ("one more task of ours runs", &more_running, true),
            ("a new event", &new_event, true),
            ("only the old deployment moved", &only_old_moved, false),
        ] {
            let verdict = decide(&GateInput {
                ours: OurDeployment {
                    id: OURS,
                    task_definition: NEW_TD,
                    previous_task_definition: Some(OLD_TD),
                },
                service: now,
                service_deployment: None,
                stopped_tasks_of_ours: 0,
                limits: with_breaker(),
                previous_mark: Some(&before_mark),
            });
            assert_eq!(verdict, Verdict::Waiting { changed }, "{case}");
        }
    }
}
