//! The simulated ReplicaSet controller: creates and deletes pods until each ReplicaSet has
//! `spec.replicas` of them, and keeps its status counts.

use serde_json::{Value, json};

use super::resources;
use super::world::{PodRun, World, random_suffix};

pub fn is_ready(pod: &Value) -> bool {
    pod["status"]["conditions"]
        .as_array()
        .is_some_and(|conditions| {
            conditions
                .iter()
                .any(|c| c["type"] == "Ready" && c["status"] == "True")
        })
}

pub fn owned_by<'a>(
    world: &'a World,
    plural: &'static str,
    namespace: &str,
    owner_uid: &Value,
) -> Vec<&'a Value> {
    world
        .objects
        .iter()
        .filter(|((p, ns, _), object)| {
            *p == plural
                && ns == namespace
                && object["metadata"]["ownerReferences"]
                    .as_array()
                    .is_some_and(|refs| {
                        refs.iter()
                            .any(|r| r["uid"] == *owner_uid && r["controller"] == true)
                    })
        })
        .map(|(_, object)| object)
        .collect()
}

pub fn owner_reference(owner: &Value) -> Value {
    json!({
        "apiVersion": owner["apiVersion"], "kind": owner["kind"], "name": owner["metadata"]["name"],
        "uid": owner["metadata"]["uid"], "controller": true, "blockOwnerDeletion": true,
    })
}

pub fn sync(world: &mut World) {
    let (Some(replica_sets), Some(pods_type)) = (
        resources::by_plural("apps", "v1", "replicasets"),
        resources::by_plural("", "v1", "pods"),
    ) else {
        return;
    };
    let keys = world.keys_of("replicasets");
    for key in keys {
        let Some(rs) = world.objects.get(&key).cloned() else {
            continue;
        };
        let namespace = key.1.clone();
        let uid = rs["metadata"]["uid"].clone();
        let wanted = rs["spec"]["replicas"].as_u64().unwrap_or(1) as usize;
        let mut pods: Vec<Value> = owned_by(world, "pods", &namespace, &uid)
            .into_iter()
            .cloned()
            .collect();
        let scenario = world
            .replica_set_scenarios
            .get(uid.as_str().unwrap_or_default())
            .cloned()
            .unwrap_or_default();
        while pods.len() < wanted {
            let template = &rs["spec"]["template"];
            let mut metadata = template["metadata"].clone();
            if !metadata.is_object() {
                metadata = json!({});
            }
            metadata["name"] = json!(format!("{}-{}", key.2, random_suffix(5)));
            metadata["namespace"] = json!(namespace);
            metadata["ownerReferences"] = json!([owner_reference(&rs)]);
            let pod = json!({"metadata": metadata, "spec": template["spec"], "status": {"phase": "Pending", "qosClass": "BestEffort"}});
            match world.create(pods_type, pod) {
                Ok(created) => {
                    let pod_uid = created["metadata"]["uid"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string();
                    world.pods.insert(
                        pod_uid,
                        PodRun {
                            scenario: scenario.clone(),
                            age_steps: 0,
                        },
                    );
                    pods.push(created);
                }
                Err(_) => break,
            }
        }
        if pods.len() > wanted {
            // Not-ready pods go first, then the newest, as the real controller prefers.
            pods.sort_by_key(|pod| {
                (
                    is_ready(pod),
                    std::cmp::Reverse(
                        pod["metadata"]["creationTimestamp"]
                            .as_str()
                            .unwrap_or_default()
                            .to_string(),
                    ),
                )
            });
            for pod in pods.drain(..pods.len() - wanted) {
                let name = pod["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                world.delete(pods_type, &namespace, &name);
                world
                    .pods
                    .remove(pod["metadata"]["uid"].as_str().unwrap_or_default());
            }
        }
        let ready = pods.iter().filter(|pod| is_ready(pod)).count();
        let mut status = json!({
            "replicas": pods.len(),
            "fullyLabeledReplicas": pods.len(),
            "readyReplicas": ready,
            "availableReplicas": ready,
            "observedGeneration": rs["metadata"]["generation"],
        });
        if let Some(map) = status.as_object_mut() {
            map.retain(|field, value| field == "replicas" || value != &json!(0));
        }
        if let Some(current) = world.objects.get(&key).cloned() {
            world.set_status(replica_sets, &current, status);
        }
    }
}
