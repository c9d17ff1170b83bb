//! The resource types the emulator serves, and the discovery and OpenAPI documents kubectl and
//! kube-rs read before they send anything.

use serde_json::{Value, json};

/// One resource type, as discovery describes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResourceType {
    pub group: &'static str,
    pub version: &'static str,
    pub plural: &'static str,
    pub singular: &'static str,
    pub kind: &'static str,
    pub namespaced: bool,
    pub short_names: &'static [&'static str],
    pub subresources: &'static [&'static str],
}

impl ResourceType {
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// Whether the simulated controllers track a `metadata.generation` for this type.
    pub fn has_generation(&self) -> bool {
        self.group == "apps" || self.group == "batch"
    }
}

const fn core(
    plural: &'static str,
    singular: &'static str,
    kind: &'static str,
    namespaced: bool,
    short_names: &'static [&'static str],
    subresources: &'static [&'static str],
) -> ResourceType {
    ResourceType {
        group: "",
        version: "v1",
        plural,
        singular,
        kind,
        namespaced,
        short_names,
        subresources,
    }
}

const fn apps(
    plural: &'static str,
    singular: &'static str,
    kind: &'static str,
    short_names: &'static [&'static str],
) -> ResourceType {
    ResourceType {
        group: "apps",
        version: "v1",
        plural,
        singular,
        kind,
        namespaced: true,
        short_names,
        subresources: &["status", "scale"],
    }
}

pub const RESOURCES: &[ResourceType] = &[
    core(
        "namespaces",
        "namespace",
        "Namespace",
        false,
        &["ns"],
        &["status"],
    ),
    core("pods", "pod", "Pod", true, &["po"], &["status", "log"]),
    core(
        "services",
        "service",
        "Service",
        true,
        &["svc"],
        &["status"],
    ),
    core("configmaps", "configmap", "ConfigMap", true, &["cm"], &[]),
    core("secrets", "secret", "Secret", true, &[], &[]),
    core(
        "serviceaccounts",
        "serviceaccount",
        "ServiceAccount",
        true,
        &["sa"],
        &[],
    ),
    core("events", "event", "Event", true, &["ev"], &[]),
    apps("deployments", "deployment", "Deployment", &["deploy"]),
    apps("replicasets", "replicaset", "ReplicaSet", &["rs"]),
    apps("statefulsets", "statefulset", "StatefulSet", &["sts"]),
    apps("daemonsets", "daemonset", "DaemonSet", &["ds"]),
    ResourceType {
        group: "apps",
        version: "v1",
        plural: "controllerrevisions",
        singular: "controllerrevision",
        kind: "ControllerRevision",
        namespaced: true,
        short_names: &[],
        subresources: &[],
    },
    ResourceType {
        group: "batch",
        version: "v1",
        plural: "jobs",
        singular: "job",
        kind: "Job",
        namespaced: true,
        short_names: &[],
        subresources: &["status"],
    },
];

pub fn by_plural(group: &str, version: &str, plural: &str) -> Option<&'static ResourceType> {
    RESOURCES
        .iter()
        .find(|r| r.group == group && r.version == version && r.plural == plural)
}

pub fn by_kind(api_version: &str, kind: &str) -> Option<&'static ResourceType> {
    RESOURCES
        .iter()
        .find(|r| r.api_version() == api_version && r.kind == kind)
}

const VERBS: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];

/// The discovery document for `path`, when it is one.
pub fn discovery(path: &str, server: &str) -> Option<Value> {
    match path {
        "/version" => Some(json!({
            "major": "1", "minor": "33", "gitVersion": "v1.33.0-emulator",
            "gitCommit": "0000000000000000000000000000000000000000", "gitTreeState": "clean",
            "buildDate": "2026-01-01T00:00:00Z", "goVersion": "go1.24.0", "compiler": "gc",
            "platform": "linux/amd64"
        })),
        "/api" => Some(json!({
            "kind": "APIVersions", "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server}]
        })),
        "/apis" => Some(json!({
            "kind": "APIGroupList", "apiVersion": "v1",
            "groups": [{
                "name": "apps",
                "versions": [{"groupVersion": "apps/v1", "version": "v1"}],
                "preferredVersion": {"groupVersion": "apps/v1", "version": "v1"}
            }, {
                "name": "batch",
                "versions": [{"groupVersion": "batch/v1", "version": "v1"}],
                "preferredVersion": {"groupVersion": "batch/v1", "version": "v1"}
            }]
        })),
        "/api/v1" => Some(resource_list("")),
        "/apis/apps" => Some(json!({
            "kind": "APIGroup", "apiVersion": "v1", "name": "apps",
            "versions": [{"groupVersion": "apps/v1", "version": "v1"}],
            "preferredVersion": {"groupVersion": "apps/v1", "version": "v1"}
        })),
        "/apis/apps/v1" => Some(resource_list("apps")),
        "/apis/batch" => Some(json!({
            "kind": "APIGroup", "apiVersion": "v1", "name": "batch",
            "versions": [{"groupVersion": "batch/v1", "version": "v1"}],
            "preferredVersion": {"groupVersion": "batch/v1", "version": "v1"}
        })),
        "/apis/batch/v1" => Some(resource_list("batch")),
        "/openapi/v3" => Some(json!({"paths": {
            "api/v1": {"serverRelativeURL": "/openapi/v3/api/v1?hash=emulator"},
            "apis/apps/v1": {"serverRelativeURL": "/openapi/v3/apis/apps/v1?hash=emulator"},
            "apis/batch/v1": {"serverRelativeURL": "/openapi/v3/apis/batch/v1?hash=emulator"}
        }})),
        "/openapi/v3/api/v1" => Some(openapi_v3("")),
        "/openapi/v3/apis/apps/v1" => Some(openapi_v3("apps")),
        "/openapi/v3/apis/batch/v1" => Some(openapi_v3("batch")),
        _ => None,
    }
}

fn resource_list(group: &str) -> Value {
    let mut resources = Vec::new();
    for r in RESOURCES.iter().filter(|r| r.group == group) {
        resources.push(json!({
            "name": r.plural, "singularName": r.singular, "namespaced": r.namespaced,
            "kind": r.kind, "verbs": VERBS, "shortNames": r.short_names,
        }));
        for sub in r.subresources {
            let (kind, verbs): (&str, &[&str]) = match *sub {
                "log" => ("Pod", &["get"]),
                "scale" => ("Scale", &["get", "patch", "update"]),
                _ => (r.kind, &["get", "patch", "update"]),
            };
            resources.push(json!({
                "name": format!("{}/{sub}", r.plural), "singularName": "",
                "namespaced": r.namespaced, "kind": kind, "verbs": verbs,
            }));
        }
    }
    let group_version = if group.is_empty() {
        "v1".to_string()
    } else {
        format!("{group}/v1")
    };
    json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version, "resources": resources})
}

/// Just enough OpenAPI v3 for kubectl to see that the server validates fields itself
/// (`fieldValidation` on each PATCH), so it skips client-side schema validation.
fn openapi_v3(group: &str) -> Value {
    let mut paths = serde_json::Map::new();
    for r in RESOURCES.iter().filter(|r| r.group == group) {
        let prefix = if group.is_empty() {
            "/api/v1".to_string()
        } else {
            format!("/apis/{group}/v1")
        };
        let path = if r.namespaced {
            format!("{prefix}/namespaces/{{namespace}}/{}/{{name}}", r.plural)
        } else {
            format!("{prefix}/{}/{{name}}", r.plural)
        };
        let parameters: Vec<Value> = ["dryRun", "fieldManager", "fieldValidation", "force"]
            .iter()
            .map(|name| json!({"name": name, "in": "query", "schema": {"type": "string", "uniqueItems": true}}))
            .collect();
        paths.insert(
            path,
            json!({"patch": {
                "operationId": format!("patch{}", r.kind),
                "parameters": parameters,
                "responses": {"200": {"description": "OK"}},
                "x-kubernetes-action": "patch",
                "x-kubernetes-group-version-kind": {"group": r.group, "version": r.version, "kind": r.kind}
            }}),
        );
    }
    json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": "v1.33.0"},
        "paths": paths,
        "components": {"schemas": {}}
    })
}
