//! Golden output per CI: one run's event stream rendered as each CI's log shows it, with the
//! output mode detected from that CI's own variables (GitHub Actions, GitLab, Jenkins, none), and
//! the files each CI reads back (GitHub's step outputs, the dotenv report, JUnit XML) for the same
//! run. The wall clock's times, GitLab's section timestamps and the random stop-commands token
//! are filtered; everything else is what the CI gets, escape sequences spelled out.

use std::time::Duration;

use super::ci_files;
use super::event::{Event, Reporter};
use super::mode::{OutputMode, Verbosity};
use super::plain::PlainReporter;
use super::tests::Buffer;
use crate::journal::{GitSnapshot, RunRecord, RunStatus, StageError, StageRecord, StageStatus};
use crate::plan::StageId;

const RUN_ID: &str = "20260101-000000-3f9a0c7e12b4d5a6";
const DIGEST: &str = "sha256:5d0c6c1d8e0b6f4f3a0c9e8d7b6a5f4e3d2c1b0a9f8e7d6c5b4a3f2e1d0c9b8a";

/// The run: `build:web` builds (its log tries a workflow command), `push:web` pushes,
/// `deploy:api` is unchanged, `deploy:web` is rolled back.
fn events() -> Vec<Event> {
    let build = StageId::build("web");
    let push = StageId::push("web");
    let web = StageId::deploy("web");
    vec![
        Event::RunStarted {
            run_id: RUN_ID.into(),
            pipeline: "shop".into(),
            resumed: false,
            stages: vec![build.clone(), push.clone(), web.clone(), StageId::deploy("api")],
        },
        Event::StageStarted {
            stage: build.clone(),
            attempt: 1,
            reason: "context changed: www/index.html".into(),
        },
        Event::StageProgress {
            stage: build.clone(),
            message: "step 2/3: RUN make".into(),
        },
        Event::StageLog {
            stage: build.clone(),
            line: "::add-mask::not-from-shipit".into(),
        },
        Event::StageLog {
            stage: build.clone(),
            line: "make: built www/".into(),
        },
        Event::StageFinished {
            stage: build,
            status: StageStatus::Succeeded,
            elapsed: Duration::from_millis(4_200),
            error: None,
            hint: None,
        },
        Event::StageStarted {
            stage: push.clone(),
            attempt: 1,
            reason: "its image was built".into(),
        },
        Event::StageOutput {
            stage: push.clone(),
            key: "digest".into(),
            value: DIGEST.into(),
        },
        Event::StageFinished {
            stage: push,
            status: StageStatus::Succeeded,
            elapsed: Duration::from_millis(1_300),
            error: None,
            hint: None,
        },
        Event::StageSkipped {
            stage: StageId::deploy("api"),
            reason: "unchanged since run 20251231-120000-0a1b2c3d4e5f6a7b".into(),
        },
        Event::StageStarted {
            stage: web.clone(),
            attempt: 1,
            reason: "its image changed".into(),
        },
        Event::StageFinished {
            stage: web,
            status: StageStatus::RolledBack,
            elapsed: Duration::from_secs(31),
            error: Some("replica 1 exited with code 1 before it was healthy:\nlisten tcp :8080: address already in use".into()),
            hint: Some("the previous version keeps running; free port 8080 and run again".into()),
        },
        Event::RunFinished {
            run_id: RUN_ID.into(),
            status: RunStatus::RolledBack,
            elapsed: Duration::from_secs(37),
        },
    ]
}

/// The same run as the journal records it.
fn record() -> RunRecord {
    let at = |s: &str| {
        chrono::DateTime::parse_from_rfc3339(s)
            .unwrap()
            .with_timezone(&chrono::Utc)
    };
    let stage = |id: StageId, status: StageStatus, from: &str, to: &str| {
        let mut record = StageRecord::pending(id);
        record.status = status;
        record.started_at = Some(at(from));
        record.finished_at = Some(at(to));
        record.attempts = 1;
        record
    };
    let mut build = stage(
        StageId::build("web"),
        StageStatus::Succeeded,
        "2026-01-01T00:00:00Z",
        "2026-01-01T00:00:04.200Z",
    );
    build.reason = Some("context changed: www/index.html".into());
    build
        .outputs
        .insert("image_id".into(), "sha256:1d2c".into());
    let mut push = stage(
        StageId::push("web"),
        StageStatus::Succeeded,
        "2026-01-01T00:00:04.200Z",
        "2026-01-01T00:00:05.500Z",
    );
    push.reason = Some("its image was built".into());
    push.outputs.insert("digest".into(), DIGEST.into());
    push.outputs.insert(
        "ref".into(),
        format!("registry.example.com/shop/web@{DIGEST}").into(),
    );
    let mut web = stage(
        StageId::deploy("web"),
        StageStatus::RolledBack,
        "2026-01-01T00:00:05.500Z",
        "2026-01-01T00:00:36.500Z",
    );
    web.reason = Some("its image changed".into());
    web.error = Some(StageError {
        message: "replica 1 exited with code 1 before it was healthy:\nlisten tcp :8080: address already in use".into(),
        hint: Some("the previous version keeps running; free port 8080 and run again".into()),
    });
    let mut api = StageRecord::pending(StageId::deploy("api"));
    api.status = StageStatus::Skipped;
    api.reason = Some("unchanged since run 20251231-120000-0a1b2c3d4e5f6a7b".into());
    let mut run = RunRecord::for_test(RUN_ID, "shop", vec![build, push, web, api]);
    run.revision = 9;
    run.git = GitSnapshot {
        sha: Some("8a1f9c2".into()),
        branch: Some("main".into()),
        dirty: false,
    };
    run.status = RunStatus::RolledBack;
    run.finished_at = Some(at("2026-01-01T00:00:37Z"));
    run
}

/// The run rendered as the plain renderer does under the CI whose variables `vars` are, with
/// the wall clock, as shipit runs it; escape sequences and carriage returns spelled out.
fn log_under(vars: &[(&str, &str)]) -> String {
    let lookup = |name: &str| {
        vars.iter()
            .find(|(key, _)| *key == name)
            .map(|(_, value)| (*value).to_owned())
    };
    let mode = OutputMode::detect(&lookup, false, false, Verbosity::Normal);
    assert!(!mode.live, "no CI log gets live progress");
    let buffer = Buffer::default();
    let reporter = PlainReporter::new(
        Box::new(buffer.clone()),
        mode.ci,
        mode.verbosity,
        mode.color,
        PlainReporter::wall_clock(),
    );
    for event in events() {
        reporter.report(&event);
    }
    let text = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
    text.replace('\x1b', "\\e").replace('\r', "\\r")
}

fn assert_golden(name: &str, text: &str) {
    insta::with_settings!({filters => vec![
        (r"\d{2}:\d{2}:\d{2}", "[time]"),
        (r"section_(start|end):\d+:", "section_$1:[unix]:"),
        (r"shipit-[0-9a-f]{16}", "shipit-[token]"),
    ]}, {
        insta::assert_snapshot!(name, text);
    });
}

#[test]
fn github_actions_log() {
    assert_golden(
        "github_actions_log",
        &log_under(&[("GITHUB_ACTIONS", "true"), ("CI", "true")]),
    );
}

#[test]
fn gitlab_log() {
    assert_golden(
        "gitlab_log",
        &log_under(&[("GITLAB_CI", "true"), ("CI", "true")]),
    );
}

#[test]
fn jenkins_log() {
    assert_golden(
        "jenkins_log",
        &log_under(&[
            ("JENKINS_URL", "https://jenkins.example.com/"),
            ("BUILD_ID", "7"),
        ]),
    );
}

#[test]
fn plain_log_outside_ci() {
    assert_golden("plain_log", &log_under(&[]));
}

#[test]
fn github_step_outputs_file() {
    assert_golden("github_outputs", &ci_files::github_outputs(&record()));
}

#[test]
fn dotenv_file() {
    let dotenv = ci_files::dotenv(&record());
    assert!(dotenv.clashes.is_empty());
    assert_golden("dotenv", &dotenv.text);
}

#[test]
fn junit_file() {
    assert_golden("junit", &ci_files::junit(&record()));
}
