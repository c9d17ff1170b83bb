//! The holds on runs and deploy targets, as locked files in the state dir (`file_holds.rs`).
//! These functions block briefly (they never wait for a lock); the store calls them on the
//! blocking pool.

use crate::journal::error::JournalError;
use crate::journal::file_holds::{hold_run, hold_target};
use crate::journal::run_id::is_run_id;
use crate::journal::run_store::Lease;

use super::layout::{Layout, RunFiles};

/// `runs/<id>/lock`, with this process's pid inside.
pub(super) fn lock_run(layout: &Layout, files: &RunFiles) -> Result<Lease, JournalError> {
    if !files.journal.is_file() {
        return Err(layout.unknown_run(&files.run_id));
    }
    hold_run(&files.run_lock, &files.run_id)
}

/// `locks/<pipeline>/<target>.lock`, with `run_id` and this process's pid inside.
pub(super) fn try_lock_target(
    layout: &Layout,
    pipeline: &str,
    target: &str,
    run_id: &str,
) -> Result<Lease, JournalError> {
    if !is_run_id(run_id) {
        return Err(JournalError::InvalidRunId {
            run_id: run_id.to_owned(),
        });
    }
    hold_target(&layout.locks_dir(), pipeline, target, run_id)
}
