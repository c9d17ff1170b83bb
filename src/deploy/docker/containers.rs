//! The daemon calls of the docker target: list a target's containers by label, create,
//! start, look at, read the logs of, and remove containers. Thin wrappers that translate
//! bollard's types into the plain data the planner and the gate decide on.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bollard::Docker;
use bollard::errors::Error as BollardError;
use bollard::models::{ContainerStateStatusEnum, HealthStatusEnum};
use bollard::query_parameters::{
    CreateContainerOptions, InspectContainerOptions, ListContainersOptions, LogsOptions,
    RemoveContainerOptions, StopContainerOptions,
};
use futures::StreamExt;

use super::health::{ContainerStatus, DockerHealth};
use super::plan::{ExistingContainer, label, parse_host_ports_label};

/// How many log lines a failure report carries.
pub(crate) const REPORTED_LOG_LINES: usize = 30;

/// Seconds a container being retired (the previous version after a deploy, or every
/// container of a target taken down) gets to stop on SIGTERM before it is killed.
const STOP_GRACE_SECONDS: i32 = 10;

pub(crate) fn is_not_found(error: &BollardError) -> bool {
    matches!(
        error,
        BollardError::DockerResponseServerError {
            status_code: 404,
            ..
        }
    )
}

/// A container of the target as the daemon lists it, with the host ports it serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ListedContainer {
    pub container: ExistingContainer,
    /// From the `shipit.host-ports` label; for a container made before shipit wrote that
    /// label, the ports it publishes (a host-networking one then reports none).
    pub host_ports: Vec<u16>,
}

/// Every container (running or not) labelled with this pipeline and target. The deploy, its
/// preview and the take-down all see a target through this one listing.
pub(crate) async fn list_target_containers(
    docker: &Docker,
    pipeline: &str,
    target: &str,
) -> Result<Vec<ListedContainer>, BollardError> {
    let filters: HashMap<String, Vec<String>> = HashMap::from([(
        "label".to_owned(),
        vec![
            format!("{}={pipeline}", label::PIPELINE),
            format!("{}={target}", label::TARGET),
        ],
    )]);
    let summaries = docker
        .list_containers(Some(ListContainersOptions {
            all: true,
            filters: Some(filters),
            ..ListContainersOptions::default()
        }))
        .await?;
    Ok(summaries
        .into_iter()
        .filter_map(|summary| {
            let id = summary.id?;
            let name = summary
                .names
                .and_then(|names| names.into_iter().next())
                .unwrap_or_else(|| id.clone());
            let state = summary
                .state
                .map(|state| state.to_string())
                .unwrap_or_default();
            let labels = summary.labels.unwrap_or_default();
            let host_ports = parse_host_ports_label(&labels).unwrap_or_else(|| {
                let mut published: Vec<u16> = summary
                    .ports
                    .unwrap_or_default()
                    .iter()
                    .filter_map(|port| port.public_port)
                    .collect();
                published.sort_unstable();
                published.dedup();
                published
            });
            let container = ExistingContainer::from_labels(id, name, state, &labels)?;
            Some(ListedContainer {
                container,
                host_ports,
            })
        })
        .collect())
}

/// Creates a container under `name` and returns its id.
pub(crate) async fn create(
    docker: &Docker,
    name: &str,
    body: bollard::models::ContainerCreateBody,
) -> Result<String, BollardError> {
    let created = docker
        .create_container(
            Some(CreateContainerOptions {
                name: Some(name.to_owned()),
                ..CreateContainerOptions::default()
            }),
            body,
        )
        .await?;
    Ok(created.id)
}

pub(crate) async fn start(docker: &Docker, id: &str) -> Result<(), BollardError> {
    docker.start_container(id, None).await
}

/// Removes a container, stopping it first. A container that is already gone counts as
/// removed.
pub(crate) async fn remove(docker: &Docker, id: &str) -> Result<(), BollardError> {
    let result = docker
        .remove_container(
            id,
            Some(RemoveContainerOptions {
                force: true,
                ..RemoveContainerOptions::default()
            }),
        )
        .await;
    match result {
        Err(error) if is_not_found(&error) => Ok(()),
        other => other,
    }
}

/// Stops a container gently (SIGTERM, then SIGKILL after the grace period) so in-flight
/// requests can finish, then removes it. A container already gone counts as retired.
pub(crate) async fn retire(docker: &Docker, id: &str) -> Result<(), BollardError> {
    let stopped = docker
        .stop_container(
            id,
            Some(StopContainerOptions {
                t: Some(STOP_GRACE_SECONDS),
                signal: None,
            }),
        )
        .await;
    match stopped {
        Ok(()) => {}
        Err(error) if is_not_found(&error) => return Ok(()),
        // 304: already stopped.
        Err(BollardError::DockerResponseServerError {
            status_code: 304, ..
        }) => {}
        Err(error) => return Err(error),
    }
    remove(docker, id).await
}

/// What one inspect of a container tells the gate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ContainerLook {
    pub status: ContainerStatus,
    pub exit_code: Option<i64>,
    pub restart_count: i64,
    pub docker_health: Option<DockerHealth>,
    /// How long the process has been up by the daemon's clock, when it runs.
    pub uptime: Option<Duration>,
}

pub(crate) async fn look(docker: &Docker, id: &str) -> Result<ContainerLook, BollardError> {
    let inspected = match docker
        .inspect_container(id, None::<InspectContainerOptions>)
        .await
    {
        Ok(inspected) => inspected,
        Err(error) if is_not_found(&error) => {
            return Ok(ContainerLook {
                status: ContainerStatus::Gone,
                exit_code: None,
                restart_count: 0,
                docker_health: None,
                uptime: None,
            });
        }
        Err(error) => return Err(error),
    };
    let state = inspected.state.unwrap_or_default();
    let status = match state.status {
        Some(ContainerStateStatusEnum::CREATED) => ContainerStatus::Created,
        Some(ContainerStateStatusEnum::RUNNING) => ContainerStatus::Running,
        Some(ContainerStateStatusEnum::PAUSED) => ContainerStatus::Paused,
        Some(ContainerStateStatusEnum::RESTARTING) => ContainerStatus::Restarting,
        Some(ContainerStateStatusEnum::REMOVING) => ContainerStatus::Removing,
        Some(ContainerStateStatusEnum::DEAD) => ContainerStatus::Dead,
        Some(ContainerStateStatusEnum::EXITED) | Some(ContainerStateStatusEnum::STOPPING) => {
            ContainerStatus::Exited
        }
        Some(ContainerStateStatusEnum::EMPTY) | None => {
            if state.running == Some(true) {
                ContainerStatus::Running
            } else {
                ContainerStatus::Created
            }
        }
    };
    let docker_health = state.health.and_then(|health| match health.status {
        Some(HealthStatusEnum::STARTING) => Some(DockerHealth::Starting),
        Some(HealthStatusEnum::HEALTHY) => Some(DockerHealth::Healthy),
        Some(HealthStatusEnum::UNHEALTHY) => Some(DockerHealth::Unhealthy {
            last_output: health
                .log
                .and_then(|log| log.into_iter().last())
                .and_then(|result| result.output),
        }),
        Some(HealthStatusEnum::NONE) | Some(HealthStatusEnum::EMPTY) | None => None,
    });
    let uptime = state
        .started_at
        .as_deref()
        .filter(|_| status == ContainerStatus::Running)
        .and_then(|started| chrono::DateTime::parse_from_rfc3339(started).ok())
        .map(|started| {
            (chrono::Utc::now() - started.with_timezone(&chrono::Utc))
                .to_std()
                .unwrap_or_default()
        });
    Ok(ContainerLook {
        status,
        exit_code: state.exit_code,
        restart_count: inspected.restart_count.unwrap_or(0),
        docker_health,
        uptime,
    })
}

/// The last lines the container wrote to stdout and stderr, oldest first.
pub(crate) async fn last_log_lines(
    docker: &Docker,
    id: &str,
    lines: usize,
) -> Result<Vec<String>, BollardError> {
    let mut stream = docker.logs(
        id,
        Some(LogsOptions {
            stdout: true,
            stderr: true,
            tail: lines.to_string(),
            ..LogsOptions::default()
        }),
    );
    let mut text = String::new();
    while let Some(chunk) = stream.next().await {
        text.push_str(&chunk?.to_string());
    }
    let all: Vec<String> = text
        .lines()
        .map(|line| line.trim_end().to_owned())
        .collect();
    let skip = all.len().saturating_sub(lines);
    Ok(all.into_iter().skip(skip).collect())
}

/// Converts the daemon's idea of a container's uptime into a local start instant, so
/// uptime can then be measured with the local monotonic clock.
pub(crate) fn local_start(uptime: Option<Duration>) -> Instant {
    let now = Instant::now();
    uptime
        .and_then(|uptime| now.checked_sub(uptime))
        .unwrap_or(now)
}

/// The exit code of the container's latest crash, from the daemon's event log. A container with
/// a restart policy is running again by the time it is inspected, and inspect then says exit
/// code 0; the `die` event keeps the code it really exited with. The daemon keeps recent
/// events in memory, so looking back over the last few minutes is enough for a deploy gate.
pub(crate) async fn last_exit_code_from_events(docker: &Docker, id: &str) -> Option<i64> {
    use bollard::query_parameters::EventsOptions;
    let now = chrono::Utc::now().timestamp();
    let filters = HashMap::from([
        ("container".to_owned(), vec![id.to_owned()]),
        ("event".to_owned(), vec!["die".to_owned()]),
    ]);
    let options = EventsOptions {
        since: Some((now - 600).to_string()),
        // `until` makes the daemon answer with past events and end the stream.
        until: Some((now + 1).to_string()),
        filters: Some(filters),
    };
    let mut stream = docker.events(Some(options));
    let mut last = None;
    let collect = async {
        while let Some(Ok(event)) = stream.next().await {
            let code = event
                .actor
                .and_then(|actor| actor.attributes)
                .and_then(|attributes| {
                    attributes
                        .get("exitCode")
                        .and_then(|c| c.parse::<i64>().ok())
                });
            if code.is_some() {
                last = code;
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(5), collect).await;
    last
}
