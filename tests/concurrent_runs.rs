//! Several `shipit run` processes sharing one state directory, through the real binary: runs
//! of two pipelines proceed side by side, and two runs deploying the same target take turns,
//! the second saying which run it waits for.

mod support;

use std::process::{Child, Stdio};
use std::time::Duration;

use support::scenario::Scenario;
use support::{Project, stage, unique_name};

fn spawn(project: &Project, args: &[&str]) -> Child {
    project
        .command(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("shipit starts")
}

/// Waits for the process and returns (exit code, stdout JSON, stderr).
fn finish(child: Child) -> (i32, serde_json::Value, String) {
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    let json = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e}); stderr:\n{stderr}"));
    (output.status.code().unwrap_or(-1), json, stderr)
}

fn time(stage: &serde_json::Value, field: &str) -> chrono::DateTime<chrono::Utc> {
    stage[field]
        .as_str()
        .unwrap_or_else(|| panic!("no {field} in {stage}"))
        .parse()
        .unwrap()
}

#[test]
fn runs_of_two_pipelines_in_one_state_dir_build_at_the_same_time_and_both_finish() {
    let project = Project::with_docker();
    let nonce = unique_name("nonce");
    for name in ["left", "right"] {
        project
            .file(
                &format!("{name}/Dockerfile"),
                format!("FROM busybox:latest\nRUN echo {nonce}-{name} && sleep 2\n"),
            )
            .file(
                &format!("{name}.yaml"),
                format!("version: 1\nname: {name}\nimages:\n  app:\n    context: {name}\n"),
            );
    }
    project.commit();
    let left = spawn(&project, &["run", "-f", "left.yaml", "--output", "json"]);
    let right = spawn(&project, &["run", "-f", "right.yaml", "--output", "json"]);
    let (left, right) = (finish(left), finish(right));
    assert_eq!(left.0, 0, "{}", left.2);
    assert_eq!(right.0, 0, "{}", right.2);
    let (l, r) = (stage(&left.1, "build:app"), stage(&right.1, "build:app"));
    assert!(
        time(l, "started_at") < time(r, "finished_at")
            && time(r, "started_at") < time(l, "finished_at"),
        "the two builds did not overlap: one waited for the other\n{l}\n{r}"
    );
}

#[test]
fn two_runs_deploying_one_target_take_turns_and_the_second_says_whom_it_waits_for() {
    let scenario = Scenario::new("e2e-turns");
    let name = scenario.name();
    let project = Project::with_docker();
    // The app answers only after a start delay, so a deploy is still gating when the second
    // run reaches its deploy.
    project
        .file(
            "web/Dockerfile",
            "FROM busybox:latest\nRUN mkdir /www && echo ok > /www/health\nCMD [\"sh\", \"-c\", \"sleep 2; exec httpd -f -p 127.0.0.1:$PORT -h /www\"]\n",
        )
        .file(
            "shipit.yaml",
            format!(
                "version: 1\nname: {name}\nimages:\n  web:\n    context: web\ndeploy:\n  web:\n    image: web\n    docker:\n      port: {}\n      health: {{ http: {{ path: /health }}, interval: 250ms, retries: 2, start_period: 5s }}\n",
                scenario.ports(4)
            ),
        )
        .commit();
    let first = spawn(&project, &["run", "--output", "json"]);
    project.wait_for(
        "the first run's deploy to start",
        Duration::from_secs(120),
        |p| {
            p.latest_stage("deploy:web")
                .is_some_and(|s| s["status"] == "running")
        },
    );
    let first_run = project.run_ids().pop().unwrap();
    let second = spawn(&project, &["run", "--force", "--output", "json"]);
    let (first, second) = (finish(first), finish(second));
    assert_eq!(first.0, 0, "{}", first.2);
    assert_eq!(second.0, 0, "{}", second.2);
    assert!(
        second
            .2
            .contains(&format!("deploy:web waits: run {first_run} (pid "))
            && second
                .2
                .contains(&format!("is deploying target `web` of pipeline {name}")),
        "{}",
        second.2
    );
    let (a, b) = (
        stage(&first.1, "deploy:web"),
        stage(&second.1, "deploy:web"),
    );
    assert!(
        time(b, "started_at") >= time(a, "finished_at"),
        "the second deploy started before the first ended\n{a}\n{b}"
    );
}
