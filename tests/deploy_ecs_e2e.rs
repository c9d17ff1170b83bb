//! The ECS deploy target end to end: the real binary builds and pushes an image to the test
//! registry, then deploys it to a service of the ECS/CodeDeploy emulator
//! (tests/support/aws_emulator), whose deployments progress through scripted scenarios. Each
//! scenario is checked for its exit code, its JSON result and the explanation of a failure.

mod support;

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::aws_emulator::{
    ActionOnTimeout, AwsEmulator, CodeDeployScenario, DeploymentController, DeploymentGroupSeed,
    LoadBalancerSeed, Scenario, ServiceSeed, Timing,
};
use support::{Project, Run, stage, testenv, unique_name};

const CLUSTER: &str = "shop";
const SERVICE: &str = "web";
const TARGET_GROUP: &str =
    "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/web/0123456789abcdef";

fn emulator() -> AwsEmulator {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(AwsEmulator::start_with(Timing {
        step: Duration::from_millis(100),
    }))
}

/// The task definition the pipeline deploys: roles, secrets, logs, a port for the load balancer.
fn task_definition(family: &str, image: &str) -> Value {
    json!({
        "family": family,
        "networkMode": "awsvpc",
        "requiresCompatibilities": ["FARGATE"],
        "cpu": "256",
        "memory": "512",
        "executionRoleArn": "arn:aws:iam::123456789012:role/web-execution",
        "taskRoleArn": "arn:aws:iam::123456789012:role/web-task",
        "containerDefinitions": [{
            "name": "web",
            "image": image,
            "essential": true,
            "portMappings": [{ "containerPort": 8080, "protocol": "tcp" }],
            "environment": [{ "name": "GREETING", "value": "hello" }],
            "secrets": [{ "name": "DATABASE_URL", "valueFrom": "arn:aws:ssm:us-east-1:123456789012:parameter/web/db" }],
            "logConfiguration": {
                "logDriver": "awslogs",
                "options": {
                    "awslogs-group": "/ecs/web",
                    "awslogs-region": "us-east-1",
                    "awslogs-stream-prefix": "web"
                }
            }
        }]
    })
}

const OLD_IMAGE: &str =
    "127.0.0.1:1/e2e/web@sha256:1111111111111111111111111111111111111111111111111111111111111111";

/// A project whose image is pushed to the test registry and deployed to the emulator's
/// `shop/web` service; `ecs_extra` ends the target's `ecs:` block.
struct EcsProject {
    emulator: AwsEmulator,
    project: Project,
    name: String,
}

impl EcsProject {
    fn new(prefix: &str, seed: impl FnOnce(&mut ServiceSeed), ecs_extra: &str) -> EcsProject {
        let emulator = emulator();
        let name = unique_name(prefix);
        let mut service = ServiceSeed::new(CLUSTER, SERVICE, task_definition(&name, OLD_IMAGE));
        service.load_balancer = Some(LoadBalancerSeed {
            target_group_arn: TARGET_GROUP.to_owned(),
            container_name: "web".to_owned(),
            container_port: 8080,
        });
        seed(&mut service);
        emulator.seed_service(service);
        let registry = testenv("SHIPIT_TEST_REGISTRY");
        let endpoint = emulator.endpoint();
        let project = Project::with_docker();
        project
            .file(
                "shipit.yaml",
                format!(
                    "version: 1\nname: {name}\nimages:\n  web:\n    context: web\n    push: {{ registry: \"{registry}\", repository: e2e/{name} }}\ndeploy:\n  web:\n    image: web\n    ecs:\n      cluster: {CLUSTER}\n      service: {SERVICE}\n      region: us-east-1\n      endpoint_url: {endpoint}\n      task_definition: taskdef.json\n      container: web\n      timeout: 30s\n{ecs_extra}"
                ),
            )
            .file(
                "taskdef.json",
                serde_json::to_string_pretty(&task_definition(&name, "replaced")).unwrap(),
            )
            .file(
                "web/Dockerfile",
                format!("FROM busybox:latest\nRUN echo {name} > /id.txt\n"),
            )
            .commit();
        EcsProject {
            emulator,
            project,
            name,
        }
    }

    fn run(&self, args: &[&str]) -> Run {
        let mut all = args.to_vec();
        all.extend(["--output", "json"]);
        self.project.shipit(&all)
    }

    /// Starts `shipit run --output json` without waiting for it.
    fn start_run(&self) -> std::process::Child {
        self.project
            .command(&["run", "--output", "json"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    }

    fn service(&self) -> Value {
        self.emulator.service(CLUSTER, SERVICE)
    }

    fn live_image(&self) -> String {
        let arn = self.emulator.live_task_definition(CLUSTER, SERVICE);
        arn_image(&self.registered(&arn))
    }

    /// What shipit sent to register revision `arn` (the seed is revision 1, registered
    /// inside the emulator; shipit's registrations follow).
    fn registered(&self, arn: &str) -> Value {
        let revision: usize = arn.rsplit(':').next().unwrap().parse().unwrap();
        self.emulator
            .calls()
            .into_iter()
            .filter(|call| call.operation == "RegisterTaskDefinition")
            .map(|call| call.body)
            .nth(revision - 2)
            .unwrap_or(Value::Null)
    }
}

/// Waits (bounded) until the emulator has answered `operation` `count` times.
fn wait_for_calls(ecs: &EcsProject, operation: &str, count: usize) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while ecs.emulator.count(operation) < count {
        assert!(
            Instant::now() < deadline,
            "{operation} was never called {count} times"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// How a run started with `start_run` ended.
fn finished(child: std::process::Child) -> Run {
    let output = child.wait_with_output().unwrap();
    Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

fn arn_image(task_definition: &Value) -> String {
    task_definition["containerDefinitions"][0]["image"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

fn deploy_outputs(result: &Value) -> &Value {
    &stage(result, "deploy:web")["outputs"]
}

#[test]
fn a_healthy_rollout_succeeds_on_our_deployment_and_a_rerun_changes_nothing() {
    let ecs = EcsProject::new("e2e-ecs-ok", |_| {}, "");
    let run = ecs.run(&["run"]);
    assert_eq!(run.code, 0, "{run:?}");
    let result = run.json();
    let pushed = stage(&result, "push:web")["outputs"]["ref"]
        .as_str()
        .unwrap()
        .to_owned();
    let outputs = deploy_outputs(&result);
    assert_eq!(outputs["rollout_state"], "COMPLETED", "{outputs}");
    assert_eq!(outputs["registered"], true);
    assert!(
        outputs["task_definition_arn"]
            .as_str()
            .unwrap()
            .ends_with(&format!("{}:2", ecs.name)),
        "{outputs}"
    );
    assert!(
        outputs["previous_task_definition_arn"]
            .as_str()
            .unwrap()
            .ends_with(&format!("{}:1", ecs.name))
    );
    assert!(
        outputs["deployment_id"]
            .as_str()
            .unwrap()
            .starts_with("ecs-svc/")
    );
    assert_eq!(outputs["running_count"], outputs["desired_count"]);
    assert_eq!(outputs["images"]["web"], pushed.as_str());
    // What runs is the pushed digest, and every other field came through.
    let registered = ecs.registered(outputs["task_definition_arn"].as_str().unwrap());
    assert_eq!(arn_image(&registered), pushed);
    assert_eq!(
        registered["containerDefinitions"][0]["secrets"][0]["valueFrom"],
        "arn:aws:ssm:us-east-1:123456789012:parameter/web/db"
    );
    assert_eq!(
        registered["executionRoleArn"],
        "arn:aws:iam::123456789012:role/web-execution"
    );
    let tags: Vec<&str> = registered["tags"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|tag| tag["key"].as_str())
        .collect();
    assert!(tags.contains(&"shipit:run-id"), "{registered}");
    assert_eq!(ecs.live_image(), pushed);

    // Nothing changed: the deploy is skipped, still deployed; forced, it registers nothing.
    let rerun = ecs.run(&["run"]);
    assert_eq!(rerun.code, 0, "{rerun:?}");
    assert_eq!(stage(&rerun.json(), "deploy:web")["status"], "skipped");
    let forced = ecs.run(&["run", "--only", "deploy:web", "--force"]);
    assert_eq!(forced.code, 0, "{forced:?}");
    assert_eq!(ecs.emulator.count("RegisterTaskDefinition"), 1);
    assert_eq!(ecs.emulator.count("UpdateService"), 1);
    assert!(forced.stderr.contains("already deployed"), "{forced:?}");
}

#[test]
fn a_deployment_the_circuit_breaker_rolls_back_exits_3_with_the_tasks_reasons_and_logs() {
    let ecs = EcsProject::new(
        "e2e-ecs-breaker",
        |service| {
            service.circuit_breaker = true;
            service.rollback = true;
        },
        "",
    );
    ecs.emulator.set_scenario(
        CLUSTER,
        SERVICE,
        Scenario::failing_tasks(
            1,
            &["listening on :8080", "FATAL: DATABASE_URL is not a URL"],
        ),
    );
    let before = ecs.emulator.live_task_definition(CLUSTER, SERVICE);
    let run = ecs.run(&["run"]);
    assert_eq!(run.code, 3, "{run:?}");
    let result = run.json();
    assert_eq!(result["status"], "rolled_back");
    let outputs = deploy_outputs(&result);
    assert_eq!(outputs["rollout_state"], "FAILED", "{outputs}");
    assert_eq!(outputs["rolled_back_to"].as_str(), Some(before.as_str()));
    let failure = outputs["failure"].as_str().unwrap();
    for evidence in [
        "Essential container in task exited",
        "exit code 1",
        "FATAL: DATABASE_URL is not a URL",
    ] {
        assert!(failure.contains(evidence), "{evidence:?} in {failure}");
        assert!(run.stderr.contains(evidence), "{evidence:?} in {run:?}");
    }
    assert_eq!(ecs.emulator.live_task_definition(CLUSTER, SERVICE), before);
    assert_explanation_snapshot("circuit_breaker_rollback", failure, &ecs.name);
}

/// The failure explanation, with what changes from run to run (names, ids, digests, and how
/// many tasks had stopped and which events had come when shipit looked) replaced.
fn assert_explanation_snapshot(name: &str, explanation: &str, pipeline: &str) {
    let mut in_events = false;
    let explanation: Vec<&str> = explanation
        .lines()
        .filter(|line| {
            if *line == "last service events:" {
                in_events = true;
                return true;
            }
            in_events &= line.starts_with("  ");
            !in_events
        })
        .collect();
    let explanation = explanation.join("\n");
    let mut settings = insta::Settings::clone_current();
    // Whether ECS's own reason was still on the deployment when shipit looked.
    settings.add_filter(r"(?m)^(deployment .* rolled back to [^ ]+) \(.*\)$", "$1");
    settings.add_filter(r"10\.0\.[0-9]+\.[0-9]+", "[address]");
    settings.add_filter(
        r"stopped tasks of this deployment \([^)]*\)",
        "stopped tasks of this deployment (n)",
    );
    settings.add_filter(&regex_escape(pipeline), "[pipeline]");
    settings.add_filter(r"ecs-svc/[0-9]+", "ecs-svc/[id]");
    settings.add_filter(r"\b[0-9a-f]{32}\b", "[task]");
    settings.add_filter(r"sha256:[0-9a-f]{64}", "sha256:[digest]");
    settings.bind(|| insta::assert_snapshot!(name, explanation.as_str()));
}

fn regex_escape(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_string()
            } else {
                format!("\\{c}")
            }
        })
        .collect()
}

#[test]
fn unhealthy_load_balancer_targets_are_named_with_their_reason_code() {
    let ecs = EcsProject::new(
        "e2e-ecs-elb",
        |service| {
            service.circuit_breaker = true;
            service.rollback = true;
        },
        "",
    );
    ecs.emulator
        .set_scenario(CLUSTER, SERVICE, Scenario::unhealthy_503());
    let run = ecs.run(&["run"]);
    assert_eq!(run.code, 3, "{run:?}");
    let failure = deploy_outputs(&run.json())["failure"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(failure.contains("Target.ResponseCodeMismatch"), "{failure}");
    assert!(failure.contains("failed ELB health checks"), "{failure}");
    assert_explanation_snapshot("unhealthy_targets", &failure, &ecs.name);
}

#[test]
fn tasks_that_keep_failing_without_a_circuit_breaker_fail_early_at_the_limit() {
    let ecs = EcsProject::new("e2e-ecs-limit", |_| {}, "      failed_tasks_limit: 2\n");
    ecs.emulator
        .set_scenario(CLUSTER, SERVICE, Scenario::failing_tasks(137, &["killed"]));
    let started = Instant::now();
    let run = ecs.run(&["run"]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(started.elapsed() < Duration::from_secs(25), "failed early");
    let failure = deploy_outputs(&run.json())["failure"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(failure.contains("exit code 137"), "{failure}");
}

#[test]
fn tasks_that_never_start_stop_the_wait_at_the_no_progress_deadline_with_exit_4() {
    let ecs = EcsProject::new(
        "e2e-ecs-stuck",
        |service| service.circuit_breaker = true,
        "      no_progress_timeout: 3s\n",
    );
    ecs.emulator
        .set_scenario(CLUSTER, SERVICE, Scenario::NeverStarts);
    let run = ecs.run(&["run"]);
    assert_eq!(run.code, 4, "{run:?}");
    let result = run.json();
    assert_eq!(result["status"], "timed_out");
    assert!(run.stderr.contains("no progress"), "{run:?}");
}

#[test]
fn a_rollout_slower_than_its_deadline_is_rolled_back_by_shipit_when_asked() {
    let ecs = EcsProject::new("e2e-ecs-slow", |_| {}, "      rollback_on_timeout: true\n");
    let pipeline = std::fs::read_to_string(ecs.project.path().join("shipit.yaml")).unwrap();
    ecs.project
        .file(
            "shipit.yaml",
            pipeline.replace("timeout: 30s", "timeout: 3s"),
        )
        .commit();
    ecs.emulator
        .set_scenario(CLUSTER, SERVICE, Scenario::Slow { step_per_task: 200 });
    let before = ecs.emulator.live_task_definition(CLUSTER, SERVICE);
    let child = ecs.start_run();
    wait_for_calls(&ecs, "UpdateService", 1);
    // The previous version starts as fast as it always did.
    ecs.emulator
        .set_scenario(CLUSTER, SERVICE, Scenario::Healthy);
    let run = finished(child);
    assert_eq!(run.code, 4, "{run:?}");
    assert!(
        run.stderr.contains("shipit rolled the service back"),
        "{run:?}"
    );
    assert!(run.stderr.contains("did not finish within 3s"), "{run:?}");
    let result = run.json();
    assert_eq!(
        deploy_outputs(&result)["rolled_back_to"].as_str(),
        Some(before.as_str())
    );
    let primary = &ecs.service()["deployments"][0];
    assert_eq!(primary["taskDefinition"].as_str(), Some(before.as_str()));
}

#[test]
fn a_competing_deployment_is_never_reported_as_success() {
    let ecs = EcsProject::new("e2e-ecs-compete", |_| {}, "");
    ecs.emulator
        .set_scenario(CLUSTER, SERVICE, Scenario::Competing { after_steps: 2 });
    let run = ecs.run(&["run"]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stderr.contains("competing"), "{run:?}");
}

#[test]
fn throttling_and_an_endpoint_without_the_service_deployments_api_still_succeed() {
    let ecs = EcsProject::new("e2e-ecs-throttle", |_| {}, "");
    ecs.emulator.without_service_deployments_api();
    ecs.emulator
        .set_scenario(CLUSTER, SERVICE, Scenario::Slow { step_per_task: 20 });
    // A burst before the update (the SDK's retries ride it out)…
    ecs.emulator.throttle("DescribeServices", 3);
    let child = ecs.start_run();
    wait_for_calls(&ecs, "UpdateService", 1);
    // …and a longer one while waiting, past the SDK's retries: the wait backs off and goes on.
    ecs.emulator.throttle("DescribeServices", 8);
    let run = finished(child);
    assert_eq!(run.code, 0, "{run:?}");
    let result = run.json();
    assert_eq!(deploy_outputs(&result)["rollout_state"], "COMPLETED");
    assert!(
        ecs.emulator.count("DescribeServices") >= 11 + 2,
        "every throttled call was retried"
    );
}

#[test]
fn a_deploy_killed_while_waiting_is_resumed_onto_the_same_deployment() {
    let ecs = EcsProject::new("e2e-ecs-resume", |_| {}, "");
    ecs.emulator
        .set_scenario(CLUSTER, SERVICE, Scenario::Slow { step_per_task: 30 });
    let mut child = ecs.start_run();
    wait_for_calls(&ecs, "UpdateService", 1);
    // Killed outright while waiting: no chance to journal anything more.
    child.kill().unwrap();
    child.wait().unwrap();
    let run = ecs.run(&["resume"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(
        ecs.emulator.count("UpdateService"),
        1,
        "one deployment only"
    );
    assert_eq!(ecs.emulator.count("RegisterTaskDefinition"), 1);
    assert!(run.stderr.contains("re-attaching"), "{run:?}");
}

#[test]
fn targets_that_do_not_fit_refuse_the_run_before_anything_is_built() {
    // No such service.
    let ecs = EcsProject::new("e2e-ecs-missing", |_| {}, "");
    let pipeline = std::fs::read_to_string(ecs.project.path().join("shipit.yaml")).unwrap();
    ecs.project
        .file(
            "shipit.yaml",
            pipeline.replace("service: web", "service: nope"),
        )
        .commit();
    let run = ecs.run(&["run"]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains("nope"), "{run:?}");
    assert!(
        !run.stderr.contains("build:web"),
        "nothing was built: {run:?}"
    );

    // A CodeDeploy service asked to roll.
    let ecs = EcsProject::new(
        "e2e-ecs-controller",
        |service| service.controller = DeploymentController::CodeDeploy,
        "",
    );
    let run = ecs.run(&["run"]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains("CODE_DEPLOY"), "{run:?}");
    assert!(run.stderr.contains("blue_green"), "{run:?}");

    // A task definition that is not JSON, and one without the container.
    let ecs = EcsProject::new("e2e-ecs-badjson", |_| {}, "");
    ecs.project
        .file("taskdef.json", "{ \"family\": \"x\",\n  nope }")
        .commit();
    let run = ecs.run(&["run"]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains("taskdef.json:2:"), "{run:?}");
    ecs.project
        .file(
            "taskdef.json",
            serde_json::to_string(
                &json!({"family": "x", "containerDefinitions": [{"name": "api", "image": "x"}]}),
            )
            .unwrap(),
        )
        .commit();
    let run = ecs.run(&["run"]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(
        run.stderr.contains("web") && run.stderr.contains("api"),
        "{run:?}"
    );
}

#[test]
fn no_credentials_at_all_refuse_the_run_before_anything_is_built() {
    let ecs = EcsProject::new("e2e-ecs-nocreds", |_| {}, "");
    let output = ecs
        .project
        .command(&["run"])
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("no AWS credentials"), "{stderr}");
    assert!(
        !stderr.contains("build:web: started"),
        "nothing was built: {stderr}"
    );
    assert_eq!(
        ecs.emulator.calls().len(),
        0,
        "nothing reached AWS unsigned"
    );
}

#[test]
fn access_denied_and_an_expired_session_name_what_is_missing() {
    let ecs = EcsProject::new("e2e-ecs-denied", |_| {}, "");
    ecs.emulator.deny("UpdateService");
    let run = ecs.run(&["run"]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stderr.contains("ecs:UpdateService"), "{run:?}");

    let ecs = EcsProject::new("e2e-ecs-expired", |_| {}, "");
    ecs.emulator
        .set_scenario(CLUSTER, SERVICE, Scenario::Slow { step_per_task: 20 });
    // Preflight, registration and the update get through; the wait meets an expired token.
    ecs.emulator.expire_credentials_after(8);
    let run = ecs.run(&["run"]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stderr.contains("expired"), "{run:?}");
    assert!(run.stderr.contains("shipit resume"), "{run:?}");
}

#[test]
fn plan_shows_the_task_definition_diff_and_the_service_changes() {
    let ecs = EcsProject::new("e2e-ecs-plan", |_| {}, "      desired_count: 3\n");
    let plan = ecs.project.shipit(&["plan"]);
    assert_eq!(plan.code, 0, "{plan:?}");
    assert!(
        plan.stdout.contains("containerDefinitions[web].image"),
        "{plan:?}"
    );
    assert!(plan.stdout.contains("desired count"), "{plan:?}");
    assert_eq!(
        ecs.emulator.count("RegisterTaskDefinition"),
        0,
        "plan changes nothing"
    );
    assert_eq!(ecs.emulator.count("UpdateService"), 0);
}

#[test]
fn rollback_returns_the_service_to_the_previous_runs_task_definition() {
    let ecs = EcsProject::new("e2e-ecs-rollback", |_| {}, "");
    let first = ecs.run(&["run"]);
    assert_eq!(first.code, 0, "{first:?}");
    let first_arn = deploy_outputs(&first.json())["task_definition_arn"]
        .as_str()
        .unwrap()
        .to_owned();
    ecs.project
        .file(
            "web/Dockerfile",
            "FROM busybox:latest\nRUN echo second > /id.txt\n",
        )
        .commit();
    let second = ecs.run(&["run"]);
    assert_eq!(second.code, 0, "{second:?}");
    assert_ne!(
        ecs.emulator.live_task_definition(CLUSTER, SERVICE),
        first_arn
    );

    let rollback = ecs.run(&["rollback", "deploy:web"]);
    assert_eq!(rollback.code, 0, "{rollback:?}");
    assert_eq!(
        ecs.emulator.live_task_definition(CLUSTER, SERVICE),
        first_arn
    );
    assert_eq!(
        stage(&rollback.json(), "rollback:web")["outputs"]["task_definition_arn"],
        first_arn.as_str()
    );
    assert_eq!(
        ecs.emulator.count("RegisterTaskDefinition"),
        2,
        "nothing new registered"
    );
}

#[test]
fn a_target_can_start_from_the_task_definition_the_service_runs() {
    let ecs = EcsProject::new("e2e-ecs-current", |_| {}, "");
    let pipeline = std::fs::read_to_string(ecs.project.path().join("shipit.yaml")).unwrap();
    ecs.project
        .file(
            "shipit.yaml",
            pipeline.replace("task_definition: taskdef.json", "task_definition: current"),
        )
        .commit();
    let run = ecs.run(&["run"]);
    assert_eq!(run.code, 0, "{run:?}");
    let outputs = deploy_outputs(&run.json()).clone();
    let registered = ecs.registered(outputs["task_definition_arn"].as_str().unwrap());
    assert_eq!(
        arn_image(&registered),
        outputs["images"]["web"].as_str().unwrap()
    );
    // Everything else is the live revision's, as ECS described it.
    assert_eq!(
        registered["containerDefinitions"][0]["logConfiguration"]["options"]["awslogs-group"],
        "/ecs/web"
    );
    assert_eq!(
        registered["taskRoleArn"],
        "arn:aws:iam::123456789012:role/web-task"
    );
}

#[test]
fn two_targets_deploy_in_parallel_and_each_is_gated_on_its_own_deployment() {
    let ecs = EcsProject::new("e2e-ecs-parallel", |_| {}, "");
    ecs.emulator.seed_service(ServiceSeed::new(
        CLUSTER,
        "api",
        task_definition(&format!("{}-api", ecs.name), OLD_IMAGE),
    ));
    for service in [SERVICE, "api"] {
        ecs.emulator
            .set_scenario(CLUSTER, service, Scenario::Slow { step_per_task: 15 });
    }
    let pipeline = std::fs::read_to_string(ecs.project.path().join("shipit.yaml")).unwrap();
    let web = &pipeline[pipeline.find("  web:\n    image: web").unwrap()..];
    let api = web
        .replacen("  web:", "  api:", 1)
        .replace("service: web", "service: api");
    ecs.project
        .file("shipit.yaml", format!("{pipeline}{api}"))
        .commit();
    let run = ecs.run(&["run"]);
    assert_eq!(run.code, 0, "{run:?}");
    let result = run.json();
    let updates: Vec<Instant> = ecs
        .emulator
        .calls()
        .into_iter()
        .filter(|call| call.operation == "UpdateService")
        .map(|call| call.at)
        .collect();
    assert_eq!(updates.len(), 2);
    for target in ["deploy:web", "deploy:api"] {
        let deployment = stage(&result, target)["outputs"]["deployment_id"]
            .as_str()
            .unwrap()
            .to_owned();
        let completed = ecs.emulator.completed_at(&deployment).unwrap();
        assert!(
            updates.iter().all(|update| *update < completed),
            "both services were updated before {target}'s deployment completed: the waits overlapped"
        );
    }
}

/// A CODE_DEPLOY service with its application and deployment group.
fn blue_green(prefix: &str, ready_wait: bool, extra: &str) -> EcsProject {
    let ecs = EcsProject::new(
        prefix,
        |service| service.controller = DeploymentController::CodeDeploy,
        &format!("      strategy: blue_green\n{extra}"),
    );
    let mut group = DeploymentGroupSeed::new(
        &format!("AppECS-{CLUSTER}-{SERVICE}"),
        &format!("DgpECS-{CLUSTER}-{SERVICE}"),
        CLUSTER,
        SERVICE,
    );
    group.auto_rollback = true;
    if ready_wait {
        group.ready_wait = Some((30, ActionOnTimeout::StopDeployment));
    }
    ecs.emulator.seed_deployment_group(group);
    ecs
}

#[test]
fn a_blue_green_deploy_follows_codedeploy_to_success() {
    let ecs = blue_green("e2e-bg-ok", false, "");
    let run = ecs.run(&["run"]);
    assert_eq!(run.code, 0, "{run:?}");
    let outputs = deploy_outputs(&run.json()).clone();
    assert_eq!(outputs["rollout_state"], "Succeeded", "{outputs}");
    assert!(
        outputs["codedeploy_deployment_id"]
            .as_str()
            .unwrap()
            .starts_with("d-")
    );
    assert!(run.stderr.contains("AfterAllowTraffic"), "{run:?}");
    assert_eq!(
        ecs.emulator.live_task_definition(CLUSTER, SERVICE),
        outputs["task_definition_arn"].as_str().unwrap()
    );
}

#[test]
fn a_blue_green_hook_failure_is_rolled_back_and_names_the_hook() {
    let ecs = blue_green(
        "e2e-bg-hook",
        false,
        "      codedeploy:\n        hooks: { after_allow_test_traffic: smoke-test }\n",
    );
    ecs.emulator.set_codedeploy_scenario(
        &format!("AppECS-{CLUSTER}-{SERVICE}"),
        &format!("DgpECS-{CLUSTER}-{SERVICE}"),
        CodeDeployScenario::HookFails {
            hook: "AfterAllowTestTraffic".into(),
            message: "smoke test: GET /health answered 503".into(),
        },
    );
    let before = ecs.emulator.live_task_definition(CLUSTER, SERVICE);
    let run = ecs.run(&["run"]);
    assert_eq!(run.code, 3, "{run:?}");
    assert!(run.stderr.contains("AfterAllowTestTraffic"), "{run:?}");
    assert!(run.stderr.contains("GET /health answered 503"), "{run:?}");
    assert_eq!(ecs.emulator.live_task_definition(CLUSTER, SERVICE), before);
}

#[test]
fn a_stuck_blue_green_deployment_is_stopped_with_rollback_at_the_deadline() {
    let ecs = blue_green("e2e-bg-stuck", false, "      no_progress_timeout: 3s\n");
    ecs.emulator.set_codedeploy_scenario(
        &format!("AppECS-{CLUSTER}-{SERVICE}"),
        &format!("DgpECS-{CLUSTER}-{SERVICE}"),
        CodeDeployScenario::Stuck,
    );
    let run = ecs.run(&["run"]);
    assert_eq!(run.code, 4, "{run:?}");
    assert_eq!(ecs.emulator.count("StopDeployment"), 1);
}

#[test]
fn a_reroute_wait_goes_on_when_approved_from_another_process() {
    let ecs = blue_green("e2e-bg-approve", true, "");
    ecs.emulator.set_codedeploy_scenario(
        &format!("AppECS-{CLUSTER}-{SERVICE}"),
        &format!("DgpECS-{CLUSTER}-{SERVICE}"),
        CodeDeployScenario::WaitsForReroute,
    );
    let child = ecs.start_run();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let approve = ecs.project.shipit(&["approve", "deploy:web"]);
        if approve.code == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "never approvable: {approve:?}");
        std::thread::sleep(Duration::from_millis(300));
    }
    let run = finished(child);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(ecs.emulator.count("ContinueDeployment") >= 1);
}
