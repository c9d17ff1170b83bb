//! Saves on a full disk, on a real filesystem: a 256 KiB tmpfs mounted for the test. Mounting
//! needs root, which the tests have (in CI too); without it the test fails and says why.

use std::fs;

use super::*;
use crate::journal::conformance::record;
use crate::journal::record::RunStatus;
use crate::test_support::tmpfs::{Tmpfs, fill};

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
