//! The executor of a docker deploy: check, plan, start the new replicas, run the gate, then
//! retire the previous version or roll back. Decisions come from `plan` and `health`; this
//! file sequences daemon calls and keeps the promise that a failure leaves the previous
//! version running and no new container behind.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bollard::Docker;
use bollard::errors::Error as BollardError;
use futures::future::join_all;
use tokio_util::sync::CancellationToken;

use super::config::GateProbe;
use super::containers::{self, REPORTED_LOG_LINES};
use super::error::DockerDeployError;
use super::health::{
    self, ContainerStatus, GateCheck, GateDecision, GateFailure, GatePolicy, Observation,
};
use super::plan::{
    self, Attempt, ExistingContainer, PortedPlan, Replica, ReplicaBlueprint, ReplicaPorts,
    TargetRollout,
};
use super::probe::{self, HttpProbe};
use super::{DeployObserver, DeployedContainer, DockerDeployOutcome, DockerDeploySpec};

/// Cleanup after a failure must not hang on a daemon that stopped answering.
const CLEANUP_TIMEOUT: Duration = Duration::from_secs(60);

/// How often a replica that is still waiting is mentioned on the progress line.
const PENDING_REPORT_EVERY: Duration = Duration::from_secs(5);

/// A new replica of this run, created or adopted.
struct NewReplica {
    replica: Replica,
    id: String,
    ports: ReplicaPorts,
    /// When its process started, on the local monotonic clock (for the start period).
    started: Instant,
    /// When the gate began waiting on it (for the deadline).
    gate_started: Instant,
    history: Vec<Observation>,
    healthy: bool,
    last_report: Option<(Instant, String)>,
}

/// Why the rollout is being abandoned, which decides the error returned after cleanup.
enum Abort {
    Gate {
        index: usize,
        reason: GateFailure,
    },
    StartRejected {
        container: String,
        message: String,
    },
    Cancelled,
    Daemon {
        action: String,
        source: BollardError,
    },
}

pub(crate) async fn run(
    docker: &Docker,
    spec: &DockerDeploySpec,
    observer: &dyn DeployObserver,
    cancel: CancellationToken,
    attempt: Attempt,
) -> Result<DockerDeployOutcome, DockerDeployError> {
    let config = &spec.config;
    let problems = config.validate();
    if !problems.is_empty() {
        return Err(DockerDeployError::InvalidConfig { problems });
    }
    check_image(docker, spec).await?;

    let existing: Vec<ExistingContainer> =
        containers::list_target_containers(docker, &spec.pipeline, &spec.target)
            .await
            .map_err(|source| DockerDeployError::listing(&spec.pipeline, &spec.target, source))?
            .into_iter()
            .map(|listed| listed.container)
            .collect();
    let config_digest = plan::config_digest(&spec.image, &spec.image_digest, config);
    let PortedPlan {
        rollout,
        ports: mut ports_of,
    } = plan::plan_target(
        &TargetRollout {
            attempt,
            pipeline: &spec.pipeline,
            target: &spec.target,
            run_id: &spec.run_id,
            config_digest: &config_digest,
            config,
        },
        &existing,
    )
    .map_err(|problem| DockerDeployError::InvalidConfig {
        problems: vec![problem],
    })?;
    let previous_running: Vec<ExistingContainer> = rollout
        .previous
        .iter()
        .filter(|container| container.is_running())
        .cloned()
        .collect();
    report_previous(observer, &previous_running);

    for leftover in &rollout.discard {
        observer.on_progress(&format!(
            "removing container {} left by an interrupted attempt of this run",
            leftover.name
        ));
        containers::remove(docker, &leftover.id)
            .await
            .map_err(|source| DockerDeployError::Daemon {
                action: format!("remove leftover container {}", leftover.name),
                left_behind: vec![leftover.name.clone()],
                source,
            })?;
    }

    if let GateProbe::Http(http) = config.health.probe() {
        for replica in &rollout.create {
            if let Some(port) = ports_of.get(&replica.index).and_then(|p| p.probe_port)
                && probe::is_port_taken(&http.host, port).await
            {
                return Err(DockerDeployError::PortInUse {
                    host: http.host.clone(),
                    port,
                    replica: replica.index,
                });
            }
        }
    }

    let mut news: Vec<NewReplica> = Vec::new();
    let started = start_replicas(
        docker,
        spec,
        observer,
        &cancel,
        &config_digest,
        &rollout,
        &mut ports_of,
        &mut news,
    )
    .await;
    if let Err(abort) = started {
        return Err(abandon(docker, observer, abort, &news, &previous_running).await);
    }

    if let Err(abort) = run_gate(docker, spec, observer, &cancel, &mut news).await {
        return Err(abandon(docker, observer, abort, &news, &previous_running).await);
    }

    // Every new replica passed: the deploy is committed. Retiring the previous version is
    // not interrupted by cancellation, since stopping half-way would leave both serving.
    // The previous containers stop in parallel: each may use its whole grace period.
    for old in &rollout.previous {
        observer.on_progress(&format!("stopping previous container {}", old.name));
    }
    let retired = join_all(
        rollout
            .previous
            .iter()
            .map(|old| async move { (old, containers::retire(docker, &old.id).await) }),
    )
    .await;
    let mut replaced = Vec::new();
    let mut first_failure = None;
    for (old, result) in retired {
        match result {
            Ok(()) => replaced.push(old.id.clone()),
            Err(source) => {
                first_failure.get_or_insert((old.name.clone(), source));
            }
        }
    }
    if let Some((name, source)) = first_failure {
        return Err(DockerDeployError::Daemon {
            action: format!(
                "remove previous container {name} (the new version is live; `shipit resume` \
                 finishes the removal)"
            ),
            left_behind: Vec::new(),
            source,
        });
    }

    news.sort_by_key(|new| new.replica.index);
    let deployed: Vec<DeployedContainer> = news
        .iter()
        .map(|new| DeployedContainer {
            id: new.id.clone(),
            name: new.replica.name.clone(),
            replica: new.replica.index,
            ports: new.ports.host_ports(&config.network),
        })
        .collect();
    observer.on_progress(&format!(
        "deployed {} replica{} of {}{}",
        deployed.len(),
        if deployed.len() == 1 { "" } else { "s" },
        spec.image,
        describe_ports(&deployed)
    ));
    Ok(DockerDeployOutcome {
        containers: deployed,
        image: spec.image.clone(),
        image_digest: spec.image_digest.clone(),
        replaced,
    })
}

fn report_previous(observer: &dyn DeployObserver, previous_running: &[ExistingContainer]) {
    if previous_running.is_empty() {
        observer.on_progress("no previous version is running");
    } else {
        let mut names: Vec<&str> = previous_running.iter().map(|c| c.name.as_str()).collect();
        names.sort_unstable();
        observer.on_progress(&format!("previous version: {}", names.join(", ")));
    }
}

fn describe_ports(deployed: &[DeployedContainer]) -> String {
    let ports: Vec<String> = deployed
        .iter()
        .flat_map(|container| container.ports.iter().map(u16::to_string))
        .collect();
    if ports.is_empty() {
        String::new()
    } else {
        format!(
            " on port{} {}",
            if ports.len() == 1 { "" } else { "s" },
            ports.join(", ")
        )
    }
}

/// Fails early when the image is missing, or lacks the HEALTHCHECK the gate relies on.
async fn check_image(docker: &Docker, spec: &DockerDeploySpec) -> Result<(), DockerDeployError> {
    let image = match docker.inspect_image(&spec.image).await {
        Ok(image) => image,
        Err(source) if containers::is_not_found(&source) => {
            return Err(DockerDeployError::ImageNotFound {
                image: spec.image.clone(),
                source,
            });
        }
        Err(source) => {
            return Err(DockerDeployError::Daemon {
                action: format!("inspect image {}", spec.image),
                left_behind: Vec::new(),
                source,
            });
        }
    };
    if spec.config.health.probe() == GateProbe::Image {
        let has_healthcheck = image
            .config
            .and_then(|config| config.healthcheck)
            .and_then(|check| check.test)
            .is_some_and(|test| !test.is_empty() && test[0] != "NONE");
        if !has_healthcheck {
            return Err(DockerDeployError::NoHealthcheck {
                image: spec.image.clone(),
            });
        }
    }
    Ok(())
}

/// Starts adopted replicas that are only created, then creates and starts the missing ones.
#[allow(clippy::too_many_arguments)]
async fn start_replicas(
    docker: &Docker,
    spec: &DockerDeploySpec,
    observer: &dyn DeployObserver,
    cancel: &CancellationToken,
    config_digest: &str,
    rollout: &plan::RolloutPlan,
    ports_of: &mut HashMap<u32, ReplicaPorts>,
    news: &mut Vec<NewReplica>,
) -> Result<(), Abort> {
    for (replica, container) in &rollout.adopt {
        let ports = ports_of.remove(&replica.index).unwrap_or_default();
        observer.on_progress(&format!(
            "re-attaching to container {} of this run{}",
            replica.name,
            port_note(&ports, &spec.config.network)
        ));
        let look = containers::look(docker, &container.id)
            .await
            .map_err(|source| Abort::Daemon {
                action: format!("inspect container {}", replica.name),
                source,
            })?;
        news.push(NewReplica {
            replica: replica.clone(),
            id: container.id.clone(),
            ports,
            started: containers::local_start(look.uptime),
            gate_started: Instant::now(),
            history: Vec::new(),
            healthy: false,
            last_report: None,
        });
        if look.status == ContainerStatus::Created {
            start_one(docker, &replica.name, &container.id).await?;
            if let Some(new) = news.last_mut() {
                new.started = Instant::now();
            }
        }
    }

    for replica in &rollout.create {
        if cancel.is_cancelled() {
            return Err(Abort::Cancelled);
        }
        let ports = ports_of.remove(&replica.index).unwrap_or_default();
        observer.on_progress(&format!(
            "starting container {}{}",
            replica.name,
            port_note(&ports, &spec.config.network)
        ));
        let body = plan::container_body(&ReplicaBlueprint {
            pipeline: &spec.pipeline,
            target: &spec.target,
            run_id: &spec.run_id,
            image: &spec.image,
            image_digest: &spec.image_digest,
            config_digest,
            config: &spec.config,
            replica,
            ports: &ports,
        });
        let id = containers::create(docker, &replica.name, body)
            .await
            .map_err(|source| Abort::Daemon {
                action: format!("create container {} from {}", replica.name, spec.image),
                source,
            })?;
        // Track it before starting, so a failed start still gets it removed.
        news.push(NewReplica {
            replica: replica.clone(),
            id: id.clone(),
            ports,
            started: Instant::now(),
            gate_started: Instant::now(),
            history: Vec::new(),
            healthy: false,
            last_report: None,
        });
        start_one(docker, &replica.name, &id).await?;
        if let Some(new) = news.last_mut() {
            new.started = Instant::now();
            new.gate_started = Instant::now();
        }
    }
    Ok(())
}

async fn start_one(docker: &Docker, name: &str, id: &str) -> Result<(), Abort> {
    match containers::start(docker, id).await {
        Ok(()) => Ok(()),
        // The daemon answered and refused (a published port already allocated, a missing
        // network, a bad command): the new version cannot start.
        Err(BollardError::DockerResponseServerError {
            status_code,
            message,
        }) if status_code != 404 => Err(Abort::StartRejected {
            container: name.to_owned(),
            message,
        }),
        Err(source) => Err(Abort::Daemon {
            action: format!("start container {name}"),
            source,
        }),
    }
}

fn port_note(ports: &ReplicaPorts, network: &super::config::NetworkMode) -> String {
    let host_ports = ports.host_ports(network);
    match host_ports.as_slice() {
        [] => String::new(),
        [one] => format!(" (port {one})"),
        many => format!(
            " (ports {})",
            many.iter()
                .map(u16::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// Polls every pending replica each `interval` until all pass, one fails, the deadline
/// passes (a failure decided by `health::decide`) or the deploy is cancelled.
async fn run_gate(
    docker: &Docker,
    spec: &DockerDeploySpec,
    observer: &dyn DeployObserver,
    cancel: &CancellationToken,
    news: &mut [NewReplica],
) -> Result<(), Abort> {
    let health_config = &spec.config.health;
    let probe_kind = health_config.probe();
    let policy = GatePolicy {
        check: match probe_kind {
            GateProbe::None => GateCheck::Running,
            GateProbe::Image => GateCheck::DockerHealth,
            GateProbe::Http(_) | GateProbe::Command(_) => GateCheck::Probe,
        },
        retries: health_config.retries,
        start_period: health_config.start_period.get(),
        deadline: spec.config.timeout.get(),
    };
    let interval = health_config.interval.get();
    // A probe must answer within the interval, but never gets less than a second.
    let probe_timeout = interval.clamp(Duration::from_secs(1), Duration::from_secs(10));

    loop {
        let looks = join_all(
            news.iter()
                .filter(|new| !new.healthy)
                .map(|new| observe(docker, new, &probe_kind, probe_timeout)),
        );
        let looks = tokio::select! {
            looks = looks => looks,
            () = cancel.cancelled() => return Err(Abort::Cancelled),
        };
        let pending: Vec<usize> = news
            .iter()
            .enumerate()
            .filter(|(_, new)| !new.healthy)
            .map(|(index, _)| index)
            .collect();
        for (index, look) in pending.into_iter().zip(looks) {
            let new = &mut news[index];
            let observation = look.map_err(|source| Abort::Daemon {
                action: format!("inspect container {}", new.replica.name),
                source,
            })?;
            new.history.push(observation);
            match health::decide(&policy, &new.history) {
                GateDecision::Healthy => {
                    new.healthy = true;
                    observer.on_progress(&format!(
                        "{} is healthy after {:.1}s",
                        new.replica.name,
                        new.gate_started.elapsed().as_secs_f64()
                    ));
                }
                GateDecision::Failed(reason) => return Err(Abort::Gate { index, reason }),
                GateDecision::Pending(detail) => {
                    let due = match &new.last_report {
                        None => true,
                        Some((at, said)) => *said != detail && at.elapsed() >= PENDING_REPORT_EVERY,
                    };
                    if due {
                        observer
                            .on_progress(&format!("waiting for {}: {detail}", new.replica.name));
                        new.last_report = Some((Instant::now(), detail));
                    }
                }
            }
        }
        if news.iter().all(|new| new.healthy) {
            return Ok(());
        }
        tokio::select! {
            () = tokio::time::sleep(interval) => {}
            () = cancel.cancelled() => return Err(Abort::Cancelled),
        }
    }
}

/// One look at a replica, with a probe when it runs and the gate has one.
async fn observe(
    docker: &Docker,
    new: &NewReplica,
    probe_kind: &GateProbe<'_>,
    probe_timeout: Duration,
) -> Result<Observation, BollardError> {
    let look = containers::look(docker, &new.id).await?;
    let probe = if look.status == ContainerStatus::Running && look.restart_count == 0 {
        match probe_kind {
            GateProbe::Http(http) => match new.ports.probe_port {
                Some(port) => Some(
                    probe::probe_http(
                        &HttpProbe {
                            host: http.host.clone(),
                            port,
                            path: http.path.clone(),
                            expect_status: http.expect_status,
                        },
                        probe_timeout,
                    )
                    .await,
                ),
                None => None,
            },
            GateProbe::Command(command) => {
                Some(probe::probe_command(docker, &new.id, command, probe_timeout).await)
            }
            GateProbe::None | GateProbe::Image => None,
        }
    } else {
        None
    };
    Ok(Observation {
        waited: new.gate_started.elapsed(),
        uptime: new.started.elapsed(),
        status: look.status,
        exit_code: look.exit_code,
        restart_count: look.restart_count,
        docker_health: look.docker_health,
        probe,
    })
}

/// Takes the new replicas down, makes sure the previous version runs, and turns the reason
/// into the error the caller sees.
async fn abandon(
    docker: &Docker,
    observer: &dyn DeployObserver,
    abort: Abort,
    news: &[NewReplica],
    previous_running: &[ExistingContainer],
) -> DockerDeployError {
    // Gather what the report needs from the failing container before it is removed.
    let failing = match &abort {
        Abort::Gate { index, reason } => news.get(*index).map(|new| (new, reason)),
        _ => None,
    };
    let (exit_code, last_logs) = match failing {
        Some((new, reason)) => {
            observer.on_progress(&format!(
                "{} failed its health gate: {reason}",
                new.replica.name
            ));
            let exit_code = match reason {
                GateFailure::Exited { exit_code } => *exit_code,
                // A restarted container says exit code 0 once it runs again: the crash's code
                // is the latest non-zero one the gate saw, or else the daemon's `die` event's.
                GateFailure::Restarted { .. } => {
                    let seen = new
                        .history
                        .iter()
                        .rev()
                        .filter_map(|o| o.exit_code)
                        .find(|code| *code != 0);
                    match seen {
                        Some(code) => Some(code),
                        None => containers::last_exit_code_from_events(docker, &new.id).await,
                    }
                }
                _ => None,
            };
            let logs = containers::last_log_lines(docker, &new.id, REPORTED_LOG_LINES)
                .await
                .unwrap_or_else(|error| vec![format!("(failed to read the logs: {error})")]);
            (exit_code, logs)
        }
        None => (None, Vec::new()),
    };
    if matches!(abort, Abort::Cancelled) {
        observer.on_progress("deploy cancelled: removing the new containers");
    }

    let cleanup = roll_back(docker, observer, news, previous_running);
    let (removed, left_behind, still_running) =
        match tokio::time::timeout(CLEANUP_TIMEOUT, cleanup).await {
            Ok(result) => result,
            Err(_) => (
                Vec::new(),
                news.iter().map(|new| new.replica.name.clone()).collect(),
                Vec::new(),
            ),
        };

    match abort {
        Abort::Gate { index, reason } => {
            let (container, container_id) = news
                .get(index)
                .map(|new| (new.replica.name.clone(), new.id.clone()))
                .unwrap_or_default();
            DockerDeployError::RolledBack {
                reason,
                container,
                container_id,
                exit_code,
                last_logs,
                previous_running: still_running,
                left_behind,
            }
        }
        Abort::StartRejected { container, message } => DockerDeployError::StartFailed {
            container,
            message,
            previous_running: still_running,
            left_behind,
        },
        Abort::Cancelled => DockerDeployError::Cancelled {
            removed,
            left_behind,
        },
        Abort::Daemon { action, source } => DockerDeployError::Daemon {
            action,
            left_behind,
            source,
        },
    }
}

/// Removes the new replicas and restarts any previous container that was running when the
/// deploy began and is not now. Returns (removed, left behind, previous running) names.
async fn roll_back(
    docker: &Docker,
    observer: &dyn DeployObserver,
    news: &[NewReplica],
    previous_running: &[ExistingContainer],
) -> (Vec<String>, Vec<String>, Vec<String>) {
    let mut removed = Vec::new();
    let mut left_behind = Vec::new();
    for new in news {
        observer.on_progress(&format!("removing new container {}", new.replica.name));
        match containers::remove(docker, &new.id).await {
            Ok(()) => removed.push(new.replica.name.clone()),
            Err(_) => left_behind.push(new.replica.name.clone()),
        }
    }
    let mut still_running = Vec::new();
    for old in previous_running {
        let running = matches!(
            containers::look(docker, &old.id).await,
            Ok(look) if look.status == ContainerStatus::Running
        );
        if running {
            still_running.push(old.name.clone());
            continue;
        }
        observer.on_progress(&format!("restarting previous container {}", old.name));
        if containers::start(docker, &old.id).await.is_ok() {
            still_running.push(old.name.clone());
        }
    }
    (removed, left_behind, still_running)
}
