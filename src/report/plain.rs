//! Line-by-line output for logs that are not a live terminal: CI jobs, files, pipes.
//!
//! Every line is timestamped. Progress is throttled so a long wait prints a line every few
//! seconds rather than hundreds. Under GitHub Actions and GitLab, a stage's raw log is printed
//! as one collapsible group when the stage ends (parallel stages would otherwise interleave
//! groups, which neither system can show), and failures become annotations.

use std::collections::HashMap;
use std::io::Write;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use console::Style;

use super::event::{Event, Reporter};
use super::mode::{CiSystem, Verbosity};
use crate::journal::StageStatus;
use crate::plan::StageId;

/// How often, at most, a stage's progress is printed when not verbose.
pub const PROGRESS_INTERVAL: Duration = Duration::from_secs(5);
/// Lines of a stage's log kept for the end-of-stage group.
const GROUP_LINES: usize = 2000;

pub type Clock = Box<dyn Fn() -> (String, Instant) + Send + Sync>;

pub struct PlainReporter {
    out: Mutex<Box<dyn Write + Send>>,
    state: Mutex<HashMap<StageId, StageState>>,
    ci: Option<CiSystem>,
    verbosity: Verbosity,
    color: bool,
    clock: Clock,
}

#[derive(Default)]
struct StageState {
    last_progress: Option<Instant>,
    pending_progress: Option<String>,
    log: Vec<String>,
    dropped_lines: usize,
}

impl PlainReporter {
    pub fn new(
        out: Box<dyn Write + Send>,
        ci: Option<CiSystem>,
        verbosity: Verbosity,
        color: bool,
        clock: Clock,
    ) -> Self {
        PlainReporter {
            out: Mutex::new(out),
            state: Mutex::new(HashMap::new()),
            ci,
            verbosity,
            color,
            clock,
        }
    }

    /// A clock that reads the wall time.
    pub fn wall_clock() -> Clock {
        Box::new(|| {
            (
                chrono::Local::now().format("%H:%M:%S").to_string(),
                Instant::now(),
            )
        })
    }

    fn style(&self, style: Style) -> Style {
        style.force_styling(self.color)
    }

    fn line(&self, text: &str) {
        let (stamp, _) = (self.clock)();
        let mut out = self.out.lock().unwrap_or_else(|e| e.into_inner());
        let _ = writeln!(
            out,
            "{} {text}",
            self.style(Style::new().dim()).apply_to(stamp)
        );
    }

    fn raw(&self, text: &str) {
        let mut out = self.out.lock().unwrap_or_else(|e| e.into_inner());
        let _ = writeln!(out, "{text}");
    }

    /// Raw log lines are printed as they come when verbose, or in a CI without groups.
    fn streams_logs(&self) -> bool {
        self.verbosity == Verbosity::Verbose && !self.groups_logs()
            || self.ci == Some(CiSystem::Other)
    }

    fn groups_logs(&self) -> bool {
        matches!(self.ci, Some(CiSystem::GithubActions | CiSystem::Gitlab))
    }

    fn print_group(&self, stage: &StageId, state: &StageState) {
        if state.log.is_empty() {
            return;
        }
        let title = format!(
            "{stage} log ({} lines)",
            state.log.len() + state.dropped_lines
        );
        match self.ci {
            Some(CiSystem::GithubActions) => {
                // Build output is untrusted: stop-commands keeps a line such as `::add-mask::`
                // or `::set-output` in it from being run as a workflow command.
                let token = format!("shipit-{:016x}", rand::random::<u64>());
                self.raw(&format!("::group::{}", github_escape_data(&title)));
                self.raw(&format!("::stop-commands::{token}"));
                self.print_log(state);
                self.raw(&format!("::{token}::"));
                self.raw("::endgroup::");
            }
            Some(CiSystem::Gitlab) => {
                let name = stage.to_string().replace([':', ' '], "_");
                let ts = chrono::Utc::now().timestamp();
                self.raw(&format!(
                    "\x1b[0Ksection_start:{ts}:{name}[collapsed=true]\r\x1b[0K{title}"
                ));
                self.print_log(state);
                self.raw(&format!("\x1b[0Ksection_end:{ts}:{name}\r\x1b[0K"));
            }
            _ => {}
        }
    }

    fn print_log(&self, state: &StageState) {
        if state.dropped_lines > 0 {
            self.raw(&format!(
                "[{} earlier lines not shown]",
                state.dropped_lines
            ));
        }
        for line in &state.log {
            self.raw(line);
        }
    }
}

impl Reporter for PlainReporter {
    /// Under GitHub Actions the runner is told to hide the value in the job log as well (a
    /// step after shipit's, or a line shipit could not know was secret).
    fn register_secret(&self, value: &str) {
        if self.ci == Some(CiSystem::GithubActions) {
            self.raw(&format!("::add-mask::{}", github_escape_data(value)));
        }
    }

    fn report(&self, event: &Event) {
        let quiet = self.verbosity == Verbosity::Quiet;
        match event {
            Event::RunStarted {
                run_id,
                pipeline,
                resumed,
                stages,
            } => {
                if !quiet {
                    let verb = if *resumed { "resuming" } else { "starting" };
                    self.line(&format!(
                        "{verb} run {run_id} of pipeline {pipeline} ({} stages)",
                        stages.len()
                    ));
                }
            }
            Event::StageSkipped { stage, reason } => {
                if !quiet {
                    self.line(&format!("{stage}: skipped ({reason})"));
                }
            }
            Event::StageStarted {
                stage,
                attempt,
                reason,
            } => {
                self.state
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(stage.clone(), StageState::default());
                if !quiet {
                    let attempt = if *attempt > 1 {
                        format!(", attempt {attempt}")
                    } else {
                        String::new()
                    };
                    self.line(&format!("{stage}: started ({reason}{attempt})"));
                }
            }
            Event::StageProgress { stage, message } => {
                if quiet {
                    return;
                }
                let (_, now) = (self.clock)();
                let due = {
                    let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
                    let entry = state.entry(stage.clone()).or_default();
                    let due = self.verbosity == Verbosity::Verbose
                        || entry
                            .last_progress
                            .is_none_or(|t| now.duration_since(t) >= PROGRESS_INTERVAL);
                    if due {
                        entry.last_progress = Some(now);
                        entry.pending_progress = None;
                    } else {
                        entry.pending_progress = Some(message.clone());
                    }
                    due
                };
                if due {
                    self.line(&format!("{stage}: {message}"));
                }
            }
            Event::StageChange { stage, message } => {
                if quiet {
                    return;
                }
                let (_, now) = (self.clock)();
                {
                    // The change says more than any progress held back before it.
                    let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
                    let entry = state.entry(stage.clone()).or_default();
                    entry.last_progress = Some(now);
                    entry.pending_progress = None;
                }
                self.line(&format!("{stage}: {message}"));
            }
            Event::StageLog { stage, line } => {
                if self.streams_logs() {
                    self.line(&format!("{stage} | {line}"));
                } else if self.groups_logs() {
                    let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
                    let entry = state.entry(stage.clone()).or_default();
                    if entry.log.len() >= GROUP_LINES {
                        entry.log.remove(0);
                        entry.dropped_lines += 1;
                    }
                    entry.log.push(line.clone());
                }
            }
            Event::StageOutput { stage, key, value } => {
                if self.verbosity == Verbosity::Verbose {
                    self.line(&format!("{stage}: {key} = {value}"));
                }
            }
            Event::StageFinished {
                stage,
                status,
                elapsed,
                error,
                hint,
            } => {
                let state = self
                    .state
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(stage)
                    .unwrap_or_default();
                self.print_group(stage, &state);
                let took = format_elapsed(*elapsed);
                let word = match status {
                    StageStatus::Succeeded => {
                        self.style(Style::new().green()).apply_to("succeeded")
                    }
                    StageStatus::Interrupted => {
                        self.style(Style::new().yellow()).apply_to("interrupted")
                    }
                    other => self
                        .style(Style::new().red().bold())
                        .apply_to(other.as_str()),
                };
                if *status == StageStatus::Succeeded && quiet {
                    return;
                }
                match error {
                    Some(message) => {
                        let message_text = message.replace('\n', "\n    ");
                        self.line(&format!("{stage}: {word} after {took}: {message_text}"));
                        if let Some(hint) = hint {
                            self.raw(&format!("  hint: {hint}"));
                        }
                        if self.ci == Some(CiSystem::GithubActions) {
                            self.raw(&format!(
                                "::error title={}::{}",
                                github_escape_property(&format!("{stage} {}", status.as_str())),
                                github_escape_data(message)
                            ));
                        }
                    }
                    None => self.line(&format!("{stage}: {word} in {took}")),
                }
            }
            Event::Warning { message } => {
                self.line(&warning_text(self.color, message));
            }
            Event::RunFinished {
                run_id,
                status,
                elapsed,
            } => {
                if !quiet || *status != crate::journal::RunStatus::Succeeded {
                    self.line(&run_finished_text(run_id, *status, *elapsed));
                }
            }
        }
    }
}

/// `warning: …`, the label in bold yellow when `color`; the plain and terminal renderers'.
pub(super) fn warning_text(color: bool, message: &str) -> String {
    format!(
        "{} {message}",
        Style::new()
            .yellow()
            .bold()
            .force_styling(color)
            .apply_to("warning:")
    )
}

/// `run <id> <status> in <elapsed>`, the last line of a run in both renderers.
pub(super) fn run_finished_text(
    run_id: &str,
    status: crate::journal::RunStatus,
    elapsed: Duration,
) -> String {
    format!(
        "run {run_id} {} in {}",
        status.as_str(),
        format_elapsed(elapsed)
    )
}

pub fn format_elapsed(elapsed: Duration) -> String {
    let secs = elapsed.as_secs_f64();
    if secs < 60.0 {
        format!("{secs:.1}s")
    } else {
        let whole = elapsed.as_secs();
        format!("{}m{:02}s", whole / 60, whole % 60)
    }
}

/// Escapes a workflow command's message (GitHub Actions).
pub fn github_escape_data(text: &str) -> String {
    text.replace('%', "%25")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}

/// Escapes a workflow command's property value (GitHub Actions).
pub fn github_escape_property(text: &str) -> String {
    github_escape_data(text)
        .replace(':', "%3A")
        .replace(',', "%2C")
}
