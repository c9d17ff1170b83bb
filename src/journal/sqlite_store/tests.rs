//! `SqliteRunStore` against the conformance suite, and what only a database store can get wrong.

use std::sync::Arc;

use crate::journal::conformance::record;

use super::*;

mod conformance {
    use super::*;

    crate::journal::conformance::run_store_conformance!(|| {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn RunStore> = Arc::new(SqliteRunStore::new(dir.path().join("runs.db")));
        (store, dir)
    });
}

const RUN: &str = "20260101-000000-00000000000000a1";

fn store() -> (SqliteRunStore, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    (SqliteRunStore::new(dir.path().join("runs.db")), dir)
}

/// A connection of the test's own, as another process would open the database.
fn raw(store: &SqliteRunStore) -> rusqlite::Connection {
    rusqlite::Connection::open(store.database()).unwrap()
}

#[tokio::test]
async fn a_new_database_is_in_wal_mode_at_the_newest_schema_version() {
    let (store, _dir) = store();
    store.list().await.unwrap();
    let db = raw(&store);
    let mode: String = db
        .query_row("PRAGMA journal_mode", [], |row| row.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    let version: i64 = db
        .query_row("PRAGMA user_version", [], |row| row.get(0))
        .unwrap();
    assert_eq!(version, crate::journal::migrations::MIGRATIONS.len() as i64);
}

#[tokio::test]
async fn listing_reads_the_summary_columns_and_no_record() {
    let (store, _dir) = store();
    let mut run = record(RUN, "shop");
    store.create(&mut run).await.unwrap();
    raw(&store)
        .execute("UPDATE runs SET record = 'not json'", [])
        .unwrap();
    let listing = store.list().await.unwrap();
    let [ListedRun::Readable(summary)] = listing.as_slice() else {
        panic!("{listing:?}");
    };
    assert_eq!(*summary, super::super::summary::RunSummary::of(&run));
}

#[tokio::test]
async fn a_damaged_record_is_reported_and_never_saved_over() {
    let (store, _dir) = store();
    let mut run = record(RUN, "shop");
    store.create(&mut run).await.unwrap();
    raw(&store)
        .execute("UPDATE runs SET record = substr(record, 1, 40)", [])
        .unwrap();
    let err = store.load(RUN).await.unwrap_err();
    assert!(matches!(err, JournalError::Corrupt { .. }), "{err}");
    let err = store.save(&mut run).await.unwrap_err();
    assert!(matches!(err, JournalError::Corrupt { .. }), "{err}");
    assert_eq!(run.revision, 1);
    let (revision, length): (i64, i64) = raw(&store)
        .query_row("SELECT revision, length(record) FROM runs", [], |row| {
            Ok((row.get(0)?, row.get(1)?))
        })
        .unwrap();
    assert_eq!((revision, length), (1, 40));
    assert!(store.runs_of("shop").await.unwrap().is_empty());
}

#[tokio::test]
async fn holds_and_saves_are_shared_by_every_store_on_one_database() {
    let (first, dir) = store();
    let second = SqliteRunStore::new(dir.path().join("runs.db"));
    let mut run = record(RUN, "shop");
    first.create(&mut run).await.unwrap();

    let lease = first.lock_run(RUN).await.unwrap();
    let err = second.lock_run(RUN).await.unwrap_err();
    assert!(
        matches!(err, JournalError::RunBusy { holder_pid: Some(pid), .. } if pid == std::process::id()),
        "{err}"
    );
    drop(lease);
    let _held = second.lock_run(RUN).await.unwrap();

    let _target = first.try_lock_target("shop", "web", RUN).await.unwrap();
    let err = second
        .try_lock_target("shop", "web", RUN)
        .await
        .unwrap_err();
    assert!(matches!(err, JournalError::TargetBusy { .. }), "{err}");

    let mut stale = run.clone();
    second.save(&mut run).await.unwrap();
    let err = first.save(&mut stale).await.unwrap_err();
    assert!(
        matches!(
            err,
            JournalError::Conflict {
                read: 1,
                stored: 2,
                ..
            }
        ),
        "{err}"
    );
}

#[tokio::test]
async fn a_database_at_version_1_keeps_its_runs_and_gains_the_newer_tables() {
    let (store, _dir) = store();
    let mut run = record(RUN, "shop");
    run.revision = 1;
    let encoded = crate::journal::encoded_record::EncodedRecord::at(&mut run, 1).unwrap();
    {
        // The database as a shipit of schema version 1 left it.
        let db = raw(&store);
        db.execute_batch(crate::journal::migrations::MIGRATIONS[0].sqlite)
            .unwrap();
        db.pragma_update(None, "user_version", 1).unwrap();
        db.execute(
            "INSERT INTO runs (run_id, revision, pipeline, status, started_at, finished_at,
                               git_sha, stages_done, stages_total, record)
             VALUES (?1, 1, ?2, ?3, ?4, NULL, ?5, ?6, ?7, ?8)",
            rusqlite::params![
                RUN,
                encoded.summary.pipeline,
                encoded.summary.status.as_str(),
                crate::journal::summary_columns::timestamp(&encoded.summary.started_at),
                encoded.summary.git_sha,
                encoded.summary.stages_done as i64,
                encoded.summary.stages_total as i64,
                encoded.journal,
            ],
        )
        .unwrap();
    }
    assert_eq!(store.load(RUN).await.unwrap(), run);
    let listing = store.list().await.unwrap();
    let [ListedRun::Readable(summary)] = listing.as_slice() else {
        panic!("{listing:?}");
    };
    assert_eq!(*summary, super::super::summary::RunSummary::of(&run));
    store.save(&mut run).await.unwrap();
    let db = raw(&store);
    let version: i64 = db
        .query_row("PRAGMA user_version", [], |row| row.get(0))
        .unwrap();
    assert_eq!(version, crate::journal::migrations::MIGRATIONS.len() as i64);
    let queued: i64 = db
        .query_row("SELECT count(*) FROM queued_runs", [], |row| row.get(0))
        .unwrap();
    assert_eq!(queued, 0);
}
