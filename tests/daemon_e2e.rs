//! The daemon end to end: a signed GitHub push for a local bare repository becomes a run that
//! checks out the pushed commit, builds the demo app with the test environment's Docker daemon
//! and deploys it to a docker target; and a daemon killed with SIGKILL under a stream of
//! deliveries runs every delivery it acknowledged exactly once after it is started again; two
//! daemons sharing one PostgreSQL database run each of 200 deliveries exactly once.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

use shipit::daemon::queue::{PostgresQueue, Queue, QueueState, QueuedRun, SqliteQueue, Trigger};
use shipit::daemon::webhooks::sign_hmac_sha256;
use shipit::journal::{PostgresRunStore, RunStore, SqliteRunStore};
use support::daemon::{Daemon, client, github_push};
use support::demo_app::copy_demo_app;
use support::git_servers::GitHttpsServer;
use support::scenario::{Scenario, base_image};
use support::tcp_cut::TcpCut;
use support::{Project, http_get};

const SECRET: &str = "e2e-github-secret-5d1c";
const API_TOKEN: &str = "e2e-api-token";

fn token_digest() -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(API_TOKEN.as_bytes()))
}

/// A bare clone of `project`: what the daemon fetches from, as it would from a Git host.
fn bare_clone(project: &Project, into: &Path) -> String {
    let status = std::process::Command::new("git")
        .args(["clone", "-q", "--bare"])
        .arg(project.path())
        .arg(into)
        .status()
        .unwrap();
    assert!(status.success(), "git clone --bare failed");
    into.display().to_string()
}

fn head_sha(project: &Project) -> String {
    let out = std::process::Command::new("git")
        .args(["rev-parse", "HEAD"])
        .current_dir(project.path())
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// Writes `dir/daemon.yaml`: a GitHub source, the API token, one repository.
fn write_config(dir: &Path, repository: &str, clone_url: &str, branches: &str, extra: &str) {
    std::fs::write(
        dir.join("daemon.yaml"),
        format!(
            "listen: 127.0.0.1:0\nstate:\n  sqlite: daemon.db\nwork_dir: work\nconcurrency: 2\nshutdown_grace: 5s\nsources:\n  github: {{ secret_env: E2E_GITHUB_SECRET }}\napi:\n  tokens: [\"sha256:{}\"]\nrepositories:\n  - name: {repository}\n    clone_url: {clone_url}\n    branches: {branches}\n{extra}",
            token_digest()
        ),
    )
    .unwrap();
}

/// Sends a signed push; the HTTP status and the answer's JSON, or None when the daemon could
/// not be reached (it is being killed).
async fn send_push(
    daemon_url: &str,
    delivery: &str,
    body: &str,
) -> Option<(u16, serde_json::Value)> {
    let response = client()
        .post(format!("{daemon_url}/hooks/github"))
        .header("content-type", "application/json")
        .header("x-github-event", "push")
        .header("x-github-delivery", delivery)
        .header(
            "x-hub-signature-256",
            sign_hmac_sha256(SECRET, body.as_bytes()),
        )
        .body(body.to_owned())
        .send()
        .await
        .ok()?;
    let status = response.status().as_u16();
    let text = response.text().await.ok()?;
    Some((
        status,
        serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text)),
    ))
}

async fn api_get(daemon: &Daemon, path: &str) -> serde_json::Value {
    let text = client()
        .get(daemon.url(path))
        .bearer_auth(API_TOKEN)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: not JSON ({e}): {text}"))
}

fn is_final(state: QueueState) -> bool {
    !matches!(state, QueueState::Queued | QueueState::Running)
}

/// Waits until every run in the queue has ended (or `within` passed) and returns them all.
async fn settled_runs(queue: &SqliteQueue, within: Duration, daemon: &Daemon) -> Vec<QueuedRun> {
    let deadline = Instant::now() + within;
    loop {
        let runs = queue.list(10_000).await.unwrap();
        if runs.iter().all(|run| is_final(run.state)) {
            return runs;
        }
        if Instant::now() > deadline {
            panic!(
                "runs still unfinished after {within:?}: {:?}\ndaemon log:\n{}",
                runs.iter()
                    .filter(|r| !is_final(r.state))
                    .map(|r| (r.id, r.state, r.run.git_ref.clone()))
                    .collect::<Vec<_>>(),
                daemon.logs()
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_push_builds_and_deploys_the_pushed_commit() {
    let scenario = Scenario::new("daemon-e2e");
    let name = scenario.name().to_owned();
    let port = scenario.ports(2);
    let project = Project::with_docker();
    copy_demo_app(&project);
    project.file(
        "shipit.yaml",
        format!(
            "version: 1\nname: {name}\nimages:\n  web:\n    context: web\ndeploy:\n  web:\n    image: web\n    docker:\n      replicas: 1\n      port: {port}\n      env: {{ GREETING: from-the-daemon }}\n      health:\n        http: {{ path: /health }}\n        interval: 500ms\n"
        ),
    );
    project.commit();
    let sha = head_sha(&project);
    let dir = tempfile::tempdir().unwrap();
    let clone_url = bare_clone(&project, &dir.path().join("origin.git"));
    write_config(dir.path(), "acme/demo", &clone_url, "[main]", "");
    let daemon = Daemon::start(dir.path(), &[("E2E_GITHUB_SECRET", SECRET)]);

    let body = github_push("acme/demo", "refs/heads/main", &sha, "Change the greeting");
    let (status, answer) = send_push(&daemon.url(""), "e2e-delivery-1", &body)
        .await
        .expect("the daemon answers");
    assert_eq!(status, 202, "{answer}\n{}", daemon.logs());
    let id = answer["runs"][0]
        .as_i64()
        .unwrap_or_else(|| panic!("no run queued: {answer}"));

    let queue = SqliteQueue::new(dir.path().join("daemon.db"));
    let runs = settled_runs(&queue, Duration::from_secs(300), &daemon).await;
    let run = runs.iter().find(|run| run.id == id).unwrap();
    let log = api_get(&daemon, &format!("/api/runs/{id}")).await;
    assert_eq!(
        run.state,
        QueueState::Succeeded,
        "{run:?}\nAPI: {log}\nlog lines: {:?}\ndaemon log:\n{}",
        queue.log_after(id, 0, 1000).await.unwrap(),
        daemon.logs()
    );
    assert_eq!(run.run.sha, sha);
    assert_eq!(run.exit_code, Some(0));

    // The pushed commit is what runs: the deployed app answers with the greeting it sets.
    assert_eq!(
        http_get(port, "/greeting.txt").as_deref(),
        Some("from-the-daemon\n")
    );
    // The run is journaled in the daemon's store, at the pushed commit, and its stages are
    // the pipeline's: built and deployed.
    let run_id = run.run_id.clone().expect("the run has a journal id");
    let record = SqliteRunStore::new(dir.path().join("daemon.db"))
        .load(&run_id)
        .await
        .unwrap();
    assert_eq!(record.git.sha.as_deref(), Some(sha.as_str()), "{record:?}");
    let stages: Vec<String> = record.stages.iter().map(|s| s.stage.to_string()).collect();
    assert!(stages.contains(&"deploy:web".to_owned()), "{stages:?}");
    // What the run printed is in its log, and the API shows the run.
    let lines = queue.log_after(id, 0, 1000).await.unwrap();
    assert!(
        lines.iter().any(|(_, line)| line.contains("deploy:web")),
        "{lines:?}"
    );
    let shown = api_get(&daemon, &format!("/api/runs/{id}")).await;
    assert_eq!(shown["state"], "succeeded", "{shown}");
    drop(daemon);
}

/// A private repository over HTTPS: the daemon trusts the server's private CA through
/// `SSL_CERT_FILE` (as the README tells), sends the configured token when the server asks, and
/// the token shows nowhere the run or the daemon writes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_to_a_private_https_repository_is_fetched_with_its_token() {
    let scenario = Scenario::new("daemon-https");
    let project = small_project(scenario.name(), 0);
    let sha = head_sha(&project);
    let dir = tempfile::tempdir().unwrap();
    let srv = dir.path().join("srv");
    std::fs::create_dir_all(&srv).unwrap();
    bare_clone(&project, &srv.join("small.git"));
    const GIT_TOKEN: &str = "ghs-daemon-e2e-token-41d7";
    let server = GitHttpsServer::start(&srv, "x-access-token", GIT_TOKEN, dir.path());
    write_config(
        dir.path(),
        "acme/small",
        &server.url("small.git"),
        "[main]",
        "    credentials: { token_env: E2E_GIT_TOKEN }\n",
    );
    let ca_file = server.ca_file.display().to_string();
    let daemon = Daemon::start(
        dir.path(),
        &[
            ("E2E_GITHUB_SECRET", SECRET),
            ("E2E_GIT_TOKEN", GIT_TOKEN),
            ("SSL_CERT_FILE", &ca_file),
        ],
    );

    let body = github_push("acme/small", "refs/heads/main", &sha, "private change");
    let (status, answer) = send_push(&daemon.url(""), "https-delivery-1", &body)
        .await
        .expect("the daemon answers");
    assert_eq!(status, 202, "{answer}\n{}", daemon.logs());
    let queue = SqliteQueue::new(dir.path().join("daemon.db"));
    let runs = settled_runs(&queue, Duration::from_secs(120), &daemon).await;
    let lines = queue.log_after(runs[0].id, 0, 1000).await.unwrap();
    assert_eq!(
        runs[0].state,
        QueueState::Succeeded,
        "{:?}\nlog: {lines:?}\ndaemon log:\n{}",
        runs[0],
        daemon.logs()
    );
    assert!(
        server
            .requests()
            .iter()
            .any(|seen| seen.authorized && seen.path == "/small.git/git-upload-pack"),
        "{:?}",
        server.requests()
    );
    let written = format!("{lines:?}{}{:?}", daemon.logs(), runs[0]);
    assert!(!written.contains(GIT_TOKEN), "the token leaked: {written}");
}

/// A pipeline that builds one small image: cheap enough to run for every delivery. With
/// `build_seconds`, its build takes that long (a `RUN sleep`), so that a run can be caught in
/// the middle of its build; once one run built it, the others skip the unchanged build.
fn small_project(name: &str, build_seconds: u32) -> Project {
    let project = Project::with_docker();
    let dockerfile = match build_seconds {
        0 => "FROM scratch\nCOPY hello.txt /hello.txt\n".to_owned(),
        seconds => format!(
            "FROM {}\nCOPY hello.txt /hello.txt\nRUN sleep {seconds}\n",
            base_image()
        ),
    };
    project.file("app/Dockerfile", dockerfile);
    project.file("app/hello.txt", "hello\n");
    project.file(
        "shipit.yaml",
        format!("version: 1\nname: {name}\nimages:\n  app:\n    context: app\n"),
    );
    project.commit();
    project
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_delivery_runs_exactly_once_across_a_kill_9() {
    let scenario = Scenario::new("daemon-kill");
    let project = small_project(scenario.name(), 3);
    let sha = head_sha(&project);
    let dir = tempfile::tempdir().unwrap();
    let clone_url = bare_clone(&project, &dir.path().join("origin.git"));
    write_config(dir.path(), "acme/small", &clone_url, "[\"*\"]", "");
    let envs = [("E2E_GITHUB_SECRET", SECRET)];
    let daemon = Daemon::start(dir.path(), &envs);

    // Deliveries to distinct branches, so that none supersedes another; the daemon is killed
    // while they stream in, after some are acknowledged and while runs are in flight.
    const DELIVERIES: usize = 24;
    let bodies: Vec<(String, String)> = (0..DELIVERIES)
        .map(|i| {
            (
                format!("kill-delivery-{i}"),
                github_push("acme/small", &format!("refs/heads/b{i}"), &sha, "push"),
            )
        })
        .collect();
    let url = daemon.url("");
    let mut acknowledged = BTreeSet::new();
    let mut daemon = Some(daemon);
    for (i, (delivery, body)) in bodies.iter().enumerate() {
        if i == DELIVERIES / 2 {
            // Kill in the middle of a build: once a run has begun its journal (its run id is
            // in the queue) and before it ends.
            let queue = SqliteQueue::new(dir.path().join("daemon.db"));
            let deadline = Instant::now() + Duration::from_secs(60);
            while !queue
                .list(100)
                .await
                .unwrap()
                .iter()
                .any(|run| run.state == QueueState::Running && run.run_id.is_some())
            {
                assert!(Instant::now() < deadline, "no run started within 60 s");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            daemon.take().unwrap().kill();
        }
        if let Some((status, answer)) = send_push(&url, delivery, body).await {
            assert_eq!(status, 202, "{answer}");
            acknowledged.insert(delivery.clone());
        }
    }
    assert!(acknowledged.len() >= DELIVERIES / 2, "{acknowledged:?}");
    assert!(acknowledged.len() < DELIVERIES, "the kill refused nothing");

    // Started again, the daemon takes back what it left; GitHub redelivers everything (the
    // acknowledged ones again too): duplicates are recognised by their delivery ids.
    let daemon = Daemon::start(dir.path(), &envs);
    let url = daemon.url("");
    for (delivery, body) in &bodies {
        let (status, answer) = send_push(&url, delivery, body)
            .await
            .expect("daemon answers");
        assert!(status == 202 || status == 200, "{status} {answer}");
        if acknowledged.contains(delivery) {
            assert_eq!(answer["duplicate"], true, "{delivery}: {answer}");
        }
    }
    let queue = SqliteQueue::new(dir.path().join("daemon.db"));
    let runs = settled_runs(&queue, Duration::from_secs(600), &daemon).await;
    let mut per_delivery: BTreeMap<String, Vec<&QueuedRun>> = BTreeMap::new();
    for run in &runs {
        if let Trigger::Webhook { delivery_id } = &run.run.trigger {
            per_delivery
                .entry(delivery_id.clone())
                .or_default()
                .push(run);
        }
    }
    for (delivery, _) in &bodies {
        let runs = per_delivery.get(delivery).map(Vec::as_slice).unwrap_or(&[]);
        assert_eq!(runs.len(), 1, "{delivery}: {runs:?}");
        assert_eq!(
            runs[0].state,
            QueueState::Succeeded,
            "{delivery}: {:?}\n{}",
            runs[0],
            daemon.logs()
        );
    }
    // Exactly once: one journal run per queued run, none started twice (a run in flight at
    // the kill was resumed under its own run id, not started again).
    let store = SqliteRunStore::new(dir.path().join("daemon.db"));
    let journaled = store.list().await.unwrap();
    assert_eq!(journaled.len(), DELIVERIES, "{journaled:?}");
    let run_ids: BTreeSet<_> = runs.iter().filter_map(|r| r.run_id.clone()).collect();
    assert_eq!(run_ids.len(), DELIVERIES);
    drop(daemon);
}

/// A fresh database on the test environment's PostgreSQL, dropped at the end.
struct TestDatabase {
    admin_url: String,
    name: String,
    url: String,
}

impl TestDatabase {
    async fn create() -> TestDatabase {
        let admin_url = std::env::var("SHIPIT_TEST_POSTGRES_URL").unwrap_or_else(|_| {
            panic!("SHIPIT_TEST_POSTGRES_URL is not set: run the tests with scripts/test, which starts PostgreSQL")
        });
        let name = format!("shipit_e2e_{:08x}", rand::random::<u32>());
        let (client, connection) = tokio_postgres::connect(&admin_url, tokio_postgres::NoTls)
            .await
            .expect("the test PostgreSQL answers");
        tokio::spawn(connection);
        client
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .unwrap();
        let url = match admin_url.rsplit_once('/') {
            Some((server, _)) => format!("{server}/{name}"),
            None => panic!("SHIPIT_TEST_POSTGRES_URL has no database part"),
        };
        TestDatabase {
            admin_url,
            name,
            url,
        }
    }

    async fn drop_it(self) {
        let (client, connection) = tokio_postgres::connect(&self.admin_url, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(connection);
        let _ = client
            .batch_execute(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ))
            .await;
    }
}

/// Points the configuration `write_config` wrote at the PostgreSQL database in
/// `E2E_DATABASE_URL` instead of SQLite.
fn use_postgres(dir: &Path) {
    let config = std::fs::read_to_string(dir.join("daemon.yaml"))
        .unwrap()
        .replace(
            "  sqlite: daemon.db",
            "  postgres: { url_env: E2E_DATABASE_URL }",
        );
    std::fs::write(dir.join("daemon.yaml"), config).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_daemons_on_one_postgresql_run_each_delivery_exactly_once() {
    let scenario = Scenario::new("daemon-pg");
    let project = small_project(scenario.name(), 0);
    let sha = head_sha(&project);
    let database = TestDatabase::create().await;
    let origin = tempfile::tempdir().unwrap();
    let clone_url = bare_clone(&project, &origin.path().join("origin.git"));
    // Two daemons, each with a folder (and so a daemon id) of its own, one database.
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let envs = [
        ("E2E_GITHUB_SECRET", SECRET),
        ("E2E_DATABASE_URL", database.url.as_str()),
    ];
    let daemons: Vec<Daemon> = dirs
        .iter()
        .map(|dir| {
            write_config(dir.path(), "acme/small", &clone_url, "[\"*\"]", "");
            use_postgres(dir.path());
            Daemon::start(dir.path(), &envs)
        })
        .collect();

    // 200 deliveries to distinct branches (none supersedes another), half to each daemon, and
    // every fourth one delivered again to the other daemon.
    const DELIVERIES: usize = 200;
    let mut duplicates = 0;
    for i in 0..DELIVERIES {
        let delivery = format!("pg-delivery-{i}");
        let body = github_push("acme/small", &format!("refs/heads/b{i}"), &sha, "push");
        let first = &daemons[i % 2];
        let (status, answer) = send_push(&first.url(""), &delivery, &body).await.unwrap();
        assert_eq!(status, 202, "{answer}");
        if i % 4 == 0 {
            let other = &daemons[(i + 1) % 2];
            let (status, answer) = send_push(&other.url(""), &delivery, &body).await.unwrap();
            assert_eq!(
                (status, &answer["duplicate"]),
                (200, &true.into()),
                "{answer}"
            );
            duplicates += 1;
        }
    }
    assert_eq!(duplicates, DELIVERIES / 4);

    let queue = PostgresQueue::new(&database.url).unwrap();
    let deadline = Instant::now() + Duration::from_secs(600);
    let runs = loop {
        let runs = queue.list(10_000).await.unwrap();
        if runs.iter().all(|run| is_final(run.state)) {
            break runs;
        }
        assert!(
            Instant::now() < deadline,
            "runs unfinished after 600 s:\n{}\n{}",
            daemons[0].logs(),
            daemons[1].logs()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert_eq!(runs.len(), DELIVERIES);
    let mut per_delivery: BTreeMap<String, usize> = BTreeMap::new();
    for run in &runs {
        assert_eq!(run.state, QueueState::Succeeded, "{run:?}");
        if let Trigger::Webhook { delivery_id } = &run.run.trigger {
            *per_delivery.entry(delivery_id.clone()).or_default() += 1;
        }
    }
    assert_eq!(per_delivery.len(), DELIVERIES);
    assert!(per_delivery.values().all(|count| *count == 1));
    // Both daemons executed runs, and each run was journaled once.
    let executors: BTreeSet<_> = runs.iter().filter_map(|r| r.claimed_by.clone()).collect();
    assert_eq!(executors.len(), 2, "{executors:?}");
    let journaled = PostgresRunStore::new(&database.url)
        .unwrap()
        .list()
        .await
        .unwrap();
    assert_eq!(journaled.len(), DELIVERIES);
    drop(daemons);
    database.drop_it().await;
}

/// PostgreSQL goes away while a run builds (its connections dropped, new ones refused, for
/// longer than the build): the run waits, nothing of it fails, and once the database is back
/// it ends `succeeded` with its journal and log whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_outage_mid_run_pauses_the_run_and_loses_nothing() {
    let scenario = Scenario::new("daemon-outage");
    // A build of its own (the scenario's name in a file), so no cache cuts its 6 s short.
    let project = Project::with_docker();
    project.file(
        "app/Dockerfile",
        format!(
            "FROM {}\nCOPY hello.txt /hello.txt\nRUN sleep 6\n",
            base_image()
        ),
    );
    project.file("app/hello.txt", format!("{}\n", scenario.name()));
    project.file(
        "shipit.yaml",
        format!(
            "version: 1\nname: {}\nimages:\n  app:\n    context: app\n",
            scenario.name()
        ),
    );
    project.commit();
    let sha = head_sha(&project);
    let database = TestDatabase::create().await;
    // The daemon reaches PostgreSQL through a proxy the test cuts.
    let (server, rest) = database
        .url
        .split_once('@')
        .and_then(|(user, rest)| Some((user, rest.split_once('/')?)))
        .map(|(user, (host_port, name))| {
            (format!("{user}@"), (host_port.to_owned(), name.to_owned()))
        })
        .expect("SHIPIT_TEST_POSTGRES_URL is postgres://user:password@host:port/db");
    let upstream: std::net::SocketAddr = rest.0.parse().expect("the server is host:port");
    let proxy = TcpCut::start(upstream).await;
    let through_proxy = format!("{server}{}/{}", proxy.addr, rest.1);
    let dir = tempfile::tempdir().unwrap();
    let clone_url = bare_clone(&project, &dir.path().join("origin.git"));
    write_config(dir.path(), "acme/outage", &clone_url, "[main]", "");
    use_postgres(dir.path());
    let daemon = Daemon::start(
        dir.path(),
        &[
            ("E2E_GITHUB_SECRET", SECRET),
            ("E2E_DATABASE_URL", through_proxy.as_str()),
        ],
    );
    let body = github_push(
        "acme/outage",
        "refs/heads/main",
        &sha,
        "build through an outage",
    );
    let (status, answer) = send_push(&daemon.url(""), "outage-delivery-1", &body)
        .await
        .expect("the daemon answers");
    assert_eq!(status, 202, "{answer}\n{}", daemon.logs());
    let id = answer["runs"][0].as_i64().expect("a run is queued");

    // The test reads the database directly, not through the proxy.
    let queue = PostgresQueue::new(&database.url).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let run = queue.get(id).await.unwrap();
        if run.state == QueueState::Running && run.run_id.is_some() {
            break;
        }
        assert!(
            Instant::now() < deadline && !is_final(run.state),
            "the run did not start: {run:?}\n{}",
            daemon.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    proxy.cut();
    // Longer than the rest of the build: its end must be journaled while the database is away.
    tokio::time::sleep(Duration::from_secs(10)).await;
    let during = queue.get(id).await.unwrap();
    assert_eq!(
        during.state,
        QueueState::Running,
        "{during:?}\n{}",
        daemon.logs()
    );
    assert!(
        proxy.refused() > 0,
        "the daemon never tried the database while it was away"
    );
    proxy.restore();

    let deadline = Instant::now() + Duration::from_secs(120);
    let run = loop {
        let run = queue.get(id).await.unwrap();
        if is_final(run.state) {
            break run;
        }
        assert!(
            Instant::now() < deadline,
            "the run did not end after the database came back: {run:?}\n{}",
            daemon.logs()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let lines: Vec<String> = queue
        .log_after(id, 0, 1000)
        .await
        .unwrap()
        .into_iter()
        .map(|(_, line)| line)
        .collect();
    assert_eq!(
        run.state,
        QueueState::Succeeded,
        "{run:?}\nlog: {lines:#?}\ndaemon log:\n{}",
        daemon.logs()
    );
    let record = PostgresRunStore::new(&database.url)
        .unwrap()
        .load(run.run_id.as_deref().unwrap())
        .await
        .unwrap();
    assert_eq!(record.stages.len(), 1, "{record:?}");
    assert_eq!(
        record.stages[0].status,
        shipit::journal::StageStatus::Succeeded,
        "{record:?}"
    );
    // The log has the run from its start to its end, written while the database was away.
    assert!(
        lines.iter().any(|l| l.contains("starting run")),
        "{lines:#?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("build:app") && l.contains("succeeded")),
        "{lines:#?}"
    );
    assert!(
        daemon
            .logs()
            .contains("the database is unreachable; the run waits for it"),
        "{}",
        daemon.logs()
    );
    drop(daemon);
    drop(proxy);
    database.drop_it().await;
}
