//! The EKS deploy's benchmark (run by `scripts/bench-eks`): how soon shipit notices that its
//! rollout is complete, and how many API requests it makes while it waits.
//!
//! Against the test emulator (tests/support/kube_emulator) it deploys an image pushed to the test
//! registry through a kubeconfig; each run changes the Deployment's pod template (an annotation
//! the manifest takes from `${{ run.id }}`), so every `shipit run --only deploy:web --force` is a
//! new rollout, and measures:
//! - detection latency: from the instant the emulator marks the Deployment's generation complete
//!   to the instant the `shipit` process exits (median and max over RUNS runs);
//! - requests while waiting: per run, the requests between the apply and the end, against the
//!   rollout's length (a watch costs a few requests per workload, not one per second).
//!
//! Usage: bench_eks_detection SHIPIT_BINARY REGISTRY [RUNS]

#[path = "bench_project/mod.rs"]
mod bench_project;
#[path = "../tests/support/kube_emulator/mod.rs"]
mod kube_emulator;

use std::path::Path;
use std::time::{Duration, Instant};

use kube_emulator::{KubeEmulator, PodScenario, Timing};
use serde_json::json;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 {
        eprintln!("usage: bench_eks_detection SHIPIT_BINARY REGISTRY [RUNS]");
        std::process::exit(2);
    }
    let shipit = Path::new(&args[1]);
    let registry = &args[2];
    let runs: usize = args.get(3).and_then(|r| r.parse().ok()).unwrap_or(20);

    // A step of 250 ms: pods ready four steps after they start, three replicas, a surge of one.
    let emulator = KubeEmulator::start_with(Timing {
        step: Duration::from_millis(250),
        seconds_per_step: 6,
    });
    emulator.seed(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "bench"}}));
    emulator.set_scenario("bench", "web", PodScenario::Ready { after_steps: 4 });
    let project = tempfile::tempdir().expect("a temporary folder");
    let dir = project.path();
    write_project(dir, registry);
    emulator
        .write_kubeconfig(&dir.join("kubeconfig.yaml"), "bench", "bench-token")
        .expect("a kubeconfig");
    let first = bench_project::shipit_run(shipit, dir, &["run"]);
    assert_eq!(first.0, 0, "the first run failed:\n{}", first.2);

    let mut latencies = Vec::new();
    let mut requests_per_run = Vec::new();
    let mut waits = Vec::new();
    for run in 0..runs {
        let before = emulator.requests().len();
        let started = Instant::now();
        let (code, _, stderr) =
            bench_project::shipit_run(shipit, dir, &["run", "--only", "deploy:web", "--force"]);
        let exited = Instant::now();
        assert_eq!(code, 0, "run {run} failed:\n{stderr}");
        let deployment = emulator
            .object("apps/v1", "Deployment", "bench", "web")
            .expect("the Deployment");
        let generation = deployment["metadata"]["generation"].as_i64().unwrap_or(0);
        let completed = emulator
            .completed_at("bench", "web", generation)
            .expect("the emulator completed the rollout");
        latencies.push(exited.saturating_duration_since(completed));
        requests_per_run.push(emulator.requests().len() - before);
        waits.push(exited.duration_since(started));
    }
    latencies.sort();
    requests_per_run.sort();
    waits.sort();
    let median = |values: &[Duration]| values[values.len() / 2];
    println!(
        "detection latency over {runs} runs: median {:.0} ms, max {:.0} ms (target: median <= 500 ms)",
        median(&latencies).as_secs_f64() * 1000.0,
        latencies[latencies.len() - 1].as_secs_f64() * 1000.0
    );
    println!(
        "requests per run (apply, watch, reads): median {}, max {} while a run lasted {:.1} s (median)",
        requests_per_run[requests_per_run.len() / 2],
        requests_per_run[requests_per_run.len() - 1],
        median(&waits).as_secs_f64()
    );
}

fn write_project(dir: &Path, registry: &str) {
    bench_project::write_project(
        dir,
        &[
            (
                "shipit.yaml",
                format!(
                    "version: 1\nname: bench-eks\nimages:\n  web:\n    context: web\n    push: {{ registry: \"{registry}\", repository: bench/eks-web }}\ndeploy:\n  web:\n    image: web\n    eks:\n      kubeconfig: kubeconfig.yaml\n      context: bench\n      namespace: bench\n      manifests: [k8s.yaml]\n      container: web\n      timeout: 5m\n"
                ),
            ),
            (
                "k8s.yaml",
                "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  replicas: 3\n  selector:\n    matchLabels: { app: web }\n  template:\n    metadata:\n      labels: { app: web }\n      annotations: { bench/run: \"${{ run.id }}\" }\n    spec:\n      containers:\n        - name: web\n          image: replaced\n".to_owned(),
            ),
            (
                "web/Dockerfile",
                "FROM busybox:latest\nRUN echo bench > /id.txt\n".to_owned(),
            ),
        ],
    );
}
