//! End to end through the real binary and the test environment's Docker daemon: skipping
//! unchanged stages, forcing, failing builds, and resuming runs that were killed or
//! interrupted.

mod support;

use std::time::Duration;

use support::scenario::Scenario;
use support::step_beacon::StepBeacon;
use support::{Project, stage, unique_name};

/// Two images: `fast` builds at once, `slow` sleeps in a RUN step long enough to be caught
/// mid-build. The nonce keeps the daemon's layer cache from answering for `slow`. The images
/// are named after the scenario, which removes them when it is dropped.
fn two_image_project(slow_seconds: u32) -> (Project, Scenario) {
    slow_step_project(&format!("sleep {slow_seconds}"))
}

/// [`two_image_project`] whose slow RUN step runs the shell command `slow_step`.
fn slow_step_project(slow_step: &str) -> (Project, Scenario) {
    let scenario = Scenario::new("e2e-run");
    let name = scenario.name();
    let project = Project::with_docker();
    project
        .file(
            "shipit.yaml",
            format!(
                "version: 1\nname: {name}\nimages:\n  fast:\n    context: fast\n  slow:\n    context: slow\n    args: {{ NONCE: \"{name}\" }}\n"
            ),
        )
        .file("fast/Dockerfile", "FROM busybox:latest\nRUN echo fast > /fast.txt\n")
        .file("fast/app.txt", "v1\n")
        .file(
            "slow/Dockerfile",
            format!("FROM busybox:latest\nARG NONCE\nRUN echo \"$NONCE\" && {slow_step} && echo done > /slow.txt\n"),
        )
        .commit();
    (project, scenario)
}

fn status(stage: &Option<serde_json::Value>) -> String {
    stage
        .as_ref()
        .and_then(|s| s["status"].as_str())
        .unwrap_or("absent")
        .to_owned()
}

#[test]
fn a_second_run_skips_unchanged_stages_force_rebuilds_and_a_change_rebuilds_only_its_image() {
    let (project, _images) = two_image_project(0);
    let first = project.shipit(&["run", "--output", "json"]);
    assert_eq!(first.code, 0, "{first:?}");
    let first_json = first.json();
    let image_id = first_json["stages"][0]["outputs"]["image_id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(image_id.starts_with("sha256:"), "{first_json}");
    assert!(
        first_json["stages"][0]["outputs"]["local_ref"]
            .as_str()
            .unwrap()
            .contains("-fast:")
    );

    let second = project.shipit(&["run", "--output", "json"]);
    assert_eq!(second.code, 0, "{second:?}");
    let run_id = first_json["run_id"].as_str().unwrap();
    for stage in second.json()["stages"].as_array().unwrap() {
        assert_eq!(stage["status"], "skipped", "{stage}");
        assert_eq!(
            stage["reason"],
            format!("unchanged since run {run_id}"),
            "{stage}"
        );
    }
    assert!(
        second
            .stderr
            .contains("build:fast: skipped (unchanged since run"),
        "{second:?}"
    );

    let forced = project.shipit(&["run", "--force", "--only", "build:fast", "--output", "json"]);
    assert_eq!(forced.code, 0, "{forced:?}");
    let forced = forced.json();
    let fast = stage(&forced, "build:fast").clone();
    assert_eq!(fast["status"], "succeeded");
    assert_eq!(fast["reason"], "forced");

    project.file("fast/app.txt", "v2\n");
    let changed = project.shipit(&["run", "--output", "json"]);
    assert_eq!(changed.code, 0, "{changed:?}");
    let changed = changed.json();
    let by_stage = |id: &str| stage(&changed, id).clone();
    assert_eq!(by_stage("build:fast")["status"], "succeeded");
    assert!(
        by_stage("build:fast")["reason"]
            .as_str()
            .unwrap()
            .starts_with("inputs changed since run")
    );
    assert_eq!(by_stage("build:slow")["status"], "skipped");
}

#[test]
fn a_removed_image_is_rebuilt_even_though_its_inputs_are_unchanged() {
    let (project, _images) = two_image_project(0);
    let first = project.shipit(&["run", "--only", "build:fast", "--output", "json"]);
    assert_eq!(first.code, 0, "{first:?}");
    let local_ref = first.json()["stages"][0]["outputs"]["local_ref"]
        .as_str()
        .unwrap()
        .to_owned();
    let image_id = first.json()["stages"][0]["outputs"]["image_id"]
        .as_str()
        .unwrap()
        .to_owned();
    support::docker(&["rmi", "-f", &local_ref, &image_id]);
    let second = project.shipit(&["run", "--only", "build:fast", "--output", "json"]);
    assert_eq!(second.code, 0, "{second:?}");
    let stage = &second.json()["stages"][0];
    assert_eq!(stage["status"], "succeeded", "{stage}");
    assert!(
        stage["reason"]
            .as_str()
            .unwrap()
            .contains("outputs are gone"),
        "{stage}"
    );
}

#[test]
fn a_failing_build_exits_1_naming_the_step_and_its_output() {
    let project = Project::with_docker();
    project
        .file("shipit.yaml", format!("version: 1\nname: {}\nimages:\n  web:\n    context: web\n", unique_name("e2e-fail")))
        .file("web/Dockerfile", "FROM busybox:latest\nRUN echo 'compiling the thing' && echo 'boom: missing header' && exit 3\n")
        .commit();
    let run = project.shipit(&["run", "--output", "json"]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stderr.contains("boom: missing header"),
        "the failing output is shown: {run:?}"
    );
    // The step's own line says `exit 3` too: only the daemon's failure message holds these.
    let names_exit_code_3 =
        |text: &str| text.contains("exit code: 3") || text.contains("returned a non-zero code: 3");
    assert!(names_exit_code_3(&run.stderr), "{run:?}");
    let result = run.json();
    assert_eq!(result["stages"][0]["status"], "failed");
    let message = result["stages"][0]["error"]["message"].as_str().unwrap();
    assert!(message.contains("boom: missing header"), "{message}");
    assert!(names_exit_code_3(message), "{message}");
}

/// Starts `args`, SIGKILLs it once build:fast succeeded and build:slow runs, and returns the
/// killed run's id.
fn kill_mid_slow_build(project: &Project, args: &[&str]) -> String {
    let mut child = project
        .command(args)
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    project.wait_for(
        "build:fast to succeed while build:slow runs",
        Duration::from_secs(120),
        |p| {
            status(&p.latest_stage("build:fast")) == "succeeded"
                && status(&p.latest_stage("build:slow")) == "running"
        },
    );
    child.kill().unwrap(); // SIGKILL: no chance to write anything more
    child.wait().unwrap();
    let run_id = project.run_ids().pop().unwrap();
    assert_eq!(
        project.journal(&run_id)["status"],
        "running",
        "the killed run's journal is left as it was"
    );
    run_id
}

fn resumed_stages(project: &Project, run_id: &str) -> (serde_json::Value, String) {
    let resumed = project.shipit(&["resume", "--output", "json"]);
    assert_eq!(resumed.code, 0, "{resumed:?}");
    let result = resumed.json();
    assert_eq!(result["run_id"], run_id, "the same run continues");
    assert_eq!(result["status"], "succeeded");
    (result, resumed.stderr)
}

#[test]
fn a_run_killed_mid_stage_is_completed_by_resume_without_redoing_finished_stages() {
    let (project, _images) = two_image_project(8);
    let run_id = kill_mid_slow_build(&project, &["run", "--no-progress"]);
    let (result, stderr) = resumed_stages(&project, &run_id);
    assert_eq!(stage(&result, "build:fast")["status"], "skipped");
    assert_eq!(
        stage(&result, "build:fast")["reason"],
        "already done in this run"
    );
    assert_eq!(stage(&result, "build:slow")["status"], "succeeded");
    assert_eq!(
        stage(&result, "build:slow")["attempts"],
        2,
        "the killed attempt counts"
    );
    assert!(stderr.contains("resuming run"), "{stderr}");
}

#[test]
fn a_killed_forced_run_resumes_without_redoing_what_it_finished_but_redoes_what_was_pruned() {
    let (project, _images) = two_image_project(8);
    let run_id = kill_mid_slow_build(&project, &["run", "--force", "--no-progress"]);
    let (result, _) = resumed_stages(&project, &run_id);
    assert_eq!(
        stage(&result, "build:fast")["reason"],
        "already done in this run"
    );

    // A second killed run, and this time the finished image is pruned before the resume.
    let (project, _images) = two_image_project(8);
    let run_id = kill_mid_slow_build(&project, &["run", "--no-progress"]);
    let fast = stage(&project.journal(&run_id), "build:fast").clone();
    support::docker(&[
        "rmi",
        "-f",
        fast["outputs"]["local_ref"].as_str().unwrap(),
        fast["outputs"]["image_id"].as_str().unwrap(),
    ]);
    let (result, _) = resumed_stages(&project, &run_id);
    assert_eq!(stage(&result, "build:fast")["status"], "succeeded");
    assert_eq!(stage(&result, "build:fast")["attempts"], 2);
}

fn interrupt_with(signal: &str, expected_code: i32) {
    let beacon = StepBeacon::new();
    let (project, _images) = slow_step_project(&format!("{} && sleep 30", beacon.call()));
    let child = project
        .command(&["run", "--no-progress"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    project.wait_for("build:slow to run", Duration::from_secs(120), |p| {
        status(&p.latest_stage("build:slow")) == "running"
    });
    beacon.wait("the slow build step to start", Duration::from_secs(120));
    let killed = std::process::Command::new("kill")
        .args([signal, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let started = std::time::Instant::now();
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(expected_code), "{stderr}");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "stopped promptly, not after the build finished"
    );
    let run_id = project.run_ids().pop().unwrap();
    let journal = project.journal(&run_id);
    assert_eq!(journal["status"], "interrupted", "{journal}");
    assert_eq!(status(&project.latest_stage("build:slow")), "interrupted");
    assert!(stderr.contains("interrupted"), "{stderr}");
    // `show` reads the cause from the journal: it reports the code the run ended with.
    let shown = project.shipit(&["show", &run_id, "--output", "json"]);
    assert_eq!(shown.json()["exit_code"], expected_code, "{shown:?}");
    let shown = project.shipit(&["show", &run_id]);
    assert!(
        shown
            .stdout
            .lines()
            .next()
            .unwrap_or_default()
            .ends_with(&format!("interrupted (exit {expected_code})")),
        "{shown:?}"
    );
}

#[test]
fn ctrl_c_stops_the_running_stage_cleanly_and_exits_130() {
    interrupt_with("-INT", 130);
}

#[test]
fn sigterm_stops_the_running_stage_cleanly_and_exits_143() {
    interrupt_with("-TERM", 143);
}

#[test]
fn plan_reports_what_would_be_skipped_after_a_run() {
    let (project, _images) = two_image_project(0);
    assert_eq!(project.shipit(&["run"]).code, 0);
    project.file("fast/app.txt", "v3\n");
    let plan = project.shipit(&["plan", "--output", "json"]);
    assert_eq!(plan.code, 0, "{plan:?}");
    let plan = plan.json();
    let action = |id: &str| stage(&plan, id)["action"].clone();
    assert_eq!(action("build:fast"), "run");
    assert_eq!(action("build:slow"), "skip");
}
