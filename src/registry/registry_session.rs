//! A connection to one repository of one registry, speaking the distribution protocol over
//! shipit's own HTTP requests: ping, blob HEAD, cross-repository mount, blob upload, manifest
//! push and fetch. Every call goes through the shared retry policy.
//!
//! The wire is shipit's own (reqwest) rather than oci-client's calls because those hide the
//! answer's headers: without them neither a rate limit's `Retry-After` nor an upload's `Range`
//! can be read, so waits could not be honoured and an interrupted upload could only restart.
//!
//! Uploads: a blob up to `CHUNKED_ABOVE` goes in one PUT (restarted whole when interrupted); a
//! larger one in `CHUNK_SIZE` PATCHes, and after an interruption the registry is asked how far
//! it got (`GET` on the upload → `Range`) and the upload continues from there, or starts again
//! when the registry lost it (404) or disputes the offset (416). ECR's deviations are allowed
//! for: it answers a PATCH with 201, and its `Range` after a PATCH lags, so a chunk's success
//! is read from the status alone.
//!
//! Credentials: Basic (the Docker config's, or the ECR token), or a bearer token from the
//! registry's token service (the Docker token protocol: the `WWW-Authenticate: Bearer` challenge
//! names the realm; the credentials go there as Basic). A token is renewed before it expires and
//! when the registry refuses it; a refused ECR token is replaced. Credentials and tokens are
//! only ever sent to the registry's own host (and the token service), and are scrubbed from
//! every message.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use base64::Engine as _;
use oci_client::Reference;
use oci_client::secrets::RegistryAuth;
use reqwest::header::{self, HeaderMap, HeaderValue};
use reqwest::{Method, StatusCode, Url};
use tokio::io::{AsyncReadExt as _, AsyncSeekExt as _};
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

use super::layer_packer::SpooledBlob;
use super::push_config::is_loopback_host;
use super::push_error::PushError;
use super::push_progress::short;
use super::registry_failure::{
    ErrorAnswer, FailureKind, RegistryFailure, from_answer, from_local_io, from_transport,
    looks_like_html, protocol_violation,
};
use super::retry::{
    Backoff, Decision, GiveUp, RetryFailure, RetryNote, RetryPolicy, Retryable, parse_retry_after,
    retry, sleep_or_cancel,
};
use crate::credentials::ecr_token::EcrContext;
use crate::credentials::identity_token::identity_token;
use crate::docker::image_source::digest::sha256_digest;
use crate::docker::image_source::media_types::{
    DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, OCI_INDEX, OCI_MANIFEST,
};
use crate::error_summary::summarize;

const USER_AGENT: &str = concat!("shipit/", env!("CARGO_PKG_VERSION"));
/// Blobs larger than this are uploaded in chunks that an interruption does not lose.
const CHUNKED_ABOVE: u64 = 32 * 1024 * 1024;
/// Bytes per PATCH of a chunked upload: what an interruption costs at most. ECR wants every
/// chunk but the last to be at least 5 MiB.
const CHUNK_SIZE: u64 = 16 * 1024 * 1024;
/// Bytes per read of a spool file during upload.
const UPLOAD_READ_CHUNK: usize = 256 * 1024;
/// The most of an error answer's body that is read (its start is all a message uses).
const ERROR_BODY_LIMIT: usize = 16 * 1024;
/// A token is renewed this long before the token service said it expires.
const TOKEN_EXPIRY_MARGIN: Duration = Duration::from_secs(15);
/// A token's lifetime when the token service does not say (the Docker token spec's default).
const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(60);

/// Where credentials come from, and whether they can be renewed mid-push.
#[derive(Clone)]
pub(crate) enum Credentials {
    /// Fixed for the push: anonymous, or from the Docker config.
    Fixed(RegistryAuth),
    /// An ECR token, renewed when the registry refuses it.
    Ecr(EcrContext),
}

impl Credentials {
    async fn auth(&self, refresh: bool) -> Result<RegistryAuth, PushError> {
        match self {
            Credentials::Fixed(auth) => Ok(auth.clone()),
            Credentials::Ecr(ecr) => {
                if refresh {
                    ecr.forget_token();
                }
                let token = ecr.token(refresh).await?;
                Ok(RegistryAuth::Basic(token.user, token.password))
            }
        }
    }

    fn describe(&self, auth: &RegistryAuth) -> &'static str {
        match (self, auth) {
            (Credentials::Ecr(_), _) => "the ECR token",
            (_, RegistryAuth::Anonymous) => "no credentials (anonymous)",
            (_, auth) if identity_token(auth).is_some() => {
                "the identity token from the Docker config"
            }
            _ => "the credentials from the Docker config",
        }
    }
}

/// A `WWW-Authenticate: Bearer` challenge: where to get a token, and for what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BearerChallenge {
    pub realm: String,
    pub service: Option<String>,
    pub scope: Option<String>,
}

/// Reads a Bearer challenge (`Bearer realm="…",service="…",scope="repository:a:pull,push"`);
/// None for other schemes or without a realm. Quoted values may hold commas. Pure.
pub(crate) fn parse_bearer_challenge(header: &str) -> Option<BearerChallenge> {
    let header = header.trim_start();
    let (scheme, rest) = header.split_once(char::is_whitespace)?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let mut params: Vec<(String, String)> = Vec::new();
    let mut chars = rest.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        let mut name = String::new();
        while let Some(&c) = chars.peek() {
            if c == '=' || c == ',' || c.is_whitespace() {
                break;
            }
            name.push(c);
            chars.next();
        }
        if name.is_empty() {
            break;
        }
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.peek() != Some(&'=') {
            continue;
        }
        chars.next();
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => value.extend(chars.next()),
                    '"' => break,
                    other => value.push(other),
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == ',' || c.is_whitespace() {
                    break;
                }
                value.push(c);
                chars.next();
            }
        }
        params.push((name.to_ascii_lowercase(), value));
    }
    let get = |key: &str| {
        params
            .iter()
            .find(|(name, _)| name == key)
            .map(|(_, value)| value.clone())
            .filter(|value| !value.is_empty())
    };
    Some(BearerChallenge {
        realm: get("realm")?,
        service: get("service"),
        scope: get("scope"),
    })
}

/// The scopes a token is asked for: push and pull on the session's repository always (so one
/// token serves the whole push), plus whatever else the challenge named (a mount's source).
pub(crate) fn token_scopes(repository: &str, challenge_scope: Option<&str>) -> Vec<String> {
    let own = format!("repository:{repository}:pull,push");
    let mut scopes = vec![own.clone()];
    if let Some(scope) = challenge_scope {
        for scope in scope.split(' ').filter(|s| !s.is_empty()) {
            let covered = scope == own || scope == format!("repository:{repository}:pull");
            if !covered && !scopes.iter().any(|s| s == scope) {
                scopes.push(scope.to_string());
            }
        }
    }
    scopes
}

/// Whether credentials may be sent to a token service at `url`: over HTTPS, or plain HTTP on
/// this machine only.
pub(crate) fn may_send_credentials_to(url: &Url) -> bool {
    match url.scheme() {
        "https" => true,
        "http" => url.host_str().is_some_and(|host| {
            let host = host.trim_start_matches('[').trim_end_matches(']');
            host.eq_ignore_ascii_case("localhost")
                || host
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback())
        }),
        _ => false,
    }
}

/// How many bytes an upload's `Range` header (`0-1023`, or `bytes=0-1023`) says the registry
/// holds. `0-0` is what a registry says for an empty upload. None when unreadable. Pure.
pub(crate) fn acknowledged_bytes(range: &str) -> Option<u64> {
    let range = range.trim();
    let range = range.strip_prefix("bytes=").unwrap_or(range);
    let (start, end) = range.split_once('-')?;
    if start.trim() != "0" {
        return None;
    }
    let end: u64 = end.trim().parse().ok()?;
    Some(if end == 0 { 0 } else { end + 1 })
}

/// The next chunk of a chunked upload: `(start, length)`, or None when all is sent. Pure.
pub(crate) fn next_chunk(offset: u64, size: u64, chunk_size: u64) -> Option<(u64, u64)> {
    (offset < size).then(|| (offset, chunk_size.min(size - offset)))
}

/// Replaces every secret in `text` with `***`. Pure.
pub(crate) fn redact(text: &str, secrets: &[String]) -> String {
    let mut text = text.to_string();
    for secret in secrets {
        if secret.len() >= 4 && text.contains(secret.as_str()) {
            text = text.replace(secret.as_str(), "***");
        }
    }
    text
}

/// A token from the token service.
#[derive(Clone)]
struct BearerToken {
    value: String,
    renew_at: Instant,
    challenge: BearerChallenge,
}

/// What authenticates the requests, behind one lock so that concurrent calls refused at once
/// renew once.
struct AuthState {
    /// Bumped whenever the credentials or the token change.
    generation: u64,
    auth: RegistryAuth,
    token: Option<BearerToken>,
    /// Every credential and token seen, to scrub from messages.
    secrets: Vec<String>,
}

impl AuthState {
    fn remember_secrets(&mut self) {
        let mut found = Vec::new();
        match &self.auth {
            RegistryAuth::Basic(user, password) => {
                found.push(password.clone());
                found.push(
                    base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}")),
                );
            }
            RegistryAuth::Bearer(token) => found.push(token.clone()),
            RegistryAuth::Anonymous => {}
        }
        if let Some(token) = &self.token {
            found.push(token.value.clone());
        }
        for secret in found {
            if !self.secrets.contains(&secret) {
                self.secrets.push(secret);
            }
        }
    }

    fn header(&self) -> Option<HeaderValue> {
        let text = match (&self.token, &self.auth) {
            (Some(token), _) => format!("Bearer {}", token.value),
            (None, RegistryAuth::Bearer(token)) => format!("Bearer {token}"),
            (None, auth) if identity_token(auth).is_some() => return None,
            (None, RegistryAuth::Basic(user, password)) => format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
            ),
            (None, RegistryAuth::Anonymous) => return None,
        };
        let mut value = HeaderValue::from_str(&text).ok()?;
        value.set_sensitive(true);
        Some(value)
    }
}

/// A request body that can be sent again (after a token renewal, or on a retry).
#[derive(Clone)]
enum Body {
    Empty,
    Bytes(bytes::Bytes),
    /// `len` bytes of a file from `offset`.
    File {
        path: Arc<Path>,
        offset: u64,
        len: u64,
    },
}

/// One request, described so that it can be built again.
struct Request {
    method: Method,
    url: Url,
    headers: HeaderMap,
    body: Body,
}

impl Request {
    fn new(method: Method, url: Url) -> Self {
        Request {
            method,
            url,
            headers: HeaderMap::new(),
            body: Body::Empty,
        }
    }

    fn header(mut self, name: header::HeaderName, value: &str) -> Self {
        if let Ok(value) = HeaderValue::from_str(value) {
            self.headers.insert(name, value);
        }
        self
    }

    fn body(mut self, body: Body) -> Self {
        self.body = body;
        self
    }
}

/// Where a chunked upload stands.
#[derive(Debug, Clone)]
struct UploadCursor {
    location: Url,
    /// Bytes the registry took.
    offset: u64,
    /// Whether the offset came from the registry's status after an interruption.
    resumed: bool,
}

/// What the answer to a chunk's PATCH means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ChunkVerdict {
    /// The chunk is stored: go on after it. Any 2xx: the spec says 202, ECR answers 201. The
    /// answer's `Range` is not read: ECR's stays at the first chunk's end.
    Taken,
    /// 416: the registry's idea of the offset differs from shipit's.
    OffsetDisputed,
    Failed,
}

/// Judges a chunk's PATCH answer by its status. Pure.
pub(crate) fn judge_chunk(status: u16) -> ChunkVerdict {
    match status {
        200..=299 => ChunkVerdict::Taken,
        416 => ChunkVerdict::OffsetDisputed,
        _ => ChunkVerdict::Failed,
    }
}

/// A session's HTTP clients. A client that speaks TLS loads the system's trusted roots when it
/// is built (hundreds of files, a good part of a warm push's time); a loopback registry is
/// spoken to over plain HTTP and never needs them, so the TLS client is only built the first
/// time an `https` URL comes up (a registry elsewhere, its token service, a redirect).
struct HttpClients {
    plain: reqwest::Client,
    tls: std::sync::OnceLock<Result<reqwest::Client, String>>,
}

impl HttpClients {
    fn builder() -> reqwest::ClientBuilder {
        reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .read_timeout(Duration::from_secs(120))
            .user_agent(USER_AGENT)
    }

    fn new() -> Result<Self, reqwest::Error> {
        Ok(Self {
            // No roots at all: this client can make no TLS connection, and has no need to.
            plain: Self::builder().tls_certs_only(std::iter::empty()).build()?,
            tls: std::sync::OnceLock::new(),
        })
    }

    /// The client for `url`'s scheme.
    fn for_url(&self, url: &Url) -> Result<&reqwest::Client, RegistryFailure> {
        if url.scheme() != "https" {
            return Ok(&self.plain);
        }
        self.tls
            .get_or_init(|| {
                Self::builder()
                    .build()
                    .map_err(|err| from_transport(&err).reason)
            })
            .as_ref()
            .map_err(|reason| RegistryFailure {
                reason: format!("the TLS client could not be set up: {reason}"),
                retry: Retryable::Permanent,
                kind: FailureKind::Other,
            })
    }
}

/// One repository of one registry.
pub(crate) struct RegistrySession {
    pub host: String,
    pub repository: String,
    credentials: Credentials,
    http: HttpClients,
    /// `scheme://host/v2/` of the registry API (Docker Hub's lives at index.docker.io).
    api_root: Url,
    auth: Mutex<AuthState>,
    policy: RetryPolicy,
    cancel: CancellationToken,
    /// Progress lines (retries) go here; the push loop forwards them to the observer.
    notify: Arc<dyn Fn(String) + Send + Sync>,
    /// A copy of the secrets for synchronous scrubbing.
    secrets: std::sync::Mutex<Vec<String>>,
}

fn scheme_for(host: &str) -> &'static str {
    if is_loopback_host(host) {
        "http"
    } else {
        "https"
    }
}

/// What the `/v2/` ping says about a host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PingVerdict {
    /// A registry that lets these credentials (or anonymous access) in.
    Usable,
    /// A registry that wants credentials: Basic (check them) or a Bearer token service.
    Challenge { bearer: bool },
    /// Not a registry API.
    NotARegistry(String),
    /// A server error worth retrying.
    Transient(u16),
}

/// Judges one answer to `GET /v2/`. Pure.
pub(crate) fn judge_ping(
    status: u16,
    content_type: Option<&str>,
    body_head: &str,
    www_authenticate: Option<&str>,
) -> PingVerdict {
    let html = content_type.is_some_and(|ct| ct.to_ascii_lowercase().contains("text/html"))
        || looks_like_html(body_head);
    if html {
        return PingVerdict::NotARegistry(format!(
            "the server answered GET /v2/ with an HTML page (HTTP {status}) instead of the \
             registry API; is this host a registry, or a proxy or login page in front of one?"
        ));
    }
    match status {
        200..=299 => PingVerdict::Usable,
        401 => PingVerdict::Challenge {
            bearer: www_authenticate
                .is_some_and(|h| h.trim_start().to_ascii_lowercase().starts_with("bearer")),
        },
        408 | 429 | 500..=599 => PingVerdict::Transient(status),
        404 => PingVerdict::NotARegistry(
            "the server has no registry API at /v2/ (HTTP 404); check the host and port".into(),
        ),
        other => PingVerdict::NotARegistry(format!(
            "the server answered GET /v2/ with HTTP {other}; is this host a registry?"
        )),
    }
}

/// One answer to the ping.
struct PingAnswer {
    verdict: PingVerdict,
    challenge: Option<String>,
}

fn header_text(headers: &HeaderMap, name: header::HeaderName) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

fn retry_after_of(headers: &HeaderMap) -> Option<Duration> {
    let value = header_text(headers, header::RETRY_AFTER)?;
    let date = header_text(headers, header::DATE);
    parse_retry_after(&value, date.as_deref(), SystemTime::now())
}

fn is_html(headers: &HeaderMap) -> bool {
    header_text(headers, header::CONTENT_TYPE)
        .is_some_and(|ct| ct.to_ascii_lowercase().contains("text/html"))
}

/// Reads the start of an error answer and classifies it.
async fn failure_of(response: reqwest::Response) -> RegistryFailure {
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = read_limited(response, ERROR_BODY_LIMIT).await;
    let body = String::from_utf8_lossy(&body);
    let content_type = header_text(&headers, header::CONTENT_TYPE);
    from_answer(&ErrorAnswer {
        status,
        content_type: content_type.as_deref(),
        retry_after: retry_after_of(&headers),
        body: &body,
    })
}

async fn read_limited(mut response: reqwest::Response, limit: usize) -> Vec<u8> {
    let mut body = Vec::new();
    while body.len() < limit {
        match response.chunk().await {
            Ok(Some(chunk)) => body.extend_from_slice(&chunk),
            _ => break,
        }
    }
    body.truncate(limit);
    body
}

/// The answer, when its status is one of `ok` and it is not an HTML page; its failure otherwise.
async fn expect(
    response: reqwest::Response,
    ok: &[StatusCode],
) -> Result<reqwest::Response, RegistryFailure> {
    let status = response.status();
    if ok.contains(&status) && !is_html(response.headers()) {
        return Ok(response);
    }
    if status.is_success() {
        if is_html(response.headers()) {
            // A portal or proxy answering for the registry: never a registry's own answer.
            return Err(from_answer(&ErrorAnswer {
                status: status.as_u16(),
                content_type: Some("text/html"),
                ..ErrorAnswer::default()
            }));
        }
        return Err(protocol_violation(&format!(
            "expected HTTP {}, got HTTP {}",
            ok.first().map(|s| s.as_u16()).unwrap_or(200),
            status.as_u16()
        )));
    }
    Err(failure_of(response).await)
}

/// The `Location` of an answer, resolved against the request's URL.
fn location_of(response: &reqwest::Response) -> Option<Url> {
    let location = header_text(response.headers(), header::LOCATION)?;
    response.url().join(&location).ok()
}

/// A 404 in the middle of a chunked upload means the registry dropped the upload session (it
/// expired, or the registry restarted): the next try asks for its status and starts again.
fn lost_upload_is_transient(mut failure: RegistryFailure) -> RegistryFailure {
    if failure.kind == FailureKind::NotFound {
        failure.retry = Retryable::Transient { retry_after: None };
        failure.kind = FailureKind::Other;
    }
    failure
}

impl RegistrySession {
    /// Connects: pings `/v2/` and checks the credentials (fetching a token when the registry
    /// uses a token service), so bad hosts and bad credentials fail before any export work.
    pub(crate) async fn connect(
        host: &str,
        repository: &str,
        credentials: Credentials,
        cancel: CancellationToken,
        notify: Arc<dyn Fn(String) + Send + Sync>,
    ) -> Result<Self, PushError> {
        let auth = credentials.auth(false).await?;
        let setup_error = |reason: String| PushError::Registry {
            registry: host.to_string(),
            repository: repository.to_string(),
            action: "set up the registry client".into(),
            reason,
            attempts: 1,
        };
        let http = HttpClients::new().map_err(|err| setup_error(from_transport(&err).reason))?;
        // The same host the Docker CLI talks to (Docker Hub's API lives at index.docker.io).
        let reference =
            Reference::with_tag(host.to_string(), repository.to_string(), "latest".into());
        let api_host = reference.resolve_registry();
        let api_root = Url::parse(&format!("{}://{api_host}/v2/", scheme_for(api_host)))
            .map_err(|err| setup_error(format!("{api_host} is not a valid host: {err}")))?;
        let mut state = AuthState {
            generation: 0,
            auth,
            token: None,
            secrets: Vec::new(),
        };
        state.remember_secrets();
        let secrets = state.secrets.clone();
        let session = RegistrySession {
            host: host.to_string(),
            repository: repository.to_string(),
            credentials,
            http,
            api_root,
            auth: Mutex::new(state),
            policy: RetryPolicy::REGISTRY,
            cancel,
            notify,
            secrets: std::sync::Mutex::new(secrets),
        };
        session.ping().await?;
        Ok(session)
    }

    fn redact(&self, text: &str) -> String {
        let secrets = self.secrets.lock().map(|s| s.clone()).unwrap_or_default();
        redact(text, &secrets)
    }

    fn say(&self, message: String) {
        (self.notify)(self.redact(&message));
    }

    fn registry_error(&self, action: &str, reason: String, attempts: u32) -> PushError {
        PushError::Registry {
            registry: self.host.clone(),
            repository: self.repository.clone(),
            action: action.to_string(),
            reason: self.redact(&reason),
            attempts,
        }
    }

    fn auth_error(&self, reason: String) -> PushError {
        PushError::Authentication {
            registry: self.host.clone(),
            repository: self.repository.clone(),
            reason: self.redact(&reason),
        }
    }

    fn cancelled(&self) -> PushError {
        PushError::Cancelled {
            registry: self.host.clone(),
            repository: self.repository.clone(),
        }
    }

    /// Turns a failure the retries could not get past into the error the user sees.
    fn failure_to_error(
        &self,
        action: &str,
        failure: RegistryFailure,
        attempts: u32,
        gave_up: GiveUp,
    ) -> PushError {
        if self.cancel.is_cancelled() {
            return self.cancelled();
        }
        if failure.kind == FailureKind::Auth {
            return self.auth_error(format!("{} while trying to {action}", failure.reason));
        }
        let reason = match gave_up.note() {
            Some(note) => format!("{}; {note}", failure.reason),
            None => failure.reason,
        };
        self.registry_error(action, reason, attempts)
    }

    fn retry_failure_to_error(
        &self,
        action: &str,
        failure: RetryFailure<RegistryFailure>,
    ) -> PushError {
        match failure {
            RetryFailure::Cancelled => self.cancelled(),
            RetryFailure::Failed {
                error,
                attempts,
                gave_up,
            } => self.failure_to_error(action, error, attempts, gave_up),
        }
    }

    fn url(&self, path: &str) -> Url {
        // Repository names and digests are validated; neither holds characters a URL path
        // would need escaped.
        self.api_root
            .join(&format!("{}/{path}", self.repository))
            .expect("a repository path joins onto the API root")
    }

    /// Whether a URL is the registry's own host, the only one credentials are sent to (an
    /// upload may be handed to a storage host with a signed URL).
    fn is_registry_host(&self, url: &Url) -> bool {
        url.scheme() == self.api_root.scheme()
            && url.host_str() == self.api_root.host_str()
            && url.port_or_known_default() == self.api_root.port_or_known_default()
    }

    // -----------------------------------------------------------------------------------------
    // Authentication

    /// The Authorization header for the next request, renewing a token about to expire.
    async fn authorization(&self) -> Result<(u64, Option<HeaderValue>), RegistryFailure> {
        let mut state = self.auth.lock().await;
        if let Some(token) = &state.token
            && Instant::now() >= token.renew_at
        {
            let challenge = token.challenge.clone();
            let fresh = self.fetch_token(&challenge, &state.auth).await?;
            self.install_token(&mut state, fresh);
        }
        Ok((state.generation, state.header()))
    }

    fn install_token(&self, state: &mut AuthState, token: BearerToken) {
        state.token = Some(token);
        state.generation += 1;
        state.remember_secrets();
        if let Ok(mut secrets) = self.secrets.lock() {
            *secrets = state.secrets.clone();
        }
    }

    /// After a 401: renews what can be renewed (a token, from the challenge; an ECR token) and
    /// says whether the request should be sent again. Calls refused together renew once.
    async fn renew_after_refusal(
        &self,
        generation: u64,
        challenge: Option<&str>,
    ) -> Result<bool, RegistryFailure> {
        let mut state = self.auth.lock().await;
        if state.generation != generation {
            return Ok(true);
        }
        if let Some(challenge) = challenge.and_then(parse_bearer_challenge) {
            // A challenge for a scope beyond the session's (a mount's source) is no refusal.
            let refused = challenge
                .scope
                .as_deref()
                .is_none_or(|scope| token_scopes(&self.repository, Some(scope)).len() == 1);
            if state.token.is_some() && refused {
                self.say(format!(
                    "registry {} refused the token (it may have expired); fetching a new one",
                    self.host
                ));
            }
            let token = self.fetch_token(&challenge, &state.auth).await?;
            self.install_token(&mut state, token);
            return Ok(true);
        }
        if let Credentials::Ecr(_) = self.credentials {
            self.say(format!(
                "registry {} refused the ECR token; fetching a new one",
                self.host
            ));
            let auth = self
                .credentials
                .auth(true)
                .await
                .map_err(|err| RegistryFailure {
                    reason: err.to_string(),
                    retry: Retryable::Permanent,
                    kind: FailureKind::Auth,
                })?;
            state.auth = auth;
            state.generation += 1;
            state.remember_secrets();
            if let Ok(mut secrets) = self.secrets.lock() {
                *secrets = state.secrets.clone();
            }
            return Ok(true);
        }
        Ok(false)
    }

    /// Asks the token service a challenge names for a token, with the credentials as Basic.
    async fn fetch_token(
        &self,
        challenge: &BearerChallenge,
        auth: &RegistryAuth,
    ) -> Result<BearerToken, RegistryFailure> {
        let mut url = Url::parse(&challenge.realm).map_err(|_| {
            protocol_violation("the Bearer challenge names a token service that is not a URL")
        })?;
        let service_host = match (url.host_str(), url.port()) {
            (Some(host), Some(port)) => format!("{host}:{port}"),
            (Some(host), None) => host.to_string(),
            (None, _) => "?".to_string(),
        };
        {
            let mut query = url.query_pairs_mut();
            if let Some(service) = &challenge.service {
                query.append_pair("service", service);
            }
            for scope in token_scopes(&self.repository, challenge.scope.as_deref()) {
                query.append_pair("scope", &scope);
            }
        }
        let identity = identity_token(auth);
        let basic = match auth {
            RegistryAuth::Basic(user, password) if identity.is_none() => Some((user, password)),
            _ => None,
        };
        if (basic.is_some() || identity.is_some()) && !may_send_credentials_to(&url) {
            return Err(RegistryFailure {
                reason: format!(
                    "the registry's token service {} is plain HTTP on another host; shipit sends \
                     credentials only over HTTPS",
                    summarize(url.as_str())
                ),
                retry: Retryable::Permanent,
                kind: FailureKind::Auth,
            });
        }
        let client = self.http.for_url(&url)?;
        let mut request = match identity {
            // OAuth2's refresh-token grant, as the Docker CLI sends an identity token: a form
            // POST to the realm, the scopes space-separated.
            Some(refresh_token) => {
                let scopes = token_scopes(&self.repository, challenge.scope.as_deref()).join(" ");
                let mut form = vec![
                    ("grant_type", "refresh_token"),
                    ("refresh_token", refresh_token),
                    ("client_id", "shipit"),
                    ("scope", scopes.as_str()),
                ];
                if let Some(service) = &challenge.service {
                    form.push(("service", service.as_str()));
                }
                let body = form_urlencoded::Serializer::new(String::new())
                    .extend_pairs(form)
                    .finish();
                let mut realm = url.clone();
                realm.set_query(None);
                client
                    .post(realm)
                    .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                    .body(body)
            }
            None => client.get(url),
        }
        .timeout(Duration::from_secs(30));
        if let Some((user, password)) = basic {
            request = request.basic_auth(user, Some(password));
        }
        let response = request.send().await.map_err(|err| {
            let mut failure = from_transport(&err);
            failure.reason = format!("token service {service_host}: {}", failure.reason);
            failure
        })?;
        let status = response.status();
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            return Err(RegistryFailure {
                reason: format!(
                    "the token service at {service_host} refused {} (HTTP {})",
                    self.credentials.describe(auth),
                    status.as_u16()
                ),
                retry: Retryable::Permanent,
                kind: FailureKind::Auth,
            });
        }
        if identity.is_some()
            && (status == StatusCode::NOT_FOUND || status == StatusCode::METHOD_NOT_ALLOWED)
        {
            return Err(RegistryFailure {
                reason: format!(
                    "the token service at {service_host} does not take identity tokens (OAuth2 \
                     refresh tokens; HTTP {}): log in with a user name and password",
                    status.as_u16()
                ),
                retry: Retryable::Permanent,
                kind: FailureKind::Auth,
            });
        }
        if !status.is_success() || is_html(response.headers()) {
            let mut failure = failure_of(response).await;
            failure.reason = format!("token service {service_host}: {}", failure.reason);
            if failure.kind == FailureKind::NotFound {
                failure.kind = FailureKind::Other;
            }
            return Err(failure);
        }
        #[derive(serde::Deserialize)]
        struct TokenAnswer {
            token: Option<String>,
            access_token: Option<String>,
            expires_in: Option<u64>,
        }
        let body = read_limited(response, 1024 * 1024).await;
        let answer: TokenAnswer = serde_json::from_slice(&body).map_err(|_| {
            protocol_violation(&format!(
                "the token service {service_host} answered with something that is not a token"
            ))
        })?;
        let value = answer
            .token
            .or(answer.access_token)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                protocol_violation(&format!("the token service {service_host} sent no token"))
            })?;
        let lifetime = answer
            .expires_in
            .map(Duration::from_secs)
            .unwrap_or(DEFAULT_TOKEN_LIFETIME);
        Ok(BearerToken {
            value,
            // A short-lived token is renewed at half its life rather than on every request.
            renew_at: Instant::now()
                + lifetime.saturating_sub(TOKEN_EXPIRY_MARGIN.min(lifetime / 2)),
            challenge: challenge.clone(),
        })
    }

    // -----------------------------------------------------------------------------------------
    // The wire

    /// Sends a request with the session's credentials; a 401 renews them (once per request)
    /// and sends it again. Any status comes back; transport failures are classified.
    async fn exchange(&self, request: &Request) -> Result<reqwest::Response, RegistryFailure> {
        let mut renewed = false;
        loop {
            let (generation, authorization) = self.authorization().await?;
            let mut builder = self
                .http
                .for_url(&request.url)?
                .request(request.method.clone(), request.url.clone())
                .headers(request.headers.clone());
            if let Some(value) = authorization
                && self.is_registry_host(&request.url)
            {
                builder = builder.header(header::AUTHORIZATION, value);
            }
            builder = match &request.body {
                // Some registries want the length said even for an empty POST or PUT.
                Body::Empty if request.method != Method::GET && request.method != Method::HEAD => {
                    builder.header(header::CONTENT_LENGTH, "0")
                }
                Body::Empty => builder,
                Body::Bytes(bytes) => builder.body(bytes.clone()),
                Body::File { path, offset, len } => {
                    let mut file = tokio::fs::File::open(path)
                        .await
                        .map_err(|err| from_local_io(&err))?;
                    file.seek(std::io::SeekFrom::Start(*offset))
                        .await
                        .map_err(|err| from_local_io(&err))?;
                    let stream = tokio_util::io::ReaderStream::with_capacity(
                        file.take(*len),
                        UPLOAD_READ_CHUNK,
                    );
                    builder
                        .header(header::CONTENT_LENGTH, len.to_string())
                        .body(reqwest::Body::wrap_stream(stream))
                }
            };
            let response = builder.send().await.map_err(|err| from_transport(&err))?;
            if response.status() == StatusCode::UNAUTHORIZED && !renewed {
                let challenge = header_text(response.headers(), header::WWW_AUTHENTICATE);
                if self
                    .renew_after_refusal(generation, challenge.as_deref())
                    .await?
                {
                    renewed = true;
                    continue;
                }
            }
            return Ok(response);
        }
    }

    /// Runs one registry call with retries. `action` names it in messages and errors.
    async fn call<T, Op, Fut>(&self, action: &str, mut op: Op) -> Result<T, PushError>
    where
        Op: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, RegistryFailure>>,
    {
        retry(
            &self.policy,
            &self.cancel,
            |failure: &RegistryFailure| failure.retry,
            |note, failure| self.say_retry(action, failure, note),
            |_| op(),
        )
        .await
        .map_err(|failure| self.retry_failure_to_error(action, failure))
    }

    fn say_retry(&self, action: &str, failure: &RegistryFailure, note: RetryNote) {
        self.say(format!(
            "{action} at {}: {}; {}",
            self.host,
            failure.reason,
            note.describe()
        ));
    }

    // -----------------------------------------------------------------------------------------
    // The ping

    async fn ping_once(&self, basic: bool) -> Result<PingAnswer, PushError> {
        let url = self.api_root.clone();
        let header = if basic {
            self.auth.lock().await.header()
        } else {
            None
        };
        let action = "reach the registry API";
        let client = self
            .http
            .for_url(&url)
            .map_err(|failure| self.registry_error(action, failure.reason, 1))?;
        retry(
            &self.policy,
            &self.cancel,
            |failure: &RegistryFailure| failure.retry,
            |note, failure| {
                self.say(format!(
                    "registry {} did not answer ({}); {}",
                    self.host,
                    failure.reason,
                    note.describe()
                ))
            },
            |_| {
                let mut request = client.get(url.clone()).timeout(Duration::from_secs(30));
                if let Some(value) = header.clone() {
                    request = request.header(header::AUTHORIZATION, value);
                }
                async move {
                    let response = request.send().await.map_err(|err| from_transport(&err))?;
                    let status = response.status().as_u16();
                    let headers = response.headers().clone();
                    let body = read_limited(response, 512).await;
                    let head = String::from_utf8_lossy(&body).into_owned();
                    let content_type = header_text(&headers, header::CONTENT_TYPE);
                    let challenge = header_text(&headers, header::WWW_AUTHENTICATE);
                    let verdict =
                        judge_ping(status, content_type.as_deref(), &head, challenge.as_deref());
                    if let PingVerdict::Transient(code) = verdict {
                        return Err(RegistryFailure {
                            reason: format!("HTTP {code}"),
                            retry: Retryable::Transient {
                                retry_after: retry_after_of(&headers),
                            },
                            kind: FailureKind::Other,
                        });
                    }
                    Ok(PingAnswer { verdict, challenge })
                }
            },
        )
        .await
        .map_err(|failure| match failure {
            RetryFailure::Cancelled => self.cancelled(),
            RetryFailure::Failed {
                error,
                attempts,
                gave_up,
            } => {
                let reason = match gave_up.note() {
                    Some(note) => format!("{}; {note}", error.reason),
                    None => error.reason,
                };
                self.registry_error(action, reason, attempts)
            }
        })
    }

    async fn ping(&self) -> Result<(), PushError> {
        let first = self.ping_once(false).await?;
        let bearer = match first.verdict {
            PingVerdict::Usable => return Ok(()),
            PingVerdict::NotARegistry(reason) => {
                return Err(self.registry_error("reach the registry API", reason, 1));
            }
            PingVerdict::Transient(code) => {
                return Err(self.registry_error(
                    "reach the registry API",
                    format!("HTTP {code}"),
                    self.policy.max_attempts,
                ));
            }
            PingVerdict::Challenge { bearer } => bearer,
        };
        let auth = self.auth.lock().await.auth.clone();
        match (&auth, bearer) {
            (RegistryAuth::Anonymous, _) => Err(self.auth_error(format!(
                "the registry requires credentials and none were found for {} in the Docker \
                 config",
                self.host
            ))),
            (_, false) => match self.ping_once(true).await?.verdict {
                PingVerdict::Usable => Ok(()),
                PingVerdict::Challenge { .. } => Err(self.auth_error(format!(
                    "the registry rejected {}",
                    self.credentials.describe(&auth)
                ))),
                PingVerdict::NotARegistry(reason) => {
                    Err(self.registry_error("reach the registry API", reason, 1))
                }
                PingVerdict::Transient(code) => Err(self.registry_error(
                    "reach the registry API",
                    format!("HTTP {code}"),
                    self.policy.max_attempts,
                )),
            },
            // A token service: fetch a push token now, so refused credentials fail here with
            // the token service's answer.
            (_, true) => {
                let challenge = first
                    .challenge
                    .as_deref()
                    .and_then(parse_bearer_challenge)
                    .ok_or_else(|| {
                        self.registry_error(
                            "reach the registry API",
                            "the registry asks for a Bearer token without naming a token \
                             service (no realm in WWW-Authenticate)"
                                .into(),
                            1,
                        )
                    })?;
                let action = "get a push token";
                let token = self
                    .call(action, || self.fetch_token(&challenge, &auth))
                    .await?;
                let mut state = self.auth.lock().await;
                self.install_token(&mut state, token);
                Ok(())
            }
        }
    }

    // -----------------------------------------------------------------------------------------
    // Blobs

    /// Whether the repository holds a blob.
    pub(crate) async fn blob_exists(&self, digest: &str) -> Result<bool, PushError> {
        let action = format!("check for blob {digest}");
        let request = Request::new(Method::HEAD, self.url(&format!("blobs/{digest}")));
        self.call(&action, || self.probe(&request)).await
    }

    /// HEAD-like: true on 200, false on 404.
    async fn probe(&self, request: &Request) -> Result<bool, RegistryFailure> {
        let response = self.exchange(request).await?;
        if response.status() == StatusCode::NOT_FOUND {
            return Ok(false);
        }
        expect(response, &[StatusCode::OK]).await.map(|_| true)
    }

    /// Asks the registry to link a blob from another repository; false when it would not
    /// (registries may refuse, or, like ECR, only mount blobs a manifest references).
    pub(crate) async fn mount_blob(&self, digest: &str, from_repository: &str) -> bool {
        if from_repository == self.repository {
            return false;
        }
        let mut url = self.url("blobs/uploads/");
        url.query_pairs_mut()
            .append_pair("mount", digest)
            .append_pair("from", from_repository);
        match self.exchange(&Request::new(Method::POST, url)).await {
            Ok(response) => response.status() == StatusCode::CREATED,
            Err(_) => false,
        }
    }

    /// Opens an upload session; its location.
    async fn start_upload(&self) -> Result<Url, RegistryFailure> {
        let request = Request::new(Method::POST, self.url("blobs/uploads/"));
        let response = expect(self.exchange(&request).await?, &[StatusCode::ACCEPTED]).await?;
        location_of(&response).ok_or_else(|| RegistryFailure {
            reason: "the registry did not say where to upload (no Location header); is it a \
                     registry, or a proxy in front of one?"
                .into(),
            retry: Retryable::Permanent,
            kind: FailureKind::Other,
        })
    }

    /// Closes an upload session with the blob's digest.
    async fn finish_upload(&self, location: &Url, digest: &str) -> Result<(), RegistryFailure> {
        self.put_blob(location, digest, Body::Empty).await
    }

    async fn put_blob(
        &self,
        location: &Url,
        digest: &str,
        body: Body,
    ) -> Result<(), RegistryFailure> {
        let mut url = location.clone();
        url.query_pairs_mut().append_pair("digest", digest);
        let request = Request::new(Method::PUT, url)
            .header(header::CONTENT_TYPE, "application/octet-stream")
            .body(body);
        expect(
            self.exchange(&request).await?,
            &[StatusCode::CREATED, StatusCode::NO_CONTENT, StatusCode::OK],
        )
        .await
        .map(|_| ())
    }

    /// Uploads a spool file as a blob: one PUT up to `CHUNKED_ABOVE`, resumable chunks above.
    pub(crate) async fn upload_blob(&self, blob: &SpooledBlob) -> Result<(), PushError> {
        let path: Arc<Path> = Arc::from(blob.path.as_path());
        if blob.size > CHUNKED_ABOVE {
            return self.upload_chunked(blob, path).await;
        }
        let action = format!("upload blob {}", blob.digest);
        let body = Body::File {
            path,
            offset: 0,
            len: blob.size,
        };
        self.call(&action, || async {
            let location = self.start_upload().await?;
            self.put_blob(&location, &blob.digest, body.clone()).await
        })
        .await
    }

    /// Uploads a small blob held in memory (the image config).
    pub(crate) async fn upload_bytes(&self, bytes: &[u8], digest: &str) -> Result<(), PushError> {
        let action = format!("upload blob {digest}");
        let body = Body::Bytes(bytes::Bytes::copy_from_slice(bytes));
        self.call(&action, || async {
            let location = self.start_upload().await?;
            self.put_blob(&location, digest, body.clone()).await
        })
        .await
    }

    /// A chunked upload that survives interruptions: after a failure the registry is asked how
    /// much it holds and the upload goes on from there; progress starts a fresh run of tries.
    async fn upload_chunked(&self, blob: &SpooledBlob, path: Arc<Path>) -> Result<(), PushError> {
        let action = format!("upload blob {}", blob.digest);
        let mut backoff = Backoff::new(self.policy);
        let mut cursor: Option<UploadCursor> = None;
        let mut interrupted = false;
        let mut attempt = 0u32;
        loop {
            let step = tokio::select! {
                biased;
                _ = self.cancel.cancelled() => return Err(self.cancelled()),
                step = self.upload_step(blob, &path, &mut cursor, interrupted, &mut backoff) => step,
            };
            let failure = match step {
                Ok(()) => return Ok(()),
                Err(failure) => failure,
            };
            attempt += 1;
            interrupted = cursor.is_some();
            match backoff.on_failure(failure.retry, rand::random::<f64>()) {
                Decision::Wait { delay, honoured } => {
                    self.say_retry(
                        &action,
                        &failure,
                        RetryNote {
                            attempt,
                            delay,
                            honoured,
                        },
                    );
                    if !sleep_or_cancel(delay, &self.cancel).await {
                        return Err(self.cancelled());
                    }
                }
                Decision::GiveUp(gave_up) => {
                    return Err(self.failure_to_error(&action, failure, attempt, gave_up));
                }
            }
        }
    }

    /// One try of a chunked upload, from wherever `cursor` says it stands.
    async fn upload_step(
        &self,
        blob: &SpooledBlob,
        path: &Arc<Path>,
        cursor: &mut Option<UploadCursor>,
        interrupted: bool,
        backoff: &mut Backoff,
    ) -> Result<(), RegistryFailure> {
        if interrupted && let Some(current) = cursor.take() {
            match self.upload_status(&current.location).await {
                Ok((acknowledged, location)) if acknowledged <= blob.size => {
                    self.say(format!(
                        "resuming the upload of blob {} at byte {acknowledged} of {}",
                        short(&blob.digest),
                        blob.size
                    ));
                    *cursor = Some(UploadCursor {
                        location: location.unwrap_or(current.location),
                        offset: acknowledged,
                        resumed: true,
                    });
                }
                Ok((acknowledged, _)) => self.say(format!(
                    "the registry says it holds {acknowledged} bytes of blob {}, which has {}; \
                     starting the upload again",
                    short(&blob.digest),
                    blob.size
                )),
                Err(failure) if failure.kind == FailureKind::NotFound => {
                    // The upload may have completed before its answer was lost.
                    let head =
                        Request::new(Method::HEAD, self.url(&format!("blobs/{}", blob.digest)));
                    if self.probe(&head).await == Ok(true) {
                        return Ok(());
                    }
                    self.say(format!(
                        "the registry lost the upload of blob {}; starting it again",
                        short(&blob.digest)
                    ));
                }
                Err(failure) => {
                    *cursor = Some(current);
                    return Err(failure);
                }
            }
        }
        if cursor.is_none() {
            *cursor = Some(UploadCursor {
                location: self.start_upload().await?,
                offset: 0,
                resumed: false,
            });
        }
        let current = cursor.as_mut().expect("an upload is open");
        while let Some((start, len)) = next_chunk(current.offset, blob.size, CHUNK_SIZE) {
            let request = Request::new(Method::PATCH, current.location.clone())
                .header(header::CONTENT_TYPE, "application/octet-stream")
                .header(
                    header::CONTENT_RANGE,
                    &format!("{start}-{}", start + len - 1),
                )
                .body(Body::File {
                    path: path.clone(),
                    offset: start,
                    len,
                });
            let response = self.exchange(&request).await?;
            match judge_chunk(response.status().as_u16()) {
                ChunkVerdict::Taken => {
                    if let Some(location) = location_of(&response) {
                        current.location = location;
                    }
                    current.offset = start + len;
                    backoff.progressed();
                }
                ChunkVerdict::OffsetDisputed => {
                    // The registry holds another amount than shipit was told: start again
                    // rather than trust its status a second time.
                    *cursor = None;
                    self.say(format!(
                        "the registry disputes the offset of the upload of blob {}; starting it \
                         again",
                        short(&blob.digest)
                    ));
                    return Err(RegistryFailure {
                        reason: format!(
                            "the registry refused the chunk at byte {start} (HTTP 416)"
                        ),
                        retry: Retryable::Transient { retry_after: None },
                        kind: FailureKind::Other,
                    });
                }
                ChunkVerdict::Failed => {
                    return Err(lost_upload_is_transient(failure_of(response).await));
                }
            }
        }
        let resumed = current.resumed;
        self.finish_upload(&current.location, &blob.digest)
            .await
            .map_err(|failure| {
                if resumed && failure.reason.contains("DIGEST_INVALID") {
                    // A registry whose status misled the resume: the bytes are wrong, so the
                    // upload starts again (once more at most: a fresh upload is not resumed).
                    *cursor = None;
                    return RegistryFailure {
                        retry: Retryable::Transient { retry_after: None },
                        ..failure
                    };
                }
                lost_upload_is_transient(failure)
            })
    }

    /// Asks the registry how much of an upload it holds: the bytes acknowledged, and the
    /// location to go on at (a registry may hand out a new one).
    async fn upload_status(&self, location: &Url) -> Result<(u64, Option<Url>), RegistryFailure> {
        let request = Request::new(Method::GET, location.clone());
        let response = expect(
            self.exchange(&request).await?,
            &[StatusCode::NO_CONTENT, StatusCode::OK, StatusCode::ACCEPTED],
        )
        .await?;
        let acknowledged = header_text(response.headers(), header::RANGE)
            .and_then(|range| acknowledged_bytes(&range))
            .unwrap_or(0);
        Ok((acknowledged, location_of(&response)))
    }

    // -----------------------------------------------------------------------------------------
    // Manifests

    /// Puts the manifest under a tag, or under its digest when `tag` is None.
    pub(crate) async fn push_manifest(
        &self,
        manifest: &[u8],
        media_type: &str,
        tag: Option<&str>,
    ) -> Result<(), PushError> {
        let reference = match tag {
            Some(tag) => tag.to_string(),
            None => sha256_digest(manifest),
        };
        let action = match tag {
            Some(tag) => format!("push the manifest as tag {tag}"),
            None => "push the manifest".to_string(),
        };
        if HeaderValue::from_str(media_type).is_err() {
            return Err(self.registry_error(
                &action,
                format!("invalid media type {media_type}"),
                1,
            ));
        }
        let request = Request::new(Method::PUT, self.url(&format!("manifests/{reference}")))
            .header(header::CONTENT_TYPE, media_type)
            .body(Body::Bytes(bytes::Bytes::copy_from_slice(manifest)));
        self.call(&action, || async {
            let response = self.exchange(&request).await?;
            expect(
                response,
                &[StatusCode::CREATED, StatusCode::OK, StatusCode::ACCEPTED],
            )
            .await
            .map(|_| ())
        })
        .await
    }

    fn manifest_request(&self, method: Method, digest: &str) -> Request {
        let accepted = [
            OCI_MANIFEST,
            DOCKER_MANIFEST,
            OCI_INDEX,
            DOCKER_MANIFEST_LIST,
        ]
        .join(", ");
        Request::new(method, self.url(&format!("manifests/{digest}")))
            .header(header::ACCEPT, &accepted)
    }

    /// The manifest stored under `digest`, or None when the registry does not have it.
    pub(crate) async fn fetch_manifest(&self, digest: &str) -> Result<Option<Vec<u8>>, PushError> {
        let action = format!("fetch manifest {digest}");
        let request = self.manifest_request(Method::GET, digest);
        self.call(&action, || async {
            let response = self.exchange(&request).await?;
            if response.status() == StatusCode::NOT_FOUND {
                return Ok(None);
            }
            let response = expect(response, &[StatusCode::OK]).await?;
            let body = response.bytes().await.map_err(|err| from_transport(&err))?;
            Ok(Some(body.to_vec()))
        })
        .await
    }

    /// Whether the registry holds a manifest with this digest (HEAD, no body).
    pub(crate) async fn manifest_exists(&self, digest: &str) -> Result<bool, PushError> {
        let action = format!("check for manifest {digest}");
        let request = self.manifest_request(Method::HEAD, digest);
        self.call(&action, || self.probe(&request)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tls_client_is_built_only_for_an_https_url() {
        let clients = HttpClients::new().unwrap();
        let plain = Url::parse("http://127.0.0.1:5000/v2/").unwrap();
        clients.for_url(&plain).unwrap();
        assert!(
            clients.tls.get().is_none(),
            "plain HTTP built the TLS client"
        );
        let tls = Url::parse("https://registry.example/v2/").unwrap();
        clients.for_url(&tls).unwrap();
        assert!(matches!(clients.tls.get(), Some(Ok(_))));
    }

    #[test]
    fn ping_accepts_registries_and_names_what_is_not_one() {
        assert_eq!(
            judge_ping(200, Some("application/json"), "{}", None),
            PingVerdict::Usable
        );
        assert_eq!(
            judge_ping(401, None, "", Some("Basic realm=\"x\"")),
            PingVerdict::Challenge { bearer: false }
        );
        assert_eq!(
            judge_ping(
                401,
                None,
                "",
                Some("Bearer realm=\"https://auth\",service=\"r\"")
            ),
            PingVerdict::Challenge { bearer: true }
        );
        assert!(matches!(
            judge_ping(200, Some("text/html; charset=utf-8"), "<html>", None),
            PingVerdict::NotARegistry(reason) if reason.contains("HTML page")
        ));
        assert!(matches!(
            judge_ping(200, None, "<!DOCTYPE html><html>", None),
            PingVerdict::NotARegistry(_)
        ));
        assert!(matches!(
            judge_ping(404, None, "", None),
            PingVerdict::NotARegistry(_)
        ));
        assert_eq!(judge_ping(503, None, "", None), PingVerdict::Transient(503));
    }

    #[test]
    fn only_loopback_registries_are_reached_over_plain_http() {
        assert_eq!(scheme_for("127.0.0.1:5000"), "http");
        assert_eq!(scheme_for("localhost:5000"), "http");
        assert_eq!(scheme_for("registry.example.com"), "https");
        assert_eq!(scheme_for("10.1.2.3:5000"), "https");
    }

    #[test]
    fn bearer_challenges_are_read_with_commas_inside_quotes() {
        assert_eq!(
            parse_bearer_challenge(
                r#"Bearer realm="https://auth.example/token",service="registry.example",scope="repository:team/api:pull,push""#
            ),
            Some(BearerChallenge {
                realm: "https://auth.example/token".into(),
                service: Some("registry.example".into()),
                scope: Some("repository:team/api:pull,push".into()),
            })
        );
        // Any case for the scheme and names, spaces after commas, unquoted values, extra
        // parameters (error="invalid_token") and escapes.
        assert_eq!(
            parse_bearer_challenge(
                r#"bearer Realm=http://127.0.0.1:9/token, error="invalid_token", service="a\"b""#
            ),
            Some(BearerChallenge {
                realm: "http://127.0.0.1:9/token".into(),
                service: Some("a\"b".into()),
                scope: None,
            })
        );
        assert_eq!(parse_bearer_challenge(r#"Basic realm="registry""#), None);
        assert_eq!(parse_bearer_challenge(r#"Bearer service="x""#), None);
        assert_eq!(parse_bearer_challenge("Bearer"), None);
    }

    #[test]
    fn tokens_are_asked_for_push_on_the_repository_plus_what_the_challenge_names() {
        assert_eq!(
            token_scopes("team/api", None),
            vec!["repository:team/api:pull,push"]
        );
        assert_eq!(
            token_scopes("team/api", Some("repository:team/api:pull")),
            vec!["repository:team/api:pull,push"]
        );
        assert_eq!(
            token_scopes(
                "team/api",
                Some("repository:team/base:pull repository:team/api:pull,push")
            ),
            vec!["repository:team/api:pull,push", "repository:team/base:pull"]
        );
    }

    #[test]
    fn credentials_go_to_token_services_over_https_or_on_this_machine_only() {
        let allowed = |url: &str| may_send_credentials_to(&Url::parse(url).unwrap());
        assert!(allowed("https://auth.example/token"));
        assert!(allowed("http://127.0.0.1:5001/token"));
        assert!(allowed("http://localhost/token"));
        assert!(allowed("http://[::1]:80/token"));
        assert!(!allowed("http://auth.example/token"));
        assert!(!allowed("http://10.0.0.5/token"));
        assert!(!allowed("ftp://auth.example/token"));
    }

    #[test]
    fn upload_ranges_say_how_many_bytes_the_registry_holds() {
        assert_eq!(acknowledged_bytes("0-1023"), Some(1024));
        assert_eq!(
            acknowledged_bytes("bytes=0-16777215"),
            Some(16 * 1024 * 1024)
        );
        assert_eq!(acknowledged_bytes(" 0-0 "), Some(0));
        assert_eq!(acknowledged_bytes("5-10"), None);
        assert_eq!(acknowledged_bytes("0-"), None);
        assert_eq!(acknowledged_bytes("garbage"), None);
    }

    #[test]
    fn any_success_takes_a_chunk_and_416_disputes_the_offset() {
        for status in [202, 201, 204, 200] {
            assert_eq!(judge_chunk(status), ChunkVerdict::Taken, "{status}");
        }
        assert_eq!(judge_chunk(416), ChunkVerdict::OffsetDisputed);
        for status in [400, 401, 404, 500, 307] {
            assert_eq!(judge_chunk(status), ChunkVerdict::Failed, "{status}");
        }
    }

    #[test]
    fn chunks_cover_the_blob_from_any_offset() {
        let chunks = |mut offset: u64, size: u64| {
            let mut out = vec![];
            while let Some((start, len)) = next_chunk(offset, size, 10) {
                out.push((start, len));
                offset = start + len;
            }
            out
        };
        assert_eq!(chunks(0, 25), vec![(0, 10), (10, 10), (20, 5)]);
        // Resumed from an offset the registry acknowledged, not on a chunk boundary.
        assert_eq!(chunks(13, 25), vec![(13, 10), (23, 2)]);
        assert_eq!(chunks(25, 25), vec![]);
        assert_eq!(chunks(0, 0), vec![]);
    }

    #[test]
    fn secrets_are_scrubbed_from_messages() {
        let secrets = vec!["s3cret-pass".to_string(), "tok".to_string()];
        assert_eq!(
            redact("echoed s3cret-pass back, and tok", &secrets),
            "echoed *** back, and tok"
        );
    }
}
