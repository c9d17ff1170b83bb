//! The simulated StatefulSet controller (podManagementPolicy OrderedReady, RollingUpdate): pods
//! `<name>-0…` created one at a time while the others are ready, each labelled with the
//! ControllerRevision it runs; an update replaces the highest-ordinal pod of another revision
//! once every pod is ready. A pod that never becomes ready therefore stops everything, a
//! rollback of the template included, until someone deletes it — the real controller's
//! "forced rollback" behaviour.

use serde_json::{Value, json};

use super::replica_set_controller::{is_ready, owned_by, owner_reference};
use super::resources;
use super::workload_revisions::ensure_revision;
use super::world::{PodRun, World};

fn ordinal(pod: &Value, name: &str) -> Option<i64> {
    pod["metadata"]["name"]
        .as_str()?
        .strip_prefix(&format!("{name}-"))?
        .parse()
        .ok()
}

fn revision_of(pod: &Value) -> &str {
    pod["metadata"]["labels"]["controller-revision-hash"]
        .as_str()
        .unwrap_or_default()
}

pub fn sync(world: &mut World) {
    let (Some(sets), Some(pods_type)) = (
        resources::by_plural("apps", "v1", "statefulsets"),
        resources::by_plural("", "v1", "pods"),
    ) else {
        return;
    };
    let keys = world.keys_of("statefulsets");
    for key in keys {
        let Some(set) = world.objects.get(&key).cloned() else {
            continue;
        };
        let (namespace, name) = (key.1.clone(), key.2.clone());
        let Some(revision) = ensure_revision(world, &set) else {
            continue;
        };
        let replicas = set["spec"]["replicas"].as_i64().unwrap_or(1);
        let pods: Vec<Value> = owned_by(world, "pods", &namespace, &set["metadata"]["uid"])
            .into_iter()
            .cloned()
            .collect();
        let all_ready = pods.iter().all(is_ready);
        let missing = (0..replicas).find(|i| !pods.iter().any(|p| ordinal(p, &name) == Some(*i)));
        let surplus = pods
            .iter()
            .filter(|p| ordinal(p, &name).is_some_and(|i| i >= replicas))
            .max_by_key(|p| ordinal(p, &name));
        if let (Some(i), true) = (missing, all_ready) {
            let template = &set["spec"]["template"];
            let mut metadata = template["metadata"].clone();
            if !metadata.is_object() {
                metadata = json!({});
            }
            let pod_name = format!("{name}-{i}");
            metadata["name"] = json!(pod_name);
            metadata["namespace"] = json!(namespace);
            metadata["ownerReferences"] = json!([owner_reference(&set)]);
            metadata["labels"]["controller-revision-hash"] = json!(revision.name);
            metadata["labels"]["statefulset.kubernetes.io/pod-name"] = json!(pod_name);
            let pod = json!({"metadata": metadata, "spec": template["spec"],
                "status": {"phase": "Pending", "qosClass": "BestEffort"}});
            let scenario = world
                .replica_set_scenarios
                .get(&revision.uid)
                .cloned()
                .unwrap_or_default();
            if let Ok(created) = world.create(pods_type, pod) {
                let uid = created["metadata"]["uid"].as_str().unwrap_or_default();
                world.pods.insert(
                    uid.to_string(),
                    PodRun {
                        scenario,
                        age_steps: 0,
                    },
                );
            }
        } else if let (Some(pod), true) = (surplus, all_ready) {
            let pod_name = pod["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            world.delete(pods_type, &namespace, &pod_name);
        } else if missing.is_none() && all_ready {
            let outdated = pods
                .iter()
                .filter(|p| revision_of(p) != revision.name)
                .max_by_key(|p| ordinal(p, &name));
            if let Some(pod) = outdated {
                let pod_name = pod["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                world.delete(pods_type, &namespace, &pod_name);
            }
        }
        let pods: Vec<Value> = owned_by(world, "pods", &namespace, &set["metadata"]["uid"])
            .into_iter()
            .cloned()
            .collect();
        let ready = pods.iter().filter(|p| is_ready(p)).count() as i64;
        let updated = pods
            .iter()
            .filter(|p| revision_of(p) == revision.name)
            .count() as i64;
        let previous_current = set["status"]["currentRevision"]
            .as_str()
            .unwrap_or(&revision.name)
            .to_string();
        let current = if updated == replicas && ready == replicas {
            revision.name.clone()
        } else {
            previous_current
        };
        let current_replicas = pods.iter().filter(|p| revision_of(p) == current).count();
        let status = json!({
            "observedGeneration": set["metadata"]["generation"],
            "replicas": pods.len(), "readyReplicas": ready, "availableReplicas": ready,
            "currentReplicas": current_replicas, "updatedReplicas": updated,
            "currentRevision": current, "updateRevision": revision.name, "collisionCount": 0,
        });
        if let Some(current) = world.objects.get(&key).cloned() {
            world.set_status(sets, &current, status);
        }
    }
}
