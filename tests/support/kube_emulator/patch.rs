//! The patch formats PATCH takes besides server-side apply: JSON merge patch (RFC 7386),
//! strategic merge patch (lists of named things merged by key, `$patch` directives), and JSON
//! patch (RFC 6902, which `kubectl rollout undo` sends).

use serde_json::Value;

pub fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(patch) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Default::default());
    }
    let map = target.as_object_mut().expect("made a map above");
    for (field, value) in patch {
        if value.is_null() {
            map.shift_remove(field);
        } else {
            merge_patch(map.entry(field.clone()).or_insert(Value::Null), value);
        }
    }
}

/// The merge key of a list in a strategic merge patch, as the built-in types declare them.
fn merge_key(items: &[Value]) -> Option<&'static str> {
    ["containerPort", "port", "mountPath", "name", "type"]
        .into_iter()
        .find(|key| !items.is_empty() && items.iter().all(|item| item.get(*key).is_some()))
}

pub fn strategic_merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(patch) = patch else {
        *target = patch.clone();
        return;
    };
    if patch.get("$patch").and_then(Value::as_str) == Some("replace") {
        let mut replacement = Value::Object(patch.clone());
        strip_directives(&mut replacement);
        *target = replacement;
        return;
    }
    if !target.is_object() {
        *target = Value::Object(Default::default());
    }
    let map = target.as_object_mut().expect("made a map above");
    for (field, value) in patch {
        if field.starts_with('$') {
            continue;
        }
        match value {
            Value::Null => {
                map.shift_remove(field);
            }
            Value::Array(items) => match (map.get_mut(field), merge_key(items)) {
                (Some(Value::Array(existing)), Some(key)) => {
                    for item in items {
                        if item.get("$patch").and_then(Value::as_str) == Some("delete") {
                            existing.retain(|e| e[key] != item[key]);
                        } else if let Some(found) =
                            existing.iter_mut().find(|e| e[key] == item[key])
                        {
                            strategic_merge_patch(found, item);
                        } else {
                            let mut added = item.clone();
                            strip_directives(&mut added);
                            existing.push(added);
                        }
                    }
                }
                _ => {
                    let mut replacement = value.clone();
                    strip_directives(&mut replacement);
                    map.insert(field.clone(), replacement);
                }
            },
            _ => strategic_merge_patch(map.entry(field.clone()).or_insert(Value::Null), value),
        }
    }
}

fn strip_directives(value: &mut Value) {
    match value {
        Value::Object(map) => {
            map.retain(|field, _| !field.starts_with('$'));
            map.values_mut().for_each(strip_directives);
        }
        Value::Array(items) => items.iter_mut().for_each(strip_directives),
        _ => {}
    }
}

/// Applies a JSON patch; Err names the failing operation as the server does.
pub fn json_patch(target: &mut Value, operations: &Value) -> Result<(), String> {
    let operations = operations
        .as_array()
        .ok_or("the JSON patch is not a list of operations")?;
    for operation in operations {
        let op = operation["op"].as_str().unwrap_or_default();
        let path = operation["path"].as_str().unwrap_or_default();
        match op {
            "add" | "replace" => put(target, path, operation["value"].clone(), op == "add")?,
            "remove" => remove(target, path)?,
            "test" => {
                if target.pointer(path) != Some(&operation["value"]) {
                    return Err(format!("testing value {path} failed"));
                }
            }
            other => return Err(format!("Unexpected kind: {other}")),
        }
    }
    Ok(())
}

fn split(path: &str) -> Result<(String, String), String> {
    let (parent, last) = path
        .rsplit_once('/')
        .ok_or_else(|| format!("invalid path {path:?}"))?;
    Ok((
        parent.to_string(),
        last.replace("~1", "/").replace("~0", "~"),
    ))
}

fn put(target: &mut Value, path: &str, value: Value, add: bool) -> Result<(), String> {
    if path.is_empty() {
        *target = value;
        return Ok(());
    }
    let (parent, last) = split(path)?;
    let container = target
        .pointer_mut(&parent)
        .ok_or_else(|| format!("replace operation does not apply: doc is missing path: {path}"))?;
    match container {
        Value::Object(map) => {
            if !add && !map.contains_key(&last) {
                return Err(format!(
                    "replace operation does not apply: doc is missing key: {path}"
                ));
            }
            map.insert(last, value);
        }
        Value::Array(items) => {
            if last == "-" {
                items.push(value);
            } else {
                let index: usize = last
                    .parse()
                    .map_err(|_| format!("invalid index {last:?}"))?;
                if add && index <= items.len() {
                    items.insert(index, value);
                } else if index < items.len() {
                    items[index] = value;
                } else {
                    return Err(format!("index out of bounds: {path}"));
                }
            }
        }
        _ => return Err(format!("doc is missing path: {path}")),
    }
    Ok(())
}

fn remove(target: &mut Value, path: &str) -> Result<(), String> {
    let (parent, last) = split(path)?;
    let missing = || format!("remove operation does not apply: doc is missing path: {path}");
    match target.pointer_mut(&parent).ok_or_else(missing)? {
        Value::Object(map) => map.shift_remove(&last).map(|_| ()).ok_or_else(missing),
        Value::Array(items) => {
            let index: usize = last.parse().map_err(|_| missing())?;
            if index < items.len() {
                items.remove(index);
                Ok(())
            } else {
                Err(missing())
            }
        }
        _ => Err(missing()),
    }
}
