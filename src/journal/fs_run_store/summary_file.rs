//! `summary.json`: a run's summary kept beside its journal, so that listing runs reads a few
//! hundred bytes per run instead of every journal.
//!
//! A summary says which journal file it was taken from (inode, length, modification time). It
//! is trusted only while the journal is still that file: a journal written by an earlier
//! shipit, or by a save that stopped between the journal and its summary, has no summary or
//! one that names another file, and is summarised from the journal.
//! That check is also why the summary is not synced to disk: one lost in a crash is rebuilt.

use std::fs::Metadata;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::journal::journal_file::{Durability, read_if_present, replace_file};
use crate::journal::summary::RunSummary;

#[derive(Debug, Serialize, Deserialize)]
struct SummaryFile {
    journal: JournalStamp,
    summary: RunSummary,
}

/// Which journal file a summary was taken from. Each save renames a new file over the journal,
/// so a new journal has a new inode while the old file is still open or just freed; length and
/// modification time guard against the rare reuse of an inode number.
#[derive(Debug, PartialEq, Eq, Serialize, Deserialize)]
struct JournalStamp {
    inode: u64,
    len: u64,
    modified_s: i64,
    modified_ns: i64,
}

impl JournalStamp {
    fn of(metadata: &Metadata) -> Self {
        JournalStamp {
            inode: metadata.ino(),
            len: metadata.len(),
            modified_s: metadata.mtime(),
            modified_ns: metadata.mtime_nsec(),
        }
    }
}

/// Writes the summary of the journal whose metadata is `journal`. A failure is not reported:
/// the journal is already saved, and a missing or outdated summary is rebuilt from it.
pub(super) fn write(path: &Path, summary: RunSummary, journal: &Metadata) {
    let file = SummaryFile {
        journal: JournalStamp::of(journal),
        summary,
    };
    if let Ok(bytes) = serde_json::to_vec_pretty(&file) {
        let _ = replace_file(path, &bytes, Durability::Unsynced);
    }
}

/// The summary at `path` if it was taken from the journal now at `journal_path`; `None` when it
/// is missing, damaged or was taken from another journal file.
pub(super) fn read_current(path: &Path, journal_path: &Path) -> Option<RunSummary> {
    let bytes = read_if_present(path).ok()??;
    let file: SummaryFile = serde_json::from_slice(&bytes).ok()?;
    let journal = std::fs::metadata(journal_path).ok()?;
    (file.journal == JournalStamp::of(&journal)).then_some(file.summary)
}
