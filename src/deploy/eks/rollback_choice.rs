//! Which revision a rollback returns a workload to, and the pod template it puts back:
//! Deployments from their ReplicaSets, StatefulSets and DaemonSets from their
//! ControllerRevisions, as `kubectl rollout undo` picks them.

use serde_json::Value;

use super::controller_revisions::{previous_revision, revision_named, template_of_revision};
use super::replica_sets::{previous_replica_set, replica_set_named, template_for_rollback};

/// The revision to return to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RevisionChoice {
    /// The one before the current (a failed deploy's undo).
    Previous,
    /// The ReplicaSet or ControllerRevision an earlier run recorded (`shipit rollback`).
    Named(String),
}

/// The template to put back and the name of the revision (ReplicaSet or ControllerRevision)
/// it comes from; `history` is the namespace's ReplicaSets (Deployments) or
/// ControllerRevisions (StatefulSets, DaemonSets).
pub(crate) fn rollback_template(
    kind: &str,
    workload: &Value,
    history: &[Value],
    choice: &RevisionChoice,
) -> Option<(Value, String)> {
    let (revision, template) = match kind {
        "Deployment" => {
            let revision = match choice {
                RevisionChoice::Previous => previous_replica_set(workload, history),
                RevisionChoice::Named(name) => replica_set_named(workload, history, name),
            }?;
            (revision, template_for_rollback(revision)?)
        }
        "StatefulSet" | "DaemonSet" => {
            let revision = match choice {
                RevisionChoice::Previous => previous_revision(workload, history),
                RevisionChoice::Named(name) => revision_named(workload, history, name),
            }?;
            (revision, template_of_revision(revision)?)
        }
        _ => return None,
    };
    let name = revision.pointer("/metadata/name")?.as_str()?.to_owned();
    Some((template, name))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deploy::eks::replica_sets::tests::{deployment_at_revision, replica_set};
    use serde_json::json;

    fn daemon_set() -> Value {
        json!({"kind": "DaemonSet", "metadata": {"name": "agent", "uid": "ds-1"}})
    }

    fn revision(name: &str, number: i64, image: &str) -> Value {
        json!({"kind": "ControllerRevision", "revision": number,
            "metadata": {"name": name, "ownerReferences": [{"kind": "DaemonSet", "uid": "ds-1", "controller": true}]},
            "data": {"spec": {"template": {"$patch": "replace", "spec": {"containers": [{"name": "agent", "image": image}]}}}}})
    }

    #[test]
    fn each_kind_returns_to_its_own_history() {
        let replica_sets = vec![
            replica_set("web-b", 2, "b", "app:2"),
            replica_set("web-c", 3, "c", "app:3"),
        ];
        let (template, name) = rollback_template(
            "Deployment",
            &deployment_at_revision(3),
            &replica_sets,
            &RevisionChoice::Previous,
        )
        .unwrap();
        assert_eq!(name, "web-b");
        assert_eq!(template["spec"]["containers"][0]["image"], "app:2");

        let history = vec![
            revision("agent-1", 1, "agent:1"),
            revision("agent-2", 2, "agent:2"),
        ];
        let (template, name) = rollback_template(
            "DaemonSet",
            &daemon_set(),
            &history,
            &RevisionChoice::Previous,
        )
        .unwrap();
        assert_eq!(name, "agent-1");
        assert_eq!(template["spec"]["containers"][0]["image"], "agent:1");
        let named = RevisionChoice::Named("agent-2".into());
        assert_eq!(
            rollback_template("DaemonSet", &daemon_set(), &history, &named).map(|(_, n)| n),
            Some("agent-2".to_owned())
        );
        // A ReplicaSet is never a DaemonSet's history, nor a Job anyone's.
        assert!(
            rollback_template(
                "DaemonSet",
                &daemon_set(),
                &replica_sets,
                &RevisionChoice::Previous
            )
            .is_none()
        );
        assert!(
            rollback_template("Job", &daemon_set(), &history, &RevisionChoice::Previous).is_none()
        );
    }
}
