//! Snapshot tests of the plain renderers: what a CI log shows for one run.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::event::{Event, Reporter};
use super::mode::{CiSystem, Verbosity};
use super::plain::PlainReporter;
use crate::journal::{RunStatus, StageStatus};
use crate::plan::StageId;

/// What a renderer wrote, shared with the test that reads it.
#[derive(Clone, Default)]
pub(super) struct Buffer(pub(super) Arc<Mutex<Vec<u8>>>);

impl Write for Buffer {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A clock that advances one second per reading, from a fixed start.
fn fake_clock() -> super::plain::Clock {
    let start = Instant::now();
    let ticks = Mutex::new(0u64);
    Box::new(move || {
        let mut t = ticks.lock().unwrap();
        *t += 1;
        (
            format!("00:00:{:02}", *t % 60),
            start + Duration::from_secs(*t),
        )
    })
}

fn story() -> Vec<Event> {
    let build = StageId::build("web");
    let deploy = StageId::deploy("web");
    vec![
        Event::RunStarted {
            run_id: "20260101-000000-abcd".into(),
            pipeline: "shop".into(),
            resumed: false,
            stages: vec![build.clone(), deploy.clone()],
        },
        Event::StageSkipped {
            stage: StageId::build("api"),
            reason: "unchanged since run 20251231-235959-0000".into(),
        },
        Event::StageStarted {
            stage: build.clone(),
            attempt: 1,
            reason: "inputs changed since run 20251231-235959-0000".into(),
        },
        Event::StageProgress {
            stage: build.clone(),
            message: "step 1/3: FROM busybox".into(),
        },
        Event::StageProgress {
            stage: build.clone(),
            message: "step 2/3: RUN make".into(),
        },
        Event::StageLog {
            stage: build.clone(),
            line: "::set-output name=x::injected".into(),
        },
        Event::StageLog {
            stage: build.clone(),
            line: "compiling".into(),
        },
        Event::StageOutput {
            stage: build.clone(),
            key: "image_id".into(),
            value: "sha256:1234".into(),
        },
        Event::StageFinished {
            stage: build.clone(),
            status: StageStatus::Succeeded,
            elapsed: Duration::from_millis(8_100),
            error: None,
            hint: None,
        },
        Event::StageStarted {
            stage: deploy.clone(),
            attempt: 2,
            reason: "forced".into(),
        },
        Event::StageFinished {
            stage: deploy,
            status: StageStatus::RolledBack,
            elapsed: Duration::from_secs(95),
            error: Some("replica 2 exited with code 1:\nlisten: address in use".into()),
            hint: Some("free port 8080".into()),
        },
        Event::RunFinished {
            run_id: "20260101-000000-abcd".into(),
            status: RunStatus::RolledBack,
            elapsed: Duration::from_secs(104),
        },
    ]
}

fn render(ci: Option<CiSystem>, verbosity: Verbosity) -> String {
    let buffer = Buffer::default();
    let reporter = PlainReporter::new(Box::new(buffer.clone()), ci, verbosity, false, fake_clock());
    for event in story() {
        reporter.report(&event);
    }
    let text = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
    // Random stop-commands tokens and GitLab section timestamps differ per run.
    let token = regex_lite_replace(&text, "shipit-", 16, "shipit-TOKEN");
    regex_lite_section(&token)
}

fn regex_lite_replace(text: &str, prefix: &str, len: usize, with: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(at) = rest.find(prefix) {
        out.push_str(&rest[..at]);
        out.push_str(with);
        rest = &rest[(at + prefix.len() + len).min(rest.len())..];
    }
    out.push_str(rest);
    out
}

fn regex_lite_section(text: &str) -> String {
    text.lines()
        .map(|line| {
            for marker in ["section_start:", "section_end:"] {
                if let Some(at) = line.find(marker) {
                    let after = &line[at + marker.len()..];
                    if let Some(colon) = after.find(':') {
                        return format!("{}{marker}TS{}", &line[..at], &after[colon..])
                            .replace('\x1b', "<ESC>")
                            .replace('\r', "<CR>");
                    }
                }
            }
            line.to_owned()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn plain_output_for_a_terminal_less_run() {
    insta::assert_snapshot!(render(None, Verbosity::Normal));
}

#[test]
fn plain_output_verbose_streams_logs_and_outputs() {
    insta::assert_snapshot!(render(None, Verbosity::Verbose));
}

#[test]
fn quiet_output_shows_only_failures() {
    insta::assert_snapshot!(render(None, Verbosity::Quiet));
}

#[test]
fn github_actions_output_groups_logs_guards_commands_and_annotates_failures() {
    let text = render(Some(CiSystem::GithubActions), Verbosity::Normal);
    assert!(text.contains("::stop-commands::shipit-TOKEN"));
    insta::assert_snapshot!(text);
}

#[test]
fn gitlab_output_folds_logs_into_collapsed_sections() {
    insta::assert_snapshot!(render(Some(CiSystem::Gitlab), Verbosity::Normal));
}

#[test]
fn generic_ci_output_streams_log_lines() {
    insta::assert_snapshot!(render(Some(CiSystem::Other), Verbosity::Normal));
}

#[test]
fn progress_is_throttled_unless_verbose() {
    let buffer = Buffer::default();
    let reporter = PlainReporter::new(
        Box::new(buffer.clone()),
        None,
        Verbosity::Normal,
        false,
        fake_clock(),
    );
    let stage = StageId::deploy("web");
    for i in 0..20 {
        reporter.report(&Event::StageProgress {
            stage: stage.clone(),
            message: format!("poll {i}"),
        });
    }
    let text = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
    // The fake clock advances 1 s per reading; at most one line per 5 s gets through.
    let lines = text.lines().count();
    assert!((2..=5).contains(&lines), "{lines} lines:\n{text}");
    assert!(
        text.contains("poll 0"),
        "the first progress line is shown at once: {text}"
    );
}
