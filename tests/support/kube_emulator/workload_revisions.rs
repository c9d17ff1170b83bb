//! ControllerRevisions, as the StatefulSet and DaemonSet controllers keep them: one per distinct
//! pod template, named `<owner>-<hash>`, `data` holding the template as a strategic-merge patch,
//! `revision` numbered up; a template that comes back (a rollback) gets its old revision
//! renumbered to the next, as the real controllers do. The scenario the test set for the
//! workload when a revision is made is the one its pods play.

use serde_json::{Value, json};

use super::deployment_controller::{template_hash, without_hash};
use super::replica_set_controller::{owned_by, owner_reference};
use super::resources;
use super::world::World;

/// The revision a workload's current template is: its name, its hash and its uid.
pub struct Revision {
    pub name: String,
    pub hash: String,
    pub uid: String,
}

pub fn ensure_revision(world: &mut World, owner: &Value) -> Option<Revision> {
    let revisions = resources::by_plural("apps", "v1", "controllerrevisions")?;
    let namespace = owner["metadata"]["namespace"].as_str()?.to_string();
    let owner_name = owner["metadata"]["name"].as_str()?.to_string();
    let template = without_hash(&owner["spec"]["template"]);
    let hash = template_hash(&template);
    let name = format!("{owner_name}-{hash}");
    let owned: Vec<Value> = owned_by(
        world,
        "controllerrevisions",
        &namespace,
        &owner["metadata"]["uid"],
    )
    .into_iter()
    .cloned()
    .collect();
    let highest = owned
        .iter()
        .filter_map(|r| r["revision"].as_i64())
        .max()
        .unwrap_or(0);
    if let Some(existing) = owned
        .iter()
        .find(|r| r["metadata"]["name"] == name.as_str())
    {
        let existing = if existing["revision"].as_i64().unwrap_or(0) < highest {
            let mut renumbered = existing.clone();
            renumbered["revision"] = json!(highest + 1);
            world.replace(revisions, existing, renumbered)
        } else {
            existing.clone()
        };
        return Some(Revision {
            name,
            hash,
            uid: existing["metadata"]["uid"].as_str()?.to_string(),
        });
    }
    let mut data_template = template.clone();
    data_template["$patch"] = json!("replace");
    let mut labels = template["metadata"]["labels"].clone();
    if !labels.is_object() {
        labels = json!({});
    }
    labels["controller-revision-hash"] = json!(hash);
    let revision = json!({
        "metadata": {"name": name, "namespace": namespace, "labels": labels,
            "ownerReferences": [owner_reference(owner)]},
        "data": {"spec": {"template": data_template}},
        "revision": highest + 1,
    });
    let created = world.create(revisions, revision).ok()?;
    let uid = created["metadata"]["uid"].as_str()?.to_string();
    let scenario = world
        .scenarios
        .get(&(namespace, owner_name))
        .cloned()
        .unwrap_or_default();
    world.replica_set_scenarios.insert(uid.clone(), scenario);
    Some(Revision { name, hash, uid })
}
