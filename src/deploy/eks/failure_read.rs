//! Reads what explains a failed rollout: the workload's and the failing pod's events, and the
//! failing container's last log lines (its previous instance after a restart).

use k8s_openapi::api::core::v1::{Event, Pod};
use kube::Client;
use kube::api::{Api, ListParams, LogParams};
use serde_json::Value;

use super::diagnosis::{FailureReport, LOG_LINES};
use super::outcome::AppliedWorkload;
use super::pods::PodProblem;

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

/// Everything readable about `workload`'s failure.
pub(crate) async fn read_failure(
    client: &Client,
    workload: &AppliedWorkload,
    why: String,
    problem: Option<PodProblem>,
) -> FailureReport {
    let namespace = &workload.namespace;
    let workload_events = Some(events_of(client, namespace, &workload.kind, &workload.name).await);
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
    FailureReport {
        workload: format!("{}/{}", workload.kind.to_lowercase(), workload.name),
        why,
        problem,
        workload_events,
        pod_events,
        logs,
    }
}
