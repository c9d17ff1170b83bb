//! A small tmpfs for tests that fill a disk: the journal's and the run's disk-full tests.
//! Mounting needs root, which the tests have (in CI too); without it a test fails and says why.

use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::process::Command;

/// A tmpfs mounted on a temporary folder, unmounted when dropped.
pub(crate) struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    pub(crate) fn mount(size: &str) -> Self {
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

    pub(crate) fn path(&self) -> &Path {
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
pub(crate) fn fill(path: &Path) {
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
