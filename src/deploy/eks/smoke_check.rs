//! The check of a blue/green deploy's new slot before traffic switches to it: an HTTP GET
//! through the API server's service proxy to the preview Service (so shipit needs no network
//! path into the cluster), or a Job that must complete.

use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::Client;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube::client::Body;
use serde_json::Value;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::api_failure::kube_failure;
use super::diagnosis::explain;
use super::error::{EksDeployError, EksErrorKind};
use super::failure_read::read_failure;
use super::job_verdict::{JobState, failed_job_pod, job_state};
use super::observer::EksObserver;
use super::outcome::AppliedWorkload;
use crate::pipeline::model::SmokeHttp;

const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);
const POLL: Duration = Duration::from_secs(1);

/// How long a smoke check may take.
pub(crate) fn smoke_timeout(timeout: Option<Duration>) -> Duration {
    timeout.unwrap_or(DEFAULT_TIMEOUT)
}

/// How a check ended: passed (what it saw), or failed with the explanation.
pub(crate) type CheckResult = Result<String, String>;

/// Waits `POLL`, or returns `false` when cancelled or past the deadline first.
async fn pause(deadline: Instant, cancel: &CancellationToken) -> bool {
    if Instant::now() + POLL > deadline {
        return false;
    }
    tokio::select! {
        _ = cancel.cancelled() => false,
        _ = tokio::time::sleep(POLL) => true,
    }
}

fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let line: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if line.chars().count() > 200 {
        format!("{}…", line.chars().take(200).collect::<String>())
    } else {
        line
    }
}

/// `GET <path>` through `/api/v1/namespaces/NS/services/NAME:PORT/proxy`, until it answers
/// `expect_status`. The API server answers 503 "no endpoints available" while the Service has
/// no ready endpoint yet: that is waited out; any other answer is the verdict.
pub(crate) async fn http_check(
    client: &Client,
    namespace: &str,
    service: &str,
    port: u16,
    http: &SmokeHttp,
    timeout: Duration,
    cancel: &CancellationToken,
) -> Result<CheckResult, EksDeployError> {
    let path = if http.path.starts_with('/') {
        http.path.clone()
    } else {
        format!("/{}", http.path)
    };
    let uri = format!("/api/v1/namespaces/{namespace}/services/{service}:{port}/proxy{path}");
    let deadline = Instant::now() + timeout;
    loop {
        let request = http::Request::get(&uri)
            .body(Body::from(Vec::new()))
            .map_err(|e| EksDeployError::remote(format!("failed to build the smoke check: {e}")))?;
        let response = client
            .send(request)
            .await
            .map_err(|e| kube_failure(&format!("send the smoke check GET {path}"), &e))?;
        let status = response.status().as_u16();
        let body = response
            .into_body()
            .collect_bytes()
            .await
            .map(|bytes| bytes.to_vec())
            .unwrap_or_default();
        if status == http.expect_status {
            return Ok(Ok(format!(
                "smoke check passed: GET {path} through service {service}:{port} answered {status}"
            )));
        }
        let waiting_for_endpoints =
            status == 503 && String::from_utf8_lossy(&body).contains("no endpoints available");
        if waiting_for_endpoints && pause(deadline, cancel).await {
            continue;
        }
        return Ok(Err(format!(
            "smoke check failed: GET {path} through service {service}:{port} answered {status}, expected {}: {}",
            http.expect_status,
            excerpt(&body)
        )));
    }
}

/// Creates the Job (deleting a finished one of the same name first, unless `resume`, which
/// re-attaches to it) and waits for it to complete or fail.
pub(crate) async fn job_check(
    client: &Client,
    namespace: &str,
    job: &Value,
    resume: bool,
    timeout: Duration,
    observer: &dyn EksObserver,
    cancel: &CancellationToken,
) -> Result<CheckResult, EksDeployError> {
    let mut job: Job = serde_json::from_value(job.clone()).map_err(|e| {
        EksDeployError::config(format!("blue_green.smoke_check.job is not a Job: {e}"))
    })?;
    job.metadata.namespace = Some(namespace.to_owned());
    let name = job.metadata.name.clone().unwrap_or_default();
    if name.is_empty() {
        return Err(EksDeployError::config(
            "blue_green.smoke_check.job: the Job has no metadata.name",
        ));
    }
    let api: Api<Job> = Api::namespaced(client.clone(), namespace);
    let deadline = Instant::now() + timeout;
    let existing = api
        .get_opt(&name)
        .await
        .map_err(|e| kube_failure(&format!("read job/{name}"), &e))?;
    if existing.is_some() && !resume {
        // A Job's pod template cannot change and a finished Job never runs again: the last
        // deploy's check goes, with its pods, before this deploy's starts.
        api.delete(&name, &DeleteParams::background())
            .await
            .map_err(|e| kube_failure(&format!("delete the previous job/{name}"), &e))?;
        while api
            .get_opt(&name)
            .await
            .map_err(|e| kube_failure(&format!("read job/{name}"), &e))?
            .is_some()
        {
            if !pause(deadline, cancel).await {
                return Ok(Err(format!(
                    "smoke check job/{name}: the previous run's Job was not deleted in time"
                )));
            }
        }
    }
    if existing.is_none() || !resume {
        api.create(&PostParams::default(), &job)
            .await
            .map_err(|e| kube_failure(&format!("create job/{name}"), &e))?;
        observer.on_progress(&format!("smoke check: job/{name} created"));
    } else {
        observer.on_progress(&format!("smoke check: re-attaching to job/{name}"));
    }
    loop {
        let live = api
            .get(&name)
            .await
            .map_err(|e| kube_failure(&format!("read job/{name}"), &e))?;
        let live = serde_json::to_value(&live).unwrap_or(Value::Null);
        match job_state(&live) {
            JobState::Succeeded => {
                return Ok(Ok(format!("smoke check passed: job/{name} completed")));
            }
            JobState::Failed(why) => {
                let uid = live.pointer("/metadata/uid").and_then(Value::as_str);
                return Ok(Err(
                    explain_failed_job(client, namespace, &name, uid, why).await
                ));
            }
            JobState::Running => {}
        }
        if cancel.is_cancelled() {
            return Err(EksDeployError::new(
                EksErrorKind::Cancelled,
                format!("cancelled while job/{name} runs; a resume re-attaches to it"),
            ));
        }
        if !pause(deadline, cancel).await {
            let message = format!(
                "smoke check job/{name} did not finish within {}",
                humantime::format_duration(timeout)
            );
            return Ok(Err(explain_failed_job(
                client,
                namespace,
                &name,
                live.pointer("/metadata/uid").and_then(Value::as_str),
                message,
            )
            .await));
        }
    }
}

/// The failed Job explained as a failed rollout is: its events, its failed pod's container,
/// exit code, events and last log lines.
async fn explain_failed_job(
    client: &Client,
    namespace: &str,
    name: &str,
    uid: Option<&str>,
    why: String,
) -> String {
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let problem = pods
        .list(&ListParams::default().labels(&format!("job-name={name}")))
        .await
        .ok()
        .map(|list| {
            list.items
                .iter()
                .filter_map(|pod| serde_json::to_value(pod).ok())
                .collect::<Vec<_>>()
        })
        .and_then(|pods| failed_job_pod(&pods));
    let job = AppliedWorkload {
        kind: "Job".into(),
        namespace: namespace.to_owned(),
        name: name.to_owned(),
        generation: 0,
    };
    let report = read_failure(
        client,
        &job,
        format!("smoke check failed: {why}"),
        problem,
        Vec::new(),
        uid,
    )
    .await;
    explain(&report)
}
