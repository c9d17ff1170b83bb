//! `PostgresRunStore` against the conformance suite, on a real server, and what only a
//! PostgreSQL store can get wrong.

use std::sync::Arc;

use super::test_database::TestDatabase;
use super::*;
use crate::journal::conformance::record;

mod conformance {
    use super::*;

    crate::journal::conformance::run_store_conformance!(|| {
        let database = TestDatabase::create_blocking();
        let store: Arc<dyn RunStore> =
            Arc::new(PostgresRunStore::new(database.url()).expect("the test URL is valid"));
        (store, database)
    });
}

const RUN: &str = "20260101-000000-00000000000000a1";
const OTHER_RUN: &str = "20260101-000000-00000000000000b2";

async fn store() -> (PostgresRunStore, TestDatabase) {
    let database = TestDatabase::create().await;
    let store = PostgresRunStore::new(database.url()).expect("the test URL is valid");
    (store, database)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_database_is_at_the_newest_schema_version() {
    let (store, database) = store().await;
    store.list().await.unwrap();
    let raw = database.raw().await;
    assert_eq!(
        schema::version(&raw).await.unwrap(),
        crate::journal::migrations::MIGRATIONS.len() as i64
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daemons_starting_at_once_migrate_once() {
    let database = TestDatabase::create().await;
    let stores: Vec<Arc<PostgresRunStore>> = (0..6)
        .map(|_| Arc::new(PostgresRunStore::new(database.url()).unwrap()))
        .collect();
    let start = Arc::new(tokio::sync::Barrier::new(stores.len()));
    let listings: Vec<_> = stores
        .iter()
        .map(|store| {
            let (store, start) = (store.clone(), start.clone());
            tokio::spawn(async move {
                start.wait().await;
                store.list().await.map(|listing| listing.len())
            })
        })
        .collect();
    for listing in listings {
        assert_eq!(listing.await.unwrap().unwrap(), 0);
    }
    let rows: i64 = database
        .raw()
        .await
        .query_one("SELECT count(*) FROM shipit_schema", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(rows, crate::journal::migrations::MIGRATIONS.len() as i64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_of_a_newer_shipit_is_refused() {
    let (store, database) = store().await;
    store.list().await.unwrap();
    database
        .raw()
        .await
        .execute("INSERT INTO shipit_schema (version) VALUES (999)", &[])
        .await
        .unwrap();
    let newer = PostgresRunStore::new(database.url()).unwrap();
    let err = newer.list().await.unwrap_err();
    assert!(
        err.to_string().contains("schema version 999 is newer"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listing_reads_the_summary_columns_and_no_record() {
    let (store, database) = store().await;
    let mut run = record(RUN, "shop");
    store.create(&mut run).await.unwrap();
    database
        .raw()
        .await
        .execute("UPDATE runs SET record = 'not json'", &[])
        .await
        .unwrap();
    let listing = store.list().await.unwrap();
    let [ListedRun::Readable(summary)] = listing.as_slice() else {
        panic!("{listing:?}");
    };
    assert_eq!(*summary, crate::journal::summary::RunSummary::of(&run));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_record_is_reported_and_never_saved_over() {
    let (store, database) = store().await;
    let mut run = record(RUN, "shop");
    store.create(&mut run).await.unwrap();
    let raw = database.raw().await;
    raw.execute("UPDATE runs SET record = substr(record, 1, 40)", &[])
        .await
        .unwrap();
    let err = store.load(RUN).await.unwrap_err();
    assert!(matches!(err, JournalError::Corrupt { .. }), "{err}");
    let err = store.save(&mut run).await.unwrap_err();
    assert!(matches!(err, JournalError::Corrupt { .. }), "{err}");
    assert_eq!(run.revision, 1);
    let row = raw
        .query_one("SELECT revision, length(record) FROM runs", &[])
        .await
        .unwrap();
    assert_eq!((row.get::<_, i64>(0), row.get::<_, i32>(1)), (1, 40));
    assert!(store.runs_of("shop").await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn holds_and_saves_are_shared_by_every_store_on_one_database() {
    let (first, database) = store().await;
    let second = PostgresRunStore::new(database.url()).unwrap();
    let mut run = record(RUN, "shop");
    first.create(&mut run).await.unwrap();

    let lease = first.lock_run(RUN).await.unwrap();
    let err = second.lock_run(RUN).await.unwrap_err();
    assert!(
        matches!(err, JournalError::RunBusy { holder_pid: Some(pid), .. } if pid == std::process::id()),
        "{err}"
    );
    drop(lease);
    // Another store does not wait for the first one's release: it retries, as callers do.
    let _held = eventually(|| second.lock_run(RUN)).await;

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hold_whose_session_dies_is_released() {
    let (store, database) = store().await;
    let lease = store.try_lock_target("shop", "web", RUN).await.unwrap();
    // The server ending the holder's session is what a crashed process looks like to it.
    let ended: i64 = database
        .raw()
        .await
        .query_one(
            "SELECT count(pg_terminate_backend(backend_pid)) FROM holds",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(ended, 1);
    let other = PostgresRunStore::new(database.url()).unwrap();
    let _taken = eventually(|| other.try_lock_target("shop", "web", OTHER_RUN)).await;
    drop(lease);
    let err = store.try_lock_target("shop", "web", RUN).await.unwrap_err();
    assert!(
        matches!(&err, JournalError::TargetBusy { holder_run: Some(run), .. } if run == OTHER_RUN),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_recorded_holder_of_a_session_that_ended_is_never_named() {
    let (store, database) = store().await;
    store.list().await.unwrap();
    let key = holds::lock_key(&["target", "shop", "web"]);
    let raw = database.raw().await;
    // A holder that died left its row; a new one has taken the lock and not yet written its.
    raw.execute(
        "INSERT INTO holds (lock_key, run_id, pid, backend_pid) VALUES ($1, $2, 4242, 2147483000)",
        &[&key, &OTHER_RUN],
    )
    .await
    .unwrap();
    let taken: bool = raw
        .query_one("SELECT pg_try_advisory_lock($1)", &[&key])
        .await
        .unwrap()
        .get(0);
    assert!(taken);
    let err = store.try_lock_target("shop", "web", RUN).await.unwrap_err();
    assert!(
        matches!(
            &err,
            JournalError::TargetBusy {
                holder_run: None,
                holder_pid: None,
                ..
            }
        ),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_that_goes_away_is_an_error_and_the_store_recovers() {
    let (store, database) = store().await;
    let mut run = record(RUN, "shop");
    store.create(&mut run).await.unwrap();
    let admin = database.admin().await;
    // Away: every session of the store ends and no new one is let in, as while the server
    // restarts; other tests' databases on the same server are not disturbed.
    database.go_away(&admin).await;
    let started = std::time::Instant::now();
    let err = store.load(RUN).await.unwrap_err();
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
    assert!(matches!(err, JournalError::Postgres { .. }), "{err}");
    // An outage, which a daemon's run waits out, not an answer.
    assert!(err.is_unavailable(), "{err}");
    assert!(!err.to_string().contains(password(&database)), "{err}");
    let err = store.lock_run(RUN).await.unwrap_err();
    assert!(matches!(err, JournalError::Postgres { .. }), "{err}");
    assert!(err.is_unavailable(), "{err}");
    // Back: the same store works again without being made anew.
    database.come_back(&admin).await;
    assert_eq!(store.load(RUN).await.unwrap(), run);
    store.save(&mut run).await.unwrap();
    let _held = store.lock_run(RUN).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_server_fails_promptly_without_showing_the_password() {
    // A port nothing listens on: bind one, note it, close it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let store = PostgresRunStore::new(&format!(
        "postgres://shipit:s3cret-pw@127.0.0.1:{port}/runs"
    ))
    .unwrap();
    let started = std::time::Instant::now();
    let err = store.list().await.unwrap_err();
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
    let message = err.to_string();
    assert!(matches!(err, JournalError::Postgres { .. }), "{message}");
    assert!(err.is_unavailable(), "{message}");
    assert!(!message.contains("s3cret-pw"), "{message}");
    assert!(
        message.contains(&format!("postgres://shipit@127.0.0.1:{port}/runs")),
        "{message}"
    );
}

fn password(database: &TestDatabase) -> &str {
    let url = database.url();
    let after_user = &url[url.find("://").map_or(0, |i| i + 3)..];
    after_user
        .split_once('@')
        .and_then(|(credentials, _)| credentials.split_once(':'))
        .map_or("", |(_, password)| password)
}

/// `attempt` until it succeeds, for at most five seconds: what a caller told "busy" does.
async fn eventually<F, Fut>(mut attempt: F) -> Lease
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Lease, JournalError>>,
{
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        match attempt().await {
            Ok(lease) => return lease,
            Err(err) if std::time::Instant::now() > deadline => panic!("still refused: {err}"),
            Err(_) => tokio::time::sleep(std::time::Duration::from_millis(50)).await,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_released_hold_leaves_no_holder_row_behind() {
    let (store, database) = store().await;
    let mut run = record(RUN, "shop");
    store.create(&mut run).await.unwrap();
    for _ in 0..3 {
        drop(store.lock_run(RUN).await.unwrap());
        drop(store.try_lock_target("shop", "web", RUN).await.unwrap());
    }
    let _held = store.lock_run(RUN).await.unwrap();
    // A release runs on a task of its own: give the last one a moment.
    let raw = database.raw().await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let rows: i64 = raw
            .query_one("SELECT count(*) FROM holds", &[])
            .await
            .unwrap()
            .get(0);
        if rows == 1 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{rows} holder rows");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}
