//! A docker target's containers through the real binary and the test environment's daemon:
//! `shipit plan` says which containers a deploy would start and stop (and the deploy does just
//! that), and `shipit down` says what it would remove, removes every container of the target
//! and nothing else, and journals what it did as a run of its own.

mod support;

use support::{ContainerSweep, Project, containers_of, free_ports, repo_root, stage, unique_name};

/// The demo app as two docker targets of one pipeline: `web` (two replicas) and `admin`.
fn two_target_project(name: &str) -> Project {
    let project = Project::with_docker();
    let app = repo_root().join("pipelines/demo/web");
    for file in ["Dockerfile", "serve.sh", "www/index.html", "www/health"] {
        project.file(
            &format!("web/{file}"),
            std::fs::read(app.join(file)).unwrap(),
        );
    }
    let (web, admin) = (free_ports(4), free_ports(2));
    project.file(
        "shipit.yaml",
        format!(
            "version: 1\nname: {name}\nimages:\n  web:\n    context: web\ndeploy:\n  web:\n    image: web\n    docker: {{ replicas: 2, port: {web}, health: {{ http: {{ path: /health }}, interval: 500ms }} }}\n  admin:\n    image: web\n    docker: {{ replicas: 1, port: {admin}, health: {{ http: {{ path: /health }}, interval: 500ms }} }}\n"
        ),
    );
    project.commit();
    project
}

fn containers_of_target(pipeline: &str, target: &str) -> Vec<String> {
    let prefix = format!("{pipeline}-{target}-");
    containers_of(pipeline)
        .into_iter()
        .filter(|line| line.starts_with(&prefix))
        .collect()
}

#[test]
fn down_removes_every_container_of_the_target_and_journals_it_leaving_other_targets_running() {
    let name = unique_name("e2e-down");
    let _sweep = ContainerSweep(name.clone());
    let project = two_target_project(&name);
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
fn plan_names_the_ports_a_deploy_would_start_and_the_containers_it_would_stop() {
    let name = unique_name("e2e-plan");
    let _sweep = ContainerSweep(name.clone());
    let project = two_target_project(&name);
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
fn down_refuses_a_target_it_cannot_take_down() {
    let project = Project::new();
    project
        .file(
            "shipit.yaml",
            "version: 1\nname: app\nimages:\n  web:\n    context: web\n    push: { registry: 127.0.0.1:1, repository: app/web }\ndeploy:\n  web:\n    image: web\n    eks: { deployment: web, container: web }\n",
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
