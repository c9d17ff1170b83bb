//! Creating and saving journals: the revision check and the write, under the run's write lock
//! so that the check holds across processes. These functions block; the store calls them on
//! the blocking pool.

use std::fs;

use crate::journal::encoded_record::EncodedRecord;
use crate::journal::error::JournalError;
use crate::journal::journal_file::{Durability, parse_head, read_if_present, replace_file};

use super::layout::{Layout, RunFiles};
use super::summary_file;
use crate::journal::lock_file;

/// Writes a new run's journal; `RunExists` if the run already has one.
pub(super) fn create(
    layout: &Layout,
    files: &RunFiles,
    run: EncodedRecord,
) -> Result<(), JournalError> {
    let runs_dir = layout.runs_dir();
    fs::create_dir_all(&runs_dir).map_err(|source| JournalError::Io {
        action: "create",
        path: runs_dir,
        source,
    })?;
    // A folder without a journal is left by a create that stopped before its write: it is
    // not a run yet, so it is used rather than refused.
    match fs::create_dir(&files.dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(source) => {
            return Err(JournalError::Io {
                action: "create",
                path: files.dir.clone(),
                source,
            });
        }
    }
    let _write_lock = lock_for_writing(files)?;
    let taken = files
        .journal
        .try_exists()
        .map_err(|source| JournalError::Io {
            action: "inspect",
            path: files.journal.clone(),
            source,
        })?;
    if taken {
        return Err(JournalError::RunExists {
            run_id: files.run_id.clone(),
        });
    }
    write(files, run)
}

/// Replaces the journal if its stored revision is still `read`; `Conflict` otherwise.
pub(super) fn save(
    layout: &Layout,
    files: &RunFiles,
    read: u64,
    run: EncodedRecord,
) -> Result<(), JournalError> {
    let _write_lock = lock_for_writing(files).map_err(|e| match e {
        JournalError::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
            layout.unknown_run(&files.run_id)
        }
        e => e,
    })?;
    let bytes =
        read_if_present(&files.journal)?.ok_or_else(|| layout.unknown_run(&files.run_id))?;
    // A damaged journal fails here, so it is reported and never overwritten.
    let stored = parse_head(&files.journal, &files.run_id, &bytes)?.revision;
    if stored != read {
        return Err(JournalError::Conflict {
            run_id: files.run_id.clone(),
            read,
            stored,
        });
    }
    write(files, run)
}

/// The run's write lock, held until the returned file is dropped.
fn lock_for_writing(files: &RunFiles) -> Result<fs::File, JournalError> {
    lock_file::wait_for(&files.write_lock).map_err(|source| JournalError::Io {
        action: "lock",
        path: files.write_lock.clone(),
        source,
    })
}

/// The journal first, then its summary: a summary never describes a journal not yet written.
fn write(files: &RunFiles, run: EncodedRecord) -> Result<(), JournalError> {
    let journal = replace_file(&files.journal, run.journal.as_bytes(), Durability::Synced)?;
    summary_file::write(&files.summary, run.summary, &journal);
    Ok(())
}
