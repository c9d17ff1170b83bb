//! Whether a CodeDeploy deployment is done, and how: the decision the wait loop acts on. A
//! deployment that CodeDeploy rolled back is never a success, and a failure always names its
//! cause: the failing lifecycle hook with its diagnostics, CodeDeploy's own error, the rollback.

use crate::error_summary::summarize;

use super::snapshot::{LifecycleEventView, Snapshot};

/// The lines of a hook's log tail kept in a failure message.
const LOG_TAIL_LINES: usize = 20;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Created, queued, in progress or baking: keep waiting.
    Waiting,
    /// The replacement task set serves test traffic and the group waits before rerouting
    /// production traffic (status `Ready`).
    AwaitingReroute,
    Succeeded,
    /// Failed or stopped, and CodeDeploy returned production traffic to the original task set.
    RolledBack {
        failure: String,
        rollback_deployment_id: Option<String>,
    },
    /// Failed or stopped with no rollback: the service may run a mix, or the new task set.
    Failed {
        failure: String,
    },
}

/// What a poll shows: the verdict, and the progress lines for what changed since the last one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Judgement {
    pub verdict: Verdict,
    pub changes: Vec<String>,
}

pub(crate) fn judge(previous: Option<&Snapshot>, current: &Snapshot) -> Judgement {
    Judgement {
        verdict: verdict(current),
        changes: super::progress::changes(previous, current),
    }
}

fn verdict(current: &Snapshot) -> Verdict {
    let deployment = &current.deployment;
    match deployment.status.as_str() {
        "Succeeded" => Verdict::Succeeded,
        "Ready" => Verdict::AwaitingReroute,
        "Failed" | "Stopped" => {
            let failure = failure_message(current);
            let rollback_deployment_id = deployment
                .rollback_info
                .as_ref()
                .and_then(|rollback| rollback.rollback_deployment_id.clone());
            if rollback_deployment_id.is_some() {
                Verdict::RolledBack {
                    failure,
                    rollback_deployment_id,
                }
            } else {
                Verdict::Failed { failure }
            }
        }
        // Created, Queued, InProgress, Baking, and any status CodeDeploy adds later: the
        // deadline ends a wait that never finishes.
        _ => Verdict::Waiting,
    }
}

/// The whole explanation of a failed or stopped deployment, one fact a line.
fn failure_message(current: &Snapshot) -> String {
    let deployment = &current.deployment;
    let verb = if deployment.status == "Stopped" {
        "was stopped"
    } else {
        "failed"
    };
    let mut lines = vec![format!(
        "CodeDeploy deployment {} {verb}{}",
        deployment.deployment_id,
        stop_cause(
            deployment
                .error_information
                .as_ref()
                .and_then(|e| e.code.as_deref())
        ),
    )];
    if let Some(error) = &deployment.error_information {
        let code = error.code.as_deref().unwrap_or("error");
        let message = error.message.as_deref().map(summarize).unwrap_or_default();
        lines.push(
            format!("{code}: {message}")
                .trim_end_matches([':', ' '])
                .to_string(),
        );
    }
    let failed_hooks = current
        .target
        .iter()
        .flat_map(|target| &target.lifecycle_events)
        .filter(|event| event.status == "Failed");
    for event in failed_hooks {
        lines.extend(hook_failure(event));
    }
    if let Some(rollback) = &deployment.rollback_info {
        match (&rollback.rollback_deployment_id, &rollback.rollback_message) {
            (Some(id), Some(message)) => lines.push(format!(
                "rolled back by CodeDeploy deployment {id}: {}",
                summarize(message)
            )),
            (Some(id), None) => lines.push(format!("rolled back by CodeDeploy deployment {id}")),
            (None, Some(message)) => lines.push(format!("rollback: {}", summarize(message))),
            (None, None) => {}
        }
    }
    lines.join("\n")
}

/// Who or what stopped a deployment, from CodeDeploy's error code.
fn stop_cause(code: Option<&str>) -> &'static str {
    match code {
        Some("MANUAL_STOP") => " by a StopDeployment call (a person, or another tool)",
        Some("ALARM_ACTIVE") => " by a CloudWatch alarm of the deployment group",
        Some("TIMEOUT") => " by CodeDeploy's own timeout",
        _ => "",
    }
}

/// `AfterAllowTestTraffic failed (ScriptFailed): …`, then the hook's last log lines.
fn hook_failure(event: &LifecycleEventView) -> Vec<String> {
    let Some(diagnostics) = &event.diagnostics else {
        return vec![format!("{} failed", event.name)];
    };
    let code = diagnostics
        .error_code
        .as_deref()
        .map(|code| format!(" ({code})"))
        .unwrap_or_default();
    let message = diagnostics
        .message
        .as_deref()
        .map(|message| format!(": {}", summarize(message)))
        .unwrap_or_default();
    let mut lines = vec![format!("{} failed{code}{message}", event.name)];
    if let Some(tail) = diagnostics
        .log_tail
        .as_deref()
        .filter(|t| !t.trim().is_empty())
    {
        let tail: Vec<&str> = tail.lines().filter(|l| !l.trim().is_empty()).collect();
        let kept = &tail[tail.len().saturating_sub(LOG_TAIL_LINES)..];
        lines.push(format!("last lines of {}'s log:", event.name));
        lines.extend(kept.iter().map(|line| format!("  {}", summarize(line))));
    }
    lines
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    fn snapshot(value: Value) -> Snapshot {
        serde_json::from_value(value).unwrap()
    }

    fn with_status(status: &str) -> Snapshot {
        snapshot(json!({"deploymentInfo": {"deploymentId": "d-1", "status": status}}))
    }

    #[test]
    fn unfinished_statuses_keep_waiting() {
        for status in ["Created", "Queued", "InProgress", "Baking", "SomethingNew"] {
            assert_eq!(verdict(&with_status(status)), Verdict::Waiting, "{status}");
        }
    }

    #[test]
    fn ready_waits_for_the_reroute_and_succeeded_succeeds() {
        assert_eq!(verdict(&with_status("Ready")), Verdict::AwaitingReroute);
        assert_eq!(verdict(&with_status("Succeeded")), Verdict::Succeeded);
    }

    /// A failed test-traffic hook, as GetDeployment and GetDeploymentTarget report it.
    fn failed_hook_with_rollback() -> Snapshot {
        snapshot(json!({
            "deploymentInfo": {
                "deploymentId": "d-7Q2V9X1AB",
                "status": "Failed",
                "errorInformation": {
                    "code": "HOOK_EXECUTION_FAILURE",
                    "message": "The deployment failed because one or more of the lifecycle event validation functions failed.",
                },
                "rollbackInfo": {
                    "rollbackDeploymentId": "d-9ZK3M2QCD",
                    "rollbackMessage": "Deployment d-7Q2V9X1AB failed; rollback deployment d-9ZK3M2QCD created",
                },
            },
            "ecsTarget": {
                "lifecycleEvents": [
                    {"lifecycleEventName": "BeforeInstall", "status": "Succeeded"},
                    {"lifecycleEventName": "Install", "status": "Succeeded"},
                    {"lifecycleEventName": "AfterAllowTestTraffic", "status": "Failed",
                     "diagnostics": {
                        "errorCode": "ScriptFailed",
                        "message": "smoke test: GET /health returned 503",
                        "logTail": "START RequestId: 1\nchecking http://test-listener/health\n\nGET /health 503\nEND RequestId: 1",
                     }},
                    {"lifecycleEventName": "BeforeAllowTraffic", "status": "Skipped"},
                ],
                "taskSetsInfo": [
                    {"taskSetLabel": "Blue", "trafficWeight": 100.0},
                    {"taskSetLabel": "Green", "trafficWeight": 0.0},
                ],
            },
        }))
    }

    #[test]
    fn a_failed_hook_with_a_rollback_names_the_hook_its_diagnostics_and_the_rollback() {
        let Verdict::RolledBack {
            failure,
            rollback_deployment_id,
        } = verdict(&failed_hook_with_rollback())
        else {
            panic!("not rolled back");
        };
        assert_eq!(rollback_deployment_id.as_deref(), Some("d-9ZK3M2QCD"));
        let lines: Vec<&str> = failure.lines().collect();
        assert_eq!(lines[0], "CodeDeploy deployment d-7Q2V9X1AB failed");
        assert!(lines[1].starts_with("HOOK_EXECUTION_FAILURE: The deployment failed"));
        assert_eq!(
            lines[2],
            "AfterAllowTestTraffic failed (ScriptFailed): smoke test: GET /health returned 503"
        );
        assert_eq!(lines[3], "last lines of AfterAllowTestTraffic's log:");
        assert!(lines.contains(&"  GET /health 503"), "{failure}");
        assert!(
            lines
                .last()
                .unwrap()
                .starts_with("rolled back by CodeDeploy deployment d-9ZK3M2QCD: "),
            "{failure}"
        );
    }

    #[test]
    fn a_failure_without_a_rollback_is_a_plain_failure() {
        let mut current = failed_hook_with_rollback();
        current.deployment.rollback_info = None;
        let Verdict::Failed { failure } = verdict(&current) else {
            panic!("not failed");
        };
        assert!(failure.contains("AfterAllowTestTraffic failed (ScriptFailed)"));
        assert!(!failure.contains("rolled back"));
    }

    #[test]
    fn a_rollback_message_alone_is_not_a_rollback() {
        // CodeDeploy writes a rollbackMessage also when it could not roll back.
        let current = snapshot(json!({"deploymentInfo": {
            "deploymentId": "d-1", "status": "Failed",
            "rollbackInfo": {"rollbackMessage": "Automatic rollback is not enabled for this deployment group"},
        }}));
        let Verdict::Failed { failure } = verdict(&current) else {
            panic!("not failed");
        };
        assert!(
            failure
                .ends_with("rollback: Automatic rollback is not enabled for this deployment group")
        );
    }

    #[test]
    fn a_stopped_deployment_says_who_stopped_it_and_whether_it_rolled_back() {
        let stopped = |rollback: Value| {
            snapshot(json!({"deploymentInfo": {
                "deploymentId": "d-2", "status": "Stopped",
                "errorInformation": {"code": "MANUAL_STOP", "message": "The deployment was stopped by a user."},
                "rollbackInfo": rollback,
            }}))
        };
        let Verdict::RolledBack { failure, .. } =
            verdict(&stopped(json!({"rollbackDeploymentId": "d-3"})))
        else {
            panic!("not rolled back");
        };
        assert!(
            failure.starts_with("CodeDeploy deployment d-2 was stopped by a StopDeployment call")
        );
        assert!(failure.contains("MANUAL_STOP: The deployment was stopped by a user."));
        assert!(matches!(
            verdict(&stopped(json!({}))),
            Verdict::Failed { .. }
        ));
    }

    #[test]
    fn a_long_log_tail_keeps_its_last_lines() {
        let tail: Vec<String> = (1..=50).map(|n| format!("line {n}")).collect();
        let event = LifecycleEventView {
            name: "AfterInstall".into(),
            status: "Failed".into(),
            diagnostics: Some(super::super::snapshot::DiagnosticsView {
                error_code: Some("ScriptTimedOut".into()),
                message: None,
                log_tail: Some(tail.join("\n")),
            }),
        };
        let lines = hook_failure(&event);
        assert_eq!(lines[0], "AfterInstall failed (ScriptTimedOut)");
        assert_eq!(lines.len(), 2 + LOG_TAIL_LINES);
        assert_eq!(lines[2], "  line 31");
        assert_eq!(lines.last().unwrap(), "  line 50");
    }

    #[test]
    fn judge_reports_the_changes_with_the_verdict() {
        let judgement = judge(None, &failed_hook_with_rollback());
        assert!(matches!(judgement.verdict, Verdict::RolledBack { .. }));
        assert!(
            judgement
                .changes
                .contains(&"AfterAllowTestTraffic failed".to_string())
        );
    }
}
