//! What an apply would change: the server's dry-run result against the live object, with what
//! the server writes on its own (managed fields, versions, status) left out. The same
//! comparison decides that an unchanged manifest applies nothing and writes the preview.
//! A Secret's values never appear: its changes are named by path only.

use serde_json::Value;

use super::manifests::ObjectKey;

/// Fields the server sets on every write or that describe the live state, not the request.
const SERVER_METADATA: &[&str] = &[
    "managedFields",
    "resourceVersion",
    "generation",
    "uid",
    "creationTimestamp",
    "selfLink",
];

/// Shown at most, so that a large ConfigMap change stays readable.
const MAX_FIELDS_SHOWN: usize = 20;
const MAX_VALUE_CHARS: usize = 60;

fn comparable(object: &Value) -> Value {
    let mut object = object.clone();
    if let Some(map) = object.as_object_mut() {
        map.remove("status");
        if let Some(metadata) = map.get_mut("metadata").and_then(Value::as_object_mut) {
            for field in SERVER_METADATA {
                metadata.remove(*field);
            }
        }
    }
    object
}

/// Whether applying would leave the live object as it is.
pub(crate) fn is_unchanged(dry_run: &Value, live: &Value) -> bool {
    comparable(dry_run) == comparable(live)
}

/// One changed field: its path, and the values unless the object is a Secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FieldChange {
    pub(crate) path: String,
    pub(crate) before: Option<String>,
    pub(crate) after: Option<String>,
}

/// The fields that differ, in document order.
pub(crate) fn changed_fields(dry_run: &Value, live: &Value) -> Vec<FieldChange> {
    let mut changes = Vec::new();
    collect_changes(
        String::new(),
        Some(&comparable(live)),
        Some(&comparable(dry_run)),
        &mut changes,
    );
    changes
}

fn collect_changes(
    path: String,
    before: Option<&Value>,
    after: Option<&Value>,
    out: &mut Vec<FieldChange>,
) {
    match (before, after) {
        (Some(Value::Object(old)), Some(Value::Object(new))) => {
            for (key, value) in new {
                collect_changes(join(&path, key), old.get(key), Some(value), out);
            }
            for (key, value) in old {
                if !new.contains_key(key) {
                    collect_changes(join(&path, key), Some(value), None, out);
                }
            }
        }
        (Some(Value::Array(old)), Some(Value::Array(new))) if old.len() == new.len() => {
            for (index, (old, new)) in old.iter().zip(new).enumerate() {
                collect_changes(format!("{path}[{index}]"), Some(old), Some(new), out);
            }
        }
        (before, after) if before != after => out.push(FieldChange {
            path,
            before: before.map(short_value),
            after: after.map(short_value),
        }),
        _ => {}
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

fn short_value(value: &Value) -> String {
    let text = match value {
        Value::String(s) => s.clone(),
        Value::Array(items) => format!("[{} items]", items.len()),
        Value::Object(map) => format!("{{{} fields}}", map.len()),
        other => other.to_string(),
    };
    if text.chars().count() > MAX_VALUE_CHARS {
        let cut: String = text.chars().take(MAX_VALUE_CHARS).collect();
        format!("{cut}…")
    } else {
        text
    }
}

/// The preview's line for one object: created, unchanged, or the fields it changes.
pub(crate) fn preview_line(key: &ObjectKey, live: Option<&Value>, dry_run: &Value) -> String {
    let Some(live) = live else {
        return format!("create {key}");
    };
    let changes = changed_fields(dry_run, live);
    if changes.is_empty() {
        return format!("unchanged {key}");
    }
    // Every value of a Secret is secret, including annotations that copy its data
    // (`kubectl.kubernetes.io/last-applied-configuration`).
    let hide_values = key.kind == "Secret";
    let mut fields: Vec<String> = changes
        .iter()
        .take(MAX_FIELDS_SHOWN)
        .map(
            |change| match (&change.before, &change.after, hide_values) {
                (_, _, true) => format!("{} (value hidden)", change.path),
                (None, Some(after), _) => format!("{}: + {after}", change.path),
                (Some(before), None, _) => format!("{}: - {before}", change.path),
                (Some(before), Some(after), _) => format!("{}: {before} → {after}", change.path),
                (None, None, _) => change.path.clone(),
            },
        )
        .collect();
    if changes.len() > MAX_FIELDS_SHOWN {
        fields.push(format!("and {} more", changes.len() - MAX_FIELDS_SHOWN));
    }
    format!("change {key}: {}", fields.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn key(kind: &str) -> ObjectKey {
        ObjectKey {
            api_version: "v1".into(),
            kind: kind.into(),
            namespace: Some("shop".into()),
            name: "web".into(),
        }
    }

    fn live_deployment() -> Value {
        json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "shop", "uid": "u1", "resourceVersion": "100", "generation": 4,
                "creationTimestamp": "2025-01-01T00:00:00Z",
                "managedFields": [{"manager": "shipit", "time": "2025-01-01T00:00:00Z"}]},
            "spec": {"replicas": 2, "template": {"spec": {"containers": [{"name": "web", "image": "r@sha256:aa"}]}}},
            "status": {"replicas": 2, "observedGeneration": 4}})
    }

    #[test]
    fn a_dry_run_that_differs_only_in_server_bookkeeping_is_unchanged() {
        let live = live_deployment();
        let mut dry_run = live.clone();
        dry_run["metadata"]["managedFields"][0]["time"] = json!("2025-06-01T00:00:00Z");
        dry_run["metadata"]["resourceVersion"] = json!("101");
        dry_run["status"] = json!({});
        assert!(is_unchanged(&dry_run, &live));
        assert_eq!(
            preview_line(&key("Deployment"), Some(&live), &dry_run),
            "unchanged Deployment/shop/web"
        );
    }

    #[test]
    fn a_changed_image_and_replica_count_are_named_with_their_values() {
        let live = live_deployment();
        let mut dry_run = live.clone();
        dry_run["spec"]["replicas"] = json!(3);
        dry_run["spec"]["template"]["spec"]["containers"][0]["image"] = json!("r@sha256:bb");
        assert!(!is_unchanged(&dry_run, &live));
        assert_eq!(
            preview_line(&key("Deployment"), Some(&live), &dry_run),
            "change Deployment/shop/web: spec.replicas: 2 → 3; spec.template.spec.containers[0].image: r@sha256:aa → r@sha256:bb"
        );
    }

    #[test]
    fn a_new_object_is_created() {
        assert_eq!(
            preview_line(&key("ConfigMap"), None, &json!({})),
            "create ConfigMap/shop/web"
        );
    }

    #[test]
    fn secret_values_never_appear_only_their_paths() {
        let live = json!({"kind": "Secret", "metadata": {"name": "web",
            "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{\"data\":{\"password\":\"aHVudGVyMg==\"}}"}},
            "data": {"password": "aHVudGVyMg==", "user": "YWRtaW4="}});
        let mut dry_run = live.clone();
        dry_run["data"]["password"] = json!("c3dvcmRmaXNo");
        dry_run["data"]["token"] = json!("dG9rZW4=");
        dry_run["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"] =
            json!("{\"data\":{\"password\":\"c3dvcmRmaXNo\"}}");
        let line = preview_line(&key("Secret"), Some(&live), &dry_run);
        for secret in ["aHVudGVyMg", "c3dvcmRmaXNo", "dG9rZW4", "YWRtaW4"] {
            assert!(!line.contains(secret), "{line}");
        }
        assert_eq!(
            line,
            "change Secret/shop/web: metadata.annotations.kubectl.kubernetes.io/last-applied-configuration (value hidden); data.password (value hidden); data.token (value hidden)"
        );
    }

    #[test]
    fn removed_fields_and_resized_lists_are_reported() {
        let live = json!({"spec": {"ports": [{"port": 80}], "type": "NodePort"}});
        let dry_run = json!({"spec": {"ports": [{"port": 80}, {"port": 443}]}});
        let changes = changed_fields(&dry_run, &live);
        assert_eq!(
            changes,
            [
                FieldChange {
                    path: "spec.ports".into(),
                    before: Some("[1 items]".into()),
                    after: Some("[2 items]".into())
                },
                FieldChange {
                    path: "spec.type".into(),
                    before: Some("NodePort".into()),
                    after: None
                },
            ]
        );
    }
}
