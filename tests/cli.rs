//! The command line, driven through the real binary: validation errors, schema, journal
//! handling and the JSON result.

mod support;

use support::{Project, repo_root};

const MINIMAL: &str = "version: 1\nname: app\nimages:\n  web:\n    context: web\ndeploy:\n  web:\n    image: web\n    docker: { replicas: 1 }\n";

fn minimal_project() -> Project {
    let project = Project::new();
    project
        .file("shipit.yaml", MINIMAL)
        .file("web/Dockerfile", "FROM busybox:latest\n");
    project
}

#[test]
fn every_example_pipeline_validates() {
    let project = Project::new();
    let mut checked = 0;
    for entry in std::fs::read_dir(repo_root().join("pipelines")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yaml") {
            let run = project.shipit(&["validate", "-f", path.to_str().unwrap()]);
            assert_eq!(run.code, 0, "{}: {run:?}", path.display());
            checked += 1;
        }
    }
    assert!(checked >= 1, "no example pipelines found");
}

#[test]
fn every_example_pipeline_plans() {
    let project = Project::new().env("AWS_REGION", "eu-west-1");
    for entry in std::fs::read_dir(repo_root().join("pipelines")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yaml") {
            let run = project.shipit(&["plan", "-f", path.to_str().unwrap()]);
            assert_eq!(run.code, 0, "{}: {run:?}", path.display());
            assert!(run.stdout.contains("build:"), "{run:?}");
        }
    }
}

#[test]
fn an_unknown_key_is_reported_at_its_line_and_column_with_exit_code_2() {
    let project = Project::new();
    project.file(
        "shipit.yaml",
        "version: 1\nname: app\nimages:\n  web:\n    contxt: web\n",
    );
    let run = project.shipit(&["validate"]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(
        run.stderr
            .contains("shipit.yaml:5:5: images.web.contxt: unknown field `contxt`"),
        "{run:?}"
    );
    assert!(
        run.stderr.contains("    contxt: web\n"),
        "the offending line is shown: {run:?}"
    );
}

#[test]
fn several_problems_are_listed_together() {
    let project = Project::new();
    project.file(
        "shipit.yaml",
        "version: 1\nname: app\ndeploy:\n  a: {image: nope, needs: [b], docker: {}}\n  b: {image: web, needs: [a], docker: {}}\n",
    );
    let run = project.shipit(&["validate"]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(
        run.stderr
            .contains("shipit.yaml:4:14: deploy target `a` names image `nope`"),
        "{run:?}"
    );
    assert!(
        run.stderr.contains("cycle: a → b → a") || run.stderr.contains("cycle: b → a → b"),
        "{run:?}"
    );
    assert!(run.stderr.contains("problems found"), "{run:?}");
}

#[test]
fn unknown_references_are_found_before_anything_runs() {
    let project = Project::new();
    project
        .file(
            "shipit.yaml",
            "version: 1\nname: app\nimages:\n  web:\n    context: web\n    args: { A: \"${{ vars.missing }}\", B: \"${{ images.web.digest }}\" }\n",
        )
        .file("web/Dockerfile", "FROM scratch\n");
    let run = project.shipit(&["validate"]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(
        run.stderr.contains("`vars.missing` names no variable"),
        "{run:?}"
    );
    assert!(run.stderr.contains("use them under `deploy`"), "{run:?}");
}

#[test]
fn a_missing_context_or_dockerfile_is_an_error_at_its_key() {
    let project = Project::new();
    project.file(
        "shipit.yaml",
        "version: 1\nname: app\nimages:\n  web:\n    context: nowhere\n",
    );
    let run = project.shipit(&["validate"]);
    assert_eq!(run.code, 2);
    assert!(
        run.stderr.contains("shipit.yaml:5:14: build context"),
        "{run:?}"
    );
    project.file("nowhere/.keep", "");
    let run = project.shipit(&["validate"]);
    assert!(
        run.stderr.contains("Dockerfile") && run.stderr.contains("does not exist"),
        "{run:?}"
    );
}

#[test]
fn malformed_files_get_one_clear_error_each() {
    let project = Project::new();
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "tabs.yaml",
            b"version: 1\nimages:\n\tweb: {}\n".to_vec(),
            "tabs.yaml:3:",
        ),
        ("broken.yaml", b"name: [unclosed\n".to_vec(), "invalid YAML"),
        (
            "latin1.yaml",
            b"name: caf\xe9\n".to_vec(),
            "not valid UTF-8",
        ),
        ("empty.yaml", b"".to_vec(), "empty"),
        ("big.yaml", vec![b'a'; 10 * 1024 * 1024], "over the"),
        ("list.yaml", b"- a\n- b\n".to_vec(), "invalid type"),
    ];
    for (name, content, expected) in cases {
        project.file(name, content);
        let run = project.shipit(&["validate", "-f", name]);
        assert_eq!(run.code, 2, "{name}: {run:?}");
        assert!(run.stderr.contains(expected), "{name}: {run:?}");
        assert!(!run.stderr.contains("panicked"), "{name}: {run:?}");
    }
    let run = project.shipit(&["validate", "-f", "."]);
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("is a directory"), "{run:?}");
}

#[test]
fn a_missing_pipeline_file_says_how_to_name_one() {
    let run = Project::new().shipit(&["validate"]);
    assert_eq!(run.code, 2);
    assert!(
        run.stderr.contains("shipit.yaml") && run.stderr.contains("-f FILE"),
        "{run:?}"
    );
}

#[test]
fn bad_command_lines_exit_with_code_2() {
    let project = minimal_project();
    assert_eq!(project.shipit(&["run", "--only", "compile:web"]).code, 2);
    let run = project.shipit(&["run", "--only", "build:nope"]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(
        run.stderr.contains("no stage `build:nope`") && run.stderr.contains("build:web"),
        "{run:?}"
    );
    assert_eq!(project.shipit(&["run", "--env", "prod"]).code, 2);
}

#[test]
fn the_schema_describes_the_pipeline_file() {
    let run = Project::new().shipit(&["schema"]);
    assert_eq!(run.code, 0);
    let schema = run.json();
    assert!(schema["properties"]["images"].is_object(), "{schema}");
    assert!(schema["properties"]["deploy"].is_object(), "{schema}");
    assert_eq!(schema["additionalProperties"], false);
}

#[test]
fn an_unresolvable_environment_variable_stops_the_run_before_it_starts() {
    let project = Project::new();
    project
        .file("shipit.yaml", "version: 1\nname: app\nvars:\n  region: ${{ env.SHIPIT_TEST_SURELY_UNSET }}\nimages:\n  web:\n    context: web\n")
        .file("web/Dockerfile", "FROM scratch\n");
    let run = project.shipit(&["run"]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(
        run.stderr.contains(
            "shipit.yaml:4:11: environment variable `SHIPIT_TEST_SURELY_UNSET` is not set"
        ),
        "{run:?}"
    );
    assert!(project.run_ids().is_empty(), "no run is journaled");
}

#[test]
fn the_result_file_holds_the_same_json_as_stdout_and_stderr_carries_none() {
    let project = minimal_project();
    let run = project.shipit(&[
        "run",
        "--only",
        "build:web",
        "--output",
        "json",
        "--result-file",
        "out/result.json",
    ]);
    assert_eq!(run.code, 0, "{run:?}");
    let result = run.json();
    let from_file: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(project.path().join("out/result.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(from_file, result);
    assert!(!run.stderr.contains("\"run_id\""), "stderr carries no JSON");
}

#[test]
fn a_deploy_target_with_no_kind_or_two_kinds_is_an_error_at_its_line() {
    let project = minimal_project();
    let pipeline = |target: &str| {
        format!(
            "version: 1\nname: app\nimages:\n  web:\n    context: web\ndeploy:\n  web:\n{target}"
        )
    };
    project.file("shipit.yaml", pipeline("    image: web\n"));
    let run = project.shipit(&["validate"]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(
        run.stderr.contains(
            "shipit.yaml:8:5: deploy.web: a deploy target needs one of `ecs`, `eks` or `docker`"
        ),
        "{run:?}"
    );
    project.file(
        "shipit.yaml",
        pipeline("    image: web\n    docker: { replicas: 1 }\n    eks: { manifests: [\"k8s/*.yaml\"], container: web }\n"),
    );
    let run = project.shipit(&["validate"]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(
        run.stderr.contains(
            "shipit.yaml:8:5: deploy.web: a deploy target has one kind, and this one has eks and docker; choose one"
        ),
        "{run:?}"
    );
}

#[test]
fn every_problem_of_a_target_kind_is_listed_at_its_own_line() {
    let project = minimal_project();
    project.file(
        "shipit.yaml",
        "version: 1\nname: app\nimages:\n  web:\n    context: web\n    push: { registry: 127.0.0.1:5000, repository: app/web }\ndeploy:\n  web:\n    image: web\n    eks:\n      namespace: Shop_Prod\n      manifests: [\"k8s/*.yaml\"]\n      container: Web\n",
    );
    let run = project.shipit(&["validate"]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(
        run.stderr.contains(
            "shipit.yaml:11:18: eks.namespace: `Shop_Prod` is not a Kubernetes namespace name"
        ),
        "{run:?}"
    );
    assert!(
        run.stderr
            .contains("shipit.yaml:13:18: eks.container: `Web` is not a Kubernetes container name"),
        "{run:?}"
    );
    assert!(run.stderr.contains("2 problems found"), "{run:?}");
}

#[test]
fn a_damaged_journal_is_reported_and_left_as_it_was() {
    let project = minimal_project();
    let dir = project.path().join(".shipit/runs/20260101-000000-abcd");
    std::fs::create_dir_all(&dir).unwrap();
    let damaged = "{\"format\": 1, \"run_id\": \"20260101-0000";
    std::fs::write(dir.join("journal.json"), damaged).unwrap();

    let run = project.shipit(&["show", "20260101-000000-abcd"]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains("is damaged"), "{run:?}");
    let run = project.shipit(&["runs"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        run.stdout.contains("20260101-000000-abcd  unreadable"),
        "{run:?}"
    );
    let run = project.shipit(&["resume"]);
    assert_eq!(run.code, 2, "{run:?}");
    assert_eq!(
        std::fs::read_to_string(dir.join("journal.json")).unwrap(),
        damaged
    );
}

#[test]
fn resume_without_runs_says_so() {
    let run = minimal_project().shipit(&["resume"]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains("no runs recorded"), "{run:?}");
}

#[test]
fn show_refuses_path_like_run_ids() {
    let run = minimal_project().shipit(&["show", "../../etc"]);
    assert_eq!(run.code, 2);
    assert!(
        run.stderr.contains("`../../etc` is not a run id"),
        "{run:?}"
    );
}

#[test]
fn under_github_actions_the_run_appends_step_outputs_and_a_summary_and_writes_junit() {
    let project = Project::new();
    project
        .file(
            "shipit.yaml",
            "version: 1\nname: app\nimages:\n  web:\n    context: web\n    push: { registry: 127.0.0.1:1, repository: app/web }\ndeploy:\n  web:\n    image: web\n    docker: { replicas: 1 }\n",
        )
        .file("web/Dockerfile", "FROM scratch\n")
        .file("gh/output", "earlier=1\n");
    let project = project
        .env("GITHUB_ACTIONS", "true")
        .env("GITHUB_OUTPUT", "gh/output")
        .env("GITHUB_STEP_SUMMARY", "gh/summary.md");
    let run = project.shipit(&[
        "run",
        "--only",
        "deploy:web",
        "--junit-file",
        "reports/junit.xml",
    ]);
    assert_eq!(run.code, 1, "{run:?}");
    let outputs = std::fs::read_to_string(project.path().join("gh/output")).unwrap();
    assert!(
        outputs.starts_with("earlier=1\nrun-id="),
        "appended, not overwritten: {outputs}"
    );
    assert!(outputs.contains("status=failed"), "{outputs}");
    let summary = std::fs::read_to_string(project.path().join("gh/summary.md")).unwrap();
    // deploy:web needs build:web, which never ran: that is the failure, the rest is blocked.
    assert!(summary.contains("| `build:web` | failed | 0.0s | build:web is not selected, but it has never succeeded |"), "{summary}");
    assert!(summary.contains("| `deploy:web` | blocked |"), "{summary}");
    let junit = std::fs::read_to_string(project.path().join("reports/junit.xml")).unwrap();
    assert!(
        junit.contains("<testcase classname=\"app.build\" name=\"build:web\""),
        "{junit}"
    );
    assert!(
        junit.contains("<failure message=\"build:web is not selected"),
        "{junit}"
    );
    assert!(
        run.stderr.contains("::error title=build%3Aweb failed::"),
        "{run:?}"
    );
}

#[test]
fn an_invalid_repository_name_is_reported_at_its_value() {
    let project = Project::new();
    project
        .file("shipit.yaml", "version: 1\nname: app\nimages:\n  web:\n    context: web\n    push: { registry: 127.0.0.1:5000, repository: Shop/Web }\n")
        .file("web/Dockerfile", "FROM scratch\n");
    let run = project.shipit(&["validate"]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(
        run.stderr.contains("shipit.yaml:6:")
            && run
                .stderr
                .contains("push.repository: `Shop/Web`: path components must be lowercase"),
        "{run:?}"
    );

    // Every problem of the block is listed, each at its own value.
    project.file(
        "shipit.yaml",
        "version: 1\nname: app\nimages:\n  web:\n    context: web\n    push:\n      registry: 127.0.0.1:5000\n      repository: Shop/Web\n      tags: [ok, -bad]\n      compression_level: 12\n",
    );
    let run = project.shipit(&["validate"]);
    assert_eq!(run.code, 2, "{run:?}");
    for expected in [
        "shipit.yaml:8:19: push.repository: `Shop/Web`",
        "shipit.yaml:9:18: push.tags[1]: `-bad`: must start with a letter, digit or '_'",
        "shipit.yaml:10:26: push.compression_level: `12`: gzip takes levels 1 to 9",
        "3 problems found",
    ] {
        assert!(run.stderr.contains(expected), "{expected}\n{run:?}");
    }
}

#[test]
fn resume_refuses_a_changed_pipeline_file_or_a_moved_checkout() {
    let project = Project::new();
    let pipeline = "version: 1\nname: app\nimages:\n  web:\n    context: web\n    push: { registry: 127.0.0.1:1, repository: app/web }\ndeploy:\n  web:\n    image: web\n    docker: { replicas: 1 }\n";
    project
        .file("shipit.yaml", pipeline)
        .file("web/Dockerfile", "FROM scratch\n")
        .commit();
    assert_eq!(project.shipit(&["run", "--only", "deploy:web"]).code, 1);

    project.file("shipit.yaml", format!("{pipeline}# edited\n"));
    let run = project.shipit(&["resume"]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains("differs from the one run"), "{run:?}");

    project
        .file("shipit.yaml", pipeline)
        .file("web/other.txt", "x")
        .commit();
    let run = project.shipit(&["resume"]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains("the checkout moved from"), "{run:?}");
}

#[test]
fn github_actions_false_means_not_github_for_the_step_files_too() {
    let project = Project::new();
    project
        .file("shipit.yaml", MINIMAL)
        .file("web/Dockerfile", "FROM scratch\n")
        .file("gh/output", "earlier=1\n");
    let project = project
        .env("GITHUB_ACTIONS", "false")
        .env("GITHUB_OUTPUT", "gh/output")
        .env("GITHUB_STEP_SUMMARY", "gh/summary.md");
    let run = project.shipit(&["run", "--only", "deploy:web"]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        !run.stderr.contains("::error"),
        "no workflow commands: {run:?}"
    );
    assert_eq!(
        std::fs::read_to_string(project.path().join("gh/output")).unwrap(),
        "earlier=1\n",
        "the step outputs are left alone"
    );
    assert!(!project.path().join("gh/summary.md").exists());
}
