//! The worker against real parts: a git repository made with git2 in a temporary folder, the
//! SQLite queue and journal in one database file, and the test environment's Docker daemon for
//! the builds (`scripts/testenv up`; `DOCKER_HOST` and `SHIPIT_TEST_BASE_IMAGE` must be set, as
//! `scripts/test` sets them).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::*;
use crate::daemon::checkout::tests::{commit, repository};
use crate::daemon::config::{DaemonConfig, Secret, Sources, StateConfig};
use crate::daemon::queue::{NewRun, QueuedRun, SqliteQueue, Trigger};
use crate::journal::{RunStatus, SqliteRunStore, StageStatus};
use crate::plan::StageId;

/// The base image every test Dockerfile starts from; fails, never skips, without it.
fn base_image() -> String {
    assert!(
        std::env::var_os("DOCKER_HOST").is_some(),
        "DOCKER_HOST is not set: run `scripts/testenv up` and the tests through scripts/test"
    );
    std::env::var("SHIPIT_TEST_BASE_IMAGE")
        .ok()
        .filter(|image| !image.is_empty())
        .expect("SHIPIT_TEST_BASE_IMAGE is not set; scripts/test exports it (busybox:latest)")
}

/// A daemon's world: its work dir, database, queue and journal, and an origin repository.
struct Daemon {
    dir: tempfile::TempDir,
    queue: Arc<SqliteQueue>,
    store: Arc<SqliteRunStore>,
    nonce: String,
    shutdown_grace: Duration,
    metrics: Arc<Metrics>,
}

impl Daemon {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let database = dir.path().join("daemon.db");
        let nonce = format!(
            "{:x}",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        );
        Daemon {
            queue: Arc::new(SqliteQueue::new(&database)),
            store: Arc::new(SqliteRunStore::new(&database)),
            dir,
            nonce,
            shutdown_grace: Duration::from_secs(5),
            metrics: Arc::new(Metrics::new()),
        }
    }

    fn origin(&self) -> PathBuf {
        self.dir.path().join("origin")
    }

    fn work_dir(&self) -> PathBuf {
        self.dir.path().join("work")
    }

    /// Commits a pipeline with image `web` whose build runs `run` (after a nonce step, so that
    /// the layer cache never answers for it); the commit id.
    fn push_pipeline(&self, run: &str) -> String {
        let name = format!("daemon-worker-{}", self.nonce);
        commit(
            &self.origin(),
            "main",
            &[
                (
                    "shipit.yaml",
                    &format!(
                        "version: 1\nname: {name}\nimages:\n  web:\n    context: web\n    args: {{ NONCE: \"{}\" }}\n",
                        self.nonce
                    ),
                ),
                (
                    "web/Dockerfile",
                    &format!(
                        "FROM {}\nARG NONCE\nRUN echo \"$NONCE\" && {run}\n",
                        base_image()
                    ),
                ),
            ],
        )
    }

    fn config(&self) -> Arc<DaemonConfig> {
        let mut repo = repository("acme/shop", &self.origin());
        repo.env = vec![("DEPLOY_TOKEN".into(), Secret::new("t0ken-never-shown"))];
        Arc::new(DaemonConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            state: StateConfig::Sqlite {
                path: self.dir.path().join("daemon.db"),
            },
            work_dir: self.work_dir(),
            concurrency: 2,
            shutdown_grace: self.shutdown_grace,
            max_body_bytes: 1 << 20,
            sources: Sources::default(),
            api_token_sha256: vec![],
            repositories: vec![repo],
        })
    }

    fn start(&self, daemon_id: &str, shutdown: &CancellationToken) -> WorkerHandle {
        let settings = WorkerSettings {
            daemon_id: daemon_id.to_owned(),
            lease: Duration::from_secs(2),
            heartbeat: Duration::from_millis(200),
            poll: Duration::from_millis(100),
        };
        start_with(
            self.config(),
            self.queue.clone(),
            self.store.clone(),
            Executors::default_set(&self.work_dir().join("state")),
            settings,
            self.metrics.clone(),
            shutdown.clone(),
        )
    }

    async fn enqueue(&self, sha: &str, pipeline_file: &str) -> QueueId {
        self.queue
            .enqueue(NewRun {
                repository: "acme/shop".into(),
                git_ref: "refs/heads/main".into(),
                sha: sha.into(),
                pipeline_file: pipeline_file.into(),
                environment: None,
                trigger: Trigger::Api {
                    token: "test".into(),
                },
            })
            .await
            .unwrap()
    }

    /// Waits until run `id` satisfies `done`, failing after `limit`.
    async fn wait_for(
        &self,
        id: QueueId,
        limit: Duration,
        done: impl Fn(&QueuedRun) -> bool,
    ) -> QueuedRun {
        let started = Instant::now();
        loop {
            let run = self.queue.get(id).await.unwrap();
            if done(&run) {
                return run;
            }
            assert!(
                started.elapsed() < limit,
                "run {id} did not get there in {limit:?}: {run:?}\nlog:\n{}",
                self.log(id).await.join("\n")
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn ended(&self, id: QueueId) -> QueuedRun {
        self.wait_for(id, Duration::from_secs(180), |run| {
            run.finished_at.is_some()
        })
        .await
    }

    /// A run of a 60-second build, started by a worker of "daemon-a" and waited for until its
    /// build stage is running: its queue id, its journal id and the worker.
    async fn long_build_under_way(
        &self,
        shutdown: &CancellationToken,
    ) -> (QueueId, String, WorkerHandle) {
        let sha = self.push_pipeline("sleep 60");
        let id = self.enqueue(&sha, "shipit.yaml").await;
        let worker = self.start("daemon-a", shutdown);
        let running = self
            .wait_for(id, Duration::from_secs(60), |run| run.run_id.is_some())
            .await;
        let run_id = running.run_id.unwrap();
        self.build_reaches(&run_id, StageStatus::Running).await;
        (id, run_id, worker)
    }

    /// Waits until run `run_id`'s build stage has `status` in the journal.
    async fn build_reaches(&self, run_id: &str, status: StageStatus) {
        let started = Instant::now();
        loop {
            let record = self.store.load(run_id).await.unwrap();
            if record.stage(&StageId::build("web")).unwrap().status == status {
                return;
            }
            assert!(started.elapsed() < Duration::from_secs(60), "{record:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn log(&self, id: QueueId) -> Vec<String> {
        self.queue
            .log_after(id, 0, 10_000)
            .await
            .unwrap()
            .into_iter()
            .map(|(_, line)| line)
            .collect()
    }
}

fn workspace_of(daemon: &Daemon, id: QueueId) -> PathBuf {
    daemon.work_dir().join("runs").join(id.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queued_push_is_built_at_its_exact_commit_and_its_log_is_in_the_queue() {
    let daemon = Daemon::new();
    let pushed = daemon.push_pipeline("echo built");
    // The branch moves on after the push: the run still builds the pushed commit.
    commit(&daemon.origin(), "main", &[("later.txt", "later")]);
    let id = daemon.enqueue(&pushed, "shipit.yaml").await;
    let shutdown = CancellationToken::new();
    let worker = daemon.start("daemon-a", &shutdown);

    let run = daemon.ended(id).await;
    shutdown.cancel();
    worker.stopped().await;

    let log = daemon.log(id).await;
    assert_eq!(
        run.state,
        QueueState::Succeeded,
        "{run:?}\n{}",
        log.join("\n")
    );
    assert_eq!(run.exit_code, Some(0));
    let run_id = run
        .run_id
        .expect("the journal run id is noted in the queue");
    assert!(
        log.iter()
            .any(|line| line.contains(&format!("starting run {run_id}"))),
        "{log:#?}"
    );
    let record = daemon.store.load(&run_id).await.unwrap();
    assert_eq!(record.status, RunStatus::Succeeded);
    assert_eq!(record.git.sha.as_deref(), Some(pushed.as_str()));
    assert_eq!(record.git.branch.as_deref(), Some("main"));
    assert!(!record.git.dirty);
    assert!(
        !workspace_of(&daemon, id).exists(),
        "the workspace is removed after the run"
    );
    assert!(log.iter().all(|line| !line.contains("t0ken-never-shown")));
    // The build's duration is in the daemon's metrics, under its repository and kind.
    let metrics = daemon.metrics.encode();
    assert!(
        metrics.contains(r#"shipit_daemon_stage_duration_seconds_count{repository="acme/shop",kind="build",status="succeeded"} 1"#),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_newer_push_supersedes_a_queued_run_and_only_the_newer_one_runs() {
    let daemon = Daemon::new();
    let older = daemon.push_pipeline("echo older");
    let newer = daemon.push_pipeline("echo newer");
    let first = daemon.enqueue(&older, "shipit.yaml").await;
    let second = daemon.enqueue(&newer, "shipit.yaml").await;
    let shutdown = CancellationToken::new();
    let worker = daemon.start("daemon-a", &shutdown);

    let second = daemon.ended(second).await;
    shutdown.cancel();
    worker.stopped().await;

    let first = daemon.queue.get(first).await.unwrap();
    assert_eq!(first.state, QueueState::Superseded);
    assert_eq!(first.run_id, None, "the superseded run never started");
    assert_eq!(second.state, QueueState::Succeeded, "{second:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_a_running_build_stops_it_and_ends_the_run_cancelled() {
    let daemon = Daemon::new();
    let shutdown = CancellationToken::new();
    let (id, run_id, worker) = daemon.long_build_under_way(&shutdown).await;

    let asked = Instant::now();
    daemon.queue.request_cancel(id).await.unwrap();
    let run = daemon.ended(id).await;
    let took = asked.elapsed();
    shutdown.cancel();
    worker.stopped().await;

    assert_eq!(run.state, QueueState::Cancelled, "{run:?}");
    assert_eq!(run.message.as_deref(), Some("cancel requested"));
    assert!(
        took < Duration::from_secs(30),
        "the build was not stopped: {took:?}"
    );
    let record = daemon.store.load(&run_id).await.unwrap();
    assert_eq!(
        record.stage(&StageId::build("web")).unwrap().status,
        StageStatus::Interrupted
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_another_daemon_took_over_stops_here_and_is_left_to_it() {
    let daemon = Daemon::new();
    let shutdown = CancellationToken::new();
    let (id, run_id, worker) = daemon.long_build_under_way(&shutdown).await;

    // What a takeover leaves in the queue: the lease ran out (this daemon could not renew it,
    // its database away) and daemon-b claimed the run.
    rusqlite::Connection::open(daemon.dir.path().join("daemon.db"))
        .unwrap()
        .execute(
            "UPDATE queued_runs SET claimed_by = 'daemon-b' WHERE id = ?1",
            [id],
        )
        .unwrap();

    // The next heartbeat tells daemon-a, which stops its copy of the run...
    daemon
        .build_reaches(&run_id, StageStatus::Interrupted)
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    shutdown.cancel();
    worker.stopped().await;
    // ...and records nothing of its end: the run is daemon-b's to resume and finish.
    let run = daemon.queue.get(id).await.unwrap();
    assert_eq!(run.state, QueueState::Running, "{run:?}");
    assert_eq!(run.claimed_by.as_deref(), Some("daemon-b"));
    assert_eq!(run.finished_at, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_the_remote_does_not_have_fails_the_run_saying_so() {
    let daemon = Daemon::new();
    commit(&daemon.origin(), "main", &[("app.txt", "one")]);
    let missing = "0123456789abcdef0123456789abcdef01234567";
    let id = daemon.enqueue(missing, "shipit.yaml").await;
    let shutdown = CancellationToken::new();
    let worker = daemon.start("daemon-a", &shutdown);
    let run = daemon.ended(id).await;
    shutdown.cancel();
    worker.stopped().await;

    assert_eq!(run.state, QueueState::Failed);
    let message = run.message.unwrap();
    assert!(
        message.contains(&format!("the remote has no commit {missing}")),
        "{message}"
    );
    assert!(
        daemon
            .log(id)
            .await
            .iter()
            .any(|line| line.contains("the remote has no commit")),
        "the reason is in the run's log too"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pipeline_naming_a_path_outside_its_checkout_is_refused_before_anything_runs() {
    let daemon = Daemon::new();
    let outside = daemon.dir.path().join("work/outside");
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(outside.join("Dockerfile"), "FROM scratch\n").unwrap();
    // `runs/<id>/../../outside` is `work/outside`: a real folder the build would ship.
    let sha = commit(
        &daemon.origin(),
        "main",
        &[(
            "shipit.yaml",
            "version: 1\nname: escape\nimages:\n  web:\n    context: ../../outside\n",
        )],
    );
    let id = daemon.enqueue(&sha, "shipit.yaml").await;
    let shutdown = CancellationToken::new();
    let worker = daemon.start("daemon-a", &shutdown);
    let run = daemon.ended(id).await;
    shutdown.cancel();
    worker.stopped().await;

    assert_eq!(run.state, QueueState::Failed);
    assert_eq!(run.run_id, None, "no journal run was started");
    assert_eq!(
        run.message.as_deref(),
        Some(
            "the pipeline file's images.web.context names `../../outside`, which leads out of the checkout with `..`: a daemon run reads files from its checkout only"
        )
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pipeline_file_outside_the_checkout_is_refused() {
    let daemon = Daemon::new();
    let sha = commit(&daemon.origin(), "main", &[("app.txt", "one")]);
    let id = daemon.enqueue(&sha, "../../../daemon.db").await;
    let shutdown = CancellationToken::new();
    let worker = daemon.start("daemon-a", &shutdown);
    let run = daemon.ended(id).await;
    shutdown.cancel();
    worker.stopped().await;
    assert_eq!(run.state, QueueState::Failed);
    assert!(
        run.message.unwrap().contains("leads out of the checkout"),
        "the daemon's own files are not pipeline files"
    );
}

/// A daemon dies mid-run (its tasks dropped, as a kill leaves them); another daemon claims the
/// run once the lease ran out and resumes its journal: the build that had finished is not
/// built again, and there is still one journal run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_left_running_by_a_dead_daemon_is_resumed_from_its_journal() {
    let daemon = Daemon::new();
    let name = format!("daemon-resume-{}", daemon.nonce);
    let base = base_image();
    let sha = commit(
        &daemon.origin(),
        "main",
        &[
            (
                "shipit.yaml",
                &format!(
                    "version: 1\nname: {name}\nimages:\n  fast:\n    context: fast\n  slow:\n    context: slow\n    args: {{ NONCE: \"{}\" }}\n",
                    daemon.nonce
                ),
            ),
            (
                "fast/Dockerfile",
                &format!("FROM {base}\nRUN echo fast > /fast.txt\n"),
            ),
            (
                "slow/Dockerfile",
                &format!("FROM {base}\nARG NONCE\nRUN echo \"$NONCE\" && sleep 4\n"),
            ),
        ],
    );
    let id = daemon.enqueue(&sha, "shipit.yaml").await;
    let shutdown = CancellationToken::new();
    let first = daemon.start("daemon-a", &shutdown);
    let run_id = daemon
        .wait_for(id, Duration::from_secs(60), |run| run.run_id.is_some())
        .await
        .run_id
        .unwrap();
    let started = Instant::now();
    let fast_attempt = loop {
        let record = daemon.store.load(&run_id).await.unwrap();
        let fast = record.stage(&StageId::build("fast")).unwrap();
        let slow = record.stage(&StageId::build("slow")).unwrap();
        if fast.status == StageStatus::Succeeded && slow.status == StageStatus::Running {
            break fast.clone();
        }
        assert!(started.elapsed() < Duration::from_secs(60), "{record:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    // The daemon dies: its tasks are dropped where they stand, its lease is no longer renewed.
    first.task.abort();
    let _ = first.task.await;
    assert_eq!(
        daemon.queue.get(id).await.unwrap().state,
        QueueState::Running
    );

    let second = daemon.start("daemon-b", &shutdown);
    let run = daemon.ended(id).await;
    shutdown.cancel();
    second.stopped().await;

    let log = daemon.log(id).await;
    assert_eq!(
        run.state,
        QueueState::Succeeded,
        "{run:?}\n{}",
        log.join("\n")
    );
    assert_eq!(run.claimed_by.as_deref(), Some("daemon-b"));
    assert_eq!(run.run_id.as_deref(), Some(run_id.as_str()));
    assert!(
        log.iter()
            .any(|line| line.contains(&format!("resuming run {run_id}"))),
        "{log:#?}"
    );
    let record = daemon.store.load(&run_id).await.unwrap();
    assert_eq!(record.status, RunStatus::Succeeded);
    let fast = record.stage(&StageId::build("fast")).unwrap();
    assert_eq!(
        fast.attempts, fast_attempt.attempts,
        "the finished build was not run again"
    );
    let journal_runs = daemon.store.list().await.unwrap();
    assert_eq!(
        journal_runs.len(),
        1,
        "one journal run, resumed, not a second one"
    );
}

/// SIGTERM while a build runs longer than the grace: the worker stops it and leaves the run
/// `Running` in the queue (its journal interrupted); the same daemon, started again, takes the
/// run back at once and resumes it to the end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shutdown_leaves_the_running_run_resumable_and_the_restarted_daemon_resumes_it() {
    let mut daemon = Daemon::new();
    daemon.shutdown_grace = Duration::from_millis(500);
    let sha = daemon.push_pipeline("sleep 6");
    let id = daemon.enqueue(&sha, "shipit.yaml").await;
    let shutdown = CancellationToken::new();
    let first = daemon.start("daemon-a", &shutdown);
    let run_id = daemon
        .wait_for(id, Duration::from_secs(60), |run| run.run_id.is_some())
        .await
        .run_id
        .unwrap();
    let started = Instant::now();
    while daemon
        .store
        .load(&run_id)
        .await
        .unwrap()
        .stage(&StageId::build("web"))
        .unwrap()
        .status
        != StageStatus::Running
    {
        assert!(started.elapsed() < Duration::from_secs(60));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    shutdown.cancel();
    first.stopped().await;

    let left = daemon.queue.get(id).await.unwrap();
    assert_eq!(left.state, QueueState::Running, "{left:?}");
    assert_eq!(left.finished_at, None);
    let record = daemon.store.load(&run_id).await.unwrap();
    assert_eq!(record.status, RunStatus::Interrupted);

    let again = CancellationToken::new();
    let second = daemon.start("daemon-a", &again);
    let run = daemon.ended(id).await;
    again.cancel();
    second.stopped().await;
    assert_eq!(run.state, QueueState::Succeeded, "{run:?}");
    assert_eq!(run.run_id.as_deref(), Some(run_id.as_str()));
    assert_eq!(daemon.store.list().await.unwrap().len(), 1);
}
