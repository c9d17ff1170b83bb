//! Saves on a full disk, on a real filesystem: a 256 KiB tmpfs mounted for the test. Mounting
//! needs root, which the tests have (in CI too); without it the test fails and says why.

use std::fs::{self, File};
use std::io::Write;
use std::path::Path;
use std::process::Command;

use super::*;
use crate::journal::conformance::record;
use crate::journal::record::RunStatus;

/// A tmpfs mounted on a temporary folder, unmounted when dropped.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .output();
        match mounted {
            Ok(output) if output.status.success() => Tmpfs { dir },
            Ok(output) => panic!(
                "this test fills a small tmpfs and needs root to mount one, but `mount -t tmpfs` failed ({}): {}",
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            ),
            Err(e) => panic!("this test fills a small tmpfs, but `mount` could not be run: {e}"),
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        match Command::new("umount").arg(self.dir.path()).output() {
            Ok(output) if output.status.success() => {}
            Ok(output) => eprintln!(
                "failed to unmount the test tmpfs at {}: {}",
                self.dir.path().display(),
                String::from_utf8_lossy(&output.stderr).trim()
            ),
            Err(e) => eprintln!("failed to run umount: {e}"),
        }
    }
}

/// Writes zeros to `path` until the filesystem has no room left.
fn fill(path: &Path) {
    let mut file = File::create(path).unwrap();
    let block = [0u8; 4096];
    // A bound in case the size limit is not applied: 256 KiB takes 64 blocks.
    for _ in 0..10_000 {
        match file.write(&block) {
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => return,
            Err(e) => panic!("failed to fill {}: {e}", path.display()),
        }
    }
    panic!("{} never filled up", path.display());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_save_on_a_full_disk_names_the_journal_keeps_it_and_succeeds_once_there_is_room() {
    let tmpfs = Tmpfs::mount("256k");
    let store = FsRunStore::new(tmpfs.path());
    let mut run = record("20260101-000000-00000000000000a1", "shop");
    store.create(&mut run).await.unwrap();
    let before = store.load(&run.run_id).await.unwrap();
    let filler = tmpfs.path().join("filler");
    fill(&filler);

    run.status = RunStatus::Succeeded;
    let err = store.save(&mut run).await.unwrap_err();
    let journal = tmpfs
        .path()
        .join("runs")
        .join(&run.run_id)
        .join("journal.json");
    match &err {
        JournalError::Io { path, source, .. } => {
            assert_eq!(*path, journal, "{err}");
            assert_eq!(source.raw_os_error(), Some(libc::ENOSPC), "{err}");
        }
        other => panic!("not an I/O error: {other}"),
    }
    let message = err.to_string();
    assert!(
        message.contains(&journal.display().to_string())
            && message.contains("No space left on device (os error 28)"),
        "{message}"
    );
    assert_eq!(
        run.revision, 1,
        "a failed save changed the caller's revision"
    );
    assert_eq!(store.load(&run.run_id).await.unwrap(), before);
    let mut left: Vec<String> = fs::read_dir(journal.parent().unwrap())
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(left, ["journal.json", "summary.json", "write.lock"]);

    // A new run cannot be created either, and leaves nothing that lists as a run.
    let mut second = record("20260101-000000-00000000000000a2", "shop");
    let err = store.create(&mut second).await.unwrap_err();
    assert!(
        matches!(&err, JournalError::Io { source, .. } if source.raw_os_error() == Some(libc::ENOSPC)),
        "{err}"
    );
    let listed: Vec<String> = store
        .list()
        .await
        .unwrap()
        .iter()
        .map(|listed| listed.run_id().to_owned())
        .collect();
    assert_eq!(listed, [run.run_id.clone()]);

    fs::remove_file(&filler).unwrap();
    store.save(&mut run).await.unwrap();
    assert_eq!(run.revision, 2);
    assert_eq!(store.load(&run.run_id).await.unwrap(), run);
}
