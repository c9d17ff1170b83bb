//! Before anything changes: every object applied as a server-side dry run (the API server's
//! validation, admission and RBAC all answer), and the preview of what a deploy would do.

use std::collections::BTreeSet;

use kube::Client;
use serde_json::Value;

use super::blue_green::{planned_objects, slot_line};
use super::blue_green_slots::is_slot_deployment;
use super::cluster_apply::{ClusterKinds, dry_run};
use super::error::EksDeployError;
use super::manifests::PreparedObject;
use super::object_diff::preview_line;
use super::rollout::prepared_objects;
use super::spec::EksDeploySpec;
use crate::pipeline::model::EksStrategy;

/// What the manifests themselves create, which a dry run cannot see yet: namespaces, and
/// kinds defined by CRDs.
struct CreatedByManifests {
    namespaces: BTreeSet<String>,
    kinds: BTreeSet<String>,
}

impl CreatedByManifests {
    fn of(prepared: &[PreparedObject]) -> Self {
        let of_kind = |kind: &'static str| prepared.iter().filter(move |p| p.key.kind == kind);
        CreatedByManifests {
            namespaces: of_kind("Namespace").map(|p| p.key.name.clone()).collect(),
            kinds: of_kind("CustomResourceDefinition")
                .filter_map(|p| p.object.pointer("/spec/names/kind").and_then(Value::as_str))
                .map(str::to_owned)
                .collect(),
        }
    }

    /// Whether a dry run of `object` may fail only because an earlier object is not applied.
    fn needs_earlier_objects(&self, object: &PreparedObject) -> bool {
        self.kinds.contains(&object.key.kind)
            || object
                .key
                .namespace
                .as_ref()
                .is_some_and(|ns| self.namespaces.contains(ns))
    }
}

/// Whether the apply of `object` takes fields over, as the deploy does: when the target says
/// so, and always for blue/green's slot Deployments.
fn force(spec: &EksDeploySpec, object: &PreparedObject) -> bool {
    spec.config.force_conflicts
        || spec
            .config
            .blue_green
            .as_ref()
            .is_some_and(|config| is_slot_deployment(object, config))
}

/// The objects a deploy applies now: the manifests, or for blue/green the slot it goes to
/// (with the line saying which).
async fn objects_to_apply(
    client: &Client,
    spec: &EksDeploySpec,
) -> Result<(ClusterKinds, Vec<PreparedObject>, Option<String>), EksDeployError> {
    match (spec.config.strategy, &spec.config.blue_green) {
        (EksStrategy::BlueGreen, Some(config)) => {
            let (kinds, objects, choice) = planned_objects(client, spec).await?;
            Ok((kinds, objects, Some(slot_line(config, choice))))
        }
        _ => {
            let (kinds, prepared) = prepared_objects(client, spec).await?;
            Ok((kinds, prepared, None))
        }
    }
}

/// Dry-runs everything: the manifests are valid for this cluster, their namespaces exist (or
/// are created by them), the target's containers are in them. Nothing is changed.
pub async fn preflight(client: &Client, spec: &EksDeploySpec) -> Result<(), EksDeployError> {
    let (mut kinds, prepared, _) = objects_to_apply(client, spec).await?;
    let created = CreatedByManifests::of(&prepared);
    for object in &prepared {
        if created.kinds.contains(&object.key.kind) {
            continue;
        }
        if let Err(error) = dry_run(client, &mut kinds, object, force(spec, object)).await
            && !created.needs_earlier_objects(object)
        {
            return Err(error);
        }
    }
    Ok(())
}

/// One line per object: `create …`, `unchanged …` or `change …: field: old → new`. A Secret's
/// values are never shown.
pub async fn preview(client: &Client, spec: &EksDeploySpec) -> Result<Vec<String>, EksDeployError> {
    let (mut kinds, prepared, slot_line) = objects_to_apply(client, spec).await?;
    let created = CreatedByManifests::of(&prepared);
    let mut lines = Vec::with_capacity(prepared.len() + 1);
    lines.extend(slot_line);
    for object in &prepared {
        if created.kinds.contains(&object.key.kind) {
            lines.push(format!(
                "create {} (its kind is defined by these manifests)",
                object.key
            ));
            continue;
        }
        match dry_run(client, &mut kinds, object, force(spec, object)).await {
            Ok((live, result)) => lines.push(preview_line(&object.key, live.as_ref(), &result)),
            Err(_) if created.needs_earlier_objects(object) => lines.push(format!(
                "create {} (in a namespace these manifests create)",
                object.key
            )),
            Err(error) => return Err(error),
        }
    }
    Ok(lines)
}
