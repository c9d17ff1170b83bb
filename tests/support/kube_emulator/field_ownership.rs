//! Server-side apply, simplified but honest: every object records in `metadata.managedFields`
//! which manager set which leaf fields (as FieldsV1); applying merges the applied
//! configuration in, a field another manager owns with a different value is a conflict unless
//! forced, and fields a manager stops applying go away when no one else owns them. Plain writes
//! (PUT, merge or JSON patches) give the fields they change to their manager as an `Update`.

use std::collections::BTreeSet;

use serde_json::{Map, Value, json};

/// One step of a field path: a map field, or the item of a keyed list with this key value
/// (kept as its JSON text so paths order and compare).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Segment {
    Field(String),
    Item(String, String),
}

pub type FieldPath = Vec<Segment>;

/// A manager's entry of `metadata.managedFields`.
#[derive(Clone, Debug)]
struct ManagerEntry {
    manager: String,
    operation: String,
    api_version: String,
    time: String,
    subresource: Option<String>,
    fields: BTreeSet<FieldPath>,
}

impl ManagerEntry {
    /// How the API server names the manager in a conflict.
    fn display(&self) -> String {
        if self.operation == "Update" {
            format!("{:?} using {}", self.manager, self.api_version)
        } else {
            format!("{:?}", self.manager)
        }
    }
}

/// The field that identifies an item of a list of objects, when the list is merged by key
/// (containers and env by name, ports by number, mounts by path); other lists are atomic.
fn list_key(items: &[Value]) -> Option<&'static str> {
    if items.is_empty() || !items.iter().all(Value::is_object) {
        return None;
    }
    ["containerPort", "port", "mountPath", "name"]
        .into_iter()
        .find(|key| items.iter().all(|item| item.get(*key).is_some()))
}

/// The leaf fields of an applied configuration or object (status and server-set metadata are
/// nobody's to apply).
pub fn leaves(object: &Value) -> BTreeSet<FieldPath> {
    let mut out = BTreeSet::new();
    let Some(map) = object.as_object() else {
        return out;
    };
    for (field, value) in map {
        match field.as_str() {
            "apiVersion" | "kind" | "status" => {}
            "metadata" => {
                for tracked in ["labels", "annotations"] {
                    if let Some(inner) = value.get(tracked) {
                        collect(
                            inner,
                            vec![
                                Segment::Field("metadata".into()),
                                Segment::Field(tracked.into()),
                            ],
                            &mut out,
                        );
                    }
                }
            }
            _ => collect(value, vec![Segment::Field(field.clone())], &mut out),
        }
    }
    out
}

fn collect(value: &Value, prefix: FieldPath, out: &mut BTreeSet<FieldPath>) {
    match value {
        Value::Object(map) if !map.is_empty() => {
            for (field, inner) in map {
                let mut path = prefix.clone();
                path.push(Segment::Field(field.clone()));
                collect(inner, path, out);
            }
        }
        Value::Array(items) => match list_key(items) {
            Some(key) => {
                for item in items {
                    let mut path = prefix.clone();
                    path.push(Segment::Item(key.into(), item[key].to_string()));
                    collect(item, path, out);
                }
            }
            None => {
                out.insert(prefix);
            }
        },
        _ => {
            out.insert(prefix);
        }
    }
}

fn get_at<'a>(value: &'a Value, path: &[Segment]) -> Option<&'a Value> {
    let mut current = value;
    for segment in path {
        current = match segment {
            Segment::Field(field) => current.get(field)?,
            Segment::Item(key, wanted) => current
                .as_array()?
                .iter()
                .find(|item| has_key(item, key, wanted))?,
        };
    }
    Some(current)
}

fn get_at_mut<'a>(value: &'a mut Value, path: &[Segment]) -> Option<&'a mut Value> {
    let mut current = value;
    for segment in path {
        current = match segment {
            Segment::Field(field) => current.get_mut(field)?,
            Segment::Item(key, wanted) => current
                .as_array_mut()?
                .iter_mut()
                .find(|item| has_key(item, key, wanted))?,
        };
    }
    Some(current)
}

fn remove_at(value: &mut Value, path: &[Segment]) {
    let Some((last, parent)) = path.split_last() else {
        return;
    };
    let Some(parent) = get_at_mut(value, parent) else {
        return;
    };
    match last {
        Segment::Field(field) => {
            if let Some(map) = parent.as_object_mut() {
                map.shift_remove(field);
            }
        }
        Segment::Item(key, wanted) => {
            if let Some(items) = parent.as_array_mut() {
                items.retain(|item| !has_key(item, key, wanted));
            }
        }
    }
}

/// Whether a list item's key field holds the key value (kept as JSON text).
fn has_key(item: &Value, key: &str, wanted: &str) -> bool {
    serde_json::from_str::<Value>(wanted).is_ok_and(|value| item[key] == value)
}

/// `.spec.template.spec.containers[name="web"].image`, as conflicts name fields.
pub fn path_text(path: &[Segment]) -> String {
    path.iter()
        .map(|segment| match segment {
            Segment::Field(field) => format!(".{field}"),
            Segment::Item(key, value) => format!("[{key}={value}]"),
        })
        .collect()
}

/// Merges an applied configuration into an object: maps field by field, keyed lists item by
/// item, anything else replaced.
fn merge(live: &mut Value, config: &Value) {
    match (live, config) {
        (Value::Object(live), Value::Object(config)) => {
            for (field, value) in config {
                match live.get_mut(field) {
                    Some(existing) => merge(existing, value),
                    None => {
                        live.insert(field.clone(), value.clone());
                    }
                }
            }
        }
        (Value::Array(live), Value::Array(config))
            if list_key(config).is_some() && list_key(live).is_some() =>
        {
            let key = list_key(config).unwrap_or("name");
            for item in config {
                match live.iter_mut().find(|existing| existing[key] == item[key]) {
                    Some(existing) => merge(existing, item),
                    None => live.push(item.clone()),
                }
            }
        }
        (live, config) => *live = config.clone(),
    }
}

fn decode_managers(object: &Value) -> Vec<ManagerEntry> {
    let entries = object["metadata"]["managedFields"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    entries
        .iter()
        .map(|entry| {
            let mut fields = BTreeSet::new();
            decode_fields(&entry["fieldsV1"], Vec::new(), &mut fields);
            ManagerEntry {
                manager: entry["manager"].as_str().unwrap_or_default().into(),
                operation: entry["operation"].as_str().unwrap_or("Update").into(),
                api_version: entry["apiVersion"].as_str().unwrap_or_default().into(),
                time: entry["time"].as_str().unwrap_or_default().into(),
                subresource: entry["subresource"].as_str().map(str::to_owned),
                fields,
            }
        })
        .collect()
}

fn decode_fields(set: &Value, prefix: FieldPath, out: &mut BTreeSet<FieldPath>) {
    let Some(map) = set.as_object() else {
        return;
    };
    let children: Vec<_> = map.iter().filter(|(k, _)| k.as_str() != ".").collect();
    if children.is_empty() {
        if !prefix.is_empty() {
            out.insert(prefix);
        }
        return;
    }
    for (text, inner) in children {
        let segment = if let Some(field) = text.strip_prefix("f:") {
            Segment::Field(field.into())
        } else if let Some(key) = text.strip_prefix("k:") {
            match serde_json::from_str::<Map<String, Value>>(key)
                .ok()
                .and_then(|m| m.into_iter().next())
            {
                Some((name, value)) => Segment::Item(name, value.to_string()),
                None => continue,
            }
        } else {
            continue;
        };
        let mut path = prefix.clone();
        path.push(segment);
        decode_fields(inner, path, out);
    }
}

fn encode_fields(fields: &BTreeSet<FieldPath>) -> Value {
    let mut root = json!({});
    for path in fields {
        let mut cursor = &mut root;
        for segment in path {
            let text = match segment {
                Segment::Field(field) => format!("f:{field}"),
                Segment::Item(key, value) => format!("k:{{\"{key}\":{value}}}"),
            };
            let is_item = matches!(segment, Segment::Item(..));
            let entry = cursor
                .as_object_mut()
                .expect("a field set is a map")
                .entry(text)
                .or_insert_with(|| json!({}));
            if is_item {
                entry["."] = json!({});
            }
            cursor = entry;
        }
    }
    root
}

fn encode_managers(object: &mut Value, managers: &[ManagerEntry]) {
    let entries: Vec<Value> = managers
        .iter()
        .filter(|m| !m.fields.is_empty())
        .map(|m| {
            let mut entry = json!({
                "manager": m.manager, "operation": m.operation, "apiVersion": m.api_version,
                "time": m.time, "fieldsType": "FieldsV1", "fieldsV1": encode_fields(&m.fields),
            });
            if let Some(subresource) = &m.subresource {
                entry["subresource"] = json!(subresource);
            }
            entry
        })
        .collect();
    object["metadata"]["managedFields"] = json!(entries);
}

/// Server-side apply of `config` by `manager` onto `live` (None: the object is new). Err holds
/// the conflicts, each as (manager as the server prints it, field path).
pub fn apply(
    live: Option<&Value>,
    config: &Value,
    manager: &str,
    force: bool,
) -> Result<Value, Vec<(String, String)>> {
    let mut managers = live.map(decode_managers).unwrap_or_default();
    let applied = leaves(config);
    let base = live.cloned().unwrap_or_else(|| json!({}));
    let is_self = |m: &ManagerEntry| m.manager == manager && m.operation == "Apply";
    let mut conflicts = Vec::new();
    for other in managers.iter().filter(|m| !is_self(m)) {
        for path in &applied {
            if other.fields.contains(path) && get_at(&base, path) != get_at(config, path) {
                conflicts.push((other.display(), path_text(path)));
            }
        }
    }
    if !conflicts.is_empty() && !force {
        return Err(conflicts);
    }
    // Forcing takes the conflicting fields away from their owners; equal values stay shared.
    for other in managers.iter_mut().filter(|m| !is_self(m)) {
        other.fields.retain(|path| {
            !(applied.contains(path) && get_at(&base, path) != get_at(config, path))
        });
    }
    let previous = managers
        .iter()
        .find(|m| is_self(m))
        .map(|m| m.fields.clone())
        .unwrap_or_default();
    managers.retain(|m| !is_self(m));
    managers.push(ManagerEntry {
        manager: manager.into(),
        operation: "Apply".into(),
        api_version: config["apiVersion"].as_str().unwrap_or_default().into(),
        time: super::world::timestamp(),
        subresource: None,
        fields: applied.clone(),
    });
    let mut result = base;
    let mut config = config.clone();
    if let Some(map) = config.as_object_mut() {
        map.shift_remove("status");
    }
    if let Some(metadata) = config.get_mut("metadata").and_then(Value::as_object_mut) {
        metadata.shift_remove("managedFields");
    }
    merge(&mut result, &config);
    let owned = |path: &FieldPath| {
        managers
            .iter()
            .any(|m| m.fields.iter().any(|f| f.starts_with(path)))
    };
    for dropped in previous.difference(&applied) {
        if owned(dropped) {
            continue;
        }
        remove_at(&mut result, dropped);
        // Remove what held only that field: a keyed item or a map left empty.
        for length in (1..dropped.len()).rev() {
            let prefix = &dropped[..length];
            if owned(&prefix.to_vec()) {
                break;
            }
            let emptied =
                get_at(&result, prefix).is_some_and(|v| v.as_object().is_some_and(Map::is_empty));
            if matches!(prefix[length - 1], Segment::Item(..)) || emptied {
                remove_at(&mut result, prefix);
            } else {
                break;
            }
        }
    }
    encode_managers(&mut result, &managers);
    Ok(result)
}

/// Records a plain write: the fields `new` changed from `old` become `manager`'s.
pub fn record_update(
    old: Option<&Value>,
    new: &mut Value,
    manager: &str,
    subresource: Option<&str>,
) {
    let mut managers = old.map(decode_managers).unwrap_or_default();
    let changed: BTreeSet<FieldPath> = leaves(new)
        .into_iter()
        .filter(|path| old.and_then(|o| get_at(o, path)) != get_at(new, path))
        .collect();
    for entry in managers.iter_mut() {
        entry
            .fields
            .retain(|path| !changed.contains(path) && get_at(new, path).is_some());
    }
    if !changed.is_empty() {
        let api_version = new["apiVersion"].as_str().unwrap_or_default().to_string();
        let index = managers.iter().position(|m| {
            m.manager == manager
                && m.operation == "Update"
                && m.subresource.as_deref() == subresource
        });
        let entry = match index {
            Some(index) => &mut managers[index],
            None => {
                managers.push(ManagerEntry {
                    manager: manager.into(),
                    operation: "Update".into(),
                    api_version: api_version.clone(),
                    time: String::new(),
                    subresource: subresource.map(str::to_owned),
                    fields: BTreeSet::new(),
                });
                managers.last_mut().expect("just pushed")
            }
        };
        entry.time = super::world::timestamp();
        entry.api_version = api_version;
        entry.fields.extend(changed);
    }
    encode_managers(new, &managers);
}
