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

/// The explanation a failed deploy recorded (the full message), with what changes from run to
/// run replaced: pod and ReplicaSet names, uids, image references, restart and event counts,
/// and the workload's own events (the controller's scaling steps, whose number depends on when
/// shipit read them).
fn assert_explanation_snapshot(name: &str, outputs: &Value) {
    let explanation = outputs["failure"].as_str().unwrap_or_default();
    let mut in_workload_events = false;
    let kept: Vec<&str> = explanation
        .lines()
        .filter(|line| {
            if line.starts_with("  events of deployment/") {
                in_workload_events = true;
                return true;
            }
            in_workload_events &= line.starts_with("    ");
            !in_workload_events
        })
        .collect();
    let explanation = kept.join("\n");
    let mut settings = insta::Settings::clone_current();
    settings.add_filter(r"[^\s\x22]+@sha256:[0-9a-f]{64}", "[image]");
    settings.add_filter(
        r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}",
        "[uid]",
    );
    settings.add_filter(
        r"\bweb-[bcdfghjklmnpqrstvwxz2456789]+-[bcdfghjklmnpqrstvwxz2456789]{5}",
        "web-[rs]-[pod]",
    );
    settings.add_filter(
        r"\bweb-smoke-[bcdfghjklmnpqrstvwxz2456789]{5}",
        "web-smoke-[pod]",
    );
    settings.add_filter(r"restarted [0-9]+ times", "restarted [n] times");
    settings.add_filter(r"restarts [0-9]+", "restarts [n]");
    settings.add_filter(r"\(x[0-9]+\)", "(xN)");
    settings.bind(|| insta::assert_snapshot!(name, explanation.as_str()));
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
    assert_explanation_snapshot("crash_loop", &outputs);
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
    assert_explanation_snapshot("image_pull", deploy_outputs(&run.json()));
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
    let result = run.json();
    assert_eq!(result["status"], "timed_out");
    // The explanation names the new pods that are not ready and why, not only counts.
    let failure = deploy_outputs(&result)["failure"]
        .as_str()
        .unwrap_or_default();
    assert!(
        failure.contains("new pods not ready (2):")
            && failure.contains("container web running, not ready"),
        "{failure}"
    );
    assert_explanation_snapshot("timeout", deploy_outputs(&result));
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

/// Blue/green settings for `EksProject::new`: the `web` Deployment as two slots behind the
/// `web` Service, `smoke_check` (YAML flow) checked through `web-preview`, the old slot scaled
/// down at once.
fn blue_green(smoke_check: &str) -> String {
    format!(
        "      strategy: blue_green\n      blue_green:\n        deployment: web\n        service: web\n        preview_service: web-preview\n        smoke_check: {smoke_check}\n        scale_down_delay: 0s\n"
    )
}

const HTTP_SMOKE: &str = "{ http: { path: /health }, timeout: 20s }";
const JOB_SMOKE: &str = "{ job: smoke/job.yaml, timeout: 20s }";

fn smoke_job_manifest() -> &'static str {
    "apiVersion: batch/v1\nkind: Job\nmetadata:\n  name: web-smoke\nspec:\n  backoffLimit: 0\n  template:\n    spec:\n      restartPolicy: Never\n      containers:\n        - name: check\n          image: registry.example/curl:8\n          args: [\"http://web-preview/health\"]\n"
}

impl EksProject {
    fn blue_green(prefix: &str, smoke_check: &str) -> EksProject {
        let eks = EksProject::new(prefix, &blue_green(smoke_check));
        eks.project
            .file("smoke/job.yaml", smoke_job_manifest())
            .commit();
        eks
    }

    /// The slot the `web` Service selects.
    fn serving_slot(&self) -> Option<String> {
        self.emulator
            .object("v1", "Service", NAMESPACE, "web")?
            .pointer("/spec/selector/shipit.dev~1slot")
            .and_then(Value::as_str)
            .map(str::to_owned)
    }

    fn slot(&self, slot: &str) -> Value {
        self.emulator
            .object("apps/v1", "Deployment", NAMESPACE, &format!("web-{slot}"))
            .unwrap_or(Value::Null)
    }

    fn slot_image(&self, slot: &str) -> String {
        self.slot(slot)["spec"]["template"]["spec"]["containers"][0]["image"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    fn slot_replicas(&self, slot: &str) -> i64 {
        self.slot(slot)["spec"]["replicas"].as_i64().unwrap_or(-1)
    }
}

#[test]
fn blue_green_deploys_to_the_idle_slot_switches_the_service_and_scales_the_old_slot_down() {
    let eks = EksProject::blue_green("e2e-eks-bg", HTTP_SMOKE);
    let first = eks.run(&["run"]);
    assert_eq!(first.code, 0, "{first:?}");
    assert_eq!(eks.serving_slot().as_deref(), Some("blue"));
    assert_eq!(eks.slot_image("blue"), pushed_ref(&first.json()));
    assert!(
        eks.deployment().is_null(),
        "the Deployment runs as slots only"
    );
    let preview = eks
        .emulator
        .object("v1", "Service", NAMESPACE, "web-preview")
        .expect("the preview Service is created");
    assert_eq!(preview["spec"]["selector"]["shipit.dev/slot"], "blue");

    eks.change_image("second");
    let second = eks.run(&["run"]);
    assert_eq!(second.code, 0, "{second:?}");
    let result = second.json();
    let outputs = deploy_outputs(&result);
    assert_eq!(outputs["slot"], "green", "{outputs}");
    assert_eq!(outputs["previous_slot"], "blue", "{outputs}");
    assert_eq!(outputs["previous_slot_scaled_down"], true, "{outputs}");
    assert!(
        outputs["smoke_check"]
            .as_str()
            .is_some_and(|s| s.contains("answered 200")),
        "{outputs}"
    );
    assert_eq!(eks.serving_slot().as_deref(), Some("green"));
    assert_eq!(eks.slot_image("green"), pushed_ref(&result));
    assert_eq!(eks.slot_replicas("green"), 2);
    assert_eq!(eks.slot_replicas("blue"), 0, "the old slot is scaled down");
    // The smoke check went through the API server's service proxy to the preview Service.
    assert!(
        eks.emulator
            .count("GET", "/services/web-preview:80/proxy/health")
            >= 2
    );

    // The next deploy goes back to blue, scaled down a moment ago: its replicas come back.
    eks.change_image("third");
    let third = eks.run(&["run"]);
    assert_eq!(third.code, 0, "{third:?}");
    // The dry run before the build takes `replicas` back as the apply does: no conflict.
    assert!(!third.stderr.contains("could not check"), "{third:?}");
    assert_eq!(eks.serving_slot().as_deref(), Some("blue"));
    assert_eq!(eks.slot_image("blue"), pushed_ref(&third.json()));
    assert_eq!(eks.slot_replicas("blue"), 2);
    assert_eq!(eks.slot_replicas("green"), 0);
}

#[test]
fn blue_green_switches_nothing_when_the_new_slot_fails_its_rollout() {
    let eks = EksProject::blue_green("e2e-eks-bg-crash", HTTP_SMOKE);
    assert_eq!(eks.run(&["run"]).code, 0);
    eks.emulator.set_scenario(
        NAMESPACE,
        "web-green",
        PodScenario::crash_loop(3, &["panic: DATABASE_URL is not set"]),
    );
    eks.change_image("second");
    let run = eks.run(&["run"]);
    assert_eq!(run.code, 3, "{run:?}");
    for evidence in [
        "deployment/web-green",
        "CrashLoopBackOff",
        "panic: DATABASE_URL is not set",
        "not switched: the service still selects slot blue",
        "web-green scaled to 0",
    ] {
        assert!(run.stderr.contains(evidence), "{evidence:?} in {run:?}");
    }
    assert_eq!(eks.serving_slot().as_deref(), Some("blue"));
    assert_eq!(eks.slot_replicas("green"), 0);
    assert_eq!(eks.slot_replicas("blue"), 2);
    let outputs = deploy_outputs(&run.json()).clone();
    assert_eq!(outputs["rolled_back"], true, "{outputs}");
    assert_eq!(outputs["slot"], "blue", "{outputs}");
}

#[test]
fn blue_green_switches_nothing_when_the_smoke_check_job_fails() {
    let eks = EksProject::blue_green("e2e-eks-bg-job", JOB_SMOKE);
    let first = eks.run(&["run"]);
    assert_eq!(first.code, 0, "{first:?}");
    assert_eq!(eks.serving_slot().as_deref(), Some("blue"));
    eks.emulator.set_scenario(
        NAMESPACE,
        "web-smoke",
        PodScenario::job_fails(7, &["GET http://web-preview/health: 500"]),
    );
    eks.change_image("second");
    let started = Instant::now();
    let run = eks.run(&["run"]);
    assert_eq!(run.code, 3, "{run:?}");
    assert!(
        started.elapsed() < Duration::from_secs(19),
        "the failed Job ends the check, not its 20s timeout"
    );
    for evidence in [
        "smoke check failed: BackoffLimitExceeded",
        "job/web-smoke",
        "BackoffLimitExceeded",
        "container check",
        "last exit code 7",
        "GET http://web-preview/health: 500",
        "not switched: the service still selects slot blue",
    ] {
        assert!(run.stderr.contains(evidence), "{evidence:?} in {run:?}");
    }
    assert_eq!(eks.serving_slot().as_deref(), Some("blue"));
    assert_eq!(eks.slot_replicas("green"), 0);
    assert_explanation_snapshot("blue_green_smoke_job", deploy_outputs(&run.json()));
}

#[test]
fn blue_green_switches_nothing_when_the_smoke_check_request_fails() {
    let eks = EksProject::blue_green("e2e-eks-bg-http", HTTP_SMOKE);
    assert_eq!(eks.run(&["run"]).code, 0);
    eks.emulator
        .set_proxy_answer(NAMESPACE, "web-preview", 500, "database unreachable");
    eks.change_image("second");
    let run = eks.run(&["run"]);
    assert_eq!(run.code, 3, "{run:?}");
    assert!(
        run.stderr
            .contains("GET /health through service web-preview:80 answered 500, expected 200: database unreachable"),
        "{run:?}"
    );
    assert_eq!(eks.serving_slot().as_deref(), Some("blue"));
    assert_eq!(eks.slot_replicas("green"), 0);
}

#[test]
fn blue_green_rollback_brings_the_previous_slot_back_and_flips_the_service() {
    let eks = EksProject::blue_green("e2e-eks-bg-rollback", HTTP_SMOKE);
    assert_eq!(eks.run(&["run"]).code, 0);
    let first = eks.slot_image("blue");
    eks.change_image("second");
    assert_eq!(eks.run(&["run"]).code, 0);
    assert_eq!(eks.serving_slot().as_deref(), Some("green"));
    assert_eq!(eks.slot_replicas("blue"), 0);
    let blue_generation = eks.slot("blue")["metadata"]["generation"].clone();

    let run = eks.run(&["rollback", "deploy:web"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(eks.serving_slot().as_deref(), Some("blue"));
    assert_eq!(
        eks.slot_image("blue"),
        first,
        "the earlier images serve again"
    );
    assert_eq!(eks.slot_replicas("blue"), 2);
    assert_eq!(eks.slot("blue")["status"]["readyReplicas"], 2);
    assert_eq!(eks.slot_replicas("green"), 0);
    // The slot still held the earlier template: it was scaled up, not rolled out again.
    assert_eq!(
        eks.slot("blue")["metadata"]["generation"].as_i64(),
        blue_generation.as_i64().map(|g| g + 1)
    );
    assert!(
        run.stderr
            .contains("switched service/web back to slot blue"),
        "{run:?}"
    );
}

#[test]
fn a_blue_green_deploy_killed_while_waiting_is_resumed_without_applying_again() {
    let eks = EksProject::blue_green("e2e-eks-bg-resume", HTTP_SMOKE);
    eks.emulator.set_scenario(
        NAMESPACE,
        "web-blue",
        PodScenario::Slow { steps_per_pod: 30 },
    );
    let mut child = eks.start_run();
    let deadline = Instant::now() + Duration::from_secs(120);
    while eks.slot("blue").is_null() {
        assert!(Instant::now() < deadline, "the deploy never applied");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(300));
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(eks.serving_slot(), None, "killed before the switch");
    let slot_applies = || {
        eks.emulator
            .requests()
            .iter()
            .filter(|r| {
                r.method == "PATCH"
                    && r.path.ends_with("/deployments/web-blue")
                    && !r.query.contains("dryRun")
            })
            .count()
    };
    let applied = slot_applies();
    let run = eks.run(&["resume"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        run.stderr
            .contains("resuming: slot blue was applied already"),
        "{run:?}"
    );
    assert_eq!(
        slot_applies(),
        applied,
        "the resume applied the slot not again"
    );
    assert_eq!(eks.slot("blue")["metadata"]["generation"], 1);
    assert_eq!(eks.serving_slot().as_deref(), Some("blue"));
}

#[test]
fn plan_says_which_slot_receives_the_deploy() {
    let eks = EksProject::blue_green("e2e-eks-bg-plan", HTTP_SMOKE);
    let plan = eks.project.shipit(&["plan"]);
    assert_eq!(plan.code, 0, "{plan:?}");
    assert!(
        plan.stdout
            .contains("the deploy goes to slot blue (web-blue)"),
        "{plan:?}"
    );
    assert!(eks.slot("blue").is_null(), "plan changes nothing");
}

fn stateful_set_manifest() -> &'static str {
    "apiVersion: apps/v1\nkind: StatefulSet\nmetadata:\n  name: web\nspec:\n  replicas: 2\n  serviceName: web\n  selector:\n    matchLabels: { app: web }\n  template:\n    metadata:\n      labels: { app: web }\n    spec:\n      containers:\n        - name: web\n          image: replaced-by-shipit\n"
}

fn daemon_set_manifest() -> &'static str {
    "apiVersion: apps/v1\nkind: DaemonSet\nmetadata:\n  name: web\nspec:\n  selector:\n    matchLabels: { app: web }\n  template:\n    metadata:\n      labels: { app: web }\n    spec:\n      containers:\n        - name: web\n          image: replaced-by-shipit\n"
}

impl EksProject {
    /// A project whose only manifest is `manifest` (a StatefulSet or DaemonSet named `web`).
    fn with_workload(prefix: &str, eks_extra: &str, manifest: &str) -> EksProject {
        let eks = EksProject::new(prefix, eks_extra);
        eks.project.file("k8s/web.yaml", manifest).commit();
        eks
    }

    fn workload_image(&self, kind: &str) -> String {
        self.emulator
            .object("apps/v1", kind, NAMESPACE, "web")
            .map(|w| w["spec"]["template"]["spec"]["containers"][0]["image"].clone())
            .and_then(|image| image.as_str().map(str::to_owned))
            .unwrap_or_default()
    }

    fn pod_images(&self) -> Vec<String> {
        self.emulator
            .pods(NAMESPACE, "app=web")
            .iter()
            .filter_map(|pod| {
                pod["spec"]["containers"][0]["image"]
                    .as_str()
                    .map(str::to_owned)
            })
            .collect()
    }
}

#[test]
fn a_crash_looping_stateful_set_is_rolled_back_and_its_stuck_pod_replaced() {
    let eks = EksProject::with_workload(
        "e2e-eks-sts",
        "      max_restarts: 1\n",
        stateful_set_manifest(),
    );
    let first = eks.run(&["run"]);
    assert_eq!(first.code, 0, "{first:?}");
    let good = eks.workload_image("StatefulSet");
    assert_eq!(good, pushed_ref(&first.json()));
    let outputs = deploy_outputs(&first.json()).clone();
    assert!(
        outputs["workloads"][0]["controller_revision"]
            .as_str()
            .is_some_and(|r| r.starts_with("web-")),
        "{outputs}"
    );
    eks.emulator.set_scenario(
        NAMESPACE,
        "web",
        PodScenario::crash_loop(3, &["panic: no such table: orders"]),
    );
    eks.change_image("second");
    let run = eks.run(&["run"]);
    assert_eq!(run.code, 3, "{run:?}");
    for evidence in [
        "statefulset/web",
        "CrashLoopBackOff",
        "panic: no such table: orders",
        "rolled back: statefulset/web",
        "deleted pod web-1",
    ] {
        assert!(run.stderr.contains(evidence), "{evidence:?} in {run:?}");
    }
    assert_eq!(eks.workload_image("StatefulSet"), good);
    assert_eq!(
        eks.pod_images(),
        [good.clone(), good],
        "every pod runs the previous image"
    );
}

#[test]
fn a_daemon_set_whose_image_cannot_be_pulled_is_rolled_back() {
    let eks = EksProject::with_workload("e2e-eks-ds", "", daemon_set_manifest());
    let first = eks.run(&["run"]);
    assert_eq!(first.code, 0, "{first:?}");
    let good = eks.workload_image("DaemonSet");
    assert_eq!(eks.pod_images().len(), 3, "one pod per node");
    eks.emulator
        .set_scenario(NAMESPACE, "web", PodScenario::ImagePullFails);
    eks.change_image("unpullable");
    let run = eks.run(&["run"]);
    assert_eq!(run.code, 3, "{run:?}");
    assert!(
        run.stderr.contains("ImagePullBackOff") || run.stderr.contains("ErrImagePull"),
        "{run:?}"
    );
    assert!(run.stderr.contains("rolled back: daemonset/web"), "{run:?}");
    assert_eq!(eks.workload_image("DaemonSet"), good);
    assert_eq!(eks.pod_images(), vec![good; 3]);
}

#[test]
fn rollback_returns_a_stateful_set_to_the_revision_the_earlier_run_recorded() {
    let eks = EksProject::with_workload("e2e-eks-sts-rollback", "", stateful_set_manifest());
    assert_eq!(eks.run(&["run"]).code, 0);
    let first = eks.workload_image("StatefulSet");
    eks.change_image("second");
    assert_eq!(eks.run(&["run"]).code, 0);
    assert_ne!(eks.workload_image("StatefulSet"), first);
    let run = eks.run(&["rollback", "deploy:web"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(eks.workload_image("StatefulSet"), first);
    assert_eq!(eks.pod_images(), [first.clone(), first]);
}

#[test]
fn a_blue_green_deploy_killed_after_the_switch_resumes_to_scale_the_old_slot_down() {
    let eks = EksProject::blue_green("e2e-eks-bg-resume-switched", HTTP_SMOKE);
    assert_eq!(eks.run(&["run"]).code, 0);
    let pipeline = std::fs::read_to_string(eks.project.path().join("shipit.yaml")).unwrap();
    eks.project
        .file(
            "shipit.yaml",
            pipeline.replace("scale_down_delay: 0s", "scale_down_delay: 4s"),
        )
        .commit();
    eks.change_image("second");
    let mut child = eks.start_run();
    let deadline = Instant::now() + Duration::from_secs(120);
    while eks.serving_slot().as_deref() != Some("green") {
        assert!(Instant::now() < deadline, "the deploy never switched");
        std::thread::sleep(Duration::from_millis(20));
    }
    // Give the journal its checkpoint, then kill outright, inside the scale-down delay.
    std::thread::sleep(Duration::from_millis(300));
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(eks.slot_replicas("blue"), 2, "killed before the scale-down");
    let green_applies = || {
        eks.emulator
            .requests()
            .iter()
            .filter(|r| {
                r.method == "PATCH"
                    && r.path.ends_with("/deployments/web-green")
                    && !r.query.contains("dryRun")
            })
            .count()
    };
    let applied = green_applies();
    let smoke_checks = || eks.emulator.count("GET", "/services/web-preview:80/proxy/");
    let checked = smoke_checks();
    let run = eks.run(&["resume"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        run.stderr
            .contains("resuming: slot green was applied already"),
        "{run:?}"
    );
    assert_eq!(green_applies(), applied, "nothing applied again");
    assert_eq!(smoke_checks(), checked, "the switch is not checked again");
    assert_eq!(eks.serving_slot().as_deref(), Some("green"));
    assert_eq!(eks.slot_replicas("blue"), 0, "the old slot is scaled down");
    let outputs = deploy_outputs(&run.json()).clone();
    assert_eq!(outputs["slot"], "green", "{outputs}");
    assert_eq!(outputs["previous_slot_scaled_down"], true, "{outputs}");
}

#[test]
fn a_blue_green_slot_slower_than_its_timeout_exits_4_without_switching() {
    let eks = EksProject::blue_green("e2e-eks-bg-slow", HTTP_SMOKE);
    assert_eq!(eks.run(&["run"]).code, 0);
    let pipeline = std::fs::read_to_string(eks.project.path().join("shipit.yaml")).unwrap();
    eks.project
        .file(
            "shipit.yaml",
            pipeline.replace("      timeout: 30s", "      timeout: 2s"),
        )
        .commit();
    eks.emulator.set_scenario(
        NAMESPACE,
        "web-green",
        PodScenario::Slow { steps_per_pod: 200 },
    );
    eks.change_image("second");
    let run = eks.run(&["run"]);
    assert_eq!(run.code, 4, "{run:?}");
    assert_eq!(run.json()["status"], "timed_out");
    for evidence in [
        "deployment/web-green: timed out after 2s",
        "new pods not ready (2):",
        "not switched: the service still selects slot blue",
        "web-green scaled to 0",
    ] {
        assert!(run.stderr.contains(evidence), "{evidence:?} in {run:?}");
    }
    assert_eq!(eks.serving_slot().as_deref(), Some("blue"));
    assert_eq!(eks.slot_replicas("green"), 0);
}

#[test]
fn rollback_returns_a_daemon_set_to_the_revision_the_earlier_run_recorded() {
    let eks = EksProject::with_workload("e2e-eks-ds-rollback", "", daemon_set_manifest());
    assert_eq!(eks.run(&["run"]).code, 0);
    let first = eks.workload_image("DaemonSet");
    eks.change_image("second");
    assert_eq!(eks.run(&["run"]).code, 0);
    assert_ne!(eks.workload_image("DaemonSet"), first);
    let run = eks.run(&["rollback", "deploy:web"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(eks.workload_image("DaemonSet"), first);
    assert_eq!(eks.pod_images(), vec![first; 3]);
}

#[test]
fn a_failing_blue_green_slot_is_left_running_when_rollback_on_failure_is_off() {
    let eks = EksProject::new(
        "e2e-eks-bg-keep",
        &format!(
            "      rollback_on_failure: false\n      max_restarts: 1\n{}",
            blue_green(HTTP_SMOKE)
        ),
    );
    assert_eq!(eks.run(&["run"]).code, 0);
    eks.emulator.set_scenario(
        NAMESPACE,
        "web-green",
        PodScenario::crash_loop(3, &["panic: DATABASE_URL is not set"]),
    );
    eks.change_image("second");
    let run = eks.run(&["run"]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stderr
            .contains("web-green is left running for inspection (rollback_on_failure: false)"),
        "{run:?}"
    );
    assert_eq!(eks.serving_slot().as_deref(), Some("blue"));
    assert_eq!(eks.slot_replicas("green"), 2);
}
