//! The ECS deploy's benchmark (run by `scripts/bench-ecs`): how soon shipit notices that its
//! deployment is done, and how many API calls it makes while it waits.
//!
//! Against the test emulator (tests/support/aws_emulator) it deploys an image pushed to the test
//! registry with `force_new_deployment`, so every `shipit run --only deploy:web --force` is a new
//! ECS deployment, and measures:
//! - detection latency: from the instant the emulator marks the deployment COMPLETED to the
//!   instant the `shipit` process exits (median and max over RUNS runs);
//! - calls while waiting: in one slow rollout of about two minutes, the most API calls in any 60 s
//!   window between the service update and the end of the wait.
//!
//! Usage: bench_ecs_detection SHIPIT_BINARY REGISTRY [RUNS]

#[path = "../tests/support/aws_emulator/mod.rs"]
mod aws_emulator;
#[path = "bench_project/mod.rs"]
mod bench_project;

use std::path::Path;
use std::time::{Duration, Instant};

use aws_emulator::{AwsEmulator, Scenario, ServiceSeed, Timing};
use serde_json::{Value, json};

const CLUSTER: &str = "bench";
const SERVICE: &str = "web";

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 {
        eprintln!("usage: bench_ecs_detection SHIPIT_BINARY REGISTRY [RUNS]");
        std::process::exit(2);
    }
    let shipit = Path::new(&args[1]);
    let registry = &args[2];
    let runs: usize = args.get(3).and_then(|r| r.parse().ok()).unwrap_or(20);

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    // A step of 250 ms: a healthy rollout takes about two seconds, like a small service's does
    // in tens of seconds; the latency measured is shipit's, not the rollout's.
    let emulator = runtime.block_on(AwsEmulator::start_with(Timing {
        step: Duration::from_millis(250),
    }));
    let project = tempfile::tempdir().expect("a temporary folder");
    let dir = project.path();
    write_project(dir, registry, &emulator.endpoint());
    emulator.seed_service(ServiceSeed::new(
        CLUSTER,
        SERVICE,
        task_definition("127.0.0.1:1/bench/web@sha256:0000000000000000000000000000000000000000000000000000000000000000"),
    ));

    // Build, push and a first deploy.
    let first = bench_project::shipit_run(shipit, dir, &["run"]);
    assert_eq!(first.0, 0, "the first run failed:\n{}", first.2);

    let mut latencies = Vec::new();
    for run in 0..runs {
        let (code, result, stderr) =
            bench_project::shipit_run(shipit, dir, &["run", "--only", "deploy:web", "--force"]);
        let exited = Instant::now();
        assert_eq!(code, 0, "run {run} failed:\n{stderr}");
        let deployment = deployment_id(&result);
        let completed = emulator
            .completed_at(&deployment)
            .expect("the emulator completed the deployment");
        latencies.push(exited.saturating_duration_since(completed));
    }
    latencies.sort();
    let median = latencies[latencies.len() / 2];
    let max = latencies[latencies.len() - 1];
    println!(
        "detection latency over {runs} runs: median {:.0} ms, max {:.0} ms (target: median <= 1000 ms; the SDK waiter polls every 15 s)",
        median.as_secs_f64() * 1000.0,
        max.as_secs_f64() * 1000.0
    );

    // One slow rollout: each task takes 480 steps (two minutes) to start.
    emulator.set_scenario(CLUSTER, SERVICE, Scenario::Slow { step_per_task: 480 });
    let before = emulator.calls().len();
    let (code, _, stderr) =
        bench_project::shipit_run(shipit, dir, &["run", "--only", "deploy:web", "--force"]);
    assert_eq!(code, 0, "the slow run failed:\n{stderr}");
    let calls: Vec<Instant> = emulator.calls()[before..]
        .iter()
        .skip_while(|call| call.operation != "UpdateService")
        .skip(1)
        .map(|call| call.at)
        .collect();
    let waited = calls
        .last()
        .zip(calls.first())
        .map(|(last, first)| last.duration_since(*first))
        .unwrap_or_default();
    let busiest = calls
        .iter()
        .enumerate()
        .map(|(i, start)| {
            calls[i..]
                .iter()
                .take_while(|at| at.duration_since(*start) < Duration::from_secs(60))
                .count()
        })
        .max()
        .unwrap_or(0);
    println!(
        "calls while waiting {:.0} s: {} in all, at most {busiest} in any 60 s (target: <= 20)",
        waited.as_secs_f64(),
        calls.len()
    );
}

fn task_definition(image: &str) -> Value {
    json!({
        "family": "bench-web",
        "networkMode": "awsvpc",
        "requiresCompatibilities": ["FARGATE"],
        "cpu": "256",
        "memory": "512",
        "containerDefinitions": [{
            "name": "web",
            "image": image,
            "essential": true,
            "portMappings": [{ "containerPort": 8080 }]
        }]
    })
}

fn write_project(dir: &Path, registry: &str, endpoint: &str) {
    bench_project::write_project(
        dir,
        &[
            (
                "shipit.yaml",
                format!(
                    "version: 1\nname: bench-ecs\nimages:\n  web:\n    context: web\n    push: {{ registry: \"{registry}\", repository: bench/ecs-web }}\ndeploy:\n  web:\n    image: web\n    ecs:\n      cluster: {CLUSTER}\n      service: {SERVICE}\n      region: us-east-1\n      endpoint_url: {endpoint}\n      task_definition: taskdef.json\n      container: web\n      force_new_deployment: true\n      timeout: 10m\n"
                ),
            ),
            (
                "taskdef.json",
                serde_json::to_string_pretty(&task_definition("replaced")).unwrap(),
            ),
            (
                "web/Dockerfile",
                "FROM busybox:latest\nRUN echo bench > /id.txt\n".to_owned(),
            ),
        ],
    );
}

fn deployment_id(result: &Value) -> String {
    result["stages"]
        .as_array()
        .and_then(|stages| stages.iter().find(|s| s["stage"] == "deploy:web"))
        .and_then(|stage| stage["outputs"]["deployment_id"].as_str())
        .expect("the result names the deployment")
        .to_owned()
}
