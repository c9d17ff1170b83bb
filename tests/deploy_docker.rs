//! The docker deploy target against a real Docker daemon, the one DOCKER_HOST names
//! (scripts/test points it at the test environment's). The tests fail (never skip) when no
//! daemon answers.
//!
//! Every test runs in its own scenario (tests/support/scenario.rs): its own pipeline name, so
//! tests run in parallel without seeing each other's containers, ports leased for its
//! replicas, and a sweep that removes every container of that pipeline when the test ends,
//! passed or failed. Containers also carry `shipit-test=deploy-docker` for a manual sweep:
//! `docker rm -f $(docker ps -aq --filter label=shipit-test=deploy-docker)`.

mod support;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bollard::Docker;
use bollard::query_parameters::InspectContainerOptions;
use serde_json::json;
use shipit::deploy::docker::{
    DockerDeployError, DockerDeploySpec, DockerTargetConfig, GateFailure,
};
use support::daemon_proxy::{DaemonProxy, Delivery};
use support::demo_images::{BROKEN_IMAGE, WEB_IMAGE, demo_image_id};
use support::deploy_recorder::Recorder;
use support::scenario::Scenario;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

const TEST_LABEL: &str = "shipit-test";
const TEST_LABEL_VALUE: &str = "deploy-docker";

// ---------------------------------------------------------------------------------------
// The daemon's view of a container.

async fn is_running(docker: &Docker, id: &str) -> bool {
    match docker
        .inspect_container(id, None::<InspectContainerOptions>)
        .await
    {
        Ok(inspected) => inspected
            .state
            .and_then(|state| state.running)
            .unwrap_or(false),
        Err(_) => false,
    }
}

// ---------------------------------------------------------------------------------------
// HTTP and the progress recorder.

/// GETs a path on loopback; `None` when nothing answers.
async fn get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .ok()?;
    let request = format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n\r\n");
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut response = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut response))
        .await
        .ok()?
        .ok()?;
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())?;
    Some((status, body))
}

async fn greeting(port: u16) -> Option<String> {
    match get(port, "/greeting.txt").await {
        Some((200, body)) => Some(body.trim().to_owned()),
        _ => None,
    }
}

// ---------------------------------------------------------------------------------------
// Specs.

fn config(value: serde_json::Value) -> DockerTargetConfig {
    let mut value = value;
    value["labels"] = json!({ TEST_LABEL: TEST_LABEL_VALUE });
    serde_json::from_value(value).expect("test config parses")
}

/// The demo app with an HTTP gate on /health.
fn web_config(port: u16, replicas: u32, greeting: &str) -> DockerTargetConfig {
    config(json!({
        "replicas": replicas,
        "port": port,
        "env": { "GREETING": greeting },
        "health": {
            "http": { "path": "/health", "expect_status": 200 },
            "interval": "300ms",
            "retries": 3,
            "start_period": "2s"
        },
        "timeout": "30s"
    }))
}

/// The demo app with a gate that keeps it pending for a while: room to interrupt.
fn slow_gate_config(port: u16, replicas: u32, greeting: &str) -> DockerTargetConfig {
    config(json!({
        "replicas": replicas,
        "port": port,
        "env": { "GREETING": greeting },
        "health": { "interval": "300ms", "start_period": "4s" },
        "timeout": "30s"
    }))
}

/// A deploy of one of the demo images as the scenario's pipeline, target `local`.
async fn spec(
    scenario: &Scenario,
    run_id: &str,
    image: &str,
    config: DockerTargetConfig,
) -> DockerDeploySpec {
    DockerDeploySpec {
        pipeline: scenario.name().to_owned(),
        target: "local".to_owned(),
        run_id: run_id.to_owned(),
        image: image.to_owned(),
        image_digest: demo_image_id(image).await,
        config,
    }
}

async fn deploy_ok(
    docker: &Docker,
    spec: &DockerDeploySpec,
) -> shipit::deploy::docker::DockerDeployOutcome {
    let recorder = Recorder::default();
    match shipit::deploy::docker::deploy(docker, spec, &recorder, CancellationToken::new()).await {
        Ok(outcome) => outcome,
        Err(error) => panic!(
            "deploy of {} failed: {error}\nprogress: {:?}",
            spec.run_id,
            recorder.lines()
        ),
    }
}

// ---------------------------------------------------------------------------------------
// The tests.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_healthy_deploy_of_two_replicas_replaces_the_previous_version() {
    let scenario = Scenario::new("healthy");
    let docker = scenario.docker().await;
    let base = scenario.ports(4);

    let first = deploy_ok(
        &docker,
        &spec(&scenario, "run-1", WEB_IMAGE, web_config(base, 2, "one")).await,
    )
    .await;
    let first_ports: Vec<u16> = first
        .containers
        .iter()
        .flat_map(|c| c.ports.clone())
        .collect();
    assert_eq!(first_ports, vec![base, base + 1]);
    for port in &first_ports {
        assert_eq!(greeting(*port).await.as_deref(), Some("one"), "port {port}");
    }

    let recorder = Recorder::default();
    let second_spec = spec(&scenario, "run-2", WEB_IMAGE, web_config(base, 2, "two")).await;
    let started = Instant::now();
    let second =
        shipit::deploy::docker::deploy(&docker, &second_spec, &recorder, CancellationToken::new())
            .await
            .unwrap_or_else(|error| panic!("second deploy failed: {error}"));
    eprintln!("replacing 2 replicas took {:?}", started.elapsed());
    eprintln!("progress:\n  {}", recorder.lines().join("\n  "));

    // The new version listens beside the old one's ports, and answers on loopback.
    let second_ports: Vec<u16> = second
        .containers
        .iter()
        .flat_map(|c| c.ports.clone())
        .collect();
    assert_eq!(second_ports, vec![base + 2, base + 3]);
    for port in &second_ports {
        assert_eq!(greeting(*port).await.as_deref(), Some("two"), "port {port}");
    }
    // The previous containers are gone, and so are their listeners.
    let mut replaced = second.replaced.clone();
    replaced.sort();
    let mut first_ids: Vec<String> = first.containers.iter().map(|c| c.id.clone()).collect();
    first_ids.sort();
    assert_eq!(replaced, first_ids);
    let mut second_ids: Vec<String> = second.containers.iter().map(|c| c.id.clone()).collect();
    second_ids.sort();
    assert_eq!(scenario.containers(None), second_ids);
    for port in &first_ports {
        assert_eq!(
            greeting(*port).await,
            None,
            "the old replica on {port} still answers"
        );
    }
    assert_eq!(second.image, WEB_IMAGE);
    assert!(recorder.saw("is healthy"), "{:?}", recorder.lines());
    assert!(
        recorder.saw("stopping previous container"),
        "{:?}",
        recorder.lines()
    );

    // The result serializes for the JSON report.
    let json = serde_json::to_value(&second).expect("outcome serializes");
    assert_eq!(json["containers"].as_array().map(Vec::len), Some(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_health_path_answering_500_rolls_back_and_the_previous_version_keeps_serving() {
    let scenario = Scenario::new("http500");
    let docker = scenario.docker().await;
    let base = scenario.ports(4);
    let first = deploy_ok(
        &docker,
        &spec(&scenario, "run-1", WEB_IMAGE, web_config(base, 2, "stable")).await,
    )
    .await;

    let broken = config(json!({
        "replicas": 2,
        "port": base,
        "health": {
            "http": { "path": "/cgi-bin/health" },
            "interval": "300ms",
            "retries": 3,
            "start_period": "0s"
        },
        "timeout": "30s"
    }));
    let recorder = Recorder::default();
    let broken_spec = spec(&scenario, "run-2", BROKEN_IMAGE, broken).await;
    let error =
        shipit::deploy::docker::deploy(&docker, &broken_spec, &recorder, CancellationToken::new())
            .await
            .expect_err("a version whose health answers 500 must not deploy");

    match &error {
        DockerDeployError::RolledBack {
            reason: GateFailure::Unhealthy { detail },
            container,
            last_logs,
            previous_running,
            left_behind,
            ..
        } => {
            assert!(detail.contains("answered 500"), "{detail}");
            assert!(
                container.starts_with(&format!("{}-local-", scenario.name())),
                "{container}"
            );
            assert!(
                last_logs.iter().any(|line| line.contains("listening")),
                "{last_logs:?}"
            );
            assert!(last_logs.len() <= 30);
            assert_eq!(previous_running.len(), 2);
            assert!(left_behind.is_empty());
        }
        other => panic!("expected a rollback for unhealthy, got {other:?}"),
    }
    assert!(error.is_rolled_back());
    assert!(
        error
            .to_string()
            .contains("the previous version still runs"),
        "{error}"
    );

    assert!(scenario.containers(Some("run-2")).is_empty());
    for container in &first.containers {
        assert!(is_running(&docker, &container.id).await);
        assert_eq!(
            greeting(container.ports[0]).await.as_deref(),
            Some("stable")
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_that_exits_at_once_rolls_back_with_its_exit_code_and_logs() {
    let scenario = Scenario::new("exits");
    let docker = scenario.docker().await;
    let base = scenario.ports(2);
    let first = deploy_ok(
        &docker,
        &spec(&scenario, "run-1", WEB_IMAGE, web_config(base, 1, "stable")).await,
    )
    .await;

    // The default restart policy (unless-stopped) turns the exit into a crash loop, which
    // the gate reports as soon as it sees it.
    let crashing = config(json!({
        "port": base,
        "command": ["sh", "-c", "echo cannot open the database >&2; exit 3"],
        "health": { "interval": "300ms", "start_period": "3s" },
        "timeout": "30s"
    }));
    let recorder = Recorder::default();
    let started = Instant::now();
    let error = shipit::deploy::docker::deploy(
        &docker,
        &spec(&scenario, "run-2", WEB_IMAGE, crashing).await,
        &recorder,
        CancellationToken::new(),
    )
    .await
    .expect_err("a command that exits must not deploy");
    eprintln!(
        "detecting the crash and rolling back took {:?}",
        started.elapsed()
    );

    match &error {
        DockerDeployError::RolledBack {
            reason,
            exit_code,
            last_logs,
            previous_running,
            ..
        } => {
            assert!(
                matches!(
                    reason,
                    GateFailure::Exited { .. } | GateFailure::Restarted { .. }
                ),
                "{reason:?}"
            );
            assert_eq!(*exit_code, Some(3));
            assert!(
                last_logs
                    .iter()
                    .any(|line| line.contains("cannot open the database")),
                "{last_logs:?}"
            );
            assert_eq!(previous_running.len(), 1);
        }
        other => panic!("expected a rollback, got {other:?}"),
    }
    assert!(scenario.containers(Some("run-2")).is_empty());
    assert_eq!(
        greeting(first.containers[0].ports[0]).await.as_deref(),
        Some("stable")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_deploy_removes_the_new_replicas_and_resume_finishes_it() {
    let scenario = Scenario::new("cancel");
    let docker = scenario.docker().await;
    let base = scenario.ports(4);
    let first = deploy_ok(
        &docker,
        &spec(&scenario, "run-1", WEB_IMAGE, web_config(base, 2, "one")).await,
    )
    .await;

    let second_spec = spec(
        &scenario,
        "run-2",
        WEB_IMAGE,
        slow_gate_config(base, 2, "two"),
    )
    .await;
    let recorder = Recorder::default();
    let cancel = CancellationToken::new();
    let (result, ()) = tokio::join!(
        shipit::deploy::docker::deploy(&docker, &second_spec, &recorder, cancel.clone()),
        async {
            recorder
                .wait_for("waiting for", Duration::from_secs(20))
                .await;
            cancel.cancel();
        }
    );
    match result {
        Err(DockerDeployError::Cancelled {
            removed,
            left_behind,
        }) => {
            assert_eq!(removed.len(), 2, "{removed:?}");
            assert!(left_behind.is_empty());
        }
        other => panic!("expected a cancelled deploy, got {other:?}"),
    }
    assert!(scenario.containers(Some("run-2")).is_empty());
    for container in &first.containers {
        assert_eq!(greeting(container.ports[0]).await.as_deref(), Some("one"));
    }

    let recorder = Recorder::default();
    let resumed =
        shipit::deploy::docker::resume(&docker, &second_spec, &recorder, CancellationToken::new())
            .await
            .unwrap_or_else(|error| panic!("resume failed: {error}"));
    let mut ids: Vec<String> = resumed.containers.iter().map(|c| c.id.clone()).collect();
    ids.sort();
    assert_eq!(scenario.containers(None), ids, "orphans remain");
    for container in &resumed.containers {
        assert_eq!(greeting(container.ports[0]).await.as_deref(), Some("two"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_re_attaches_to_the_replicas_of_a_deploy_killed_mid_gate() {
    let scenario = Scenario::new("killed");
    let docker = scenario.docker().await;
    let base = scenario.ports(4);
    let first = deploy_ok(
        &docker,
        &spec(&scenario, "run-1", WEB_IMAGE, web_config(base, 2, "one")).await,
    )
    .await;

    // Drop the deploy future mid-gate, as a killed shipit process would: no cleanup runs.
    let second_spec = spec(
        &scenario,
        "run-2",
        WEB_IMAGE,
        slow_gate_config(base, 2, "two"),
    )
    .await;
    let recorder = Arc::new(Recorder::default());
    let task = {
        let docker = docker.clone();
        let spec = second_spec.clone();
        let recorder = Arc::clone(&recorder);
        tokio::spawn(async move {
            shipit::deploy::docker::deploy(
                &docker,
                &spec,
                recorder.as_ref(),
                CancellationToken::new(),
            )
            .await
        })
    };
    recorder
        .wait_for("waiting for", Duration::from_secs(20))
        .await;
    task.abort();
    let _ = task.await;
    let interrupted = scenario.containers(Some("run-2"));
    assert_eq!(
        interrupted.len(),
        2,
        "both new replicas were started before the kill"
    );

    let recorder = Recorder::default();
    let resumed =
        shipit::deploy::docker::resume(&docker, &second_spec, &recorder, CancellationToken::new())
            .await
            .unwrap_or_else(|error| panic!("resume failed: {error}\n{:?}", recorder.lines()));
    let mut ids: Vec<String> = resumed.containers.iter().map(|c| c.id.clone()).collect();
    ids.sort();
    assert_eq!(ids, interrupted, "resume re-used the started replicas");
    assert!(recorder.saw("re-attaching"), "{:?}", recorder.lines());
    assert_eq!(scenario.containers(None), ids, "orphans remain");
    let mut replaced = resumed.replaced.clone();
    replaced.sort();
    let mut first_ids: Vec<String> = first.containers.iter().map(|c| c.id.clone()).collect();
    first_ids.sort();
    assert_eq!(replaced, first_ids);
    for container in &resumed.containers {
        assert_eq!(greeting(container.ports[0]).await.as_deref(), Some("two"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_port_already_taken_fails_before_anything_starts() {
    let scenario = Scenario::new("porttaken");
    let docker = scenario.docker().await;
    let base = scenario.ports(4);
    let first = deploy_ok(
        &docker,
        &spec(&scenario, "run-1", WEB_IMAGE, web_config(base, 2, "one")).await,
    )
    .await;

    // Another process holds the port the new replica 0 would get.
    let squatter = std::net::TcpListener::bind(("127.0.0.1", base + 2)).expect("squat the port");
    let error = shipit::deploy::docker::deploy(
        &docker,
        &spec(&scenario, "run-2", WEB_IMAGE, web_config(base, 2, "two")).await,
        &Recorder::default(),
        CancellationToken::new(),
    )
    .await
    .expect_err("a taken port must stop the deploy");
    drop(squatter);

    match &error {
        DockerDeployError::PortInUse { port, replica, .. } => {
            assert_eq!(*port, base + 2);
            assert_eq!(*replica, 0);
        }
        other => panic!("expected the port in use, got {other:?}"),
    }
    assert!(error.to_string().contains("already in use"), "{error}");
    assert!(scenario.containers(Some("run-2")).is_empty());
    for container in &first.containers {
        assert_eq!(greeting(container.ports[0]).await.as_deref(), Some("one"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_app_that_cannot_bind_its_port_rolls_back_with_the_bind_error() {
    let scenario = Scenario::new("bind");
    let docker = scenario.docker().await;
    let base = scenario.ports(2);
    // Without an HTTP probe shipit cannot check the port first; the app's own failure is
    // what the report shows.
    let squatter = std::net::TcpListener::bind(("127.0.0.1", base)).expect("squat the port");
    let no_probe = config(json!({
        "port": base,
        "restart": "no",
        "health": { "interval": "300ms", "start_period": "3s" },
        "timeout": "30s"
    }));
    let error = shipit::deploy::docker::deploy(
        &docker,
        &spec(&scenario, "run-1", WEB_IMAGE, no_probe).await,
        &Recorder::default(),
        CancellationToken::new(),
    )
    .await
    .expect_err("an app that cannot listen must not deploy");
    drop(squatter);
    match &error {
        DockerDeployError::RolledBack {
            reason: GateFailure::Exited { .. },
            exit_code,
            last_logs,
            previous_running,
            ..
        } => {
            assert_ne!(*exit_code, Some(0));
            assert!(
                last_logs.iter().any(|line| line.contains("bind")),
                "{last_logs:?}"
            );
            assert!(previous_running.is_empty());
        }
        other => panic!("expected a rollback on exit, got {other:?}"),
    }
    assert!(error.to_string().contains("no previous version"), "{error}");
    assert!(scenario.containers(None).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_image_fails_before_anything_starts() {
    let scenario = Scenario::new("noimage");
    let docker = scenario.docker().await;
    let spec = DockerDeploySpec {
        pipeline: scenario.name().to_owned(),
        target: "local".into(),
        run_id: "run-1".into(),
        image: "shipit-test-deploy-docker-absent:never".into(),
        image_digest: "sha256:0".into(),
        config: config(json!({})),
    };
    let error = shipit::deploy::docker::deploy(
        &docker,
        &spec,
        &Recorder::default(),
        CancellationToken::new(),
    )
    .await
    .expect_err("a missing image must not deploy");
    assert!(
        matches!(error, DockerDeployError::ImageNotFound { .. }),
        "{error:?}"
    );
    assert!(scenario.containers(None).is_empty());
}

// ---------------------------------------------------------------------------------------
// A daemon that disappears mid-deploy: shipit talks to the daemon through a proxy socket
// that the test cuts while the new version waits on its gate.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daemon_lost_mid_deploy_is_a_clear_error_and_resume_cleans_up() {
    let scenario = Scenario::new("daemonloss");
    let docker = scenario.docker().await;
    let base = scenario.ports(4);
    let first = deploy_ok(
        &docker,
        &spec(&scenario, "run-1", WEB_IMAGE, web_config(base, 2, "one")).await,
    )
    .await;

    let proxy = DaemonProxy::start(Delivery::AsIs);
    let through_proxy = Docker::connect_with_unix(
        proxy.socket().to_str().expect("utf-8 socket path"),
        30,
        bollard::API_DEFAULT_VERSION,
    )
    .expect("a client for the proxy")
    .negotiate_version()
    .await
    .expect("the daemon answers through the proxy");

    let second_spec = spec(
        &scenario,
        "run-2",
        WEB_IMAGE,
        slow_gate_config(base, 2, "two"),
    )
    .await;
    let recorder = Recorder::default();
    let (result, ()) = tokio::join!(
        shipit::deploy::docker::deploy(
            &through_proxy,
            &second_spec,
            &recorder,
            CancellationToken::new()
        ),
        async {
            recorder
                .wait_for("waiting for", Duration::from_secs(20))
                .await;
            proxy.cut();
        }
    );
    let error = result.expect_err("a deploy that lost its daemon cannot succeed");
    match &error {
        DockerDeployError::Daemon { left_behind, .. } => {
            assert_eq!(left_behind.len(), 2, "{left_behind:?}");
        }
        other => panic!("expected a daemon error, got {other:?}"),
    }
    let message = error.to_string();
    assert!(message.starts_with("failed to "), "{message}");
    assert!(message.contains("shipit resume"), "{message}");
    assert!(!error.is_rolled_back());

    // The previous version never stopped serving.
    for container in &first.containers {
        assert_eq!(greeting(container.ports[0]).await.as_deref(), Some("one"));
    }
    // Once the daemon is back, resume finishes the deploy and leaves no orphans.
    let resumed = shipit::deploy::docker::resume(
        &docker,
        &second_spec,
        &Recorder::default(),
        CancellationToken::new(),
    )
    .await
    .unwrap_or_else(|error| panic!("resume failed: {error}"));
    let ids: HashSet<String> = resumed.containers.iter().map(|c| c.id.clone()).collect();
    let remaining: HashSet<String> = scenario.containers(None).into_iter().collect();
    assert_eq!(remaining, ids, "orphans remain");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_image_healthcheck_and_a_command_probe_gate_a_deploy() {
    let scenario = Scenario::new("gates");
    let docker = scenario.docker().await;
    let base = scenario.ports(2);

    // The demo Dockerfile's own HEALTHCHECK (wget on /health every 2s).
    let image_gate = config(json!({
        "port": base,
        "health": { "image": true, "interval": "300ms" },
        "timeout": "30s"
    }));
    let first = deploy_ok(
        &docker,
        &spec(&scenario, "run-1", WEB_IMAGE, image_gate).await,
    )
    .await;
    assert_eq!(first.containers[0].ports, vec![base]);

    // A command run inside the container, reading the port shipit gave it.
    let command_gate = config(json!({
        "port": base,
        "health": {
            "command": ["sh", "-c", "wget -q -O /dev/null http://127.0.0.1:$PORT/health"],
            "interval": "300ms",
            "start_period": "2s"
        },
        "timeout": "30s"
    }));
    let second = deploy_ok(
        &docker,
        &spec(&scenario, "run-2", WEB_IMAGE, command_gate).await,
    )
    .await;
    assert_eq!(second.containers[0].ports, vec![base + 1]);
    assert_eq!(second.replaced, vec![first.containers[0].id.clone()]);

    // A command probe that fails reports its exit code and output.
    let failing_gate = config(json!({
        "port": base,
        "health": {
            "command": ["sh", "-c", "echo migrations pending; exit 4"],
            "interval": "300ms",
            "retries": 2,
            "start_period": "0s"
        },
        "timeout": "30s"
    }));
    let error = shipit::deploy::docker::deploy(
        &docker,
        &spec(&scenario, "run-3", WEB_IMAGE, failing_gate).await,
        &Recorder::default(),
        CancellationToken::new(),
    )
    .await
    .expect_err("a failing command probe must not deploy");
    match &error {
        DockerDeployError::RolledBack {
            reason: GateFailure::Unhealthy { detail },
            ..
        } => assert!(
            detail.contains("exited with 4: migrations pending"),
            "{detail}"
        ),
        other => panic!("expected an unhealthy rollback, got {other:?}"),
    }
    assert!(is_running(&docker, &second.containers[0].id).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gate_past_its_deadline_rolls_back_and_says_it_timed_out() {
    let scenario = Scenario::new("deadline");
    let docker = scenario.docker().await;
    let base = scenario.ports(2);
    let never_enough_failures = config(json!({
        "port": base,
        "health": {
            "http": { "path": "/cgi-bin/health" },
            "interval": "300ms",
            "retries": 1000,
            "start_period": "0s"
        },
        "timeout": "2s"
    }));
    let started = Instant::now();
    let error = shipit::deploy::docker::deploy(
        &docker,
        &spec(&scenario, "run-1", BROKEN_IMAGE, never_enough_failures).await,
        &Recorder::default(),
        CancellationToken::new(),
    )
    .await
    .expect_err("a gate that never passes must not deploy");
    assert!(error.timed_out(), "{error:?}");
    assert!(error.is_rolled_back());
    assert!(error.to_string().contains("raise `timeout`"), "{error}");
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(scenario.containers(None).is_empty());
}
