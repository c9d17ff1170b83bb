//! `shipit down` end to end, through the real binary and the test environment's daemon: it
//! says what it would remove, removes every container of the target and nothing else, and
//! journals what it did as a run of its own.

mod support;

use support::demo_app::two_target_project;
use support::scenario::Scenario;
use support::{Project, docker, stage};

/// Names of the containers of a pipeline's target, running or not.
fn containers_of_target(pipeline: &str, target: &str) -> Vec<String> {
    docker(&[
        "ps",
        "-a",
        "--format",
        "{{.Names}}",
        "--filter",
        &format!("label=shipit.pipeline={pipeline}"),
        "--filter",
        &format!("label=shipit.target={target}"),
    ])
    .lines()
    .map(str::to_owned)
    .collect()
}

#[test]
fn down_removes_every_container_of_the_target_and_journals_it_leaving_other_targets_running() {
    let scenario = Scenario::new("e2e-down");
    let name = scenario.name().to_owned();
    let project = two_target_project(&scenario);
    let run = project.shipit(&["run"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(containers_of_target(&name, "web").len(), 2);
    assert_eq!(containers_of_target(&name, "admin").len(), 1);

    let dry = project.shipit(&["down", "web", "--dry-run"]);
    assert_eq!(dry.code, 0, "{dry:?}");
    let line = dry.stdout.trim();
    assert!(
        line.starts_with(&format!("down:web  remove {name}-web-")),
        "{dry:?}"
    );
    assert_eq!(line.matches(&format!("{name}-web-")).count(), 2, "{dry:?}");
    assert_eq!(
        containers_of_target(&name, "web").len(),
        2,
        "a dry run removes nothing"
    );

    let down = project.shipit(&["down", "web", "--output", "json"]);
    assert_eq!(down.code, 0, "{down:?}");
    let result = down.json();
    let removed = stage(&result, "down:web")["outputs"]["removed"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(removed.len(), 2, "{result}");
    assert!(containers_of_target(&name, "web").is_empty());
    assert_eq!(
        containers_of_target(&name, "admin").len(),
        1,
        "another target of the pipeline is untouched"
    );
    // Journaled like any run: listed, and shown with what it removed.
    let run_id = result["run_id"].as_str().unwrap();
    let runs = project.shipit(&["runs"]);
    assert!(runs.stdout.contains(run_id), "{runs:?}");
    let journal = project.journal(run_id);
    assert_eq!(
        stage(&journal, "down:web")["status"],
        "succeeded",
        "{journal}"
    );

    // Nothing left is not an error; the next run deploys again rather than reusing.
    let again = project.shipit(&["down", "web"]);
    assert_eq!(again.code, 0, "{again:?}");
    let run = project.shipit(&["run", "--output", "json"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(stage(&run.json(), "deploy:web")["status"], "succeeded");
    assert_eq!(containers_of_target(&name, "web").len(), 2);
}

#[test]
fn down_refuses_a_target_it_cannot_take_down() {
    let project = Project::new();
    project
        .file(
            "shipit.yaml",
            "version: 1\nname: app\nimages:\n  web:\n    context: web\n    push: { registry: 127.0.0.1:1, repository: app/web }\ndeploy:\n  web:\n    image: web\n    eks: { manifests: [\"k8s/*.yaml\"], container: web }\n",
        )
        .file("web/Dockerfile", "FROM scratch\n");
    let run = project.shipit(&["down", "web"]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(
        run.stderr.contains(
            "deploy target `web` deploys to eks; `shipit down` takes docker targets down"
        ),
        "{run:?}"
    );
    let run = project.shipit(&["down", "nope"]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(
        run.stderr
            .contains("the pipeline has no deploy target `nope`"),
        "{run:?}"
    );
    assert!(project.run_ids().is_empty(), "nothing is journaled");
}
