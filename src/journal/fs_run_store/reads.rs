//! Loading and listing runs. These functions block; the store calls them on the blocking pool.

use std::fs;

use crate::journal::error::JournalError;
use crate::journal::journal_file::{JOURNAL_FILE, parse_record, read_if_present};
use crate::journal::record::RunRecord;
use crate::journal::run_store::newest_first;
use crate::journal::summary::{ListedRun, RunSummary};

use super::layout::{Layout, RunFiles};
use super::summary_file;

pub(super) fn load(layout: &Layout, files: &RunFiles) -> Result<RunRecord, JournalError> {
    let bytes =
        read_if_present(&files.journal)?.ok_or_else(|| layout.unknown_run(&files.run_id))?;
    parse_record(&files.journal, &files.run_id, &bytes)
}

/// Every run in id order, from its summary when that is current, from its journal otherwise.
pub(super) fn list(layout: &Layout) -> Result<Vec<ListedRun>, JournalError> {
    Ok(run_ids(layout)?
        .into_iter()
        .map(|run_id| match summarise(layout, &run_id) {
            Ok(summary) => ListedRun::Readable(summary),
            Err(error) => ListedRun::Unreadable { run_id, error },
        })
        .collect())
}

/// The readable records of `pipeline`'s runs, newest first; summaries pick them out, so only
/// the pipeline's own journals are read.
pub(super) fn runs_of(layout: &Layout, pipeline: &str) -> Result<Vec<RunRecord>, JournalError> {
    let mut runs: Vec<RunRecord> = list(layout)?
        .into_iter()
        .rev()
        .filter_map(|listed| match listed {
            ListedRun::Readable(summary) if summary.pipeline == pipeline => {
                let files = layout.run(&summary.run_id).ok()?;
                load(layout, &files).ok()
            }
            _ => None,
        })
        .collect();
    newest_first(&mut runs);
    Ok(runs)
}

fn summarise(layout: &Layout, run_id: &str) -> Result<RunSummary, JournalError> {
    let files = layout.run(run_id)?;
    if let Some(summary) = summary_file::read_current(&files.summary, &files.journal)
        && summary.run_id == run_id
    {
        return Ok(summary);
    }
    load(layout, &files).map(|record| RunSummary::of(&record))
}

/// The names of the folders under `runs/` that hold a journal, sorted. A folder without one is
/// not a run (yet): a create in progress, or one that stopped before writing.
fn run_ids(layout: &Layout) -> Result<Vec<String>, JournalError> {
    let dir = layout.runs_dir();
    let entries = match fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(JournalError::Io {
                action: "list",
                path: dir,
                source,
            });
        }
    };
    let mut ids: Vec<String> = entries
        .filter_map(|entry| entry.ok())
        .filter(|entry| entry.path().join(JOURNAL_FILE).is_file())
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .collect();
    // Run ids start with their UTC start time, so name order is time order.
    ids.sort();
    Ok(ids)
}
