//! The holds on runs and deploy targets, as locked files. These functions block briefly (they
//! never wait for a lock); the store calls them on the blocking pool.

use std::fs;
use std::path::Path;

use crate::journal::error::JournalError;
use crate::journal::run_id::is_run_id;
use crate::journal::run_store::Lease;

use super::layout::{Layout, RunFiles};
use super::lock_file::{self, Holder, TryHold};

/// `runs/<id>/lock`, with this process's pid inside.
pub(super) fn lock_run(layout: &Layout, files: &RunFiles) -> Result<Lease, JournalError> {
    if !files.journal.is_file() {
        return Err(layout.unknown_run(&files.run_id));
    }
    match try_hold(&files.run_lock, &Holder::this_process(None))? {
        TryHold::Held(file) => Ok(Lease::new(file)),
        TryHold::Busy(holder) => Err(JournalError::RunBusy {
            run_id: files.run_id.clone(),
            holder_pid: holder.map(|h| h.pid),
        }),
    }
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
    let path = layout.target_lock(pipeline, target);
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).map_err(|source| JournalError::Io {
            action: "create",
            path: dir.to_path_buf(),
            source,
        })?;
    }
    match try_hold(&path, &Holder::this_process(Some(run_id)))? {
        TryHold::Held(file) => Ok(Lease::new(file)),
        TryHold::Busy(holder) => Err(JournalError::TargetBusy {
            pipeline: pipeline.to_owned(),
            target: target.to_owned(),
            holder_run: holder.as_ref().and_then(|h| h.run_id.clone()),
            holder_pid: holder.map(|h| h.pid),
        }),
    }
}

fn try_hold(path: &Path, holder: &Holder) -> Result<TryHold, JournalError> {
    lock_file::try_hold(path, holder).map_err(|source| JournalError::Io {
        action: "lock",
        path: path.to_path_buf(),
        source,
    })
}
