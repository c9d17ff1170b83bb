//! The lines people read while a CodeDeploy deployment runs: what changed since the last look
//! (the deployment's status, a lifecycle event that started or finished, production traffic
//! that moved between the task sets). Any such line also counts as progress for
//! `no_progress_timeout`.

use super::snapshot::{Snapshot, TargetView};

/// The lines for what changed from `previous` to `current`; everything worth showing when
/// there is no previous look (a first poll, or a resumed run re-attaching).
pub(crate) fn changes(previous: Option<&Snapshot>, current: &Snapshot) -> Vec<String> {
    let mut lines = Vec::new();
    let before = previous.map(|p| &p.deployment);
    if before.map(|b| b.status.as_str()) != Some(current.deployment.status.as_str())
        && let Some(line) = status_line(
            &current.deployment.deployment_id,
            &current.deployment.status,
        )
    {
        lines.push(line);
    }
    // The follow loop carries the last target read into a poll that did not read it, so a
    // missing target only happens before CodeDeploy lists one, and says nothing changed.
    if let Some(target) = &current.target {
        let last_target = previous.and_then(|p| p.target.as_ref());
        lines.extend(lifecycle_changes(last_target, target));
        let traffic = traffic_line(target);
        if traffic.is_some() && traffic != last_target.and_then(traffic_line) {
            lines.extend(traffic);
        }
    }
    lines
}

/// The lifecycle events as lines, in CodeDeploy's order: what the outcome keeps.
pub(crate) fn lifecycle_lines(target: &TargetView) -> Vec<String> {
    target
        .lifecycle_events
        .iter()
        .map(|event| format!("{} {}", event.name, event_status_words(&event.status)))
        .collect()
}

/// `traffic: blue 90% · green 10%`, when the target reports its task sets.
pub(crate) fn traffic_line(target: &TargetView) -> Option<String> {
    let parts: Vec<String> = ["blue", "green"]
        .into_iter()
        .filter_map(|label| {
            target
                .labelled(label)
                .map(|set| format!("{label} {}%", percent(set.traffic_weight)))
        })
        .collect();
    (!parts.is_empty()).then(|| format!("traffic: {}", parts.join(" · ")))
}

fn lifecycle_changes(previous: Option<&TargetView>, current: &TargetView) -> Vec<String> {
    current
        .lifecycle_events
        .iter()
        .filter(|event| event.status != "Pending" && !event.status.is_empty())
        .filter(|event| {
            let before =
                previous.and_then(|p| p.lifecycle_events.iter().find(|e| e.name == event.name));
            before.map(|e| e.status.as_str()) != Some(event.status.as_str())
        })
        .map(|event| format!("{} {}", event.name, event_status_words(&event.status)))
        .collect()
}

fn status_line(deployment_id: &str, status: &str) -> Option<String> {
    let words = match status {
        "Created" => "created",
        "Queued" => "queued behind another deployment of the group",
        "InProgress" => "in progress",
        "Baking" => {
            "baking: production traffic is on the new task set, the original is kept until the wait ends"
        }
        // The reroute line says more, with how to approve; see `follow`.
        "Ready" => return None,
        "Succeeded" => "succeeded",
        "Failed" => "failed",
        "Stopped" => "stopped",
        "" => return None,
        other => return Some(format!("CodeDeploy deployment {deployment_id}: {other}")),
    };
    Some(format!("CodeDeploy deployment {deployment_id} {words}"))
}

fn event_status_words(status: &str) -> String {
    match status {
        "InProgress" => "in progress".to_string(),
        "" => "unknown".to_string(),
        other => other.to_lowercase(),
    }
}

/// A traffic weight without a needless `.0`.
fn percent(weight: f64) -> String {
    if weight.fract() == 0.0 {
        format!("{weight:.0}")
    } else {
        format!("{weight:.1}")
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn snapshot(value: serde_json::Value) -> Snapshot {
        serde_json::from_value(value).unwrap()
    }

    fn events(statuses: &[(&str, &str)]) -> serde_json::Value {
        json!(
            statuses
                .iter()
                .map(|(name, status)| json!({"lifecycleEventName": name, "status": status}))
                .collect::<Vec<_>>()
        )
    }

    fn at(status: &str, lifecycle: &[(&str, &str)], blue: f64, green: f64) -> Snapshot {
        snapshot(json!({
            "deploymentInfo": {"deploymentId": "d-1", "status": status},
            "ecsTarget": {
                "lifecycleEvents": events(lifecycle),
                "taskSetsInfo": [
                    {"taskSetLabel": "Blue", "trafficWeight": blue, "desiredCount": 2, "runningCount": 2, "pendingCount": 0},
                    {"taskSetLabel": "Green", "trafficWeight": green, "desiredCount": 2, "runningCount": 2, "pendingCount": 0},
                ],
            },
        }))
    }

    #[test]
    fn a_first_look_shows_the_status_the_events_under_way_and_the_traffic() {
        let current = at(
            "InProgress",
            &[
                ("BeforeInstall", "Succeeded"),
                ("Install", "InProgress"),
                ("AfterInstall", "Pending"),
            ],
            100.0,
            0.0,
        );
        assert_eq!(
            changes(None, &current),
            [
                "CodeDeploy deployment d-1 in progress",
                "BeforeInstall succeeded",
                "Install in progress",
                "traffic: blue 100% · green 0%",
            ]
        );
    }

    #[test]
    fn later_looks_show_only_what_changed() {
        let before = at(
            "InProgress",
            &[("Install", "Succeeded"), ("AllowTestTraffic", "Pending")],
            100.0,
            0.0,
        );
        let after = at(
            "InProgress",
            &[("Install", "Succeeded"), ("AllowTestTraffic", "InProgress")],
            90.0,
            10.0,
        );
        assert_eq!(
            changes(Some(&before), &after),
            [
                "AllowTestTraffic in progress",
                "traffic: blue 90% · green 10%"
            ]
        );
        assert!(changes(Some(&after), &after).is_empty());
    }

    #[test]
    fn a_poll_without_the_target_reports_no_lifecycle_or_traffic_change() {
        let before = at("InProgress", &[("Install", "InProgress")], 100.0, 0.0);
        let mut after = before.clone();
        after.target = None;
        assert!(changes(Some(&before), &after).is_empty());
    }

    #[test]
    fn fractional_weights_keep_one_decimal() {
        let target = at("InProgress", &[], 66.5, 33.5).target.unwrap();
        assert_eq!(
            traffic_line(&target).unwrap(),
            "traffic: blue 66.5% · green 33.5%"
        );
    }

    #[test]
    fn the_outcome_lines_list_every_event_in_order() {
        let target = at(
            "Failed",
            &[
                ("BeforeInstall", "Succeeded"),
                ("AfterAllowTestTraffic", "Failed"),
                ("AllowTraffic", "Skipped"),
            ],
            100.0,
            0.0,
        )
        .target
        .unwrap();
        assert_eq!(
            lifecycle_lines(&target),
            [
                "BeforeInstall succeeded",
                "AfterAllowTestTraffic failed",
                "AllowTraffic skipped"
            ]
        );
    }
}
