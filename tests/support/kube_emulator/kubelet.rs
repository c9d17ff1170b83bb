//! The simulated scheduler and kubelet: each step moves every pod along the scenario it was
//! created with and writes the status (phase, conditions, container states) and events a real
//! node would.

use serde_json::{Value, json};

use super::events;
use super::resources;
use super::scenario::PodScenario;
use super::world::{PodRun, World};

/// What the container prints, for `pods/log`.
pub fn log_lines(scenario: &PodScenario) -> Vec<String> {
    match scenario {
        PodScenario::CrashLoop { log_lines, .. } | PodScenario::Completes { log_lines, .. } => {
            log_lines.clone()
        }
        _ => Vec::new(),
    }
}

pub fn step(world: &mut World) {
    let Some(pods) = resources::by_plural("", "v1", "pods") else {
        return;
    };
    let keys = world.keys_of("pods");
    for key in keys {
        let Some(pod) = world.objects.get(&key).cloned() else {
            continue;
        };
        let uid = pod["metadata"]["uid"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        // Pods the test seeded directly run ready from the start.
        let run = world.pods.entry(uid).or_insert(PodRun {
            scenario: PodScenario::Ready { after_steps: 0 },
            age_steps: 0,
        });
        run.age_steps += 1;
        let run = run.clone();
        let (status, happenings) = status(&pod, &run);
        world.set_status(pods, &pod, status);
        let pod = world.objects.get(&key).cloned().unwrap_or(pod);
        for (kind, reason, message, component) in happenings {
            events::record(world, &pod, kind, reason, &message, component);
        }
    }
}

type Happening = (&'static str, &'static str, String, &'static str);

/// A container state and whether the container is ready.
struct Container {
    state: Value,
    last_state: Value,
    ready: bool,
    restarts: u32,
}

fn status(pod: &Value, run: &PodRun) -> (Value, Vec<Happening>) {
    let name = pod["metadata"]["name"].as_str().unwrap_or_default();
    let namespace = pod["metadata"]["namespace"].as_str().unwrap_or_default();
    let uid = pod["metadata"]["uid"].as_str().unwrap_or_default();
    let since = pod["metadata"]["creationTimestamp"].clone();
    let containers = pod["spec"]["containers"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let first = containers.first().cloned().unwrap_or(json!({}));
    let container_name = first["name"].as_str().unwrap_or("app").to_string();
    let image = first["image"].as_str().unwrap_or_default().to_string();
    let age = run.age_steps;
    let running = json!({"running": {"startedAt": since}});
    let waiting = |reason: &str, message: Option<String>| match message {
        Some(message) => json!({"waiting": {"reason": reason, "message": message}}),
        None => json!({"waiting": {"reason": reason}}),
    };
    let mut happenings: Vec<Happening> = Vec::new();
    let mut phase = "Running";
    let mut scheduled = true;
    let container = match &run.scenario {
        PodScenario::Ready { after_steps }
        | PodScenario::Slow {
            steps_per_pod: after_steps,
        } => {
            if age < 1 && *after_steps > 0 {
                phase = "Pending";
                Container {
                    state: waiting("ContainerCreating", None),
                    last_state: json!({}),
                    ready: false,
                    restarts: 0,
                }
            } else {
                Container {
                    state: running.clone(),
                    last_state: json!({}),
                    ready: age >= *after_steps,
                    restarts: 0,
                }
            }
        }
        PodScenario::NeverReady => {
            if age >= 2 {
                happenings.push((
                    "Warning",
                    "Unhealthy",
                    "Readiness probe failed: HTTP probe failed with statuscode: 503".into(),
                    "kubelet",
                ));
            }
            Container {
                state: running.clone(),
                last_state: json!({}),
                ready: false,
                restarts: 0,
            }
        }
        PodScenario::CrashLoop { exit_code, .. } => {
            if age < 2 {
                Container {
                    state: running.clone(),
                    last_state: json!({}),
                    ready: false,
                    restarts: 0,
                }
            } else {
                let restarts = age - 1;
                happenings.push(("Warning", "BackOff", format!("Back-off restarting failed container {container_name} in pod {name}_{namespace}({uid})"), "kubelet"));
                Container {
                    state: waiting(
                        "CrashLoopBackOff",
                        Some(format!(
                            "back-off 10s restarting failed container={container_name} pod={name}_{namespace}({uid})"
                        )),
                    ),
                    last_state: json!({"terminated": {"exitCode": exit_code, "reason": "Error", "startedAt": since, "finishedAt": since, "containerID": format!("containerd://{}", uid.replace('-', ""))}}),
                    ready: false,
                    restarts,
                }
            }
        }
        PodScenario::ImagePullFails => {
            phase = "Pending";
            if age < 2 {
                let message = format!(
                    "failed to pull and unpack image \"{image}\": failed to resolve reference \"{image}\": not found"
                );
                happenings.push((
                    "Warning",
                    "Failed",
                    format!("Failed to pull image \"{image}\": {message}"),
                    "kubelet",
                ));
                happenings.push(("Warning", "Failed", "Error: ErrImagePull".into(), "kubelet"));
                Container {
                    state: waiting("ErrImagePull", Some(message)),
                    last_state: json!({}),
                    ready: false,
                    restarts: 0,
                }
            } else {
                happenings.push((
                    "Normal",
                    "BackOff",
                    format!("Back-off pulling image \"{image}\""),
                    "kubelet",
                ));
                happenings.push((
                    "Warning",
                    "Failed",
                    "Error: ImagePullBackOff".into(),
                    "kubelet",
                ));
                Container {
                    state: waiting(
                        "ImagePullBackOff",
                        Some(format!("Back-off pulling image \"{image}\"")),
                    ),
                    last_state: json!({}),
                    ready: false,
                    restarts: 0,
                }
            }
        }
        PodScenario::Completes {
            exit_code,
            after_steps,
            ..
        } => {
            if age < *after_steps {
                Container {
                    state: running.clone(),
                    last_state: json!({}),
                    ready: false,
                    restarts: 0,
                }
            } else {
                phase = if *exit_code == 0 {
                    "Succeeded"
                } else {
                    "Failed"
                };
                let reason = if *exit_code == 0 {
                    "Completed"
                } else {
                    "Error"
                };
                Container {
                    state: json!({"terminated": {"exitCode": exit_code, "reason": reason, "startedAt": since, "finishedAt": since, "containerID": format!("containerd://{}", uid.replace('-', ""))}}),
                    last_state: json!({}),
                    ready: false,
                    restarts: 0,
                }
            }
        }
        PodScenario::Unschedulable => {
            phase = "Pending";
            scheduled = false;
            happenings.push(("Warning", "FailedScheduling", "0/3 nodes are available: 3 Insufficient cpu. preemption: 0/3 nodes are available: 3 No preemption victims found for incoming pod.".into(), "default-scheduler"));
            Container {
                state: json!({}),
                last_state: json!({}),
                ready: false,
                restarts: 0,
            }
        }
        PodScenario::CreateContainerConfigError => {
            phase = "Pending";
            let message = format!(
                "couldn't find key password in Secret {namespace}/{container_name}-credentials"
            );
            happenings.push(("Warning", "Failed", format!("Error: {message}"), "kubelet"));
            Container {
                state: waiting("CreateContainerConfigError", Some(message)),
                last_state: json!({}),
                ready: false,
                restarts: 0,
            }
        }
    };
    let condition = |kind: &str, ok: bool| json!({"type": kind, "status": if ok { "True" } else { "False" }, "lastProbeTime": null, "lastTransitionTime": since});
    if !scheduled {
        let status = json!({
            "phase": "Pending",
            "conditions": [{"type": "PodScheduled", "status": "False", "lastProbeTime": null, "lastTransitionTime": since,
                "reason": "Unschedulable",
                "message": "0/3 nodes are available: 3 Insufficient cpu. preemption: 0/3 nodes are available: 3 No preemption victims found for incoming pod."}],
            "qosClass": "Burstable",
        });
        return (status, happenings);
    }
    let statuses: Vec<Value> = containers
        .iter()
        .map(|c| {
            json!({
                "name": c["name"], "image": c["image"], "imageID": "",
                "ready": container.ready, "restartCount": container.restarts,
                "started": container.state.get("running").is_some(),
                "state": container.state, "lastState": container.last_state,
            })
        })
        .collect();
    let mut ready_condition = condition("Ready", container.ready);
    let mut containers_ready = condition("ContainersReady", container.ready);
    if !container.ready {
        let message = format!("containers with unready status: [{container_name}]");
        for c in [&mut ready_condition, &mut containers_ready] {
            c["reason"] = json!("ContainersNotReady");
            c["message"] = json!(message);
        }
    }
    let status = json!({
        "phase": phase,
        "conditions": [condition("PodReadyToStartContainers", true), condition("Initialized", true), ready_condition, containers_ready, condition("PodScheduled", true)],
        "hostIP": "10.0.1.17", "hostIPs": [{"ip": "10.0.1.17"}],
        "podIP": pod_ip(uid), "podIPs": [{"ip": pod_ip(uid)}],
        "startTime": since,
        "containerStatuses": statuses,
        "qosClass": "BestEffort",
    });
    (status, happenings)
}

fn pod_ip(uid: &str) -> String {
    let bytes = uid.as_bytes();
    format!(
        "10.244.{}.{}",
        bytes.first().copied().unwrap_or(1),
        bytes.get(1).copied().unwrap_or(1)
    )
}
