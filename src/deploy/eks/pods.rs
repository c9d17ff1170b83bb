//! What fails a rollout before its deadline: the new pods' states. `kubectl rollout status`
//! waits through a crash loop until the progress deadline (kubectl #738); these verdicts stop
//! it at once, and only new pods count (an old pod terminating is no failure: skaffold #6758).

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;

/// How much a new pod may misbehave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PodLimits {
    /// Restarts of one container above which the pod fails (a failing liveness probe, a crash).
    pub(crate) max_restarts: u32,
    /// How long running containers may stay unready, and a pod unschedulable.
    pub(crate) unready_timeout: Duration,
}

/// Why a new pod fails the rollout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PodProblem {
    pub(crate) pod: String,
    pub(crate) container: Option<String>,
    /// Kubernetes' reason (`CrashLoopBackOff`, `ImagePullBackOff`, `Unschedulable`, …) or
    /// `Unready`.
    pub(crate) reason: String,
    pub(crate) message: String,
    pub(crate) restarts: i64,
    pub(crate) last_exit_code: Option<i64>,
    /// Whether the useful logs are the previous instance's (the container restarted).
    pub(crate) previous_instance: bool,
}

/// A new pod that is not ready, as a timeout explains it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct UnreadyPod {
    pub(crate) pod: String,
    /// Its phase, the conditions that are not true and why, and each container's state:
    /// `Pending; PodScheduled=False (Unschedulable: …); container web waiting: ContainerCreating`.
    pub(crate) state: String,
}

/// Why `pod` is not ready, in one line; `None` when it is ready.
pub(crate) fn unready_pod(pod: &Value) -> Option<UnreadyPod> {
    if condition(pod, "Ready").and_then(|c| text(c, "/status")) == Some("True") {
        return None;
    }
    let mut parts = vec![text(pod, "/status/phase").unwrap_or("Pending").to_owned()];
    for c in pod
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|c| text(c, "/status") != Some("True"))
    {
        let kind = text(c, "/type").unwrap_or("?");
        let status = text(c, "/status").unwrap_or("Unknown");
        let why = match (text(c, "/reason"), text(c, "/message")) {
            (Some(reason), Some(message)) => format!(" ({reason}: {message})"),
            (Some(reason), None) => format!(" ({reason})"),
            (None, Some(message)) => format!(" ({message})"),
            (None, None) => String::new(),
        };
        parts.push(format!("{kind}={status}{why}"));
    }
    for status in ["/status/initContainerStatuses", "/status/containerStatuses"]
        .into_iter()
        .filter_map(|pointer| pod.pointer(pointer).and_then(Value::as_array))
        .flatten()
    {
        let name = text(status, "/name").unwrap_or("?");
        let restarts = status
            .get("restartCount")
            .and_then(Value::as_i64)
            .unwrap_or(0);
        let restarted = if restarts > 0 {
            format!(", restarts {restarts}")
        } else {
            String::new()
        };
        let line = if let Some(reason) = text(status, "/state/waiting/reason") {
            match text(status, "/state/waiting/message") {
                Some(message) => {
                    format!("container {name} waiting: {reason} ({message}){restarted}")
                }
                None => format!("container {name} waiting: {reason}{restarted}"),
            }
        } else if status.pointer("/state/running").is_some() {
            if status.get("ready").and_then(Value::as_bool) == Some(true) {
                continue;
            }
            format!("container {name} running, not ready{restarted}")
        } else if let Some(terminated) = status.pointer("/state/terminated") {
            format!(
                "container {name} terminated: {}, exit code {}{restarted}",
                text(terminated, "/reason").unwrap_or("?"),
                terminated
                    .get("exitCode")
                    .and_then(Value::as_i64)
                    .unwrap_or_default()
            )
        } else {
            continue;
        };
        parts.push(line);
    }
    Some(UnreadyPod {
        pod: text(pod, "/metadata/name").unwrap_or("?").to_owned(),
        state: parts.join("; "),
    })
}

/// Waiting reasons that do not go away by waiting: the image cannot be pulled, or the
/// container cannot even be created.
const UNRECOVERABLE_WAITING: &[&str] = &[
    "ErrImagePull",
    "ImagePullBackOff",
    "InvalidImageName",
    "ErrImageNeverPull",
    "CreateContainerConfigError",
    "CreateContainerError",
    "RunContainerError",
];

fn text<'a>(value: &'a Value, pointer: &str) -> Option<&'a str> {
    value.pointer(pointer).and_then(Value::as_str)
}

fn time(value: &Value, pointer: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text(value, pointer)?)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// The pods of the workload's new revision, marked by the controller's `label` (a
/// ReplicaSet's `pod-template-hash`, a StatefulSet's `controller-revision-hash`, a DaemonSet's
/// `pod-template-generation`), leaving out those being deleted.
pub(crate) fn pods_of_revision<'a>(pods: &'a [Value], label: &str, value: &str) -> Vec<&'a Value> {
    pods.iter()
        .filter(|pod| {
            pod.pointer("/metadata/labels")
                .and_then(|labels| labels.get(label))
                .and_then(Value::as_str)
                == Some(value)
        })
        .filter(|pod| pod.pointer("/metadata/deletionTimestamp").is_none())
        .collect()
}

/// The first problem of a new pod, or `None` while it is fine or still starting.
pub(crate) fn pod_problem(
    pod: &Value,
    limits: &PodLimits,
    now: DateTime<Utc>,
) -> Option<PodProblem> {
    let name = text(pod, "/metadata/name").unwrap_or("?").to_owned();
    let problem = |container: Option<&str>, reason: &str, message: String| PodProblem {
        pod: name.clone(),
        container: container.map(str::to_owned),
        reason: reason.to_owned(),
        message,
        restarts: 0,
        last_exit_code: None,
        previous_instance: false,
    };
    if text(pod, "/status/phase") == Some("Failed") {
        let reason = text(pod, "/status/reason").unwrap_or("Failed");
        let message = text(pod, "/status/message")
            .unwrap_or("the pod failed")
            .to_owned();
        return Some(problem(None, reason, message));
    }
    let statuses = ["/status/initContainerStatuses", "/status/containerStatuses"]
        .into_iter()
        .filter_map(|pointer| pod.pointer(pointer).and_then(Value::as_array))
        .flatten();
    for status in statuses.clone() {
        let container = text(status, "/name");
        let restarts = status
            .get("restartCount")
            .and_then(Value::as_i64)
            .unwrap_or(0);
        let last_exit_code = status
            .pointer("/lastState/terminated/exitCode")
            .and_then(Value::as_i64);
        let waiting_reason = text(status, "/state/waiting/reason").unwrap_or_default();
        let waiting_message = text(status, "/state/waiting/message").unwrap_or_default();
        let last_reason = text(status, "/lastState/terminated/reason");
        let detail = |what: String| PodProblem {
            restarts,
            last_exit_code,
            ..problem(container, waiting_reason, what)
        };
        if UNRECOVERABLE_WAITING.contains(&waiting_reason) {
            return Some(detail(waiting_message.to_owned()));
        }
        if waiting_reason == "CrashLoopBackOff" {
            return Some(PodProblem {
                previous_instance: true,
                ..detail(crash_message(restarts, last_reason, last_exit_code))
            });
        }
        if restarts > i64::from(limits.max_restarts) {
            return Some(PodProblem {
                reason: last_reason.unwrap_or("Restarting").to_owned(),
                previous_instance: true,
                ..detail(format!(
                    "{} (over max_restarts {}; a failing liveness probe restarts it too)",
                    crash_message(restarts, last_reason, last_exit_code),
                    limits.max_restarts
                ))
            });
        }
    }
    let unready_for = |since: DateTime<Utc>| {
        let elapsed = now
            .signed_duration_since(since)
            .to_std()
            .unwrap_or_default();
        (elapsed > limits.unready_timeout).then_some(elapsed)
    };
    // Unschedulable may be a node that an autoscaler is still adding: it fails only once it
    // has lasted as long as a pod may stay unready.
    if let Some(scheduled) = condition(pod, "PodScheduled")
        && text(scheduled, "/status") == Some("False")
        && let Some(elapsed) = time(scheduled, "/lastTransitionTime").and_then(unready_for)
    {
        let reason = text(scheduled, "/reason").unwrap_or("Unschedulable");
        let message = text(scheduled, "/message").unwrap_or_default();
        return Some(problem(
            None,
            reason,
            format!("not scheduled for {}: {message}", seconds(elapsed)),
        ));
    }
    let ready = condition(pod, "Ready").and_then(|c| text(c, "/status")) == Some("True");
    if ready {
        return None;
    }
    let containers: Vec<&Value> = pod
        .pointer("/status/containerStatuses")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .collect();
    let all_running = !containers.is_empty()
        && containers
            .iter()
            .all(|s| s.pointer("/state/running").is_some());
    if !all_running {
        return None;
    }
    // Readiness counts from when the last container (re)started: image pulls and restarts are
    // judged by the rules above.
    let started = containers
        .iter()
        .filter_map(|s| time(s, "/state/running/startedAt"))
        .max()?;
    let elapsed = unready_for(started)?;
    let unready = containers
        .iter()
        .find(|s| s.get("ready").and_then(Value::as_bool) != Some(true))
        .copied();
    Some(PodProblem {
        restarts: unready
            .and_then(|s| s.get("restartCount"))
            .and_then(Value::as_i64)
            .unwrap_or(0),
        ..problem(
            unready.and_then(|s| text(s, "/name")),
            "Unready",
            format!(
                "running for {} without becoming ready (over unready_timeout {}); is the readiness probe failing?",
                seconds(elapsed),
                seconds(limits.unready_timeout)
            ),
        )
    })
}

fn condition<'a>(pod: &'a Value, kind: &str) -> Option<&'a Value> {
    pod.pointer("/status/conditions")
        .and_then(Value::as_array)?
        .iter()
        .find(|c| text(c, "/type") == Some(kind))
}

fn crash_message(restarts: i64, reason: Option<&str>, exit_code: Option<i64>) -> String {
    let mut message = format!("restarted {restarts} times");
    match (reason, exit_code) {
        (Some(reason), Some(code)) => {
            message.push_str(&format!("; last exit: {reason}, code {code}"))
        }
        (None, Some(code)) => message.push_str(&format!("; last exit code {code}")),
        (Some(reason), None) => message.push_str(&format!("; last exit: {reason}")),
        (None, None) => {}
    }
    message
}

fn seconds(duration: Duration) -> String {
    humantime::format_duration(Duration::from_secs(duration.as_secs())).to_string()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::deploy::eks::replica_sets::POD_TEMPLATE_HASH;
    use serde_json::json;

    const LIMITS: PodLimits = PodLimits {
        max_restarts: 2,
        unready_timeout: Duration::from_secs(180),
    };

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2025-01-01T12:10:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    /// A pod of ReplicaSet `hash` as the kubelet reports it: one container `web`.
    pub(crate) fn pod(name: &str, hash: &str, ready: bool, container_status: Value) -> Value {
        json!({"kind": "Pod", "metadata": {"name": name, "labels": {"app": "web", POD_TEMPLATE_HASH: hash}},
            "status": {"phase": "Running", "conditions": [
                {"type": "PodScheduled", "status": "True", "lastTransitionTime": "2025-01-01T12:00:00Z"},
                {"type": "Ready", "status": if ready { "True" } else { "False" }, "lastTransitionTime": "2025-01-01T12:00:00Z"}],
              "containerStatuses": [container_status]}})
    }

    fn running(since: &str, ready: bool, restarts: i64) -> Value {
        json!({"name": "web", "ready": ready, "restartCount": restarts, "state": {"running": {"startedAt": since}}})
    }

    #[test]
    fn a_crash_loop_fails_at_once_with_the_last_exit_and_previous_logs() {
        let status = json!({"name": "web", "ready": false, "restartCount": 1,
            "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 10s restarting failed container"}},
            "lastState": {"terminated": {"reason": "Error", "exitCode": 1}}});
        let problem = pod_problem(&pod("web-c-1", "c", false, status), &LIMITS, now()).unwrap();
        assert_eq!(
            problem,
            PodProblem {
                pod: "web-c-1".into(),
                container: Some("web".into()),
                reason: "CrashLoopBackOff".into(),
                message: "restarted 1 times; last exit: Error, code 1".into(),
                restarts: 1,
                last_exit_code: Some(1),
                previous_instance: true,
            }
        );
    }

    #[test]
    fn restarts_over_the_limit_fail_even_while_running_a_liveness_failure() {
        let mut status = running("2025-01-01T12:09:50Z", false, 3);
        status["lastState"] = json!({"terminated": {"reason": "Error", "exitCode": 137}});
        let problem = pod_problem(&pod("p", "c", false, status.clone()), &LIMITS, now()).unwrap();
        assert_eq!(problem.reason, "Error");
        assert_eq!(problem.last_exit_code, Some(137));
        assert!(
            problem.message.contains("over max_restarts 2"),
            "{}",
            problem.message
        );
        status["restartCount"] = json!(2);
        assert_eq!(
            pod_problem(&pod("p", "c", false, status), &LIMITS, now()),
            None
        );
    }

    #[test]
    fn image_pull_and_container_config_errors_fail_with_the_kubelets_message() {
        for reason in [
            "ErrImagePull",
            "ImagePullBackOff",
            "InvalidImageName",
            "CreateContainerConfigError",
        ] {
            let status = json!({"name": "web", "ready": false, "restartCount": 0,
                "state": {"waiting": {"reason": reason, "message": "secret \"db\" not found"}}});
            let problem = pod_problem(&pod("p", "c", false, status), &LIMITS, now()).unwrap();
            assert_eq!(
                (problem.reason.as_str(), problem.message.as_str()),
                (reason, "secret \"db\" not found")
            );
            assert!(!problem.previous_instance);
        }
        let creating = json!({"name": "web", "ready": false, "restartCount": 0, "state": {"waiting": {"reason": "ContainerCreating"}}});
        assert_eq!(
            pod_problem(&pod("p", "c", false, creating), &LIMITS, now()),
            None
        );
    }

    #[test]
    fn unready_fails_only_after_the_timeout_counted_from_the_container_start() {
        let fresh = pod("p", "c", false, running("2025-01-01T12:08:00Z", false, 0));
        assert_eq!(pod_problem(&fresh, &LIMITS, now()), None);
        let stale = pod("p", "c", false, running("2025-01-01T12:06:00Z", false, 0));
        let problem = pod_problem(&stale, &LIMITS, now()).unwrap();
        assert_eq!(
            (problem.reason.as_str(), problem.container.as_deref()),
            ("Unready", Some("web"))
        );
        assert!(
            problem
                .message
                .starts_with("running for 4m without becoming ready"),
            "{}",
            problem.message
        );
        let ready = pod("p", "c", true, running("2025-01-01T12:00:00Z", true, 0));
        assert_eq!(pod_problem(&ready, &LIMITS, now()), None);
    }

    #[test]
    fn unschedulable_fails_once_it_lasted_the_unready_timeout() {
        let mut pending = json!({"kind": "Pod", "metadata": {"name": "p"}, "status": {"phase": "Pending",
            "conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                "message": "0/3 nodes are available: 3 Insufficient cpu.", "lastTransitionTime": "2025-01-01T12:09:00Z"}]}});
        assert_eq!(pod_problem(&pending, &LIMITS, now()), None);
        pending["status"]["conditions"][0]["lastTransitionTime"] = json!("2025-01-01T12:00:00Z");
        let problem = pod_problem(&pending, &LIMITS, now()).unwrap();
        assert_eq!(problem.reason, "Unschedulable");
        assert_eq!(
            problem.message,
            "not scheduled for 10m: 0/3 nodes are available: 3 Insufficient cpu."
        );
    }

    #[test]
    fn only_the_new_replica_sets_live_pods_are_judged() {
        let crashing = json!({"name": "web", "restartCount": 9, "state": {"waiting": {"reason": "CrashLoopBackOff"}}});
        let mut terminating_new = pod("new-2", "new", false, crashing.clone());
        terminating_new["metadata"]["deletionTimestamp"] = json!("2025-01-01T12:09:00Z");
        let pods = vec![
            pod("old-1", "old", false, crashing),
            pod(
                "new-1",
                "new",
                true,
                running("2025-01-01T12:00:00Z", true, 0),
            ),
            terminating_new,
        ];
        let new: Vec<&str> = pods_of_revision(&pods, POD_TEMPLATE_HASH, "new")
            .iter()
            .map(|p| p["metadata"]["name"].as_str().unwrap())
            .collect();
        assert_eq!(new, ["new-1"]);
    }

    #[test]
    fn evicted_pods_fail_and_shapeless_pods_do_not_panic() {
        let evicted = json!({"metadata": {"name": "p"}, "status": {"phase": "Failed", "reason": "Evicted", "message": "The node was low on resource: memory."}});
        assert_eq!(
            pod_problem(&evicted, &LIMITS, now()).unwrap().reason,
            "Evicted"
        );
        for shapeless in [
            json!(null),
            json!({"status": {"containerStatuses": [1, "x", {"state": 3}]}}),
        ] {
            let _ = pod_problem(&shapeless, &LIMITS, now());
        }
    }

    #[test]
    fn an_unready_pod_is_told_by_its_conditions_and_container_states() {
        let mut waiting = pod(
            "web-c-1",
            "c",
            false,
            json!({"name": "web", "ready": false, "restartCount": 0,
                "state": {"waiting": {"reason": "ContainerCreating"}}}),
        );
        waiting["status"]["phase"] = json!("Pending");
        waiting["status"]["conditions"][1]["reason"] = json!("ContainersNotReady");
        waiting["status"]["conditions"][1]["message"] =
            json!("containers with unready status: [web]");
        assert_eq!(
            unready_pod(&waiting),
            Some(UnreadyPod {
                pod: "web-c-1".into(),
                state: "Pending; Ready=False (ContainersNotReady: containers with unready status: [web]); container web waiting: ContainerCreating".into(),
            })
        );
        let running = pod(
            "web-c-2",
            "c",
            false,
            json!({"name": "web", "ready": false, "restartCount": 1,
                "state": {"running": {"startedAt": "2025-01-01T12:00:00Z"}}}),
        );
        assert_eq!(
            unready_pod(&running).unwrap().state,
            "Running; Ready=False; container web running, not ready, restarts 1"
        );
        let ready = pod("web-c-3", "c", true, json!({"name": "web", "ready": true}));
        assert_eq!(unready_pod(&ready), None);
        let _ = unready_pod(&json!({"status": []}));
    }
}
