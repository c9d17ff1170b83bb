//! The holds on runs and deploy targets as advisory `flock`s on files (`lock_file.rs`), for
//! every store that keeps its holds that way: the file store, and the SQLite store beside its
//! database. The operating system releases a lock when its file is closed or its process dies,
//! so a crashed run never leaves a hold behind. These functions block briefly (they never wait
//! for a lock); stores call them on the blocking pool.

use std::fs;
use std::path::{Path, PathBuf};

use super::error::JournalError;
use super::lock_file::{self, Holder, TryHold};
use super::run_store::Lease;

/// Holds run `run_id` through the lock file at `path`, with this process's pid inside;
/// `RunBusy` while another holder has it.
pub(crate) fn hold_run(path: &Path, run_id: &str) -> Result<Lease, JournalError> {
    create_parent(path)?;
    match try_hold(path, &Holder::this_process(None))? {
        TryHold::Held(file) => Ok(Lease::new(file)),
        TryHold::Busy(holder) => Err(JournalError::RunBusy {
            run_id: run_id.to_owned(),
            holder_pid: holder.map(|h| h.pid),
        }),
    }
}

/// Holds deploy target (`pipeline`, `target`) for `run_id` through its lock file under
/// `locks_dir` (see `target_lock_path`), with the run id and this process's pid inside;
/// `TargetBusy` while another holder has it. The caller has checked `run_id`.
pub(crate) fn hold_target(
    locks_dir: &Path,
    pipeline: &str,
    target: &str,
    run_id: &str,
) -> Result<Lease, JournalError> {
    let path = target_lock_path(locks_dir, pipeline, target);
    create_parent(&path)?;
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

/// `<locks_dir>/<pipeline>/<target>.lock`, with both names made safe as file names.
pub(crate) fn target_lock_path(locks_dir: &Path, pipeline: &str, target: &str) -> PathBuf {
    locks_dir
        .join(literal_file_name(pipeline))
        .join(format!("{}.lock", literal_file_name(target)))
}

fn create_parent(path: &Path) -> Result<(), JournalError> {
    let Some(dir) = path.parent() else {
        return Ok(());
    };
    fs::create_dir_all(dir).map_err(|source| JournalError::Io {
        action: "create",
        path: dir.to_path_buf(),
        source,
    })
}

fn try_hold(path: &Path, holder: &Holder) -> Result<TryHold, JournalError> {
    lock_file::try_hold(path, holder).map_err(|source| JournalError::Io {
        action: "lock",
        path: path.to_path_buf(),
        source,
    })
}

/// A file name that stands for `name` and for no other string: letters, digits, `-` and `_`
/// stay, as do dots after the first character; every other byte becomes `%XX`, and the empty
/// name becomes a lone `%` (every other `%` has two hex digits after it). So no name can climb
/// out of its folder, and two names never share a file.
fn literal_file_name(name: &str) -> String {
    if name.is_empty() {
        return "%".to_owned();
    }
    let mut file_name = String::with_capacity(name.len());
    for (index, byte) in name.bytes().enumerate() {
        let kept = byte.is_ascii_alphanumeric()
            || byte == b'-'
            || byte == b'_'
            || (byte == b'.' && index > 0);
        if kept {
            file_name.push(char::from(byte));
        } else {
            file_name.push_str(&format!("%{byte:02X}"));
        }
    }
    file_name
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn pipeline_file_names_are_kept_as_they_are() {
        for name in ["web", "shop-api", "a_b", "v1.2"] {
            assert_eq!(literal_file_name(name), name);
        }
    }

    #[test]
    fn other_names_cannot_climb_out_or_collide() {
        let names = [
            "", ".", "..", "../x", "a/b", "a%2Fb", "%", ".hidden", "ü", "a b",
        ];
        let file_names: Vec<String> = names.iter().map(|n| literal_file_name(n)).collect();
        for (name, file_name) in names.iter().zip(&file_names) {
            assert!(
                !file_name.is_empty() && !file_name.starts_with('.'),
                "{name:?} → {file_name}"
            );
            assert!(!file_name.contains('/'), "{name:?} → {file_name}");
        }
        let distinct: HashSet<&String> = file_names.iter().collect();
        assert_eq!(distinct.len(), names.len(), "{file_names:?}");
    }
}
