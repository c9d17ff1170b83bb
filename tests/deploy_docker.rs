//! The docker deploy target against a real Docker daemon: DOCKER_HOST, else
//! SHIPIT_TEST_DOCKER_HOST, else the default socket. The tests fail (never skip) when no
//! daemon answers.
//!
//! Every test deploys its own pipeline name, so tests run in parallel without seeing each
//! other's containers, and a guard removes every container of that pipeline when the test
//! ends, passed or failed. Containers also carry `shipit-test=deploy-docker` for a manual
//! sweep: `docker rm -f $(docker ps -aq --filter label=shipit-test=deploy-docker)`.
//! Ports come from a random range below the kernel's ephemeral ports, checked free, so
//! helpers and other suites running on the same host do not clash.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bollard::Docker;
use bollard::query_parameters::{
    BuildImageOptions, InspectContainerOptions, ListContainersOptions, RemoveContainerOptions,
};
use futures::StreamExt;
use rand::Rng;
use serde_json::json;
use shipit::deploy::docker::{
    DeployObserver, DockerDeployError, DockerDeploySpec, DockerTargetConfig, GateFailure,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::OnceCell;
use tokio_util::sync::CancellationToken;

const TEST_LABEL: &str = "shipit-test";
const TEST_LABEL_VALUE: &str = "deploy-docker";
const WEB_IMAGE: &str = "shipit-test-deploy-docker-web:latest";
const BROKEN_IMAGE: &str = "shipit-test-deploy-docker-broken:latest";

// ---------------------------------------------------------------------------------------
// The daemon, the images and the sweep guard.

fn docker_host() -> Option<String> {
    std::env::var("DOCKER_HOST")
        .ok()
        .or_else(|| std::env::var("SHIPIT_TEST_DOCKER_HOST").ok())
        .filter(|host| !host.is_empty())
}

async fn daemon() -> Docker {
    let host = docker_host();
    let connected = match &host {
        Some(host) => Docker::connect_with_host(host),
        None => Docker::connect_with_defaults(),
    };
    let where_ = host
        .clone()
        .unwrap_or_else(|| "the default socket".to_owned());
    let docker = connected.unwrap_or_else(|error| {
        panic!("failed to connect to the Docker daemon at {where_}: {error}; start dockerd or set DOCKER_HOST")
    });
    // The development daemon speaks API 1.41; bollard defaults to a newer version.
    let docker = docker.negotiate_version().await.unwrap_or_else(|error| {
        panic!("failed to reach the Docker daemon at {where_}: {error}; start dockerd or set DOCKER_HOST")
    });
    docker
        .ping()
        .await
        .unwrap_or_else(|error| panic!("the Docker daemon at {where_} does not answer: {error}"));
    docker
}

fn base_image() -> String {
    std::env::var("SHIPIT_TEST_BASE_IMAGE")
        .ok()
        .filter(|image| !image.is_empty())
        .unwrap_or_else(|| "busybox:latest".to_owned())
}

fn demo_context() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("pipelines/demo/web")
}

fn tar_file(builder: &mut tar::Builder<Vec<u8>>, path: &str, mode: u32, content: &[u8]) {
    let mut header = tar::Header::new_gnu();
    header.set_size(content.len() as u64);
    header.set_mode(mode);
    header.set_cksum();
    builder
        .append_data(&mut header, path, content)
        .expect("tar entry is written");
}

async fn build(docker: &Docker, tag: &str, context: Vec<u8>) {
    let options = BuildImageOptions {
        dockerfile: "Dockerfile".to_owned(),
        t: Some(tag.to_owned()),
        rm: true,
        forcerm: true,
        // The daemon here has no bridge network; RUN steps would need host or none.
        networkmode: Some("none".to_owned()),
        ..BuildImageOptions::default()
    };
    let mut stream = docker.build_image(options, None, Some(bollard::body_full(context.into())));
    while let Some(step) = stream.next().await {
        match step {
            Ok(info) => {
                if let Some(detail) = info.error_detail {
                    panic!("failed to build test image {tag}: {detail:?}");
                }
            }
            Err(error) => panic!("failed to build test image {tag}: {error}"),
        }
    }
}

/// Builds the demo app (the real `pipelines/demo/web`) and an image whose /health answers
/// 500, once per test binary.
async fn images(docker: &Docker) {
    static BUILT: OnceCell<()> = OnceCell::const_new();
    BUILT
        .get_or_init(|| async {
            let base = base_image();
            if let Err(error) = docker.inspect_image(&base).await {
                panic!(
                    "failed to find base image {base} on the Docker daemon: {error}; the test \
                     environment script imports it (SHIPIT_TEST_BASE_IMAGE names another)"
                );
            }
            let context = demo_context();
            let mut web = tar::Builder::new(Vec::new());
            let dockerfile = std::fs::read_to_string(context.join("Dockerfile"))
                .expect("the demo Dockerfile is readable")
                .replace("FROM busybox:latest", &format!("FROM {base}"));
            tar_file(&mut web, "Dockerfile", 0o644, dockerfile.as_bytes());
            for entry in ["serve.sh", "www/index.html", "www/health"] {
                let content = std::fs::read(context.join(entry)).expect("demo file is readable");
                tar_file(&mut web, entry, 0o644, &content);
            }
            build(docker, WEB_IMAGE, web.into_inner().expect("tar ends")).await;

            let mut broken = tar::Builder::new(Vec::new());
            let dockerfile =
                format!("FROM {WEB_IMAGE}\nCOPY health /www/cgi-bin/health\n");
            tar_file(&mut broken, "Dockerfile", 0o644, dockerfile.as_bytes());
            tar_file(
                &mut broken,
                "health",
                0o755,
                b"#!/bin/sh\necho 'Status: 500 Internal Server Error'\necho 'Content-Type: text/plain'\necho\necho 'database unreachable'\n",
            );
            build(docker, BROKEN_IMAGE, broken.into_inner().expect("tar ends")).await;
        })
        .await;
}

async fn image_id(docker: &Docker, image: &str) -> String {
    docker
        .inspect_image(image)
        .await
        .expect("the test image exists")
        .id
        .expect("the image has an id")
}

/// Removes every container of the test's pipeline when dropped, even after a panic.
struct Sweep {
    pipeline: String,
}

impl Drop for Sweep {
    fn drop(&mut self) {
        let pipeline = self.pipeline.clone();
        let swept = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime for the sweep");
            runtime.block_on(async {
                let docker = daemon().await;
                for id in containers_of(&docker, &pipeline, None).await {
                    let _ = docker
                        .remove_container(
                            &id,
                            Some(RemoveContainerOptions {
                                force: true,
                                ..RemoveContainerOptions::default()
                            }),
                        )
                        .await;
                }
            });
        })
        .join();
        if swept.is_err() && !std::thread::panicking() {
            panic!("failed to remove the containers of {}", self.pipeline);
        }
    }
}

/// Ids of the containers of a pipeline (and run, when given), running or not.
async fn containers_of(docker: &Docker, pipeline: &str, run_id: Option<&str>) -> Vec<String> {
    let mut labels = vec![format!("shipit.pipeline={pipeline}")];
    if let Some(run_id) = run_id {
        labels.push(format!("shipit.run-id={run_id}"));
    }
    let filters = std::collections::HashMap::from([("label".to_owned(), labels)]);
    let mut ids: Vec<String> = docker
        .list_containers(Some(ListContainersOptions {
            all: true,
            filters: Some(filters),
            ..ListContainersOptions::default()
        }))
        .await
        .expect("containers are listed")
        .into_iter()
        .filter_map(|summary| summary.id)
        .collect();
    ids.sort();
    ids
}

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
// Ports, HTTP and the progress recorder.

/// A base port with `len` free ports after it, picked at random below the ephemeral range
/// (32768 and up), where other servers on this host get their kernel-assigned ports.
fn free_port_range(len: u16) -> u16 {
    let mut rng = rand::rng();
    for _ in 0..500 {
        let base: u16 = rng.random_range(20_000..32_000);
        let free =
            (base..base + len).all(|port| std::net::TcpListener::bind(("127.0.0.1", port)).is_ok());
        if free {
            return base;
        }
    }
    panic!("failed to find {len} free consecutive ports on 127.0.0.1");
}

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

#[derive(Default)]
struct Recorder {
    lines: Mutex<Vec<String>>,
}

impl DeployObserver for Recorder {
    fn on_progress(&self, message: &str) {
        self.lines
            .lock()
            .expect("recorder lock")
            .push(message.to_owned());
    }
}

impl Recorder {
    fn saw(&self, needle: &str) -> bool {
        self.lines
            .lock()
            .expect("recorder lock")
            .iter()
            .any(|line| line.contains(needle))
    }

    fn lines(&self) -> Vec<String> {
        self.lines.lock().expect("recorder lock").clone()
    }

    async fn wait_for(&self, needle: &str, limit: Duration) {
        let started = Instant::now();
        while !self.saw(needle) {
            assert!(
                started.elapsed() < limit,
                "no progress line with `{needle}` within {limit:?}: {:?}",
                self.lines()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

// ---------------------------------------------------------------------------------------
// Specs.

/// A unique pipeline name per test and process, so parallel tests and runs never meet.
fn pipeline_name(test: &str) -> String {
    format!("dd-{test}-{}", std::process::id())
}

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

async fn spec(
    docker: &Docker,
    pipeline: &str,
    run_id: &str,
    image: &str,
    config: DockerTargetConfig,
) -> DockerDeploySpec {
    DockerDeploySpec {
        pipeline: pipeline.to_owned(),
        target: "local".to_owned(),
        run_id: run_id.to_owned(),
        image: image.to_owned(),
        image_digest: image_id(docker, image).await,
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
    let docker = daemon().await;
    images(&docker).await;
    let pipeline = pipeline_name("healthy");
    let _sweep = Sweep {
        pipeline: pipeline.clone(),
    };
    let base = free_port_range(4);

    let first = deploy_ok(
        &docker,
        &spec(
            &docker,
            &pipeline,
            "run-1",
            WEB_IMAGE,
            web_config(base, 2, "one"),
        )
        .await,
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
    let second_spec = spec(
        &docker,
        &pipeline,
        "run-2",
        WEB_IMAGE,
        web_config(base, 2, "two"),
    )
    .await;
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
    assert_eq!(containers_of(&docker, &pipeline, None).await, second_ids);
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
    let docker = daemon().await;
    images(&docker).await;
    let pipeline = pipeline_name("http500");
    let _sweep = Sweep {
        pipeline: pipeline.clone(),
    };
    let base = free_port_range(4);
    let first = deploy_ok(
        &docker,
        &spec(
            &docker,
            &pipeline,
            "run-1",
            WEB_IMAGE,
            web_config(base, 2, "stable"),
        )
        .await,
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
    let broken_spec = spec(&docker, &pipeline, "run-2", BROKEN_IMAGE, broken).await;
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
                container.starts_with(&format!("{pipeline}-local-")),
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

    assert!(
        containers_of(&docker, &pipeline, Some("run-2"))
            .await
            .is_empty()
    );
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
    let docker = daemon().await;
    images(&docker).await;
    let pipeline = pipeline_name("exits");
    let _sweep = Sweep {
        pipeline: pipeline.clone(),
    };
    let base = free_port_range(2);
    let first = deploy_ok(
        &docker,
        &spec(
            &docker,
            &pipeline,
            "run-1",
            WEB_IMAGE,
            web_config(base, 1, "stable"),
        )
        .await,
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
        &spec(&docker, &pipeline, "run-2", WEB_IMAGE, crashing).await,
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
    assert!(
        containers_of(&docker, &pipeline, Some("run-2"))
            .await
            .is_empty()
    );
    assert_eq!(
        greeting(first.containers[0].ports[0]).await.as_deref(),
        Some("stable")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_deploy_removes_the_new_replicas_and_resume_finishes_it() {
    let docker = daemon().await;
    images(&docker).await;
    let pipeline = pipeline_name("cancel");
    let _sweep = Sweep {
        pipeline: pipeline.clone(),
    };
    let base = free_port_range(4);
    let first = deploy_ok(
        &docker,
        &spec(
            &docker,
            &pipeline,
            "run-1",
            WEB_IMAGE,
            web_config(base, 2, "one"),
        )
        .await,
    )
    .await;

    let second_spec = spec(
        &docker,
        &pipeline,
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
    assert!(
        containers_of(&docker, &pipeline, Some("run-2"))
            .await
            .is_empty()
    );
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
    assert_eq!(
        containers_of(&docker, &pipeline, None).await,
        ids,
        "orphans remain"
    );
    for container in &resumed.containers {
        assert_eq!(greeting(container.ports[0]).await.as_deref(), Some("two"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_re_attaches_to_the_replicas_of_a_deploy_killed_mid_gate() {
    let docker = daemon().await;
    images(&docker).await;
    let pipeline = pipeline_name("killed");
    let _sweep = Sweep {
        pipeline: pipeline.clone(),
    };
    let base = free_port_range(4);
    let first = deploy_ok(
        &docker,
        &spec(
            &docker,
            &pipeline,
            "run-1",
            WEB_IMAGE,
            web_config(base, 2, "one"),
        )
        .await,
    )
    .await;

    // Drop the deploy future mid-gate, as a killed shipit process would: no cleanup runs.
    let second_spec = spec(
        &docker,
        &pipeline,
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
    let interrupted = containers_of(&docker, &pipeline, Some("run-2")).await;
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
    assert_eq!(
        containers_of(&docker, &pipeline, None).await,
        ids,
        "orphans remain"
    );
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
    let docker = daemon().await;
    images(&docker).await;
    let pipeline = pipeline_name("porttaken");
    let _sweep = Sweep {
        pipeline: pipeline.clone(),
    };
    let base = free_port_range(4);
    let first = deploy_ok(
        &docker,
        &spec(
            &docker,
            &pipeline,
            "run-1",
            WEB_IMAGE,
            web_config(base, 2, "one"),
        )
        .await,
    )
    .await;

    // Another process holds the port the new replica 0 would get.
    let squatter = std::net::TcpListener::bind(("127.0.0.1", base + 2)).expect("squat the port");
    let error = shipit::deploy::docker::deploy(
        &docker,
        &spec(
            &docker,
            &pipeline,
            "run-2",
            WEB_IMAGE,
            web_config(base, 2, "two"),
        )
        .await,
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
    assert!(
        containers_of(&docker, &pipeline, Some("run-2"))
            .await
            .is_empty()
    );
    for container in &first.containers {
        assert_eq!(greeting(container.ports[0]).await.as_deref(), Some("one"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_app_that_cannot_bind_its_port_rolls_back_with_the_bind_error() {
    let docker = daemon().await;
    images(&docker).await;
    let pipeline = pipeline_name("bind");
    let _sweep = Sweep {
        pipeline: pipeline.clone(),
    };
    let base = free_port_range(2);
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
        &spec(&docker, &pipeline, "run-1", WEB_IMAGE, no_probe).await,
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
    assert!(containers_of(&docker, &pipeline, None).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_image_fails_before_anything_starts() {
    let docker = daemon().await;
    let pipeline = pipeline_name("noimage");
    let spec = DockerDeploySpec {
        pipeline: pipeline.clone(),
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
    assert!(containers_of(&docker, &pipeline, None).await.is_empty());
}

// ---------------------------------------------------------------------------------------
// A daemon that disappears mid-deploy: shipit talks to the daemon through a proxy socket
// that the test cuts while the new version waits on its gate.

enum Upstream {
    Unix(PathBuf),
    Tcp(String),
}

fn upstream() -> Upstream {
    match docker_host() {
        Some(host) if host.starts_with("unix://") => {
            Upstream::Unix(PathBuf::from(host.trim_start_matches("unix://")))
        }
        Some(host) if host.starts_with("tcp://") => {
            Upstream::Tcp(host.trim_start_matches("tcp://").to_owned())
        }
        Some(host) => panic!("the daemon-loss test proxies unix:// or tcp:// hosts, not {host}"),
        None => Upstream::Unix(PathBuf::from("/var/run/docker.sock")),
    }
}

/// Starts a unix-socket proxy to the daemon; aborting the returned task cuts every
/// connection and stops accepting new ones.
fn start_proxy(socket: &Path) -> tokio::task::JoinHandle<()> {
    let listener = tokio::net::UnixListener::bind(socket).expect("bind the proxy socket");
    let upstream = Arc::new(upstream());
    tokio::spawn(async move {
        let mut connections = tokio::task::JoinSet::new();
        while let Ok((mut client, _)) = listener.accept().await {
            let upstream = Arc::clone(&upstream);
            connections.spawn(async move {
                match upstream.as_ref() {
                    Upstream::Unix(path) => {
                        if let Ok(mut server) = tokio::net::UnixStream::connect(path).await {
                            let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                        }
                    }
                    Upstream::Tcp(address) => {
                        if let Ok(mut server) = tokio::net::TcpStream::connect(address).await {
                            let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                        }
                    }
                }
            });
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daemon_lost_mid_deploy_is_a_clear_error_and_resume_cleans_up() {
    let docker = daemon().await;
    images(&docker).await;
    let pipeline = pipeline_name("daemonloss");
    let _sweep = Sweep {
        pipeline: pipeline.clone(),
    };
    let base = free_port_range(4);
    let first = deploy_ok(
        &docker,
        &spec(
            &docker,
            &pipeline,
            "run-1",
            WEB_IMAGE,
            web_config(base, 2, "one"),
        )
        .await,
    )
    .await;

    let directory = tempfile::tempdir().expect("a temp dir for the proxy socket");
    let socket = directory.path().join("docker.sock");
    let proxy = start_proxy(&socket);
    let through_proxy = Docker::connect_with_unix(
        socket.to_str().expect("utf-8 socket path"),
        30,
        bollard::API_DEFAULT_VERSION,
    )
    .expect("a client for the proxy")
    .negotiate_version()
    .await
    .expect("the daemon answers through the proxy");

    let second_spec = spec(
        &docker,
        &pipeline,
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
            proxy.abort();
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
    let remaining: HashSet<String> = containers_of(&docker, &pipeline, None)
        .await
        .into_iter()
        .collect();
    assert_eq!(remaining, ids, "orphans remain");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_image_healthcheck_and_a_command_probe_gate_a_deploy() {
    let docker = daemon().await;
    images(&docker).await;
    let pipeline = pipeline_name("gates");
    let _sweep = Sweep {
        pipeline: pipeline.clone(),
    };
    let base = free_port_range(2);

    // The demo Dockerfile's own HEALTHCHECK (wget on /health every 2s).
    let image_gate = config(json!({
        "port": base,
        "health": { "image": true, "interval": "300ms" },
        "timeout": "30s"
    }));
    let first = deploy_ok(
        &docker,
        &spec(&docker, &pipeline, "run-1", WEB_IMAGE, image_gate).await,
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
        &spec(&docker, &pipeline, "run-2", WEB_IMAGE, command_gate).await,
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
        &spec(&docker, &pipeline, "run-3", WEB_IMAGE, failing_gate).await,
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
    let docker = daemon().await;
    images(&docker).await;
    let pipeline = pipeline_name("deadline");
    let _sweep = Sweep {
        pipeline: pipeline.clone(),
    };
    let base = free_port_range(2);
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
        &spec(
            &docker,
            &pipeline,
            "run-1",
            BROKEN_IMAGE,
            never_enough_failures,
        )
        .await,
        &Recorder::default(),
        CancellationToken::new(),
    )
    .await
    .expect_err("a gate that never passes must not deploy");
    assert!(error.timed_out(), "{error:?}");
    assert!(error.is_rolled_back());
    assert!(error.to_string().contains("raise `timeout`"), "{error}");
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(containers_of(&docker, &pipeline, None).await.is_empty());
}
