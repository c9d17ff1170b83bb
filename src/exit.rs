//! The exit codes shipit documents: a script or CI job can tell "the deploy was rolled back"
//! from "the deploy never became healthy" from "the pipeline file is wrong".

use crate::journal::RunStatus;

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

pub fn for_run_status(status: RunStatus, signal_exit: i32) -> i32 {
    match status {
        RunStatus::Succeeded => OK,
        RunStatus::Running | RunStatus::Failed => STAGE_FAILED,
        RunStatus::RolledBack => ROLLED_BACK,
        RunStatus::TimedOut => TIMED_OUT,
        RunStatus::Interrupted => signal_exit,
    }
}
