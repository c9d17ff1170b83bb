//! Reads what explains a failed rollout: the workload's and the failing pod's events, and the
//! failing container's last log lines (its previous instance after a restart).

use k8s_openapi::api::core::v1::{Event, Pod};
use kube::Client;
use kube::api::{Api, ListParams, LogParams};
use serde_json::Value;

use super::diagnosis::{FailureReport, LOG_LINES, UNREADY_PODS_SHOWN};
use super::outcome::AppliedWorkload;
use super::pods::{PodProblem, UnreadyPod};

async fn events_of(
    client: &Client,
    namespace: &str,
    kind: &str,
    name: &str,
) -> Result<Vec<Value>, String> {
    let api: Api<Event> = Api::namespaced(client.clone(), namespace);
    let params = ListParams::default().fields(&format!(
        "involvedObject.kind={kind},involvedObject.name={name}"
    ));
    let events = api.list(&params).await.map_err(|e| e.to_string())?;
    Ok(events
        .items
        .iter()
        .filter_map(|event| serde_json::to_value(event).ok())
        .collect())
}

async fn logs_of(client: &Client, namespace: &str, problem: &PodProblem) -> Result<String, String> {
    let api: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let params = LogParams {
        container: problem.container.clone(),
        previous: problem.previous_instance,
        tail_lines: Some(LOG_LINES),
        ..LogParams::default()
    };
    api.logs(&problem.pod, &params)
        .await
        .map_err(|e| e.to_string())
}

/// Everything readable about `workload`'s failure: with `unready` (a timeout's new pods that
/// are not ready), the events of the first few of them too.
pub(crate) async fn read_failure(
    client: &Client,
    workload: &AppliedWorkload,
    why: String,
    problem: Option<PodProblem>,
    unready: Vec<UnreadyPod>,
    workload_uid: Option<&str>,
) -> FailureReport {
    let namespace = &workload.namespace;
    // Events outlive their object: with the uid, those of an earlier object of the same name
    // (the previous deploy's smoke-check Job) are left out.
    let workload_events = Some(
        events_of(client, namespace, &workload.kind, &workload.name)
            .await
            .map(|events| match workload_uid {
                Some(uid) => events
                    .into_iter()
                    .filter(|e| {
                        e.pointer("/involvedObject/uid").and_then(Value::as_str) == Some(uid)
                    })
                    .collect(),
                None => events,
            }),
    );
    let (pod_events, logs) = match &problem {
        Some(problem) => (
            Some(events_of(client, namespace, "Pod", &problem.pod).await),
            match problem.container {
                Some(_) => Some(logs_of(client, namespace, problem).await),
                None => None,
            },
        ),
        None => (None, None),
    };
    let mut unready_read = Vec::with_capacity(unready.len());
    for (index, pod) in unready.into_iter().enumerate() {
        let events = if index < UNREADY_PODS_SHOWN {
            Some(events_of(client, namespace, "Pod", &pod.pod).await)
        } else {
            None
        };
        unready_read.push((pod, events));
    }
    FailureReport {
        workload: format!("{}/{}", workload.kind.to_lowercase(), workload.name),
        unready: unready_read,
        why,
        problem,
        workload_events,
        pod_events,
        logs,
    }
}
