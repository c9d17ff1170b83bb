//! The simulated Job controller: one pod at a time from the Job's template, playing the
//! scenario the test set for the Job's name (by default it completes after two steps); a
//! failed pod is replaced until `backoffLimit` failures, then the Job fails with
//! `BackoffLimitExceeded`, as the real controller reports it.

use serde_json::{Value, json};

use super::events;
use super::replica_set_controller::{owned_by, owner_reference};
use super::resources;
use super::scenario::PodScenario;
use super::world::{PodRun, World, random_suffix, timestamp};

fn has_condition(job: &Value, kind: &str) -> bool {
    job["status"]["conditions"]
        .as_array()
        .is_some_and(|conditions| {
            conditions
                .iter()
                .any(|c| c["type"] == kind && c["status"] == "True")
        })
}

fn condition(kind: &str, reason: &str, message: &str) -> Value {
    let now = timestamp();
    json!({"type": kind, "status": "True", "reason": reason, "message": message,
        "lastProbeTime": now, "lastTransitionTime": now})
}

pub fn sync(world: &mut World) {
    let (Some(jobs), Some(pods_type)) = (
        resources::by_plural("batch", "v1", "jobs"),
        resources::by_plural("", "v1", "pods"),
    ) else {
        return;
    };
    let keys = world.keys_of("jobs");
    for key in keys {
        let Some(job) = world.objects.get(&key).cloned() else {
            continue;
        };
        if has_condition(&job, "Complete") || has_condition(&job, "Failed") {
            continue;
        }
        let (namespace, name) = (key.1.clone(), key.2.clone());
        let uid = job["metadata"]["uid"].clone();
        let pods: Vec<Value> = owned_by(world, "pods", &namespace, &uid)
            .into_iter()
            .cloned()
            .collect();
        let phase = |pod: &Value, wanted: &str| pod["status"]["phase"] == wanted;
        let succeeded = pods.iter().filter(|p| phase(p, "Succeeded")).count();
        let failed = pods.iter().filter(|p| phase(p, "Failed")).count();
        let active = pods.len() - succeeded - failed;
        let backoff_limit = job["spec"]["backoffLimit"].as_u64().unwrap_or(6) as usize;
        let start_time = job["status"]["startTime"]
            .as_str()
            .map(str::to_owned)
            .unwrap_or_else(timestamp);
        let mut status = json!({"startTime": start_time, "active": active, "succeeded": succeeded,
            "failed": failed, "ready": 0, "terminating": 0});
        if succeeded >= 1 {
            status["active"] = json!(0);
            status["completionTime"] = json!(timestamp());
            status["conditions"] = json!([
                condition(
                    "SuccessCriteriaMet",
                    "CompletionsReached",
                    "Reached expected number of succeeded pods"
                ),
                condition(
                    "Complete",
                    "CompletionsReached",
                    "Reached expected number of succeeded pods"
                ),
            ]);
            world.set_status(jobs, &job, status);
            events::record(
                world,
                &job,
                "Normal",
                "Completed",
                "Job completed",
                "job-controller",
            );
            continue;
        }
        if failed > backoff_limit {
            let message = "Job has reached the specified backoff limit";
            status["active"] = json!(0);
            status["conditions"] = json!([
                condition("FailureTarget", "BackoffLimitExceeded", message),
                condition("Failed", "BackoffLimitExceeded", message),
            ]);
            world.set_status(jobs, &job, status);
            events::record(
                world,
                &job,
                "Warning",
                "BackoffLimitExceeded",
                message,
                "job-controller",
            );
            continue;
        }
        if active == 0 {
            let template = &job["spec"]["template"];
            let mut metadata = template["metadata"].clone();
            if !metadata.is_object() {
                metadata = json!({});
            }
            let pod_name = format!("{name}-{}", random_suffix(5));
            metadata["name"] = json!(pod_name);
            metadata["namespace"] = json!(namespace);
            metadata["ownerReferences"] = json!([owner_reference(&job)]);
            for label in ["job-name", "batch.kubernetes.io/job-name"] {
                metadata["labels"][label] = json!(name);
            }
            for label in ["controller-uid", "batch.kubernetes.io/controller-uid"] {
                metadata["labels"][label] = uid.clone();
            }
            let pod = json!({"metadata": metadata, "spec": template["spec"],
                "status": {"phase": "Pending", "qosClass": "BestEffort"}});
            let scenario = world
                .scenarios
                .get(&(namespace.clone(), name.clone()))
                .cloned()
                .unwrap_or(PodScenario::Completes {
                    exit_code: 0,
                    after_steps: 2,
                    log_lines: Vec::new(),
                });
            if let Ok(created) = world.create(pods_type, pod) {
                let pod_uid = created["metadata"]["uid"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                world.pods.insert(
                    pod_uid,
                    PodRun {
                        scenario,
                        age_steps: 0,
                    },
                );
                let job = world.objects.get(&key).cloned().unwrap_or(job.clone());
                events::record(
                    world,
                    &job,
                    "Normal",
                    "SuccessfulCreate",
                    &format!("Created pod: {pod_name}"),
                    "job-controller",
                );
            }
            status["active"] = json!(1);
        }
        if let Some(current) = world.objects.get(&key).cloned() {
            world.set_status(jobs, &current, status);
        }
    }
}
