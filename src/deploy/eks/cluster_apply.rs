//! Server-side apply of the prepared objects (field manager `shipit`), each first applied as a
//! dry run: an object whose dry run equals the live one is left alone, so rerunning the same
//! manifests changes nothing.

use std::collections::HashMap;
use std::time::Duration;

use kube::Client;
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::core::{ApiResource, GroupVersionKind};
use kube::discovery::{Scope as DiscoveredScope, pinned_kind};
use serde_json::Value;

use super::api_failure::kube_failure;
use super::error::EksDeployError;
use super::manifests::{ObjectKey, PreparedObject, Scope, builtin_scope};
use super::object_diff::is_unchanged;

pub(crate) const FIELD_MANAGER: &str = "shipit";

/// The API resources of the kinds the manifests use, as discovery knows them.
#[derive(Default)]
pub(crate) struct ClusterKinds {
    known: HashMap<(String, String), (ApiResource, Scope)>,
}

fn gvk(api_version: &str, kind: &str) -> GroupVersionKind {
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    GroupVersionKind::gvk(group, version, kind)
}

impl ClusterKinds {
    /// Asks discovery about each kind; kinds it does not know yet (a CRD in the same
    /// manifests) are asked again when their objects are applied.
    pub(crate) async fn discover<'a>(
        client: &Client,
        kinds: impl Iterator<Item = (&'a str, &'a str)>,
    ) -> Self {
        let mut known = ClusterKinds::default();
        for (api_version, kind) in kinds {
            let _ = known.resolve(client, api_version, kind).await;
        }
        known
    }

    pub(crate) fn scope(&self, api_version: &str, kind: &str) -> Scope {
        self.known
            .get(&(api_version.to_owned(), kind.to_owned()))
            .map(|(_, scope)| *scope)
            .unwrap_or_else(|| builtin_scope(kind))
    }

    pub(crate) async fn resolve(
        &mut self,
        client: &Client,
        api_version: &str,
        kind: &str,
    ) -> Result<ApiResource, kube::Error> {
        let key = (api_version.to_owned(), kind.to_owned());
        if let Some((resource, _)) = self.known.get(&key) {
            return Ok(resource.clone());
        }
        let (resource, capabilities) = pinned_kind(client, &gvk(api_version, kind)).await?;
        let scope = match capabilities.scope {
            DiscoveredScope::Cluster => Scope::Cluster,
            DiscoveredScope::Namespaced => Scope::Namespaced,
        };
        self.known.insert(key, (resource.clone(), scope));
        Ok(resource)
    }

    /// Resolves a kind that may have been defined a moment ago by a CRD of the same apply.
    async fn resolve_patiently(
        &mut self,
        client: &Client,
        key: &ObjectKey,
    ) -> Result<ApiResource, EksDeployError> {
        let mut last = None;
        for attempt in 0..5 {
            match self.resolve(client, &key.api_version, &key.kind).await {
                Ok(resource) => return Ok(resource),
                Err(error) => last = Some(error),
            }
            tokio::time::sleep(Duration::from_millis(500 * (attempt + 1))).await;
        }
        let why = last.map(|e| e.to_string()).unwrap_or_default();
        Err(EksDeployError::config(format!(
            "{key}: the cluster has no kind {} in {} ({why})",
            key.kind, key.api_version
        ))
        .with_hint("is the CRD installed, and the apiVersion right?"))
    }
}

pub(crate) fn api_for(
    client: &Client,
    resource: &ApiResource,
    namespace: Option<&str>,
) -> Api<DynamicObject> {
    match namespace {
        Some(namespace) => Api::namespaced_with(client.clone(), namespace, resource),
        None => Api::all_with(client.clone(), resource),
    }
}

/// What applying one object did.
#[derive(Debug, Clone)]
pub(crate) struct AppliedObject {
    pub(crate) key: ObjectKey,
    pub(crate) changed: bool,
    /// The object as the server has it after the apply (or the live one when unchanged).
    pub(crate) object: Value,
}

/// The live object and the server's dry-run result of applying `prepared`.
pub(crate) async fn dry_run(
    client: &Client,
    kinds: &mut ClusterKinds,
    prepared: &PreparedObject,
    force: bool,
) -> Result<(Option<Value>, Value), EksDeployError> {
    let resource = kinds.resolve_patiently(client, &prepared.key).await?;
    let api = api_for(client, &resource, prepared.key.namespace.as_deref());
    let name = &prepared.key.name;
    let live = api
        .get_opt(name)
        .await
        .map_err(|e| kube_failure(&format!("read {}", prepared.key), &e))?;
    let result = api
        .patch(
            name,
            &apply_params(force).dry_run(),
            &Patch::Apply(&prepared.object),
        )
        .await
        .map_err(|e| kube_failure(&format!("apply {} (dry run)", prepared.key), &e))?;
    Ok((live.map(to_value), to_value(result)))
}

/// Applies `prepared` unless the dry run shows it would change nothing.
pub(crate) async fn apply(
    client: &Client,
    kinds: &mut ClusterKinds,
    prepared: &PreparedObject,
    force: bool,
) -> Result<AppliedObject, EksDeployError> {
    let (live, dry) = dry_run(client, kinds, prepared, force).await?;
    if let Some(live) = live
        && is_unchanged(&dry, &live)
    {
        return Ok(AppliedObject {
            key: prepared.key.clone(),
            changed: false,
            object: live,
        });
    }
    let resource = kinds.resolve_patiently(client, &prepared.key).await?;
    let api = api_for(client, &resource, prepared.key.namespace.as_deref());
    let result = api
        .patch(
            &prepared.key.name,
            &apply_params(force),
            &Patch::Apply(&prepared.object),
        )
        .await
        .map_err(|e| kube_failure(&format!("apply {}", prepared.key), &e))?;
    Ok(AppliedObject {
        key: prepared.key.clone(),
        changed: true,
        object: to_value(result),
    })
}

fn apply_params(force: bool) -> PatchParams {
    let params = PatchParams::apply(FIELD_MANAGER);
    if force { params.force() } else { params }
}

pub(crate) fn to_value(object: DynamicObject) -> Value {
    serde_json::to_value(object).unwrap_or(Value::Null)
}
