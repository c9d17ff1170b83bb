//! `PostgresQueue` on a real server (the test environment's), each test in a database of its
//! own.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use super::*;
use crate::journal::postgres_store::test_database::TestDatabase;

const LEASE: Duration = Duration::from_secs(60);

mod conformance {
    use super::*;

    crate::daemon::queue::conformance::queue_conformance!(|| async {
        let database = TestDatabase::create().await;
        let queue: Arc<dyn Queue> =
            Arc::new(PostgresQueue::new(database.url()).expect("the test URL is valid"));
        (queue, database)
    });
}

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
    let counts = queues[1].count_by_state().await.unwrap();
    assert!(
        counts.iter().all(|&(state, n)| n
            == if state == QueueState::Succeeded {
                RUNS as u64
            } else {
                0
            }),
        "{counts:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_daemons_claiming_at_once_never_run_two_runs_of_one_key() {
    const KEYS: usize = 4;
    const RUNS_PER_KEY: usize = 50;
    let database = TestDatabase::create().await;
    let queues = two_daemons(&database);
    // Many queued runs of one key, which supersession never leaves behind but a claim must
    // handle all the same (written by hand, as by an older shipit): one at a time per key.
    let raw = database.raw().await;
    queues[0].ping().await.unwrap();
    let mut queued = HashSet::new();
    for n in 0..KEYS * RUNS_PER_KEY {
        let id: QueueId = raw
            .query_one(
                "INSERT INTO queued_runs (repository, git_ref, sha, pipeline_file, trigger,
                                          state, queued_at)
                 VALUES ($1, 'refs/heads/main', $2, 'shipit.yaml', '{\"kind\":\"retry\",\"of\":1}',
                         'queued', now())
                 RETURNING id",
                &[&format!("acme/repo-{}", n % KEYS), &"0".repeat(40)],
            )
            .await
            .unwrap()
            .get(0);
        queued.insert(id);
    }
    let claims = claim_everything(&queues).await;
    assert_eq!(claims.keys().copied().collect::<HashSet<_>>(), queued);
    assert!(claims.values().all(|&n| n == 1), "{claims:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_that_goes_away_is_unavailable_and_the_queue_recovers() {
    let (queue, database) = queue().await;
    let id = queue
        .enqueue(run("acme/shop", "refs/heads/main"))
        .await
        .unwrap();
    let admin = database.admin().await;
    database.go_away(&admin).await;
    let started = std::time::Instant::now();
    for err in [
        queue.get(id).await.unwrap_err(),
        queue.claim("daemon-a", LEASE).await.unwrap_err(),
        queue.ping().await.unwrap_err(),
    ] {
        assert!(matches!(err, QueueError::Unavailable { .. }), "{err}");
        // The server's own reason reaches the message.
        assert!(
            err.to_string()
                .contains("is not currently accepting connections"),
            "{err}"
        );
    }
    assert!(started.elapsed() < Duration::from_secs(15));
    database.come_back(&admin).await;
    queue.ping().await.unwrap();
    assert_eq!(
        queue.claim("daemon-a", LEASE).await.unwrap().unwrap().id,
        id
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_ended_by_the_server_are_replaced_without_failing_a_call() {
    let (queue, database) = queue().await;
    let id = queue
        .enqueue(run("acme/shop", "refs/heads/main"))
        .await
        .unwrap();
    let admin = database.admin().await;
    for _ in 0..3 {
        database.end_sessions(&admin).await;
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
    assert!(matches!(err, QueueError::Unavailable { .. }), "{message}");
    assert!(!message.contains("s3cret-pw"), "{message}");
    assert!(
        message.contains(&format!("postgres://shipit@127.0.0.1:{port}/q")),
        "{message}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_accepts_but_never_answers_fails_within_the_connect_timeout() {
    // A hung server: the TCP handshake succeeds, the PostgreSQL one never does.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let silent = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let queue =
        PostgresQueue::new(&format!("postgres://shipit:s3cret-pw@127.0.0.1:{port}/q")).unwrap();
    let started = std::time::Instant::now();
    let err = queue.ping().await.unwrap_err();
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_secs(4) && waited < Duration::from_secs(10),
        "{waited:?}"
    );
    assert!(matches!(err, QueueError::Unavailable { .. }), "{err}");
    silent.abort();
}

/// Deliveries arriving while a transaction waits for their key share the next transaction,
/// each answered with its own runs; the runs supersede as if queued one after the other: a
/// queued run by the first newer run, a running one asked to cancel by the newest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_accepts_share_one_transaction_and_supersede_in_arrival_order() {
    use crate::daemon::queue::conformance::{delivery, new_run, sha};
    let (queue, database) = queue().await;
    let queue = Arc::new(queue);
    let push = |id: &str, n: u8| (delivery(id), vec![new_run("refs/heads/main", n)]);
    let (first, runs) = push("seen-before", 0);
    let Accepted::Recorded { runs: older } = queue.accept(first, runs).await.unwrap() else {
        panic!("a first delivery taken for a duplicate");
    };
    // The older run is running: the newest of the batch asks it to cancel.
    assert_eq!(
        queue.claim("daemon-a", LEASE).await.unwrap().unwrap().id,
        older[0]
    );
    let commits_before = queue.accepts.commits();

    // Another session holds main's key: the first transaction waits for it, and every delivery
    // arriving meanwhile waits in the intake for the next one.
    let (blocker, connection) = tokio_postgres::connect(database.url(), tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    let key = key_lock("acme/shop", "refs/heads/main");
    blocker
        .execute("SELECT pg_advisory_lock($1)", &[&key])
        .await
        .unwrap();
    let mut ids: Vec<String> = (0..30).map(|n| format!("d{n}")).collect();
    ids.extend((0..10).map(|n| format!("d{n}")));
    ids.push("seen-before".to_owned());
    let calls: Vec<_> = ids
        .iter()
        .enumerate()
        .map(|(n, id)| {
            let (queue, id) = (queue.clone(), id.clone());
            let (delivery, runs) = push(&id, u8::try_from(n).unwrap() + 1);
            tokio::spawn(async move { (n, id, queue.accept(delivery, runs).await.unwrap()) })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    blocker
        .execute("SELECT pg_advisory_unlock($1)", &[&key])
        .await
        .unwrap();
    let mut answers = Vec::new();
    for call in calls {
        answers.push(call.await.unwrap());
    }

    let commits = queue.accepts.commits() - commits_before;
    assert!(
        commits <= 2,
        "{commits} transactions for {} accepts",
        ids.len()
    );
    // Each new id recorded once, by whichever of its calls came first, with that call's run.
    let mut recorded: HashMap<String, QueueId> = HashMap::new();
    for (n, id, answer) in &answers {
        if let Accepted::Recorded { runs } = answer {
            assert_eq!(runs.len(), 1);
            assert!(recorded.insert(id.clone(), runs[0]).is_none(), "{id} twice");
            assert_eq!(
                queue.get(runs[0]).await.unwrap().run.sha,
                sha(u8::try_from(*n).unwrap() + 1)
            );
        }
    }
    let expected: HashSet<String> = (0..30).map(|n| format!("d{n}")).collect();
    assert_eq!(recorded.keys().cloned().collect::<HashSet<_>>(), expected);
    let mut new_ids: Vec<QueueId> = recorded.values().copied().collect();
    new_ids.sort_unstable();
    for pair in new_ids.windows(2) {
        let superseded = queue.get(pair[0]).await.unwrap();
        assert_eq!(superseded.state, QueueState::Superseded, "{superseded:?}");
        assert_eq!(
            superseded.message,
            Some(format!("superseded by run {}", pair[1]))
        );
    }
    let newest = *new_ids.last().unwrap();
    assert_eq!(queue.get(newest).await.unwrap().state, QueueState::Queued);
    let running = queue.get(older[0]).await.unwrap();
    assert_eq!(running.state, QueueState::Running);
    assert!(running.cancel_requested);
    assert_eq!(running.message, Some(format!("superseded by run {newest}")));
}

/// A batch whose runs the database refuses commits nothing of it, though its COMMIT was sent
/// behind the failing statement; each delivery is then tried alone, and only the refused one
/// fails. The refused one is not on disk, so its redelivery is recorded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_batch_fails_only_the_deliveries_that_were_not_written() {
    use crate::daemon::queue::conformance::{delivery, new_run, sha};
    let (queue, database) = queue().await;
    let queue = Arc::new(queue);
    queue.ping().await.unwrap();
    let (admin, connection) = tokio_postgres::connect(database.url(), tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    let refused = sha(66);
    admin
        .batch_execute(&format!(
            "CREATE FUNCTION refuse() RETURNS trigger AS $$
             BEGIN RAISE EXCEPTION 'refused for the test'; END $$ LANGUAGE plpgsql;
             CREATE TRIGGER refuse BEFORE INSERT ON queued_runs
             FOR EACH ROW WHEN (NEW.sha = '{refused}') EXECUTE FUNCTION refuse();"
        ))
        .await
        .unwrap();
    // Main's key held, so that the four arrive while the first transaction waits.
    let key = key_lock("acme/shop", "refs/heads/main");
    admin
        .execute("SELECT pg_advisory_lock($1)", &[&key])
        .await
        .unwrap();
    let calls: Vec<_> = [("good-1", 1), ("bad", 66), ("good-2", 2), ("good-3", 3)]
        .into_iter()
        .map(|(id, n)| {
            let queue = queue.clone();
            tokio::spawn(async move {
                let runs = vec![new_run("refs/heads/main", n)];
                (id, queue.accept(delivery(id), runs).await)
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    admin
        .execute("SELECT pg_advisory_unlock($1)", &[&key])
        .await
        .unwrap();
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
    let stored: Vec<String> = admin
        .query(
            "SELECT delivery_id FROM deliveries ORDER BY delivery_id",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(stored, ["good-1", "good-2", "good-3"]);
    admin
        .batch_execute("DROP TRIGGER refuse ON queued_runs")
        .await
        .unwrap();
    let runs = vec![new_run("refs/heads/main", 66)];
    assert!(matches!(
        queue.accept(delivery("bad"), runs).await.unwrap(),
        Accepted::Recorded { .. }
    ));
}

/// The group commit keeps its connection between batches; one the server closed meanwhile is
/// replaced without failing the delivery that found it closed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kept_writer_connection_the_server_closed_is_replaced_without_failing_a_delivery() {
    use crate::daemon::queue::conformance::{delivery, new_run};
    let (queue, database) = queue().await;
    let admin = database.admin().await;
    for (n, id) in ["before-the-restart", "after-the-restart", "once-more"]
        .into_iter()
        .enumerate()
    {
        if n > 0 {
            database.end_sessions(&admin).await;
        }
        let runs = vec![new_run("refs/heads/main", u8::try_from(n).unwrap() + 1)];
        let answer = queue.accept(delivery(id), runs).await.unwrap();
        assert!(
            matches!(answer, Accepted::Recorded { .. }),
            "{id}: {answer:?}"
        );
    }
}

/// COMMIT is sent behind the supersession even on a connection whose statements are not
/// prepared yet: a batch whose supersession the database refuses records nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_whose_supersession_fails_is_not_recorded() {
    use crate::daemon::queue::conformance::{delivery, new_run};
    let (queue, database) = queue().await;
    queue.ping().await.unwrap();
    let (admin, connection) = tokio_postgres::connect(database.url(), tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    // The older run is written here, not through the queue, whose pooled connection would
    // then have the supersession prepared already.
    let older: i64 = admin
        .query_one(
            "INSERT INTO queued_runs (repository, git_ref, sha, pipeline_file, trigger, state,
                                      queued_at)
             VALUES ('acme/shop', 'refs/heads/main', $1, 'shipit.yaml',
                     '{\"kind\":\"api\",\"token\":\"test\"}', 'queued', now())
             RETURNING id",
            &[&"01".repeat(20)],
        )
        .await
        .unwrap()
        .get(0);
    admin
        .batch_execute(
            "CREATE FUNCTION refuse() RETURNS trigger AS $$
             BEGIN RAISE EXCEPTION 'refused for the test'; END $$ LANGUAGE plpgsql;
             CREATE TRIGGER refuse BEFORE UPDATE ON queued_runs
             FOR EACH ROW EXECUTE FUNCTION refuse();",
        )
        .await
        .unwrap();

    // The writer's first batch: the supersession is not prepared on its connection yet.
    let err = queue
        .accept(delivery("d1"), vec![new_run("refs/heads/main", 2)])
        .await
        .unwrap_err();

    assert!(err.to_string().contains("refused for the test"), "{err}");
    let count = |table: &str| format!("SELECT count(*) FROM {table}");
    let deliveries: i64 = admin
        .query_one(&count("deliveries"), &[])
        .await
        .unwrap()
        .get(0);
    let runs: i64 = admin
        .query_one(&count("queued_runs"), &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!((deliveries, runs), (0, 1));
    assert_eq!(queue.get(older).await.unwrap().state, QueueState::Queued);
}
