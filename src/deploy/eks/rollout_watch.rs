//! Waiting for rollouts by watching, not polling: a watch on each workload, its ReplicaSets
//! and its pods keeps a local copy current, and every change is judged again. A tick judges
//! too, since "unready for too long" becomes true without any change. The caller's timeout
//! and cancellation bound the wait.

use std::time::Duration;

use chrono::Utc;
use futures::stream::{BoxStream, SelectAll};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::Pod;
use kube::Client;
use kube::api::DynamicObject;
use kube::core::ApiResource;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use super::api_failure::kube_failure;
use super::cluster_apply::{ClusterKinds, api_for};
use super::error::EksDeployError;
use super::gate::progress_line;
use super::observer::EksObserver;
use super::outcome::AppliedWorkload;
use super::pods::PodLimits;
use super::workload_verdict::{WorkloadVerdict, judge_workload};

/// How often the workloads are judged when nothing changes.
const TICK: Duration = Duration::from_secs(5);

/// A workload and what the watch last saw of it.
struct Watched {
    workload: AppliedWorkload,
    short: String,
    object: Store<DynamicObject>,
    replica_sets: Option<Store<DynamicObject>>,
    pods: Store<DynamicObject>,
    last_line: String,
}

/// How the wait ended, with each workload's last verdict.
pub(crate) enum WaitEnd {
    Complete,
    /// `failed` is the index of the workload that failed.
    Failed {
        failed: usize,
    },
    TimedOut,
    Cancelled,
}

pub(crate) struct WaitResult {
    pub(crate) end: WaitEnd,
    pub(crate) verdicts: Vec<(AppliedWorkload, Option<WorkloadVerdict>)>,
}

pub(crate) fn short_name(workload: &AppliedWorkload) -> String {
    format!("{}/{}", workload.kind.to_lowercase(), workload.name)
}

fn values(store: &Store<DynamicObject>) -> Vec<Value> {
    store
        .state()
        .iter()
        .map(|object| serde_json::to_value(object.as_ref()).unwrap_or(Value::Null))
        .collect()
}

pub(crate) fn selector_of(object: &Value) -> String {
    object
        .pointer("/spec/selector/matchLabels")
        .and_then(Value::as_object)
        .map(|labels| {
            labels
                .iter()
                .filter_map(|(k, v)| Some(format!("{k}={}", v.as_str()?)))
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default()
}

type Signals = SelectAll<BoxStream<'static, Result<(), String>>>;

fn watch_into(
    api: kube::Api<DynamicObject>,
    config: watcher::Config,
    resource: &ApiResource,
    signals: &mut Signals,
) -> Store<DynamicObject> {
    let writer = reflector::store::Writer::new(resource.clone());
    let store = writer.as_reader();
    let stream = watcher(api, config)
        .default_backoff()
        .reflect(writer)
        .map_ok(|_| ())
        .map_err(|error| error.to_string());
    signals.push(stream.boxed());
    store
}

async fn watch_workload(
    client: &Client,
    kinds: &mut ClusterKinds,
    workload: &AppliedWorkload,
    signals: &mut Signals,
) -> Result<Watched, EksDeployError> {
    let short = short_name(workload);
    let resource = kinds
        .resolve(client, "apps/v1", &workload.kind)
        .await
        .map_err(|e| kube_failure(&format!("find {short}"), &e))?;
    let api = api_for(client, &resource, Some(&workload.namespace));
    let live = api
        .get(&workload.name)
        .await
        .map_err(|e| kube_failure(&format!("read {short}"), &e))?;
    let selector = selector_of(&serde_json::to_value(&live).unwrap_or(Value::Null));
    let object = watch_into(
        api,
        watcher::Config::default().fields(&format!("metadata.name={}", workload.name)),
        &resource,
        signals,
    );
    let labelled = || watcher::Config::default().labels(&selector);
    let replica_sets = (workload.kind == "Deployment").then(|| {
        let resource = ApiResource::erase::<ReplicaSet>(&());
        let api = api_for(client, &resource, Some(&workload.namespace));
        watch_into(api, labelled(), &resource, signals)
    });
    let pod_resource = ApiResource::erase::<Pod>(&());
    let pods = watch_into(
        api_for(client, &pod_resource, Some(&workload.namespace)),
        labelled(),
        &pod_resource,
        signals,
    );
    Ok(Watched {
        workload: workload.clone(),
        short,
        object,
        replica_sets,
        pods,
        last_line: String::new(),
    })
}

/// Watches `workloads` until all complete, one fails, `timeout` passes or `cancel` fires.
pub(crate) async fn wait_for_rollouts(
    client: &Client,
    kinds: &mut ClusterKinds,
    workloads: &[AppliedWorkload],
    limits: &PodLimits,
    timeout: Duration,
    observer: &dyn EksObserver,
    cancel: &CancellationToken,
) -> Result<WaitResult, EksDeployError> {
    let mut signals: Signals = SelectAll::new();
    let mut watched = Vec::with_capacity(workloads.len());
    for workload in workloads {
        watched.push(watch_workload(client, kinds, workload, &mut signals).await?);
    }
    let deadline = tokio::time::Instant::now() + timeout;
    let mut tick = tokio::time::interval(TICK);
    let mut last_watch_error = String::new();
    loop {
        let end = tokio::select! {
            biased;
            _ = cancel.cancelled() => Some(WaitEnd::Cancelled),
            _ = tokio::time::sleep_until(deadline) => Some(WaitEnd::TimedOut),
            signal = signals.next() => {
                if let Some(Err(error)) = signal
                    && error != last_watch_error
                {
                    // The watch retries with backoff; say so once per distinct error.
                    observer.on_progress(&format!("watch interrupted, retrying: {error}"));
                    last_watch_error = error;
                }
                None
            }
            _ = tick.tick() => None,
        };
        let verdicts = judge_all(&mut watched, limits, observer);
        if let Some(end) = end {
            return Ok(WaitResult { end, verdicts });
        }
        if let Some(failed) = verdicts
            .iter()
            .position(|(_, v)| v.as_ref().is_some_and(WorkloadVerdict::has_failed))
        {
            return Ok(WaitResult {
                end: WaitEnd::Failed { failed },
                verdicts,
            });
        }
        let all_complete = verdicts.iter().all(|(_, v)| {
            v.as_ref()
                .is_some_and(|v| matches!(v.state, super::gate::RolloutState::Complete(_)))
        });
        if all_complete {
            return Ok(WaitResult {
                end: WaitEnd::Complete,
                verdicts,
            });
        }
    }
}

fn judge_all(
    watched: &mut [Watched],
    limits: &PodLimits,
    observer: &dyn EksObserver,
) -> Vec<(AppliedWorkload, Option<WorkloadVerdict>)> {
    let now = Utc::now();
    watched
        .iter_mut()
        .map(|watched| {
            let object = values(&watched.object).into_iter().next();
            let verdict = object.map(|object| {
                let replica_sets = watched
                    .replica_sets
                    .as_ref()
                    .map(values)
                    .unwrap_or_default();
                let pods = values(&watched.pods);
                judge_workload(
                    &watched.workload.kind,
                    &object,
                    &replica_sets,
                    &pods,
                    limits,
                    now,
                )
            });
            if let Some(verdict) = &verdict {
                let mut line = progress_line(&watched.short, &verdict.counts, &verdict.state);
                if let Some(problem) = &verdict.problem {
                    line = format!(
                        "{}: {}",
                        watched.short,
                        super::diagnosis::problem_summary(problem)
                    );
                }
                if line != watched.last_line {
                    observer.on_progress(&line);
                    watched.last_line = line;
                }
            }
            (watched.workload.clone(), verdict)
        })
        .collect()
}
