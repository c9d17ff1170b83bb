//! When two task definitions are the same. ECS fills in defaults on registration (`cpu: 0`,
//! `essential: true`, empty lists, `protocol: tcp`, `hostPort` under awsvpc), so the live
//! revision never equals the file byte for byte; both are brought to one normal form first,
//! so a rerun with nothing changed registers nothing.

use serde_json::{Map, Value};

use super::document::TaskDefinitionDocument;

/// The document without ECS's defaults, empty values, or order where order means nothing.
pub(crate) fn normal_form(document: &TaskDefinitionDocument) -> Value {
    let mut body = document.body.clone();
    let awsvpc = body.get("networkMode").and_then(Value::as_str) == Some("awsvpc");
    for field in ["cpu", "memory"] {
        // The task-level sizes are strings in ECS's answers; a file may write numbers.
        if let Some(Value::Number(number)) = body.get(field) {
            let text = number.to_string();
            body.insert(field.to_owned(), Value::String(text));
        }
    }
    if let Some(Value::Array(compatibilities)) = body.get_mut("requiresCompatibilities") {
        sort_by_text(compatibilities);
    }
    if let Some(Value::Array(containers)) = body.get_mut("containerDefinitions") {
        for container in containers.iter_mut().filter_map(Value::as_object_mut) {
            normalise_container(container, awsvpc);
        }
    }
    drop_empty(Value::Object(body))
}

/// Whether the two documents define the same task (tags aside).
pub(crate) fn same_task_definition(a: &TaskDefinitionDocument, b: &TaskDefinitionDocument) -> bool {
    normal_form(a) == normal_form(b)
}

fn normalise_container(container: &mut Map<String, Value>, awsvpc: bool) {
    if container.get("cpu").and_then(Value::as_i64) == Some(0) {
        container.remove("cpu");
    }
    if container.get("essential") == Some(&Value::Bool(true)) {
        container.remove("essential");
    }
    if let Some(Value::Array(ports)) = container.get_mut("portMappings") {
        for port in ports.iter_mut().filter_map(Value::as_object_mut) {
            if port.get("protocol").and_then(Value::as_str) == Some("tcp") {
                port.remove("protocol");
            }
            let host_port = port.get("hostPort").and_then(Value::as_i64);
            let container_port = port.get("containerPort").and_then(Value::as_i64);
            if (awsvpc && host_port == container_port) || host_port == Some(0) {
                port.remove("hostPort");
            }
        }
    }
    // ECS keeps these lists in the order given, but the order means nothing to a container.
    for named_list in ["environment", "secrets", "ulimits", "systemControls"] {
        if let Some(Value::Array(entries)) = container.get_mut(named_list) {
            entries.sort_by_key(entry_name);
        }
    }
}

fn entry_name(entry: &Value) -> String {
    entry
        .get("name")
        .or_else(|| entry.get("namespace"))
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

fn sort_by_text(values: &mut [Value]) {
    values.sort_by_key(|value| value.to_string());
}

/// Removes nulls, empty lists and empty objects at every depth: ECS returns `[]` and `{}`
/// where the file said nothing.
fn drop_empty(value: Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(key, value)| (key, drop_empty(value)))
                .filter(|(_, value)| !is_empty(value))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.into_iter().map(drop_empty).collect()),
        other => other,
    }
}

fn is_empty(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::Array(items) => items.is_empty(),
        Value::Object(map) => map.is_empty(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::deploy::ecs::task_definition::fixtures;

    fn document(value: &Value) -> TaskDefinitionDocument {
        TaskDefinitionDocument::from_json(value, "test").unwrap()
    }

    #[test]
    fn the_live_revision_with_ecs_defaults_equals_the_file_it_was_registered_from() {
        let file = fixtures::full_register_input();
        let live = fixtures::described(&file, 7);
        assert!(same_task_definition(&document(&file), &document(&live)));
    }

    #[test]
    fn a_bridge_task_definition_with_a_dynamic_host_port_equals_its_live_revision() {
        let file = json!({
            "family": "worker", "cpu": 256, "memory": 512,
            "requiresCompatibilities": ["EC2", "EXTERNAL"],
            "containerDefinitions": [{"name": "w", "image": "w", "memory": 128,
                "portMappings": [{"containerPort": 80, "hostPort": 0}],
                "environment": [{"name": "B", "value": "2"}, {"name": "A", "value": "1"}]}]
        });
        let mut live_input = file.clone();
        live_input["cpu"] = json!("256");
        live_input["memory"] = json!("512");
        live_input["requiresCompatibilities"] = json!(["EXTERNAL", "EC2"]);
        live_input["containerDefinitions"][0]["environment"] =
            json!([{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]);
        let live = fixtures::described(&live_input, 3);
        assert!(same_task_definition(&document(&file), &document(&live)));
    }

    #[test]
    fn any_real_change_makes_them_differ() {
        let file = fixtures::full_register_input();
        let live = document(&fixtures::described(&file, 7));
        for (pointer, value) in [
            ("/containerDefinitions/0/image", json!("web:other")),
            ("/containerDefinitions/0/essential", json!(false)),
            ("/containerDefinitions/0/cpu", json!(128)),
            (
                "/containerDefinitions/0/portMappings",
                json!([{"containerPort": 8080, "protocol": "udp"}]),
            ),
            (
                "/containerDefinitions/0/portMappings",
                json!([{"containerPort": 8080, "hostPort": 9090}]),
            ),
            (
                "/containerDefinitions/0/environment/0/value",
                json!("debug"),
            ),
            (
                "/containerDefinitions/0/aNewerField/the SDK",
                json!("knows it now"),
            ),
            ("/memory", json!("2048")),
            (
                "/taskRoleArn",
                json!("arn:aws:iam::123456789012:role/other"),
            ),
        ] {
            let mut changed = file.clone();
            let (parent, key) = pointer.rsplit_once('/').unwrap();
            changed
                .pointer_mut(parent)
                .and_then(Value::as_object_mut)
                .unwrap_or_else(|| panic!("{pointer}"))
                .insert(key.to_owned(), value);
            assert!(
                !same_task_definition(&document(&changed), &live),
                "a change of {pointer} went unseen"
            );
        }
    }

    #[test]
    fn tags_are_never_part_of_the_equality() {
        let mut file = fixtures::full_register_input();
        file["tags"] = json!([{"key": "shipit:run-id", "value": "another"}]);
        let live = fixtures::described(&fixtures::full_register_input(), 7);
        assert!(same_task_definition(&document(&file), &document(&live)));
    }
}
