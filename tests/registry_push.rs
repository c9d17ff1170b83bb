//! The registry adapter against real servers: the Docker daemon (DOCKER_HOST), a distribution
//! registry without auth (SHIPIT_TEST_REGISTRY) and one with basic auth
//! (SHIPIT_TEST_AUTH_REGISTRY, user/password in SHIPIT_TEST_AUTH_REGISTRY_USER/_PASSWORD, the
//! password being the moto ECR token's), and moto for the ECR API
//! (SHIPIT_TEST_AWS_ENDPOINT_URL). Faults are injected by a small HTTP proxy on 127.0.0.1.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Once, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use bollard::Docker;
use futures::StreamExt as _;
use shipit::registry::{
    Compression, EcrSettings, LayerSource, LifecycleSettings, ManifestFormat, PushConfig,
    PushError, PushObserver, PushedImage, ScanGate, Severity, manifest_exists, push_archive,
    push_image,
};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

// ---------------------------------------------------------------------------------------------
// Environment

struct TestEnv {
    registry: String,
    auth_registry: String,
    auth_user: String,
    auth_password: String,
    aws_endpoint: String,
    base_image: String,
    /// A process-wide Docker config directory the tests add registry entries to.
    docker_config: PathBuf,
}

fn required(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!(
            "{name} is not set: run the tests through scripts/test, or export the variables \
             from $HOME/.cache/shipit-testenv/env"
        )
    })
}

static ENV: OnceLock<TestEnv> = OnceLock::new();
static ENV_SETUP: Once = Once::new();

/// Reads the test environment, and once per process points the Docker config and the AWS
/// credential chain at test values.
fn env() -> &'static TestEnv {
    ENV_SETUP.call_once(|| {
        let config_dir = std::env::temp_dir().join(format!(
            "shipit-registry-test-{}-{}",
            std::process::id(),
            unique()
        ));
        std::fs::create_dir_all(&config_dir).expect("create the docker config dir");
        std::fs::write(config_dir.join("config.json"), b"{\"auths\":{}}")
            .expect("write config.json");
        // SAFETY: this runs inside `Once` as the first thing every test does, before any test
        // starts threads or clients that read the environment, and the values never change.
        unsafe {
            // The test environment names its daemon; clients (bollard, skopeo) read DOCKER_HOST.
            if let (Some(host), None) = (
                std::env::var_os("SHIPIT_TEST_DOCKER_HOST"),
                std::env::var_os("DOCKER_HOST"),
            ) {
                std::env::set_var("DOCKER_HOST", host);
            }
            std::env::set_var("DOCKER_CONFIG", &config_dir);
            std::env::set_var(
                "PATH",
                format!(
                    "{}:{}",
                    config_dir.display(),
                    std::env::var("PATH").unwrap_or_default()
                ),
            );
            for (key, value) in [
                ("AWS_ACCESS_KEY_ID", "testing"),
                ("AWS_SECRET_ACCESS_KEY", "testing"),
                ("AWS_EC2_METADATA_DISABLED", "true"),
            ] {
                if std::env::var_os(key).is_none() {
                    std::env::set_var(key, value);
                }
            }
        }
        let env = TestEnv {
            registry: required("SHIPIT_TEST_REGISTRY"),
            auth_registry: required("SHIPIT_TEST_AUTH_REGISTRY"),
            auth_user: required("SHIPIT_TEST_AUTH_REGISTRY_USER"),
            auth_password: required("SHIPIT_TEST_AUTH_REGISTRY_PASSWORD"),
            aws_endpoint: required("SHIPIT_TEST_AWS_ENDPOINT_URL"),
            base_image: required("SHIPIT_TEST_BASE_IMAGE"),
            docker_config: config_dir,
        };
        let _ = ENV.set(env);
    });
    ENV.get().expect("the test environment is set up")
}

static CONFIG_LOCK: Mutex<()> = Mutex::new(());

/// Adds an `auths` entry (or a `credHelpers` entry) to the shared Docker config, atomically.
fn add_docker_config(host: &str, entry: serde_json::Value, helper: Option<&str>) {
    edit_docker_config(|config| match helper {
        Some(helper) => config["credHelpers"][host] = serde_json::Value::String(helper.into()),
        None => config["auths"][host] = entry,
    });
}

fn edit_docker_config(edit: impl FnOnce(&mut serde_json::Value)) {
    let _guard = CONFIG_LOCK.lock().unwrap();
    let path = env().docker_config.join("config.json");
    let mut config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    edit(&mut config);
    let temp = path.with_extension(format!("tmp{}", unique()));
    std::fs::write(&temp, serde_json::to_vec(&config).unwrap()).unwrap();
    std::fs::rename(&temp, &path).unwrap();
}

fn basic_entry(user: &str, password: &str) -> serde_json::Value {
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    serde_json::json!({ "auth": auth })
}

fn unique() -> String {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("{nanos:x}{}", COUNTER.fetch_add(1, Ordering::SeqCst))
}

async fn docker() -> Docker {
    let docker = Docker::connect_with_defaults()
        .expect("failed to configure the Docker client (DOCKER_HOST)");
    docker.ping().await.unwrap_or_else(|err| {
        panic!("no Docker daemon answers at DOCKER_HOST (or the default socket): {err}")
    });
    docker
}

fn random_bytes(len: usize) -> Vec<u8> {
    let mut state: u64 = rand::random::<u64>() | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

/// An image a test built; removed from the daemon when the test is done with it.
struct TestImage(String);

impl std::ops::Deref for TestImage {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for TestImage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl Drop for TestImage {
    fn drop(&mut self) {
        let tag = self.0.clone();
        // Drop cannot await; a short-lived thread with its own runtime removes the tag.
        let _ = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            runtime.block_on(async {
                if let Ok(docker) = Docker::connect_with_defaults() {
                    let options = bollard::query_parameters::RemoveImageOptionsBuilder::new()
                        .force(true)
                        .build();
                    let _ = docker.remove_image(&tag, Some(options), None).await;
                }
            });
        })
        .join();
    }
}

/// Builds an image `FROM base` with one COPY layer per file.
async fn build_image(docker: &Docker, base: &str, files: &[(&str, Vec<u8>)]) -> TestImage {
    let tag = format!("shipit-push-test:{}", unique());
    let mut dockerfile = format!("FROM {base}\n");
    let mut context = tar::Builder::new(Vec::new());
    for (name, data) in files {
        dockerfile.push_str(&format!("COPY {name} /data/{name}\n"));
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        context
            .append_data(&mut header, name, data.as_slice())
            .unwrap();
    }
    let mut header = tar::Header::new_gnu();
    header.set_size(dockerfile.len() as u64);
    header.set_mode(0o644);
    header.set_cksum();
    context
        .append_data(&mut header, "Dockerfile", dockerfile.as_bytes())
        .unwrap();
    let context = context.into_inner().unwrap();
    let options = bollard::query_parameters::BuildImageOptionsBuilder::new()
        .dockerfile("Dockerfile")
        .t(&tag)
        .rm(true)
        .networkmode("none")
        .build();
    // The classic builder's cache lookup reads every child image of the base, and fails with
    // `unable to find image "<id>"` when another test removes one of them at that moment (tests
    // build on the same base side by side and remove their images when done). That race is the
    // daemon's, not the push's: the build is started again, a few times at most.
    let mut attempts = 0;
    'build: loop {
        attempts += 1;
        let mut stream = docker.build_image(
            options.clone(),
            None,
            Some(bollard::body_full(context.clone().into())),
        );
        while let Some(item) = stream.next().await {
            let failure = match item {
                Ok(info) => match info.error_detail.and_then(|d| d.message) {
                    Some(error) => error,
                    None => continue,
                },
                Err(err) => err.to_string(),
            };
            if failure.contains("unable to find image") && attempts < 3 {
                continue 'build;
            }
            panic!("building {tag} failed: {failure}");
        }
        return TestImage(tag);
    }
}

#[derive(Default)]
struct Recorder {
    messages: Mutex<Vec<String>>,
    bytes: Mutex<Vec<(u64, u64)>>,
}

impl PushObserver for Recorder {
    fn on_progress(&self, message: &str) {
        self.messages.lock().unwrap().push(message.to_string());
    }
    fn on_bytes(&self, done: u64, total: u64) {
        self.bytes.lock().unwrap().push((done, total));
    }
}

impl Recorder {
    fn lines(&self) -> Vec<String> {
        self.messages.lock().unwrap().clone()
    }
    fn count(&self, needle: &str) -> usize {
        self.lines().iter().filter(|l| l.contains(needle)).count()
    }
}

fn config(registry: &str, repository: &str, tags: &[&str]) -> PushConfig {
    PushConfig {
        registry: registry.to_string(),
        repository: repository.to_string(),
        tags: tags.iter().map(|t| t.to_string()).collect(),
        compression: Compression::Gzip,
        compression_level: None,
        layer_source: LayerSource::Auto,
        format: ManifestFormat::Oci,
        ecr: None,
    }
}

fn repository(name: &str) -> String {
    format!("shipit-test/{name}-{}", unique())
}

/// Fetches a manifest over plain HTTP, as an independent client would.
async fn fetch_manifest(
    registry: &str,
    repository: &str,
    reference: &str,
    basic: Option<(&str, &str)>,
) -> (u16, Vec<u8>) {
    let client = reqwest::Client::new();
    let mut request = client
        .get(format!(
            "http://{registry}/v2/{repository}/manifests/{reference}"
        ))
        .header(
            "Accept",
            "application/vnd.oci.image.manifest.v1+json, \
             application/vnd.docker.distribution.manifest.v2+json",
        );
    if let Some((user, password)) = basic {
        request = request.basic_auth(user, Some(password));
    }
    let response = request.send().await.expect("the registry answers");
    let status = response.status().as_u16();
    (status, response.bytes().await.unwrap().to_vec())
}

fn sha256(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(bytes)))
}

fn cache_dir() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

async fn push(
    docker: &Docker,
    image: &str,
    cfg: &PushConfig,
    cache: &Path,
) -> (Result<PushedImage, PushError>, Recorder) {
    let recorder = Recorder::default();
    let result = push_image(
        docker,
        image,
        cfg,
        cache,
        &recorder,
        CancellationToken::new(),
    )
    .await;
    (result, recorder)
}

/// What every refused-credentials failure must be: an authentication error naming the registry
/// and repository, saying each of `says`, pointing at `docker login`, and showing none of
/// `secrets` in its message, its Debug form or any progress line.
fn assert_auth_failure(
    err: &PushError,
    recorder: &Recorder,
    registry: &str,
    repository: &str,
    says: &[&str],
    secrets: &[&str],
) {
    let text = err.to_string();
    assert!(matches!(err, PushError::Authentication { .. }), "{err:?}");
    assert!(
        text.contains(registry) && text.contains(repository),
        "{text}"
    );
    for words in says {
        assert!(text.contains(words), "{text} should say {words:?}");
    }
    assert!(
        err.hint().is_some_and(|hint| hint.contains("docker login")),
        "{:?}",
        err.hint()
    );
    for shown in [text, format!("{err:?}")]
        .into_iter()
        .chain(recorder.lines())
    {
        for secret in secrets {
            assert!(!shown.contains(secret), "a credential leaked: {shown}");
        }
    }
}

fn assert_no_secret(text: &str) {
    let env = env();
    assert!(
        !text.contains(&env.auth_password),
        "a password leaked into output: {text}"
    );
}

// ---------------------------------------------------------------------------------------------
// A fault-injecting HTTP proxy

#[derive(Clone, Copy, Debug)]
enum Fault {
    /// Answer with this status and body, and close (a 429 says `Retry-After: 1`).
    Status(u16, &'static str),
    /// Answer with this status and a `Retry-After` header (and a `Date` header, as servers do).
    RetryAfter(u16, After),
    /// Reset the connection without answering.
    Reset,
    /// Read this many bytes of the request body, then reset the connection; nothing reaches
    /// the registry, so it still holds what it acknowledged before.
    CutBody(usize),
    /// Answer with this status and an error envelope that echoes the request's credentials,
    /// as a careless proxy or registry might.
    EchoCredentials(u16),
    /// Forward, then answer a chunk's PATCH as ECR does: `201 Created` instead of `202`, and a
    /// `Range` stuck at the end of the first chunk.
    EcrLikeChunk,
}

/// The form of an injected `Retry-After`.
#[derive(Clone, Copy, Debug)]
enum After {
    /// Delay-seconds: `Retry-After: 2`.
    Seconds(u64),
    /// An HTTP-date this many seconds after the answer's own `Date`.
    DateIn(u64),
}

#[derive(Clone, Debug)]
struct Rule {
    method: &'static str,
    path_contains: &'static str,
    /// Which matching requests fail (1-based).
    fail_on: Vec<usize>,
    fault: Fault,
}

/// A request the proxy saw.
#[derive(Clone)]
struct Seen {
    at: Instant,
    wall: SystemTime,
    method: String,
    /// Path and query, as sent.
    path: String,
    content_range: Option<String>,
    injected: bool,
    /// For an injected Retry-After: the earliest time the header allows the next try.
    not_before: Option<SystemTime>,
}

impl Seen {
    /// The path without its query (an upload's location carries changing state there).
    fn resource(&self) -> &str {
        self.path.split('?').next().unwrap_or_default()
    }

    /// Where a PATCH's Content-Range starts.
    fn range_start(&self) -> Option<u64> {
        self.content_range
            .as_deref()?
            .split('-')
            .next()?
            .trim()
            .parse()
            .ok()
    }
}

impl std::fmt::Debug for Seen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.method, self.resource())?;
        if let Some(range) = &self.content_range {
            write!(f, " [{range}]")?;
        }
        if self.injected {
            write!(f, " (fault)")?;
        }
        Ok(())
    }
}

struct FaultProxy {
    addr: SocketAddr,
    requests: Arc<Mutex<Vec<Seen>>>,
    injected: Arc<AtomicUsize>,
}

impl FaultProxy {
    /// Forwards to `upstream`, applying `rules`. Every request is forced onto its own
    /// connection (`Connection: close`) so each one can be inspected.
    async fn start(upstream: &str, rules: Vec<Rule>) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let upstream: SocketAddr = upstream.parse().expect("upstream is an ip:port");
        let requests = Arc::new(Mutex::new(Vec::new()));
        let injected = Arc::new(AtomicUsize::new(0));
        let counters: Arc<Mutex<HashMap<usize, usize>>> = Arc::default();
        let rules = Arc::new(rules);
        let (requests_task, injected_task) = (requests.clone(), injected.clone());
        tokio::spawn(async move {
            // Bounded: a test never needs more connections than this.
            for _ in 0..5000 {
                let Ok((client, _)) = listener.accept().await else {
                    return;
                };
                let rules = rules.clone();
                let counters = counters.clone();
                let requests = requests_task.clone();
                let injected = injected_task.clone();
                tokio::spawn(async move {
                    let _ = handle_connection(
                        client, upstream, &rules, &counters, &requests, &injected,
                    )
                    .await;
                });
            }
        });
        FaultProxy {
            addr,
            requests,
            injected,
        }
    }

    fn host(&self) -> String {
        self.addr.to_string()
    }

    fn seen(&self) -> Vec<Seen> {
        self.requests.lock().unwrap().clone()
    }
}

async fn read_head(stream: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if stream.read(&mut byte).await? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        head.push(byte[0]);
        if head.len() > 64 * 1024 {
            return Err(std::io::ErrorKind::InvalidData.into());
        }
    }
    Ok(head)
}

/// A header's value in a request head.
fn head_value(head: &str, wanted: &str) -> Option<String> {
    head.lines().skip(1).find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.trim()
            .eq_ignore_ascii_case(wanted)
            .then(|| value.trim().to_string())
    })
}

/// Reads and discards up to `limit` bytes of the request body the head announces (bounded in
/// size and time).
async fn drain_body_up_to(stream: &mut TcpStream, head: &str, limit: u64) {
    let length = head_value(head, "content-length")
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0)
        .min(limit);
    let mut remaining = length;
    let mut buffer = vec![0u8; 64 * 1024];
    let drain = async {
        while remaining > 0 {
            let want = buffer.len().min(remaining as usize);
            match stream.read(&mut buffer[..want]).await {
                Ok(0) | Err(_) => break,
                Ok(n) => remaining -= n as u64,
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(10), drain).await;
}

async fn drain_body(stream: &mut TcpStream, head: &str) {
    drain_body_up_to(stream, head, 256 * 1024 * 1024).await;
}

fn http_date(at: SystemTime) -> String {
    chrono::DateTime::<chrono::Utc>::from(at)
        .format("%a, %d %b %Y %H:%M:%S GMT")
        .to_string()
}

/// Writes one whole answer and closes.
async fn answer(
    client: &mut TcpStream,
    code: u16,
    extra_headers: &str,
    body: &str,
) -> std::io::Result<()> {
    let reason = match code {
        200 => "OK",
        401 => "Unauthorized",
        404 => "Not Found",
        429 => "Too Many Requests",
        503 => "Service Unavailable",
        _ => "Error",
    };
    let response = format!(
        "HTTP/1.1 {code} {reason}\r\nContent-Type: application/json\r\n{extra_headers}\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    client.write_all(response.as_bytes()).await?;
    client.shutdown().await
}

/// The request head with `Connection: close` and without `drop_headers`.
fn close_after(head: &str, drop_headers: &[&str]) -> String {
    let mut rewritten = String::new();
    for line in head.trim_end_matches("\r\n").split("\r\n") {
        let name = line
            .split(':')
            .next()
            .unwrap_or_default()
            .to_ascii_lowercase();
        if name == "connection" || drop_headers.contains(&name.as_str()) {
            continue;
        }
        rewritten.push_str(line);
        rewritten.push_str("\r\n");
    }
    rewritten.push_str("Connection: close\r\n\r\n");
    rewritten
}

/// Sends the request on to `upstream` on a connection of its own and relays the answer.
async fn forward(
    client: &mut TcpStream,
    head: &str,
    upstream: SocketAddr,
    drop_headers: &[&str],
) -> std::io::Result<()> {
    let mut server = TcpStream::connect(upstream).await?;
    server
        .write_all(close_after(head, drop_headers).as_bytes())
        .await?;
    tokio::io::copy_bidirectional(client, &mut server).await?;
    Ok(())
}

async fn handle_connection(
    mut client: TcpStream,
    upstream: SocketAddr,
    rules: &[Rule],
    counters: &Mutex<HashMap<usize, usize>>,
    requests: &Mutex<Vec<Seen>>,
    injected: &AtomicUsize,
) -> std::io::Result<()> {
    let head = read_head(&mut client).await?;
    let text = String::from_utf8_lossy(&head).into_owned();
    let request_line = text.lines().next().unwrap_or_default().to_string();
    let mut parts = request_line.split_whitespace();
    let (method, path) = (
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
    );
    // Every matching rule counts the request; the first whose turn it is applies.
    let mut fault = None;
    for (index, rule) in rules.iter().enumerate() {
        if rule.method == method && path.contains(rule.path_contains) {
            let mut counters = counters.lock().unwrap();
            let seen = counters.entry(index).or_insert(0);
            *seen += 1;
            if fault.is_none() && rule.fail_on.contains(seen) {
                fault = Some(rule.fault);
            }
        }
    }
    let wall = SystemTime::now();
    let not_before = match fault {
        Some(Fault::RetryAfter(_, After::Seconds(secs))) => Some(wall + Duration::from_secs(secs)),
        // HTTP-dates have whole seconds: the Date sent is `wall` rounded down.
        Some(Fault::RetryAfter(_, After::DateIn(secs))) => {
            Some(whole_seconds(wall) + Duration::from_secs(secs))
        }
        _ => None,
    };
    requests.lock().unwrap().push(Seen {
        at: Instant::now(),
        wall,
        method: method.to_string(),
        path: path.to_string(),
        content_range: head_value(&text, "content-range"),
        injected: fault.is_some(),
        not_before,
    });
    if fault.is_some() {
        injected.fetch_add(1, Ordering::SeqCst);
    }
    match fault {
        Some(Fault::Reset) => {
            // Closing with unread request bytes makes the kernel answer with a reset.
            drop(client);
            Ok(())
        }
        Some(Fault::CutBody(after)) => {
            drain_body_up_to(&mut client, &text, after as u64).await;
            drop(client);
            Ok(())
        }
        Some(Fault::Status(code, body)) => {
            // A registry reads the request before it answers; answering first would let the
            // client see a broken pipe instead of the status, depending on timing.
            drain_body(&mut client, &text).await;
            let extra = if code == 429 {
                "Retry-After: 1\r\n"
            } else {
                ""
            };
            answer(&mut client, code, extra, body).await
        }
        Some(Fault::RetryAfter(code, after)) => {
            drain_body(&mut client, &text).await;
            let value = match after {
                After::Seconds(secs) => secs.to_string(),
                After::DateIn(_) => http_date(not_before.expect("a date was chosen")),
            };
            let extra = format!("Date: {}\r\nRetry-After: {value}\r\n", http_date(wall));
            let body = "{\"errors\":[{\"code\":\"TOOMANYREQUESTS\",\"message\":\"slow down\"}]}";
            answer(&mut client, code, &extra, body).await
        }
        Some(Fault::EchoCredentials(code)) => {
            drain_body(&mut client, &text).await;
            let authorization = head_value(&text, "authorization").unwrap_or_default();
            let decoded = authorization
                .strip_prefix("Basic ")
                .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .unwrap_or_default();
            let message = format!("not accepted for Authorization: {authorization} ({decoded})");
            let body = serde_json::json!({
                "errors": [{"code": "MANIFEST_INVALID", "message": message}]
            })
            .to_string();
            answer(&mut client, code, "", &body).await
        }
        Some(Fault::EcrLikeChunk) => {
            let mut server = TcpStream::connect(upstream).await?;
            server.write_all(close_after(&text, &[]).as_bytes()).await?;
            let length = head_value(&text, "content-length")
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0);
            tokio::io::copy(&mut (&mut client).take(length), &mut server).await?;
            let answer = String::from_utf8_lossy(&read_head(&mut server).await?).into_owned();
            let mut rewritten = String::new();
            for line in answer.trim_end_matches("\r\n").split("\r\n") {
                if line.starts_with("HTTP/1.1 202") {
                    rewritten.push_str("HTTP/1.1 201 Created\r\n");
                } else if line.to_ascii_lowercase().starts_with("range:") {
                    rewritten.push_str("Range: 0-16777215\r\n");
                } else {
                    rewritten.push_str(line);
                    rewritten.push_str("\r\n");
                }
            }
            rewritten.push_str("\r\n");
            client.write_all(rewritten.as_bytes()).await?;
            tokio::io::copy(&mut server, &mut client).await?;
            client.shutdown().await
        }
        None => forward(&mut client, &text, upstream, &[]).await,
    }
}

fn whole_seconds(at: SystemTime) -> SystemTime {
    let since = at.duration_since(UNIX_EPOCH).unwrap();
    UNIX_EPOCH + Duration::from_secs(since.as_secs())
}

/// A server that answers every request with an HTML page, like a login portal.
async fn html_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        for _ in 0..200 {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let _ = read_head(&mut stream).await;
                let body = "<!DOCTYPE html><html><body>Please sign in</body></html>";
                let response = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: {}\r\n\
                     Connection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(response.as_bytes()).await;
            });
        }
    });
    addr
}

// ---------------------------------------------------------------------------------------------
// A token-auth front: the Docker token protocol in front of the open registry

/// What a `TokenFront` saw and did.
#[derive(Default)]
struct FrontLog {
    /// Tokens issued, in order.
    issued: Vec<String>,
    /// The query of every token request that was granted.
    token_queries: Vec<String>,
    /// Token requests refused for wrong or missing credentials.
    token_refusals: usize,
    /// Registry requests answered 401 (no token, unknown token, or the first one expired).
    challenged: usize,
    /// Registry requests forwarded, with the token each carried.
    forwarded: Vec<(String, String)>,
}

/// Answers registry requests without a valid `Authorization: Bearer` with a 401 and a Bearer
/// challenge naming its own `/token` endpoint; that endpoint checks Basic credentials and
/// issues tokens; requests with a valid token go on to `upstream` (an open registry). After
/// `first_token_uses` requests the first token is refused, as if it had expired.
struct TokenFront {
    addr: SocketAddr,
    log: Arc<Mutex<FrontLog>>,
}

const FRONT_SERVICE: &str = "shipit-test-registry";
/// The identity token (OAuth2 refresh token) the token front takes in its POST grant.
const FRONT_IDENTITY_TOKEN: &str = "front-identity-s3cret-refresh";

impl TokenFront {
    async fn start(
        upstream: &str,
        user: &str,
        password: &str,
        first_token_uses: Option<usize>,
    ) -> TokenFront {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let upstream: SocketAddr = upstream.parse().expect("upstream is an ip:port");
        let expected = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
        );
        let log: Arc<Mutex<FrontLog>> = Arc::default();
        let first_uses = Arc::new(AtomicUsize::new(0));
        let log_task = log.clone();
        tokio::spawn(async move {
            for _ in 0..2000 {
                let Ok((client, _)) = listener.accept().await else {
                    return;
                };
                let log = log_task.clone();
                let expected = expected.clone();
                let first_uses = first_uses.clone();
                tokio::spawn(async move {
                    let _ = front_connection(
                        client,
                        addr,
                        upstream,
                        &expected,
                        first_token_uses,
                        &first_uses,
                        &log,
                    )
                    .await;
                });
            }
        });
        TokenFront { addr, log }
    }

    fn host(&self) -> String {
        self.addr.to_string()
    }
}

async fn front_connection(
    mut client: TcpStream,
    addr: SocketAddr,
    upstream: SocketAddr,
    expected_basic: &str,
    first_token_uses: Option<usize>,
    first_uses: &AtomicUsize,
    log: &Mutex<FrontLog>,
) -> std::io::Result<()> {
    let head = String::from_utf8_lossy(&read_head(&mut client).await?).into_owned();
    let path = head
        .lines()
        .next()
        .and_then(|line| line.split_whitespace().nth(1))
        .unwrap_or_default()
        .to_string();
    let authorization = head_value(&head, "authorization").unwrap_or_default();
    if head.starts_with("POST /token") {
        // OAuth2's refresh-token grant: what a client holding an identity token sends.
        let length: usize = head_value(&head, "content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let mut body = vec![0u8; length];
        client.read_exact(&mut body).await?;
        let form: Vec<(String, String)> = form_urlencoded::parse(&body)
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        let field = |name: &str| {
            form.iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
                .unwrap_or_default()
        };
        if field("grant_type") != "refresh_token"
            || field("refresh_token") != FRONT_IDENTITY_TOKEN
            || field("service") != FRONT_SERVICE
        {
            log.lock().unwrap().token_refusals += 1;
            return answer(&mut client, 401, "", "{\"error\":\"invalid_grant\"}").await;
        }
        let token = format!("front-token-{}", unique());
        {
            let mut log = log.lock().unwrap();
            log.issued.push(token.clone());
            log.token_queries
                .push(format!("oauth scope={}", field("scope")));
        }
        let body = serde_json::json!({"access_token": token, "expires_in": 300}).to_string();
        return answer(&mut client, 200, "", &body).await;
    }
    if let Some(query) = path.strip_prefix("/token") {
        if authorization != expected_basic {
            log.lock().unwrap().token_refusals += 1;
            return answer(
                &mut client,
                401,
                "",
                "{\"details\":\"incorrect username or password\"}",
            )
            .await;
        }
        let token = format!("front-token-{}", unique());
        {
            let mut log = log.lock().unwrap();
            log.issued.push(token.clone());
            log.token_queries.push(query.to_string());
        }
        let body = serde_json::json!({"token": token, "expires_in": 300}).to_string();
        return answer(&mut client, 200, "", &body).await;
    }
    let token = authorization
        .strip_prefix("Bearer ")
        .unwrap_or_default()
        .to_string();
    let valid = {
        let log = log.lock().unwrap();
        match log.issued.iter().position(|t| *t == token) {
            Some(0) => match first_token_uses {
                Some(limit) => first_uses.fetch_add(1, Ordering::SeqCst) < limit,
                None => true,
            },
            Some(_) => true,
            None => false,
        }
    };
    if !valid {
        drain_body(&mut client, &head).await;
        log.lock().unwrap().challenged += 1;
        // The scope a registry names: the repository in the path, if any.
        let repository = path
            .strip_prefix("/v2/")
            .and_then(|rest| {
                ["/blobs/", "/manifests/", "/tags/"]
                    .iter()
                    .find_map(|marker| rest.split_once(marker).map(|(repo, _)| repo))
            })
            .map(str::to_string);
        let scope = repository
            .map(|r| format!(",scope=\"repository:{r}:pull,push\""))
            .unwrap_or_default();
        let challenge = format!(
            "WWW-Authenticate: Bearer realm=\"http://{addr}/token\",service=\"{FRONT_SERVICE}\"{scope}\r\n"
        );
        let body =
            "{\"errors\":[{\"code\":\"UNAUTHORIZED\",\"message\":\"authentication required\"}]}";
        return answer(&mut client, 401, &challenge, body).await;
    }
    log.lock().unwrap().forwarded.push((path, token));
    forward(&mut client, &head, upstream, &["authorization"]).await
}

// ---------------------------------------------------------------------------------------------
// Pushing to a registry without auth

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pushes_a_daemon_image_with_every_tag_and_serves_the_manifest_back() {
    pushes_a_daemon_image_with_every_tag(LayerSource::Auto).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pushes_a_daemon_image_read_from_its_export() {
    pushes_a_daemon_image_with_every_tag(LayerSource::Export).await;
}

/// The test daemon's layer store is on this machine and readable, so `Auto` reads it: the
/// export path is covered by asking for it.
async fn pushes_a_daemon_image_with_every_tag(layer_source: LayerSource) {
    let env = env();
    let docker = docker().await;
    let image = build_image(
        &docker,
        &env.base_image,
        &[
            ("big.bin", random_bytes(3_000_000)),
            ("small.txt", b"hello".to_vec()),
        ],
    )
    .await;
    let repo = repository("plain");
    let cfg = PushConfig {
        layer_source,
        ..config(&env.registry, &repo, &["v1", "latest"])
    };
    let cache = cache_dir();
    let (result, recorder) = push(&docker, &image, &cfg, cache.path()).await;
    let pushed = result.unwrap_or_else(|err| panic!("push failed: {err}"));
    let from_store = recorder.count("from the daemon's layer store");
    match layer_source {
        LayerSource::Export => assert_eq!(from_store, 0, "{:?}", recorder.lines()),
        _ => assert_eq!(from_store, 1, "{:?}", recorder.lines()),
    }

    assert_eq!(pushed.registry, env.registry);
    assert_eq!(pushed.repository, repo);
    assert_eq!(
        pushed.refs,
        vec![
            format!("{}/{repo}@{}", env.registry, pushed.digest),
            format!("{}/{repo}:v1", env.registry),
            format!("{}/{repo}:latest", env.registry),
        ]
    );
    for reference in ["v1", "latest", pushed.digest.as_str()] {
        let (status, body) = fetch_manifest(&env.registry, &repo, reference, None).await;
        assert_eq!(status, 200, "{reference}");
        assert_eq!(sha256(&body), pushed.digest, "{reference} points elsewhere");
    }
    let (_, body) = fetch_manifest(&env.registry, &repo, "v1", None).await;
    let manifest: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        manifest["mediaType"],
        "application/vnd.oci.image.manifest.v1+json"
    );
    let inspect = docker.inspect_image(&image).await.unwrap();
    assert_eq!(
        manifest["config"]["digest"].as_str(),
        inspect.id.as_deref(),
        "the config is pushed as exported, so its digest is the image id"
    );
    let layers = manifest["layers"].as_array().unwrap();
    assert_eq!(layers.len(), inspect.root_fs.unwrap().layers.unwrap().len());
    assert!(
        layers
            .iter()
            .all(|l| l["mediaType"] == "application/vnd.oci.image.layer.v1.tar+gzip")
    );
    assert!(pushed.size > 1_000_000);
    assert!(
        recorder.count("uploaded blob") >= 3,
        "{:?}",
        recorder.lines()
    );
    let bytes = recorder.bytes.lock().unwrap().clone();
    assert!(!bytes.is_empty(), "no byte progress was reported");

    assert!(manifest_exists(&cfg, &pushed.digest).await.unwrap());
    assert!(
        !manifest_exists(&cfg, &format!("sha256:{}", "0".repeat(64)))
            .await
            .unwrap()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rerun_pushes_the_same_digest_without_uploading_layers() {
    let env = env();
    let docker = docker().await;
    let image = build_image(
        &docker,
        &env.base_image,
        &[("a.bin", random_bytes(500_000))],
    )
    .await;
    let cfg = config(&env.registry, &repository("rerun"), &["v1"]);
    let cache = cache_dir();
    let (first, _) = push(&docker, &image, &cfg, cache.path()).await;
    let first = first.unwrap();
    let (second, recorder) = push(&docker, &image, &cfg, cache.path()).await;
    let second = second.unwrap();
    assert_eq!(first.digest, second.digest);
    assert_eq!(recorder.count("uploaded blob"), 0, "{:?}", recorder.lines());
    assert_eq!(
        recorder.count("layers already in"),
        1,
        "{:?}",
        recorder.lines()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_layer_store_and_the_export_give_the_same_blobs_and_manifest() {
    let env = env();
    let docker = docker().await;
    // Random bytes, text, an empty file and a nested path: the tar-split rebuild must give
    // the daemon's own tar byte for byte, or the diff ids (and the digests) differ.
    let image = build_image(
        &docker,
        &env.base_image,
        &[
            ("random.bin", random_bytes(2_500_000)),
            ("notes.txt", b"line\n".repeat(20_000)),
            ("empty", Vec::new()),
        ],
    )
    .await;
    let mut digests = Vec::new();
    for layer_source in [LayerSource::LayerStore, LayerSource::Export] {
        let cfg = PushConfig {
            layer_source,
            ..config(&env.registry, &repository("sources"), &["v1"])
        };
        let cache = cache_dir();
        let (result, recorder) = push(&docker, &image, &cfg, cache.path()).await;
        let pushed = result.unwrap_or_else(|err| panic!("{layer_source:?} push failed: {err}"));
        let (_, body) = fetch_manifest(&env.registry, &cfg.repository, "v1", None).await;
        assert_eq!(sha256(&body), pushed.digest);
        assert!(
            recorder.count("could not be read") == 0 && recorder.count("not readable") == 0,
            "{:?}",
            recorder.lines()
        );
        digests.push(pushed.digest);
    }
    assert_eq!(
        digests[0], digests[1],
        "layers rebuilt from the layer store must equal the export's"
    );
}

/// Swaps a file of the image's top layer, in the daemon's overlay2 store, for a symlink to an
/// identical copy: the daemon follows it and exports the same bytes, the layer-store reader
/// refuses to (it opens layer files with O_NOFOLLOW), which is how a layer-store read that fails
/// part way is produced on a real daemon.
async fn break_layer_store_read(docker: &Docker, image: &str, file_in_image: &str) {
    let inspect = docker.inspect_image(image).await.unwrap();
    let graph = inspect
        .graph_driver
        .expect("the daemon reports no GraphDriver");
    assert_eq!(
        graph.name, "overlay2",
        "this test needs the test daemon's overlay2 storage (scripts/testenv up starts it)"
    );
    let upper = std::path::PathBuf::from(
        graph
            .data
            .get("UpperDir")
            .expect("overlay2 names the top layer's UpperDir"),
    );
    let file = upper.join(file_in_image.trim_start_matches('/'));
    let copy = upper.parent().unwrap().join("shipit-test-copy");
    std::fs::rename(&file, &copy).unwrap_or_else(|err| {
        panic!(
            "cannot move {} (the test must run as the daemon's user, root here): {err}",
            file.display()
        )
    });
    std::os::unix::fs::symlink(&copy, &file).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_layer_store_that_cannot_be_read_falls_back_to_the_export() {
    let env = env();
    let docker = docker().await;
    let image = build_image(
        &docker,
        &env.base_image,
        &[("top.bin", random_bytes(400_000))],
    )
    .await;
    break_layer_store_read(&docker, &image, "/data/top.bin").await;

    let cfg = config(&env.registry, &repository("fallback"), &["v1"]);
    let (result, recorder) = push(&docker, &image, &cfg, cache_dir().path()).await;
    let pushed = result.unwrap_or_else(|err| panic!("the fallback push failed: {err}"));
    assert_eq!(
        recorder.count("could not be read"),
        1,
        "the fallback is announced: {:?}",
        recorder.lines()
    );
    let (_, body) = fetch_manifest(&env.registry, &cfg.repository, "v1", None).await;
    assert_eq!(sha256(&body), pushed.digest);
    let export_cfg = PushConfig {
        layer_source: LayerSource::Export,
        ..config(&env.registry, &repository("fallback-export"), &["v1"])
    };
    let (from_export, _) = push(&docker, &image, &export_cfg, cache_dir().path()).await;
    assert_eq!(
        from_export.unwrap().digest,
        pushed.digest,
        "the fallback pushed what the export holds"
    );

    // Asked for the layer store alone, the same push fails and says why.
    let strict = PushConfig {
        layer_source: LayerSource::LayerStore,
        ..config(&env.registry, &repository("strict"), &["v1"])
    };
    let (result, _) = push(&docker, &image, &strict, cache_dir().path()).await;
    let message = result.expect_err("layer-store only must fail").to_string();
    assert!(
        message.contains("top.bin") && message.contains("layer store"),
        "{message}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_warm_push_uploads_only_the_changed_top_layer() {
    a_warm_push_uploads_only_the_top_layer(LayerSource::Auto).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_warm_push_from_the_export_uploads_only_the_changed_top_layer() {
    a_warm_push_uploads_only_the_top_layer(LayerSource::Export).await;
}

async fn a_warm_push_uploads_only_the_top_layer(layer_source: LayerSource) {
    let env = env();
    let docker = docker().await;
    let base = build_image(
        &docker,
        &env.base_image,
        &[
            ("one.bin", random_bytes(2_000_000)),
            ("two.bin", random_bytes(1_000_000)),
        ],
    )
    .await;
    let top = build_image(&docker, &base, &[("app.bin", random_bytes(300_000))]).await;
    let cache = cache_dir();
    let cfg = PushConfig {
        layer_source,
        ..config(&env.registry, &repository("warm"), &["base"])
    };
    push(&docker, &base, &cfg, cache.path()).await.0.unwrap();

    let cfg = PushConfig {
        tags: vec!["top".into()],
        ..cfg
    };
    let (result, recorder) = push(&docker, &top, &cfg, cache.path()).await;
    result.unwrap();
    if layer_source == LayerSource::Auto {
        // Only the new layer is read from the layer store, and progress says so: its total is
        // that layer (300 KB and a header), not the 4 MB image.
        let bytes = recorder.bytes.lock().unwrap().clone();
        let (done, total) = *bytes.last().expect("byte progress was reported");
        assert!(
            (300_000..1_000_000).contains(&total) && done <= total,
            "progress {done} of {total}"
        );
    }
    assert_eq!(
        recorder.count("uploaded blob"),
        1,
        "only the new layer is compressed and uploaded: {:?}",
        recorder.lines()
    );
    let base_layers = docker
        .inspect_image(&base)
        .await
        .unwrap()
        .root_fs
        .unwrap()
        .layers
        .unwrap()
        .len();
    assert_eq!(
        recorder.count(&format!(
            "{base_layers} of {} layers already in",
            base_layers + 1
        )),
        1,
        "{:?}",
        recorder.lines()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn zstd_and_the_docker_manifest_format_are_pushed_as_asked() {
    let env = env();
    let docker = docker().await;
    let image = build_image(
        &docker,
        &env.base_image,
        &[("z.bin", random_bytes(200_000))],
    )
    .await;
    let cache = cache_dir();

    let mut cfg = config(&env.registry, &repository("zstd"), &["z"]);
    cfg.compression = Compression::Zstd;
    let pushed = push(&docker, &image, &cfg, cache.path()).await.0.unwrap();
    let (_, body) = fetch_manifest(&env.registry, &cfg.repository, &pushed.digest, None).await;
    let manifest: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert!(
        manifest["layers"]
            .as_array()
            .unwrap()
            .iter()
            .all(|l| l["mediaType"] == "application/vnd.oci.image.layer.v1.tar+zstd")
    );

    let mut cfg = config(&env.registry, &repository("docker-format"), &["d"]);
    cfg.format = ManifestFormat::Docker;
    let pushed = push(&docker, &image, &cfg, cache.path()).await.0.unwrap();
    let (_, body) = fetch_manifest(&env.registry, &cfg.repository, &pushed.digest, None).await;
    let manifest: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        manifest["mediaType"],
        "application/vnd.docker.distribution.manifest.v2+json"
    );
    assert_eq!(
        manifest["config"]["mediaType"],
        "application/vnd.docker.container.image.v1+json"
    );
}

// ---------------------------------------------------------------------------------------------
// Archives: the classic docker save layout and the OCI layout

async fn save_image(docker: &Docker, image: &str, path: &Path) {
    let mut file = tokio::fs::File::create(path).await.unwrap();
    let mut stream = docker.export_image(image);
    while let Some(chunk) = stream.next().await {
        file.write_all(&chunk.expect("export chunk")).await.unwrap();
    }
    file.flush().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pushes_a_docker_save_archive() {
    let env = env();
    let docker = docker().await;
    let image = build_image(
        &docker,
        &env.base_image,
        &[("s.bin", random_bytes(400_000))],
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("image.tar");
    save_image(&docker, &image, &archive).await;
    let cfg = config(&env.registry, &repository("saved"), &["s"]);
    let recorder = Recorder::default();
    let pushed = push_archive(
        &archive,
        &cfg,
        dir.path(),
        &recorder,
        CancellationToken::new(),
    )
    .await
    .unwrap();
    let (status, body) = fetch_manifest(&env.registry, &cfg.repository, "s", None).await;
    assert_eq!(status, 200);
    assert_eq!(sha256(&body), pushed.digest);
    // The same image from the daemon gives the same manifest: packing is deterministic.
    let from_daemon = push(&docker, &image, &cfg, dir.path()).await.0.unwrap();
    assert_eq!(from_daemon.digest, pushed.digest);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pushes_an_oci_archive_made_by_skopeo_without_recompressing_its_layers() {
    let env = env();
    let docker = docker().await;
    let image = build_image(
        &docker,
        &env.base_image,
        &[("o.bin", random_bytes(300_000))],
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("oci.tar");
    let mut skopeo = std::process::Command::new("skopeo");
    skopeo.arg("copy");
    if let Ok(host) = std::env::var("DOCKER_HOST") {
        skopeo.arg("--src-daemon-host").arg(host);
    }
    let output = skopeo
        .arg(format!("docker-daemon:{image}"))
        .arg(format!("oci-archive:{}", archive.display()))
        .output()
        .expect("skopeo is needed for this test (Debian package skopeo)");
    assert!(
        output.status.success(),
        "skopeo copy failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    // The digests skopeo gave the compressed layers must survive the push unchanged.
    let extracted = dir.path().join("extracted");
    std::fs::create_dir_all(&extracted).unwrap();
    tar::Archive::new(std::fs::File::open(&archive).unwrap())
        .unpack(&extracted)
        .unwrap();
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(extracted.join("index.json")).unwrap()).unwrap();
    let manifest_digest = index["manifests"][0]["digest"].as_str().unwrap();
    let source_manifest: serde_json::Value = serde_json::from_slice(
        &std::fs::read(
            extracted
                .join("blobs/sha256")
                .join(manifest_digest.trim_start_matches("sha256:")),
        )
        .unwrap(),
    )
    .unwrap();
    let source_layers: Vec<String> = source_manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["digest"].as_str().unwrap().to_string())
        .collect();

    let cfg = config(&env.registry, &repository("oci"), &["o"]);
    let recorder = Recorder::default();
    let pushed = push_archive(
        &archive,
        &cfg,
        dir.path(),
        &recorder,
        CancellationToken::new(),
    )
    .await
    .unwrap_or_else(|err| panic!("push failed: {err}"));
    let (_, body) = fetch_manifest(&env.registry, &cfg.repository, &pushed.digest, None).await;
    let manifest: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let pushed_layers: Vec<String> = manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["digest"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(pushed_layers, source_layers);
    assert_eq!(
        manifest["config"]["digest"],
        source_manifest["config"]["digest"]
    );
}

// ---------------------------------------------------------------------------------------------
// Credentials

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pushes_to_a_basic_auth_registry_with_docker_config_credentials() {
    let env = env();
    let docker = docker().await;
    add_docker_config(
        &env.auth_registry,
        basic_entry(&env.auth_user, &env.auth_password),
        None,
    );
    let image = build_image(
        &docker,
        &env.base_image,
        &[("c.bin", random_bytes(100_000))],
    )
    .await;
    let cfg = config(&env.auth_registry, &repository("basic"), &["v1"]);
    let pushed = push(&docker, &image, &cfg, cache_dir().path())
        .await
        .0
        .unwrap();
    let (status, body) = fetch_manifest(
        &env.auth_registry,
        &cfg.repository,
        "v1",
        Some((&env.auth_user, &env.auth_password)),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(sha256(&body), pushed.digest);
}

/// Writes `docker-credential-<name>`, answering for `host` only, as the real helpers do.
fn write_helper(name: &str, host: &str) {
    let env = env();
    let helper = env.docker_config.join(format!("docker-credential-{name}"));
    std::fs::write(
        &helper,
        format!(
            "#!/bin/sh\nread server\nif [ \"$1\" = get ] && [ \"$server\" = \"{host}\" ]; then\n\
             printf '{{\"ServerURL\":\"%s\",\"Username\":\"{user}\",\"Secret\":\"{password}\"}}' \"$server\"\n\
             else echo 'credentials not found in native keychain'; exit 1; fi\n",
            user = env.auth_user,
            password = env.auth_password
        ),
    )
    .unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&helper, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn credentials_come_from_a_credential_helper() {
    let env = env();
    let docker = docker().await;
    // The helper serves the auth registry through a proxy port, so its host is its own.
    let proxy = FaultProxy::start(&env.auth_registry, vec![]).await;
    write_helper("shipittest", &proxy.host());
    add_docker_config(&proxy.host(), serde_json::Value::Null, Some("shipittest"));
    let image = build_image(&docker, &env.base_image, &[("h.bin", random_bytes(50_000))]).await;
    let cfg = config(&proxy.host(), &repository("helper"), &["v1"]);
    let pushed = push(&docker, &image, &cfg, cache_dir().path())
        .await
        .0
        .unwrap();
    let (status, _) = fetch_manifest(
        &env.auth_registry,
        &cfg.repository,
        &pushed.digest,
        Some((&env.auth_user, &env.auth_password)),
    )
    .await;
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn credentials_come_from_the_credential_store() {
    let env = env();
    let docker = docker().await;
    let proxy = FaultProxy::start(&env.auth_registry, vec![]).await;
    // The store answers "not found" for every other host, which means anonymous to the
    // tests that push elsewhere meanwhile.
    write_helper("shipitstore", &proxy.host());
    edit_docker_config(|config| {
        config["credsStore"] = serde_json::Value::String("shipitstore".into());
    });
    let cfg = config(&proxy.host(), &repository("store"), &["v1"]);
    let pushed = push(&docker, &env.base_image, &cfg, cache_dir().path())
        .await
        .0
        .unwrap_or_else(|err| panic!("push failed: {err}"));
    assert!(pushed.digest.starts_with("sha256:"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn wrong_credentials_fail_clearly_without_echoing_them() {
    let env = env();
    let docker = docker().await;
    let proxy = FaultProxy::start(&env.auth_registry, vec![]).await;
    add_docker_config(&proxy.host(), basic_entry("AWS", "not-the-password"), None);
    let cfg = config(&proxy.host(), &repository("wrong"), &["v1"]);
    let (result, recorder) = push(&docker, &env.base_image, &cfg, cache_dir().path()).await;
    assert_auth_failure(
        &result.unwrap_err(),
        &recorder,
        &proxy.host(),
        &cfg.repository,
        &["rejected"],
        &["not-the-password"],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_registry_that_wants_credentials_says_so_when_none_are_configured() {
    let env = env();
    let docker = docker().await;
    let proxy = FaultProxy::start(&env.auth_registry, vec![]).await;
    let cfg = config(&proxy.host(), &repository("anon"), &["v1"]);
    let err = push(&docker, &env.base_image, &cfg, cache_dir().path())
        .await
        .0
        .unwrap_err();
    assert!(err.to_string().contains("requires credentials"), "{err}");
}

// ---------------------------------------------------------------------------------------------
// Bearer tokens from a token service

/// A front user with a password unique to the test, in the shared Docker config.
fn front_login(front: &TokenFront, password: &str) {
    add_docker_config(&front.host(), basic_entry("robot", password), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pushes_through_a_bearer_token_service_with_docker_config_credentials() {
    let env = env();
    let docker = docker().await;
    let password = format!("front-pw-{}", unique());
    let front = TokenFront::start(&env.registry, "robot", &password, None).await;
    front_login(&front, &password);
    let image = build_image(
        &docker,
        &env.base_image,
        &[("b.bin", random_bytes(200_000))],
    )
    .await;
    let cfg = config(&front.host(), &repository("bearer"), &["v1"]);
    let (result, recorder) = push(&docker, &image, &cfg, cache_dir().path()).await;
    let pushed = result.unwrap_or_else(|err| panic!("push failed: {err} {:?}", recorder.lines()));

    let (status, body) = fetch_manifest(&env.registry, &cfg.repository, "v1", None).await;
    assert_eq!(status, 200);
    assert_eq!(sha256(&body), pushed.digest);
    let log = front.log.lock().unwrap();
    assert!(!log.issued.is_empty());
    // One token serves the whole push: it was asked for push on the repository.
    assert_eq!(log.issued.len(), 1, "tokens: {:?}", log.token_queries);
    let query = &log.token_queries[0];
    assert!(
        query.contains(&format!("service={FRONT_SERVICE}")),
        "{query}"
    );
    assert!(
        query.contains(&format!(
            "scope=repository%3A{}%3Apull%2Cpush",
            cfg.repository.replace('/', "%2F")
        )),
        "{query}"
    );
    assert!(
        log.forwarded
            .iter()
            .any(|(path, _)| path.contains("/manifests/v1")),
        "{:?}",
        log.forwarded
    );
    assert!(
        log.forwarded
            .iter()
            .all(|(_, token)| *token == log.issued[0])
    );
    for line in recorder.lines() {
        assert!(
            !line.contains(&password) && !line.contains(&log.issued[0]),
            "{line}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_identity_token_is_exchanged_at_the_token_service_and_never_sent_to_the_registry() {
    let env = env();
    let docker = docker().await;
    let front = TokenFront::start(&env.registry, "robot", "unused-password", None).await;
    add_docker_config(
        &front.host(),
        serde_json::json!({ "identitytoken": FRONT_IDENTITY_TOKEN }),
        None,
    );
    let image = build_image(
        &docker,
        &env.base_image,
        &[("id.bin", random_bytes(100_000))],
    )
    .await;
    let cfg = config(&front.host(), &repository("identity"), &["v1"]);
    let (result, recorder) = push(&docker, &image, &cfg, cache_dir().path()).await;
    let pushed = result.unwrap_or_else(|err| panic!("push failed: {err} {:?}", recorder.lines()));
    let (status, body) = fetch_manifest(&env.registry, &cfg.repository, "v1", None).await;
    assert_eq!(status, 200);
    assert_eq!(sha256(&body), pushed.digest);

    {
        let log = front.log.lock().unwrap();
        assert_eq!(log.issued.len(), 1, "tokens: {:?}", log.token_queries);
        assert_eq!(
            log.token_queries[0],
            format!("oauth scope=repository:{}:pull,push", cfg.repository),
            "the grant asks for push on the repository"
        );
        assert!(
            log.forwarded
                .iter()
                .all(|(_, token)| *token == log.issued[0]),
            "the registry saw only the access token: {:?}",
            log.forwarded
        );
        for line in recorder.lines() {
            assert!(!line.contains(FRONT_IDENTITY_TOKEN), "{line}");
        }
    }

    // A token the service does not take: an auth error naming the target, without the token.
    add_docker_config(
        &front.host(),
        serde_json::json!({ "identitytoken": "revoked-identity-token" }),
        None,
    );
    let cfg = config(&front.host(), &repository("identity-revoked"), &["v1"]);
    let (result, recorder) = push(&docker, &image, &cfg, cache_dir().path()).await;
    assert_auth_failure(
        &result.expect_err("a refused identity token must fail the push"),
        &recorder,
        &front.host(),
        &cfg.repository,
        &["identity token", "refused"],
        &["revoked-identity-token"],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_token_service_refusing_the_credentials_is_an_auth_error_naming_the_target() {
    let env = env();
    let docker = docker().await;
    let password = format!("front-pw-{}", unique());
    let front = TokenFront::start(&env.registry, "robot", &password, None).await;
    let wrong = format!("wrong-pw-{}", unique());
    front_login(&front, &wrong);
    let cfg = config(&front.host(), &repository("bearer-wrong"), &["v1"]);
    let (result, recorder) = push(&docker, &env.base_image, &cfg, cache_dir().path()).await;
    assert_auth_failure(
        &result.unwrap_err(),
        &recorder,
        &front.host(),
        &cfg.repository,
        &["token service", "refused"],
        &[&wrong, &password],
    );
    let log = front.log.lock().unwrap();
    assert_eq!(log.token_refusals, 1, "refused credentials are not retried");
    assert!(log.issued.is_empty() && log.forwarded.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_token_that_expires_mid_push_is_renewed_and_the_push_completes() {
    let env = env();
    let docker = docker().await;
    let password = format!("front-pw-{}", unique());
    // The first token is good for four registry requests: the blob checks of a two-layer
    // image and little more.
    let front = TokenFront::start(&env.registry, "robot", &password, Some(4)).await;
    front_login(&front, &password);
    let image = build_image(
        &docker,
        &env.base_image,
        &[
            ("x1.bin", random_bytes(300_000)),
            ("x2.bin", random_bytes(300_000)),
        ],
    )
    .await;
    let cfg = config(&front.host(), &repository("bearer-expiry"), &["v1", "v2"]);
    let (result, recorder) = push(&docker, &image, &cfg, cache_dir().path()).await;
    let pushed = result.unwrap_or_else(|err| panic!("push failed: {err} {:?}", recorder.lines()));
    for tag in ["v1", "v2"] {
        let (status, body) = fetch_manifest(&env.registry, &cfg.repository, tag, None).await;
        assert_eq!(status, 200, "{tag}");
        assert_eq!(sha256(&body), pushed.digest, "{tag}");
    }
    let log = front.log.lock().unwrap();
    assert!(
        log.issued.len() >= 2,
        "no new token: {:?}",
        log.token_queries
    );
    let first = &log.issued[0];
    assert_eq!(
        log.forwarded.iter().filter(|(_, t)| t == first).count(),
        4,
        "the first token served exactly its four requests"
    );
    assert!(
        log.forwarded.iter().any(|(_, t)| t != first),
        "nothing went through on a renewed token"
    );
    assert!(
        recorder.count("refused the token") >= 1,
        "{:?}",
        recorder.lines()
    );
    for line in recorder.lines() {
        assert!(
            log.issued.iter().all(|t| !line.contains(t.as_str())) && !line.contains(&password),
            "{line}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Faults: retries, restarts, bad servers

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_push_survives_resets_503s_and_429s() {
    let env = env();
    let docker = docker().await;
    let proxy = FaultProxy::start(
        &env.registry,
        vec![
            Rule {
                method: "HEAD",
                path_contains: "/blobs/",
                fail_on: vec![1, 3],
                fault: Fault::Status(429, "{\"errors\":[{\"code\":\"TOOMANYREQUESTS\"}]}"),
            },
            Rule {
                method: "POST",
                path_contains: "/blobs/uploads/",
                fail_on: vec![1],
                fault: Fault::Status(503, "upstream busy"),
            },
            Rule {
                // The upload itself is interrupted: it must be restarted from the start.
                method: "PUT",
                path_contains: "/blobs/uploads/",
                fail_on: vec![1, 2],
                fault: Fault::Reset,
            },
            Rule {
                method: "PUT",
                path_contains: "/manifests/",
                fail_on: vec![1],
                fault: Fault::Status(502, "<html><body>Bad Gateway</body></html>"),
            },
        ],
    )
    .await;
    let image = build_image(
        &docker,
        &env.base_image,
        &[
            ("f1.bin", random_bytes(1_500_000)),
            ("f2.bin", random_bytes(700_000)),
        ],
    )
    .await;
    let cfg = config(&proxy.host(), &repository("faults"), &["v1"]);
    let (result, recorder) = push(&docker, &image, &cfg, cache_dir().path()).await;
    let pushed = result.unwrap_or_else(|err| {
        panic!(
            "push failed: {err}\nmessages: {:?}\nrequests: {:?}",
            recorder.lines(),
            proxy.requests.lock().unwrap()
        )
    });
    assert!(proxy.injected.load(Ordering::SeqCst) >= 5);
    assert!(recorder.count("retry") >= 4, "{:?}", recorder.lines());
    let (status, body) = fetch_manifest(&env.registry, &cfg.repository, "v1", None).await;
    assert_eq!(status, 200);
    assert_eq!(sha256(&body), pushed.digest);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_manifest_the_registry_rejects_fails_with_its_reason() {
    let env = env();
    let docker = docker().await;
    let proxy = FaultProxy::start(
        &env.registry,
        vec![Rule {
            method: "PUT",
            path_contains: "/manifests/",
            fail_on: (1..50).collect(),
            fault: Fault::Status(
                400,
                "{\"errors\":[{\"code\":\"MANIFEST_INVALID\",\"message\":\"manifest invalid\"}]}",
            ),
        }],
    )
    .await;
    let cfg = config(&proxy.host(), &repository("rejected"), &["v1"]);
    let err = push(&docker, &env.base_image, &cfg, cache_dir().path())
        .await
        .0
        .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("MANIFEST_INVALID: manifest invalid"),
        "{text}"
    );
    assert!(text.contains("push the manifest as tag v1"), "{text}");
    assert!(
        text.contains(&proxy.host()) && text.contains(&cfg.repository),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_server_answering_html_is_named_as_not_a_registry() {
    let env = env();
    let docker = docker().await;
    let addr = html_server().await;
    let cfg = config(&addr.to_string(), &repository("html"), &["v1"]);
    let err = push(&docker, &env.base_image, &cfg, cache_dir().path())
        .await
        .0
        .unwrap_err();
    let text = err.to_string();
    assert!(text.contains("HTML page"), "{text}");
    assert!(
        text.contains(&addr.to_string()) && text.contains(&cfg.repository),
        "{text}"
    );
    assert!(!text.contains("Please sign in"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_html_error_page_mid_push_is_named_and_not_echoed() {
    let env = env();
    let docker = docker().await;
    let proxy = FaultProxy::start(
        &env.registry,
        vec![Rule {
            method: "PUT",
            path_contains: "/manifests/",
            fail_on: (1..50).collect(),
            fault: Fault::Status(
                500,
                "<!DOCTYPE html><html><head><title>Oops</title></head>\
                 <body>Internal error, request id 42</body></html>",
            ),
        }],
    )
    .await;
    let cfg = config(&proxy.host(), &repository("html-mid"), &["v1"]);
    let err = push(&docker, &env.base_image, &cfg, cache_dir().path())
        .await
        .0
        .unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, PushError::Registry { .. }), "{text}");
    assert!(text.contains("HTTP 500 with an HTML page"), "{text}");
    assert!(text.contains("push the manifest"), "{text}");
    assert!(
        text.contains(&proxy.host()) && text.contains(&cfg.repository),
        "{text}"
    );
    assert!(text.contains("after 5 attempts"), "{text}");
    assert!(
        !text.contains("request id") && !text.contains("<"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn credentials_a_registry_echoes_in_an_error_never_reach_the_message() {
    let env = env();
    let docker = docker().await;
    let proxy = FaultProxy::start(
        &env.auth_registry,
        vec![Rule {
            method: "PUT",
            path_contains: "/manifests/",
            fail_on: (1..50).collect(),
            fault: Fault::EchoCredentials(400),
        }],
    )
    .await;
    add_docker_config(
        &proxy.host(),
        basic_entry(&env.auth_user, &env.auth_password),
        None,
    );
    let cfg = config(&proxy.host(), &repository("echo"), &["v1"]);
    let (result, recorder) = push(&docker, &env.base_image, &cfg, cache_dir().path()).await;
    let err = result.unwrap_err();
    let text = err.to_string();
    assert!(text.contains("MANIFEST_INVALID"), "{text}");
    assert!(text.contains("not accepted for Authorization"), "{text}");
    let basic = base64::engine::general_purpose::STANDARD
        .encode(format!("{}:{}", env.auth_user, env.auth_password));
    for shown in [text.clone(), format!("{err:?}")]
        .into_iter()
        .chain(recorder.lines())
    {
        assert_no_secret(&shown);
        assert!(!shown.contains(&basic), "{shown}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_unreachable_registry_fails_after_retries_naming_it() {
    let env = env();
    let docker = docker().await;
    // Nothing listens on a port just released.
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let host = format!("127.0.0.1:{port}");
    let cfg = config(&host, &repository("unreachable"), &["v1"]);
    let err = push(&docker, &env.base_image, &cfg, cache_dir().path())
        .await
        .0
        .unwrap_err();
    let text = err.to_string();
    assert!(text.contains("cannot connect"), "{text}");
    assert!(text.contains(&host), "{text}");
    assert!(text.contains("attempts"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_invalid_repository_name_is_refused_before_any_work() {
    let env = env();
    let docker = docker().await;
    let cfg = config(&env.registry, "Team/API", &["v1"]);
    let err = push(&docker, &env.base_image, &cfg, cache_dir().path())
        .await
        .0
        .unwrap_err();
    assert!(matches!(err, PushError::InvalidConfig(_)), "{err}");
    assert!(err.to_string().contains("Team/API"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_missing_image_is_an_inspect_error() {
    let env = env();
    let docker = docker().await;
    let cfg = config(&env.registry, &repository("missing"), &["v1"]);
    let err = push(
        &docker,
        "shipit-no-such-image:nope",
        &cfg,
        cache_dir().path(),
    )
    .await
    .0
    .unwrap_err();
    assert!(matches!(err, PushError::Inspect { .. }), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cancellation_stops_the_push() {
    let env = env();
    let docker = docker().await;
    let cfg = config(&env.registry, &repository("cancel"), &["v1"]);
    let cancel = CancellationToken::new();
    cancel.cancel();
    let recorder = Recorder::default();
    let err = push_image(
        &docker,
        &env.base_image,
        &cfg,
        cache_dir().path(),
        &recorder,
        cancel,
    )
    .await
    .unwrap_err();
    assert!(matches!(err, PushError::Cancelled { .. }), "{err}");
}

// ---------------------------------------------------------------------------------------------
// Retry-After and interrupted uploads

/// Builds an image with `files`, pushes it as `v1` through `proxy` (in front of the open
/// registry) and checks that the registry serves the pushed manifest back; what the proxy saw,
/// and the progress lines.
async fn push_through(
    proxy: &FaultProxy,
    name: &str,
    files: &[(&str, Vec<u8>)],
) -> (Vec<Seen>, Recorder) {
    let env = env();
    let docker = docker().await;
    let image = build_image(&docker, &env.base_image, files).await;
    let cfg = config(&proxy.host(), &repository(name), &["v1"]);
    let (result, recorder) = push(&docker, &image, &cfg, cache_dir().path()).await;
    let pushed = result.unwrap_or_else(|err| {
        panic!(
            "push failed: {err}\n{:?}\n{:?}",
            recorder.lines(),
            proxy.seen()
        )
    });
    let (status, body) = fetch_manifest(&env.registry, &cfg.repository, "v1", None).await;
    assert_eq!(status, 200);
    assert_eq!(sha256(&body), pushed.digest, "v1 points elsewhere");
    (proxy.seen(), recorder)
}

/// The first request after `fault` for the same method and resource: its retry.
fn retry_of<'a>(seen: &'a [Seen], fault: &Seen) -> &'a Seen {
    seen.iter()
        .find(|s| s.at > fault.at && s.method == fault.method && s.resource() == fault.resource())
        .unwrap_or_else(|| panic!("no retry of {fault:?} in {seen:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn retry_after_is_honoured_in_seconds_and_as_an_http_date() {
    let env = env();
    let proxy = FaultProxy::start(
        &env.registry,
        vec![
            Rule {
                method: "HEAD",
                path_contains: "/blobs/",
                fail_on: vec![1],
                fault: Fault::RetryAfter(429, After::Seconds(2)),
            },
            Rule {
                method: "PUT",
                path_contains: "/manifests/",
                fail_on: vec![1],
                fault: Fault::RetryAfter(503, After::DateIn(2)),
            },
        ],
    )
    .await;
    let (seen, recorder) =
        push_through(&proxy, "retry-after", &[("r.bin", random_bytes(100_000))]).await;

    let faults: Vec<&Seen> = seen.iter().filter(|s| s.injected).collect();
    assert_eq!(faults.len(), 2, "{seen:?}");
    for fault in faults {
        let not_before = fault.not_before.expect("a Retry-After fault");
        let retry = retry_of(&seen, fault);
        assert!(
            retry.wall >= not_before,
            "{fault:?} was retried {:?} before its Retry-After allowed",
            not_before.duration_since(retry.wall).unwrap_or_default()
        );
        // And not much later either: the wait is the header's, not a long backoff.
        assert!(
            retry.at - fault.at < Duration::from_secs(10),
            "{fault:?} retried after {:?}",
            retry.at - fault.at
        );
    }
    assert_eq!(
        recorder.count("as the registry's Retry-After asks"),
        2,
        "{:?}",
        recorder.lines()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_retry_after_beyond_the_cap_fails_at_once_saying_so() {
    let env = env();
    let docker = docker().await;
    let proxy = FaultProxy::start(
        &env.registry,
        vec![Rule {
            method: "HEAD",
            path_contains: "/blobs/",
            fail_on: (1..100).collect(),
            fault: Fault::RetryAfter(429, After::Seconds(3600)),
        }],
    )
    .await;
    let cfg = config(&proxy.host(), &repository("retry-cap"), &["v1"]);
    let started = Instant::now();
    let err = push(&docker, &env.base_image, &cfg, cache_dir().path())
        .await
        .0
        .unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "the push waited {:?}",
        started.elapsed()
    );
    let text = err.to_string();
    assert!(matches!(err, PushError::Registry { .. }), "{text}");
    assert!(text.contains("HTTP 429"), "{text}");
    assert!(
        text.contains("asked to wait 3600s") && text.contains("Retry-After"),
        "{text}"
    );
    assert!(
        text.contains(&proxy.host()) && text.contains(&cfg.repository),
        "{text}"
    );
    // Each blob check was tried once: nobody waits out an hour.
    let seen = proxy.seen();
    let mut heads: Vec<&str> = seen
        .iter()
        .filter(|s| s.method == "HEAD")
        .map(Seen::resource)
        .collect();
    let total = heads.len();
    heads.sort();
    heads.dedup();
    assert_eq!(heads.len(), total, "{seen:?}");
}

/// Bytes of random data that stay above shipit's chunked-upload threshold (32 MiB) once
/// compressed: random data does not compress.
const BIG_LAYER: usize = 40 * 1024 * 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_interrupted_chunked_upload_resumes_from_the_acknowledged_offset() {
    let env = env();
    let proxy = FaultProxy::start(
        &env.registry,
        vec![Rule {
            method: "PATCH",
            path_contains: "/blobs/uploads/",
            fail_on: vec![2],
            fault: Fault::CutBody(1024 * 1024),
        }],
    )
    .await;
    let (seen, recorder) =
        push_through(&proxy, "resume", &[("big.bin", random_bytes(BIG_LAYER))]).await;

    let cut = seen
        .iter()
        .find(|s| s.injected)
        .unwrap_or_else(|| panic!("no PATCH was cut: {seen:?}"));
    let offset = cut.range_start().expect("the PATCH had a Content-Range");
    assert!(
        offset > 0,
        "the second chunk starts after the first: {seen:?}"
    );
    // The same upload after the cut: its status, then the chunk again from the offset the
    // registry acknowledged; never from zero, never a new upload.
    let upload: Vec<&Seen> = seen
        .iter()
        .filter(|s| s.resource() == cut.resource() && s.at > cut.at)
        .collect();
    assert!(upload.len() >= 3, "{upload:?}");
    assert_eq!(upload[0].method, "GET", "{upload:?}");
    assert_eq!(upload[1].method, "PATCH", "{upload:?}");
    assert_eq!(upload[1].range_start(), Some(offset), "{upload:?}");
    assert_eq!(upload.last().unwrap().method, "PUT", "{upload:?}");
    assert!(
        seen.iter()
            .filter(|s| s.at > cut.at && s.method == "PATCH")
            .all(|s| s.range_start() != Some(0)),
        "the upload restarted: {seen:?}"
    );
    assert_eq!(
        recorder.count(&format!("at byte {offset} of")),
        1,
        "{:?}",
        recorder.lines()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_upload_the_registry_lost_starts_again_from_zero() {
    let env = env();
    let proxy = FaultProxy::start(
        &env.registry,
        vec![
            Rule {
                method: "PATCH",
                path_contains: "/blobs/uploads/",
                fail_on: vec![2],
                fault: Fault::CutBody(1024 * 1024),
            },
            Rule {
                // The second chunk of the new upload: the registry disputes the offset.
                method: "PATCH",
                path_contains: "/blobs/uploads/",
                fail_on: vec![4],
                fault: Fault::Status(
                    416,
                    "{\"errors\":[{\"code\":\"BLOB_UPLOAD_INVALID\",\"message\":\"range\"}]}",
                ),
            },
            Rule {
                method: "GET",
                path_contains: "/blobs/uploads/",
                fail_on: vec![1],
                fault: Fault::Status(
                    404,
                    "{\"errors\":[{\"code\":\"BLOB_UPLOAD_UNKNOWN\",\"message\":\"blob upload unknown\"}]}",
                ),
            },
        ],
    )
    .await;
    let (seen, recorder) =
        push_through(&proxy, "restart", &[("big.bin", random_bytes(BIG_LAYER))]).await;

    let cut = seen
        .iter()
        .position(|s| s.injected && s.method == "PATCH")
        .unwrap_or_else(|| panic!("no PATCH was cut: {seen:?}"));
    let after: Vec<&Seen> = seen[cut + 1..]
        .iter()
        .filter(|s| s.resource().contains("/blobs/"))
        .collect();
    let lost = after
        .iter()
        .position(|s| s.method == "GET" && s.injected)
        .unwrap_or_else(|| panic!("no status check after the cut: {after:?}"));
    let restarted = after[lost + 1..]
        .iter()
        .position(|s| s.method == "POST")
        .map(|i| i + lost + 1)
        .unwrap_or_else(|| panic!("no new upload after the lost one: {after:?}"));
    let first_patch = after[restarted..]
        .iter()
        .find(|s| s.method == "PATCH")
        .unwrap_or_else(|| panic!("no PATCH in the new upload: {after:?}"));
    assert_eq!(first_patch.range_start(), Some(0), "{after:?}");
    assert_ne!(first_patch.resource(), seen[cut].resource(), "{after:?}");
    assert_eq!(
        recorder.count("lost the upload"),
        1,
        "{:?}",
        recorder.lines()
    );
    // A 416 starts the upload again too, without asking the registry's status.
    let disputed = seen
        .iter()
        .position(|s| {
            s.injected && s.method == "PATCH" && s.content_range.is_some() && s.at > seen[cut].at
        })
        .unwrap_or_else(|| panic!("no disputed PATCH: {seen:?}"));
    let later = &seen[disputed + 1..];
    let patch = later
        .iter()
        .position(|s| s.method == "PATCH")
        .unwrap_or_else(|| panic!("no PATCH after the disputed one: {seen:?}"));
    assert_eq!(later[patch].range_start(), Some(0), "{seen:?}");
    assert_ne!(
        later[patch].resource(),
        seen[disputed].resource(),
        "{seen:?}"
    );
    assert!(
        later[..patch].iter().any(|s| s.method == "POST")
            && later[..patch].iter().all(|s| s.method != "GET"),
        "a new upload, no status check: {seen:?}"
    );
    assert_eq!(
        recorder.count("disputes the offset"),
        1,
        "{:?}",
        recorder.lines()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn chunked_uploads_survive_ecr_answers_201_and_a_stale_range() {
    let env = env();
    let proxy = FaultProxy::start(
        &env.registry,
        vec![Rule {
            method: "PATCH",
            path_contains: "/blobs/uploads/",
            fail_on: (1..100).collect(),
            fault: Fault::EcrLikeChunk,
        }],
    )
    .await;
    let (seen, _) = push_through(&proxy, "ecr-like", &[("big.bin", random_bytes(BIG_LAYER))]).await;
    let starts: Vec<Option<u64>> = seen
        .iter()
        .filter(|s| s.method == "PATCH")
        .map(Seen::range_start)
        .collect();
    assert_eq!(
        starts,
        vec![Some(0), Some(16 << 20), Some(32 << 20)],
        "three chunks, each after the last, whatever Range said"
    );
}

// ---------------------------------------------------------------------------------------------
// ECR, against moto for the API and the basic-auth registry for the registry protocol

fn ecr_config(repository: &str, tags: &[&str], settings: EcrSettings) -> PushConfig {
    let env = env();
    PushConfig {
        registry: "ecr".into(),
        repository: repository.to_string(),
        tags: tags.iter().map(|t| t.to_string()).collect(),
        compression: Compression::Gzip,
        compression_level: None,
        layer_source: LayerSource::Auto,
        format: ManifestFormat::Oci,
        ecr: Some(EcrSettings {
            region: Some("us-east-1".into()),
            endpoint_url: Some(env.aws_endpoint.clone()),
            registry_host: Some(env.auth_registry.clone()),
            ..settings
        }),
    }
}

async fn moto_client() -> aws_sdk_ecr::Client {
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .endpoint_url(env().aws_endpoint.clone())
        .load()
        .await;
    aws_sdk_ecr::Client::new(&config)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ecr_push_creates_and_configures_the_repository_and_uses_the_token() {
    let env = env();
    let docker = docker().await;
    let image = build_image(
        &docker,
        &env.base_image,
        &[("e.bin", random_bytes(100_000))],
    )
    .await;
    let repo = repository("ecr");
    let cfg = ecr_config(
        &repo,
        &["v1"],
        EcrSettings {
            create_repository: true,
            immutable_tags: Some(true),
            scan_on_push: Some(true),
            lifecycle: Some(LifecycleSettings {
                keep_last: Some(10),
                expire_untagged_days: Some(3),
            }),
            ..EcrSettings::default()
        },
    );
    let (result, recorder) = push(&docker, &image, &cfg, cache_dir().path()).await;
    let pushed = result.unwrap_or_else(|err| panic!("push failed: {err} {:?}", recorder.lines()));
    assert_eq!(pushed.registry, env.auth_registry);
    assert_eq!(
        recorder.count("created ECR repository"),
        1,
        "{:?}",
        recorder.lines()
    );

    let ecr = moto_client().await;
    let described = ecr
        .describe_repositories()
        .repository_names(&repo)
        .send()
        .await
        .unwrap();
    let repository = &described.repositories()[0];
    assert_eq!(
        repository.image_tag_mutability().map(|m| m.as_str()),
        Some("IMMUTABLE")
    );
    assert!(
        repository
            .image_scanning_configuration()
            .unwrap()
            .scan_on_push()
    );
    let policy = ecr
        .get_lifecycle_policy()
        .repository_name(&repo)
        .send()
        .await
        .unwrap();
    let policy: serde_json::Value =
        serde_json::from_str(policy.lifecycle_policy_text().unwrap()).unwrap();
    assert_eq!(policy["rules"][1]["selection"]["countNumber"], 10);

    // Applying the same settings again changes nothing.
    let (again, recorder) = push(&docker, &image, &cfg, cache_dir().path()).await;
    assert_eq!(again.unwrap().digest, pushed.digest);
    assert_eq!(
        recorder.count("ECR repository"),
        0,
        "{:?}",
        recorder.lines()
    );
    assert!(manifest_exists(&cfg, &pushed.digest).await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ecr_push_to_a_missing_repository_without_create_fails_clearly() {
    let docker = docker().await;
    let cfg = ecr_config(&repository("absent"), &["v1"], EcrSettings::default());
    let err = push(&docker, &env().base_image, &cfg, cache_dir().path())
        .await
        .0
        .unwrap_err();
    let text = err.to_string();
    assert!(text.contains("does not exist"), "{text}");
    assert!(text.contains(&cfg.repository), "{text}");
    assert!(err.hint().unwrap().contains("create_repository"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_existing_tag_on_an_immutable_repository_is_a_clear_error() {
    let env = env();
    let docker = docker().await;
    let repo = repository("immutable");
    let ecr = moto_client().await;
    ecr.create_repository()
        .repository_name(&repo)
        .image_tag_mutability(aws_sdk_ecr::types::ImageTagMutability::Immutable)
        .send()
        .await
        .unwrap();
    let other_manifest = serde_json::json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": format!("sha256:{}", "b".repeat(64)), "size": 2},
        "layers": []
    })
    .to_string();
    let seeded = ecr
        .put_image()
        .repository_name(&repo)
        .image_manifest(other_manifest)
        .image_tag("v1")
        .send()
        .await
        .unwrap();
    let existing = seeded
        .image()
        .unwrap()
        .image_id()
        .unwrap()
        .image_digest()
        .unwrap()
        .to_string();
    let image = build_image(&docker, &env.base_image, &[("i.bin", random_bytes(10_000))]).await;
    let cfg = ecr_config(&repo, &["v1"], EcrSettings::default());
    let err = push(&docker, &image, &cfg, cache_dir().path())
        .await
        .0
        .unwrap_err();
    assert!(matches!(err, PushError::ImmutableTag { .. }), "{err}");
    let text = err.to_string();
    assert!(text.contains("v1") && text.contains(&existing), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_scan_gate_fails_on_findings_at_or_above_its_severity() {
    let env = env();
    let docker = docker().await;
    let repo = repository("scan");
    let image = build_image(&docker, &env.base_image, &[("g.bin", random_bytes(10_000))]).await;
    let create = ecr_config(
        &repo,
        &["v1"],
        EcrSettings {
            create_repository: true,
            ..EcrSettings::default()
        },
    );
    let pushed = push(&docker, &image, &create, cache_dir().path())
        .await
        .0
        .unwrap();
    // moto does not see the registry side; register the manifest with it for the scan.
    let (_, manifest) = fetch_manifest(
        &env.auth_registry,
        &repo,
        &pushed.digest,
        Some((&env.auth_user, &env.auth_password)),
    )
    .await;
    let ecr = moto_client().await;
    ecr.put_image()
        .repository_name(&repo)
        .image_manifest(String::from_utf8(manifest).unwrap())
        .image_digest(&pushed.digest)
        .send()
        .await
        .unwrap();

    let gated = |severity| {
        ecr_config(
            &repo,
            &["v1"],
            EcrSettings {
                scan_gate: Some(ScanGate {
                    severity,
                    timeout: shipit::registry::HumanDuration(Duration::from_secs(60)),
                }),
                ..EcrSettings::default()
            },
        )
    };
    // moto reports one HIGH finding for every scan.
    let err = push(&docker, &image, &gated(Severity::High), cache_dir().path())
        .await
        .0
        .unwrap_err();
    assert!(matches!(err, PushError::ScanFindings { .. }), "{err}");
    assert!(err.to_string().contains("1 HIGH"), "{err}");
    push(
        &docker,
        &image,
        &gated(Severity::Critical),
        cache_dir().path(),
    )
    .await
    .0
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_token_refused_mid_push_is_renewed_once() {
    let env = env();
    let docker = docker().await;
    let proxy = FaultProxy::start(
        &env.auth_registry,
        vec![Rule {
            method: "PUT",
            path_contains: "/blobs/uploads/",
            fail_on: vec![1],
            fault: Fault::Status(
                401,
                "{\"errors\":[{\"code\":\"UNAUTHORIZED\",\"message\":\"token expired\"}]}",
            ),
        }],
    )
    .await;
    let image = build_image(&docker, &env.base_image, &[("t.bin", random_bytes(80_000))]).await;
    let mut cfg = ecr_config(
        &repository("renew"),
        &["v1"],
        EcrSettings {
            create_repository: true,
            ..EcrSettings::default()
        },
    );
    cfg.ecr.as_mut().unwrap().registry_host = Some(proxy.host());
    let (result, recorder) = push(&docker, &image, &cfg, cache_dir().path()).await;
    result.unwrap_or_else(|err| panic!("push failed: {err} {:?}", recorder.lines()));
    assert_eq!(
        recorder.count("refused the ECR token"),
        1,
        "{:?}",
        recorder.lines()
    );
    for line in recorder.lines() {
        assert_no_secret(&line);
    }
}
