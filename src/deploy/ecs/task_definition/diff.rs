//! What changes between the live task definition and the one a deploy registers, as lines for
//! `shipit plan`: `containerDefinitions[web].image: …@sha256:aaa → …@sha256:bbb`. Lists of
//! named things (containers, volumes, environment, secrets) are matched by name, so a new
//! variable is one line, not a rewritten list. Environment values may be secrets written in
//! the clear: only their names are shown, never a value.

use serde_json::{Map, Value};

/// Lists whose entries are told apart by a name.
const NAMED_LISTS: &[&str] = &[
    "containerDefinitions",
    "volumes",
    "environment",
    "secrets",
    "ulimits",
    "systemControls",
    "properties",
];
/// Lists whose values must not appear in the output.
const HIDDEN_VALUE_LISTS: &[&str] = &["environment"];

/// The changes from `live` to `desired` (both in normal form), one line each, in document
/// order.
pub(crate) fn task_definition_diff(live: &Value, desired: &Value) -> Vec<String> {
    let mut lines = Vec::new();
    diff_value("", None, live, desired, &mut lines);
    lines
}

fn diff_value(path: &str, key: Option<&str>, live: &Value, desired: &Value, out: &mut Vec<String>) {
    if live == desired {
        return;
    }
    match (live, desired) {
        (Value::Object(live), Value::Object(desired)) => diff_object(path, live, desired, out),
        (Value::Array(live), Value::Array(desired))
            if key.is_some_and(|key| NAMED_LISTS.contains(&key))
                && all_named(live)
                && all_named(desired) =>
        {
            let hidden = key.is_some_and(|key| HIDDEN_VALUE_LISTS.contains(&key));
            diff_named_list(path, hidden, live, desired, out);
        }
        _ if key.is_some_and(|key| HIDDEN_VALUE_LISTS.contains(&key)) => {
            out.push(format!("{path}: changed"));
        }
        _ => out.push(format!("{path}: {} → {}", shown(live), shown(desired))),
    }
}

fn diff_object(
    path: &str,
    live: &Map<String, Value>,
    desired: &Map<String, Value>,
    out: &mut Vec<String>,
) {
    for (key, desired_value) in desired {
        let child = join(path, key);
        match live.get(key) {
            Some(live_value) => diff_value(&child, Some(key), live_value, desired_value, out),
            None => out.push(format!(
                "{child}: added {}",
                shown_under(key, desired_value)
            )),
        }
    }
    for (key, live_value) in live {
        if !desired.contains_key(key) {
            out.push(format!(
                "{}: removed (was {})",
                join(path, key),
                shown_under(key, live_value)
            ));
        }
    }
}

fn diff_named_list(
    path: &str,
    hidden: bool,
    live: &[Value],
    desired: &[Value],
    out: &mut Vec<String>,
) {
    for entry in desired {
        let name = name_of(entry);
        let child = format!("{path}[{name}]");
        match live.iter().find(|live| name_of(live) == name) {
            Some(_) if hidden => {
                if live.iter().find(|live| name_of(live) == name) != Some(entry) {
                    out.push(format!("{child}: changed"));
                }
            }
            Some(live_entry) => diff_value(&child, None, live_entry, entry, out),
            None if hidden => out.push(format!("{child}: added")),
            None => out.push(format!("{child}: added {}", shown(entry))),
        }
    }
    for entry in live {
        let name = name_of(entry);
        if !desired.iter().any(|desired| name_of(desired) == name) {
            out.push(format!("{path}[{name}]: removed"));
        }
    }
}

fn all_named(entries: &[Value]) -> bool {
    let mut names: Vec<&str> = entries
        .iter()
        .filter_map(|e| e.get("name")?.as_str())
        .collect();
    let count = names.len();
    names.sort_unstable();
    names.dedup();
    count == entries.len() && names.len() == count
}

fn name_of(entry: &Value) -> &str {
    entry
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or_default()
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

/// A value under `key`: a hidden list shows its names only.
fn shown_under(key: &str, value: &Value) -> String {
    if HIDDEN_VALUE_LISTS.contains(&key) {
        names_only(value.clone()).to_string()
    } else {
        shown(value)
    }
}

/// A value as the plan shows it: strings bare, anything else as compact JSON, with every
/// environment value blanked out wherever it sits.
fn shown(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        other => hide_environment_values(other.clone()).to_string(),
    }
}

fn hide_environment_values(value: Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(key, value)| {
                    if HIDDEN_VALUE_LISTS.contains(&key.as_str()) {
                        (key, names_only(value))
                    } else {
                        (key, hide_environment_values(value))
                    }
                })
                .collect(),
        ),
        Value::Array(items) => {
            Value::Array(items.into_iter().map(hide_environment_values).collect())
        }
        other => other,
    }
}

fn names_only(list: Value) -> Value {
    match list {
        Value::Array(entries) => Value::Array(
            entries
                .iter()
                .map(|entry| Value::String(name_of(entry).to_owned()))
                .collect(),
        ),
        _ => Value::String("…".to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::deploy::ecs::task_definition::document::TaskDefinitionDocument;
    use crate::deploy::ecs::task_definition::fixtures;
    use crate::deploy::ecs::task_definition::normal_form::normal_form;

    fn normal(value: &Value) -> Value {
        normal_form(&TaskDefinitionDocument::from_json(value, "t").unwrap())
    }

    #[test]
    fn a_new_image_is_one_line_naming_the_container() {
        let live_input = fixtures::full_register_input();
        let mut desired = live_input.clone();
        desired["containerDefinitions"][0]["image"] = json!(fixtures::WEB_DIGEST);
        let lines = task_definition_diff(
            &normal(&fixtures::described(&live_input, 7)),
            &normal(&desired),
        );
        assert_eq!(
            lines,
            [format!(
                "containerDefinitions[web].image: web:latest → {}",
                fixtures::WEB_DIGEST
            )]
        );
    }

    #[test]
    fn environment_changes_name_the_variable_and_never_show_a_value() {
        let live = fixtures::full_register_input();
        let mut desired = live.clone();
        desired["containerDefinitions"][0]["environment"] = json!([
            {"name": "LOG_LEVEL", "value": "debug"},
            {"name": "NEW_TOKEN", "value": "s3cr3t-new"}
        ]);
        let lines = task_definition_diff(&normal(&live), &normal(&desired));
        assert_eq!(
            lines,
            [
                "containerDefinitions[web].environment[LOG_LEVEL]: changed",
                "containerDefinitions[web].environment[NEW_TOKEN]: added",
                "containerDefinitions[web].environment[DATABASE_PASSWORD]: removed",
            ]
        );
        let all = lines.join("\n");
        for value in ["debug", "info", "s3cr3t-new", "hunter2"] {
            assert!(!all.contains(value), "{value} shown");
        }
    }

    #[test]
    fn an_added_container_or_a_rewritten_list_hides_environment_values_too() {
        let live = fixtures::full_register_input();
        let mut desired = live.clone();
        desired["containerDefinitions"].as_array_mut().unwrap().push(json!({
            "name": "sidecar", "image": "s", "environment": [{"name": "SIDE_SECRET", "value": "p4ss"}]
        }));
        // Entries without names cannot be matched: the list is shown whole.
        desired["containerDefinitions"][0]["environment"] = json!([{"value": "orphan-value"}]);
        desired["containerDefinitions"][1]["environment"] =
            json!([{"name": "ENVOY_TOKEN", "value": "t0ken"}]);
        let lines = task_definition_diff(&normal(&live), &normal(&desired));
        let all = lines.join("\n");
        assert!(
            all.contains("containerDefinitions[sidecar]: added"),
            "{all}"
        );
        assert!(all.contains("SIDE_SECRET"), "{all}");
        assert!(
            all.contains("containerDefinitions[envoy].environment: added [\"ENVOY_TOKEN\"]"),
            "{all}"
        );
        for value in ["p4ss", "orphan-value", "hunter2", "info", "t0ken"] {
            assert!(!all.contains(value), "{value} shown in:\n{all}");
        }
    }

    #[test]
    fn task_level_and_nested_changes_have_dotted_paths() {
        let live = fixtures::full_register_input();
        let mut desired = live.clone();
        desired["memory"] = json!("2048");
        desired["containerDefinitions"][0]["secrets"][0]["valueFrom"] =
            json!("arn:aws:ssm:eu-west-1:123456789012:parameter/web/other");
        desired["volumes"][0]["efsVolumeConfiguration"]["fileSystemId"] = json!("fs-9");
        desired
            .as_object_mut()
            .unwrap()
            .remove("proxyConfiguration");
        let lines = task_definition_diff(&normal(&live), &normal(&desired));
        assert_eq!(
            lines,
            [
                "memory: 1024 → 2048",
                "containerDefinitions[web].secrets[API_KEY].valueFrom: arn:aws:ssm:eu-west-1:123456789012:parameter/web/api-key → arn:aws:ssm:eu-west-1:123456789012:parameter/web/other",
                "volumes[shared].efsVolumeConfiguration.fileSystemId: fs-0123 → fs-9",
                "proxyConfiguration: removed (was {\"type\":\"APPMESH\",\"containerName\":\"envoy\",\"properties\":[{\"name\":\"IgnoredUID\",\"value\":\"1337\"}]})",
            ]
        );
    }

    #[test]
    fn the_same_definition_has_no_lines() {
        let file = fixtures::full_register_input();
        assert!(
            task_definition_diff(&normal(&fixtures::described(&file, 7)), &normal(&file))
                .is_empty()
        );
    }
}
