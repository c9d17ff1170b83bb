//! What a StatefulSet rollback must do by hand (Kubernetes docs, StatefulSets, "Forced
//! rollback"): once the controller has observed the reverted template, the pods that are not
//! ready and not at the restored revision are deleted, since an OrderedReady StatefulSet waits
//! for them to become ready forever instead of replacing them.

use serde_json::Value;

/// The label a StatefulSet puts on each pod: the name of the ControllerRevision it runs.
const REVISION_LABEL: &str = "controller-revision-hash";

/// Whether the StatefulSet's controller has observed `generation` and rolls out `revision`.
pub(crate) fn stateful_set_observed(live: &Value, generation: i64, revision: &str) -> bool {
    let observed = live
        .pointer("/status/observedGeneration")
        .and_then(Value::as_i64)
        .unwrap_or(0);
    observed >= generation
        && live
            .pointer("/status/updateRevision")
            .and_then(Value::as_str)
            == Some(revision)
}

fn is_ready(pod: &Value) -> bool {
    pod.pointer("/status/conditions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .any(|c| c["type"] == "Ready" && c["status"] == "True")
}

/// The names of the pods to delete: not ready, not being deleted, at another revision.
pub(crate) fn stuck_pods(pods: &[Value], revision: &str) -> Vec<String> {
    pods.iter()
        .filter(|pod| pod.pointer("/metadata/deletionTimestamp").is_none())
        .filter(|pod| {
            pod.pointer("/metadata/labels")
                .and_then(|labels| labels.get(REVISION_LABEL))
                .and_then(Value::as_str)
                != Some(revision)
        })
        .filter(|pod| !is_ready(pod))
        .filter_map(|pod| pod.pointer("/metadata/name")?.as_str().map(str::to_owned))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(name: &str, revision: &str, ready: bool) -> Value {
        json!({"metadata": {"name": name, "labels": {REVISION_LABEL: revision}},
            "status": {"conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]}})
    }

    #[test]
    fn only_unready_pods_of_other_revisions_are_deleted() {
        let pods = vec![
            pod("db-0", "db-1", true),
            pod("db-1", "db-1", false),
            pod("db-2", "db-2", false),
            pod("db-3", "db-2", true),
        ];
        assert_eq!(stuck_pods(&pods, "db-1"), ["db-2"]);
    }

    #[test]
    fn the_revert_counts_once_the_controller_rolls_out_the_restored_revision() {
        let sts = |observed: i64, update: &str| json!({"status": {"observedGeneration": observed, "updateRevision": update}});
        assert!(!stateful_set_observed(&sts(2, "db-1"), 3, "db-1"));
        assert!(!stateful_set_observed(&sts(3, "db-2"), 3, "db-1"));
        assert!(stateful_set_observed(&sts(3, "db-1"), 3, "db-1"));
    }
}
