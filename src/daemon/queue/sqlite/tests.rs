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

/// Holds the database's write lock from another connection, as another daemon's write would,
/// so that the accepts started meanwhile pile up behind the first one's transaction.
fn hold_the_write_lock(path: &std::path::Path) -> rusqlite::Connection {
    let blocker = rusqlite::Connection::open(path).unwrap();
    blocker.execute_batch("BEGIN IMMEDIATE").unwrap();
    blocker
}

fn push_to_main(id: &str, n: u8) -> (NewDelivery, Vec<NewRun>) {
    use crate::daemon::queue::conformance::{delivery, new_run};
    (delivery(id), vec![new_run("refs/heads/main", n)])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_accepts_share_one_transaction_and_each_gets_its_own_answer() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("daemon.db");
    let queue = Arc::new(SqliteQueue::new(&path));
    let (delivery, runs) = push_to_main("seen-before", 0);
    let older = match queue.accept(delivery, runs).await.unwrap() {
        Accepted::Recorded { runs } => runs[0],
        Accepted::Duplicate => panic!("a first delivery taken for a duplicate"),
    };
    let commits_before = queue.accepts.commits();

    let blocker = hold_the_write_lock(&path);
    // 30 new ids, 10 of them delivered twice, and one the table already holds.
    let mut ids: Vec<String> = (0..30).map(|n| format!("d{n}")).collect();
    ids.extend((0..10).map(|n| format!("d{n}")));
    ids.push("seen-before".to_owned());
    let calls: Vec<_> = ids
        .iter()
        .enumerate()
        .map(|(n, id)| {
            let (queue, id) = (queue.clone(), id.clone());
            tokio::spawn(async move {
                let (delivery, runs) = push_to_main(&id, u8::try_from(n).unwrap() + 1);
                (n, id, queue.accept(delivery, runs).await.unwrap())
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    blocker.execute_batch("COMMIT").unwrap();
    let mut answers = Vec::new();
    for call in calls {
        answers.push(call.await.unwrap());
    }

    // At most the first arrival's transaction, then one for everything that waited behind it.
    let commits = queue.accepts.commits() - commits_before;
    assert!(
        commits <= 2,
        "{commits} transactions for {} accepts",
        ids.len()
    );
    let mut recorded = std::collections::BTreeMap::new();
    // Which call of a repeated id is recorded depends on which reached the queue first (the
    // spawned calls race), so each recorded answer is checked against its own call.
    let mut recording_call = std::collections::BTreeMap::new();
    for (n, id, answer) in &answers {
        match answer {
            Accepted::Recorded { runs } => {
                assert_eq!(runs.len(), 1);
                assert!(
                    recorded.insert(id.clone(), runs[0]).is_none(),
                    "{id} recorded twice"
                );
                recording_call.insert(id.clone(), *n);
            }
            Accepted::Duplicate => {}
        }
    }
    let expected: std::collections::BTreeSet<String> = (0..30).map(|n| format!("d{n}")).collect();
    assert_eq!(
        recorded
            .keys()
            .cloned()
            .collect::<std::collections::BTreeSet<_>>(),
        expected,
        "each new id recorded once, every repeat and the old id a duplicate"
    );
    // Each caller's answer names its own run: the run holds the caller's delivery's commit.
    for (id, run) in &recorded {
        let n = recording_call[id];
        assert_eq!(
            queue.get(*run).await.unwrap().run.sha,
            crate::daemon::queue::conformance::sha(u8::try_from(n).unwrap() + 1)
        );
    }
    // All on one branch: the last run queued supersedes every other, the older one included.
    let newest = *recorded.values().max().unwrap();
    assert_eq!(queue.get(newest).await.unwrap().state, QueueState::Queued);
    for run in recorded
        .values()
        .filter(|run| **run != newest)
        .chain([&older])
    {
        let stored = queue.get(*run).await.unwrap();
        assert_eq!(stored.state, QueueState::Superseded, "run {run}");
    }
    let stored: i64 = rusqlite::Connection::open(&path)
        .unwrap()
        .query_row("SELECT COUNT(*) FROM deliveries", [], |row| row.get(0))
        .unwrap();
    assert_eq!(stored, 31);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_batch_fails_only_the_deliveries_that_were_not_written() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("daemon.db");
    let queue = Arc::new(SqliteQueue::new(&path));
    queue.ping().await.unwrap();
    let refused = crate::daemon::queue::conformance::sha(66);
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute_batch(&format!(
            "CREATE TRIGGER refuse BEFORE INSERT ON queued_runs WHEN NEW.sha = '{refused}'
             BEGIN SELECT RAISE(ABORT, 'refused for the test'); END;"
        ))
        .unwrap();

    let blocker = hold_the_write_lock(&path);
    let calls: Vec<_> = [("good-1", 1), ("bad", 66), ("good-2", 2), ("good-3", 3)]
        .into_iter()
        .map(|(id, n)| {
            let queue = queue.clone();
            tokio::spawn(async move {
                let (delivery, runs) = push_to_main(id, n);
                (id, queue.accept(delivery, runs).await)
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    blocker.execute_batch("COMMIT").unwrap();
    for call in calls {
        let (id, answer) = call.await.unwrap();
        match (id, answer) {
            ("bad", Err(err)) => assert!(err.to_string().contains("refused for the test"), "{err}"),
            ("bad", Ok(answer)) => panic!("a delivery that was not written answered {answer:?}"),
            (_, answer) => assert!(
                matches!(answer, Ok(Accepted::Recorded { .. })),
                "{id}: {answer:?}"
            ),
        }
    }
    let db = rusqlite::Connection::open(&path).unwrap();
    let mut stored: Vec<String> = db
        .prepare("SELECT delivery_id FROM deliveries ORDER BY delivery_id")
        .unwrap()
        .query_map([], |row| row.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    stored.sort();
    assert_eq!(stored, ["good-1", "good-2", "good-3"]);
    // Not on disk, so its redelivery is recorded, not taken for a duplicate.
    db.execute_batch("DROP TRIGGER refuse").unwrap();
    let (delivery, runs) = push_to_main("bad", 66);
    assert!(matches!(
        queue.accept(delivery, runs).await.unwrap(),
        Accepted::Recorded { .. }
    ));
}
