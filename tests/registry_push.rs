//! The registry adapter against real servers: the Docker daemon (DOCKER_HOST), a distribution
//! registry without auth (SHIPIT_TEST_REGISTRY) and one with basic auth
//! (SHIPIT_TEST_AUTH_REGISTRY, user/password in SHIPIT_TEST_AUTH_REGISTRY_USER/_PASSWORD, the
//! password being the moto ECR token's), and moto for the ECR API
//! (SHIPIT_TEST_AWS_ENDPOINT_URL). Faults are injected by a small HTTP proxy on 127.0.0.1.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, Once, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use bollard::Docker;
use futures::StreamExt as _;
mod support;

use shipit::registry::{
    AwsIdentity, Compression, EcrSettings, LayerSource, LifecycleSettings, ManifestFormat,
    PushConfig, PushError, PushObserver, PushedImage, ScanGate, Severity, manifest_exists,
    push_archive, push_image,
};
use support::fake_servers::fault_proxy::{After, Fault, FaultProxy, Rule, Seen};
use support::fake_servers::html_server::html_server;
use support::fake_servers::token_front::{FRONT_IDENTITY_TOKEN, FRONT_SERVICE, TokenFront};
use tokio::io::AsyncWriteExt as _;
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

// ---------------------------------------------------------------------------------------------
// The scenario the push tests share: an image in the daemon, pushed, its manifest fetched back

/// An image in the daemon to push: built on a base with one COPY layer per file and removed
/// when the test ends, or the test base image itself. Each test states only its push block,
/// its faults and what it checks.
struct Scenario {
    docker: Docker,
    /// The image pushed (a tag, or the base image's name).
    image: String,
    /// Removes a built image from the daemon when the scenario ends.
    _built: Option<TestImage>,
}

impl Scenario {
    /// An image built on the test base image from `files`.
    async fn build(files: &[(&str, Vec<u8>)]) -> Scenario {
        Scenario::build_on(&env().base_image, files).await
    }

    /// An image built on `base` from `files`.
    async fn build_on(base: &str, files: &[(&str, Vec<u8>)]) -> Scenario {
        let docker = docker().await;
        let built = build_image(&docker, base, files).await;
        Scenario {
            image: built.0.clone(),
            _built: Some(built),
            docker,
        }
    }

    /// The test base image itself, for pushes that fail before any layer matters.
    async fn base() -> Scenario {
        Scenario {
            docker: docker().await,
            image: env().base_image.clone(),
            _built: None,
        }
    }

    /// Pushes with a layer cache of its own (nothing known from earlier pushes).
    async fn push(&self, cfg: &PushConfig) -> (Result<PushedImage, PushError>, Recorder) {
        self.push_with_cache(cfg, cache_dir().path()).await
    }

    /// Pushes with the layer cache in `cache`, which earlier pushes may have filled.
    async fn push_with_cache(
        &self,
        cfg: &PushConfig,
        cache: &Path,
    ) -> (Result<PushedImage, PushError>, Recorder) {
        self.push_cancellable(cfg, cache, CancellationToken::new())
            .await
    }

    async fn push_cancellable(
        &self,
        cfg: &PushConfig,
        cache: &Path,
        cancel: CancellationToken,
    ) -> (Result<PushedImage, PushError>, Recorder) {
        let recorder = Recorder::default();
        let result = push_image(
            &self.docker,
            &self.image,
            cfg,
            &AwsIdentity::credential_chain(),
            cache,
            &recorder,
            cancel,
        )
        .await;
        (result, recorder)
    }

    /// A push that must succeed, with what it said.
    async fn pushed(&self, cfg: &PushConfig) -> (PushedImage, Recorder) {
        let (result, recorder) = self.push(cfg).await;
        match result {
            Ok(pushed) => (pushed, recorder),
            Err(err) => panic!("push failed: {err}\n{:?}", recorder.lines()),
        }
    }
}

/// Asserts that `registry` serves the manifest `digest` under each of `references` (tags, or
/// the digest itself), read as an independent client reads it.
async fn assert_serves(
    registry: &str,
    repository: &str,
    references: &[&str],
    digest: &str,
    basic: Option<(&str, &str)>,
) {
    for reference in references {
        let (status, body) = fetch_manifest(registry, repository, reference, basic).await;
        assert_eq!(status, 200, "{repository}:{reference} is not served");
        assert_eq!(
            sha256(&body),
            digest,
            "{repository}:{reference} points elsewhere"
        );
    }
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
    let scenario = Scenario::build(&[
        ("big.bin", random_bytes(3_000_000)),
        ("small.txt", b"hello".to_vec()),
    ])
    .await;
    let repo = repository("plain");
    let cfg = PushConfig {
        layer_source,
        ..config(&env.registry, &repo, &["v1", "latest"])
    };
    let (pushed, recorder) = scenario.pushed(&cfg).await;
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
    let references = ["v1", "latest", pushed.digest.as_str()];
    assert_serves(&env.registry, &repo, &references, &pushed.digest, None).await;
    let (_, body) = fetch_manifest(&env.registry, &repo, "v1", None).await;
    let manifest: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        manifest["mediaType"],
        "application/vnd.oci.image.manifest.v1+json"
    );
    let inspect = scenario
        .docker
        .inspect_image(&scenario.image)
        .await
        .unwrap();
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

    assert!(
        manifest_exists(&cfg, &AwsIdentity::credential_chain(), &pushed.digest)
            .await
            .unwrap()
    );
    assert!(
        !manifest_exists(
            &cfg,
            &AwsIdentity::credential_chain(),
            &format!("sha256:{}", "0".repeat(64))
        )
        .await
        .unwrap()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rerun_pushes_the_same_digest_without_uploading_layers() {
    let scenario = Scenario::build(&[("a.bin", random_bytes(500_000))]).await;
    let cfg = config(&env().registry, &repository("rerun"), &["v1"]);
    let cache = cache_dir();
    let first = scenario
        .push_with_cache(&cfg, cache.path())
        .await
        .0
        .unwrap();
    let (second, recorder) = scenario.push_with_cache(&cfg, cache.path()).await;
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
    // Random bytes, text, an empty file and a nested path: the tar-split rebuild must give
    // the daemon's own tar byte for byte, or the diff ids (and the digests) differ.
    let scenario = Scenario::build(&[
        ("random.bin", random_bytes(2_500_000)),
        ("notes.txt", b"line\n".repeat(20_000)),
        ("empty", Vec::new()),
    ])
    .await;
    let mut digests = Vec::new();
    for layer_source in [LayerSource::LayerStore, LayerSource::Export] {
        let cfg = PushConfig {
            layer_source,
            ..config(&env.registry, &repository("sources"), &["v1"])
        };
        let (pushed, recorder) = scenario.pushed(&cfg).await;
        assert_serves(
            &env.registry,
            &cfg.repository,
            &["v1"],
            &pushed.digest,
            None,
        )
        .await;
        assert!(
            recorder.count("could not be read") == 0 && recorder.count("not readable") == 0,
            "{layer_source:?}: {:?}",
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
    let scenario = Scenario::build(&[("top.bin", random_bytes(400_000))]).await;
    break_layer_store_read(&scenario.docker, &scenario.image, "/data/top.bin").await;

    let cfg = config(&env.registry, &repository("fallback"), &["v1"]);
    let (pushed, recorder) = scenario.pushed(&cfg).await;
    assert_eq!(
        recorder.count("could not be read"),
        1,
        "the fallback is announced: {:?}",
        recorder.lines()
    );
    assert_serves(
        &env.registry,
        &cfg.repository,
        &["v1"],
        &pushed.digest,
        None,
    )
    .await;
    let export_cfg = PushConfig {
        layer_source: LayerSource::Export,
        ..config(&env.registry, &repository("fallback-export"), &["v1"])
    };
    let (from_export, _) = scenario.pushed(&export_cfg).await;
    assert_eq!(
        from_export.digest, pushed.digest,
        "the fallback pushed what the export holds"
    );

    // Asked for the layer store alone, the same push fails and says why.
    let strict = PushConfig {
        layer_source: LayerSource::LayerStore,
        ..config(&env.registry, &repository("strict"), &["v1"])
    };
    let (result, _) = scenario.push(&strict).await;
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
    let base = Scenario::build(&[
        ("one.bin", random_bytes(2_000_000)),
        ("two.bin", random_bytes(1_000_000)),
    ])
    .await;
    let top = Scenario::build_on(&base.image, &[("app.bin", random_bytes(300_000))]).await;
    let cache = cache_dir();
    let cfg = PushConfig {
        layer_source,
        ..config(&env.registry, &repository("warm"), &["base"])
    };
    base.push_with_cache(&cfg, cache.path()).await.0.unwrap();
    let cfg = PushConfig {
        tags: vec!["top".into()],
        ..cfg
    };
    let (result, recorder) = top.push_with_cache(&cfg, cache.path()).await;
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
    let base_layers = base
        .docker
        .inspect_image(&base.image)
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
    let scenario = Scenario::build(&[("z.bin", random_bytes(200_000))]).await;

    let mut cfg = config(&env.registry, &repository("zstd"), &["z"]);
    cfg.compression = Compression::Zstd;
    let (pushed, _) = scenario.pushed(&cfg).await;
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
    let (pushed, _) = scenario.pushed(&cfg).await;
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
    let scenario = Scenario::build(&[("s.bin", random_bytes(400_000))]).await;
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("image.tar");
    save_image(&scenario.docker, &scenario.image, &archive).await;
    let cfg = config(&env.registry, &repository("saved"), &["s"]);
    let recorder = Recorder::default();
    let pushed = push_archive(
        &archive,
        &cfg,
        &AwsIdentity::credential_chain(),
        dir.path(),
        &recorder,
        CancellationToken::new(),
    )
    .await
    .unwrap();
    assert_serves(&env.registry, &cfg.repository, &["s"], &pushed.digest, None).await;
    // The same image from the daemon gives the same manifest: packing is deterministic.
    let from_daemon = scenario.push_with_cache(&cfg, dir.path()).await.0.unwrap();
    assert_eq!(from_daemon.digest, pushed.digest);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pushes_an_oci_archive_made_by_skopeo_without_recompressing_its_layers() {
    let env = env();
    let scenario = Scenario::build(&[("o.bin", random_bytes(300_000))]).await;
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("oci.tar");
    let mut skopeo = std::process::Command::new("skopeo");
    skopeo.arg("copy");
    if let Ok(host) = std::env::var("DOCKER_HOST") {
        skopeo.arg("--src-daemon-host").arg(host);
    }
    let output = skopeo
        .arg(format!("docker-daemon:{}", scenario.image))
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
        &AwsIdentity::credential_chain(),
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
    add_docker_config(
        &env.auth_registry,
        basic_entry(&env.auth_user, &env.auth_password),
        None,
    );
    let scenario = Scenario::build(&[("c.bin", random_bytes(100_000))]).await;
    let cfg = config(&env.auth_registry, &repository("basic"), &["v1"]);
    let (pushed, _) = scenario.pushed(&cfg).await;
    let basic = Some((env.auth_user.as_str(), env.auth_password.as_str()));
    assert_serves(
        &env.auth_registry,
        &cfg.repository,
        &["v1"],
        &pushed.digest,
        basic,
    )
    .await;
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
    // The helper serves the auth registry through a proxy port, so its host is its own.
    let proxy = FaultProxy::start(&env.auth_registry, vec![]).await;
    write_helper("shipittest", &proxy.host());
    add_docker_config(&proxy.host(), serde_json::Value::Null, Some("shipittest"));
    let scenario = Scenario::build(&[("h.bin", random_bytes(50_000))]).await;
    let cfg = config(&proxy.host(), &repository("helper"), &["v1"]);
    let (pushed, _) = scenario.pushed(&cfg).await;
    let basic = Some((env.auth_user.as_str(), env.auth_password.as_str()));
    let digest = pushed.digest.as_str();
    assert_serves(
        &env.auth_registry,
        &cfg.repository,
        &[digest],
        digest,
        basic,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn credentials_come_from_the_credential_store() {
    let env = env();
    let proxy = FaultProxy::start(&env.auth_registry, vec![]).await;
    // The store answers "not found" for every other host, which means anonymous to the
    // tests that push elsewhere meanwhile.
    write_helper("shipitstore", &proxy.host());
    edit_docker_config(|config| {
        config["credsStore"] = serde_json::Value::String("shipitstore".into());
    });
    let cfg = config(&proxy.host(), &repository("store"), &["v1"]);
    let (pushed, _) = Scenario::base().await.pushed(&cfg).await;
    assert!(pushed.digest.starts_with("sha256:"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn wrong_credentials_fail_clearly_without_echoing_them() {
    let env = env();
    let proxy = FaultProxy::start(&env.auth_registry, vec![]).await;
    add_docker_config(&proxy.host(), basic_entry("AWS", "not-the-password"), None);
    let cfg = config(&proxy.host(), &repository("wrong"), &["v1"]);
    let (result, recorder) = Scenario::base().await.push(&cfg).await;
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
    let proxy = FaultProxy::start(&env.auth_registry, vec![]).await;
    let cfg = config(&proxy.host(), &repository("anon"), &["v1"]);
    let err = Scenario::base().await.push(&cfg).await.0.unwrap_err();
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
    let password = format!("front-pw-{}", unique());
    let front = TokenFront::start(&env.registry, "robot", &password, None).await;
    front_login(&front, &password);
    let scenario = Scenario::build(&[("b.bin", random_bytes(200_000))]).await;
    let cfg = config(&front.host(), &repository("bearer"), &["v1"]);
    let (pushed, recorder) = scenario.pushed(&cfg).await;
    assert_serves(
        &env.registry,
        &cfg.repository,
        &["v1"],
        &pushed.digest,
        None,
    )
    .await;

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
    let front = TokenFront::start(&env.registry, "robot", "unused-password", None).await;
    add_docker_config(
        &front.host(),
        serde_json::json!({ "identitytoken": FRONT_IDENTITY_TOKEN }),
        None,
    );
    let scenario = Scenario::build(&[("id.bin", random_bytes(100_000))]).await;
    let cfg = config(&front.host(), &repository("identity"), &["v1"]);
    let (pushed, recorder) = scenario.pushed(&cfg).await;
    assert_serves(
        &env.registry,
        &cfg.repository,
        &["v1"],
        &pushed.digest,
        None,
    )
    .await;

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
    let (result, recorder) = scenario.push(&cfg).await;
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
    let password = format!("front-pw-{}", unique());
    let front = TokenFront::start(&env.registry, "robot", &password, None).await;
    let wrong = format!("wrong-pw-{}", unique());
    front_login(&front, &wrong);
    let cfg = config(&front.host(), &repository("bearer-wrong"), &["v1"]);
    let (result, recorder) = Scenario::base().await.push(&cfg).await;
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
    let password = format!("front-pw-{}", unique());
    // The first token is good for four registry requests: the blob checks of a two-layer
    // image and little more.
    let front = TokenFront::start(&env.registry, "robot", &password, Some(4)).await;
    front_login(&front, &password);
    let scenario = Scenario::build(&[
        ("x1.bin", random_bytes(300_000)),
        ("x2.bin", random_bytes(300_000)),
    ])
    .await;
    let cfg = config(&front.host(), &repository("bearer-expiry"), &["v1", "v2"]);
    let (pushed, recorder) = scenario.pushed(&cfg).await;
    assert_serves(
        &env.registry,
        &cfg.repository,
        &["v1", "v2"],
        &pushed.digest,
        None,
    )
    .await;
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
    let (_, recorder) = push_through(
        &proxy,
        "faults",
        &[
            ("f1.bin", random_bytes(1_500_000)),
            ("f2.bin", random_bytes(700_000)),
        ],
    )
    .await;
    assert!(proxy.injected() >= 5, "{:?}", proxy.seen());
    assert!(recorder.count("retry") >= 4, "{:?}", recorder.lines());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_manifest_the_registry_rejects_fails_with_its_reason() {
    let env = env();
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
    let err = Scenario::base().await.push(&cfg).await.0.unwrap_err();
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
    let addr = html_server().await;
    let cfg = config(&addr.to_string(), &repository("html"), &["v1"]);
    let err = Scenario::base().await.push(&cfg).await.0.unwrap_err();
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
    let err = Scenario::base().await.push(&cfg).await.0.unwrap_err();
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
    let (result, recorder) = Scenario::base().await.push(&cfg).await;
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
    // Nothing listens on a port just released.
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let host = format!("127.0.0.1:{port}");
    let cfg = config(&host, &repository("unreachable"), &["v1"]);
    let err = Scenario::base().await.push(&cfg).await.0.unwrap_err();
    let text = err.to_string();
    assert!(text.contains("cannot connect"), "{text}");
    assert!(text.contains(&host), "{text}");
    assert!(text.contains("attempts"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_invalid_repository_name_is_refused_before_any_work() {
    let cfg = config(&env().registry, "Team/API", &["v1"]);
    let err = Scenario::base().await.push(&cfg).await.0.unwrap_err();
    assert!(matches!(err, PushError::InvalidConfig(_)), "{err}");
    assert!(err.to_string().contains("Team/API"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_missing_image_is_an_inspect_error() {
    let cfg = config(&env().registry, &repository("missing"), &["v1"]);
    let scenario = Scenario {
        image: "shipit-no-such-image:nope".into(),
        ..Scenario::base().await
    };
    let err = scenario.push(&cfg).await.0.unwrap_err();
    assert!(matches!(err, PushError::Inspect { .. }), "{err}");
}

/// Cancelled while an upload is under way (the proxy holds the first blob upload unanswered),
/// the push stops at once and leaves nothing half-written: no manifest, no tag.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cancellation_mid_upload_stops_the_push_and_leaves_no_manifest_or_tag() {
    let env = env();
    let proxy = FaultProxy::start(
        &env.registry,
        vec![Rule {
            method: "PUT",
            path_contains: "/blobs/uploads/",
            fail_on: vec![1],
            fault: Fault::Hold,
        }],
    )
    .await;
    let scenario = Scenario::build(&[("held.bin", random_bytes(2_000_000))]).await;
    let cfg = config(&proxy.host(), &repository("cancel"), &["v1"]);
    let cancel = CancellationToken::new();
    let cache = cache_dir();
    let push = scenario.push_cancellable(&cfg, cache.path(), cancel.clone());
    tokio::pin!(push);
    tokio::select! {
        (result, recorder) = &mut push => {
            panic!("the push ended before an upload was held: {result:?} {:?}", recorder.lines())
        }
        _ = proxy.wait_for("held blob upload", Duration::from_secs(120), |seen| seen.injected) => {}
    }

    cancel.cancel();
    let cancelled_at = Instant::now();
    let (result, recorder) = tokio::time::timeout(Duration::from_secs(60), push)
        .await
        .expect("the cancelled push did not return within a minute");
    let stopped_after = cancelled_at.elapsed();
    let err = result.expect_err("a cancelled push must fail");
    assert!(
        matches!(err, PushError::Cancelled { .. }),
        "{err} {:?}",
        recorder.lines()
    );
    assert!(
        stopped_after < Duration::from_secs(5),
        "the push took {stopped_after:?} to stop"
    );

    let seen = proxy.seen();
    assert!(
        seen.iter().all(|s| !s.resource().contains("/manifests/")),
        "a manifest was sent after all: {seen:?}"
    );
    let (status, _) = fetch_manifest(&env.registry, &cfg.repository, "v1", None).await;
    assert_eq!(status, 404, "the cancelled push left tag v1 behind");
    let tags = reqwest::get(format!(
        "http://{}/v2/{}/tags/list",
        env.registry, cfg.repository
    ))
    .await
    .expect("the registry answers");
    if tags.status() == 200 {
        let listed: serde_json::Value = tags.json().await.unwrap();
        assert!(
            listed["tags"].as_array().is_none_or(|tags| tags.is_empty()),
            "the cancelled push left tags behind: {listed}"
        );
    } else {
        assert_eq!(tags.status(), 404, "the repository should be unknown");
    }
    // The manifest the push was heading for, pushed in full elsewhere, is not in its repository.
    let complete = config(&env.registry, &repository("cancel-complete"), &["v1"]);
    let (pushed, _) = scenario.pushed(&complete).await;
    let (status, _) = fetch_manifest(&env.registry, &cfg.repository, &pushed.digest, None).await;
    assert_eq!(status, 404, "the cancelled push left its manifest behind");
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
    let scenario = Scenario::build(files).await;
    let cfg = config(&proxy.host(), &repository(name), &["v1"]);
    let (result, recorder) = scenario.push(&cfg).await;
    let pushed = result.unwrap_or_else(|err| {
        panic!(
            "push failed: {err}\n{:?}\n{:?}",
            recorder.lines(),
            proxy.seen()
        )
    });
    assert_serves(
        &env().registry,
        &cfg.repository,
        &["v1"],
        &pushed.digest,
        None,
    )
    .await;
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
    let err = Scenario::base().await.push(&cfg).await.0.unwrap_err();
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
    let scenario = Scenario::build(&[("e.bin", random_bytes(100_000))]).await;
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
    let (pushed, recorder) = scenario.pushed(&cfg).await;
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
    let (again, recorder) = scenario.push(&cfg).await;
    assert_eq!(again.unwrap().digest, pushed.digest);
    assert_eq!(
        recorder.count("ECR repository"),
        0,
        "{:?}",
        recorder.lines()
    );
    assert!(
        manifest_exists(&cfg, &AwsIdentity::credential_chain(), &pushed.digest)
            .await
            .unwrap()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ecr_push_to_a_missing_repository_without_create_fails_clearly() {
    let cfg = ecr_config(&repository("absent"), &["v1"], EcrSettings::default());
    let err = Scenario::base().await.push(&cfg).await.0.unwrap_err();
    let text = err.to_string();
    assert!(text.contains("does not exist"), "{text}");
    assert!(text.contains(&cfg.repository), "{text}");
    assert!(err.hint().unwrap().contains("create_repository"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_existing_tag_on_an_immutable_repository_is_a_clear_error() {
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
    let scenario = Scenario::build(&[("i.bin", random_bytes(10_000))]).await;
    let cfg = ecr_config(&repo, &["v1"], EcrSettings::default());
    let err = scenario.push(&cfg).await.0.unwrap_err();
    assert!(matches!(err, PushError::ImmutableTag { .. }), "{err}");
    let text = err.to_string();
    assert!(text.contains("v1") && text.contains(&existing), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_scan_gate_fails_on_findings_at_or_above_its_severity() {
    let env = env();
    let repo = repository("scan");
    let scenario = Scenario::build(&[("g.bin", random_bytes(10_000))]).await;
    let create = ecr_config(
        &repo,
        &["v1"],
        EcrSettings {
            create_repository: true,
            ..EcrSettings::default()
        },
    );
    let (pushed, _) = scenario.pushed(&create).await;
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
    let err = scenario.push(&gated(Severity::High)).await.0.unwrap_err();
    assert!(matches!(err, PushError::ScanFindings { .. }), "{err}");
    assert!(err.to_string().contains("1 HIGH"), "{err}");
    scenario.pushed(&gated(Severity::Critical)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_token_refused_mid_push_is_renewed_once() {
    let env = env();
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
    let scenario = Scenario::build(&[("t.bin", random_bytes(80_000))]).await;
    let mut cfg = ecr_config(
        &repository("renew"),
        &["v1"],
        EcrSettings {
            create_repository: true,
            ..EcrSettings::default()
        },
    );
    cfg.ecr.as_mut().unwrap().registry_host = Some(proxy.host());
    let (_, recorder) = scenario.pushed(&cfg).await;
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
