//! The simulated Deployment controller: a changed pod template gets a ReplicaSet named
//! `<deployment>-<pod-template-hash>` (or an old one back, as `kubectl rollout undo` wants, with
//! the next revision), the rolling update scales new up and old down within maxSurge and
//! maxUnavailable, and the status and conditions are kept as the real controller keeps them.

use serde_json::{Value, json};

use super::events;
use super::replica_set_controller::{owned_by, owner_reference};
use super::resources;
use super::world::{SAFE_ALPHABET, World, timestamp};

const REVISION: &str = "deployment.kubernetes.io/revision";

fn revision(object: &Value) -> i64 {
    object["metadata"]["annotations"][REVISION]
        .as_str()
        .and_then(|r| r.parse().ok())
        .unwrap_or(0)
}

/// The template without the `pod-template-hash` label and without nulls (Go clients send
/// `creationTimestamp: null`, which means absent), as templates are compared.
pub fn without_hash(template: &Value) -> Value {
    fn drop_nulls(value: &mut Value) {
        match value {
            Value::Object(map) => {
                map.retain(|_, v| !v.is_null());
                map.values_mut().for_each(drop_nulls);
            }
            Value::Array(items) => items.iter_mut().for_each(drop_nulls),
            _ => {}
        }
    }
    let mut template = template.clone();
    drop_nulls(&mut template);
    if let Some(labels) = template["metadata"]["labels"].as_object_mut() {
        labels.shift_remove("pod-template-hash");
    }
    template
}

/// The template's hash as the controller spells it: FNV-1a over its canonical form, each
/// decimal digit mapped to the safe alphabet.
pub fn template_hash(template: &Value) -> String {
    fn canonical(value: &Value) -> String {
        match value {
            Value::Object(map) => {
                let mut fields: Vec<_> = map.iter().collect();
                fields.sort_by(|a, b| a.0.cmp(b.0));
                let inner: Vec<String> = fields
                    .iter()
                    .map(|(k, v)| format!("{k:?}:{}", canonical(v)))
                    .collect();
                format!("{{{}}}", inner.join(","))
            }
            Value::Array(items) => format!(
                "[{}]",
                items.iter().map(canonical).collect::<Vec<_>>().join(",")
            ),
            other => other.to_string(),
        }
    }
    let mut hash: u32 = 0x811c9dc5;
    for byte in canonical(template).bytes() {
        hash ^= u32::from(byte);
        hash = hash.wrapping_mul(0x01000193);
    }
    hash.to_string()
        .bytes()
        .map(|b| SAFE_ALPHABET[b as usize % SAFE_ALPHABET.len()] as char)
        .collect()
}

/// A `25%` or `1` of maxSurge/maxUnavailable, resolved against the replica count.
fn resolve(value: &Value, replicas: i64, round_up: bool) -> i64 {
    match value {
        Value::Number(n) => n.as_i64().unwrap_or(0),
        Value::String(s) => {
            let percent: f64 = s.trim_end_matches('%').parse().unwrap_or(25.0);
            let exact = percent * replicas as f64 / 100.0;
            (if round_up {
                exact.ceil()
            } else {
                exact.floor()
            }) as i64
        }
        _ => 0,
    }
}

fn condition(kind: &str, ok: bool, reason: &str, message: String, previous: &Value) -> Value {
    let status = if ok { "True" } else { "False" };
    let old = previous["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == kind))
        .cloned();
    let now = timestamp();
    let transition = match &old {
        Some(old) if old["status"] == status => old["lastTransitionTime"].clone(),
        _ => json!(now),
    };
    let update = match &old {
        Some(old) if old["reason"] == reason && old["message"] == message.as_str() => {
            old["lastUpdateTime"].clone()
        }
        _ => json!(now),
    };
    json!({"type": kind, "status": status, "lastUpdateTime": update, "lastTransitionTime": transition, "reason": reason, "message": message})
}

pub fn sync(world: &mut World) {
    let keys = world.keys_of("deployments");
    for key in keys {
        reconcile(world, &key.1, &key.2);
    }
}

fn scale(world: &mut World, deployment: &Value, rs: &Value, to: i64) {
    let Some(replica_sets) = resources::by_plural("apps", "v1", "replicasets") else {
        return;
    };
    let from = rs["spec"]["replicas"].as_i64().unwrap_or(0);
    if from == to {
        return;
    }
    let mut updated = rs.clone();
    updated["spec"]["replicas"] = json!(to);
    world.replace(replica_sets, rs, updated);
    let direction = if to > from { "up" } else { "down" };
    let name = rs["metadata"]["name"].as_str().unwrap_or_default();
    events::record(
        world,
        deployment,
        "Normal",
        "ScalingReplicaSet",
        &format!("Scaled {direction} replica set {name} from {from} to {to}"),
        "deployment-controller",
    );
}

fn reconcile(world: &mut World, namespace: &str, name: &str) {
    let Some(replica_sets) = resources::by_plural("apps", "v1", "replicasets") else {
        return;
    };
    let Some(deployment) = world.get("deployments", namespace, name).cloned() else {
        return;
    };
    let spec = &deployment["spec"];
    let replicas = spec["replicas"].as_i64().unwrap_or(1);
    let template = &spec["template"];
    let uid = deployment["metadata"]["uid"].clone();
    let deployment_uid = uid.as_str().unwrap_or_default().to_string();
    let owned: Vec<Value> = owned_by(world, "replicasets", namespace, &uid)
        .into_iter()
        .cloned()
        .collect();
    let max_revision = owned.iter().map(revision).max().unwrap_or(0);
    let mut progressed = false;
    let mut created_new = false;
    let new_rs = match owned
        .iter()
        .find(|rs| without_hash(&rs["spec"]["template"]) == without_hash(template))
    {
        Some(rs) if revision(rs) < max_revision => {
            // An old template is back (rollout undo): its ReplicaSet takes the next revision.
            let mut updated = rs.clone();
            updated["metadata"]["annotations"][REVISION] = json!((max_revision + 1).to_string());
            progressed = true;
            world.replace(replica_sets, rs, updated)
        }
        Some(rs) => rs.clone(),
        None => {
            let hash = template_hash(&without_hash(template));
            let mut rs_template = template.clone();
            rs_template["metadata"]["labels"]["pod-template-hash"] = json!(hash);
            let mut selector = spec["selector"].clone();
            selector["matchLabels"]["pod-template-hash"] = json!(hash);
            let rs = json!({
                "metadata": {
                    "name": format!("{name}-{hash}"), "namespace": namespace,
                    "labels": rs_template["metadata"]["labels"],
                    "annotations": {
                        REVISION: (max_revision + 1).to_string(),
                        "deployment.kubernetes.io/desired-replicas": replicas.to_string(),
                        "deployment.kubernetes.io/max-replicas": (replicas + resolve(&spec["strategy"]["rollingUpdate"]["maxSurge"], replicas, true)).to_string(),
                    },
                    "ownerReferences": [owner_reference(&deployment)],
                },
                "spec": {"replicas": 0, "selector": selector, "template": rs_template},
            });
            let Ok(created) = world.create(replica_sets, rs) else {
                return;
            };
            let scenario = world
                .scenarios
                .get(&(namespace.to_string(), name.to_string()))
                .cloned()
                .unwrap_or_default();
            world.replica_set_scenarios.insert(
                created["metadata"]["uid"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                scenario,
            );
            created_new = true;
            progressed = true;
            created
        }
    };
    let new_name = new_rs["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let new_uid = new_rs["metadata"]["uid"].clone();
    let olds: Vec<Value> = owned
        .iter()
        .filter(|rs| rs["metadata"]["uid"] != new_uid)
        .cloned()
        .collect();
    let count = |rs: &Value, field: &str| rs["status"][field].as_i64().unwrap_or(0);
    let desired = |rs: &Value| rs["spec"]["replicas"].as_i64().unwrap_or(0);

    if spec["strategy"]["type"] == "Recreate" {
        let old_pods: i64 = olds
            .iter()
            .map(|rs| desired(rs) + count(rs, "replicas"))
            .sum();
        for rs in &olds {
            scale(world, &deployment, rs, 0);
        }
        if old_pods == 0 {
            scale(world, &deployment, &new_rs, replicas);
        }
    } else {
        let surge = resolve(
            &spec["strategy"]["rollingUpdate"]["maxSurge"],
            replicas,
            true,
        );
        let mut unavailable = resolve(
            &spec["strategy"]["rollingUpdate"]["maxUnavailable"],
            replicas,
            false,
        );
        if surge == 0 && unavailable == 0 {
            unavailable = 1;
        }
        let total: i64 = owned.iter().map(desired).sum::<i64>()
            - desired(&owned_version(&owned, &new_rs))
            + desired(&new_rs);
        let mut new_desired = desired(&new_rs);
        if new_desired > replicas {
            new_desired = replicas;
        } else if new_desired < replicas && total < replicas + surge {
            new_desired += (replicas + surge - total).min(replicas - new_desired);
        }
        scale(world, &deployment, &new_rs, new_desired);
        // Scale old ReplicaSets down: unhealthy replicas first, then within maxUnavailable.
        let min_available = replicas - unavailable;
        let all_desired: i64 = olds.iter().map(desired).sum::<i64>() + new_desired;
        let new_unavailable = (new_desired - count(&new_rs, "availableReplicas")).max(0);
        let mut cleanup = all_desired - min_available - new_unavailable;
        let mut available: i64 = olds
            .iter()
            .map(|rs| count(rs, "availableReplicas"))
            .sum::<i64>()
            + count(&new_rs, "availableReplicas");
        for rs in &olds {
            let mut target = desired(rs);
            let unhealthy = (target - count(rs, "availableReplicas")).max(0);
            let cut = unhealthy.min(cleanup.max(0)).min(target);
            target -= cut;
            cleanup -= cut;
            let healthy_cut = (available - min_available).max(0).min(target);
            target -= healthy_cut;
            available -= healthy_cut;
            scale(world, &deployment, rs, target);
        }
    }

    // Status, from the ReplicaSets as they are now.
    let owned: Vec<Value> = owned_by(world, "replicasets", namespace, &uid)
        .into_iter()
        .cloned()
        .collect();
    let new_rs = owned
        .iter()
        .find(|rs| rs["metadata"]["uid"] == new_uid)
        .cloned()
        .unwrap_or(new_rs);
    let sum = |field: &str| owned.iter().map(|rs| count(rs, field)).sum::<i64>();
    let total_desired: i64 = owned.iter().map(desired).sum();
    let (actual, ready, available) = (
        sum("replicas"),
        sum("readyReplicas"),
        sum("availableReplicas"),
    );
    let updated = count(&new_rs, "replicas");
    let previous = deployment["status"].clone();
    let generation = deployment["metadata"]["generation"].as_i64().unwrap_or(1);
    let old_count = |field: &str| previous[field].as_i64().unwrap_or(0);
    progressed |= updated > old_count("updatedReplicas")
        || ready > old_count("readyReplicas")
        || available > old_count("availableReplicas")
        || actual < old_count("replicas");
    let step = world.steps;
    if progressed {
        world.last_progress.insert(deployment_uid.clone(), step);
    }
    let since_progress = step
        - world
            .last_progress
            .get(&deployment_uid)
            .copied()
            .unwrap_or(step);
    let deadline_seconds = spec["progressDeadlineSeconds"].as_u64().unwrap_or(600);
    let deadline_steps = deadline_seconds.div_ceil(u64::from(world.timing.seconds_per_step.max(1)));
    let complete = updated == replicas && actual == replicas && available == replicas;
    let unavailable = resolve(
        &spec["strategy"]["rollingUpdate"]["maxUnavailable"],
        replicas,
        false,
    );
    let available_condition = if available >= replicas - unavailable {
        condition(
            "Available",
            true,
            "MinimumReplicasAvailable",
            "Deployment has minimum availability.".into(),
            &previous,
        )
    } else {
        condition(
            "Available",
            false,
            "MinimumReplicasUnavailable",
            "Deployment does not have minimum availability.".into(),
            &previous,
        )
    };
    let previous_reason = previous["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == "Progressing"))
        .map(|c| c["reason"].clone());
    let progressing = if complete {
        condition(
            "Progressing",
            true,
            "NewReplicaSetAvailable",
            format!("ReplicaSet \"{new_name}\" has successfully progressed."),
            &previous,
        )
    } else if created_new {
        condition(
            "Progressing",
            true,
            "NewReplicaSetCreated",
            format!("Created new replica set \"{new_name}\""),
            &previous,
        )
    } else if progressed {
        condition(
            "Progressing",
            true,
            "ReplicaSetUpdated",
            format!("ReplicaSet \"{new_name}\" is progressing."),
            &previous,
        )
    } else if since_progress >= deadline_steps {
        condition(
            "Progressing",
            false,
            "ProgressDeadlineExceeded",
            format!("ReplicaSet \"{new_name}\" has timed out progressing."),
            &previous,
        )
    } else {
        let reason = previous_reason
            .and_then(|r| r.as_str().map(str::to_owned))
            .unwrap_or_else(|| "ReplicaSetUpdated".into());
        let message = previous["conditions"]
            .as_array()
            .and_then(|cs| cs.iter().find(|c| c["type"] == "Progressing"))
            .and_then(|c| c["message"].as_str().map(str::to_owned))
            .unwrap_or_else(|| format!("ReplicaSet \"{new_name}\" is progressing."));
        condition(
            "Progressing",
            reason != "ProgressDeadlineExceeded",
            &reason,
            message,
            &previous,
        )
    };
    let mut status = json!({
        "observedGeneration": generation,
        "replicas": actual, "updatedReplicas": updated, "readyReplicas": ready,
        "availableReplicas": available, "unavailableReplicas": (total_desired - available).max(0),
        "conditions": [available_condition, progressing],
    });
    if let Some(map) = status.as_object_mut() {
        map.retain(|_, value| value != &json!(0));
    }
    // The Deployment carries its current revision, as the controller annotates it.
    let mut current = world
        .get("deployments", namespace, name)
        .cloned()
        .unwrap_or(deployment);
    let new_revision = revision(&new_rs).to_string();
    if current["metadata"]["annotations"][REVISION] != new_revision.as_str()
        && let Some(deployments) = resources::by_plural("apps", "v1", "deployments")
    {
        let mut annotated = current.clone();
        annotated["metadata"]["annotations"][REVISION] = json!(new_revision);
        current = world.replace(deployments, &current, annotated);
    }
    if complete {
        world
            .completed
            .entry((namespace.to_string(), name.to_string(), generation))
            .or_insert_with(std::time::Instant::now);
    }
    if let Some(deployments) = resources::by_plural("apps", "v1", "deployments") {
        world.set_status(deployments, &current, status);
    }
}

/// The stored version of `rs` among `owned` (the scale-up reads the count before its write).
fn owned_version(owned: &[Value], rs: &Value) -> Value {
    owned
        .iter()
        .find(|o| o["metadata"]["uid"] == rs["metadata"]["uid"])
        .cloned()
        .unwrap_or_else(|| json!({}))
}
