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
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use bollard::Docker;
use futures::StreamExt as _;
use shipit::registry::{
    Compression, EcrSettings, LifecycleSettings, ManifestFormat, PushConfig, PushError,
    PushObserver, PushedImage, ScanGate, Severity, manifest_exists, push_archive, push_image,
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
    let mut stream = docker.build_image(options, None, Some(bollard::body_full(context.into())));
    while let Some(item) = stream.next().await {
        let info = item.unwrap_or_else(|err| panic!("building {tag} failed: {err}"));
        if let Some(error) = info.error_detail.and_then(|d| d.message) {
            panic!("building {tag} failed: {error}");
        }
    }
    TestImage(tag)
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
    /// Answer with this status and body, and close.
    Status(u16, &'static str),
    /// Reset the connection without answering.
    Reset,
}

#[derive(Clone, Debug)]
struct Rule {
    method: &'static str,
    path_contains: &'static str,
    /// Which matching requests fail (1-based).
    fail_on: Vec<usize>,
    fault: Fault,
}

struct FaultProxy {
    addr: SocketAddr,
    requests: Arc<Mutex<Vec<String>>>,
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

/// Reads and discards the request body the head announces (bounded in size and time).
async fn drain_body(stream: &mut TcpStream, head: &str) {
    let length = head
        .lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse::<u64>().ok())?
        })
        .unwrap_or(0)
        .min(256 * 1024 * 1024);
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
    let _ = tokio::time::timeout(std::time::Duration::from_secs(10), drain).await;
}

async fn handle_connection(
    mut client: TcpStream,
    upstream: SocketAddr,
    rules: &[Rule],
    counters: &Mutex<HashMap<usize, usize>>,
    requests: &Mutex<Vec<String>>,
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
    requests.lock().unwrap().push(format!("{method} {path}"));
    let mut fault = None;
    for (index, rule) in rules.iter().enumerate() {
        if rule.method == method && path.contains(rule.path_contains) {
            let mut counters = counters.lock().unwrap();
            let seen = counters.entry(index).or_insert(0);
            *seen += 1;
            if rule.fail_on.contains(seen) {
                fault = Some(rule.fault);
            }
            break;
        }
    }
    match fault {
        Some(Fault::Reset) => {
            injected.fetch_add(1, Ordering::SeqCst);
            // Closing with unread request bytes makes the kernel answer with a reset.
            drop(client);
            Ok(())
        }
        Some(Fault::Status(code, body)) => {
            injected.fetch_add(1, Ordering::SeqCst);
            // A registry reads the request before it answers; answering first would let the
            // client see a broken pipe instead of the status, depending on timing.
            drain_body(&mut client, &text).await;
            let reason = match code {
                401 => "Unauthorized",
                429 => "Too Many Requests",
                503 => "Service Unavailable",
                _ => "Error",
            };
            let extra = if code == 429 {
                "Retry-After: 1\r\n"
            } else {
                ""
            };
            let response = format!(
                "HTTP/1.1 {code} {reason}\r\nContent-Type: application/json\r\n{extra}\
                 Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            client.write_all(response.as_bytes()).await?;
            client.shutdown().await?;
            Ok(())
        }
        None => {
            let mut rewritten = String::new();
            for line in text.trim_end_matches("\r\n").split("\r\n") {
                if line.to_ascii_lowercase().starts_with("connection:") {
                    continue;
                }
                rewritten.push_str(line);
                rewritten.push_str("\r\n");
            }
            rewritten.push_str("Connection: close\r\n\r\n");
            let mut server = TcpStream::connect(upstream).await?;
            server.write_all(rewritten.as_bytes()).await?;
            tokio::io::copy_bidirectional(&mut client, &mut server).await?;
            Ok(())
        }
    }
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
// Pushing to a registry without auth

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pushes_a_daemon_image_with_every_tag_and_serves_the_manifest_back() {
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
    let cfg = config(&env.registry, &repo, &["v1", "latest"]);
    let cache = cache_dir();
    let (result, recorder) = push(&docker, &image, &cfg, cache.path()).await;
    let pushed = result.unwrap_or_else(|err| panic!("push failed: {err}"));

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
async fn a_warm_push_uploads_only_the_changed_top_layer() {
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
    let cfg = config(&env.registry, &repository("warm"), &["base"]);
    push(&docker, &base, &cfg, cache.path()).await.0.unwrap();

    let cfg = config(&env.registry, &cfg.repository, &["top"]);
    let (result, recorder) = push(&docker, &top, &cfg, cache.path()).await;
    result.unwrap();
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
    let err = result.unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, PushError::Authentication { .. }), "{text}");
    assert!(
        text.contains(&proxy.host()) && text.contains(&cfg.repository),
        "{text}"
    );
    assert!(text.contains("rejected"), "{text}");
    assert!(!text.contains("not-the-password"), "{text}");
    assert!(err.hint().unwrap().contains("docker login"));
    for line in recorder.lines() {
        assert!(!line.contains("not-the-password"));
    }
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
// ECR, against moto for the API and the basic-auth registry for the registry protocol

fn ecr_config(repository: &str, tags: &[&str], settings: EcrSettings) -> PushConfig {
    let env = env();
    PushConfig {
        registry: "ecr".into(),
        repository: repository.to_string(),
        tags: tags.iter().map(|t| t.to_string()).collect(),
        compression: Compression::Gzip,
        compression_level: None,
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
