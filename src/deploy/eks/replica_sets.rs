//! A Deployment's revisions: which ReplicaSet is the new one (its pods are the only ones a
//! rollout is judged by) and which is the one `kubectl rollout undo` returns to.

use serde_json::Value;

pub(crate) const REVISION_ANNOTATION: &str = "deployment.kubernetes.io/revision";
pub(crate) const POD_TEMPLATE_HASH: &str = "pod-template-hash";

/// A Deployment's or ReplicaSet's revision number.
pub(crate) fn revision(object: &Value) -> Option<i64> {
    object
        .pointer("/metadata/annotations")?
        .get(REVISION_ANNOTATION)?
        .as_str()?
        .parse()
        .ok()
}

pub(crate) fn is_owned_by(replica_set: &Value, deployment: &Value) -> bool {
    let Some(uid) = deployment.pointer("/metadata/uid").and_then(Value::as_str) else {
        return false;
    };
    replica_set
        .pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .any(|owner| {
            owner.get("uid").and_then(Value::as_str) == Some(uid)
                && owner.get("controller").and_then(Value::as_bool) == Some(true)
        })
}

/// The Deployment's own ReplicaSets, newest revision first.
fn owned_by_revision<'a>(deployment: &Value, replica_sets: &'a [Value]) -> Vec<(i64, &'a Value)> {
    let mut owned: Vec<(i64, &Value)> = replica_sets
        .iter()
        .filter(|rs| is_owned_by(rs, deployment))
        .filter_map(|rs| Some((revision(rs)?, rs)))
        .collect();
    owned.sort_by_key(|(revision, _)| std::cmp::Reverse(*revision));
    owned
}

/// The ReplicaSet of the Deployment's current revision. Only meaningful once the controller
/// observed the Deployment's generation (before that, the revision is the previous one's).
pub(crate) fn new_replica_set<'a>(
    deployment: &Value,
    replica_sets: &'a [Value],
) -> Option<&'a Value> {
    let current = revision(deployment)?;
    owned_by_revision(deployment, replica_sets)
        .into_iter()
        .find(|(rev, _)| *rev == current)
        .map(|(_, rs)| rs)
}

/// The ReplicaSet `kubectl rollout undo` returns to: the highest revision below the current one.
pub(crate) fn previous_replica_set<'a>(
    deployment: &Value,
    replica_sets: &'a [Value],
) -> Option<&'a Value> {
    let current = revision(deployment)?;
    owned_by_revision(deployment, replica_sets)
        .into_iter()
        .find(|(rev, _)| *rev < current)
        .map(|(_, rs)| rs)
}

/// The ReplicaSet named `name` among the Deployment's own.
pub(crate) fn replica_set_named<'a>(
    deployment: &Value,
    replica_sets: &'a [Value],
    name: &str,
) -> Option<&'a Value> {
    replica_sets
        .iter()
        .filter(|rs| is_owned_by(rs, deployment))
        .find(|rs| rs.pointer("/metadata/name").and_then(Value::as_str) == Some(name))
}

pub(crate) fn pod_template_hash(replica_set: &Value) -> Option<&str> {
    replica_set
        .pointer("/metadata/labels")?
        .get(POD_TEMPLATE_HASH)?
        .as_str()
}

/// The pod template to put back into the Deployment: the ReplicaSet's, without the
/// `pod-template-hash` label the controller added (as `kubectl rollout undo` does), or the
/// controller would never match it to the old ReplicaSet.
pub(crate) fn template_for_rollback(replica_set: &Value) -> Option<Value> {
    let mut template = replica_set.pointer("/spec/template")?.clone();
    if let Some(labels) = template
        .pointer_mut("/metadata/labels")
        .and_then(Value::as_object_mut)
    {
        labels.remove(POD_TEMPLATE_HASH);
    }
    Some(template)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use serde_json::json;

    pub(crate) fn deployment_at_revision(revision: i64) -> Value {
        json!({"kind": "Deployment", "metadata": {"name": "web", "uid": "d-1", "generation": 4,
            "annotations": {REVISION_ANNOTATION: revision.to_string()}}})
    }

    pub(crate) fn replica_set(name: &str, revision: i64, hash: &str, image: &str) -> Value {
        json!({"kind": "ReplicaSet", "metadata": {"name": name,
            "labels": {"app": "web", POD_TEMPLATE_HASH: hash},
            "annotations": {REVISION_ANNOTATION: revision.to_string()},
            "ownerReferences": [{"kind": "Deployment", "name": "web", "uid": "d-1", "controller": true}]},
            "spec": {"template": {"metadata": {"labels": {"app": "web", POD_TEMPLATE_HASH: hash}},
                "spec": {"containers": [{"name": "web", "image": image}]}}}})
    }

    fn others() -> Vec<Value> {
        let mut foreign = replica_set("other-9", 9, "zz", "x");
        foreign["metadata"]["ownerReferences"][0]["uid"] = json!("d-2");
        vec![
            replica_set("web-a", 1, "a", "app:1"),
            replica_set("web-c", 3, "c", "app:3"),
            foreign,
            replica_set("web-b", 2, "b", "app:2"),
        ]
    }

    #[test]
    fn the_new_replica_set_is_the_owned_one_at_the_deployments_revision() {
        let all = others();
        let new = new_replica_set(&deployment_at_revision(3), &all).unwrap();
        assert_eq!(new["metadata"]["name"], "web-c");
        assert_eq!(pod_template_hash(new), Some("c"));
    }

    #[test]
    fn undo_returns_to_the_highest_revision_below_the_current_one_never_a_foreign_one() {
        let all = others();
        let previous = previous_replica_set(&deployment_at_revision(3), &all).unwrap();
        assert_eq!(previous["metadata"]["name"], "web-b");
        assert!(previous_replica_set(&deployment_at_revision(1), &all).is_none());
        assert!(replica_set_named(&deployment_at_revision(3), &all, "other-9").is_none());
    }

    #[test]
    fn the_rollback_template_drops_only_the_pod_template_hash() {
        let template = template_for_rollback(&replica_set("web-b", 2, "b", "app:2")).unwrap();
        assert_eq!(template["metadata"]["labels"], json!({"app": "web"}));
        assert_eq!(template["spec"]["containers"][0]["image"], "app:2");
    }

    #[test]
    fn no_revision_annotation_means_no_answer_rather_than_a_guess() {
        let mut deployment = deployment_at_revision(3);
        deployment["metadata"]["annotations"] = json!({});
        assert!(new_replica_set(&deployment, &others()).is_none());
        assert!(previous_replica_set(&deployment, &others()).is_none());
    }
}
