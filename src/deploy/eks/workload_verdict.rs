//! One workload's standing, from what the watch last saw of it: kubectl's gate, and the first
//! problem among its new pods. The only place that decides whether a rollout goes on, is
//! done, or has failed.

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::gate::{RolloutState, WorkloadCounts, rollout_state, workload_counts};
use super::pods::{PodLimits, PodProblem, UnreadyPod, pod_problem, pods_of_revision, unready_pod};
use super::replica_sets::{
    POD_TEMPLATE_HASH, new_replica_set, pod_template_hash, previous_replica_set, revision,
};

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct WorkloadVerdict {
    pub(crate) state: RolloutState,
    pub(crate) counts: WorkloadCounts,
    /// The first failing new pod; it fails the rollout even while the gate still waits.
    pub(crate) problem: Option<PodProblem>,
    /// Deployments: the new ReplicaSet and the revision.
    pub(crate) replica_set: Option<String>,
    pub(crate) previous_replica_set: Option<String>,
    pub(crate) revision: Option<i64>,
    /// The new pods not ready yet (none once complete), by name: what a timeout names.
    pub(crate) unready_pods: Vec<UnreadyPod>,
}

impl WorkloadVerdict {
    pub(crate) fn has_failed(&self) -> bool {
        self.problem.is_some() || matches!(self.state, RolloutState::Failed(_))
    }
}

/// The label and value that mark the new revision's pods, once the controller made it.
fn new_pods_marker(
    kind: &str,
    object: &Value,
    replica_sets: &[Value],
) -> Option<(&'static str, String)> {
    let observed = object
        .pointer("/status/observedGeneration")
        .and_then(Value::as_i64);
    let generation = object
        .pointer("/metadata/generation")
        .and_then(Value::as_i64);
    // Before the controller observed the new spec, "newest" still means the previous revision.
    if observed < generation {
        return None;
    }
    match kind {
        "Deployment" => {
            let hash = pod_template_hash(new_replica_set(object, replica_sets)?)?;
            Some((POD_TEMPLATE_HASH, hash.to_owned()))
        }
        "StatefulSet" => Some((
            "controller-revision-hash",
            object
                .pointer("/status/updateRevision")?
                .as_str()?
                .to_owned(),
        )),
        "DaemonSet" => Some(("pod-template-generation", generation?.to_string())),
        _ => None,
    }
}

pub(crate) fn judge_workload(
    kind: &str,
    object: &Value,
    replica_sets: &[Value],
    pods: &[Value],
    limits: &PodLimits,
    now: DateTime<Utc>,
) -> WorkloadVerdict {
    let state = rollout_state(kind, object);
    let marker = new_pods_marker(kind, object, replica_sets);
    let problem = match (&state, &marker) {
        // A finished rollout is not failed by a pod restarting afterwards.
        (RolloutState::Complete(_), _) | (_, None) => None,
        (_, Some((label, value))) => pods_of_revision(pods, label, value)
            .into_iter()
            .find_map(|pod| pod_problem(pod, limits, now)),
    };
    let mut unready_pods: Vec<UnreadyPod> = match (&state, &marker) {
        (RolloutState::Complete(_), _) | (_, None) => Vec::new(),
        (_, Some((label, value))) => pods_of_revision(pods, label, value)
            .into_iter()
            .filter_map(unready_pod)
            .collect(),
    };
    unready_pods.sort_by(|a, b| a.pod.cmp(&b.pod));
    let new_rs = (kind == "Deployment")
        .then(|| new_replica_set(object, replica_sets))
        .flatten();
    WorkloadVerdict {
        counts: workload_counts(kind, object),
        state,
        problem,
        replica_set: new_rs
            .and_then(|rs| rs.pointer("/metadata/name"))
            .and_then(Value::as_str)
            .map(str::to_owned),
        previous_replica_set: (kind == "Deployment")
            .then(|| previous_replica_set(object, replica_sets))
            .flatten()
            .and_then(|rs| rs.pointer("/metadata/name"))
            .and_then(Value::as_str)
            .map(str::to_owned),
        revision: (kind == "Deployment").then(|| revision(object)).flatten(),
        unready_pods,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deploy::eks::pods::tests::pod;
    use crate::deploy::eks::replica_sets::tests::{deployment_at_revision, replica_set};
    use serde_json::json;
    use std::time::Duration;

    const LIMITS: PodLimits = PodLimits {
        max_restarts: 2,
        unready_timeout: Duration::from_secs(180),
    };

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2025-01-01T12:10:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    fn rolling_deployment(observed: i64) -> Value {
        let mut deployment = deployment_at_revision(3);
        deployment["spec"] = json!({"replicas": 2});
        deployment["status"] = json!({"observedGeneration": observed, "replicas": 3, "updatedReplicas": 1, "readyReplicas": 2, "availableReplicas": 2});
        deployment
    }

    fn crash_looping() -> Value {
        json!({"name": "web", "ready": false, "restartCount": 4, "state": {"waiting": {"reason": "CrashLoopBackOff"}},
            "lastState": {"terminated": {"reason": "Error", "exitCode": 2}}})
    }

    fn fine() -> Value {
        json!({"name": "web", "ready": true, "restartCount": 0, "state": {"running": {"startedAt": "2025-01-01T12:00:00Z"}}})
    }

    #[test]
    fn a_crash_looping_new_pod_fails_the_rollout_while_the_gate_still_waits() {
        let replica_sets = vec![
            replica_set("web-b", 2, "b", "app:2"),
            replica_set("web-c", 3, "c", "app:3"),
        ];
        let pods = vec![
            pod("web-b-1", "b", true, fine()),
            pod("web-c-1", "c", false, crash_looping()),
        ];
        let verdict = judge_workload(
            "Deployment",
            &rolling_deployment(4),
            &replica_sets,
            &pods,
            &LIMITS,
            now(),
        );
        assert!(matches!(verdict.state, RolloutState::Waiting(_)));
        assert!(verdict.has_failed());
        assert_eq!(verdict.problem.unwrap().pod, "web-c-1");
        assert_eq!(
            (verdict.replica_set.as_deref(), verdict.revision),
            (Some("web-c"), Some(3))
        );
    }

    #[test]
    fn old_pods_failing_never_fail_the_new_rollout() {
        let replica_sets = vec![
            replica_set("web-b", 2, "b", "app:2"),
            replica_set("web-c", 3, "c", "app:3"),
        ];
        let pods = vec![
            pod("web-b-1", "b", false, crash_looping()),
            pod("web-c-1", "c", true, fine()),
        ];
        let verdict = judge_workload(
            "Deployment",
            &rolling_deployment(4),
            &replica_sets,
            &pods,
            &LIMITS,
            now(),
        );
        assert_eq!(verdict.problem, None);
    }

    #[test]
    fn before_the_new_spec_is_observed_no_pod_is_judged() {
        // The "newest" ReplicaSet is still the previous one: its pods are not this rollout's.
        let replica_sets = vec![replica_set("web-c", 3, "c", "app:3")];
        let pods = vec![pod("web-c-1", "c", false, crash_looping())];
        let verdict = judge_workload(
            "Deployment",
            &rolling_deployment(3),
            &replica_sets,
            &pods,
            &LIMITS,
            now(),
        );
        assert_eq!(
            verdict.state,
            RolloutState::Waiting("spec update not yet observed".into())
        );
        assert_eq!(verdict.problem, None);
    }

    #[test]
    fn stateful_set_pods_are_judged_by_the_update_revision() {
        let sts = json!({"kind": "StatefulSet", "metadata": {"generation": 2}, "spec": {"replicas": 2, "updateStrategy": {"type": "RollingUpdate"}},
            "status": {"observedGeneration": 2, "readyReplicas": 1, "updateRevision": "db-2", "currentRevision": "db-1"}});
        let mut new_pod = pod("db-1", "x", false, crash_looping());
        new_pod["metadata"]["labels"]["controller-revision-hash"] = json!("db-2");
        let mut old_pod = pod("db-0", "x", false, crash_looping());
        old_pod["metadata"]["labels"]["controller-revision-hash"] = json!("db-1");
        let verdict = judge_workload(
            "StatefulSet",
            &sts,
            &[],
            &[old_pod, new_pod],
            &LIMITS,
            now(),
        );
        assert_eq!(verdict.problem.unwrap().pod, "db-1");
    }
}
