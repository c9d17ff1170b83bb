//! A StatefulSet's or DaemonSet's revisions, as `kubectl rollout undo` reads them: the
//! ControllerRevisions the workload controls, ordered by their `revision` number; undo returns
//! to the second highest (kubectl `pkg/polymorphichelpers/rollback.go`, `findHistory`), whose
//! `data` holds the pod template as a strategic-merge patch (`{"spec": {"template": {…,
//! "$patch": "replace"}}}`).

use serde_json::Value;

use super::replica_sets::is_owned_by;

/// The workload's own ControllerRevisions, highest revision first.
fn owned_by_revision<'a>(workload: &Value, revisions: &'a [Value]) -> Vec<(i64, &'a Value)> {
    let mut owned: Vec<(i64, &Value)> = revisions
        .iter()
        .filter(|revision| is_owned_by(revision, workload))
        .filter_map(|revision| Some((revision.get("revision")?.as_i64()?, revision)))
        .collect();
    owned.sort_by_key(|(number, _)| std::cmp::Reverse(*number));
    owned
}

/// The revision the workload runs now (or rolls out): the highest.
pub(crate) fn latest_revision<'a>(workload: &Value, revisions: &'a [Value]) -> Option<&'a Value> {
    owned_by_revision(workload, revisions)
        .into_iter()
        .next()
        .map(|(_, revision)| revision)
}

/// The revision `kubectl rollout undo` returns to: the second highest.
pub(crate) fn previous_revision<'a>(workload: &Value, revisions: &'a [Value]) -> Option<&'a Value> {
    owned_by_revision(workload, revisions)
        .into_iter()
        .nth(1)
        .map(|(_, revision)| revision)
}

/// The workload's own revision named `name`.
pub(crate) fn revision_named<'a>(
    workload: &Value,
    revisions: &'a [Value],
    name: &str,
) -> Option<&'a Value> {
    revisions
        .iter()
        .filter(|revision| is_owned_by(revision, workload))
        .find(|revision| revision.pointer("/metadata/name").and_then(Value::as_str) == Some(name))
}

/// The pod template a revision holds, without the patch directive.
pub(crate) fn template_of_revision(revision: &Value) -> Option<Value> {
    let mut template = revision.pointer("/data/spec/template")?.clone();
    template.as_object_mut()?.remove("$patch");
    Some(template)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn stateful_set() -> Value {
        json!({"kind": "StatefulSet", "metadata": {"name": "db", "uid": "s-1"}})
    }

    fn revision(name: &str, number: i64, image: &str, owner: &str) -> Value {
        json!({"apiVersion": "apps/v1", "kind": "ControllerRevision", "revision": number,
            "metadata": {"name": name, "ownerReferences": [{"kind": "StatefulSet", "name": "db", "uid": owner, "controller": true}]},
            "data": {"spec": {"template": {"$patch": "replace",
                "metadata": {"labels": {"app": "db"}},
                "spec": {"containers": [{"name": "db", "image": image}]}}}}})
    }

    fn history() -> Vec<Value> {
        vec![
            revision("db-a", 1, "db:1", "s-1"),
            revision("db-c", 3, "db:3", "s-1"),
            revision("other-9", 9, "x", "s-2"),
            revision("db-b", 2, "db:2", "s-1"),
        ]
    }

    #[test]
    fn undo_returns_to_the_second_highest_own_revision_as_kubectl_does() {
        let all = history();
        let sts = stateful_set();
        assert_eq!(
            latest_revision(&sts, &all).unwrap()["metadata"]["name"],
            "db-c"
        );
        assert_eq!(
            previous_revision(&sts, &all).unwrap()["metadata"]["name"],
            "db-b"
        );
        assert!(
            previous_revision(&sts, &all[..1]).is_none(),
            "one revision: nothing to undo to"
        );
        assert!(revision_named(&sts, &all, "other-9").is_none());
        assert!(revision_named(&sts, &all, "db-a").is_some());
    }

    #[test]
    fn the_template_comes_without_the_patch_directive() {
        let template = template_of_revision(&revision("db-b", 2, "db:2", "s-1")).unwrap();
        assert_eq!(
            template,
            json!({"metadata": {"labels": {"app": "db"}}, "spec": {"containers": [{"name": "db", "image": "db:2"}]}})
        );
        assert!(template_of_revision(&json!({"data": {}})).is_none());
    }
}
