//! What is applied, and in which order: the manifest documents with the images pinned, the
//! namespace defaulted, shipit's marks added, sorted so that what others depend on exists
//! first; and the digest that says whether a rerun applies the same thing.

use std::fmt;

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use super::error::EksDeployError;
use super::image_pinning::pin_images;
use super::spec::EksDeploySpec;

/// Which object, as the API addresses it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct ObjectKey {
    pub(crate) api_version: String,
    pub(crate) kind: String,
    /// `None` for cluster-scoped objects.
    pub(crate) namespace: Option<String>,
    pub(crate) name: String,
}

impl fmt::Display for ObjectKey {
    /// `Deployment/prod/web`, `Namespace/prod`: the form the outcome records.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.namespace {
            Some(namespace) => write!(f, "{}/{}/{}", self.kind, namespace, self.name),
            None => write!(f, "{}/{}", self.kind, self.name),
        }
    }
}

/// One object ready to apply.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct PreparedObject {
    pub(crate) key: ObjectKey,
    /// `k8s/web.yaml#2`, for messages.
    pub(crate) source: String,
    pub(crate) object: Value,
}

/// Whether objects of a kind live in a namespace. Discovery knows; for kinds it does not know
/// yet (custom resources whose CRD is in the same manifests) the built-in list decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scope {
    Namespaced,
    Cluster,
}

/// The built-in kinds that are not namespaced.
pub(crate) fn builtin_scope(kind: &str) -> Scope {
    match kind {
        "Namespace"
        | "CustomResourceDefinition"
        | "ClusterRole"
        | "ClusterRoleBinding"
        | "PersistentVolume"
        | "StorageClass"
        | "PriorityClass"
        | "IngressClass"
        | "RuntimeClass"
        | "CSIDriver"
        | "Node"
        | "APIService"
        | "ValidatingWebhookConfiguration"
        | "MutatingWebhookConfiguration"
        | "ValidatingAdmissionPolicy"
        | "ValidatingAdmissionPolicyBinding" => Scope::Cluster,
        _ => Scope::Namespaced,
    }
}

/// Apply order: what other objects need comes first (a Deployment's ServiceAccount, ConfigMaps
/// and Secrets must exist before its pods start, or they fail with CreateContainerConfigError).
fn apply_rank(kind: &str) -> u8 {
    match kind {
        "Namespace" => 0,
        "CustomResourceDefinition" => 1,
        "ServiceAccount" | "Role" | "RoleBinding" | "ClusterRole" | "ClusterRoleBinding" => 2,
        "ConfigMap" | "Secret" | "PersistentVolumeClaim" | "StorageClass" | "PriorityClass" => 3,
        "Service" => 4,
        "Deployment" | "StatefulSet" | "DaemonSet" | "ReplicaSet" | "Job" | "CronJob" | "Pod" => 5,
        _ => 6,
    }
}

/// The workload kinds whose rollout is gated.
pub(crate) fn is_gated_workload(kind: &str) -> bool {
    matches!(kind, "Deployment" | "StatefulSet" | "DaemonSet")
}

const MANAGED_BY: &str = "app.kubernetes.io/managed-by";
pub(crate) const PIPELINE_ANNOTATION: &str = "shipit.dev/pipeline";
pub(crate) const TARGET_ANNOTATION: &str = "shipit.dev/target";

/// The documents of `spec` as they are applied. Only the objects' own metadata is marked, and
/// only with what is the same on every run: a run id, or anything in a pod template, would
/// make every rerun a change (and restart every pod).
pub(crate) fn prepare(
    spec: &EksDeploySpec,
    scope_of: &dyn Fn(&str, &str) -> Scope,
) -> Result<Vec<PreparedObject>, EksDeployError> {
    let mut objects: Vec<Value> = spec.documents.iter().map(|d| d.object.clone()).collect();
    pin_images(&mut objects, &spec.images)?;
    let mut prepared = Vec::with_capacity(objects.len());
    for (document, mut object) in spec.documents.iter().zip(objects) {
        let source = format!("{}#{}", document.file, document.index);
        let api_version = text_at(&object, &["apiVersion"]);
        let kind = text_at(&object, &["kind"]);
        let name = text_at(&object, &["metadata", "name"]);
        let Some(metadata) = object.get_mut("metadata").and_then(Value::as_object_mut) else {
            return Err(EksDeployError::config(format!(
                "{source}: has no metadata mapping"
            )));
        };
        let namespace = match scope_of(&api_version, &kind) {
            Scope::Cluster => {
                metadata.remove("namespace");
                None
            }
            Scope::Namespaced => {
                let namespace = metadata
                    .get("namespace")
                    .and_then(Value::as_str)
                    .filter(|ns| !ns.is_empty())
                    .unwrap_or(&spec.config.namespace)
                    .to_owned();
                metadata.insert("namespace".into(), Value::String(namespace.clone()));
                Some(namespace)
            }
        };
        insert_absent(metadata, "labels", MANAGED_BY, "shipit");
        insert_absent(metadata, "annotations", PIPELINE_ANNOTATION, &spec.pipeline);
        insert_absent(metadata, "annotations", TARGET_ANNOTATION, &spec.target);
        prepared.push(PreparedObject {
            key: ObjectKey {
                api_version,
                kind,
                namespace,
                name,
            },
            source,
            object,
        });
    }
    // Stable: within a rank, the manifests' own order is kept.
    prepared.sort_by_key(|object| apply_rank(&object.key.kind));
    Ok(prepared)
}

/// The digest of exactly what is applied: a resumed run whose digest matches re-attaches to
/// the rollout instead of applying again.
pub(crate) fn applied_digest(objects: &[PreparedObject]) -> String {
    let mut hasher = Sha256::new();
    for object in objects {
        hasher.update(object.object.to_string().as_bytes());
        hasher.update(b"\n");
    }
    format!("sha256:{}", hex::encode(hasher.finalize()))
}

fn text_at(value: &Value, path: &[&str]) -> String {
    path.iter()
        .try_fold(value, |value, key| value.get(*key))
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

fn insert_absent(metadata: &mut Map<String, Value>, field: &str, key: &str, value: &str) {
    let entry = metadata
        .entry(field)
        .or_insert_with(|| Value::Object(Map::new()));
    if !entry.is_object() {
        *entry = Value::Object(Map::new());
    }
    if let Some(map) = entry.as_object_mut() {
        map.entry(key)
            .or_insert_with(|| Value::String(value.to_owned()));
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::deploy::eks::spec::ManifestDocument;
    use serde_json::json;

    pub(crate) fn spec_with(objects: Vec<Value>) -> EksDeploySpec {
        let config: crate::pipeline::model::EksTarget = serde_json::from_value(json!({
            "cluster": "prod", "namespace": "shop", "manifests": ["k8s/*.yaml"], "container": "web"
        }))
        .unwrap();
        EksDeploySpec {
            pipeline: "shop".into(),
            target: "prod".into(),
            run_id: "run-1".into(),
            git_sha: None,
            config,
            base_dir: std::path::PathBuf::from("."),
            documents: objects
                .into_iter()
                .enumerate()
                .map(|(i, object)| ManifestDocument {
                    file: "k8s/app.yaml".into(),
                    index: i + 1,
                    object,
                })
                .collect(),
            images: [("web".to_string(), "r/app@sha256:aa".to_string())].into(),
            smoke_job: None,
        }
    }

    pub(crate) fn web_deployment() -> Value {
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
            "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{"name": "web", "image": "app:dev"}]}}}})
    }

    fn kinds(objects: &[PreparedObject]) -> Vec<String> {
        objects.iter().map(|o| o.key.to_string()).collect()
    }

    #[test]
    fn orders_what_others_depend_on_first_and_keeps_file_order_within_a_rank() {
        let spec = spec_with(vec![
            web_deployment(),
            json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"}}),
            json!({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": {"name": "web"}}),
            json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "b"}}),
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}}),
            json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "web"}}),
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}}),
        ]);
        let prepared = prepare(&spec, &|_, kind| builtin_scope(kind)).unwrap();
        assert_eq!(
            kinds(&prepared),
            [
                "Namespace/shop",
                "ServiceAccount/shop/web",
                "Secret/shop/b",
                "ConfigMap/shop/a",
                "Service/shop/web",
                "Deployment/shop/web",
                "Ingress/shop/web"
            ]
        );
    }

    #[test]
    fn defaults_the_namespace_of_namespaced_objects_only_and_keeps_an_explicit_one() {
        let mut spec = spec_with(vec![
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a", "namespace": "other"}}),
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "b"}}),
            json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": "r", "namespace": "stray"}}),
        ]);
        spec.images.clear();
        let prepared = prepare(&spec, &|_, kind| builtin_scope(kind)).unwrap();
        // The ClusterRole sorts first (RBAC before ConfigMaps).
        assert_eq!(
            kinds(&prepared),
            ["ClusterRole/r", "ConfigMap/other/a", "ConfigMap/shop/b"]
        );
        assert!(prepared[0].object["metadata"].get("namespace").is_none());
        assert_eq!(prepared[1].object["metadata"]["namespace"], "other");
        assert_eq!(prepared[2].object["metadata"]["namespace"], "shop");
    }

    #[test]
    fn marks_the_object_but_never_its_pod_template_and_keeps_users_values() {
        let mut deployment = web_deployment();
        deployment["metadata"]["labels"] = json!({"app.kubernetes.io/managed-by": "Helm"});
        let spec = spec_with(vec![deployment]);
        let prepared = prepare(&spec, &|_, kind| builtin_scope(kind)).unwrap();
        let object = &prepared[0].object;
        assert_eq!(object["metadata"]["labels"][MANAGED_BY], "Helm");
        assert_eq!(
            object["metadata"]["annotations"][PIPELINE_ANNOTATION],
            "shop"
        );
        assert_eq!(object["metadata"]["annotations"][TARGET_ANNOTATION], "prod");
        assert_eq!(
            object["spec"]["template"]["metadata"],
            json!({"labels": {"app": "web"}})
        );
        assert_eq!(
            object["spec"]["template"]["spec"]["containers"][0]["image"],
            "r/app@sha256:aa"
        );
    }

    #[test]
    fn the_digest_is_the_same_for_another_run_and_changes_with_the_image() {
        let first = spec_with(vec![web_deployment()]);
        let mut rerun = first.clone();
        rerun.run_id = "run-2".into();
        let scope = |_: &str, kind: &str| builtin_scope(kind);
        let digest = applied_digest(&prepare(&first, &scope).unwrap());
        assert_eq!(digest, applied_digest(&prepare(&rerun, &scope).unwrap()));
        let mut new_image = first.clone();
        new_image
            .images
            .insert("web".into(), "r/app@sha256:bb".into());
        assert_ne!(
            digest,
            applied_digest(&prepare(&new_image, &scope).unwrap())
        );
        assert!(digest.starts_with("sha256:"));
    }
}
