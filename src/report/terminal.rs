//! The live display for a person at a terminal: a spinner per running stage showing its latest
//! sub-step, and a permanent line for each stage as it ends. The only module that touches
//! indicatif.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use console::Style;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::event::{Event, Reporter};
use super::mode::Verbosity;
use super::plain::{format_elapsed, run_finished_text, warning_text};
use crate::journal::StageStatus;
use crate::plan::StageId;

pub struct TerminalReporter {
    bars: MultiProgress,
    running: Mutex<HashMap<StageId, ProgressBar>>,
    verbosity: Verbosity,
    color: bool,
}

impl TerminalReporter {
    pub fn new(verbosity: Verbosity, color: bool) -> Self {
        TerminalReporter {
            bars: MultiProgress::with_draw_target(ProgressDrawTarget::stderr_with_hz(10)),
            running: Mutex::new(HashMap::new()),
            verbosity,
            color,
        }
    }

    fn print(&self, text: String) {
        // Printing through MultiProgress keeps the line above the live bars.
        let _ = self.bars.println(text);
    }

    fn style(&self, style: Style) -> Style {
        style.force_styling(self.color)
    }
}

impl Reporter for TerminalReporter {
    fn report(&self, event: &Event) {
        match event {
            Event::RunStarted {
                run_id,
                pipeline,
                resumed,
                stages,
            } => {
                let verb = if *resumed { "resuming" } else { "starting" };
                self.print(format!(
                    "{} run {run_id} of pipeline {pipeline} ({} stages)",
                    self.style(Style::new().bold()).apply_to(verb),
                    stages.len()
                ));
            }
            Event::StageSkipped { stage, reason } => {
                self.print(format!(
                    "  {} {stage}  skipped: {reason}",
                    self.style(Style::new().dim()).apply_to("-")
                ));
            }
            Event::StageStarted { stage, reason, .. } => {
                let bar = self.bars.add(ProgressBar::new_spinner());
                let template = if self.color {
                    "{spinner:.cyan} {prefix:.bold}  {wide_msg} {elapsed:.dim}"
                } else {
                    "{spinner} {prefix}  {wide_msg} {elapsed}"
                };
                bar.set_style(
                    ProgressStyle::with_template(template)
                        .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                );
                bar.set_prefix(stage.to_string());
                bar.set_message(reason.clone());
                bar.enable_steady_tick(Duration::from_millis(120));
                self.running
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(stage.clone(), bar);
            }
            Event::StageProgress { stage, message } | Event::StageChange { stage, message } => {
                if let Some(bar) = self
                    .running
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .get(stage)
                {
                    bar.set_message(message.clone());
                }
            }
            Event::StageLog { stage, line } => {
                if self.verbosity == Verbosity::Verbose {
                    self.print(format!("  {stage} | {line}"));
                }
            }
            Event::StageOutput { stage, key, value } => {
                if self.verbosity == Verbosity::Verbose {
                    self.print(format!("  {stage}: {key} = {value}"));
                }
            }
            Event::StageFinished {
                stage,
                status,
                elapsed,
                error,
                hint,
            } => {
                if let Some(bar) = self
                    .running
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(stage)
                {
                    bar.finish_and_clear();
                    self.bars.remove(&bar);
                }
                let took = format_elapsed(*elapsed);
                let (mark, style) = match status {
                    StageStatus::Succeeded => ("✔", Style::new().green()),
                    StageStatus::Interrupted => ("■", Style::new().yellow()),
                    _ => ("✘", Style::new().red().bold()),
                };
                let mut line = format!(
                    "  {} {stage}  {} in {took}",
                    self.style(style.clone()).apply_to(mark),
                    status.as_str()
                );
                if let Some(message) = error {
                    line.push_str(&format!(": {message}"));
                }
                if let Some(hint) = hint {
                    line.push_str(&format!("\n    hint: {hint}"));
                }
                self.print(line);
            }
            Event::Warning { message } => {
                self.print(warning_text(self.color, message));
            }
            Event::RunFinished {
                run_id,
                status,
                elapsed,
            } => {
                self.print(run_finished_text(run_id, *status, *elapsed));
            }
        }
    }
}
