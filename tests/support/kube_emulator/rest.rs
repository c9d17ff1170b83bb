//! The resource API: a request's path mapped to a resource type, namespace, name and
//! subresource, and each verb (get, list, create, update, patch, delete) carried out on the
//! world the way the API server does it. Watches are handed to `watch`.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::{Value, json};

use super::field_ownership;
use super::patch;
use super::resources::{self, ResourceType};
use super::selector::{FieldSelector, LabelSelector};
use super::status::ApiError;
use super::world::{USER, World};

/// A request as the API layer sees it.
pub struct ApiRequest {
    pub method: String,
    pub path: String,
    pub query: HashMap<String, String>,
    pub content_type: String,
    pub user_agent: String,
    pub body: Vec<u8>,
}

/// A watch to stream: which objects, from which resourceVersion, for how long.
pub struct WatchRequest {
    pub plural: &'static str,
    pub namespace: Option<String>,
    pub labels: LabelSelector,
    pub fields: FieldSelector,
    /// None: start with every current object as ADDED.
    pub since: Option<u64>,
    pub timeout: Duration,
    pub bookmarks: bool,
}

pub enum Reply {
    Json(u16, Value),
    Text(u16, String),
    Watch(WatchRequest),
}

impl From<ApiError> for Reply {
    fn from(error: ApiError) -> Reply {
        Reply::Json(error.code, error.body)
    }
}

/// The resource a path names.
struct Target {
    resource: &'static ResourceType,
    namespace: String,
    name: String,
    subresource: String,
}

fn parse_path(path: &str) -> Option<Target> {
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, version, rest) = match parts.as_slice() {
        ["api", version, rest @ ..] => ("", *version, rest),
        ["apis", group, version, rest @ ..] => (*group, *version, rest),
        _ => return None,
    };
    let (namespace, rest) = match rest {
        ["namespaces", namespace, rest @ ..] if !rest.is_empty() => (namespace.to_string(), rest),
        _ => (String::new(), rest),
    };
    let (plural, name, subresource) = match rest {
        [plural] => (*plural, "", ""),
        [plural, name] => (*plural, *name, ""),
        [plural, name, subresource] => (*plural, *name, *subresource),
        _ => return None,
    };
    let resource = resources::by_plural(group, version, plural)?;
    if !subresource.is_empty() && !resource.subresources.contains(&subresource) {
        return None;
    }
    Some(Target {
        resource,
        namespace,
        name: name.to_string(),
        subresource: subresource.to_string(),
    })
}

fn verb(method: &str, target: &Target, query: &HashMap<String, String>) -> &'static str {
    match method {
        "GET" if target.name.is_empty() && is_watch(query) => "watch",
        "GET" if target.name.is_empty() => "list",
        "GET" => "get",
        "POST" => "create",
        "PUT" => "update",
        "PATCH" => "patch",
        "DELETE" => "delete",
        _ => "unknown",
    }
}

fn is_watch(query: &HashMap<String, String>) -> bool {
    matches!(query.get("watch").map(String::as_str), Some("1" | "true"))
}

/// `/api/v1/namespaces/NS/services/NAME[:PORT]/proxy[/PATH]`: namespace, service, port.
fn service_proxy_path(path: &str) -> Option<(&str, &str, &str)> {
    let rest = path.strip_prefix("/api/v1/namespaces/")?;
    let (namespace, rest) = rest.split_once("/services/")?;
    let (service, rest) = rest.split_once("/proxy")?;
    if namespace.contains('/')
        || service.contains('/')
        || !(rest.is_empty() || rest.starts_with('/'))
    {
        return None;
    }
    let (name, port) = service.split_once(':').unwrap_or((service, ""));
    Some((namespace, name, port))
}

/// The service proxy as the API server runs it: 404 for no such Service or port, 503 "no
/// endpoints available" while no ready pod backs it, else what the test scripted (the
/// backend's answer passed through).
fn service_proxy(world: &World, method: &str, namespace: &str, name: &str, port: &str) -> Reply {
    if world
        .knobs
        .forbidden
        .contains(&("get".to_string(), "services/proxy".to_string()))
    {
        return ApiError::forbidden(USER, "get", "services/proxy", "", namespace, name).into();
    }
    if method != "GET" {
        return ApiError::method_not_allowed().into();
    }
    let Some(service) = world.get("services", namespace, name) else {
        return ApiError::not_found("services", "", name).into();
    };
    let ports = service["spec"]["ports"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let port_known = port.is_empty()
        || ports.iter().any(|p| {
            p["port"].as_u64().map(|n| n.to_string()).as_deref() == Some(port)
                || p["name"].as_str() == Some(port)
        });
    if !port_known {
        return ApiError::new(
            503,
            "ServiceUnavailable",
            format!("no service port \"{port}\" found for service \"{name}\""),
            json!({}),
        )
        .into();
    }
    let selector = LabelSelector::from_spec(&json!({"matchLabels": service["spec"]["selector"]}));
    let ready = !service["spec"]["selector"]
        .as_object()
        .is_none_or(|s| s.is_empty())
        && world
            .list(
                "pods",
                Some(namespace),
                &selector,
                &FieldSelector::default(),
            )
            .iter()
            .any(super::replica_set_controller::is_ready);
    if !ready {
        return ApiError::new(
            503,
            "ServiceUnavailable",
            format!("no endpoints available for service \"{name}\""),
            json!({}),
        )
        .into();
    }
    let (status, body) = world
        .knobs
        .proxy_answers
        .get(&(namespace.to_string(), name.to_string()))
        .cloned()
        .unwrap_or((200, "ok\n".to_string()));
    Reply::Text(status, body)
}

pub fn handle(world: &mut World, request: &ApiRequest) -> Reply {
    if let Some((namespace, name, port)) = service_proxy_path(&request.path) {
        return service_proxy(world, &request.method, namespace, name, port);
    }
    let Some(target) = parse_path(&request.path) else {
        return ApiError::new(
            404,
            "NotFound",
            "the server could not find the requested resource".into(),
            json!({}),
        )
        .into();
    };
    let verb = verb(&request.method, &target, &request.query);
    let forbidden = world
        .knobs
        .forbidden
        .contains(&(verb.to_string(), target.resource.plural.to_string()));
    if forbidden {
        return ApiError::forbidden(
            USER,
            verb,
            target.resource.plural,
            target.resource.group,
            &target.namespace,
            &target.name,
        )
        .into();
    }
    let result = match verb {
        "get" => get(world, &target),
        "list" | "watch" => return list_or_watch(world, &target, &request.query, verb == "watch"),
        "create" => create(world, &target, request),
        "update" => update(world, &target, request),
        "patch" => patch(world, &target, request),
        "delete" => delete(world, &target),
        _ => Err(ApiError::method_not_allowed()),
    };
    match result {
        Ok(reply) => reply,
        Err(error) => error.into(),
    }
}

fn stored(world: &World, target: &Target) -> Result<Value, ApiError> {
    world
        .get(target.resource.plural, &target.namespace, &target.name)
        .cloned()
        .ok_or_else(|| {
            ApiError::not_found(target.resource.plural, target.resource.group, &target.name)
        })
}

fn get(world: &World, target: &Target) -> Result<Reply, ApiError> {
    let object = stored(world, target)?;
    if target.subresource == "log" {
        let uid = object["metadata"]["uid"].as_str().unwrap_or_default();
        let lines = world
            .pods
            .get(uid)
            .map(|run| super::kubelet::log_lines(&run.scenario))
            .unwrap_or_default();
        let text: String = lines.iter().map(|line| format!("{line}\n")).collect();
        return Ok(Reply::Text(200, text));
    }
    Ok(Reply::Json(200, object))
}

fn selectors(query: &HashMap<String, String>) -> Result<(LabelSelector, FieldSelector), ApiError> {
    let labels = LabelSelector::parse(query.get("labelSelector").map_or("", String::as_str))
        .map_err(|why| ApiError::bad_request(format!("unable to parse requirement: {why}")))?;
    let fields = FieldSelector::parse(query.get("fieldSelector").map_or("", String::as_str))
        .map_err(ApiError::bad_request)?;
    Ok((labels, fields))
}

fn list_or_watch(
    world: &World,
    target: &Target,
    query: &HashMap<String, String>,
    watch: bool,
) -> Reply {
    let (labels, fields) = match selectors(query) {
        Ok(selectors) => selectors,
        Err(error) => return error.into(),
    };
    let namespace = (!target.namespace.is_empty()).then(|| target.namespace.clone());
    if watch {
        let since = query
            .get("resourceVersion")
            .and_then(|rv| rv.parse::<u64>().ok())
            .filter(|rv| *rv != 0);
        let timeout = query
            .get("timeoutSeconds")
            .and_then(|s| s.parse::<u64>().ok())
            .unwrap_or(1800);
        return Reply::Watch(WatchRequest {
            plural: target.resource.plural,
            namespace,
            labels,
            fields,
            since,
            timeout: Duration::from_secs(timeout),
            bookmarks: query
                .get("allowWatchBookmarks")
                .is_some_and(|v| v == "true" || v == "1"),
        });
    }
    let items = world.list(
        target.resource.plural,
        namespace.as_deref(),
        &labels,
        &fields,
    );
    Reply::Json(
        200,
        json!({
            "kind": format!("{}List", target.resource.kind),
            "apiVersion": target.resource.api_version(),
            "metadata": {"resourceVersion": world.resource_version.to_string()},
            "items": items,
        }),
    )
}

fn parse_body(request: &ApiRequest) -> Result<Value, ApiError> {
    serde_json::from_slice(&request.body).map_err(|err| {
        ApiError::bad_request(format!(
            "the request body is not JSON (the emulator reads JSON bodies only, YAML included in them): {err}"
        ))
    })
}

/// The field manager a write is recorded under: `fieldManager`, or the client's name from its
/// User-Agent as the API server derives it.
fn manager(request: &ApiRequest) -> String {
    request
        .query
        .get("fieldManager")
        .cloned()
        .unwrap_or_else(|| {
            request
                .user_agent
                .split('/')
                .next()
                .unwrap_or("unknown")
                .to_string()
        })
}

fn dry_run(request: &ApiRequest) -> bool {
    request.query.get("dryRun").is_some_and(|v| v == "All")
}

/// Checks the body names the object the path names, and fills in the namespace.
fn place(target: &Target, object: &mut Value) -> Result<(), ApiError> {
    if !object.is_object() || !object["metadata"].is_object() && !object["metadata"].is_null() {
        return Err(ApiError::bad_request("the body is not an object".into()));
    }
    if target.resource.namespaced {
        let body_namespace = object["metadata"]["namespace"].as_str().unwrap_or_default();
        if !body_namespace.is_empty() && body_namespace != target.namespace {
            return Err(ApiError::bad_request("the namespace of the provided object does not match the namespace sent on the request".into()));
        }
        object["metadata"]["namespace"] = json!(target.namespace);
    }
    let body_name = object["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    if !target.name.is_empty() && body_name != target.name {
        if body_name.is_empty() {
            object["metadata"]["name"] = json!(target.name);
        } else {
            return Err(ApiError::bad_request(
                "the name of the object does not match the name on the URL".into(),
            ));
        }
    }
    Ok(())
}

fn create(world: &mut World, target: &Target, request: &ApiRequest) -> Result<Reply, ApiError> {
    let mut object = parse_body(request)?;
    place(target, &mut object)?;
    if let Some(metadata) = object["metadata"].as_object_mut() {
        for server_set in [
            "uid",
            "resourceVersion",
            "creationTimestamp",
            "managedFields",
            "generation",
        ] {
            metadata.shift_remove(server_set);
        }
    }
    field_ownership::record_update(None, &mut object, &manager(request), None);
    let object = if dry_run(request) {
        world.prepare_create(target.resource, object)?
    } else {
        world.create(target.resource, object)?
    };
    Ok(Reply::Json(201, object))
}

/// The object a write leaves: the main resource keeps the stored status, the status
/// subresource keeps everything but the status.
fn merge_write(target: &Target, old: &Value, mut new: Value) -> Value {
    if target.subresource == "status" {
        let mut kept = old.clone();
        kept["status"] = new["status"].take();
        kept
    } else {
        match old.get("status") {
            Some(status) => new["status"] = status.clone(),
            None => {
                if let Some(map) = new.as_object_mut() {
                    map.shift_remove("status");
                }
            }
        }
        new
    }
}

fn store_write(
    world: &mut World,
    target: &Target,
    request: &ApiRequest,
    old: &Value,
    new: Value,
) -> Result<Reply, ApiError> {
    let mut new = merge_write(target, old, new);
    for kept in ["uid", "creationTimestamp", "generation"] {
        new["metadata"][kept] = old["metadata"][kept].clone();
    }
    new["apiVersion"] = json!(target.resource.api_version());
    new["kind"] = json!(target.resource.kind);
    if dry_run(request) {
        return Ok(Reply::Json(
            200,
            World::prepare_replace(target.resource, old, new),
        ));
    }
    Ok(Reply::Json(200, world.replace(target.resource, old, new)))
}

fn update(world: &mut World, target: &Target, request: &ApiRequest) -> Result<Reply, ApiError> {
    let old = stored(world, target)?;
    let mut new = parse_body(request)?;
    place(target, &mut new)?;
    let sent_version = new["metadata"]["resourceVersion"]
        .as_str()
        .unwrap_or_default();
    if !sent_version.is_empty() && old["metadata"]["resourceVersion"].as_str() != Some(sent_version)
    {
        return Err(ApiError::conflict(
            target.resource.plural,
            target.resource.group,
            &target.name,
            "the object has been modified; please apply your changes to the latest version and try again",
        ));
    }
    let subresource = (!target.subresource.is_empty()).then_some(target.subresource.as_str());
    field_ownership::record_update(Some(&old), &mut new, &manager(request), subresource);
    store_write(world, target, request, &old, new)
}

fn patch(world: &mut World, target: &Target, request: &ApiRequest) -> Result<Reply, ApiError> {
    let content_type = request
        .content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim();
    let body = parse_body(request)?;
    let existing = world
        .get(target.resource.plural, &target.namespace, &target.name)
        .cloned();
    if content_type == "application/apply-patch+yaml" {
        let Some(manager) = request.query.get("fieldManager").filter(|m| !m.is_empty()) else {
            return Err(ApiError::invalid(
                "PatchOptions",
                "meta.k8s.io",
                "",
                "fieldManager",
                "Required value: is required for apply patch",
            ));
        };
        let mut config = body;
        place(target, &mut config)?;
        let force = request.query.get("force").is_some_and(|f| f == "true");
        let applied = field_ownership::apply(existing.as_ref(), &config, manager, force)
            .map_err(|conflicts| ApiError::apply_conflicts(&conflicts))?;
        return match existing {
            Some(old) => store_write(world, target, request, &old, applied),
            None => {
                let object = if dry_run(request) {
                    world.prepare_create(target.resource, applied)?
                } else {
                    world.create(target.resource, applied)?
                };
                Ok(Reply::Json(201, object))
            }
        };
    }
    let old = existing.ok_or_else(|| {
        ApiError::not_found(target.resource.plural, target.resource.group, &target.name)
    })?;
    let mut new = old.clone();
    match content_type {
        "application/merge-patch+json" => patch::merge_patch(&mut new, &body),
        "application/strategic-merge-patch+json" => patch::strategic_merge_patch(&mut new, &body),
        "application/json-patch+json" => patch::json_patch(&mut new, &body)
            .map_err(|why| ApiError::new(422, "Invalid", why, json!({})))?,
        other => return Err(ApiError::unsupported_media_type(other)),
    }
    place(target, &mut new)?;
    let subresource = (!target.subresource.is_empty()).then_some(target.subresource.as_str());
    field_ownership::record_update(Some(&old), &mut new, &manager(request), subresource);
    store_write(world, target, request, &old, new)
}

fn delete(world: &mut World, target: &Target) -> Result<Reply, ApiError> {
    let object = stored(world, target)?;
    let uid = object["metadata"]["uid"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    world.delete(target.resource, &target.namespace, &target.name);
    collect_garbage(world, &uid);
    if target.resource.kind == "Namespace" {
        let inside: Vec<_> = world
            .objects
            .keys()
            .filter(|(_, ns, _)| *ns == target.name)
            .cloned()
            .collect();
        for (plural, namespace, name) in inside {
            if let Some(resource) = resources::RESOURCES.iter().find(|r| r.plural == plural) {
                world.delete(resource, &namespace, &name);
            }
        }
    }
    Ok(Reply::Json(200, object))
}

/// Deletes what the deleted object owned, as the garbage collector does (foreground, at once).
pub fn collect_garbage(world: &mut World, owner_uid: &str) {
    let owned: Vec<(&'static ResourceType, String, String, String)> = world
        .objects
        .iter()
        .filter(|(_, object)| {
            object["metadata"]["ownerReferences"]
                .as_array()
                .is_some_and(|refs| refs.iter().any(|r| r["uid"] == owner_uid))
        })
        .filter_map(|((plural, namespace, name), object)| {
            let resource = resources::RESOURCES.iter().find(|r| r.plural == *plural)?;
            let uid = object["metadata"]["uid"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            Some((resource, namespace.clone(), name.clone(), uid))
        })
        .collect();
    for (resource, namespace, name, uid) in owned {
        world.delete(resource, &namespace, &name);
        world.pods.remove(&uid);
        collect_garbage(world, &uid);
    }
}
