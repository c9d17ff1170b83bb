//! Building an image through the Engine API: the request, the builder choice,
//! streaming the context, following the output and inspecting the result.
//!
//! Both builders go through bollard's `build_image`. The classic builder gets the
//! context as a tar streamed in the request body. BuildKit gets no body
//! (`remote=client-session`): it reads the context through the build's session
//! (see [`super::session`] and [`super::context::filesync`]) the way it does from
//! the docker CLI, so an unchanged context is not sent again. bollard's own
//! BuildKit path would open a second session under the same id that serves
//! neither files nor secrets, so the request is made as a classic one and
//! rewritten on the way out (`version=2&session=ID`) by a request modifier on a
//! private clone of the client.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use bollard::query_parameters::{BuildImageOptions, BuilderVersion, TagImageOptions};
use futures::StreamExt;
use tokio_util::sync::CancellationToken;

use super::build_output::{BuildOutput, OutputEvent, Redactor};
use super::connect::{DockerClient, DockerError};
use super::context::filesync::{SyncFailure, SyncedDirs};
use super::context::tar_stream::start_context_tar;
use super::context::{BuildContext, ContextError};
use super::session::{SessionError, open_session};
use crate::credentials::aws::AwsIdentity;

/// How long one build request may run; cancellation is the caller's tool for
/// shorter limits. bollard's default two minutes would cut long builds off.
const BUILD_REQUEST_TIMEOUT: Duration = Duration::from_secs(24 * 60 * 60);

/// Which builder runs the build.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum BuilderKind {
    BuildKit,
    Classic,
    /// BuildKit when the daemon supports it, the classic builder otherwise.
    #[default]
    Auto,
}

/// A secret value for `RUN --mount=type=secret`; never shown by `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretValue(Vec<u8>);

impl SecretValue {
    pub fn new(value: impl Into<Vec<u8>>) -> Self {
        SecretValue(value.into())
    }
}

impl fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretValue(***)")
    }
}

/// Everything that describes one image build.
#[derive(Debug, Clone)]
pub struct BuildRequest {
    pub context_dir: PathBuf,
    /// Relative to the context directory; `None` means `Dockerfile`.
    pub dockerfile: Option<PathBuf>,
    pub target: Option<String>,
    pub build_args: BTreeMap<String, String>,
    pub labels: BTreeMap<String, String>,
    /// Passed through, e.g. `linux/amd64`.
    pub platform: Option<String>,
    pub no_cache: bool,
    /// Always look for newer base images; off by default.
    pub pull: bool,
    pub cache_from: Vec<String>,
    /// Secret id to value, for `RUN --mount=type=secret,id=…` (BuildKit only).
    pub secrets: BTreeMap<String, SecretValue>,
    pub builder: BuilderKind,
    /// Network mode of `RUN` steps; `host` by default because BuildKit on a
    /// daemon without a bridge network runs only with `host` or `none`.
    pub network_mode: String,
    /// Names to tag the image with (`name:tag`, `registry:port/name:tag`).
    pub tags: Vec<String>,
    /// Whose AWS credentials buy ECR tokens for base images (the standard chain by default).
    pub aws_identity: AwsIdentity,
}

impl BuildRequest {
    pub fn new(context_dir: impl Into<PathBuf>) -> Self {
        BuildRequest {
            context_dir: context_dir.into(),
            dockerfile: None,
            target: None,
            build_args: BTreeMap::new(),
            labels: BTreeMap::new(),
            platform: None,
            no_cache: false,
            pull: false,
            cache_from: Vec::new(),
            secrets: BTreeMap::new(),
            builder: BuilderKind::Auto,
            network_mode: "host".to_string(),
            tags: Vec::new(),
            aws_identity: AwsIdentity::credential_chain(),
        }
    }
}

/// The image a successful build produced, as the daemon reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuiltImage {
    /// `sha256:…`
    pub id: String,
    pub size: u64,
    pub layer_diff_ids: Vec<String>,
    /// The builder that ran (never `Auto`).
    pub builder: BuilderKind,
}

/// Receives the build's progress as it happens.
pub trait BuildObserver: Send + Sync {
    /// A step started (`Step 2/5 : RUN …` or `[build 2/5] RUN …`).
    fn on_step(&self, step: &str);
    /// One line of output, secrets masked.
    fn on_output_line(&self, line: &str);
}

/// Why a build failed.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error(transparent)]
    Daemon(#[from] DockerError),
    #[error("failed to build the image: the build context is unusable")]
    Context(#[from] ContextError),
    #[error("{}", render_step_failure(.step.as_deref(), .message, .last_lines))]
    StepFailed {
        /// The step that failed, when the daemon got as far as a step.
        step: Option<String>,
        /// The daemon's reason, secrets masked.
        message: String,
        /// Up to the last 30 lines of output (of the failing step when known).
        last_lines: Vec<String>,
    },
    #[error("failed to build the image: the build was cancelled")]
    Cancelled,
    #[error(
        "failed to build the image: build secrets need BuildKit but the classic builder was chosen; use builder: buildkit or auto"
    )]
    SecretsNeedBuildKit,
    #[error(
        "failed to build the image: the daemon at {endpoint} (API {api_version}) does not support BuildKit; use builder: classic or auto"
    )]
    BuildKitUnsupported {
        endpoint: String,
        api_version: String,
    },
    #[error("failed to build the image: could not open the BuildKit session with {endpoint}")]
    Session {
        endpoint: String,
        #[source]
        source: SessionError,
    },
    #[error(
        "failed to build the image: the daemon ended the build without an image id; last output:\n{}",
        .last_lines.join("\n")
    )]
    NoImageId { last_lines: Vec<String> },
}

fn render_step_failure(step: Option<&str>, message: &str, last_lines: &[String]) -> String {
    let mut text = match step {
        Some(step) => format!("failed to build the image at step `{step}`: {message}"),
        None => format!("failed to build the image: {message}"),
    };
    if !last_lines.is_empty() {
        text.push_str(&format!(
            "\nlast {} lines of output:\n  {}",
            last_lines.len(),
            last_lines.join("\n  ")
        ));
    }
    text
}

/// Decides which builder runs: the only place that does.
pub(crate) fn resolve_builder(
    requested: BuilderKind,
    daemon_supports_buildkit: bool,
    has_secrets: bool,
) -> Result<BuilderKind, BuildErrorKind> {
    let resolved = match requested {
        BuilderKind::Auto if daemon_supports_buildkit => BuilderKind::BuildKit,
        BuilderKind::Auto => BuilderKind::Classic,
        BuilderKind::BuildKit if !daemon_supports_buildkit => {
            return Err(BuildErrorKind::BuildKitUnsupported);
        }
        other => other,
    };
    if has_secrets && resolved == BuilderKind::Classic {
        return Err(BuildErrorKind::SecretsNeedBuildKit);
    }
    Ok(resolved)
}

/// The refusals of [`resolve_builder`], turned into [`BuildError`]s by the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BuildErrorKind {
    BuildKitUnsupported,
    SecretsNeedBuildKit,
}

/// Registry hosts the `FROM` lines of a Dockerfile name (`FROM [--platform=…] host/repo[:tag]
/// [AS name]`), as the image reference grammar tells a host from a Docker Hub namespace: the
/// first path component when it has a `.` or a `:`, or is `localhost`. References built from
/// build arguments (`$BASE`) are passed over. Pure.
pub(crate) fn base_image_hosts(dockerfile: &str) -> Vec<String> {
    let mut hosts = Vec::new();
    for line in dockerfile.lines() {
        let mut words = line.split_whitespace();
        if !words
            .next()
            .is_some_and(|word| word.eq_ignore_ascii_case("FROM"))
        {
            continue;
        }
        let Some(reference) = words.find(|word| !word.starts_with("--")) else {
            continue;
        };
        if reference.contains('$') {
            continue;
        }
        let Some((first, _)) = reference.split_once('/') else {
            continue;
        };
        let host = first.to_ascii_lowercase();
        if (host.contains('.') || host.contains(':') || host == "localhost")
            && !hosts.contains(&host)
        {
            hosts.push(host);
        }
    }
    hosts
}

/// What a classic build is sent for its pulls, as the Docker CLI sends it: every registry's
/// credentials from the Docker config, and for the registries the Dockerfile's `FROM` lines
/// name that the config has nothing for, an ECR token from the AWS credential chain. (BuildKit
/// asks the session for the ones it needs instead.) Lookups that fail are reported as output
/// lines; the daemon's pull then says what it lacked.
async fn classic_registry_config(
    dockerfile: &std::path::Path,
    identity: &AwsIdentity,
    observer: &dyn BuildObserver,
) -> Option<HashMap<String, bollard::auth::DockerCredentials>> {
    let (mut found, mut problems) =
        crate::credentials::docker_config::all_docker_config_credentials().await;
    let dockerfile_text = tokio::fs::read_to_string(dockerfile).await;
    for host in base_image_hosts(dockerfile_text.as_deref().unwrap_or_default()) {
        if found.contains_key(&host) {
            continue;
        }
        match crate::credentials::pull::pull_credentials(&host, identity).await {
            Ok(auth) => {
                found.insert(host, auth);
            }
            Err(err) => problems.push(err.to_string()),
        }
    }
    for problem in problems {
        observer.on_output_line(&format!("registry credentials: {problem}"));
    }
    let config: HashMap<_, _> = found
        .into_iter()
        .filter_map(|(server, auth)| {
            super::daemon_credentials::engine_credentials(&server, auth)
                .map(|entry| (server, entry))
        })
        .collect();
    (!config.is_empty()).then_some(config)
}

/// Builds the image described by `request`, reporting progress to `observer`.
pub async fn build_image(
    client: &DockerClient,
    request: &BuildRequest,
    observer: &dyn BuildObserver,
    cancel: CancellationToken,
) -> Result<BuiltImage, BuildError> {
    let builder = resolve_builder(
        request.builder,
        client.supports_buildkit(),
        !request.secrets.is_empty(),
    )
    .map_err(|kind| match kind {
        BuildErrorKind::BuildKitUnsupported => BuildError::BuildKitUnsupported {
            endpoint: client.endpoint().to_string(),
            api_version: client.api_version().to_string(),
        },
        BuildErrorKind::SecretsNeedBuildKit => BuildError::SecretsNeedBuildKit,
    })?;

    let context_dir = request.context_dir.clone();
    let dockerfile = request.dockerfile.clone();
    let context = tokio::task::spawn_blocking(move || {
        BuildContext::open(&context_dir, dockerfile.as_deref())
    })
    .await
    .map_err(|_| BuildError::Cancelled)??;

    let mut docker = client.bollard().clone().with_timeout(BUILD_REQUEST_TIMEOUT);
    let sync_failure = SyncFailure::default();
    let (dockerfile_dir, dockerfile_name) = context.dockerfile_dir_and_name();
    let session = if builder == BuilderKind::BuildKit {
        let secrets: HashMap<String, Vec<u8>> = request
            .secrets
            .iter()
            .map(|(id, value)| (id.clone(), value.0.clone()))
            .collect();
        let dirs = SyncedDirs {
            context: context.root().to_path_buf(),
            dockerfile_dir: dockerfile_dir.clone(),
        };
        let session = open_session(
            client.endpoint(),
            client.api_version(),
            secrets,
            request.aws_identity.clone(),
            Some(dirs),
            sync_failure.clone(),
        )
        .await
        .map_err(|source| BuildError::Session {
            endpoint: client.endpoint().to_string(),
            source,
        })?;
        let session_id = session.id().to_string();
        docker = docker.with_request_modifier(move |mut request| {
            let rewritten = buildkit_uri(request.uri(), &session_id);
            if let Some(uri) = rewritten {
                *request.uri_mut() = uri;
            }
            request
        });
        Some(session)
    } else {
        None
    };

    let (options, body, tar_producer) = if session.is_some() {
        let mut options = build_options(request, &dockerfile_name);
        options.remote = Some("client-session".to_string());
        // The daemon reads nothing from the body; bollard insists on one.
        (options, bollard::body_full(bytes::Bytes::new()), None)
    } else {
        let tar = start_context_tar(&context);
        let options = build_options(request, &tar.dockerfile_name);
        (
            options,
            bollard::body_try_stream(tar.body),
            Some(tar.producer),
        )
    };
    let redactor = Redactor::new(request.secrets.values().map(|value| value.0.as_slice()));
    let mut output = BuildOutput::new(redactor);

    let registry_config = match session {
        Some(_) => None,
        None => {
            classic_registry_config(
                &dockerfile_dir.join(&dockerfile_name),
                &request.aws_identity,
                observer,
            )
            .await
        }
    };
    let mut stream = docker.build_image(options, registry_config, Some(body));
    let mut daemon_error: Option<String> = None;
    let mut read_error: Option<String> = None;
    loop {
        let item = tokio::select! {
            biased;
            _ = cancel.cancelled() => {
                // Dropping the stream closes the connection, which makes the
                // daemon abort the build; dropping the body stops the walk.
                drop(stream);
                drop(session);
                return Err(BuildError::Cancelled);
            }
            item = stream.next() => item,
        };
        match item {
            Some(Ok(info)) => report(observer, output.push(&info)),
            Some(Err(err)) if reported_by_daemon(&err) => {
                daemon_error = Some(daemon_message(&err));
                break;
            }
            Some(Err(err)) => {
                read_error = Some(daemon_message(&err));
                break;
            }
            None => break,
        }
    }
    drop(stream);
    report(observer, output.finish());
    drop(session);

    // A context problem explains a failed request better than the daemon's view
    // of a truncated upload or a failed file sync, so it wins.
    if let Some(producer) = tar_producer {
        match producer.await {
            Ok(Err(ContextError::ReceiverGone)) | Err(_) | Ok(Ok(_)) => {}
            Ok(Err(err)) => return Err(BuildError::Context(err)),
        }
    }
    if let Some(err) = sync_failure.take() {
        return Err(BuildError::Context(err));
    }
    if let Some(message) = read_error
        && !finished_before_the_stream_broke(client, &output, request).await
    {
        daemon_error.get_or_insert(message);
    }
    if let Some(message) = daemon_error {
        let report = output.failure(&message);
        return Err(BuildError::StepFailed {
            step: report.step,
            message: report.message,
            last_lines: report.last_lines,
        });
    }
    let Some(id) = output.image_id().map(str::to_string) else {
        return Err(BuildError::NoImageId {
            last_lines: output.last_lines(),
        });
    };

    let inspect = client
        .bollard()
        .inspect_image(&id)
        .await
        .map_err(|source| client.api_error(format!("inspect the built image {id}"), source))?;
    let id = inspect.id.unwrap_or(id);
    for tag in request.tags.iter().skip(1) {
        let (repo, tag_name) = split_repo_tag(tag);
        let options = TagImageOptions {
            repo: Some(repo.to_string()),
            tag: Some(tag_name.to_string()),
        };
        client
            .bollard()
            .tag_image(&id, Some(options))
            .await
            .map_err(|source| client.api_error(format!("tag {id} as {tag}"), source))?;
    }
    Ok(BuiltImage {
        id,
        size: u64::try_from(inspect.size.unwrap_or(0)).unwrap_or(0),
        layer_diff_ids: inspect
            .root_fs
            .and_then(|root_fs| root_fs.layers)
            .unwrap_or_default(),
        builder,
    })
}

fn report(observer: &dyn BuildObserver, events: Vec<OutputEvent>) {
    for event in events {
        match event {
            OutputEvent::Step(step) => observer.on_step(&step),
            OutputEvent::Line(line) => observer.on_output_line(&line),
        }
    }
}

/// Whether the daemon itself reported the build failed (an error message in the stream, an
/// error status), as opposed to the stream breaking off or failing to decode.
fn reported_by_daemon(err: &bollard::errors::Error) -> bool {
    matches!(
        err,
        bollard::errors::Error::DockerStreamError { .. }
            | bollard::errors::Error::DockerResponseServerError { .. }
    )
}

/// Whether a build whose output stream broke off had finished anyway: the daemon announced the
/// image, and the first tag names it. A broken stream alone does not mean a failed build:
/// bollard's decoder (0.21) reports a complete stream as "bytes remaining on stream" when the
/// daemon's last message reaches it apart from its `\r\n`, the `}` in one read and the line
/// end in the next, which happens whenever that message straddles a socket write or a read
/// buffer.
async fn finished_before_the_stream_broke(
    client: &DockerClient,
    output: &BuildOutput,
    request: &BuildRequest,
) -> bool {
    let Some(id) = output.image_id() else {
        return false;
    };
    let Ok(built) = client.bollard().inspect_image(id).await else {
        return false;
    };
    match request.tags.first() {
        None => built.id.is_some(),
        Some(tag) => match client.bollard().inspect_image(tag).await {
            Ok(tagged) => built.id.is_some() && tagged.id == built.id,
            Err(_) => false,
        },
    }
}

/// The daemon's own words for a failed build.
fn daemon_message(err: &bollard::errors::Error) -> String {
    match err {
        bollard::errors::Error::DockerStreamError { error } => error.clone(),
        bollard::errors::Error::DockerResponseServerError { message, .. } => message.clone(),
        other => other.to_string(),
    }
}

/// The query parameters of the build request (classic form; see the module docs).
fn build_options(request: &BuildRequest, dockerfile_name: &str) -> BuildImageOptions {
    let map = |values: &BTreeMap<String, String>| {
        (!values.is_empty()).then(|| {
            values
                .iter()
                .map(|(key, value)| (key.clone(), value.clone()))
                .collect::<HashMap<_, _>>()
        })
    };
    BuildImageOptions {
        dockerfile: dockerfile_name.to_string(),
        t: request.tags.first().cloned(),
        nocache: request.no_cache,
        cachefrom: (!request.cache_from.is_empty()).then(|| request.cache_from.clone()),
        pull: request.pull.then(|| "1".to_string()),
        rm: true,
        // Remove intermediate containers of failed steps too.
        forcerm: true,
        buildargs: map(&request.build_args),
        labels: map(&request.labels),
        networkmode: (!request.network_mode.is_empty()).then(|| request.network_mode.clone()),
        platform: request.platform.clone().unwrap_or_default(),
        target: request.target.clone().unwrap_or_default(),
        version: BuilderVersion::BuilderV1,
        ..BuildImageOptions::default()
    }
}

/// The `/build` URI turned into a BuildKit one attached to `session_id`; `None`
/// for any other request.
fn buildkit_uri(uri: &http::Uri, session_id: &str) -> Option<http::Uri> {
    if !uri.path().ends_with("/build") {
        return None;
    }
    let query = buildkit_query(uri.query().unwrap_or_default(), session_id);
    let mut parts = uri.clone().into_parts();
    parts.path_and_query = Some(format!("{}?{query}", uri.path()).parse().ok()?);
    http::Uri::from_parts(parts).ok()
}

fn buildkit_query(query: &str, session_id: &str) -> String {
    let mut params: Vec<String> = query
        .split('&')
        .filter(|param| {
            !param.is_empty() && !param.starts_with("version=") && !param.starts_with("session=")
        })
        .map(str::to_string)
        .collect();
    params.push("version=2".to_string());
    params.push(format!("session={session_id}"));
    params.join("&")
}

/// Splits `name[:tag]` at the tag colon (not a registry port), tag `latest` if none.
fn split_repo_tag(reference: &str) -> (&str, &str) {
    let name_start = reference.rfind('/').map_or(0, |slash| slash + 1);
    match reference[name_start..].rfind(':') {
        Some(colon) => {
            let at = name_start + colon;
            (&reference[..at], &reference[at + 1..])
        }
        None => (reference, "latest"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_image_hosts_are_the_registries_from_lines_name() {
        let dockerfile = "# syntax=docker/dockerfile:1\n\
            FROM --platform=$BUILDPLATFORM 123456789012.dkr.ecr.eu-west-1.amazonaws.com/base:1 AS build\n\
            from localhost:5000/tools AS tools\n\
            FROM build AS again\n\
            FROM library/alpine:3\n\
            FROM alpine\n\
            FROM $BASE\n\
            RUN echo FROM nowhere.example/x\n\
            FROM 123456789012.dkr.ecr.eu-west-1.amazonaws.com/other\n";
        assert_eq!(
            base_image_hosts(dockerfile),
            [
                "123456789012.dkr.ecr.eu-west-1.amazonaws.com",
                "localhost:5000"
            ]
        );
    }

    #[test]
    fn auto_prefers_buildkit_when_the_daemon_has_it() {
        assert_eq!(
            resolve_builder(BuilderKind::Auto, true, false),
            Ok(BuilderKind::BuildKit)
        );
        assert_eq!(
            resolve_builder(BuilderKind::Auto, false, false),
            Ok(BuilderKind::Classic)
        );
    }

    #[test]
    fn explicit_builders_are_kept_or_refused() {
        assert_eq!(
            resolve_builder(BuilderKind::Classic, true, false),
            Ok(BuilderKind::Classic)
        );
        assert_eq!(
            resolve_builder(BuilderKind::BuildKit, false, false),
            Err(BuildErrorKind::BuildKitUnsupported)
        );
    }

    #[test]
    fn secrets_rule_out_the_classic_builder() {
        assert_eq!(
            resolve_builder(BuilderKind::Classic, true, true),
            Err(BuildErrorKind::SecretsNeedBuildKit)
        );
        assert_eq!(
            resolve_builder(BuilderKind::Auto, false, true),
            Err(BuildErrorKind::SecretsNeedBuildKit)
        );
        assert_eq!(
            resolve_builder(BuilderKind::Auto, true, true),
            Ok(BuilderKind::BuildKit)
        );
    }

    #[test]
    fn the_build_query_is_switched_to_buildkit_with_the_session() {
        let uri: http::Uri = "http://docker/v1.41/build?dockerfile=Dockerfile&version=1&rm=true"
            .parse()
            .unwrap();
        let rewritten = buildkit_uri(&uri, "abc").unwrap();
        assert_eq!(
            rewritten.to_string(),
            "http://docker/v1.41/build?dockerfile=Dockerfile&rm=true&version=2&session=abc"
        );
        let other: http::Uri = "http://docker/v1.41/images/x/json".parse().unwrap();
        assert!(buildkit_uri(&other, "abc").is_none());
    }

    #[test]
    fn tags_split_at_the_tag_colon_not_the_port() {
        assert_eq!(split_repo_tag("app:1.2"), ("app", "1.2"));
        assert_eq!(split_repo_tag("app"), ("app", "latest"));
        assert_eq!(
            split_repo_tag("127.0.0.1:5000/team/app:v3"),
            ("127.0.0.1:5000/team/app", "v3")
        );
        assert_eq!(
            split_repo_tag("127.0.0.1:5000/app"),
            ("127.0.0.1:5000/app", "latest")
        );
    }

    #[test]
    fn options_carry_the_request() {
        let mut request = BuildRequest::new("/ctx");
        request.tags = vec!["a:1".to_string(), "b:2".to_string()];
        request.build_args.insert("V".to_string(), "1".to_string());
        request.pull = true;
        request.target = Some("final".to_string());
        let options = build_options(&request, "Dockerfile");
        assert_eq!(options.t.as_deref(), Some("a:1"));
        assert_eq!(options.pull.as_deref(), Some("1"));
        assert_eq!(options.target, "final");
        assert_eq!(options.networkmode.as_deref(), Some("host"));
        assert_eq!(options.buildargs.unwrap()["V"], "1");
        assert!(BuildRequest::new("/ctx").pull.eq(&false));
    }

    #[test]
    fn secrets_do_not_show_in_debug_output() {
        let mut request = BuildRequest::new("/ctx");
        request
            .secrets
            .insert("token".to_string(), SecretValue::new("hunter22"));
        let shown = format!("{request:?}");
        assert!(!shown.contains("hunter22"));
        assert!(shown.contains("token"));
    }

    #[test]
    fn a_step_failure_message_names_the_step_and_shows_the_output() {
        let err = BuildError::StepFailed {
            step: Some("Step 2/2 : RUN false".to_string()),
            message: "returned a non-zero code: 1".to_string(),
            last_lines: vec!["a".to_string(), "b".to_string()],
        };
        assert_eq!(
            err.to_string(),
            "failed to build the image at step `Step 2/2 : RUN false`: returned a non-zero code: 1\nlast 2 lines of output:\n  a\n  b"
        );
    }
}
