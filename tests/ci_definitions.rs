//! shipit's CI definitions — the GitHub action (action.yml and action/run-shipit.sh), the example
//! workflow, the GitLab template and its example, the Jenkinsfile — checked by validators nobody
//! here wrote (actionlint with shellcheck, check-jsonschema's vendored GitHub and GitLab schemas),
//! and each one's shell run for real around the real binary, against the test environment's
//! daemon and registry, leaving the files its CI reads: the step outputs, the dotenv report and
//! JUnit XML that junitparser reads and xmlschema validates against a schema Jenkins reads.

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::ci_tools::{
    JunitCase, actionlint, check_jsonschema, check_junit, shellcheck, yaml_as_json,
};
use support::scenario::Scenario;
use support::step_beacon::StepBeacon;
use support::{INHERITED_FROM_THE_CI, Project, repo_root, testenv};

const ACTION_REFERENCE: &str = "shipit-dev/shipit@";

fn version() -> &'static str {
    env!("CARGO_PKG_VERSION")
}

/// A project whose `web` image builds (or, with `failing`, fails its build), is pushed to the
/// test registry and deployed by a docker target the tests never select. It has a `prod`
/// environment, as the examples name one.
fn project(scenario: &Scenario, failing: bool) -> Project {
    let name = scenario.name();
    let registry = testenv("SHIPIT_TEST_REGISTRY");
    let dockerfile = if failing {
        "FROM busybox:latest\nRUN echo the build breaks here && exit 3\n".to_owned()
    } else {
        "FROM busybox:latest\nCOPY hello.txt /hello.txt\n".to_owned()
    };
    let project = Project::with_docker();
    project
        .file(
            "shipit.yaml",
            format!(
                "version: 1\nname: {name}\nenvironments:\n  prod: {{ vars: {{ tier: prod }} }}\nimages:\n  web:\n    context: web\n    push: {{ registry: \"{registry}\", repository: ci/{name} }}\ndeploy:\n  web:\n    image: web\n    docker: {{ replicas: 1 }}\n"
            ),
        )
        .file("web/Dockerfile", dockerfile)
        .file("web/hello.txt", name)
        .commit();
    project
}

/// The folder of the shipit binary under test, first on a PATH for a CI definition's shell.
fn path_with_shipit() -> String {
    let bin = Path::new(env!("CARGO_BIN_EXE_shipit"))
        .parent()
        .expect("the binary's folder")
        .to_owned();
    format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    )
}

/// A command that runs in `dir` without the CI variables of whatever CI runs these tests.
fn ci_shell(program: &Path, dir: &Path) -> Command {
    let mut command = Command::new(program);
    command.current_dir(dir);
    for var in INHERITED_FROM_THE_CI
        .iter()
        .chain(&["GITHUB_OUTPUT", "GITHUB_STEP_SUMMARY"])
    {
        command.env_remove(var);
    }
    command.env("PATH", path_with_shipit());
    command
}

struct Finished {
    code: i32,
    stdout: String,
    stderr: String,
}

impl std::fmt::Debug for Finished {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {}\n--- stdout\n{}\n--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

fn finish(mut command: Command) -> Finished {
    let output = command.output().expect("the CI shell runs");
    Finished {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// `KEY=VALUE` lines (GitHub's output file, a dotenv file) as a map; a key set twice keeps its
/// last value, as GitHub does.
fn key_values(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|line| line.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

fn case<'a>(cases: &'a [JunitCase], name: &str) -> &'a JunitCase {
    cases
        .iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("no test case {name} in {cases:?}"))
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|err| panic!("{}: {err}", path.display()))
}

// --------------------------------------------------------------------------- validators

#[test]
fn the_action_metadata_matches_the_github_actions_schema() {
    let run = check_jsonschema("github-actions", &repo_root().join("action.yml"));
    assert_eq!(run.code, 0, "{run:?}");
}

#[test]
fn the_action_script_passes_shellcheck() {
    let run = shellcheck(&repo_root().join("action/run-shipit.sh"));
    assert_eq!(run.code, 0, "{run:?}");
}

/// The example workflows under docs/ci/github, as they would sit in a repository of their own
/// beside the action: `uses: shipit-dev/shipit@…` becomes `uses: ./`, so actionlint checks every
/// input and output the workflow uses against action.yml itself.
fn workflows_beside_the_action() -> (tempfile::TempDir, Vec<PathBuf>) {
    let repo = Project::new();
    let workflows = repo.path().join(".github/workflows");
    std::fs::create_dir_all(&workflows).unwrap();
    std::fs::copy(
        repo_root().join("action.yml"),
        repo.path().join("action.yml"),
    )
    .unwrap();
    repo.file(
        "action/run-shipit.sh",
        read(&repo_root().join("action/run-shipit.sh")),
    );
    let mut originals = Vec::new();
    for entry in std::fs::read_dir(repo_root().join("docs/ci/github")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yml" || e == "yaml") {
            let text = read(&path);
            let reference = format!("uses: {ACTION_REFERENCE}v{}", version());
            assert!(
                text.contains(&reference),
                "{} uses the action as `{reference}`",
                path.display()
            );
            std::fs::write(
                workflows.join(path.file_name().unwrap()),
                text.replace(&reference, "uses: ./"),
            )
            .unwrap();
            originals.push(path);
        }
    }
    assert!(
        !originals.is_empty(),
        "no example workflow under docs/ci/github"
    );
    (repo.dir, originals)
}

#[test]
fn the_example_workflows_pass_actionlint_and_the_workflow_schema() {
    let (repo, originals) = workflows_beside_the_action();
    for workflow in &originals {
        let run = check_jsonschema("github-workflows", workflow);
        assert_eq!(run.code, 0, "{}: {run:?}", workflow.display());
    }
    let run = actionlint(repo.path());
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stdout.trim().is_empty(), "{run:?}");
}

#[test]
fn actionlint_flags_a_workflow_that_misuses_the_action() {
    let (repo, _) = workflows_beside_the_action();
    std::fs::write(
        repo.path().join(".github/workflows/misuse.yml"),
        "on: push\njobs:\n  deploy:\n    runs-on: ubuntu-latest\n    steps:\n      - id: shipit\n        uses: ./\n        with:\n          stages: build:web\n      - run: echo \"$DIGEST\"\n        env:\n          DIGEST: ${{ steps.shipit.outputs.web-digest }}\n",
    )
    .unwrap();
    let run = actionlint(repo.path());
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stdout
            .contains("input \"stages\" is not defined in action"),
        "{run:?}"
    );
    assert!(
        run.stdout
            .contains("property \"web-digest\" is not defined"),
        "{run:?}"
    );
}

/// GitLab's `extends:`: mappings merge key by key, anything else is replaced by the extending
/// job's value.
fn merge(base: &Value, over: &Value) -> Value {
    match (base, over) {
        (Value::Object(base), Value::Object(over)) => {
            let mut merged = base.clone();
            for (key, value) in over {
                let value = match merged.get(key) {
                    Some(existing) => merge(existing, value),
                    None => value.clone(),
                };
                merged.insert(key.clone(), value);
            }
            Value::Object(merged)
        }
        (_, over) => over.clone(),
    }
}

fn resolve_job(document: &serde_json::Map<String, Value>, job: &Value) -> Value {
    let mut job = job.clone();
    let parents = match job.as_object_mut().and_then(|j| j.remove("extends")) {
        Some(Value::String(one)) => vec![one],
        Some(Value::Array(many)) => many
            .iter()
            .map(|p| p.as_str().expect("extends names jobs").to_owned())
            .collect(),
        _ => Vec::new(),
    };
    let mut resolved = json!({});
    for parent in parents {
        let base = document
            .get(&parent)
            .unwrap_or_else(|| panic!("extends names `{parent}`, which is not defined"));
        resolved = merge(&resolved, &resolve_job(document, base));
    }
    merge(&resolved, &job)
}

/// The example .gitlab-ci.yml as GitLab sees it: the template included, every `extends:`
/// applied, the hidden jobs gone; plus one job that extends `.shipit-dind`.
fn resolved_gitlab_pipeline() -> Value {
    let template = yaml_as_json(&repo_root().join("docs/ci/gitlab/shipit.gitlab-ci.yml"));
    let example = yaml_as_json(&repo_root().join("docs/ci/gitlab/.gitlab-ci.yml"));
    let included = example["include"][0]["file"].as_str().expect("an include");
    assert_eq!(included, "docs/ci/gitlab/shipit.gitlab-ci.yml");
    let mut document = merge(&template, &example);
    let document = document.as_object_mut().unwrap();
    document.remove("include");
    document.insert(
        "dind-check".into(),
        json!({ "stage": "deploy", "extends": ".shipit-dind" }),
    );
    let keywords = [
        "stages",
        "variables",
        "default",
        "workflow",
        "image",
        "services",
    ];
    let source = document.clone();
    let mut resolved = serde_json::Map::new();
    for (key, value) in &source {
        if key.starts_with('.') {
            continue;
        }
        if keywords.contains(&key.as_str()) {
            resolved.insert(key.clone(), value.clone());
        } else {
            resolved.insert(key.clone(), resolve_job(&source, value));
        }
    }
    Value::Object(resolved)
}

#[test]
fn the_gitlab_template_and_its_example_match_the_gitlab_ci_schema() {
    for file in ["shipit.gitlab-ci.yml", ".gitlab-ci.yml"] {
        let run = check_jsonschema("gitlab-ci", &repo_root().join("docs/ci/gitlab").join(file));
        assert_eq!(run.code, 0, "{file}: {run:?}");
    }
    // The schema does not look inside hidden jobs: check the jobs GitLab makes of them.
    let resolved = resolved_gitlab_pipeline();
    assert!(resolved["deploy"]["script"].is_array(), "{resolved}");
    assert_eq!(resolved["dind-check"]["services"][0]["alias"], "docker");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("resolved.gitlab-ci.json");
    std::fs::write(&file, resolved.to_string()).unwrap();
    let run = check_jsonschema("gitlab-ci", &file);
    assert_eq!(run.code, 0, "{run:?}\n{resolved:#}");
}

#[test]
fn every_definition_runs_the_image_of_this_version() {
    let action = yaml_as_json(&repo_root().join("action.yml"));
    assert_eq!(action["inputs"]["version"]["default"], version());
    let image = action["inputs"]["image"]["default"].as_str().unwrap();
    let tagged = format!("{image}:{}", version());
    let template = yaml_as_json(&repo_root().join("docs/ci/gitlab/shipit.gitlab-ci.yml"));
    assert_eq!(template[".shipit"]["image"]["name"], tagged.as_str());
    let jenkinsfile = read(&repo_root().join("docs/ci/jenkins/Jenkinsfile"));
    assert!(
        jenkinsfile.contains(&format!("image '{tagged}'")),
        "the Jenkinsfile runs {tagged}"
    );
    let example = yaml_as_json(&repo_root().join("docs/ci/gitlab/.gitlab-ci.yml"));
    assert_eq!(example["include"][0]["ref"], format!("v{}", version()));
}

// --------------------------------------------------------------------------- JUnit

#[test]
fn the_junit_of_a_succeeding_and_a_failing_run_is_what_jenkins_reads() {
    let scenario = Scenario::new("ci-junit");
    let good = project(&scenario, false);
    let run = good.shipit(&[
        "run",
        "--only",
        "build:web",
        "--junit-file",
        "reports/junit.xml",
    ]);
    assert_eq!(run.code, 0, "{run:?}");
    let suites = check_junit(&good.path().join("reports/junit.xml"));
    assert_eq!(suites.len(), 1);
    let suite = &suites[0];
    assert_eq!(suite.name, scenario.name());
    assert_eq!(
        (suite.tests, suite.failures, suite.skipped),
        (3, 0, 2),
        "{suite:?}"
    );
    assert_eq!(case(&suite.cases, "build:web").result, "passed");
    assert_eq!(
        case(&suite.cases, "build:web").classname,
        format!("{}.build", scenario.name())
    );
    let deploy = case(&suite.cases, "deploy:web");
    assert_eq!(deploy.result, "skipped", "{deploy:?}");
    assert_eq!(deploy.message.as_deref(), Some("skipped (not selected)"));

    let bad = project(&scenario, true);
    let run = bad.shipit(&["run", "--junit-file", "reports/junit.xml"]);
    assert_eq!(run.code, 1, "{run:?}");
    let suites = check_junit(&bad.path().join("reports/junit.xml"));
    let suite = &suites[0];
    assert_eq!(
        (suite.tests, suite.failures, suite.skipped),
        (3, 1, 2),
        "{suite:?}"
    );
    let build = case(&suite.cases, "build:web");
    assert_eq!(build.result, "failure", "{build:?}");
    let message = build.message.as_deref().unwrap_or_default();
    assert!(
        message.contains("RUN echo the build breaks here") && message.ends_with("exit code: 3"),
        "the failure says which step failed and how: {build:?}"
    );
    assert_eq!(case(&suite.cases, "push:web").result, "skipped");
}

// --------------------------------------------------------------------------- each CI's shell, run

/// The inputs the example workflow gives the action, over action.yml's defaults, as the
/// variables the action's step hands its script; `overrides` win (the tests run fewer stages).
fn action_inputs(overrides: &[(&str, &str)]) -> Vec<(String, String)> {
    let action = yaml_as_json(&repo_root().join("action.yml"));
    let workflow = yaml_as_json(&repo_root().join("docs/ci/github/deploy.yml"));
    let step = workflow["jobs"]["deploy"]["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| {
            s["uses"]
                .as_str()
                .is_some_and(|u| u.starts_with(ACTION_REFERENCE))
        })
        .expect("the example workflow uses the action")
        .clone();
    let step_env = &action["runs"]["steps"][0]["env"];
    let mut variables = Vec::new();
    for (input, spec) in action["inputs"].as_object().unwrap() {
        if input == "working-directory" {
            continue;
        }
        let value = overrides
            .iter()
            .find(|(name, _)| name == input)
            .map(|(_, value)| (*value).to_owned())
            .or_else(|| step["with"][input].as_str().map(str::to_owned))
            .unwrap_or_else(|| spec["default"].as_str().unwrap_or_default().to_owned());
        // The step's env maps each input to its variable: find the variable by its expression.
        let expression = format!("${{{{ inputs.{input} }}}}");
        let variable = step_env
            .as_object()
            .unwrap()
            .iter()
            .find(|(_, v)| v.as_str() == Some(expression.as_str()))
            .unwrap_or_else(|| panic!("the action's step passes no variable for input {input}"))
            .0;
        variables.push((variable.clone(), value));
    }
    variables
}

/// The action's script as GitHub runs it: in the working directory, with GitHub's variables, the
/// files it hands the step in `runner` and the inputs as the step's env sets them.
fn action_step(project: &Project, runner: &Path, inputs: &[(String, String)]) -> Command {
    let mut command = ci_shell(&repo_root().join("action/run-shipit.sh"), project.path());
    command
        .env("GITHUB_ACTIONS", "true")
        .env("CI", "true")
        .env("GITHUB_WORKSPACE", project.path())
        .env("GITHUB_OUTPUT", runner.join("output"))
        .env("GITHUB_STEP_SUMMARY", runner.join("summary.md"))
        .env("RUNNER_TEMP", runner)
        .env("GITHUB_ACTION_PATH", repo_root());
    for (name, value) in inputs {
        command.env(name, value);
    }
    command
}

#[test]
fn the_action_step_runs_shipit_and_hands_on_its_outputs_and_exit_code() {
    let scenario = Scenario::new("ci-action");
    let registry = testenv("SHIPIT_TEST_REGISTRY");
    let good = project(&scenario, false);
    let runner = tempfile::tempdir().unwrap();
    let inputs = action_inputs(&[("version", "installed"), ("only", "build:web push:web")]);
    let run = finish(action_step(&good, runner.path(), &inputs));
    assert_eq!(run.code, 0, "{run:?}");
    let outputs = key_values(&read(&runner.path().join("output")));
    let run_id = &outputs["run-id"];
    assert_eq!(outputs["status"], "succeeded", "{outputs:?}");
    assert_eq!(outputs["exit-code"], "0", "{outputs:?}");
    let digest = &outputs["web-digest"];
    assert!(digest.starts_with("sha256:"), "{outputs:?}");
    let reference = format!("{registry}/ci/{}@{digest}", scenario.name());
    assert_eq!(outputs["web-ref"], reference);
    assert_eq!(
        outputs["web-status"], "skipped",
        "deploy:web was not selected"
    );
    let json = |key: &str| -> Value { serde_json::from_str(&outputs[key]).unwrap() };
    assert_eq!(json("digests"), json!({ "web": digest }));
    assert_eq!(json("refs"), json!({ "web": reference }));
    assert_eq!(json("deploy-statuses"), json!({ "web": "skipped" }));
    // The example's `env: prod` reached shipit.
    let result: Value = serde_json::from_str(&read(Path::new(&outputs["result-file"]))).unwrap();
    assert_eq!(&result["run_id"], run_id.as_str());
    assert_eq!(result["environment"], "prod", "{result}");
    let suites = check_junit(Path::new(&outputs["junit-file"]));
    assert_eq!(case(&suites[0].cases, "push:web").result, "passed");
    let summary = read(&runner.path().join("summary.md"));
    assert!(summary.contains("| `push:web` | succeeded |"), "{summary}");

    // A failing run fails the step with shipit's exit code, and still hands on what it has.
    let bad = project(&scenario, true);
    let runner = tempfile::tempdir().unwrap();
    let run = finish(action_step(&bad, runner.path(), &inputs));
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stderr.contains("::error title=build%3Aweb failed::"),
        "{run:?}"
    );
    let outputs = key_values(&read(&runner.path().join("output")));
    assert_eq!(outputs["status"], "failed", "{outputs:?}");
    assert_eq!(outputs["exit-code"], "1", "{outputs:?}");
    assert_eq!(outputs["deploy-statuses"], r#"{"web":"blocked"}"#);
    let suites = check_junit(Path::new(&outputs["junit-file"]));
    assert_eq!(case(&suites[0].cases, "build:web").result, "failure");
}

#[test]
fn the_action_step_without_a_shipit_on_path_fails_with_an_annotation() {
    let project = Project::new();
    let runner = tempfile::tempdir().unwrap();
    let inputs = action_inputs(&[("version", "installed")]);
    let mut step = action_step(&project, runner.path(), &inputs);
    step.env("PATH", "/usr/bin:/bin");
    let run = finish(step);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(
        run.stdout.contains(
            "::error title=shipit action::version is installed, but there is no shipit on PATH"
        ),
        "{run:?}"
    );
}

/// A stand-in for shipit's image: busybox with a `shipit` that writes down what the action gave
/// it (arguments, user, working directory, socket, variables), creates the result file it is
/// told to, appends a step output and exits 3.
const STAND_IN: &str = r#"#!/bin/sh
report="$PWD/stand-in-report.txt"
{
  echo "args=$*"
  echo "uid=$(id -u)"
  echo "pwd=$PWD"
  if test -S /var/run/docker.sock; then echo "socket=yes"; fi
  echo "docker_host=$DOCKER_HOST"
  echo "github_actions=$GITHUB_ACTIONS"
  echo "secret=${SHIPIT_TEST_SECRET:+set}"
  echo "path=$PATH"
} >"$report"
while [ $# -gt 0 ]; do
  if [ "$1" = --result-file ]; then echo '{}' >"$2"; fi
  shift
done
echo "run-id=stand-in" >>"$GITHUB_OUTPUT"
exit 3
"#;

#[test]
fn the_action_step_runs_the_image_with_the_socket_workspace_and_step_files_mounted() {
    let scenario = Scenario::new("ci-image");
    let builder = Project::with_docker();
    builder
        .file(
            "shipit.yaml",
            format!(
                "version: 1\nname: {}\nimages:\n  stand-in:\n    context: image\n",
                scenario.name()
            ),
        )
        .file(
            "image/Dockerfile",
            "FROM busybox:latest\nCOPY shipit /usr/local/bin/shipit\nENTRYPOINT [\"sh\", \"/usr/local/bin/shipit\"]\n",
        )
        .file("image/shipit", STAND_IN);
    let built = builder.shipit(&["run", "--output", "json"]);
    assert_eq!(built.code, 0, "{built:?}");
    let local_ref = support::stage(&built.json(), "build:stand-in")["outputs"]["local_ref"]
        .as_str()
        .unwrap()
        .to_owned();
    let (image, tag) = local_ref.rsplit_once(':').unwrap();

    let project = Project::new();
    let runner = tempfile::tempdir().unwrap();
    let inputs = action_inputs(&[("image", image), ("version", tag), ("only", "build:web")]);
    let secret = format!("secret-{}", scenario.name());
    let mut step = action_step(&project, runner.path(), &inputs);
    step.env("SHIPIT_TEST_SECRET", &secret)
        .env("DOCKER_HOST", testenv("SHIPIT_TEST_DOCKER_HOST"));
    let run = finish(step);
    assert_eq!(
        run.code, 3,
        "the step exits with the container's code: {run:?}"
    );
    assert!(
        !run.stdout.contains(&secret) && !run.stderr.contains(&secret),
        "{run:?}"
    );

    let seen = key_values(&read(&project.path().join("stand-in-report.txt")));
    let reports = seen["args"]
        .split(' ')
        .skip_while(|a| *a != "--result-file")
        .nth(1)
        .and_then(|f| Path::new(f).parent())
        .expect("a --result-file argument")
        .to_owned();
    assert!(reports.starts_with(runner.path()), "{seen:?}");
    assert_eq!(
        seen["args"],
        format!(
            "--file shipit.yaml --env prod run --result-file {0}/result.json --junit-file {0}/junit.xml --only build:web",
            reports.display()
        )
    );
    let uid = String::from_utf8(Command::new("id").arg("-u").output().unwrap().stdout).unwrap();
    assert_eq!(seen["uid"], uid.trim(), "shipit runs as the runner's user");
    assert_eq!(seen["pwd"], project.path().to_str().unwrap());
    assert_eq!(
        seen.get("socket").map(String::as_str),
        Some("yes"),
        "{seen:?}"
    );
    assert_eq!(seen["docker_host"], "unix:///var/run/docker.sock");
    assert_eq!(seen["github_actions"], "true");
    assert_eq!(seen["secret"], "set", "the step's variables reach shipit");
    assert!(
        !seen["path"].contains("/debug"),
        "the runner's PATH stays outside: {seen:?}"
    );

    let outputs = key_values(&read(&runner.path().join("output")));
    assert_eq!(
        outputs["run-id"], "stand-in",
        "GITHUB_OUTPUT is writable inside"
    );
    assert_eq!(outputs["exit-code"], "3");
    assert_eq!(
        Path::new(&outputs["result-file"]),
        reports.join("result.json"),
        "the reports folder is mounted: {outputs:?}"
    );
    assert!(!outputs.contains_key("junit-file"), "{outputs:?}");
}

/// The job GitLab makes of `extends: .shipit`: its script run by `sh -e` with its variables, as
/// GitLab's runner does in the job's container.
#[test]
fn the_gitlab_job_leaves_the_reports_its_artifacts_name() {
    let scenario = Scenario::new("ci-gitlab");
    let project = project(&scenario, false);
    let job = &resolved_gitlab_pipeline()["deploy"];
    let script: Vec<&str> = job["script"]
        .as_array()
        .unwrap()
        .iter()
        .map(|line| line.as_str().unwrap())
        .collect();
    let mut shell = ci_shell(Path::new("sh"), project.path());
    shell.arg("-e").arg("-c").arg(script.join("\n"));
    for (name, value) in job["variables"].as_object().unwrap() {
        shell.env(name, value.as_str().unwrap());
    }
    shell
        .env("GITLAB_CI", "true")
        .env("CI", "true")
        .env("SHIPIT_ONLY", "build:web push:web");
    let run = finish(shell);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        run.stderr.contains("section_start:"),
        "GitLab gets collapsible sections: {run:?}"
    );
    assert!(
        project.path().join(".shipit/runs").is_dir(),
        "SHIPIT_STATE_DIR is honoured"
    );

    let reports = &job["artifacts"]["reports"];
    let dotenv_text = read(&project.path().join(reports["dotenv"].as_str().unwrap()));
    for line in dotenv_text.lines() {
        let (key, value) = line.split_once('=').expect("KEY=VALUE");
        assert!(
            key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') && !value.is_empty(),
            "{line}"
        );
    }
    let dotenv = key_values(&dotenv_text);
    assert_eq!(dotenv["SHIPIT_STATUS"], "succeeded", "{dotenv:?}");
    assert!(dotenv["SHIPIT_RUN_ID"].len() > 10, "{dotenv:?}");
    assert!(
        dotenv["SHIPIT_WEB_DIGEST"].starts_with("sha256:"),
        "{dotenv:?}"
    );
    assert!(
        dotenv["SHIPIT_WEB_REF"].ends_with(&dotenv["SHIPIT_WEB_DIGEST"]),
        "{dotenv:?}"
    );
    assert_eq!(dotenv["SHIPIT_WEB_STATUS"], "skipped", "{dotenv:?}");
    let result: Value =
        serde_json::from_str(&read(&project.path().join("shipit-reports/result.json"))).unwrap();
    assert_eq!(
        result["environment"], "prod",
        "the example's SHIPIT_ENV reached shipit"
    );

    let suites = check_junit(&project.path().join(reports["junit"].as_str().unwrap()));
    assert_eq!(case(&suites[0].cases, "push:web").result, "passed");
    let kept: Vec<&str> = job["artifacts"]["paths"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    assert!(
        kept.iter()
            .any(|dir| project.path().join(dir).join("result.json").is_file()),
        "the artifacts keep the JSON result: {kept:?}"
    );
}

/// The Jenkinsfile's `sh '''…'''` step, its `environment` and the report its `junit` step reads.
struct JenkinsStage {
    script: String,
    environment: Vec<(String, String)>,
    junit: String,
}

fn jenkins_stage() -> JenkinsStage {
    let text = read(&repo_root().join("docs/ci/jenkins/Jenkinsfile"));
    let between = |start: &str, end: &str| -> String {
        let from = text
            .find(start)
            .unwrap_or_else(|| panic!("the Jenkinsfile has no `{start}`"))
            + start.len();
        let to = text[from..]
            .find(end)
            .unwrap_or_else(|| panic!("`{start}` is not closed"))
            + from;
        text[from..to].to_owned()
    };
    let environment = between("environment {", "}")
        .lines()
        .filter_map(|line| {
            let (name, value) = line.split_once(" = ")?;
            Some((
                name.trim().to_owned(),
                value.trim().trim_matches('\'').to_owned(),
            ))
        })
        .collect();
    JenkinsStage {
        script: between("sh '''", "'''"),
        environment,
        junit: between("junit testResults: '", "'"),
    }
}

#[test]
fn the_jenkins_stage_leaves_the_report_its_junit_step_records() {
    let scenario = Scenario::new("ci-jenkins");
    let project = project(&scenario, false);
    let stage = jenkins_stage();
    assert!(
        stage
            .environment
            .iter()
            .any(|(k, v)| k == "SHIPIT_STATE_DIR" && v == ".shipit"),
        "{:?}",
        stage.environment
    );
    // Jenkins runs an sh step as `sh -xe`, with the parameters and bound credentials as variables.
    let mut shell = ci_shell(Path::new("sh"), project.path());
    shell.arg("-xe").arg("-c").arg(&stage.script);
    for (name, value) in &stage.environment {
        shell.env(name, value);
    }
    shell
        .env("JENKINS_URL", "http://127.0.0.1:9/")
        .env("SHIPIT_ENV", "prod")
        .env("SHIPIT_ONLY", "build:web")
        .env("NPM_TOKEN", "unused");
    let run = finish(shell);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        run.stderr.contains("build:web | "),
        "a generic CI streams the build log: {run:?}"
    );
    let suites = check_junit(&project.path().join(&stage.junit));
    assert_eq!(case(&suites[0].cases, "build:web").result, "passed");
    assert_eq!(case(&suites[0].cases, "push:web").result, "skipped");
    assert!(project.path().join(".shipit/runs").is_dir());
}

/// GitHub cancels a step by signalling its process, the action's script: shipit must get the
/// signal, stop its stage cleanly and journal the run as interrupted, and the step must end with
/// shipit's code and its outputs.
#[test]
fn a_cancelled_action_step_passes_the_signal_on_to_shipit() {
    let scenario = Scenario::new("ci-cancel");
    let name = scenario.name();
    let beacon = StepBeacon::new();
    let project = Project::with_docker();
    project
        .file(
            "shipit.yaml",
            format!("version: 1\nname: {name}\nimages:\n  slow:\n    context: slow\n    args: {{ NONCE: \"{name}\" }}\n"),
        )
        .file(
            "slow/Dockerfile",
            format!("FROM busybox:latest\nARG NONCE\nRUN echo \"$NONCE\" && {} && sleep 30\n", beacon.call()),
        )
        .commit();
    let runner = tempfile::tempdir().unwrap();
    let inputs = action_inputs(&[("version", "installed"), ("env", ""), ("only", "")]);
    let child = action_step(&project, runner.path(), &inputs)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    beacon.wait("the slow build step to start", Duration::from_secs(120));
    let signalled = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(signalled.success());
    let started = Instant::now();
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(130), "{stderr}");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "shipit stopped at once, not after the step's sleep"
    );
    let outputs = key_values(&read(&runner.path().join("output")));
    assert_eq!(outputs["status"], "interrupted", "{outputs:?}");
    assert_eq!(outputs["exit-code"], "130", "{outputs:?}");
    let run_id = project.run_ids().pop().expect("a journaled run");
    assert_eq!(
        support::stage(&project.journal(&run_id), "build:slow")["status"],
        "interrupted"
    );
}

/// Two deploy targets whose names become one dotenv variable: the run says so and the file
/// leaves the variable out, rather than hand a later job the wrong target's status.
#[test]
fn the_dotenv_file_leaves_out_names_that_clash_and_says_so() {
    let scenario = Scenario::new("ci-dotenv");
    let project = Project::with_docker();
    project
        .file(
            "shipit.yaml",
            format!(
                "version: 1\nname: {}\nimages:\n  web:\n    context: web\ndeploy:\n  web-app:\n    image: web\n    docker: {{ replicas: 1 }}\n  web_app:\n    image: web\n    docker: {{ replicas: 1 }}\n  api:\n    image: web\n    docker: {{ replicas: 1 }}\n",
                scenario.name()
            ),
        )
        .file("web/Dockerfile", "FROM busybox:latest\n")
        .commit();
    let run = project.shipit(&[
        "run",
        "--only",
        "build:web",
        "--dotenv-file",
        "out/shipit.env",
    ]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        run.stderr.contains(
            "warning: out/shipit.env: `web-app` and `web_app` both become SHIPIT_WEB_APP_STATUS: the dotenv file leaves it out rather than pick one; rename one of them"
        ),
        "{run:?}"
    );
    let dotenv = key_values(&read(&project.path().join("out/shipit.env")));
    assert!(!dotenv.contains_key("SHIPIT_WEB_APP_STATUS"), "{dotenv:?}");
    assert_eq!(dotenv["SHIPIT_API_STATUS"], "skipped", "{dotenv:?}");
    assert_eq!(dotenv["SHIPIT_STATUS"], "succeeded", "{dotenv:?}");
}
