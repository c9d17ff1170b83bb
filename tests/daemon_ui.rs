//! The daemon's web page as a person sees it: the real `shipit daemon` binary on 127.0.0.1 with a
//! configuration of its own, runs queued through its API and a signed webhook (real rows in its
//! SQLite queue), and headless Chromium driven through chromedriver (WebDriver). The page is
//! given the API token through its form, lists the runs with their states, follows one run's log
//! while the test appends lines to it through the queue, and its screenshot is decoded and
//! checked, then kept under the target folder for a human to look at.
//!
//! Chromium and chromedriver come from Debian (`scripts/testenv up` installs them); without them
//! the test fails and says so. Chromium is started with its background networking off, its host
//! resolver mapped to nothing but 127.0.0.1, and is only ever pointed at the daemon's loopback URL.

mod support;

use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};
use shipit::daemon::queue::{Finished, Queue, QueueId, QueueState, SqliteQueue};
use shipit::daemon::webhooks::sign_hmac_sha256;

const API_TOKEN: &str = "ui-test-token-5d1e";
const GITHUB_SECRET: &str = "ui-test-github-secret-91c4";
const PUSH: &str = include_str!("../src/daemon/webhooks/fixtures/github-push.json");
/// The viewport Chromium renders into; the screenshot has exactly this size.
const WIDTH: u32 = 1280;
const HEIGHT: u32 = 900;
/// How long the page gets to show what the test expects (it refreshes every 3 s).
const PAGE_WAIT: Duration = Duration::from_secs(20);
/// The page's own names for the queue states it colours, and their badge backgrounds (app.css).
const BADGE_BACKGROUNDS: [(&str, [u8; 3]); 2] = [
    ("running", [0xdd, 0xf4, 0xff]),
    ("failed", [0xff, 0xeb, 0xe9]),
];

// ------------------------------------------------------------------------------------- daemon

/// A running `shipit daemon` in a folder of its own.
struct Daemon {
    /// Declared first: dropped (the process killed) before its folder is removed.
    inner: support::daemon::Daemon,
    dir: tempfile::TempDir,
}

impl Daemon {
    fn start(remote: &SilentRemote) -> Daemon {
        let dir = tempfile::tempdir().unwrap();
        let digest = {
            use sha2::Digest;
            hex::encode(sha2::Sha256::digest(API_TOKEN.as_bytes()))
        };
        // The daemon only accepts (concurrency 0): the test holds runs itself (see
        // `hold_a_run`) and writes their logs, so what the page shows is what the test made.
        // The clone URLs lead to a loopback server that accepts and never answers, so that
        // nothing could be fetched even by a worker.
        let config = format!(
            r##"listen: 127.0.0.1:0
state:
  sqlite: daemon.db
concurrency: 0
sources:
  github: {{ secret_env: UI_TEST_GITHUB_SECRET }}
api:
  tokens: ["sha256:{digest}"]
repositories:
  - name: acme/shop
    clone_url: http://{remote}/acme/shop.git
    branches: [main, "feature/*"]
  - name: acme/billing
    clone_url: http://{remote}/acme/billing.git
    branches: [main]
"##,
            remote = remote.address,
        );
        std::fs::write(dir.path().join("daemon.yaml"), config).unwrap();
        let inner =
            support::daemon::Daemon::start(dir.path(), &[("UI_TEST_GITHUB_SECRET", GITHUB_SECRET)]);
        assert!(
            inner.address.ip().is_loopback(),
            "the daemon must listen on loopback only, not {}",
            inner.address
        );
        Daemon { inner, dir }
    }

    fn url(&self, path: &str) -> String {
        self.inner.url(path)
    }

    /// The daemon's queue, opened a second time by the test (SQLite in WAL mode shares it).
    fn queue(&self) -> SqliteQueue {
        SqliteQueue::new(self.dir.path().join("daemon.db"))
    }

    fn logs(&self) -> String {
        self.inner.logs()
    }
}

/// A git remote on loopback that accepts connections and never answers them.
struct SilentRemote {
    address: SocketAddr,
}

impl SilentRemote {
    fn start() -> SilentRemote {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            // Held open, unanswered, until the test process ends.
            let mut held = Vec::new();
            for stream in listener.incoming().map_while(Result::ok) {
                held.push(stream);
            }
        });
        SilentRemote { address }
    }
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}

/// Queues a run through the API, as a user with the token would; its queue id.
async fn trigger(daemon: &Daemon, repository: &str, git_ref: &str, sha: &str) -> QueueId {
    let response = http()
        .post(daemon.url("/api/runs"))
        .bearer_auth(API_TOKEN)
        .json(&json!({ "repository": repository, "ref": git_ref, "sha": sha }))
        .send()
        .await
        .unwrap();
    let status = response.status();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    assert_eq!(
        status.as_u16(),
        201,
        "trigger {repository} {git_ref}: {body}"
    );
    body["run"]
        .as_i64()
        .unwrap_or_else(|| panic!("no run id in {body}"))
}

/// Delivers the GitHub push fixture (acme/shop, main), signed; its queue id.
async fn push_webhook(daemon: &Daemon, queue: &SqliteQueue) -> QueueId {
    let before: Vec<QueueId> = queue
        .list(100)
        .await
        .unwrap()
        .iter()
        .map(|r| r.id)
        .collect();
    let response = http()
        .post(daemon.url("/hooks/github"))
        .header("content-type", "application/json")
        .header("x-github-event", "push")
        .header(
            "x-github-delivery",
            format!("ui-test-{:x}", std::process::id()),
        )
        .header(
            "x-hub-signature-256",
            sign_hmac_sha256(GITHUB_SECRET, PUSH.as_bytes()),
        )
        .body(PUSH)
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.status().as_u16(),
        202,
        "the signed push was refused"
    );
    queue
        .list(100)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.id)
        .find(|id| !before.contains(id))
        .expect("the push queued a run")
}

/// Claims a queued run for the test, as a daemon of its own would: it is `running` for as long
/// as the test holds it, and the daemon's worker leaves it alone. The worker may have taken some
/// of the runs already, so whichever the queue hands out is the one.
async fn hold_a_run(queue: &SqliteQueue) -> QueueId {
    queue
        .claim("ui-test", Duration::from_secs(600))
        .await
        .unwrap()
        .expect("a queued run for the test to hold (did the daemon's worker take them all?)")
        .id
}

// ------------------------------------------------------------------------------------- browser

/// The env file's program, or Debian's path; a missing one fails the test with what to do.
fn program(variable: &str, debian_path: &str, package: &str) -> PathBuf {
    let path = std::env::var_os(variable)
        .filter(|v| !v.is_empty())
        .map_or_else(|| PathBuf::from(debian_path), PathBuf::from);
    assert!(
        path.is_file(),
        "{} is missing: this test drives headless Chromium. Install it with `scripts/testenv up` \
         (Debian package {package}), or set {variable} to the program",
        path.display()
    );
    path
}

/// chromedriver on a leased loopback port, and the Chromium session it runs.
struct Browser {
    driver: Child,
    client: Option<Client>,
    _profile: tempfile::TempDir,
    _port: support::port_lease::PortLease,
}

impl Browser {
    async fn start() -> Browser {
        let chromium = program("SHIPIT_TEST_CHROMIUM", "/usr/bin/chromium", "chromium");
        let chromedriver = program(
            "SHIPIT_TEST_CHROMEDRIVER",
            "/usr/bin/chromedriver",
            "chromium-driver",
        );
        let port = support::port_lease::lease_ports(1);
        let profile = tempfile::tempdir().unwrap();
        // Its own process group, which the Chromium it starts joins: a test that fails before
        // it closes the session still ends the browser, by ending the group (see Drop).
        let driver = Command::new(&chromedriver)
            .process_group(0)
            .arg(format!("--port={}", port.base))
            .arg("--allowed-ips=127.0.0.1")
            .arg(format!(
                "--log-path={}",
                profile.path().join("chromedriver.log").display()
            ))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("{} does not start: {e}", chromedriver.display()));
        let webdriver = format!("http://127.0.0.1:{}", port.base);
        wait_until_answers(&format!("{webdriver}/status")).await;

        let mut capabilities = serde_json::Map::new();
        capabilities.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": chromium,
                "args": [
                    "--headless=new",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-background-networking",
                    "--disable-breakpad",
                    "--disable-component-update",
                    "--disable-default-apps",
                    "--disable-extensions",
                    "--disable-sync",
                    "--disable-dev-shm-usage",
                    "--no-first-run",
                    "--no-proxy-server",
                    // Nothing but loopback resolves, should anything try.
                    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
                    "--force-device-scale-factor=1",
                    // Colours as the stylesheet names them, so the screenshot can be checked
                    // for the state badges' exact backgrounds.
                    "--force-color-profile=srgb",
                    "--hide-scrollbars",
                    "--lang=en-US",
                    format!("--window-size={WIDTH},{HEIGHT}"),
                    format!("--user-data-dir={}", profile.path().join("chromium").display()),
                ],
            }),
        );
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let client = ClientBuilder::new(connector)
            .capabilities(capabilities)
            .connect(&webdriver)
            .await
            .unwrap_or_else(|e| {
                let log = std::fs::read_to_string(profile.path().join("chromedriver.log"))
                    .unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(30).collect();
                panic!(
                    "chromedriver could not start Chromium: {e}\nlast lines of its log:\n{}",
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                )
            });
        // --window-size sizes the window, toolbar included: size it so that the viewport, and
        // so the screenshot, is exactly WIDTH x HEIGHT.
        let frame = eval(
            &client,
            "return [window.outerWidth - window.innerWidth, window.outerHeight - window.innerHeight];",
        )
        .await;
        let [dx, dy] = [0, 1].map(|i| frame[i].as_u64().unwrap_or(0) as u32);
        client
            .set_window_size(WIDTH + dx, HEIGHT + dy)
            .await
            .unwrap();
        let viewport = eval(&client, "return [window.innerWidth, window.innerHeight];").await;
        assert_eq!(viewport, json!([WIDTH, HEIGHT]), "Chromium's viewport");
        Browser {
            driver,
            client: Some(client),
            _profile: profile,
            _port: port,
        }
    }

    fn client(&self) -> &Client {
        self.client.as_ref().unwrap()
    }

    async fn close(mut self) {
        if let Some(client) = self.client.take() {
            let _ = client.close().await;
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // chromedriver and every Chromium process it started: killing chromedriver alone would
        // leave Chromium running when the session was not closed (a failed test).
        let group = i32::try_from(self.driver.id()).expect("a pid fits in pid_t");
        // SAFETY: kill(2) on the process group our own child leads.
        unsafe { libc::kill(-group, libc::SIGKILL) };
        let _ = self.driver.wait();
    }
}

async fn wait_until_answers(url: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(response) = http().get(url).send().await
            && response.status().is_success()
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{url} did not answer within 20 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Evaluates `body` (a function body that returns a JSON value) in the page.
async fn eval(client: &Client, body: &str) -> Value {
    client.execute(body, vec![]).await.unwrap()
}

/// Polls `body` until it returns `true`, else fails with `what` and the page's last answer.
async fn wait_for(client: &Client, what: &str, body: &str, describe: &str) {
    let deadline = Instant::now() + PAGE_WAIT;
    loop {
        if eval(client, body).await == Value::Bool(true) {
            return;
        }
        if Instant::now() > deadline {
            let state = eval(client, describe).await;
            panic!("the page did not show {what} within {PAGE_WAIT:?}; it shows: {state:#}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The table as the page shows it: per row, its run id, state attribute and cell texts.
const DESCRIBE_TABLE: &str = r##"
return {
  status: document.getElementById("status").textContent,
  notice: document.getElementById("notice").textContent,
  rows: [...document.querySelectorAll("#runs-body tr")].map((tr) => ({
    id: tr.dataset.runId,
    state: tr.dataset.state,
    cells: [...tr.cells].map((c) => c.textContent),
  })),
};"##;

const DESCRIBE_LOG: &str = r##"
return {
  hidden: document.getElementById("log-section").hidden,
  heading: document.getElementById("log-heading").textContent,
  status: document.getElementById("log-status").textContent,
  lines: [...document.querySelectorAll("#log .line")].map((l) => [l.dataset.line, l.querySelector(".t").textContent]),
};"##;

// ------------------------------------------------------------------------------------- screenshot

/// A decoded RGB(A) screenshot.
struct Picture {
    width: u32,
    height: u32,
    channels: usize,
    pixels: Vec<u8>,
}

impl Picture {
    fn decode(png_bytes: &[u8]) -> Picture {
        let decoder = png::Decoder::new(std::io::Cursor::new(png_bytes));
        let mut reader = decoder.read_info().expect("the screenshot is a PNG");
        let mut pixels = vec![0; reader.output_buffer_size().expect("a sane PNG size")];
        let info = reader.next_frame(&mut pixels).expect("the PNG decodes");
        assert_eq!(info.bit_depth, png::BitDepth::Eight, "8-bit screenshot");
        let channels = match info.color_type {
            png::ColorType::Rgb => 3,
            png::ColorType::Rgba => 4,
            other => panic!("unexpected screenshot colour type {other:?}"),
        };
        pixels.truncate(info.buffer_size());
        Picture {
            width: info.width,
            height: info.height,
            channels,
            pixels,
        }
    }

    fn rgb(&self, x: u32, y: u32) -> [u8; 3] {
        let at = (y as usize * self.width as usize + x as usize) * self.channels;
        [self.pixels[at], self.pixels[at + 1], self.pixels[at + 2]]
    }

    /// The distinct colours inside the rectangle (clipped to the picture).
    fn colours(
        &self,
        left: u32,
        top: u32,
        width: u32,
        height: u32,
    ) -> std::collections::HashSet<[u8; 3]> {
        let mut seen = std::collections::HashSet::new();
        for y in top..(top + height).min(self.height) {
            for x in left..(left + width).min(self.width) {
                seen.insert(self.rgb(x, y));
            }
        }
        seen
    }
}

fn screenshot_path() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("daemon-ui");
    std::fs::create_dir_all(&dir).unwrap();
    dir.join("runs-and-live-log.png")
}

// ------------------------------------------------------------------------------------- the test

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_lists_the_runs_and_follows_a_live_log_in_chromium() {
    let remote = SilentRemote::start();
    let daemon = Daemon::start(&remote);
    let queue = daemon.queue();

    // Real rows: a signed push, and runs queued through the API. One ref is made to look like
    // markup: the page must show it as text.
    let pushed = push_webhook(&daemon, &queue).await;
    let feature = trigger(
        &daemon,
        "acme/shop",
        "refs/heads/feature/<b>bold</b>",
        &"b".repeat(40),
    )
    .await;
    let billing = trigger(&daemon, "acme/billing", "refs/heads/main", &"c".repeat(40)).await;
    let tag = trigger(&daemon, "acme/shop", "refs/tags/v1.4.0", &"d".repeat(40)).await;
    let queued = [pushed, feature, billing, tag];

    // The test holds two runs: one it fails at once, one whose log it writes while the page
    // follows it.
    let failed = hold_a_run(&queue).await;
    queue
        .finish(
            "ui-test",
            failed,
            Finished {
                state: QueueState::Failed,
                exit_code: Some(1),
                message: Some("deploy:web failed".into()),
            },
        )
        .await
        .unwrap();
    let live = hold_a_run(&queue).await;
    queue
        .append_log(
            live,
            &[
                "shipit run -f shipit.yaml".into(),
                "build:web  started".into(),
            ],
        )
        .await
        .unwrap();

    let browser = Browser::start().await;
    let page = browser.client();
    page.goto(&daemon.url("/")).await.unwrap();
    assert_eq!(page.title().await.unwrap(), "shipit daemon");

    // The token goes in through the form, stays in this tab's sessionStorage, never in the URL.
    page.find(Locator::Id("token"))
        .await
        .unwrap()
        .send_keys(API_TOKEN)
        .await
        .unwrap();
    page.find(Locator::Css("#token-form button[type=submit]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_for(
        page,
        "the four runs",
        r##"return document.querySelectorAll("#runs-body tr").length === 4;"##,
        DESCRIBE_TABLE,
    )
    .await;
    let stored = eval(
        page,
        r##"return [location.href, sessionStorage.getItem("shipit.apiToken"), document.getElementById("token").value];"##,
    )
    .await;
    assert_eq!(stored[1], API_TOKEN, "the token is kept in sessionStorage");
    assert!(
        !stored[0].as_str().unwrap().contains(API_TOKEN),
        "the token is not in the URL"
    );
    assert_eq!(stored[2], "", "the form forgets the token it handed over");

    // Every run, newest first, with its state as a word (so it reads without colour).
    let table = eval(page, DESCRIBE_TABLE).await;
    let rows = table["rows"].as_array().unwrap();
    let ids: Vec<String> = rows
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_owned())
        .collect();
    let mut newest_first: Vec<String> = queued.iter().map(|id| id.to_string()).collect();
    newest_first.reverse();
    assert_eq!(ids, newest_first, "{table:#}");
    let row = |id: QueueId| {
        rows.iter()
            .find(|r| r["id"].as_str() == Some(id.to_string().as_str()))
            .unwrap()
            .clone()
    };
    assert_eq!(row(failed)["state"], "failed");
    assert_eq!(row(failed)["cells"][4], "failed");
    assert_eq!(row(failed)["cells"][8], "1", "exit code");
    assert_eq!(row(live)["state"], "running");
    assert_eq!(row(live)["cells"][4], "running");
    let feature_row = row(feature);
    assert_eq!(feature_row["cells"][1], "acme/shop");
    assert_eq!(
        feature_row["cells"][2], "feature/<b>bold</b>",
        "the ref is text, not markup"
    );
    assert_eq!(feature_row["cells"][3], "bbbbbbb", "short sha");
    assert_eq!(
        eval(
            page,
            r##"return document.querySelectorAll("#runs-body b, #runs-body img").length;"##
        )
        .await,
        0,
        "no markup from the API reached the page"
    );
    let pushed_row = row(pushed);
    assert_eq!(
        pushed_row["cells"][3], "a41f5c8",
        "the pushed commit, short"
    );
    assert_eq!(pushed_row["cells"][2], "main");

    // Open the live run's log: the lines so far, then each new one as the queue gets it.
    page.find(Locator::Css(&format!(
        "button[data-action=log][data-run-id='{live}']"
    )))
    .await
    .unwrap()
    .click()
    .await
    .unwrap();
    wait_for(
        page,
        "the two lines logged so far",
        r##"return document.querySelectorAll("#log .line").length === 2;"##,
        DESCRIBE_LOG,
    )
    .await;
    let url = eval(page, "return location.href;").await;
    assert!(
        url.as_str().unwrap().ends_with(&format!("#run-{live}")),
        "{url}"
    );

    let mut expected = vec![
        "shipit run -f shipit.yaml".to_owned(),
        "build:web  started".to_owned(),
    ];
    for text in [
        "Step 1/3 : FROM busybox:latest",
        "Step 2/3 : COPY www /www",
        "build:web  succeeded in 2.1s (sha256:0a1b2c3d)",
        "deploy:web <script>alert('not run')</script> started",
    ] {
        queue.append_log(live, &[text.to_owned()]).await.unwrap();
        expected.push(text.to_owned());
        wait_for(
            page,
            &format!("log line {} appended live", expected.len()),
            &format!(
                r##"return document.querySelectorAll("#log .line").length === {};"##,
                expected.len()
            ),
            DESCRIBE_LOG,
        )
        .await;
    }
    let log = eval(page, DESCRIBE_LOG).await;
    let lines: Vec<(String, String)> = log["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l[0].as_str().unwrap().to_owned(),
                l[1].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let numbered: Vec<(String, String)> = expected
        .iter()
        .enumerate()
        .map(|(i, text)| ((i + 1).to_string(), text.clone()))
        .collect();
    assert_eq!(
        lines, numbered,
        "every line once, numbered, in order, as text"
    );
    assert_eq!(
        eval(
            page,
            r##"return document.querySelectorAll("#log script").length;"##
        )
        .await,
        0
    );

    // Nothing was loaded from anywhere but the daemon.
    let resources = eval(
        page,
        "return performance.getEntriesByType('resource').map((e) => e.name);",
    )
    .await;
    let origin = daemon.url("");
    for name in resources.as_array().unwrap() {
        assert!(
            name.as_str().unwrap().starts_with(&origin),
            "{name} is not the daemon's"
        );
    }

    // The screenshot, taken while the log is followed: a PNG of the viewport, not blank, the run
    // table not uniform, the running and the failed run's badges each in its colour.
    let table_box = eval(
        page,
        r##"const r = document.getElementById("runs").getBoundingClientRect();
           return [Math.floor(r.left), Math.floor(r.top), Math.ceil(r.width), Math.ceil(r.height)];"##,
    )
    .await;
    let png_bytes = page.screenshot().await.unwrap();
    let path = screenshot_path();
    std::fs::write(&path, &png_bytes).unwrap();
    let picture = Picture::decode(&png_bytes);
    assert_eq!(
        (picture.width, picture.height),
        (WIDTH, HEIGHT),
        "screenshot size ({})",
        path.display()
    );
    let all = picture.colours(0, 0, WIDTH, HEIGHT);
    assert!(
        all.len() >= 16,
        "only {} colours in {}",
        all.len(),
        path.display()
    );
    let [left, top, width, height] = [0, 1, 2, 3].map(|i| table_box[i].as_u64().unwrap() as u32);
    assert!(
        width > 600 && height > 100,
        "the run table is {width}x{height}"
    );
    let in_table = picture.colours(left, top, width, height);
    assert!(
        in_table.len() >= 8,
        "the run table region is nearly uniform ({} colours) in {}",
        in_table.len(),
        path.display()
    );
    for (state, background) in BADGE_BACKGROUNDS {
        assert!(
            in_table.contains(&background),
            "no {state} badge colour #{} in the run table of {}",
            hex::encode(background),
            path.display()
        );
    }
    eprintln!("screenshot: {}", path.display());

    // The run ends: the stream says so and the table shows it.
    queue
        .finish(
            "ui-test",
            live,
            Finished {
                state: QueueState::Succeeded,
                exit_code: Some(0),
                message: None,
            },
        )
        .await
        .unwrap();
    wait_for(
        page,
        "the live run as succeeded",
        &format!(
            r##"const tr = document.querySelector("#runs-body tr[data-run-id='{live}']");
               return !!tr && tr.dataset.state === "succeeded" && tr.cells[8].textContent === "0"
                 && document.getElementById("log-status").textContent.startsWith("State: succeeded");"##
        ),
        DESCRIBE_LOG,
    )
    .await;

    // Cancel, on a run still queued: the daemon cancels it at once and the table says so.
    let waiting = eval(
        page,
        r##"const tr = document.querySelector("#runs-body tr[data-state='queued']");
           return tr ? tr.dataset.runId : null;"##,
    )
    .await;
    let waiting: QueueId = waiting
        .as_str()
        .unwrap_or_else(|| panic!("no queued run left to cancel: {:#}", table))
        .parse()
        .unwrap();
    click(
        page,
        &format!("button[data-action=cancel][data-run-id='{waiting}']"),
    )
    .await;
    wait_for(
        page,
        &format!("run {waiting} as cancelled"),
        &format!(
            r##"const tr = document.querySelector("#runs-body tr[data-run-id='{waiting}']");
               return !!tr && tr.dataset.state === "cancelled";"##
        ),
        DESCRIBE_TABLE,
    )
    .await;
    assert_eq!(
        queue.get(waiting).await.unwrap().state,
        QueueState::Cancelled
    );

    // Retry, on the failed run: a new run of the same commit, listed first.
    click(
        page,
        &format!("button[data-action=retry][data-run-id='{failed}']"),
    )
    .await;
    wait_for(
        page,
        "the retried run",
        r##"return document.querySelectorAll("#runs-body tr").length === 5;"##,
        DESCRIBE_TABLE,
    )
    .await;
    let newest = queue.list(1).await.unwrap().remove(0);
    let original = queue.get(failed).await.unwrap();
    assert_eq!(newest.run.sha, original.run.sha);
    assert_eq!(newest.run.git_ref, original.run.git_ref);
    let table = eval(page, DESCRIBE_TABLE).await;
    assert_eq!(table["rows"][0]["id"], newest.id.to_string(), "{table:#}");
    assert_eq!(
        table["notice"],
        format!("Run {failed} queued again as run {}.", newest.id),
        "{table:#}"
    );

    browser.close().await;
    assert!(!daemon.logs().is_empty());
}

async fn click(page: &Client, selector: &str) {
    page.find(Locator::Css(selector))
        .await
        .unwrap_or_else(|e| panic!("no {selector} on the page: {e}"))
        .click()
        .await
        .unwrap();
}
