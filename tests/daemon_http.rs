//! `shipit daemon` as a sender sees it: the real binary on 127.0.0.1 (port chosen by the
//! system), real signed requests over HTTP, the SQLite queue on disk read back through a
//! second connection. One test per item of the webhook security checklist (missing header,
//! wrong signature, malformed signature, empty secret, nothing echoed, deduplication, 202 after
//! the durable record, `[skip ci]`, health and readiness), plus limits and bad input.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use shipit::daemon::queue::{Queue, QueueState, SqliteQueue};
use shipit::daemon::webhooks::sign_hmac_sha256;
use support::daemon::client;

const GITHUB_SECRET: &str = "gh-test-secret-3f9a";
const GITLAB_SECRET: &str = "gl-test-token-77c1";
const GENERIC_SECRET: &str = "generic-test-secret-0b2e";
/// An API token and its digest as the configuration lists it.
const API_TOKEN: &str = "api-token-for-tests";
const PUSH: &str = include_str!("../src/daemon/webhooks/fixtures/github-push.json");
const PUSH_SKIP_CI: &str = include_str!("../src/daemon/webhooks/fixtures/github-push-skip-ci.json");
const GITLAB_PUSH: &str = include_str!("../src/daemon/webhooks/fixtures/gitlab-push.json");
const PUSH_SHA: &str = "a41f5c8e9b7d6c5e4f3a2b1c0d9e8f7a6b5c4d3e";

fn api_token_digest() -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(API_TOKEN.as_bytes()))
}

fn config_text(extra: &str) -> String {
    format!(
        r#"listen: 127.0.0.1:0
# Ingest only: these tests look at what is queued, and nothing here may be fetched.
concurrency: 0
state:
  sqlite: daemon.db
max_body_bytes: 65536
sources:
  github: {{ secret_env: TEST_GITHUB_SECRET }}
  gitlab: {{ secret_env: TEST_GITLAB_SECRET }}
  generic: {{ secret_file: generic.secret }}
api:
  tokens: ["sha256:{digest}"]
repositories:
  - name: acme/shop
    clone_url: /nonexistent/acme/shop.git
    branches: [main]
    environments:
      main: production
{extra}"#,
        digest = api_token_digest()
    )
}

/// A running `shipit daemon` in a folder of its own, with the sources' secrets.
struct Daemon {
    /// Declared first: dropped (the process killed) before its folder is removed.
    inner: support::daemon::Daemon,
    dir: tempfile::TempDir,
}

/// The GitHub and GitLab secrets, then `envs` (which win: a later variable overrides).
fn with_secrets<'a>(envs: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut all = vec![
        ("TEST_GITHUB_SECRET", GITHUB_SECRET),
        ("TEST_GITLAB_SECRET", GITLAB_SECRET),
    ];
    all.extend_from_slice(envs);
    all
}

/// `shipit daemon` for `dir/daemon.yaml` with the sources' secrets in its environment.
fn daemon_command(dir: &Path, envs: &[(&str, &str)]) -> Command {
    support::daemon::daemon_command(dir, &with_secrets(envs))
}

impl Daemon {
    fn start() -> Daemon {
        Self::start_with(&config_text(""), &[])
    }

    fn start_with(config: &str, envs: &[(&str, &str)]) -> Daemon {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("daemon.yaml"), config).unwrap();
        std::fs::write(
            dir.path().join("generic.secret"),
            format!("{GENERIC_SECRET}\n"),
        )
        .unwrap();
        Daemon {
            inner: support::daemon::Daemon::start(dir.path(), &with_secrets(envs)),
            dir,
        }
    }

    fn url(&self, path: &str) -> String {
        self.inner.url(path)
    }

    fn database(&self) -> PathBuf {
        self.dir.path().join("daemon.db")
    }

    /// SIGTERM, then the exit code.
    fn stop(self) -> (i32, String) {
        self.inner.stop(Duration::from_secs(20))
    }
}

fn delivery_id() -> String {
    format!(
        "{:08x}-test-{:04x}",
        std::process::id(),
        rand::random::<u32>()
    )
}

/// A GitHub delivery of `body` (JSON) signed with `secret`.
fn github(
    daemon: &Daemon,
    body: &str,
    secret: Option<&str>,
    delivery: &str,
) -> reqwest::RequestBuilder {
    github_as(daemon, "application/json", body, secret, delivery)
}

fn github_as(
    daemon: &Daemon,
    content_type: &str,
    body: &str,
    secret: Option<&str>,
    delivery: &str,
) -> reqwest::RequestBuilder {
    let mut request = client()
        .post(daemon.url("/hooks/github"))
        .header("content-type", content_type)
        .header("x-github-event", "push")
        .header("x-github-delivery", delivery)
        .body(body.to_owned());
    if let Some(secret) = secret {
        request = request.header(
            "x-hub-signature-256",
            sign_hmac_sha256(secret, body.as_bytes()),
        );
    }
    request
}

async fn json(response: reqwest::Response) -> (u16, serde_json::Value) {
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    let value = serde_json::from_str(&text).unwrap_or_else(|_| serde_json::Value::String(text));
    (status, value)
}

#[tokio::test]
async fn a_delivery_without_the_signature_header_is_refused() {
    let daemon = Daemon::start();
    let (status, body) = json(
        github(&daemon, PUSH, None, &delivery_id())
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 401);
    assert_eq!(body, serde_json::json!({ "error": "unauthorized" }));
    let runs = SqliteQueue::new(daemon.database()).list(10).await.unwrap();
    assert!(runs.is_empty(), "{runs:?}");
}

#[tokio::test]
async fn a_delivery_signed_with_another_secret_is_refused() {
    let daemon = Daemon::start();
    let response = github(&daemon, PUSH, Some("not-the-secret"), &delivery_id())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 401);
    let runs = SqliteQueue::new(daemon.database()).list(10).await.unwrap();
    assert!(runs.is_empty(), "{runs:?}");
}

#[tokio::test]
async fn a_signature_of_the_wrong_length_or_encoding_is_refused() {
    let daemon = Daemon::start();
    let good = sign_hmac_sha256(GITHUB_SECRET, PUSH.as_bytes());
    for header in [
        good[..good.len() - 1].to_owned(),
        format!("{good}0"),
        format!("sha256={}", "g".repeat(64)),
        good.replace("sha256=", "sha1="),
        good.trim_start_matches("sha256=").to_owned(),
    ] {
        let response = github(&daemon, PUSH, None, &delivery_id())
            .header("x-hub-signature-256", header.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 401, "{header}");
    }
    // The same signature, well formed, is accepted: the refusals above were about the form.
    let response = github(&daemon, PUSH, None, &delivery_id())
        .header("x-hub-signature-256", good)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 202);
}

#[test]
fn an_empty_secret_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("daemon.yaml"), config_text("")).unwrap();
    std::fs::write(dir.path().join("generic.secret"), "\n").unwrap();
    let output = daemon_command(dir.path(), &[("TEST_GITHUB_SECRET", "")])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(
            "sources.github.secret_env: environment variable TEST_GITHUB_SECRET is empty"
        ),
        "{stderr}"
    );
    assert!(
        stderr.contains("sources.generic.secret_file:") && stderr.contains("is empty"),
        "{stderr}"
    );
    assert!(!stderr.contains("listening"), "{stderr}");
}

#[tokio::test]
async fn neither_the_expected_mac_nor_the_received_token_is_echoed() {
    let daemon = Daemon::start();
    let expected = sign_hmac_sha256(GITHUB_SECRET, PUSH.as_bytes());
    let sent = sign_hmac_sha256("wrong", PUSH.as_bytes());
    let response = github(&daemon, PUSH, None, &delivery_id())
        .header("x-hub-signature-256", sent.clone())
        .send()
        .await
        .unwrap();
    let text = response.text().await.unwrap();
    let gitlab = client()
        .post(daemon.url("/hooks/gitlab"))
        .header("content-type", "application/json")
        .header("x-gitlab-event", "Push Hook")
        .header("x-gitlab-event-uuid", delivery_id())
        .header("x-gitlab-token", "a-wrong-gitlab-token")
        .body(GITLAB_PUSH)
        .send()
        .await
        .unwrap();
    assert_eq!(gitlab.status().as_u16(), 401);
    let gitlab_text = gitlab.text().await.unwrap();
    let (_, logs) = daemon.stop();
    for needle in [
        &expected[7..],
        &sent[7..],
        GITHUB_SECRET,
        GITLAB_SECRET,
        GENERIC_SECRET,
        "a-wrong-gitlab-token",
    ] {
        assert!(!text.contains(needle), "{needle} in the body: {text}");
        assert!(
            !gitlab_text.contains(needle),
            "{needle} in the body: {gitlab_text}"
        );
        assert!(!logs.contains(needle), "{needle} in the logs:\n{logs}");
    }
    // The refusal itself is logged, with its reason, for the operator.
    assert!(logs.contains("signature_mismatch"), "{logs}");
}

#[tokio::test]
async fn a_redelivery_with_the_same_id_is_recorded_once() {
    let daemon = Daemon::start();
    let id = delivery_id();
    let (status, first) = json(
        github(&daemon, PUSH, Some(GITHUB_SECRET), &id)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 202, "{first}");
    assert_eq!(first["runs"].as_array().unwrap().len(), 1, "{first}");
    let (status, second) = json(
        github(&daemon, PUSH, Some(GITHUB_SECRET), &id)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{second}");
    assert_eq!(
        second,
        serde_json::json!({ "delivery": id, "duplicate": true })
    );
    let runs = SqliteQueue::new(daemon.database()).list(10).await.unwrap();
    assert_eq!(runs.len(), 1, "{runs:?}");
}

#[tokio::test]
async fn a_push_is_answered_202_fast_and_only_after_its_run_is_on_disk() {
    let daemon = Daemon::start();
    let id = delivery_id();
    let started = Instant::now();
    let (status, body) = json(
        github(&daemon, PUSH, Some(GITHUB_SECRET), &id)
            .send()
            .await
            .unwrap(),
    )
    .await;
    let took = started.elapsed();
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["delivery"], id.as_str());
    // Fast: well inside GitHub's 10 s, with room for a loaded test machine.
    assert!(took < Duration::from_secs(2), "answered in {took:?}");
    let run_id = body["runs"][0].as_i64().unwrap();
    // A second connection to the database file, opened after the answer, sees the run.
    let run = SqliteQueue::new(daemon.database())
        .get(run_id)
        .await
        .unwrap();
    assert_eq!(run.state, QueueState::Queued);
    assert_eq!(run.run.repository, "acme/shop");
    assert_eq!(run.run.git_ref, "refs/heads/main");
    assert_eq!(run.run.sha, PUSH_SHA);
    assert_eq!(run.run.pipeline_file, "shipit.yaml");
    assert_eq!(run.run.environment.as_deref(), Some("production"));
}

#[tokio::test]
async fn skip_ci_is_recorded_as_ignored_and_queues_nothing() {
    let daemon = Daemon::start();
    let id = delivery_id();
    let (status, body) = json(
        github(&daemon, PUSH_SKIP_CI, Some(GITHUB_SECRET), &id)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(
        body,
        serde_json::json!({ "delivery": id, "runs": [], "ignored": "[skip ci] in the head commit message" })
    );
    assert!(
        SqliteQueue::new(daemon.database())
            .list(10)
            .await
            .unwrap()
            .is_empty()
    );
    // Recorded: the same delivery again is a duplicate.
    let (status, _) = json(
        github(&daemon, PUSH_SKIP_CI, Some(GITHUB_SECRET), &id)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn an_unknown_branch_is_accepted_and_says_why_nothing_runs() {
    let daemon = Daemon::start();
    let body = PUSH.replace("\"refs/heads/main\"", "\"refs/heads/feature/x\"");
    let (status, answer) = json(
        github(&daemon, &body, Some(GITHUB_SECRET), &delivery_id())
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 202);
    assert_eq!(
        answer["ignored"],
        "branch feature/x matches none of `branches` (main)"
    );
}

#[tokio::test]
async fn healthz_answers_while_the_process_serves() {
    let daemon = Daemon::start();
    let response = client().get(daemon.url("/healthz")).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(response.text().await.unwrap(), "ok");
}

#[tokio::test]
async fn readyz_is_ready_when_the_queue_and_docker_answer() {
    let docker_host = support::testenv("SHIPIT_TEST_DOCKER_HOST");
    let daemon = Daemon::start_with(&config_text(""), &[("DOCKER_HOST", &docker_host)]);
    let (status, body) = json(client().get(daemon.url("/readyz")).send().await.unwrap()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, serde_json::json!({ "queue": "ok", "docker": "ok" }));
}

#[tokio::test]
async fn readyz_names_the_docker_daemon_when_it_is_down() {
    let daemon = Daemon::start_with(
        &config_text(""),
        &[("DOCKER_HOST", "unix:///nonexistent/shipit-test/docker.sock")],
    );
    let (status, body) = json(client().get(daemon.url("/readyz")).send().await.unwrap()).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["queue"], "ok");
    assert!(
        body["docker"].as_str().unwrap().starts_with("down: "),
        "{body}"
    );
}

#[tokio::test]
async fn a_body_over_the_limit_is_413() {
    let daemon = Daemon::start();
    let big = format!("{{\"padding\":\"{}\"}}", "x".repeat(70_000));
    let response = github(&daemon, &big, Some(GITHUB_SECRET), &delivery_id())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 413);
}

#[tokio::test]
async fn a_signed_body_that_is_not_json_is_400_with_a_short_reason() {
    let daemon = Daemon::start();
    let (status, body) = json(
        github(&daemon, "not json", Some(GITHUB_SECRET), &delivery_id())
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 400);
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .starts_with("the body is not valid JSON"),
        "{body}"
    );
    let truncated = &PUSH[..PUSH.len() / 2];
    let (status, body) = json(
        github(&daemon, truncated, Some(GITHUB_SECRET), &delivery_id())
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 400);
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .starts_with("the JSON body ends early"),
        "{body}"
    );
}

#[tokio::test]
async fn a_wrong_content_type_is_415_and_a_form_encoded_github_delivery_is_read() {
    let daemon = Daemon::start();
    let response = github_as(
        &daemon,
        "text/plain",
        PUSH,
        Some(GITHUB_SECRET),
        &delivery_id(),
    )
    .send()
    .await
    .unwrap();
    assert_eq!(response.status().as_u16(), 415);
    let form = format!("payload={}", urlencode(PUSH));
    let response = github_as(
        &daemon,
        "application/x-www-form-urlencoded",
        &form,
        Some(GITHUB_SECRET),
        &delivery_id(),
    )
    .send()
    .await
    .unwrap();
    assert_eq!(response.status().as_u16(), 202);
}

fn urlencode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[tokio::test]
async fn github_ping_is_answered_pong() {
    let daemon = Daemon::start();
    let body = include_str!("../src/daemon/webhooks/fixtures/github-ping.json");
    let response = client()
        .post(daemon.url("/hooks/github"))
        .header("content-type", "application/json")
        .header("x-github-event", "ping")
        .header("x-github-delivery", delivery_id())
        .header(
            "x-hub-signature-256",
            sign_hmac_sha256(GITHUB_SECRET, body.as_bytes()),
        )
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(response.text().await.unwrap(), "pong");
}

#[tokio::test]
async fn gitlab_and_generic_deliveries_queue_runs() {
    let daemon = Daemon::start();
    let (status, body) = json(
        client()
            .post(daemon.url("/hooks/gitlab"))
            .header("content-type", "application/json")
            .header("x-gitlab-event", "Push Hook")
            .header("x-gitlab-event-uuid", delivery_id())
            .header("x-gitlab-token", GITLAB_SECRET)
            .body(GITLAB_PUSH)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["runs"].as_array().unwrap().len(), 1, "{body}");
    let generic =
        format!(r#"{{"repository":"acme/shop","ref":"refs/heads/main","sha":"{PUSH_SHA}"}}"#);
    let (status, body) = json(
        client()
            .post(daemon.url("/hooks/generic"))
            .header("content-type", "application/json")
            .header("x-shipit-delivery", delivery_id())
            .header(
                "x-shipit-signature-256",
                sign_hmac_sha256(GENERIC_SECRET, generic.as_bytes()),
            )
            .body(generic)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["runs"].as_array().unwrap().len(), 1, "{body}");
}

#[tokio::test]
async fn a_source_that_is_not_configured_is_404() {
    let config = config_text("").replace("  gitlab: { secret_env: TEST_GITLAB_SECRET }\n", "");
    let daemon = Daemon::start_with(&config, &[]);
    let response = client()
        .post(daemon.url("/hooks/gitlab"))
        .header("content-type", "application/json")
        .header("x-gitlab-token", GITLAB_SECRET)
        .body(GITLAB_PUSH)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 404);
}

#[test]
fn a_configuration_with_errors_exits_2_naming_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("daemon.yaml"),
        "listen: 127.0.0.1:0\nsources:\n  github:\n    secret_env: TEST_GITHUB_SECRET\n    verify: false\n",
    )
    .unwrap();
    let output = daemon_command(dir.path(), &[])
        .arg("--check")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    let expected = format!(
        "error: {}:5:5: sources.github.verify: unknown field `verify`",
        dir.path().join("daemon.yaml").display()
    );
    assert!(stderr.starts_with(&expected), "{stderr}");
}

#[test]
fn check_says_a_good_configuration_is_valid() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("daemon.yaml"), config_text("")).unwrap();
    std::fs::write(dir.path().join("generic.secret"), "s\n").unwrap();
    let output = daemon_command(dir.path(), &[])
        .arg("--check")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("the daemon configuration is valid (listen 127.0.0.1:0, sources: github, gitlab, generic, 1 repositories, 1 API tokens)"), "{stderr}");
}

#[tokio::test]
async fn the_api_needs_a_listed_token_and_lists_triggers_and_cancels_runs() {
    let daemon = Daemon::start();
    let response = client().get(daemon.url("/api/runs")).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 401);
    let response = client()
        .get(daemon.url("/api/runs"))
        .bearer_auth("not-a-token")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 401);
    let (status, body) = json(
        client()
            .post(daemon.url("/api/runs"))
            .bearer_auth(API_TOKEN)
            .header("content-type", "application/json")
            .body(format!(
                r#"{{"repository":"acme/shop","ref":"refs/heads/main","sha":"{PUSH_SHA}"}}"#
            ))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let id = body["run"].as_i64().unwrap();
    let (status, run) = json(
        client()
            .get(daemon.url(&format!("/api/runs/{id}")))
            .bearer_auth(API_TOKEN)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{run}");
    assert_eq!(run["state"], "queued");
    assert_eq!(run["environment"], "production");
    assert_eq!(run["trigger"]["kind"], "api");
    assert!(
        run["trigger"]["token"]
            .as_str()
            .unwrap()
            .starts_with("sha256:"),
        "{run}"
    );
    let (status, list) = json(
        client()
            .get(daemon.url("/api/runs"))
            .bearer_auth(API_TOKEN)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(list["runs"][0]["id"], id);
    let (status, cancelled) = json(
        client()
            .post(daemon.url(&format!("/api/runs/{id}/cancel")))
            .bearer_auth(API_TOKEN)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{cancelled}");
    assert_eq!(cancelled["state"], "cancelled");
    let (status, retried) = json(
        client()
            .post(daemon.url(&format!("/api/runs/{id}/retry")))
            .bearer_auth(API_TOKEN)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 201, "{retried}");
    let retry = SqliteQueue::new(daemon.database())
        .get(retried["run"].as_i64().unwrap())
        .await
        .unwrap();
    assert_eq!(retry.run.sha, PUSH_SHA);
    let (status, _) = json(
        client()
            .get(daemon.url("/api/runs/999999"))
            .bearer_auth(API_TOKEN)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn a_run_log_streams_stored_lines_then_new_ones_then_ends() {
    let daemon = Daemon::start();
    let (_, body) = json(
        github(&daemon, PUSH, Some(GITHUB_SECRET), &delivery_id())
            .send()
            .await
            .unwrap(),
    )
    .await;
    let id = body["runs"][0].as_i64().unwrap();
    let queue = SqliteQueue::new(daemon.database());
    queue.append_log(id, &["first line".into()]).await.unwrap();
    let response = client()
        .get(daemon.url(&format!("/api/runs/{id}/log")))
        .bearer_auth(API_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    // Another process (here the test) appends a line and ends the run while the stream is open.
    let writer = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(600)).await;
        queue.append_log(id, &["second line".into()]).await.unwrap();
        queue.request_cancel(id).await.unwrap();
    });
    let text = tokio::time::timeout(Duration::from_secs(15), response.text())
        .await
        .expect("the stream ends once the run is over")
        .unwrap();
    writer.await.unwrap();
    let events: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("data:") || l.starts_with("id:") || l.starts_with("event:"))
        .collect();
    assert_eq!(
        events,
        [
            "id: 1",
            "data: first line",
            "id: 2",
            "data: second line",
            "event: end",
            "data: cancelled"
        ],
        "{text}"
    );
}

#[tokio::test]
async fn metrics_count_webhook_outcomes_and_runs_by_state() {
    let daemon = Daemon::start();
    github(&daemon, PUSH, Some(GITHUB_SECRET), &delivery_id())
        .send()
        .await
        .unwrap();
    github(&daemon, PUSH, None, &delivery_id())
        .send()
        .await
        .unwrap();
    let text = client()
        .get(daemon.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for line in [
        r#"shipit_daemon_webhook_deliveries_total{source="github",outcome="queued"} 1"#,
        r#"shipit_daemon_webhook_deliveries_total{source="github",outcome="signature_missing"} 1"#,
        r#"shipit_daemon_runs{state="queued"} 1"#,
        "shipit_daemon_queue_depth 1",
        r#"shipit_daemon_http_request_duration_seconds_count{method="POST",route="/hooks/github",status="202"} 1"#,
    ] {
        assert!(text.contains(line), "{line} missing from:\n{text}");
    }
}

#[tokio::test]
async fn sigterm_stops_the_daemon_gracefully() {
    let daemon = Daemon::start();
    let (code, logs) = daemon.stop();
    assert_eq!(code, 0, "{logs}");
    assert!(logs.contains("SIGTERM: shutting down"), "{logs}");
    assert!(logs.contains("\"stopped\""), "{logs}");
}
