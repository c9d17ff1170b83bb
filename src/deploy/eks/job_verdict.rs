//! Whether a smoke-check Job succeeded, failed or still runs, from its status conditions as
//! the Job controller writes them (`Complete`, or `Failed` with its reason such as
//! `BackoffLimitExceeded` or `DeadlineExceeded`), as `kubectl wait --for=condition=complete`
//! reads them.

use serde_json::Value;

use super::pods::PodProblem;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum JobState {
    Running,
    Succeeded,
    /// The condition's reason and message.
    Failed(String),
}

fn condition<'a>(job: &'a Value, kind: &str) -> Option<&'a Value> {
    job.pointer("/status/conditions")?
        .as_array()?
        .iter()
        .find(|c| c["type"] == kind && c["status"] == "True")
}

pub(crate) fn job_state(job: &Value) -> JobState {
    // A Job that failed may carry both conditions while it terminates its pods; failure wins.
    if let Some(failed) = condition(job, "Failed") {
        let text = |field: &str| failed[field].as_str().unwrap_or_default().to_owned();
        let (reason, message) = (text("reason"), text("message"));
        return JobState::Failed(match (reason.is_empty(), message.is_empty()) {
            (false, false) => format!("{reason}: {message}"),
            (false, true) => reason,
            (true, false) => message,
            (true, true) => "failed".to_owned(),
        });
    }
    if condition(job, "Complete").is_some() {
        return JobState::Succeeded;
    }
    JobState::Running
}

/// The failing container of a smoke-check Job's last failed pod: its exit code and reason, for
/// the explanation (the pod's events and the container's logs are read for it).
pub(crate) fn failed_job_pod(pods: &[Value]) -> Option<PodProblem> {
    let mut failed: Vec<&Value> = pods
        .iter()
        .filter(|pod| pod.pointer("/status/phase").and_then(Value::as_str) == Some("Failed"))
        .collect();
    // RFC 3339 timestamps in UTC sort as text: the last attempt explains best.
    failed.sort_by_key(|pod| {
        pod.pointer("/metadata/creationTimestamp")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    });
    let pod = failed.last()?;
    let name = pod.pointer("/metadata/name")?.as_str()?.to_owned();
    let statuses = pod
        .pointer("/status/containerStatuses")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let terminated = statuses.iter().find_map(|status| {
        let state = status.pointer("/state/terminated")?;
        (state["exitCode"].as_i64() != Some(0)).then_some((status, state))
    });
    Some(match terminated {
        Some((status, state)) => PodProblem {
            pod: name,
            container: status["name"].as_str().map(str::to_owned),
            reason: state["reason"].as_str().unwrap_or("Error").to_owned(),
            message: state["message"].as_str().unwrap_or_default().to_owned(),
            restarts: status["restartCount"].as_i64().unwrap_or(0),
            last_exit_code: state["exitCode"].as_i64(),
            previous_instance: false,
        },
        None => PodProblem {
            pod: name,
            container: None,
            reason: pod
                .pointer("/status/reason")
                .and_then(Value::as_str)
                .unwrap_or("Failed")
                .to_owned(),
            message: pod
                .pointer("/status/message")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
            restarts: 0,
            last_exit_code: None,
            previous_instance: false,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn job(conditions: Value) -> Value {
        json!({"kind": "Job", "status": {"conditions": conditions}})
    }

    #[test]
    fn a_job_without_a_true_terminal_condition_still_runs() {
        assert_eq!(job_state(&json!({"kind": "Job"})), JobState::Running);
        assert_eq!(
            job_state(&job(json!([{"type": "Complete", "status": "False"}]))),
            JobState::Running
        );
    }

    #[test]
    fn complete_is_success_and_failed_carries_its_reason() {
        assert_eq!(
            job_state(&job(json!([{"type": "Complete", "status": "True"}]))),
            JobState::Succeeded
        );
        assert_eq!(
            job_state(&job(json!([
                {"type": "FailureTarget", "status": "True"},
                {"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded",
                 "message": "Job has reached the specified backoff limit"}
            ]))),
            JobState::Failed(
                "BackoffLimitExceeded: Job has reached the specified backoff limit".into()
            )
        );
    }

    #[test]
    fn the_failed_pod_names_its_container_and_exit_code() {
        let pods = vec![
            json!({"metadata": {"name": "smoke-ok", "creationTimestamp": "2026-01-01T00:00:00Z"},
                "status": {"phase": "Succeeded"}}),
            json!({"metadata": {"name": "smoke-bad", "creationTimestamp": "2026-01-01T00:00:05Z"},
                "status": {"phase": "Failed", "containerStatuses": [{"name": "check", "restartCount": 0,
                    "state": {"terminated": {"exitCode": 7, "reason": "Error"}}}]}}),
        ];
        let problem = failed_job_pod(&pods).unwrap();
        assert_eq!(problem.pod, "smoke-bad");
        assert_eq!(problem.container.as_deref(), Some("check"));
        assert_eq!(problem.last_exit_code, Some(7));
        assert_eq!(problem.reason, "Error");
        assert!(failed_job_pod(&pods[..1]).is_none());
    }
}
