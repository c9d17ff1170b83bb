//! The AWS emulator (tests/support/aws_emulator) cross-checked with a client nobody here wrote:
//! the AWS CLI, installed by `scripts/testenv up`. Its parsers must read every answer, and its
//! waiters must reach the verdicts they reach against the real services, including the one
//! shipit exists to fix: `aws ecs wait services-stable` succeeds after a circuit-breaker
//! rollback, because the service is stable again, on the old version.
//!
//! The waiters poll every 15 s, so the emulator's step is short enough for each deployment to
//! settle before the second poll, and the checks run side by side.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::aws_emulator::{
    AwsEmulator, CodeDeployScenario, DeploymentController, DeploymentGroupSeed, LoadBalancerSeed,
    Scenario, ServiceSeed, Timing,
};
use support::ci_tools::{ToolRun, tool};

const CLUSTER: &str = "shop";
const TARGET_GROUP: &str =
    "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/web/0123456789abcdef";

fn task_definition(family: &str) -> Value {
    json!({
        "family": family,
        "networkMode": "awsvpc",
        "requiresCompatibilities": ["FARGATE"],
        "cpu": "256",
        "memory": "512",
        "containerDefinitions": [{
            "name": family,
            "image": format!("127.0.0.1:5000/{family}:v1"),
            "portMappings": [{"containerPort": 8080}],
            "logConfiguration": {"logDriver": "awslogs", "options": {
                "awslogs-group": format!("/ecs/{family}"),
                "awslogs-region": "us-east-1",
                "awslogs-stream-prefix": "ecs",
            }},
        }],
    })
}

/// A rolling service named `name` with a load balancer and the circuit breaker with rollback.
fn rolling(name: &str) -> ServiceSeed {
    ServiceSeed {
        circuit_breaker: true,
        rollback: true,
        load_balancer: Some(LoadBalancerSeed {
            target_group_arn: TARGET_GROUP.replace("/web/", &format!("/{name}/")),
            container_name: name.into(),
            container_port: 8080,
        }),
        ..ServiceSeed::new(CLUSTER, name, task_definition(name))
    }
}

/// A CODE_DEPLOY service `name` with deployment group `name` of application `shop`.
fn blue_green(emulator: &AwsEmulator, name: &str, scenario: CodeDeployScenario) {
    emulator.seed_service(ServiceSeed {
        controller: DeploymentController::CodeDeploy,
        ..rolling(name)
    });
    emulator.seed_deployment_group(DeploymentGroupSeed {
        auto_rollback: true,
        ..DeploymentGroupSeed::new("shop", name, CLUSTER, name)
    });
    emulator.set_codedeploy_scenario("shop", name, scenario);
}

fn start(step: Duration) -> AwsEmulator {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime")
        .block_on(AwsEmulator::start_with(Timing { step }))
}

/// The AWS CLI pointed at the emulator, with dummy credentials and no configuration.
struct Cli {
    program: PathBuf,
    endpoint: String,
    dir: tempfile::TempDir,
}

impl Cli {
    fn new(emulator: &AwsEmulator) -> Cli {
        Cli {
            program: tool("SHIPIT_TEST_AWS_CLI"),
            endpoint: emulator.endpoint(),
            dir: tempfile::tempdir().expect("a temp dir"),
        }
    }

    fn file(&self, name: &str, content: &Value) -> String {
        let path = self.dir.path().join(name);
        std::fs::write(&path, content.to_string()).expect("the input file is written");
        format!("file://{}", path.display())
    }

    fn run(&self, args: &[&str]) -> ToolRun {
        let nothing: &Path = &self.dir.path().join("absent");
        let output = Command::new(&self.program)
            .args(args)
            .args([
                "--endpoint-url",
                &self.endpoint,
                "--region",
                "us-east-1",
                "--output",
                "json",
            ])
            .env_remove("AWS_PROFILE")
            .env_remove("AWS_DEFAULT_PROFILE")
            .env_remove("AWS_SESSION_TOKEN")
            .env_remove("AWS_ENDPOINT_URL")
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .env("AWS_CONFIG_FILE", nothing)
            .env("AWS_SHARED_CREDENTIALS_FILE", nothing)
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("AWS_PAGER", "")
            .output()
            .unwrap_or_else(|err| panic!("the AWS CLI does not run: {err}"));
        ToolRun {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    /// Runs a command that must succeed; its JSON output (`null` when it prints nothing).
    fn json(&self, args: &[&str]) -> Value {
        let run = self.run(args);
        assert_eq!(run.code, 0, "aws {args:?}: {run:?}");
        if run.stdout.trim().is_empty() {
            return Value::Null;
        }
        serde_json::from_str(&run.stdout)
            .unwrap_or_else(|err| panic!("aws {args:?} printed no JSON ({err}): {run:?}"))
    }

    /// Registers the family's next revision and updates the service to it, through the CLI.
    fn deploy(&self, service: &str) {
        let input = self.file(&format!("{service}.json"), &task_definition(service));
        let registered = self.json(&[
            "ecs",
            "register-task-definition",
            "--cli-input-json",
            &input,
        ]);
        let arn = registered["taskDefinition"]["taskDefinitionArn"]
            .as_str()
            .expect("an ARN");
        self.json(&[
            "ecs",
            "update-service",
            "--cluster",
            CLUSTER,
            "--service",
            service,
            "--task-definition",
            arn,
        ]);
    }

    fn create_deployment(&self, emulator: &AwsEmulator, group: &str) -> String {
        let definition = emulator.register_task_definition(task_definition(group));
        let appspec = json!({
            "version": "0.0",
            "Resources": [{"TargetService": {"Type": "AWS::ECS::Service", "Properties": {
                "TaskDefinition": definition,
                "LoadBalancerInfo": {"ContainerName": group, "ContainerPort": 8080},
            }}}],
            "Hooks": [{"AfterAllowTestTraffic": "check-green"}],
        });
        let revision = json!({"revisionType": "AppSpecContent", "appSpecContent": {"content": appspec.to_string()}});
        let revision = self.file(&format!("{group}-revision.json"), &revision);
        let created = self.json(&[
            "deploy",
            "create-deployment",
            "--application-name",
            "shop",
            "--deployment-group-name",
            group,
            "--revision",
            &revision,
            "--description",
            "shipit test",
        ]);
        created["deploymentId"]
            .as_str()
            .expect("a deployment id")
            .to_owned()
    }
}

/// Waits (bounded) until `check` holds.
fn wait_until(what: &str, check: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn the_cli_waiters_reach_the_verdicts_they_reach_against_the_real_services() {
    let emulator = start(Duration::from_millis(100));
    let cli = Cli::new(&emulator);
    emulator.seed_service(rolling("web"));
    let before_rollback = emulator.seed_service(rolling("api"));
    emulator.set_scenario(CLUSTER, "api", Scenario::failing_tasks(1, &["boom"]));
    blue_green(&emulator, "checkout", CodeDeployScenario::Succeeds);
    blue_green(
        &emulator,
        "cart",
        CodeDeployScenario::HookFails {
            hook: "AfterAllowTestTraffic".into(),
            message: "smoke test failed".into(),
        },
    );
    blue_green(&emulator, "search", CodeDeployScenario::Stuck);

    let (healthy, rolled_back, missing, succeeded, hook_failed, stopped) =
        std::thread::scope(|scope| {
            let stable = |service: &'static str| {
                let cli = &cli;
                move || {
                    cli.deploy(service);
                    cli.run(&[
                        "ecs",
                        "wait",
                        "services-stable",
                        "--cluster",
                        CLUSTER,
                        "--services",
                        service,
                    ])
                }
            };
            let healthy = scope.spawn(stable("web"));
            let rolled_back = scope.spawn(stable("api"));
            let missing = scope.spawn(|| {
                cli.run(&[
                    "ecs",
                    "wait",
                    "services-stable",
                    "--cluster",
                    CLUSTER,
                    "--services",
                    "ghost",
                ])
            });
            let deployed = |group: &'static str, stop: bool| {
                let (cli, emulator) = (&cli, &emulator);
                move || {
                    let id = cli.create_deployment(emulator, group);
                    if stop {
                        let answer =
                            cli.json(&["deploy", "stop-deployment", "--deployment-id", &id]);
                        assert_eq!(answer["status"], "Pending", "{answer}");
                    }
                    cli.run(&[
                        "deploy",
                        "wait",
                        "deployment-successful",
                        "--deployment-id",
                        &id,
                    ])
                }
            };
            let succeeded = scope.spawn(deployed("checkout", false));
            let hook_failed = scope.spawn(deployed("cart", false));
            let stopped = scope.spawn(deployed("search", true));
            let join = |handle: std::thread::ScopedJoinHandle<'_, ToolRun>| {
                handle.join().expect("the check runs")
            };
            (
                join(healthy),
                join(rolled_back),
                join(missing),
                join(succeeded),
                join(hook_failed),
                join(stopped),
            )
        });

    assert_eq!(
        healthy.code, 0,
        "services-stable after a healthy rollout: {healthy:?}"
    );
    assert_eq!(
        rolled_back.code, 0,
        "services-stable after a rollback: {rolled_back:?}"
    );
    assert_eq!(
        emulator.live_task_definition(CLUSTER, "api"),
        before_rollback,
        "the rolled-back service runs its old revision"
    );
    assert_ne!(
        missing.code, 0,
        "services-stable for a missing service: {missing:?}"
    );
    assert!(
        missing.stderr.contains("MISSING") || missing.stderr.contains("failure"),
        "{missing:?}"
    );
    assert_eq!(
        succeeded.code, 0,
        "deployment-successful for a successful deployment: {succeeded:?}"
    );
    assert_ne!(
        hook_failed.code, 0,
        "deployment-successful for a failed hook: {hook_failed:?}"
    );
    assert_ne!(
        stopped.code, 0,
        "deployment-successful for a stopped deployment: {stopped:?}"
    );
}

#[test]
fn the_cli_parses_every_answer_the_emulator_gives() {
    let emulator = start(Duration::from_millis(50));
    let cli = Cli::new(&emulator);
    emulator.seed_service(rolling("web"));
    emulator.seed_service(rolling("worker"));
    emulator.set_scenario(
        CLUSTER,
        "worker",
        Scenario::failing_tasks(3, &["starting", "cannot reach the database"]),
    );
    blue_green(&emulator, "checkout", CodeDeployScenario::Stuck);

    let described = cli.json(&[
        "ecs",
        "describe-services",
        "--cluster",
        CLUSTER,
        "--services",
        "web",
        "ghost",
    ]);
    let service = &described["services"][0];
    assert_eq!(service["serviceName"], "web");
    assert_eq!(service["deployments"][0]["rolloutState"], "COMPLETED");
    assert_eq!(service["runningCount"], 2);
    assert_eq!(described["failures"][0]["reason"], "MISSING");

    let listed = cli.json(&[
        "ecs",
        "list-tasks",
        "--cluster",
        CLUSTER,
        "--service-name",
        "web",
    ]);
    let arns: Vec<&str> = listed["taskArns"]
        .as_array()
        .expect("taskArns")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(arns.len(), 2, "{listed}");
    let mut args = vec!["ecs", "describe-tasks", "--cluster", CLUSTER, "--tasks"];
    args.extend(&arns);
    let tasks = cli.json(&args);
    assert_eq!(tasks["tasks"][0]["lastStatus"], "RUNNING", "{tasks}");
    assert_eq!(tasks["tasks"][0]["group"], "service:web");

    let health = cli.json(&[
        "elbv2",
        "describe-target-health",
        "--target-group-arn",
        TARGET_GROUP,
    ]);
    let states: Vec<&Value> = health["TargetHealthDescriptions"]
        .as_array()
        .expect("descriptions")
        .iter()
        .map(|d| &d["TargetHealth"]["State"])
        .collect();
    assert_eq!(states, [&json!("healthy"), &json!("healthy")], "{health}");
    let unknown = cli.run(&[
        "elbv2",
        "describe-target-health",
        "--target-group-arn",
        "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/none/0",
    ]);
    assert!(
        unknown.code != 0 && unknown.stderr.contains("TargetGroupNotFound"),
        "{unknown:?}"
    );

    cli.deploy("worker");
    wait_until("a worker task to fail", || {
        emulator.service(CLUSTER, "worker")["deployments"][0]["failedTasks"].as_u64() >= Some(1)
    });
    let stopped = cli.json(&[
        "ecs",
        "list-tasks",
        "--cluster",
        CLUSTER,
        "--service-name",
        "worker",
        "--desired-status",
        "STOPPED",
    ]);
    let mut args = vec!["ecs", "describe-tasks", "--cluster", CLUSTER, "--tasks"];
    args.extend(
        stopped["taskArns"]
            .as_array()
            .expect("taskArns")
            .iter()
            .filter_map(Value::as_str),
    );
    let tasks = cli.json(&args);
    // The rollback the circuit breaker starts also stops the tasks the service ran before.
    let task = tasks["tasks"]
        .as_array()
        .expect("tasks")
        .iter()
        .find(|t| t["stopCode"] == "EssentialContainerExited")
        .unwrap_or_else(|| panic!("no task of the failing deployment stopped: {tasks}"));
    assert_eq!(task["containers"][0]["exitCode"], 3, "{task}");
    assert_eq!(
        task["stoppedReason"], "Essential container in task exited",
        "{task}"
    );
    let stopped_arn = task["taskArn"].as_str().expect("a task ARN");
    let task_id = stopped_arn.rsplit('/').next().expect("a task id");
    let events = cli.json(&[
        "logs",
        "get-log-events",
        "--log-group-name",
        "/ecs/worker",
        "--log-stream-name",
        &format!("ecs/worker/{task_id}"),
        "--start-from-head",
    ]);
    let messages: Vec<&Value> = events["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|e| &e["message"])
        .collect();
    assert_eq!(
        messages,
        [&json!("starting"), &json!("cannot reach the database")],
        "{events}"
    );
    let absent = cli.run(&[
        "logs",
        "get-log-events",
        "--log-group-name",
        "/ecs/worker",
        "--log-stream-name",
        "ecs/worker/0",
    ]);
    assert!(
        absent.code != 0 && absent.stderr.contains("ResourceNotFoundException"),
        "{absent:?}"
    );

    let id = cli.create_deployment(&emulator, "checkout");
    let targets = cli.json(&["deploy", "list-deployment-targets", "--deployment-id", &id]);
    assert_eq!(targets["targetIds"], json!(["shop:checkout"]));
    wait_until("the stuck deployment to reach Install", || {
        emulator.service(CLUSTER, "checkout")["taskSets"]
            .as_array()
            .is_some_and(|sets| sets.len() == 2)
    });
    let target = cli.json(&[
        "deploy",
        "get-deployment-target",
        "--deployment-id",
        &id,
        "--target-id",
        "shop:checkout",
    ]);
    let ecs_target = &target["deploymentTarget"]["ecsTarget"];
    let names: Vec<&str> = ecs_target["lifecycleEvents"]
        .as_array()
        .expect("events")
        .iter()
        .filter_map(|e| e["lifecycleEventName"].as_str())
        .collect();
    assert_eq!(
        names,
        [
            "BeforeInstall",
            "Install",
            "AfterInstall",
            "AllowTestTraffic",
            "AfterAllowTestTraffic",
            "BeforeAllowTraffic",
            "AllowTraffic",
            "AfterAllowTraffic"
        ]
    );
    assert_eq!(
        ecs_target["lifecycleEvents"][1]["status"], "InProgress",
        "{target}"
    );
    let labels: Vec<&Value> = ecs_target["taskSetsInfo"]
        .as_array()
        .expect("task sets")
        .iter()
        .map(|s| &s["taskSetLabel"])
        .collect();
    assert_eq!(labels, [&json!("Blue"), &json!("Green")], "{target}");
    let deployment = cli.json(&["deploy", "get-deployment", "--deployment-id", &id]);
    assert_eq!(
        deployment["deploymentInfo"]["status"], "InProgress",
        "{deployment}"
    );
    assert_eq!(deployment["deploymentInfo"]["description"], "shipit test");
}
