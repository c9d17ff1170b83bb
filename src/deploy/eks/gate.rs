//! When a workload's rollout is done: `kubectl rollout status`, rule for rule
//! (kubectl `pkg/polymorphichelpers/rollout_status.go`), over the objects as the API returns
//! them (absent counters are zero, as in Go).
//!
//! The observedGeneration check comes first on purpose: right after an apply the status still
//! describes the previous rollout, which may well be complete. kube-rs's
//! `is_deployment_completed` skips it and so can pass a rollout that has not started.

use serde_json::Value;

/// Where a rollout stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RolloutState {
    /// Not yet: why, in kubectl's words.
    Waiting(String),
    Complete(String),
    /// Will not complete by itself (the Deployment's progress deadline passed).
    Failed(String),
}

/// A workload's counts, for progress lines and the outcome.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct WorkloadCounts {
    pub(crate) desired: i64,
    pub(crate) updated: i64,
    pub(crate) ready: i64,
    pub(crate) available: i64,
}

fn int(object: &Value, path: &[&str]) -> i64 {
    path.iter()
        .try_fold(object, |value, key| value.get(*key))
        .and_then(Value::as_i64)
        .unwrap_or(0)
}

fn optional_int(object: &Value, path: &[&str]) -> Option<i64> {
    path.iter()
        .try_fold(object, |value, key| value.get(*key))
        .and_then(Value::as_i64)
}

fn text<'a>(object: &'a Value, path: &[&str]) -> Option<&'a str> {
    path.iter()
        .try_fold(object, |value, key| value.get(*key))
        .and_then(Value::as_str)
}

/// The rollout state of a Deployment, StatefulSet or DaemonSet (`kind`); any other kind has no
/// rollout and is complete once applied.
pub(crate) fn rollout_state(kind: &str, object: &Value) -> RolloutState {
    match kind {
        "Deployment" => deployment_state(object),
        "StatefulSet" => stateful_set_state(object),
        "DaemonSet" => daemon_set_state(object),
        _ => RolloutState::Complete(format!("{kind} has no rollout")),
    }
}

fn deployment_state(object: &Value) -> RolloutState {
    let generation = int(object, &["metadata", "generation"]);
    let observed = int(object, &["status", "observedGeneration"]);
    if generation > observed {
        return RolloutState::Waiting("spec update not yet observed".into());
    }
    let deadline_exceeded = object
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .find(|condition| text(condition, &["type"]) == Some("Progressing"))
        .is_some_and(|condition| text(condition, &["reason"]) == Some("ProgressDeadlineExceeded"));
    if deadline_exceeded {
        let seconds = optional_int(object, &["spec", "progressDeadlineSeconds"]).unwrap_or(600);
        return RolloutState::Failed(format!(
            "exceeded its progress deadline ({seconds}s without progress)"
        ));
    }
    let updated = int(object, &["status", "updatedReplicas"]);
    let replicas = int(object, &["status", "replicas"]);
    let available = int(object, &["status", "availableReplicas"]);
    if let Some(desired) = optional_int(object, &["spec", "replicas"])
        && updated < desired
    {
        return RolloutState::Waiting(format!("{updated} of {desired} updated"));
    }
    if replicas > updated {
        return RolloutState::Waiting(format!(
            "{} old replicas pending termination",
            replicas - updated
        ));
    }
    if available < updated {
        return RolloutState::Waiting(format!("{available} of {updated} available"));
    }
    RolloutState::Complete("successfully rolled out".into())
}

fn stateful_set_state(object: &Value) -> RolloutState {
    // The API server defaults the strategy to RollingUpdate; OnDelete changes pods only when
    // someone deletes them, so there is no rollout to wait for (kubectl refuses it too).
    let strategy = text(object, &["spec", "updateStrategy", "type"]).unwrap_or("RollingUpdate");
    if strategy != "RollingUpdate" {
        return RolloutState::Complete(format!(
            "updateStrategy {strategy}: pods change only when deleted, not gated"
        ));
    }
    let generation = int(object, &["metadata", "generation"]);
    let observed = int(object, &["status", "observedGeneration"]);
    if observed == 0 || generation > observed {
        return RolloutState::Waiting("spec update not yet observed".into());
    }
    let desired = optional_int(object, &["spec", "replicas"]);
    let ready = int(object, &["status", "readyReplicas"]);
    let updated = int(object, &["status", "updatedReplicas"]);
    if let Some(desired) = desired
        && ready < desired
    {
        return RolloutState::Waiting(format!("{} pods not ready", desired - ready));
    }
    if let Some(rolling) = object.pointer("/spec/updateStrategy/rollingUpdate")
        && !rolling.is_null()
    {
        if let (Some(desired), Some(partition)) = (desired, optional_int(rolling, &["partition"]))
            && updated < desired - partition
        {
            return RolloutState::Waiting(format!(
                "partitioned roll out: {updated} of {} new pods updated",
                desired - partition
            ));
        }
        return RolloutState::Complete(format!("{updated} new pods updated"));
    }
    let update_revision = text(object, &["status", "updateRevision"]).unwrap_or_default();
    let current_revision = text(object, &["status", "currentRevision"]).unwrap_or_default();
    if update_revision != current_revision {
        return RolloutState::Waiting(format!("{updated} pods at revision {update_revision}"));
    }
    RolloutState::Complete(format!(
        "{} pods at revision {current_revision}",
        int(object, &["status", "currentReplicas"])
    ))
}

fn daemon_set_state(object: &Value) -> RolloutState {
    let strategy = text(object, &["spec", "updateStrategy", "type"]).unwrap_or("RollingUpdate");
    if strategy != "RollingUpdate" {
        return RolloutState::Complete(format!(
            "updateStrategy {strategy}: pods change only when deleted, not gated"
        ));
    }
    let generation = int(object, &["metadata", "generation"]);
    let observed = int(object, &["status", "observedGeneration"]);
    if generation > observed {
        return RolloutState::Waiting("spec update not yet observed".into());
    }
    let desired = int(object, &["status", "desiredNumberScheduled"]);
    let updated = int(object, &["status", "updatedNumberScheduled"]);
    let available = int(object, &["status", "numberAvailable"]);
    if updated < desired {
        return RolloutState::Waiting(format!("{updated} of {desired} updated"));
    }
    if available < desired {
        return RolloutState::Waiting(format!("{available} of {desired} available"));
    }
    RolloutState::Complete("successfully rolled out".into())
}

/// The counts a progress line shows.
pub(crate) fn workload_counts(kind: &str, object: &Value) -> WorkloadCounts {
    match kind {
        "DaemonSet" => WorkloadCounts {
            desired: int(object, &["status", "desiredNumberScheduled"]),
            updated: int(object, &["status", "updatedNumberScheduled"]),
            ready: int(object, &["status", "numberReady"]),
            available: int(object, &["status", "numberAvailable"]),
        },
        _ => WorkloadCounts {
            desired: optional_int(object, &["spec", "replicas"]).unwrap_or(1),
            updated: int(object, &["status", "updatedReplicas"]),
            ready: int(object, &["status", "readyReplicas"]),
            available: int(object, &["status", "availableReplicas"]),
        },
    }
}

/// `deployment/web: 2 of 3 updated, 1 ready, 1 available (1 of 2 available)`: the counts, and
/// what the rollout waits for when the counts alone do not say it.
pub(crate) fn progress_line(
    workload: &str,
    counts: &WorkloadCounts,
    state: &RolloutState,
) -> String {
    let counts_text = format!(
        "{workload}: {} of {} updated, {} ready, {} available",
        counts.updated, counts.desired, counts.ready, counts.available
    );
    match state {
        RolloutState::Waiting(why) => format!("{counts_text} (waiting: {why})"),
        RolloutState::Complete(_) => format!("{counts_text}: complete"),
        RolloutState::Failed(why) => format!("{counts_text}: failed: {why}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn deployment(generation: i64, replicas: Option<i64>, status: Value) -> Value {
        let mut spec = json!({});
        if let Some(replicas) = replicas {
            spec["replicas"] = json!(replicas);
        }
        json!({"kind": "Deployment", "metadata": {"name": "web", "generation": generation},
            "spec": spec, "status": status})
    }

    fn waiting(why: &str) -> RolloutState {
        RolloutState::Waiting(why.into())
    }

    #[test]
    fn deployment_follows_kubectl_rollout_status_rule_by_rule() {
        let done = RolloutState::Complete("successfully rolled out".into());
        let table = [
            // A just-applied spec: the status still says the previous rollout is done.
            (
                deployment(
                    5,
                    Some(3),
                    json!({"observedGeneration": 4, "replicas": 3, "updatedReplicas": 3, "availableReplicas": 3}),
                ),
                waiting("spec update not yet observed"),
            ),
            (
                deployment(
                    5,
                    Some(3),
                    json!({"observedGeneration": 5, "replicas": 4, "updatedReplicas": 1, "availableReplicas": 3}),
                ),
                waiting("1 of 3 updated"),
            ),
            (
                deployment(
                    5,
                    Some(3),
                    json!({"observedGeneration": 5, "replicas": 4, "updatedReplicas": 3, "availableReplicas": 3}),
                ),
                waiting("1 old replicas pending termination"),
            ),
            (
                deployment(
                    5,
                    Some(3),
                    json!({"observedGeneration": 5, "replicas": 3, "updatedReplicas": 3, "availableReplicas": 2}),
                ),
                waiting("2 of 3 available"),
            ),
            (
                deployment(
                    5,
                    Some(3),
                    json!({"observedGeneration": 5, "replicas": 3, "updatedReplicas": 3, "availableReplicas": 3}),
                ),
                done.clone(),
            ),
            // Counters the API leaves out are zero: a Deployment scaled to 0 is done.
            (
                deployment(2, Some(0), json!({"observedGeneration": 2})),
                done.clone(),
            ),
            // No spec.replicas: the updated check is skipped, as in kubectl.
            (
                deployment(
                    1,
                    None,
                    json!({"observedGeneration": 1, "replicas": 1, "updatedReplicas": 1, "availableReplicas": 1}),
                ),
                done,
            ),
            // No status at all: nothing observed yet.
            (
                json!({"kind": "Deployment", "metadata": {"generation": 1}}),
                waiting("spec update not yet observed"),
            ),
        ];
        for (object, expected) in table {
            assert_eq!(rollout_state("Deployment", &object), expected, "{object}");
        }
    }

    #[test]
    fn deployment_past_its_progress_deadline_has_failed_even_with_counts_pending() {
        let mut object = deployment(
            3,
            Some(2),
            json!({"observedGeneration": 3, "replicas": 3, "updatedReplicas": 1,
            "conditions": [
                {"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable"},
                {"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded"}]}),
        );
        object["spec"]["progressDeadlineSeconds"] = json!(120);
        assert_eq!(
            rollout_state("Deployment", &object),
            RolloutState::Failed("exceeded its progress deadline (120s without progress)".into())
        );
        // Before the controller observed the new spec, the old condition does not count.
        object["metadata"]["generation"] = json!(4);
        assert_eq!(
            rollout_state("Deployment", &object),
            waiting("spec update not yet observed")
        );
    }

    #[test]
    fn stateful_set_rules() {
        let sts = |generation: i64, strategy: Value, status: Value| json!({"metadata": {"generation": generation}, "spec": {"replicas": 3, "updateStrategy": strategy}, "status": status});
        let rolling = json!({"type": "RollingUpdate", "rollingUpdate": {"partition": 0}});
        let table = [
            (
                sts(2, rolling.clone(), json!({"observedGeneration": 1})),
                waiting("spec update not yet observed"),
            ),
            // observedGeneration 0 is "never observed", whatever the generation.
            (
                sts(0, rolling.clone(), json!({})),
                waiting("spec update not yet observed"),
            ),
            (
                sts(
                    2,
                    rolling.clone(),
                    json!({"observedGeneration": 2, "readyReplicas": 1, "updatedReplicas": 3}),
                ),
                waiting("2 pods not ready"),
            ),
            (
                sts(
                    2,
                    json!({"type": "RollingUpdate", "rollingUpdate": {"partition": 1}}),
                    json!({"observedGeneration": 2, "readyReplicas": 3, "updatedReplicas": 1}),
                ),
                waiting("partitioned roll out: 1 of 2 new pods updated"),
            ),
            (
                sts(
                    2,
                    rolling,
                    json!({"observedGeneration": 2, "readyReplicas": 3, "updatedReplicas": 3}),
                ),
                RolloutState::Complete("3 new pods updated".into()),
            ),
            (
                sts(
                    2,
                    json!({"type": "RollingUpdate"}),
                    json!({"observedGeneration": 2, "readyReplicas": 3, "updatedReplicas": 2, "updateRevision": "web-2", "currentRevision": "web-1"}),
                ),
                waiting("2 pods at revision web-2"),
            ),
            (
                sts(
                    2,
                    json!({"type": "RollingUpdate"}),
                    json!({"observedGeneration": 2, "readyReplicas": 3, "currentReplicas": 3, "updateRevision": "web-2", "currentRevision": "web-2"}),
                ),
                RolloutState::Complete("3 pods at revision web-2".into()),
            ),
        ];
        for (object, expected) in table {
            assert_eq!(rollout_state("StatefulSet", &object), expected, "{object}");
        }
        let on_delete = sts(2, json!({"type": "OnDelete"}), json!({}));
        assert!(matches!(
            rollout_state("StatefulSet", &on_delete),
            RolloutState::Complete(_)
        ));
    }

    #[test]
    fn daemon_set_rules() {
        let ds = |generation: i64, status: Value| json!({"metadata": {"generation": generation}, "spec": {"updateStrategy": {"type": "RollingUpdate"}}, "status": status});
        let table = [
            (
                ds(
                    2,
                    json!({"observedGeneration": 1, "desiredNumberScheduled": 3, "updatedNumberScheduled": 3, "numberAvailable": 3}),
                ),
                waiting("spec update not yet observed"),
            ),
            (
                ds(
                    2,
                    json!({"observedGeneration": 2, "desiredNumberScheduled": 3, "updatedNumberScheduled": 1, "numberAvailable": 3}),
                ),
                waiting("1 of 3 updated"),
            ),
            (
                ds(
                    2,
                    json!({"observedGeneration": 2, "desiredNumberScheduled": 3, "updatedNumberScheduled": 3, "numberAvailable": 2}),
                ),
                waiting("2 of 3 available"),
            ),
            (
                ds(
                    2,
                    json!({"observedGeneration": 2, "desiredNumberScheduled": 3, "updatedNumberScheduled": 3, "numberAvailable": 3}),
                ),
                RolloutState::Complete("successfully rolled out".into()),
            ),
        ];
        for (object, expected) in table {
            assert_eq!(rollout_state("DaemonSet", &object), expected, "{object}");
        }
    }

    #[test]
    fn a_progress_line_shows_counts_and_what_is_awaited() {
        let object = deployment(
            5,
            Some(3),
            json!({"observedGeneration": 5, "replicas": 4, "updatedReplicas": 2, "readyReplicas": 3, "availableReplicas": 3}),
        );
        let line = progress_line(
            "deployment/web",
            &workload_counts("Deployment", &object),
            &rollout_state("Deployment", &object),
        );
        assert_eq!(
            line,
            "deployment/web: 2 of 3 updated, 3 ready, 3 available (waiting: 2 of 3 updated)"
        );
    }

    #[test]
    fn objects_of_the_wrong_shape_never_panic() {
        for object in [
            json!(null),
            json!("x"),
            json!({"metadata": {"generation": "two"}, "status": []}),
            json!({"spec": {"updateStrategy": 3}}),
        ] {
            for kind in ["Deployment", "StatefulSet", "DaemonSet"] {
                let _ = rollout_state(kind, &object);
                let _ = workload_counts(kind, &object);
            }
        }
    }
}
