//! `shipit plan` through the real binary, the test environment's daemon and registry: besides
//! run or skip, it says what a stage would change: which files of a build context changed
//! since the last build, which tags a push moves, and which containers a docker deploy would
//! start and stop (and the run then does just that).

mod support;

use support::demo_app::two_target_project;
use support::scenario::Scenario;
use support::{Project, stage, testenv, unique_name};

#[test]
fn plan_names_the_files_that_changed_since_the_last_build() {
    let scenario = Scenario::new("e2e-plan-files");
    let project = two_target_project(&scenario);
    let plan = project.shipit(&["plan", "--only", "build:web", "--output", "json"]);
    assert_eq!(
        stage(&plan.json(), "build:web")["details"][0],
        "no earlier build of this image on record"
    );
    let run = project.shipit(&["run", "--only", "build:web"]);
    assert_eq!(run.code, 0, "{run:?}");

    project
        .file("web/www/index.html", "<h1>changed</h1>\n")
        .file("web/www/new.txt", "new\n");
    std::fs::remove_file(project.path().join("web/www/health")).unwrap();
    let plan = project.shipit(&["plan", "--only", "build:web", "--output", "json"]);
    assert_eq!(plan.code, 0, "{plan:?}");
    let plan = plan.json();
    let build = stage(&plan, "build:web");
    assert_eq!(build["action"], "run", "{plan}");
    assert_eq!(
        build["details"][0],
        "context changed: 3 files (www/index.html changed, www/new.txt added, www/health removed)",
        "{plan}"
    );
}

#[test]
fn plan_names_the_ports_a_deploy_would_start_and_the_containers_it_would_stop() {
    let scenario = Scenario::new("e2e-plan");
    let project = two_target_project(&scenario);
    let first = project.shipit(&["run", "--output", "json"]);
    assert_eq!(first.code, 0, "{first:?}");
    let first = first.json();
    let running: Vec<(String, u64)> = stage(&first, "deploy:web")["outputs"]["containers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["name"].as_str().unwrap().to_owned(),
                c["ports"][0].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(running.len(), 2);

    let plan = project.shipit(&[
        "plan",
        "--only",
        "deploy:web",
        "--force",
        "--output",
        "json",
    ]);
    assert_eq!(plan.code, 0, "{plan:?}");
    let plan = plan.json();
    let details = stage(&plan, "deploy:web")["details"][0]
        .as_str()
        .unwrap()
        .to_owned();
    // Two versions share the host while the new one is gated: the new replicas take the next
    // ports, and the running ones are stopped once it passes.
    let (a, b) = (running[0].1, running[1].1);
    let expected = format!(
        "start 2 replicas on :{}, :{}; then stop {} (:{a}), {} (:{b})",
        a + 2,
        b + 2,
        running[0].0,
        running[1].0
    );
    assert_eq!(details, expected, "{plan}");

    // The deploy does what the plan said.
    let run = project.shipit(&["run", "--only", "deploy:web", "--force", "--output", "json"]);
    assert_eq!(run.code, 0, "{run:?}");
    let run = run.json();
    let deploy = stage(&run, "deploy:web");
    let ports: Vec<u64> = deploy["outputs"]["containers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["ports"][0].as_u64().unwrap())
        .collect();
    assert_eq!(ports, [a + 2, b + 2], "{deploy}");
    assert_eq!(deploy["outputs"]["replaced"].as_array().unwrap().len(), 2);
}

#[test]
fn plan_says_which_tags_a_push_moves_and_which_are_new() {
    let registry = testenv("SHIPIT_TEST_REGISTRY");
    let name = unique_name("e2e-plan-tags");
    let project = Project::with_docker();
    project
        .file("app/Dockerfile", format!("FROM busybox:latest\nRUN echo {name}-1 > /v\n"))
        .file(
            "shipit.yaml",
            format!(
                "version: 1\nname: {name}\nimages:\n  app:\n    context: app\n    push: {{ registry: \"{registry}\", repository: e2e/{name}, tags: [latest, \"${{{{ git.short_sha }}}}\"] }}\n"
            ),
        )
        .commit();
    let plan = project.shipit(&["plan", "--output", "json"]);
    assert_eq!(plan.code, 0, "{plan:?}");
    let plan = plan.json();
    let push = stage(&plan, "push:app");
    let details = push["details"][0].as_str().unwrap();
    assert!(
        details.starts_with("tags: latest is new, ") && details.ends_with(" is new"),
        "{plan}"
    );

    let run = project.shipit(&["run", "--output", "json"]);
    assert_eq!(run.code, 0, "{run:?}");
    let digest = stage(&run.json(), "push:app")["outputs"]["digest"]
        .as_str()
        .unwrap()
        .to_owned();
    project
        .file(
            "app/Dockerfile",
            format!("FROM busybox:latest\nRUN echo {name}-2 > /v\n"),
        )
        .commit();
    let plan = project.shipit(&["plan", "--output", "json"]);
    let plan = plan.json();
    let details = stage(&plan, "push:app")["details"][0]
        .as_str()
        .unwrap()
        .to_owned();
    let short = &digest[..("sha256:".len() + 12)];
    // The new commit's tag is new; latest moves from the digest the first run pushed.
    assert!(
        details.starts_with(&format!("tags: latest moves from {short}, "))
            && details.ends_with(" is new"),
        "{details}"
    );
}

/// The ECS and EKS examples of `pipelines/` validate and plan with no AWS to talk to: the plan
/// runs, and says of each deploy why it cannot show what it would change.
#[test]
fn the_cluster_examples_validate_and_plan_offline() {
    let state = tempfile::tempdir().unwrap();
    for file in [
        "pipelines/ecs-rolling.yaml",
        "pipelines/ecs-blue-green.yaml",
        "pipelines/eks-rolling.yaml",
        "pipelines/eks-blue-green.yaml",
    ] {
        let shipit = |args: &[&str]| {
            let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_shipit"));
            command
                .args(["-f", file, "--state-dir"])
                .arg(state.path())
                .args(args)
                .current_dir(support::repo_root())
                .env("NO_COLOR", "1")
                .env("AWS_REGION", "us-east-1")
                // Nothing listens on the discard port: every AWS call fails at once.
                .env("AWS_ENDPOINT_URL", "http://127.0.0.1:9");
            for var in support::INHERITED_FROM_THE_CI {
                command.env_remove(var);
            }
            command.output().unwrap()
        };
        let validate = shipit(&["validate"]);
        assert!(
            validate.status.success(),
            "{file}: {}",
            String::from_utf8_lossy(&validate.stderr)
        );
        let started = std::time::Instant::now();
        let plan = shipit(&["plan", "--output", "json"]);
        assert!(
            plan.status.success(),
            "{file}: {}",
            String::from_utf8_lossy(&plan.stderr)
        );
        assert!(
            started.elapsed() < std::time::Duration::from_secs(60),
            "{file}: an offline plan does not hang"
        );
        let plan: serde_json::Value = serde_json::from_slice(&plan.stdout).unwrap();
        let deploy = stage(&plan, "deploy:web");
        assert_eq!(deploy["action"], "run", "{plan}");
        let details = deploy["details"].to_string();
        assert!(
            details.contains("cannot preview the deploy"),
            "{file}: {plan}"
        );
    }
}

/// shipit's own daemon example deploys to EKS and to ECS: both targets validate and plan with no
/// AWS to talk to, from the same manifests and task definition a run would use.
#[test]
fn the_daemon_deployment_example_validates_and_plans_offline() {
    let state = tempfile::tempdir().unwrap();
    let shipit = |args: &[&str]| {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_shipit"));
        command
            .args(["-f", "pipelines/shipit-daemon.yaml", "--state-dir"])
            .arg(state.path())
            .args(args)
            .current_dir(support::repo_root())
            .env("NO_COLOR", "1")
            .env("AWS_REGION", "us-east-1")
            .env("AWS_ENDPOINT_URL", "http://127.0.0.1:9");
        for var in support::INHERITED_FROM_THE_CI {
            command.env_remove(var);
        }
        command.output().unwrap()
    };
    let validate = shipit(&["validate"]);
    assert!(
        validate.status.success(),
        "{}",
        String::from_utf8_lossy(&validate.stderr)
    );
    let plan = shipit(&["plan", "--output", "json"]);
    assert!(
        plan.status.success(),
        "{}",
        String::from_utf8_lossy(&plan.stderr)
    );
    let plan: serde_json::Value = serde_json::from_slice(&plan.stdout).unwrap();
    for target in ["deploy:daemon-eks", "deploy:daemon-ecs"] {
        assert_eq!(stage(&plan, target)["action"], "run", "{target}: {plan}");
    }
}

/// The daemons' configuration in the example's ConfigMap is one `shipit daemon --check` takes,
/// given the secrets the Deployment fills in from its Secret.
#[test]
fn the_daemon_example_configuration_passes_the_daemon_s_own_check() {
    let root = support::repo_root();
    let manifest = std::fs::read_to_string(root.join("pipelines/daemon/k8s/config.yaml")).unwrap();
    // The `daemon.yaml: |` block, its indentation taken off.
    let block: Vec<&str> = manifest
        .lines()
        .skip_while(|line| line.trim() != "daemon.yaml: |")
        .skip(1)
        .take_while(|line| line.is_empty() || line.starts_with("    "))
        .map(|line| line.get(4..).unwrap_or(""))
        .collect();
    assert!(block.len() > 10, "no daemon.yaml block in the ConfigMap");
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("daemon.yaml");
    std::fs::write(&config, block.join("\n")).unwrap();
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_shipit"));
    command
        .args(["daemon", "--check", "--config"])
        .arg(&config)
        .env(
            "DATABASE_URL",
            "postgres://shipit:secret@127.0.0.1:9/shipit",
        )
        .env("GITHUB_WEBHOOK_SECRET", "example-webhook-secret")
        .env("GIT_TOKEN", "example-git-token");
    let checked = command.output().unwrap();
    assert!(
        checked.status.success(),
        "{}",
        String::from_utf8_lossy(&checked.stderr)
    );
    // Without the token the Deployment gives, the daemon refuses to start, naming it.
    let refused = command.env_remove("GIT_TOKEN").output().unwrap();
    assert_eq!(refused.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("GIT_TOKEN is not set"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
}
