//! `SqliteQueue` against the queue conformance suite, and what only the SQLite queue can get
//! wrong: sharing its file with the journal.

use std::sync::Arc;

use super::*;
use crate::journal::{RunStore, SqliteRunStore};

mod conformance {
    use super::*;

    crate::daemon::queue::conformance::queue_conformance!(|| async {
        let dir = tempfile::tempdir().unwrap();
        let queue: Arc<dyn Queue> = Arc::new(SqliteQueue::new(dir.path().join("daemon.db")));
        (queue, dir)
    });
}

#[tokio::test]
async fn the_queue_and_the_journal_share_one_database_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("daemon.db");
    let store = SqliteRunStore::new(&path);
    assert!(store.list().await.unwrap().is_empty());
    let queue = SqliteQueue::new(&path);
    let id = queue
        .enqueue(crate::daemon::queue::conformance::new_run(
            "refs/heads/main",
            1,
        ))
        .await
        .unwrap();
    assert_eq!(queue.get(id).await.unwrap().state, QueueState::Queued);
    assert!(store.list().await.unwrap().is_empty());
    let version: i64 = rusqlite::Connection::open(&path)
        .unwrap()
        .query_row("PRAGMA user_version", [], |row| row.get(0))
        .unwrap();
    assert_eq!(version, 2);
}

#[tokio::test]
async fn a_damaged_state_is_reported_not_guessed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("daemon.db");
    let queue = SqliteQueue::new(&path);
    let id = queue
        .enqueue(crate::daemon::queue::conformance::new_run(
            "refs/heads/main",
            1,
        ))
        .await
        .unwrap();
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute("UPDATE queued_runs SET state = 'exploded'", [])
        .unwrap();
    let err = queue.get(id).await.unwrap_err();
    assert!(
        err.to_string().contains("unknown run state `exploded`"),
        "{err}"
    );
    assert!(queue.list(10).await.is_err());
}
