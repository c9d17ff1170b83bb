//! Following a CodeDeploy deployment to its end: GetDeployment every poll, the ECS target when
//! something moved or every few polls, under the shared `PollPace` budget. The gate decides;
//! this loop reroutes when asked to, tells how to approve, and stops the deployment (with
//! rollback) at shipit's deadline instead of waiting forever on a deployment that never ends.

use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::pipeline::model::RerouteMode;

use super::super::{EcsClients, EcsDeployError, EcsErrorKind, EcsObserver, PollPace};
use super::gate::{Verdict, judge};
use super::poll::Poller;
use super::reroute::continue_to_production;
use super::snapshot::Snapshot;
use super::stop::{STOP_WAIT, Stopped, stop_with_rollback};
use crate::deploy::aws_failure::AwsFailure;

/// A quiet deployment's target is read at least every this many polls.
const TARGET_EVERY: u32 = 4;

#[derive(Debug, Clone)]
pub(crate) struct FollowSettings {
    pub timeout: Duration,
    pub no_progress_timeout: Duration,
    pub reroute: RerouteMode,
    /// The deploy target, for the `shipit approve deploy:<target>` line.
    pub target: String,
    /// The group's own wait for an approval, when it has one.
    pub reroute_wait_minutes: Option<i32>,
}

/// How following ended: the last look, and the result.
#[derive(Debug)]
pub(crate) struct Followed {
    pub last: Option<Snapshot>,
    pub result: Result<(), EcsDeployError>,
}

pub(crate) async fn follow(
    clients: &EcsClients,
    deployment_id: &str,
    settings: &FollowSettings,
    observer: &dyn EcsObserver,
    cancel: &CancellationToken,
) -> Followed {
    let mut pace = PollPace::default();
    let mut poller = Poller::new(clients, deployment_id);
    let started = Instant::now();
    let mut last_change = started;
    let mut last: Option<Snapshot> = None;
    let mut polls: u32 = 0;
    let mut target_due = true;
    let mut reroute_handled = false;

    loop {
        if cancel.is_cancelled() {
            return Followed {
                result: Err(cancelled(deployment_id)),
                last,
            };
        }
        polls += 1;
        match look(
            &mut poller,
            &mut pace,
            last.as_ref(),
            target_due || polls.is_multiple_of(TARGET_EVERY),
        )
        .await
        {
            Err(failure) if failure.is_retryable() => {
                if failure.is_throttling() {
                    pace.on_throttled();
                } else {
                    pace.on_quiet();
                }
            }
            Err(failure) => {
                return Followed {
                    result: Err(failure.into_error()),
                    last,
                };
            }
            Ok(snapshot) => {
                let judgement = judge(last.as_ref(), &snapshot);
                for line in &judgement.changes {
                    observer.on_progress(line);
                }
                target_due = !judgement.changes.is_empty();
                if target_due {
                    pace.on_change();
                    last_change = Instant::now();
                } else {
                    pace.on_quiet();
                }
                last = Some(snapshot);
                match judgement.verdict {
                    Verdict::Waiting => {}
                    Verdict::Succeeded => {
                        return Followed {
                            last,
                            result: Ok(()),
                        };
                    }
                    Verdict::RolledBack {
                        failure,
                        rollback_deployment_id,
                    } => {
                        let hint = rollback_deployment_id
                            .map(|id| format!("the rollback is CodeDeploy deployment {id}"))
                            .unwrap_or_default();
                        let err = EcsDeployError::new(EcsErrorKind::RolledBack, failure);
                        let err = if hint.is_empty() {
                            err
                        } else {
                            err.with_hint(hint)
                        };
                        return Followed {
                            last,
                            result: Err(err),
                        };
                    }
                    Verdict::Failed { failure } => {
                        return Followed {
                            last,
                            result: Err(EcsDeployError::remote(failure)),
                        };
                    }
                    Verdict::AwaitingReroute => {
                        match settings.reroute {
                            RerouteMode::Continue if !reroute_handled => {
                                match continue_to_production(clients, deployment_id).await {
                                    Ok(()) => {
                                        reroute_handled = true;
                                        observer.on_progress(
                                            "rerouting production traffic to the new task set (reroute: continue)",
                                        );
                                    }
                                    // Ended or moved on meanwhile: the next look tells.
                                    Err(failure)
                                        if failure.is_retryable()
                                            || failure
                                                .is("DeploymentIsNotInReadyStateException") => {}
                                    Err(failure) => {
                                        return Followed {
                                            last,
                                            result: Err(failure.into_error()),
                                        };
                                    }
                                }
                                pace.record_calls(Instant::now(), 1);
                            }
                            RerouteMode::Continue => {}
                            RerouteMode::Wait => {
                                if !reroute_handled {
                                    reroute_handled = true;
                                    observer.on_progress(&approve_line(settings));
                                }
                                // Waiting for a person is not a stall: only `timeout` (or the
                                // group's own wait) ends it.
                                last_change = Instant::now();
                            }
                        }
                    }
                }
            }
        }

        let now = Instant::now();
        let reason = if now.duration_since(started) >= settings.timeout {
            Some(format!(
                "did not finish within {}",
                humantime::format_duration(settings.timeout)
            ))
        } else if now.duration_since(last_change) >= settings.no_progress_timeout {
            Some(format!(
                "made no progress (no change of status, lifecycle event or traffic) for {}",
                humantime::format_duration(settings.no_progress_timeout)
            ))
        } else {
            None
        };
        if let Some(reason) = reason {
            observer.on_progress(&format!(
                "CodeDeploy deployment {deployment_id} {reason}: stopping it with rollback"
            ));
            let stopped =
                stop_with_rollback(clients, &poller, deployment_id, &mut pace, cancel).await;
            if let Some(deployment) = stopped.last.clone() {
                let target = last.as_ref().and_then(|l| l.target.clone());
                last = Some(Snapshot { deployment, target });
            }
            if stopped
                .last
                .as_ref()
                .is_some_and(|d| d.status == "Succeeded")
            {
                // It finished while being stopped: that is a success, said as such.
                return Followed {
                    last,
                    result: Ok(()),
                };
            }
            return Followed {
                result: Err(timed_out(deployment_id, &reason, &stopped, last.as_ref())),
                last,
            };
        }

        // Budget for the largest poll: the target may be read whatever `target_due` says (the
        // status moved, or a periodic read).
        let next_calls = 1 + poller.target_calls();
        let remaining = settings
            .timeout
            .saturating_sub(now.duration_since(started))
            .max(Duration::from_secs(1));
        let delay = pace.next_delay(now, next_calls).min(remaining);
        tokio::select! {
            _ = cancel.cancelled() => {
                return Followed { result: Err(cancelled(deployment_id)), last };
            }
            _ = tokio::time::sleep(delay) => {}
        }
    }
}

/// One poll: the deployment, and the target when asked for (else the last one seen is kept, so
/// lifecycle and traffic changes are always measured against the last target read).
async fn look(
    poller: &mut Poller<'_>,
    pace: &mut PollPace,
    last: Option<&Snapshot>,
    read_target: bool,
) -> Result<Snapshot, AwsFailure> {
    let deployment = poller.deployment().await;
    pace.record_calls(Instant::now(), 1);
    let deployment = deployment?;
    let status_moved = last.is_none_or(|l| l.deployment.status != deployment.status);
    let kept = last.and_then(|l| l.target.clone());
    let target = if read_target || status_moved {
        let calls = poller.target_calls();
        let target = poller.target().await;
        pace.record_calls(Instant::now(), calls);
        target?.or(kept)
    } else {
        kept
    };
    Ok(Snapshot { deployment, target })
}

pub(crate) fn approve_line(settings: &FollowSettings) -> String {
    let mut line = format!(
        "waiting for the production traffic reroute: run `shipit approve deploy:{}`",
        settings.target
    );
    if let Some(minutes) = settings.reroute_wait_minutes {
        line.push_str(&format!(
            " (the deployment group stops the deployment after {minutes} min without it)"
        ));
    }
    line
}

fn cancelled(deployment_id: &str) -> EcsDeployError {
    EcsDeployError::new(
        EcsErrorKind::Cancelled,
        format!("interrupted while following CodeDeploy deployment {deployment_id}; the deployment goes on"),
    )
    .with_hint("resume the run to re-attach to it")
}

/// The error at shipit's deadline, saying where the stop left the service.
pub(crate) fn timed_out(
    deployment_id: &str,
    reason: &str,
    stopped: &Stopped,
    last: Option<&Snapshot>,
) -> EcsDeployError {
    let mut lines = vec![format!("CodeDeploy deployment {deployment_id} {reason}")];
    let rolled_back = stopped
        .last
        .as_ref()
        .and_then(|d| d.rollback_info.as_ref())
        .and_then(|r| r.rollback_deployment_id.as_deref());
    match (&stopped.stop_failure, rolled_back, &stopped.last) {
        (Some(failure), _, _) => lines.push(format!(
            "shipit could not stop it, so it goes on: {failure}"
        )),
        (None, Some(rollback), _) => lines.push(format!(
            "shipit stopped it and CodeDeploy rolled production traffic back to the original task set (rollback deployment {rollback})"
        )),
        (None, None, Some(d)) if stopped.ended() => lines.push(format!(
            "shipit stopped it with rollback; CodeDeploy reports it {} without a rollback deployment",
            d.status
        )),
        (None, None, _) => lines.push(format!(
            "shipit asked CodeDeploy to stop it with rollback; the stop was not confirmed within {}",
            humantime::format_duration(STOP_WAIT)
        )),
    }
    if let Some(target) = last.and_then(|l| l.target.as_ref()) {
        let stuck: Vec<String> = target
            .lifecycle_events
            .iter()
            .filter(|e| e.status == "InProgress")
            .map(|e| e.name.clone())
            .collect();
        if !stuck.is_empty() {
            lines.push(format!("still in progress: {}", stuck.join(", ")));
        }
        if let Some(traffic) = super::progress::traffic_line(target) {
            lines.push(format!("last {traffic}"));
        }
    }
    let err = EcsDeployError::new(EcsErrorKind::TimedOut, lines.join("\n"));
    if stopped.stop_failure.is_some() {
        err.with_hint(format!(
            "stop it yourself: aws deploy stop-deployment --deployment-id {deployment_id} --auto-rollback-enabled"
        ))
    } else {
        err.with_hint("raise `timeout` or `no_progress_timeout` if the deployment needs longer")
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn snapshot(value: serde_json::Value) -> Snapshot {
        serde_json::from_value(value).unwrap()
    }

    fn hung() -> Snapshot {
        snapshot(json!({
            "deploymentInfo": {"deploymentId": "d-1", "status": "InProgress"},
            "ecsTarget": {
                "lifecycleEvents": [
                    {"lifecycleEventName": "Install", "status": "Succeeded"},
                    {"lifecycleEventName": "AfterAllowTestTraffic", "status": "InProgress"},
                ],
                "taskSetsInfo": [
                    {"taskSetLabel": "Blue", "trafficWeight": 100.0},
                    {"taskSetLabel": "Green", "trafficWeight": 0.0},
                ],
            },
        }))
    }

    #[test]
    fn a_deadline_stop_that_rolled_back_says_so_with_what_hung() {
        let stopped = Stopped {
            last: Some(
                snapshot(json!({"deploymentInfo": {
                    "deploymentId": "d-1", "status": "Stopped",
                    "rollbackInfo": {"rollbackDeploymentId": "d-2"},
                }}))
                .deployment,
            ),
            stop_failure: None,
        };
        let err = timed_out("d-1", "did not finish within 15m", &stopped, Some(&hung()));
        assert_eq!(err.kind, EcsErrorKind::TimedOut);
        let lines: Vec<&str> = err.message.lines().collect();
        assert_eq!(
            lines[0],
            "CodeDeploy deployment d-1 did not finish within 15m"
        );
        assert!(lines[1].contains("rolled production traffic back") && lines[1].contains("d-2"));
        assert_eq!(lines[2], "still in progress: AfterAllowTestTraffic");
        assert_eq!(lines[3], "last traffic: blue 100% · green 0%");
    }

    #[test]
    fn a_failed_stop_says_the_deployment_goes_on_and_how_to_stop_it() {
        let stopped = Stopped {
            last: None,
            stop_failure: Some(
                "the AWS identity is not allowed to call codedeploy:StopDeployment".into(),
            ),
        };
        let err = timed_out("d-1", "made no progress", &stopped, None);
        assert!(
            err.message.contains("could not stop it, so it goes on"),
            "{}",
            err.message
        );
        assert!(
            err.hint
                .unwrap()
                .contains("stop-deployment --deployment-id d-1")
        );
    }

    #[test]
    fn an_unconfirmed_stop_is_not_called_a_rollback() {
        let stopped = Stopped {
            last: Some(hung().deployment),
            stop_failure: None,
        };
        let err = timed_out("d-1", "did not finish within 15m", &stopped, None);
        assert!(err.message.contains("not confirmed"), "{}", err.message);
        assert!(!err.message.contains("rolled production traffic back"));
    }

    #[test]
    fn the_approve_line_names_the_target_and_the_group_wait() {
        let settings = FollowSettings {
            timeout: Duration::from_secs(900),
            no_progress_timeout: Duration::from_secs(300),
            reroute: RerouteMode::Wait,
            target: "prod".into(),
            reroute_wait_minutes: Some(60),
        };
        assert_eq!(
            approve_line(&settings),
            "waiting for the production traffic reroute: run `shipit approve deploy:prod` (the deployment group stops the deployment after 60 min without it)"
        );
    }
}
