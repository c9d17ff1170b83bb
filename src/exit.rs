//! The exit codes shipit documents: a script or CI job can tell "the deploy was rolled back"
//! from "the deploy never became healthy" from "the pipeline file is wrong".

use crate::journal::{RunRecord, RunStatus, StopCause};

pub const OK: i32 = 0;
/// A stage failed (build error, push refused, deploy could not start…).
pub const STAGE_FAILED: i32 = 1;
/// The input is invalid: pipeline file, command line, journal.
pub const INVALID_INPUT: i32 = 2;
/// A deploy failed and was rolled back to the previous version.
pub const ROLLED_BACK: i32 = 3;
/// A deploy was not healthy before its deadline.
pub const TIMED_OUT: i32 = 4;
/// Interrupted by Ctrl-C (SIGINT).
pub const INTERRUPTED_SIGINT: i32 = 130;
/// Interrupted by SIGTERM.
pub const INTERRUPTED_SIGTERM: i32 = 143;

/// The exit code a run ends with, and that `shipit show` reports for it later.
pub fn for_run(run: &RunRecord) -> i32 {
    match run.status {
        RunStatus::Succeeded => OK,
        RunStatus::Running | RunStatus::Failed => STAGE_FAILED,
        RunStatus::RolledBack => ROLLED_BACK,
        RunStatus::TimedOut => TIMED_OUT,
        RunStatus::Interrupted => match run.stopped_by {
            Some(StopCause::Terminate) => INTERRUPTED_SIGTERM,
            // A run whose process was killed outright recorded no cause; 130 is what a
            // resumable interruption has always said.
            Some(StopCause::Interrupt) | None => INTERRUPTED_SIGINT,
        },
    }
}
