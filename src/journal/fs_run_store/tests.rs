//! `FsRunStore` against the conformance suite, and what only a file store can get wrong.

use std::fs;
use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::journal::conformance::record;
use crate::journal::lock_file;
use crate::journal::record::RunStatus;
use crate::journal::summary::RunSummary;

mod conformance {
    use super::*;

    crate::journal::conformance::run_store_conformance!(|| {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn RunStore> = Arc::new(FsRunStore::new(dir.path()));
        (store, dir)
    });
}

const RUN: &str = "20260101-000000-00000000000000a1";

fn journal_path(store: &FsRunStore, run_id: &str) -> PathBuf {
    store.layout.run(run_id).unwrap().journal
}

fn summary_path(store: &FsRunStore, run_id: &str) -> PathBuf {
    store.layout.run(run_id).unwrap().summary
}

#[tokio::test]
async fn a_truncated_journal_is_reported_as_damaged_and_left_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let store = FsRunStore::new(dir.path());
    let mut damaged = record(RUN, "shop");
    store.create(&mut damaged).await.unwrap();
    let mut intact = record("20260101-000000-00000000000000a2", "shop");
    store.create(&mut intact).await.unwrap();
    let path = journal_path(&store, RUN);
    let text = fs::read(&path).unwrap();
    let truncated = &text[..text.len() / 2];
    fs::write(&path, truncated).unwrap();

    let err = store.load(RUN).await.unwrap_err();
    assert!(
        matches!(&err, JournalError::Corrupt { path: p, .. } if *p == path),
        "{err}"
    );
    let listing = store.list().await.unwrap();
    assert!(
        matches!(&listing[0], ListedRun::Unreadable { run_id, error: JournalError::Corrupt { .. } } if run_id == RUN),
        "{listing:?}"
    );
    assert!(matches!(listing[1], ListedRun::Readable(_)), "{listing:?}");
    let err = store.save(&mut damaged).await.unwrap_err();
    assert!(matches!(err, JournalError::Corrupt { .. }), "{err}");
    let runs: Vec<String> = store
        .runs_of("shop")
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.run_id)
        .collect();
    assert_eq!(runs, [intact.run_id.clone()]);
    assert_eq!(fs::read(&path).unwrap(), truncated);
}

#[tokio::test]
async fn a_journal_from_before_revisions_and_summaries_loads_lists_and_saves() {
    let dir = tempfile::tempdir().unwrap();
    let store = FsRunStore::new(dir.path());
    // What the previous version wrote: no `revision`, no summary.json, a 16-bit id suffix.
    let old_id = "20251231-235959-abcd";
    let mut old = serde_json::to_value(record(old_id, "shop")).unwrap();
    old.as_object_mut().unwrap().remove("revision");
    let path = journal_path(&store, old_id);
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(&path, serde_json::to_vec_pretty(&old).unwrap()).unwrap();

    let mut loaded = store.load(old_id).await.unwrap();
    assert_eq!(loaded.revision, 0);
    let listing = store.list().await.unwrap();
    let [ListedRun::Readable(summary)] = listing.as_slice() else {
        panic!("{listing:?}");
    };
    assert_eq!(*summary, RunSummary::of(&loaded));
    assert_eq!(store.runs_of("shop").await.unwrap(), [loaded.clone()]);

    loaded.status = RunStatus::Succeeded;
    store.save(&mut loaded).await.unwrap();
    assert_eq!(loaded.revision, 1);
    assert!(summary_path(&store, old_id).is_file());
    assert_eq!(store.load(old_id).await.unwrap(), loaded);
}

#[tokio::test]
async fn listing_reads_the_summary_while_it_describes_the_journal() {
    let dir = tempfile::tempdir().unwrap();
    let store = FsRunStore::new(dir.path());
    let mut run = record(RUN, "shop");
    store.create(&mut run).await.unwrap();
    // The summary is rewritten with every save, describing the journal that save wrote.
    run.status = RunStatus::Failed;
    store.save(&mut run).await.unwrap();
    // Change only the summary: a listing that shows the change read the summary, not the
    // journal.
    let path = summary_path(&store, RUN);
    let mut summary: serde_json::Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
    summary["summary"]["pipeline"] = "from-the-summary".into();
    fs::write(&path, serde_json::to_vec(&summary).unwrap()).unwrap();

    let listing = store.list().await.unwrap();
    let [ListedRun::Readable(listed)] = listing.as_slice() else {
        panic!("{listing:?}");
    };
    assert_eq!(
        (listed.pipeline.as_str(), listed.status, listed.revision),
        ("from-the-summary", RunStatus::Failed, 2)
    );
}

#[tokio::test]
async fn a_summary_of_an_earlier_journal_is_not_trusted() {
    let dir = tempfile::tempdir().unwrap();
    let store = FsRunStore::new(dir.path());
    let mut run = record(RUN, "shop");
    store.create(&mut run).await.unwrap();
    // The journal is replaced without its summary: by an earlier shipit, or a save that
    // stopped between the two files.
    run.status = RunStatus::Succeeded;
    run.stages[0].status = crate::journal::record::StageStatus::Succeeded;
    let journal = dir.path().join("runs").join(RUN).join("journal.json");
    std::fs::write(&journal, serde_json::to_vec_pretty(&run).unwrap()).unwrap();

    let listing = store.list().await.unwrap();
    let [ListedRun::Readable(listed)] = listing.as_slice() else {
        panic!("{listing:?}");
    };
    assert_eq!(*listed, RunSummary::of(&run));
    assert_eq!(
        (listed.status, listed.stages_done),
        (RunStatus::Succeeded, 1)
    );
}

#[test]
fn a_save_waiting_for_the_write_lock_leaves_the_async_worker_free() {
    let dir = tempfile::tempdir().unwrap();
    // One worker thread: a save that waited for the lock on it would stop every other task.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let store = Arc::new(FsRunStore::new(dir.path()));
    let mut run = record(RUN, "shop");
    runtime.block_on(store.create(&mut run)).unwrap();

    // Another writer (a thread, standing in for another process) holds the run's write lock
    // until it is told to let go, or for 30 seconds at most.
    let held = lock_file::wait_for(&store.layout.run(RUN).unwrap().write_lock).unwrap();
    let (release, released) = std::sync::mpsc::channel::<()>();
    let other_writer = std::thread::spawn(move || {
        let _ = released.recv_timeout(Duration::from_secs(30));
        drop(held);
    });
    runtime.block_on(async {
        let saving = tokio::spawn({
            let store = store.clone();
            let mut run = run.clone();
            async move { store.save(&mut run).await.map(|()| run) }
        });
        // Let the save start and reach the lock; this task only runs again if the save does
        // not hold the worker.
        for _ in 0..100 {
            tokio::task::yield_now().await;
        }
        assert!(
            !saving.is_finished(),
            "the save finished while the lock was held: it waited on the async worker"
        );
        release.send(()).unwrap();
        let saved = saving.await.unwrap().unwrap();
        assert_eq!(saved.revision, 2);
    });
    other_writer.join().unwrap();
}
