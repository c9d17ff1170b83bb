//! What a docker deploy would start and stop, and taking a docker target down, against the
//! test environment's real Docker daemon (`DOCKER_HOST`, set by `scripts/test`).
//!
//! Every test deploys under its own pipeline name and removes that pipeline's containers when
//! it ends, passed or failed. The replicas run the base image's busybox httpd on loopback with
//! host networking, so the deploy's HTTP gate really answers on the ports the preview names.

mod support;

use std::time::Duration;

use bollard::Docker;
use serde_json::json;
use shipit::deploy::docker::{
    self, DeployObserver, DeployPreviewRequest, DockerDeployError, DockerDeployOutcome,
    DockerDeploySpec, DockerTargetConfig, PlannedReplica, PreviewAttempt, TargetContainer,
};
use support::deploy_recorder::Recorder;
use support::scenario::Scenario;
use support::{docker, http_get, testenv};
use tokio_util::sync::CancellationToken;

async fn daemon() -> Docker {
    match shipit::docker::connect().await {
        Ok(client) => client.bollard().clone(),
        Err(error) => panic!(
            "these tests need the test environment's Docker daemon (DOCKER_HOST={:?}): {error}; \
             run them through scripts/test",
            std::env::var("DOCKER_HOST").unwrap_or_default()
        ),
    }
}

/// `replicas` busybox httpd servers on loopback, told their port through PORT, that exit at
/// once on SIGTERM, gated on an HTTP GET.
fn web_config(port: u16, replicas: u32) -> DockerTargetConfig {
    let script = "mkdir -p /tmp/www; echo ok > /tmp/www/index.html; trap 'exit 0' TERM; \
                  httpd -f -p 127.0.0.1:$PORT -h /tmp/www & wait";
    serde_json::from_value(json!({
        "replicas": replicas,
        "port": port,
        "command": ["sh", "-c", script],
        "health": { "http": { "path": "/" }, "interval": "300ms" },
        "timeout": "60s",
        "labels": { "shipit-test": "docker-preview" },
    }))
    .expect("the test config parses")
}

fn spec(
    pipeline: &str,
    target: &str,
    run_id: &str,
    config: &DockerTargetConfig,
) -> DockerDeploySpec {
    let image = testenv("SHIPIT_TEST_BASE_IMAGE");
    DockerDeploySpec {
        pipeline: pipeline.to_owned(),
        target: target.to_owned(),
        run_id: run_id.to_owned(),
        image: image.clone(),
        image_digest: image,
        config: config.clone(),
    }
}

async fn deploy(docker: &Docker, spec: &DockerDeploySpec) -> DockerDeployOutcome {
    docker::deploy(docker, spec, &Recorder::default(), CancellationToken::new())
        .await
        .unwrap_or_else(|error| panic!("failed to deploy {}: {error}", spec.run_id))
}

fn short(id: &str) -> String {
    id.chars().take(12).collect()
}

#[tokio::test]
async fn the_preview_of_the_next_deploy_names_what_it_then_starts_and_stops() {
    let docker = daemon().await;
    let scenario = Scenario::new("preview");
    let pipeline = scenario.name().to_owned();
    let base = scenario.ports(4);
    let config = web_config(base, 2);

    let first = deploy(&docker, &spec(&pipeline, "web", "run-a", &config)).await;
    let first_ports: Vec<Vec<u16>> = first.containers.iter().map(|c| c.ports.clone()).collect();
    assert_eq!(first_ports, vec![vec![base], vec![base + 1]]);

    let preview = docker::preview_deploy(
        &docker,
        &DeployPreviewRequest {
            pipeline: &pipeline,
            target: "web",
            run_id: "run-b",
            config: &config,
            attempt: PreviewAttempt::Fresh,
        },
    )
    .await
    .expect("the deploy is previewed");

    let start_ports: Vec<Vec<u16>> = preview.start.iter().map(|r| r.ports.clone()).collect();
    assert_eq!(start_ports, vec![vec![base + 2], vec![base + 3]]);
    let expected_stop: Vec<TargetContainer> = first
        .containers
        .iter()
        .map(|c| TargetContainer {
            name: c.name.clone(),
            id: short(&c.id),
            run_id: "run-a".to_owned(),
            ports: c.ports.clone(),
            running: true,
        })
        .collect();
    assert_eq!(preview.stop, expected_stop);
    assert!(preview.adopt.is_empty() && preview.remove_leftovers.is_empty());
    let text = preview.to_string();
    assert!(
        text.starts_with(&format!("start {} on :{}", preview.start[0].name, base + 2))
            && text.contains(&format!(
                "; then stop {} (:{base})",
                first.containers[0].name
            )),
        "{text}"
    );

    // The deploy does what the preview said.
    let second = deploy(&docker, &spec(&pipeline, "web", "run-b", &config)).await;
    let started: Vec<PlannedReplica> = second
        .containers
        .iter()
        .map(|c| PlannedReplica {
            name: c.name.clone(),
            replica: c.replica,
            ports: c.ports.clone(),
        })
        .collect();
    assert_eq!(started, preview.start);
    let mut replaced: Vec<String> = second.replaced.iter().map(|id| short(id)).collect();
    replaced.sort();
    let mut announced: Vec<String> = preview.stop.iter().map(|c| c.id.clone()).collect();
    announced.sort();
    assert_eq!(replaced, announced);
    assert!(http_get(base + 2, "/").is_some(), "the new version answers");
}

#[tokio::test]
async fn taking_a_target_down_removes_all_of_it_and_nothing_of_another_target() {
    let docker = daemon().await;
    let scenario = Scenario::new("down");
    let pipeline = scenario.name().to_owned();
    let base = scenario.ports(3);
    let web = deploy(
        &docker,
        &spec(&pipeline, "web", "run-a", &web_config(base, 2)),
    )
    .await;
    let worker = deploy(
        &docker,
        &spec(&pipeline, "worker", "run-a", &web_config(base + 2, 1)),
    )
    .await;

    let preview = docker::preview_take_down(&docker, &pipeline, "web")
        .await
        .expect("the take-down is previewed");
    let previewed: Vec<(String, String, Vec<u16>)> = preview
        .containers
        .iter()
        .map(|c| (c.name.clone(), c.id.clone(), c.ports.clone()))
        .collect();
    let deployed: Vec<(String, String, Vec<u16>)> = web
        .containers
        .iter()
        .map(|c| (c.name.clone(), short(&c.id), c.ports.clone()))
        .collect();
    assert_eq!(previewed, deployed);

    // A take-down cancelled before it starts removes nothing.
    let cancelled = CancellationToken::new();
    cancelled.cancel();
    let error = docker::take_down(&docker, &pipeline, "web", &Recorder::default(), cancelled)
        .await
        .expect_err("a cancelled take-down fails");
    assert!(
        matches!(&error, DockerDeployError::TakeDownCancelled { remaining, .. } if remaining.len() == 2),
        "{error}"
    );
    let still = docker::preview_take_down(&docker, &pipeline, "web")
        .await
        .expect("listed");
    assert_eq!(still, preview);

    let recorder = Recorder::default();
    let outcome = docker::take_down(
        &docker,
        &pipeline,
        "web",
        &recorder,
        CancellationToken::new(),
    )
    .await
    .expect("the target is taken down");
    assert_eq!(outcome.removed, preview.containers);
    assert!(recorder.saw(&format!("stopping container {}", preview.containers[0])));
    assert!(recorder.saw("removed 2 containers"));

    // The daemon, asked through the docker CLI, has only the other target's container left,
    // still serving.
    let left = names_and_states(&pipeline);
    assert_eq!(
        left,
        vec![format!("{} running", worker.containers[0].name)],
        "{left:?}"
    );
    assert!(
        http_get(base + 2, "/").is_some(),
        "the other target still answers"
    );

    // Nothing left of the target is not an error.
    let recorder = Recorder::default();
    let again = docker::take_down(
        &docker,
        &pipeline,
        "web",
        &recorder,
        CancellationToken::new(),
    )
    .await
    .expect("taking an empty target down succeeds");
    assert!(again.removed.is_empty());
    assert!(recorder.saw("no container of"));
}

/// Cancels its token the moment the take-down says it began stopping a container.
struct CancelOnStop {
    token: CancellationToken,
}

impl DeployObserver for CancelOnStop {
    fn on_progress(&self, message: &str) {
        if message.starts_with("stopping container") {
            self.token.cancel();
        }
    }
}

#[tokio::test]
async fn a_cancelled_take_down_stops_waiting_and_the_next_one_finishes() {
    let docker = daemon().await;
    let scenario = Scenario::new("down-cancel");
    let pipeline = scenario.name().to_owned();
    // `sleep` as PID 1 ignores SIGTERM, so stopping it takes the whole grace period (10s)
    // before the daemon kills it.
    let stubborn: DockerTargetConfig = serde_json::from_value(json!({
        "command": ["sleep", "600"],
        "network": "none",
        "health": { "interval": "300ms", "start_period": "1s" },
        "labels": { "shipit-test": "docker-preview" },
    }))
    .expect("the test config parses");
    let deployed = deploy(&docker, &spec(&pipeline, "worker", "run-a", &stubborn)).await;
    let name = deployed.containers[0].name.clone();

    let token = CancellationToken::new();
    let observer = CancelOnStop {
        token: token.clone(),
    };
    let cancelled = tokio::time::timeout(
        Duration::from_secs(8),
        docker::take_down(&docker, &pipeline, "worker", &observer, token),
    )
    .await
    .expect("a cancelled take-down returns before the grace period ends");
    match cancelled {
        Err(DockerDeployError::TakeDownCancelled { removed, remaining }) => {
            assert!(removed.is_empty(), "{removed:?}");
            assert_eq!(remaining, vec![name.clone()]);
        }
        other => panic!("expected a cancelled take-down, got {other:?}"),
    }

    let outcome = docker::take_down(
        &docker,
        &pipeline,
        "worker",
        &Recorder::default(),
        CancellationToken::new(),
    )
    .await
    .expect("the second take-down finishes");
    let removed: Vec<&str> = outcome.removed.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(removed, vec![name.as_str()]);
    assert!(scenario.containers(None).is_empty());
}

/// `NAME STATE` of each container of the pipeline, running or not, as the docker CLI lists them.
fn names_and_states(pipeline: &str) -> Vec<String> {
    docker(&[
        "ps",
        "-a",
        "--format",
        "{{.Names}} {{.State}}",
        "--filter",
        &format!("label=shipit.pipeline={pipeline}"),
    ])
    .lines()
    .map(str::to_owned)
    .collect()
}
