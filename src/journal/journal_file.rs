//! One run's journal file: reading it back with its checks, and replacing a file so that a
//! crash leaves either the old one or the new one. Both file stores use these.

use std::fs::{self, File};
use std::io::Write;
use std::path::Path;

use serde::Deserialize;
use serde::de::DeserializeOwned;

use super::error::JournalError;
use super::record::{JOURNAL_FORMAT, RunRecord};

/// The file a run's folder keeps its journal in.
pub(crate) const JOURNAL_FILE: &str = "journal.json";

/// The fields a save checks before replacing a journal; reading only these skips building the
/// stages, while serde_json still checks the whole text, so a damaged journal is still caught.
#[derive(Debug, Deserialize)]
pub(crate) struct JournalHead {
    pub format: u32,
    pub run_id: String,
    #[serde(default)]
    pub revision: u64,
}

/// The file's bytes, or `None` when there is no such file.
pub(crate) fn read_if_present(path: &Path) -> Result<Option<Vec<u8>>, JournalError> {
    match fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(JournalError::Io {
            action: "read",
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// The whole record in `bytes`, read from `path`, which must hold run `run_id`.
pub(crate) fn parse_record(
    path: &Path,
    run_id: &str,
    bytes: &[u8],
) -> Result<RunRecord, JournalError> {
    let record: RunRecord = parse(path, bytes)?;
    check(path, run_id, record.format, &record.run_id)?;
    Ok(record)
}

/// The head of the record in `bytes`, read from `path`, which must hold run `run_id`.
pub(crate) fn parse_head(
    path: &Path,
    run_id: &str,
    bytes: &[u8],
) -> Result<JournalHead, JournalError> {
    let head: JournalHead = parse(path, bytes)?;
    check(path, run_id, head.format, &head.run_id)?;
    Ok(head)
}

fn parse<T: DeserializeOwned>(path: &Path, bytes: &[u8]) -> Result<T, JournalError> {
    serde_json::from_slice(bytes).map_err(|e| JournalError::Corrupt {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

fn check(path: &Path, run_id: &str, format: u32, recorded_id: &str) -> Result<(), JournalError> {
    let corrupt = |message| JournalError::Corrupt {
        path: path.to_path_buf(),
        message,
    };
    if format != JOURNAL_FORMAT {
        return Err(corrupt(format!(
            "journal format {format} is not the format {JOURNAL_FORMAT} this shipit writes"
        )));
    }
    if recorded_id != run_id {
        return Err(corrupt(format!("it names run `{recorded_id}`")));
    }
    Ok(())
}

/// Whether a replaced file must survive a power cut once `replace_file` returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Durability {
    /// The file and the rename are synced to disk: for journals.
    Synced,
    /// Left to the page cache: for files that can be rebuilt from a journal.
    Unsynced,
}

/// Replaces `path` with `bytes`: a temporary file in the same folder is written (and synced,
/// when asked), then renamed over `path`, so a reader or a crash sees the old file or the new
/// one, never part of one. Any failure names `path` and leaves the old file as it was. Returns
/// the new file's metadata, taken from the temporary file before the rename, so that it
/// describes this write even if another writer replaces `path` right after.
pub(crate) fn replace_file(
    path: &Path,
    bytes: &[u8],
    durability: Durability,
) -> Result<fs::Metadata, JournalError> {
    let io = |action, source| JournalError::Io {
        action,
        path: path.to_path_buf(),
        source,
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut temp =
        tempfile::NamedTempFile::new_in(dir).map_err(|e| io("create a temporary file for", e))?;
    // Through the plain file: the temporary file's own `Write` adds its random name to the
    // error, where the file being replaced is the name that means something.
    temp.as_file_mut()
        .write_all(bytes)
        .map_err(|e| io("write", e))?;
    if durability == Durability::Synced {
        temp.as_file().sync_all().map_err(|e| io("sync", e))?;
    }
    let metadata = temp.as_file().metadata().map_err(|e| io("inspect", e))?;
    temp.persist(path).map_err(|e| io("replace", e.error))?;
    if durability == Durability::Synced {
        // Syncing the folder makes the rename itself survive a power cut. Its failure is not
        // reported: the new file is already in place, so failing now would leave the caller
        // believing the old file stands, and some filesystems refuse to sync folders at all.
        if let Ok(folder) = File::open(dir) {
            let _ = folder.sync_all();
        }
    }
    Ok(metadata)
}
