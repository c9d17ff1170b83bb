//! The simulated DaemonSet controller on three nodes (RollingUpdate, maxUnavailable 1): one pod
//! per node, labelled with its ControllerRevision's hash and the DaemonSet's generation; an
//! update deletes an old pod at once when it is not ready anyway, otherwise one at a time
//! while every other node has a ready pod, and the node gets the new pod on the next step.

use serde_json::{Value, json};

use super::replica_set_controller::{is_ready, owned_by, owner_reference};
use super::resources;
use super::workload_revisions::ensure_revision;
use super::world::{PodRun, World, random_suffix};

pub const NODES: [&str; 3] = ["node-a", "node-b", "node-c"];

pub fn sync(world: &mut World) {
    let (Some(sets), Some(pods_type)) = (
        resources::by_plural("apps", "v1", "daemonsets"),
        resources::by_plural("", "v1", "pods"),
    ) else {
        return;
    };
    let keys = world.keys_of("daemonsets");
    for key in keys {
        let Some(set) = world.objects.get(&key).cloned() else {
            continue;
        };
        let (namespace, name) = (key.1.clone(), key.2.clone());
        let Some(revision) = ensure_revision(world, &set) else {
            continue;
        };
        let generation = set["metadata"]["generation"].as_i64().unwrap_or(1);
        let pods: Vec<Value> = owned_by(world, "pods", &namespace, &set["metadata"]["uid"])
            .into_iter()
            .cloned()
            .collect();
        let on = |node: &str| -> Vec<&Value> {
            pods.iter()
                .filter(|p| p["spec"]["nodeName"] == node)
                .collect()
        };
        let current = |pod: &Value| {
            pod["metadata"]["labels"]["controller-revision-hash"] == revision.hash.as_str()
        };
        let mut unavailable = NODES
            .iter()
            .filter(|node| !on(node).iter().any(|p| is_ready(p)))
            .count();
        for node in NODES {
            let here = on(node);
            if here.is_empty() {
                let template = &set["spec"]["template"];
                let mut metadata = template["metadata"].clone();
                if !metadata.is_object() {
                    metadata = json!({});
                }
                metadata["name"] = json!(format!("{name}-{}", random_suffix(5)));
                metadata["namespace"] = json!(namespace);
                metadata["ownerReferences"] = json!([owner_reference(&set)]);
                metadata["labels"]["controller-revision-hash"] = json!(revision.hash);
                metadata["labels"]["pod-template-generation"] = json!(generation.to_string());
                let mut spec = template["spec"].clone();
                spec["nodeName"] = json!(node);
                let pod = json!({"metadata": metadata, "spec": spec,
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
                continue;
            }
            for pod in here.into_iter().filter(|p| !current(p)) {
                let ready = is_ready(pod);
                // An old pod that is not ready costs no availability; a ready one only within
                // maxUnavailable.
                if ready && unavailable >= 1 {
                    continue;
                }
                if ready {
                    unavailable += 1;
                }
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
        let ready = pods.iter().filter(|p| is_ready(p)).count();
        let updated = pods.iter().filter(|p| current(p)).count();
        let nodes_with_pods = NODES
            .iter()
            .filter(|node| pods.iter().any(|p| p["spec"]["nodeName"] == **node))
            .count();
        let status = json!({
            "observedGeneration": generation,
            "desiredNumberScheduled": NODES.len(), "currentNumberScheduled": nodes_with_pods,
            "numberMisscheduled": 0, "numberReady": ready, "numberAvailable": ready,
            "numberUnavailable": NODES.len() - ready, "updatedNumberScheduled": updated,
        });
        if let Some(current) = world.objects.get(&key).cloned() {
            world.set_status(sets, &current, status);
        }
    }
}
