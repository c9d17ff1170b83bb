//! Advisory `flock` locks on files: the operating system releases them when the file is closed
//! or its process dies, so a crashed run never leaves a hold behind.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::path::Path;

use serde::{Deserialize, Serialize};

/// Who holds a lock, written into its file so that a refused caller can say whom it waits for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Holder {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
    pub pid: u32,
}

impl Holder {
    /// This process, holding on behalf of `run_id` when given.
    pub fn this_process(run_id: Option<&str>) -> Self {
        Holder {
            run_id: run_id.map(str::to_owned),
            pid: std::process::id(),
        }
    }
}

/// The outcome of `try_hold`.
pub(crate) enum TryHold {
    /// The lock is ours while the file stays open.
    Held(File),
    /// Someone else holds it; who, when their file says so yet.
    Busy(Option<Holder>),
}

/// Opens (creating it if missing) the lock file at `path`. The file is never removed: removing
/// a lock file lets a waiter lock the removed file while a newcomer locks a new one.
fn open(path: &Path) -> std::io::Result<File> {
    OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(path)
}

/// Waits until the lock at `path` is ours. For the write lock, which writers hold for the time
/// of one write only; callers run this on the blocking pool.
pub(crate) fn wait_for(path: &Path) -> std::io::Result<File> {
    let file = open(path)?;
    fs4::fs_std::FileExt::lock_exclusive(&file)?;
    Ok(file)
}

/// Takes the lock at `path` without waiting and writes `holder` into its file.
pub(crate) fn try_hold(path: &Path, holder: &Holder) -> std::io::Result<TryHold> {
    let mut file = open(path)?;
    if !fs4::fs_std::FileExt::try_lock_exclusive(&file)? {
        return Ok(TryHold::Busy(read_holder(&mut file)));
    }
    // The holder's name is only a hint for refused callers, so failing to write it (a full
    // disk) does not give up a hold that was granted.
    let _ = write_holder(&mut file, holder);
    Ok(TryHold::Held(file))
}

fn write_holder(file: &mut File, holder: &Holder) -> std::io::Result<()> {
    let text = serde_json::to_vec(holder).map_err(std::io::Error::other)?;
    file.set_len(0)?;
    file.rewind()?;
    file.write_all(&text)
}

fn read_holder(file: &mut File) -> Option<Holder> {
    let mut text = String::new();
    file.read_to_string(&mut text).ok()?;
    serde_json::from_str(&text).ok()
}
