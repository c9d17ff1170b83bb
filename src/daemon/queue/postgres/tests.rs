//! `PostgresQueue` on a real server (the test environment's), each test in a database of its
//! own.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use super::*;
use crate::journal::postgres_store::test_database::TestDatabase;

const LEASE: Duration = Duration::from_secs(60);

async fn queue() -> (PostgresQueue, TestDatabase) {
    let database = TestDatabase::create().await;
    let queue = PostgresQueue::new(database.url()).expect("the test URL is valid");
    (queue, database)
}

fn run(repository: &str, git_ref: &str) -> NewRun {
    NewRun {
        repository: repository.to_owned(),
        git_ref: git_ref.to_owned(),
        sha: "0123456789abcdef0123456789abcdef01234567".to_owned(),
        pipeline_file: "shipit.yaml".to_owned(),
        environment: None,
        trigger: Trigger::Api {
            token: "abc123".to_owned(),
        },
    }
}

fn delivery(id: &str) -> NewDelivery {
    NewDelivery {
        source: HookSource::Github,
        delivery_id: id.to_owned(),
        event: "push".to_owned(),
        repository: Some("acme/shop".to_owned()),
        git_ref: Some("refs/heads/main".to_owned()),
        sha: Some("0123456789abcdef0123456789abcdef01234567".to_owned()),
        ignored_because: None,
        received_at: Utc::now(),
    }
}

fn ended(state: QueueState) -> Finished {
    Finished {
        state,
        exit_code: Some(0),
        message: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redelivered_delivery_is_a_duplicate_and_records_nothing() {
    let (queue, _database) = queue().await;
    let mut webhook = run("acme/shop", "refs/heads/main");
    webhook.trigger = Trigger::Webhook {
        delivery_id: "d-1".to_owned(),
    };
    let first = queue
        .accept(delivery("d-1"), vec![webhook.clone()])
        .await
        .unwrap();
    let Accepted::Recorded { runs } = first else {
        panic!("{first:?}");
    };
    assert_eq!(runs.len(), 1);
    let again = queue
        .accept(delivery("d-1"), vec![webhook.clone()])
        .await
        .unwrap();
    assert_eq!(again, Accepted::Duplicate);
    let listed = queue.list(10).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].run, webhook);
    assert_eq!(listed[0].state, QueueState::Queued);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_redeliveries_record_the_delivery_once() {
    let (queue, _database) = queue().await;
    let queue = Arc::new(queue);
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let queue = queue.clone();
            tokio::spawn(async move {
                queue
                    .accept(
                        delivery("d-race"),
                        vec![run("acme/shop", "refs/heads/main")],
                    )
                    .await
            })
        })
        .collect();
    let mut recorded = 0;
    for task in tasks {
        if let Accepted::Recorded { .. } = task.await.unwrap().unwrap() {
            recorded += 1;
        }
    }
    assert_eq!(recorded, 1);
    assert_eq!(queue.list(100).await.unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_newer_push_supersedes_queued_runs_and_asks_running_ones_to_cancel() {
    let (queue, _database) = queue().await;
    let running = queue
        .enqueue(run("acme/shop", "refs/heads/main"))
        .await
        .unwrap();
    let claimed = queue.claim("daemon-a", LEASE).await.unwrap().unwrap();
    assert_eq!(claimed.id, running);
    let waiting = queue
        .enqueue(run("acme/shop", "refs/heads/main"))
        .await
        .unwrap();
    let other_ref = queue
        .enqueue(run("acme/shop", "refs/heads/dev"))
        .await
        .unwrap();
    let newest = queue
        .enqueue(run("acme/shop", "refs/heads/main"))
        .await
        .unwrap();

    assert_eq!(
        queue.get(waiting).await.unwrap().state,
        QueueState::Superseded
    );
    assert_eq!(
        queue.get(other_ref).await.unwrap().state,
        QueueState::Queued
    );
    assert_eq!(queue.get(newest).await.unwrap().state, QueueState::Queued);
    let still_running = queue.get(running).await.unwrap();
    assert_eq!(still_running.state, QueueState::Running);
    assert!(still_running.cancel_requested);
    assert_eq!(
        queue
            .heartbeat("daemon-a", &[running], LEASE)
            .await
            .unwrap(),
        [running]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claim_takes_the_oldest_run_whose_key_is_not_running() {
    let (queue, _database) = queue().await;
    let main_1 = queue
        .enqueue(run("acme/shop", "refs/heads/main"))
        .await
        .unwrap();
    // Queued together by one delivery, so neither supersedes the other.
    let Accepted::Recorded { runs } = queue
        .accept(
            delivery("d-2"),
            vec![
                run("acme/blog", "refs/heads/main"),
                run("acme/blog", "refs/heads/main"),
            ],
        )
        .await
        .unwrap()
    else {
        panic!("not recorded");
    };
    let first = queue.claim("daemon-a", LEASE).await.unwrap().unwrap();
    assert_eq!(first.id, main_1);
    assert_eq!(first.state, QueueState::Running);
    assert_eq!(first.claimed_by.as_deref(), Some("daemon-a"));
    assert!(first.lease_until.is_some() && first.started_at.is_some());
    let second = queue.claim("daemon-b", LEASE).await.unwrap().unwrap();
    assert_eq!(second.id, runs[0]);
    // blog's other run waits for the running one of its key.
    assert!(queue.claim("daemon-b", LEASE).await.unwrap().is_none());
    queue
        .finish("daemon-b", runs[0], ended(QueueState::Succeeded))
        .await
        .unwrap();
    let third = queue.claim("daemon-b", LEASE).await.unwrap().unwrap();
    assert_eq!(third.id, runs[1]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_whose_lease_ran_out_is_reclaimed_with_its_journal_run_id() {
    let (queue, _database) = queue().await;
    let id = queue
        .enqueue(run("acme/shop", "refs/heads/main"))
        .await
        .unwrap();
    queue
        .claim("daemon-a", Duration::from_millis(200))
        .await
        .unwrap()
        .unwrap();
    queue
        .set_run_id("daemon-a", id, "20260101-000000-00000000000000a1")
        .await
        .unwrap();
    assert!(queue.claim("daemon-b", LEASE).await.unwrap().is_none());
    tokio::time::sleep(Duration::from_millis(400)).await;
    let reclaimed = queue.claim("daemon-b", LEASE).await.unwrap().unwrap();
    assert_eq!(reclaimed.id, id);
    assert_eq!(reclaimed.claimed_by.as_deref(), Some("daemon-b"));
    assert_eq!(
        reclaimed.run_id.as_deref(),
        Some("20260101-000000-00000000000000a1")
    );
    // The daemon that lost the lease can no longer end or renew the run.
    let err = queue
        .finish("daemon-a", id, ended(QueueState::Failed))
        .await
        .unwrap_err();
    assert!(
        matches!(err, QueueError::LeaseLost { id: lost } if lost == id),
        "{err}"
    );
    assert!(
        queue
            .heartbeat("daemon-a", &[id], LEASE)
            .await
            .unwrap()
            .is_empty()
    );
    queue
        .finish("daemon-b", id, ended(QueueState::Succeeded))
        .await
        .unwrap();
    let done = queue.get(id).await.unwrap();
    assert_eq!(done.state, QueueState::Succeeded);
    assert!(done.finished_at.is_some());
    let err = queue
        .finish("daemon-b", 9999, ended(QueueState::Failed))
        .await
        .unwrap_err();
    assert!(matches!(err, QueueError::UnknownRun { id: 9999 }), "{err}");
}

/// Claims until nothing is left, with four claimers on each of `queues`, finishing each run
/// at once; fails if two runs of one key ever run at once. Returns how often each run was
/// claimed.
async fn claim_everything(queues: &[Arc<PostgresQueue>; 2]) -> HashMap<QueueId, usize> {
    let claims: Arc<Mutex<HashMap<QueueId, usize>>> = Arc::default();
    let running_keys: Arc<Mutex<HashSet<String>>> = Arc::default();
    let claimers: Vec<_> = (0..8)
        .map(|n| {
            let queue = queues[n % 2].clone();
            let (claims, running_keys) = (claims.clone(), running_keys.clone());
            tokio::spawn(async move {
                let daemon = format!("daemon-{}", n % 2);
                let mut idle = 0;
                while idle < 10 {
                    let Some(claimed) = queue.claim(&daemon, LEASE).await.unwrap() else {
                        idle += 1;
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        continue;
                    };
                    idle = 0;
                    let key = claimed.run.repository.clone();
                    assert!(
                        running_keys.lock().unwrap().insert(key.clone()),
                        "two runs of {key} running at once"
                    );
                    *claims.lock().unwrap().entry(claimed.id).or_default() += 1;
                    tokio::task::yield_now().await;
                    running_keys.lock().unwrap().remove(&key);
                    queue
                        .finish(&daemon, claimed.id, ended(QueueState::Succeeded))
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    for claimer in claimers {
        claimer.await.unwrap();
    }
    claims.lock().unwrap().clone()
}

/// Two queues, two pools: as two daemons on two machines would have.
fn two_daemons(database: &TestDatabase) -> [Arc<PostgresQueue>; 2] {
    [
        Arc::new(PostgresQueue::new(database.url()).unwrap()),
        Arc::new(PostgresQueue::new(database.url()).unwrap()),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_daemons_claiming_at_once_claim_each_run_exactly_once() {
    const RUNS: usize = 200;
    let database = TestDatabase::create().await;
    let queues = two_daemons(&database);
    let mut queued = HashSet::new();
    for n in 0..RUNS {
        queued.insert(
            queues[0]
                .enqueue(run(&format!("acme/repo-{n}"), "refs/heads/main"))
                .await
                .unwrap(),
        );
    }
    let claims = claim_everything(&queues).await;
    assert_eq!(claims.keys().copied().collect::<HashSet<_>>(), queued);
    assert!(claims.values().all(|&n| n == 1), "{claims:?}");
    assert_eq!(
        queues[1].count_by_state().await.unwrap(),
        [(QueueState::Succeeded, RUNS as u64)]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_daemons_claiming_at_once_never_run_two_runs_of_one_key() {
    const KEYS: usize = 4;
    const RUNS_PER_KEY: usize = 50;
    let database = TestDatabase::create().await;
    let queues = two_daemons(&database);
    let mut queued = HashSet::new();
    for key in 0..KEYS {
        // One delivery queues all the runs of a key, so that none supersedes another.
        let runs = vec![run(&format!("acme/repo-{key}"), "refs/heads/main"); RUNS_PER_KEY];
        let Accepted::Recorded { runs } = queues[0]
            .accept(delivery(&format!("d-{key}")), runs)
            .await
            .unwrap()
        else {
            panic!("not recorded");
        };
        queued.extend(runs);
    }
    let claims = claim_everything(&queues).await;
    assert_eq!(claims.keys().copied().collect::<HashSet<_>>(), queued);
    assert!(claims.values().all(|&n| n == 1), "{claims:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_lines_are_numbered_from_one_in_append_order() {
    let (queue, _database) = queue().await;
    let id = queue
        .enqueue(run("acme/shop", "refs/heads/main"))
        .await
        .unwrap();
    let lines = |texts: &[&str]| texts.iter().map(|t| (*t).to_owned()).collect::<Vec<_>>();
    queue.append_log(id, &lines(&["one", "two"])).await.unwrap();
    queue.append_log(id, &lines(&["three"])).await.unwrap();
    queue.append_log(id, &[]).await.unwrap();
    assert_eq!(
        queue.log_after(id, 0, 100).await.unwrap(),
        [
            (1, "one".to_owned()),
            (2, "two".to_owned()),
            (3, "three".to_owned())
        ]
    );
    assert_eq!(
        queue.log_after(id, 1, 1).await.unwrap(),
        [(2, "two".to_owned())]
    );
    assert!(queue.log_after(id, 3, 10).await.unwrap().is_empty());
    let err = queue.append_log(9999, &lines(&["x"])).await.unwrap_err();
    assert!(matches!(err, QueueError::UnknownRun { id: 9999 }), "{err}");
    let err = queue.log_after(9999, 0, 10).await.unwrap_err();
    assert!(matches!(err, QueueError::UnknownRun { id: 9999 }), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_ends_a_queued_run_and_asks_a_running_one() {
    let (queue, _database) = queue().await;
    let running = queue
        .enqueue(run("acme/shop", "refs/heads/main"))
        .await
        .unwrap();
    queue.claim("daemon-a", LEASE).await.unwrap().unwrap();
    let queued = queue
        .enqueue(run("acme/blog", "refs/heads/main"))
        .await
        .unwrap();

    let cancelled = queue.request_cancel(queued).await.unwrap();
    assert_eq!(cancelled.state, QueueState::Cancelled);
    assert!(cancelled.finished_at.is_some());
    let asked = queue.request_cancel(running).await.unwrap();
    assert_eq!(asked.state, QueueState::Running);
    assert!(asked.cancel_requested);
    let err = queue.request_cancel(9999).await.unwrap_err();
    assert!(matches!(err, QueueError::UnknownRun { id: 9999 }), "{err}");
    assert!(queue.claim("daemon-b", LEASE).await.unwrap().is_none());
    queue.ping().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_that_goes_away_is_a_database_error_and_the_queue_recovers() {
    let (queue, database) = queue().await;
    let id = queue
        .enqueue(run("acme/shop", "refs/heads/main"))
        .await
        .unwrap();
    let raw = database.raw().await;
    for _ in 0..3 {
        raw.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
             WHERE datname = current_database() AND pid <> pg_backend_pid()",
            &[],
        )
        .await
        .unwrap();
        let started = std::time::Instant::now();
        let first = queue.get(id).await;
        assert!(started.elapsed() < Duration::from_secs(10));
        if let Err(err) = &first {
            assert!(matches!(err, QueueError::Database { .. }), "{err}");
        }
        assert_eq!(queue.get(id).await.unwrap().id, id);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_database_fails_promptly_without_showing_the_password() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let queue =
        PostgresQueue::new(&format!("postgres://shipit:s3cret-pw@127.0.0.1:{port}/q")).unwrap();
    let started = std::time::Instant::now();
    let err = queue.ping().await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(10));
    let message = err.to_string();
    assert!(matches!(err, QueueError::Database { .. }), "{message}");
    assert!(!message.contains("s3cret-pw"), "{message}");
    assert!(
        message.contains(&format!("postgres://shipit@127.0.0.1:{port}/q")),
        "{message}"
    );
}
