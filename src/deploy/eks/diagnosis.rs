//! The explanation of a failed rollout, so nobody has to run `kubectl describe`: the workload,
//! the pod, the container, its reason and message, restarts and last exit code, the last events
//! (warnings first) and the failing container's last log lines. A source that could not be read
//! says why in one line instead of silently missing.

use serde_json::Value;

use super::pods::{PodProblem, UnreadyPod};

/// Events shown per object.
pub(crate) const EVENTS_SHOWN: usize = 8;
/// Log lines shown of the failing container.
pub(crate) const LOG_LINES: i64 = 20;

/// Events as read: none asked for, what the API listed, or why it could not be read.
pub(crate) type EventsRead = Option<Result<Vec<Value>, String>>;

/// What was gathered about a failure; each source is what it said or why it could not be read.
#[derive(Debug, Clone, Default)]
pub(crate) struct FailureReport {
    /// `deployment/web`.
    pub(crate) workload: String,
    /// Why the rollout failed (the pod problem's summary, or the gate's reason).
    pub(crate) why: String,
    pub(crate) problem: Option<PodProblem>,
    pub(crate) workload_events: EventsRead,
    pub(crate) pod_events: EventsRead,
    pub(crate) logs: Option<Result<String, String>>,
    /// A timeout's new pods that are not ready, each with its events.
    pub(crate) unready: Vec<(UnreadyPod, EventsRead)>,
}

/// Unready pods a timeout names, at most; the rest are counted.
pub(crate) const UNREADY_PODS_SHOWN: usize = 3;

/// The one-line summary of a pod problem.
pub(crate) fn problem_summary(problem: &PodProblem) -> String {
    let container = problem
        .container
        .as_deref()
        .map(|c| format!(" container {c}"))
        .unwrap_or_default();
    let message = if problem.message.is_empty() {
        String::new()
    } else {
        format!(": {}", problem.message)
    };
    format!(
        "pod {}{container}: {}{message}",
        problem.pod, problem.reason
    )
}

fn event_time(event: &Value) -> &str {
    [
        "/lastTimestamp",
        "/eventTime",
        "/metadata/creationTimestamp",
    ]
    .iter()
    .find_map(|pointer| event.pointer(pointer).and_then(Value::as_str))
    .unwrap_or_default()
}

/// The last events, warnings first, each as `Warning BackOff (x5): message`.
pub(crate) fn event_lines(events: &[Value]) -> Vec<String> {
    let mut recent: Vec<&Value> = events.iter().collect();
    // RFC 3339 timestamps in UTC sort as text. They have whole seconds: events of the same
    // second are ordered by reason and message, so the explanation does not depend on the
    // order the API listed them in.
    let field = |event: &Value, name: &str| {
        event
            .get(name)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    recent.sort_by(|a, b| {
        event_time(a)
            .cmp(event_time(b))
            .then_with(|| field(a, "reason").cmp(&field(b, "reason")))
            .then_with(|| field(a, "message").cmp(&field(b, "message")))
    });
    let start = recent.len().saturating_sub(EVENTS_SHOWN);
    let mut recent = recent.split_off(start);
    recent.sort_by_key(|event| event.get("type").and_then(Value::as_str) != Some("Warning"));
    recent
        .into_iter()
        .map(|event| {
            let text = |field: &str| event.get(field).and_then(Value::as_str).unwrap_or_default();
            let count = event.get("count").and_then(Value::as_i64).unwrap_or(1);
            let times = if count > 1 {
                format!(" (x{count})")
            } else {
                String::new()
            };
            format!(
                "{} {}{times}: {}",
                text("type"),
                text("reason"),
                text("message").trim()
            )
        })
        .collect()
}

/// The explanation, several lines.
pub(crate) fn explain(report: &FailureReport) -> String {
    let mut lines = vec![format!("{}: {}", report.workload, report.why)];
    if let Some(problem) = &report.problem {
        let mut facts = vec![format!("restarts {}", problem.restarts)];
        if let Some(code) = problem.last_exit_code {
            facts.push(format!("last exit code {code}"));
        }
        lines.push(format!(
            "  {} ({})",
            problem_summary(problem),
            facts.join(", ")
        ));
    }
    let mut section = |title: String, source: &Option<Result<Vec<Value>, String>>| match source {
        None => {}
        Some(Err(why)) => lines.push(format!("  {title}: could not be read: {why}")),
        Some(Ok(events)) if events.is_empty() => lines.push(format!("  {title}: none")),
        Some(Ok(events)) => {
            lines.push(format!("  {title}:"));
            lines.extend(
                event_lines(events)
                    .into_iter()
                    .map(|line| format!("    {line}")),
            );
        }
    };
    section(
        format!("events of {}", report.workload),
        &report.workload_events,
    );
    if let Some(problem) = &report.problem {
        section(format!("events of pod {}", problem.pod), &report.pod_events);
    }
    if !report.unready.is_empty() {
        lines.push(format!("  new pods not ready ({}):", report.unready.len()));
        for (pod, events) in report.unready.iter().take(UNREADY_PODS_SHOWN) {
            lines.push(format!("    pod {}: {}", pod.pod, pod.state));
            match events {
                None => {}
                Some(Err(why)) => lines.push(format!("      events: could not be read: {why}")),
                Some(Ok(events)) if events.is_empty() => lines.push("      events: none".into()),
                Some(Ok(events)) => {
                    lines.push("      events:".into());
                    lines.extend(
                        event_lines(events)
                            .into_iter()
                            .map(|line| format!("        {line}")),
                    );
                }
            }
        }
        if report.unready.len() > UNREADY_PODS_SHOWN {
            lines.push(format!(
                "    and {} more",
                report.unready.len() - UNREADY_PODS_SHOWN
            ));
        }
    }
    if let (Some(problem), Some(logs)) = (&report.problem, &report.logs) {
        let which = if problem.previous_instance {
            "previous instance's "
        } else {
            ""
        };
        let container = problem.container.as_deref().unwrap_or("?");
        match logs {
            Err(why) => lines.push(format!(
                "  {which}logs of {container}: could not be read: {why}"
            )),
            Ok(text) if text.trim().is_empty() => {
                lines.push(format!("  {which}logs of {container}: empty"))
            }
            Ok(text) => {
                lines.push(format!("  last {which}log lines of {container}:"));
                let all: Vec<&str> = text.lines().collect();
                let start = all.len().saturating_sub(LOG_LINES as usize);
                lines.extend(all[start..].iter().map(|line| format!("    {line}")));
            }
        }
    }
    lines.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event(kind: &str, reason: &str, message: &str, at: &str, count: i64) -> Value {
        json!({"kind": "Event", "type": kind, "reason": reason, "message": message, "lastTimestamp": at, "count": count,
            "involvedObject": {"kind": "Pod", "name": "web-c-1"}})
    }

    fn crash() -> PodProblem {
        PodProblem {
            pod: "web-c-1".into(),
            container: Some("web".into()),
            reason: "CrashLoopBackOff".into(),
            message: "restarted 3 times; last exit: Error, code 1".into(),
            restarts: 3,
            last_exit_code: Some(1),
            previous_instance: true,
        }
    }

    #[test]
    fn the_last_events_come_warnings_first_then_in_time_order() {
        let mut events: Vec<Value> = (0..10)
            .map(|i| {
                event(
                    "Normal",
                    "Pulled",
                    &format!("pulled {i}"),
                    &format!("2025-01-01T12:00:{i:02}Z"),
                    1,
                )
            })
            .collect();
        events.push(event(
            "Warning",
            "BackOff",
            "Back-off restarting failed container",
            "2025-01-01T12:00:05Z",
            7,
        ));
        let lines = event_lines(&events);
        assert_eq!(lines.len(), EVENTS_SHOWN);
        assert_eq!(
            lines[0],
            "Warning BackOff (x7): Back-off restarting failed container"
        );
        assert_eq!(lines[1], "Normal Pulled: pulled 3");
        assert_eq!(lines[7], "Normal Pulled: pulled 9");
    }

    #[test]
    fn the_explanation_names_pod_container_reason_events_and_previous_logs() {
        let logs: String = (1..=30).map(|i| format!("line {i}\n")).collect();
        let report = FailureReport {
            workload: "deployment/web".into(),
            why: "a new pod fails".into(),
            problem: Some(crash()),
            workload_events: Some(Ok(vec![])),
            pod_events: Some(Ok(vec![event(
                "Warning",
                "BackOff",
                "Back-off restarting",
                "2025-01-01T12:00:05Z",
                2,
            )])),
            logs: Some(Ok(logs)),
            unready: Vec::new(),
        };
        let text = explain(&report);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "deployment/web: a new pod fails");
        assert_eq!(
            lines[1],
            "  pod web-c-1 container web: CrashLoopBackOff: restarted 3 times; last exit: Error, code 1 (restarts 3, last exit code 1)"
        );
        assert_eq!(lines[2], "  events of deployment/web: none");
        assert_eq!(lines[4], "    Warning BackOff (x2): Back-off restarting");
        assert_eq!(lines[5], "  last previous instance's log lines of web:");
        assert_eq!(lines[6], "    line 11");
        assert_eq!(lines.last(), Some(&"    line 30"));
    }

    #[test]
    fn a_source_that_could_not_be_read_says_why() {
        let report = FailureReport {
            workload: "deployment/web".into(),
            why: "exceeded its progress deadline".into(),
            problem: Some(crash()),
            workload_events: Some(Err("forbidden: cannot list events".into())),
            pod_events: None,
            logs: Some(Err("container not found".into())),
            unready: Vec::new(),
        };
        let text = explain(&report);
        assert!(
            text.contains(
                "  events of deployment/web: could not be read: forbidden: cannot list events"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "  previous instance's logs of web: could not be read: container not found"
            ),
            "{text}"
        );
    }

    #[test]
    fn a_timeout_names_its_unready_pods_with_their_events_and_counts_the_rest() {
        let pod = |n: usize| UnreadyPod {
            pod: format!("web-c-{n}"),
            state: "Running; Ready=False; container web running, not ready".into(),
        };
        let report = FailureReport {
            workload: "deployment/web".into(),
            why: "timed out after 2s waiting: 0 of 4 available".into(),
            workload_events: Some(Ok(vec![])),
            unready: vec![
                (
                    pod(1),
                    Some(Ok(vec![event(
                        "Warning",
                        "Unhealthy",
                        "Readiness probe failed: HTTP probe failed with statuscode: 503",
                        "2025-01-01T12:00:05Z",
                        4,
                    )])),
                ),
                (pod(2), Some(Ok(vec![]))),
                (pod(3), Some(Err("forbidden".into()))),
                (pod(4), None),
            ],
            ..FailureReport::default()
        };
        assert_eq!(
            explain(&report),
            "deployment/web: timed out after 2s waiting: 0 of 4 available
  events of deployment/web: none
  new pods not ready (4):
    pod web-c-1: Running; Ready=False; container web running, not ready
      events:
        Warning Unhealthy (x4): Readiness probe failed: HTTP probe failed with statuscode: 503
    pod web-c-2: Running; Ready=False; container web running, not ready
      events: none
    pod web-c-3: Running; Ready=False; container web running, not ready
      events: could not be read: forbidden
    and 1 more"
        );
    }

    #[test]
    fn events_of_the_same_second_come_in_one_order_whatever_the_listing() {
        let a = event(
            "Warning",
            "Failed",
            "Error: ErrImagePull",
            "2025-01-01T12:00:05Z",
            1,
        );
        let b = event(
            "Warning",
            "Failed",
            "Failed to pull image",
            "2025-01-01T12:00:05Z",
            1,
        );
        assert_eq!(event_lines(&[a.clone(), b.clone()]), event_lines(&[b, a]));
    }
}
