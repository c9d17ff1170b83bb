//! The EKS (Kubernetes) deploy target end to end: the real binary builds and pushes an image to
//! the test registry, then applies manifests to the Kubernetes API emulator
//! (tests/support/kube_emulator) through a kubeconfig, and gates on the rollout its simulated
//! controllers and kubelet play. Each scenario is checked for its exit code, its JSON result and
//! the explanation of a failure.

mod support;

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::kube_emulator::{KubeEmulator, PodScenario, Timing};
use support::{Project, Run, stage, testenv, unique_name};

const NAMESPACE: &str = "shop";

fn deployment_manifest(replicas: u32) -> String {
    format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n  labels: {{ app: web }}\nspec:\n  replicas: {replicas}\n  progressDeadlineSeconds: 600\n  selector:\n    matchLabels: {{ app: web }}\n  template:\n    metadata:\n      labels: {{ app: web }}\n    spec:\n      containers:\n        - name: web\n          image: replaced-by-shipit\n          ports: [{{ containerPort: 8080 }}]\n          env: [{{ name: GREETING, value: \"hello ${{{{ git.short_sha }}}}\" }}]\n          readinessProbe: {{ httpGet: {{ path: /health, port: 8080 }} }}\n---\napiVersion: v1\nkind: Service\nmetadata:\n  name: web\nspec:\n  selector: {{ app: web }}\n  ports: [{{ port: 80, targetPort: 8080 }}]\n"
    )
}

/// A project whose image is pushed to the test registry and deployed to the emulator's `shop`
/// namespace; `eks_extra` ends the target's `eks:` block.
struct EksProject {
    emulator: KubeEmulator,
    project: Project,
}

impl EksProject {
    fn new(prefix: &str, eks_extra: &str) -> EksProject {
        let emulator = KubeEmulator::start_with(Timing {
            step: Duration::from_millis(100),
            seconds_per_step: 6,
        });
        emulator.seed(
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}}),
        );
        let name = unique_name(prefix);
        let registry = testenv("SHIPIT_TEST_REGISTRY");
        let project = Project::with_docker();
        emulator
            .write_kubeconfig(&project.path().join("kubeconfig.yaml"), "e2e", "e2e-token")
            .unwrap();
        project
            .file(
                "shipit.yaml",
                format!(
                    "version: 1\nname: {name}\nimages:\n  web:\n    context: web\n    push: {{ registry: \"{registry}\", repository: e2e/{name} }}\ndeploy:\n  web:\n    image: web\n    eks:\n      kubeconfig: kubeconfig.yaml\n      context: e2e\n      namespace: {NAMESPACE}\n      manifests: [\"k8s/*.yaml\"]\n      container: web\n      timeout: 30s\n{eks_extra}"
                ),
            )
            .file("k8s/web.yaml", deployment_manifest(2))
            .file(
                "web/Dockerfile",
                format!("FROM busybox:latest\nRUN echo {name} > /id.txt\n"),
            )
            .commit();
        EksProject { emulator, project }
    }

    fn run(&self, args: &[&str]) -> Run {
        let mut all = args.to_vec();
        all.extend(["--output", "json"]);
        self.project.shipit(&all)
    }

    fn deployment(&self) -> Value {
        self.emulator
            .object("apps/v1", "Deployment", NAMESPACE, "web")
            .unwrap_or(Value::Null)
    }

    fn live_image(&self) -> String {
        self.deployment()["spec"]["template"]["spec"]["containers"][0]["image"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// A new image: the next run builds, pushes and deploys it.
    fn change_image(&self, marker: &str) {
        self.project
            .file(
                "web/Dockerfile",
                format!("FROM busybox:latest\nRUN echo {marker} > /id.txt\n"),
            )
            .commit();
    }

    fn start_run(&self) -> std::process::Child {
        self.project
            .command(&["run", "--output", "json"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    }

    /// The applies (not dry runs) of any object.
    fn applies(&self) -> usize {
        self.emulator
            .requests()
            .iter()
            .filter(|r| r.method == "PATCH" && !r.query.contains("dryRun"))
            .count()
    }
}

fn deploy_outputs(result: &Value) -> &Value {
    &stage(result, "deploy:web")["outputs"]
}

fn pushed_ref(result: &Value) -> String {
    stage(result, "push:web")["outputs"]["ref"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[test]
fn a_healthy_rollout_completes_and_an_unchanged_rerun_applies_nothing() {
    let eks = EksProject::new("e2e-eks-ok", "");
    let run = eks.run(&["run"]);
    assert_eq!(run.code, 0, "{run:?}");
    let result = run.json();
    let outputs = deploy_outputs(&result);
    assert_eq!(eks.live_image(), pushed_ref(&result), "{outputs}");
    let workload = &outputs["workloads"][0];
    assert_eq!(workload["kind"], "Deployment", "{outputs}");
    assert_eq!(workload["complete"], true, "{outputs}");
    assert_eq!(workload["available"], 2, "{outputs}");
    // The expression in the manifest was resolved.
    let env = &eks.deployment()["spec"]["template"]["spec"]["containers"][0]["env"][0]["value"];
    assert!(env.as_str().unwrap().starts_with("hello "), "{env}");
    assert!(!env.as_str().unwrap().contains("${{"), "{env}");
    assert!(
        eks.emulator
            .object("v1", "Service", NAMESPACE, "web")
            .is_some()
    );

    let applies = eks.applies();
    assert!(applies >= 1);
    let forced = eks.run(&["run", "--only", "deploy:web", "--force"]);
    assert_eq!(forced.code, 0, "{forced:?}");
    assert_eq!(
        eks.applies(),
        applies,
        "an unchanged manifest is not applied again"
    );
}

#[test]
fn a_crash_looping_rollout_is_rolled_back_with_the_container_s_exit_code_and_logs() {
    let eks = EksProject::new("e2e-eks-crash", "      max_restarts: 1\n");
    let first = eks.run(&["run"]);
    assert_eq!(first.code, 0, "{first:?}");
    let good = eks.live_image();
    eks.emulator.set_scenario(
        NAMESPACE,
        "web",
        PodScenario::crash_loop(3, &["listening on :8080", "panic: DATABASE_URL is not set"]),
    );
    eks.change_image("second");
    let run = eks.run(&["run"]);
    assert_eq!(run.code, 3, "{run:?}");
    for evidence in [
        "CrashLoopBackOff",
        "exit code 3",
        "panic: DATABASE_URL is not set",
    ] {
        assert!(run.stderr.contains(evidence), "{evidence:?} in {run:?}");
    }
    let outputs = deploy_outputs(&run.json()).clone();
    assert_eq!(outputs["rolled_back"], true, "{outputs}");
    assert_eq!(eks.live_image(), good, "the previous template is back");
}

#[test]
fn an_image_that_cannot_be_pulled_fails_early_and_is_rolled_back() {
    let eks = EksProject::new("e2e-eks-pull", "");
    assert_eq!(eks.run(&["run"]).code, 0);
    let good = eks.live_image();
    eks.emulator
        .set_scenario(NAMESPACE, "web", PodScenario::ImagePullFails);
    eks.change_image("unpullable");
    let started = Instant::now();
    let run = eks.run(&["run"]);
    assert_eq!(run.code, 3, "{run:?}");
    assert!(
        started.elapsed() < Duration::from_secs(25),
        "it failed early"
    );
    assert!(
        run.stderr.contains("ImagePullBackOff") || run.stderr.contains("ErrImagePull"),
        "{run:?}"
    );
    assert_eq!(eks.live_image(), good);
}

#[test]
fn pods_that_never_become_ready_fail_at_the_unready_timeout() {
    let eks = EksProject::new(
        "e2e-eks-unready",
        "      unready_timeout: 2s\n      rollback_on_failure: false\n",
    );
    eks.emulator
        .set_scenario(NAMESPACE, "web", PodScenario::NeverReady);
    let run = eks.run(&["run"]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stderr.contains("Readiness probe failed"), "{run:?}");
}

#[test]
fn a_rollout_slower_than_its_timeout_exits_4() {
    let eks = EksProject::new("e2e-eks-slow", "      rollback_on_failure: false\n");
    let pipeline = std::fs::read_to_string(eks.project.path().join("shipit.yaml")).unwrap();
    eks.project
        .file(
            "shipit.yaml",
            pipeline.replace("timeout: 30s", "timeout: 2s"),
        )
        .commit();
    eks.emulator
        .set_scenario(NAMESPACE, "web", PodScenario::Slow { steps_per_pod: 200 });
    let run = eks.run(&["run"]);
    assert_eq!(run.code, 4, "{run:?}");
    assert_eq!(run.json()["status"], "timed_out");
}

#[test]
fn a_deploy_killed_while_waiting_is_resumed_without_applying_again() {
    let eks = EksProject::new("e2e-eks-resume", "");
    eks.emulator
        .set_scenario(NAMESPACE, "web", PodScenario::Slow { steps_per_pod: 30 });
    let mut child = eks.start_run();
    let deadline = Instant::now() + Duration::from_secs(120);
    while eks.deployment().is_null() {
        assert!(Instant::now() < deadline, "the deploy never applied");
        std::thread::sleep(Duration::from_millis(20));
    }
    // Give the journal its checkpoint, then kill outright.
    std::thread::sleep(Duration::from_millis(300));
    child.kill().unwrap();
    child.wait().unwrap();
    let applies = eks.applies();
    let run = eks.run(&["resume"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(eks.applies(), applies, "the resume applied nothing again");
    assert!(run.stderr.contains("re-attaching"), "{run:?}");
}

#[test]
fn manifests_and_targets_that_do_not_fit_refuse_the_run_before_anything_is_built() {
    let eks = EksProject::new("e2e-eks-bad", "");
    eks.project
        .file("k8s/web.yaml", "kind: [unclosed\n")
        .commit();
    let run = eks.run(&["run"]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains("k8s/web.yaml"), "{run:?}");
    assert!(!run.stderr.contains("build:web: started"), "{run:?}");

    eks.project
        .file(
            "k8s/web.yaml",
            deployment_manifest(2)
                .replace("name: web\n          image", "name: app\n          image"),
        )
        .commit();
    let run = eks.run(&["run"]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(
        run.stderr.contains("app"),
        "the containers found are named: {run:?}"
    );
}

#[test]
fn forbidden_and_conflicting_applies_name_the_object() {
    let eks = EksProject::new("e2e-eks-forbidden", "");
    eks.emulator.forbid("patch", "deployments");
    let run = eks.run(&["run"]);
    assert_ne!(run.code, 0, "{run:?}");
    assert!(run.stderr.contains("forbidden"), "{run:?}");
    assert!(run.stderr.contains("deployments"), "{run:?}");
}

#[test]
fn plan_shows_what_the_apply_would_change() {
    let eks = EksProject::new("e2e-eks-plan", "");
    let plan = eks.project.shipit(&["plan"]);
    assert_eq!(plan.code, 0, "{plan:?}");
    assert!(
        plan.stdout.contains("deployment") || plan.stdout.contains("Deployment"),
        "{plan:?}"
    );
    assert!(eks.deployment().is_null(), "plan changes nothing");
}

#[test]
fn rollback_returns_the_workload_to_the_previous_runs_template() {
    let eks = EksProject::new("e2e-eks-rollback", "");
    assert_eq!(eks.run(&["run"]).code, 0);
    let first = eks.live_image();
    eks.change_image("second");
    assert_eq!(eks.run(&["run"]).code, 0);
    assert_ne!(eks.live_image(), first);
    let run = eks.run(&["rollback", "deploy:web"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(eks.live_image(), first);
}
