//! A connection to one repository of one registry, speaking the distribution protocol through
//! oci-client: ping, blob HEAD, cross-repository mount, blob upload from a spool file, manifest
//! push and fetch. Every call goes through the shared retry loop; a refused ECR token is
//! replaced once and the call tried again.

use std::sync::Arc;
use std::time::Duration;

use futures::TryStreamExt as _;
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::errors::OciDistributionError;
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference, RegistryOperation};
use tokio::sync::RwLock;
use tokio_util::sync::CancellationToken;

use super::ecr_auth::EcrContext;
use super::image_layout::{
    DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, OCI_INDEX, OCI_MANIFEST, sha256_digest,
};
use super::layer_packer::SpooledBlob;
use super::push_config::is_loopback_host;
use super::push_error::PushError;
use super::registry_failure::{FailureKind, RegistryFailure, classify, looks_like_html};
use super::retry::{RetryFailure, RetryPolicy, Retryable, retry};

const USER_AGENT: &str = concat!("shipit/", env!("CARGO_PKG_VERSION"));
/// Bytes per read of a spool file during upload.
const UPLOAD_READ_CHUNK: usize = 256 * 1024;

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
            _ => "the credentials from the Docker config",
        }
    }
}

/// A registry call's failure: either from the protocol, or a sign that the credentials were
/// renewed and the call should simply run again.
#[derive(Debug)]
enum CallError {
    Registry(OciDistributionError),
    Renewed,
    Fatal(PushError),
}

struct SessionState {
    client: Arc<Client>,
    auth: RegistryAuth,
}

/// One repository of one registry.
pub(crate) struct RegistrySession {
    pub host: String,
    pub repository: String,
    credentials: Credentials,
    state: RwLock<SessionState>,
    policy: RetryPolicy,
    cancel: CancellationToken,
    /// Progress lines (retries) go here; the push loop forwards them to the observer.
    notify: Arc<dyn Fn(String) + Send + Sync>,
}

fn new_client(host: &str) -> Result<Client, OciDistributionError> {
    let protocol = if is_loopback_host(host) {
        ClientProtocol::HttpsExcept(vec![host.to_string()])
    } else {
        ClientProtocol::Https
    };
    Client::try_from(ClientConfig {
        protocol,
        // One PUT per blob: ECR mishandles multi-PATCH chunked uploads, and a single request
        // is faster on every registry (oci-client chunks at 4 MiB otherwise).
        use_monolithic_push: true,
        connect_timeout: Some(Duration::from_secs(10)),
        read_timeout: Some(Duration::from_secs(120)),
        user_agent: USER_AGENT,
        ..ClientConfig::default()
    })
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
    /// A registry that wants credentials: Basic (check them) or a Bearer token service
    /// (oci-client does that dance).
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

impl RegistrySession {
    /// Connects: builds the client, pings `/v2/` and checks the credentials, so bad hosts and
    /// bad credentials fail before any export work starts.
    pub(crate) async fn connect(
        host: &str,
        repository: &str,
        credentials: Credentials,
        cancel: CancellationToken,
        notify: Arc<dyn Fn(String) + Send + Sync>,
    ) -> Result<Self, PushError> {
        let auth = credentials.auth(false).await?;
        let client = new_client(host).map_err(|err| PushError::Registry {
            registry: host.to_string(),
            repository: repository.to_string(),
            action: "set up the registry client".into(),
            reason: classify(&err).reason,
            attempts: 1,
        })?;
        let session = RegistrySession {
            host: host.to_string(),
            repository: repository.to_string(),
            credentials,
            state: RwLock::new(SessionState {
                client: Arc::new(client),
                auth,
            }),
            policy: RetryPolicy::REGISTRY,
            cancel,
            notify,
        };
        session.ping().await?;
        Ok(session)
    }

    fn reference_for_tag(&self, tag: &str) -> Reference {
        Reference::with_tag(self.host.clone(), self.repository.clone(), tag.to_string())
    }

    fn reference_for_digest(&self, digest: &str) -> Reference {
        Reference::with_digest(
            self.host.clone(),
            self.repository.clone(),
            digest.to_string(),
        )
    }

    /// The repository itself, for blob calls (which ignore the tag).
    fn repository_reference(&self) -> Reference {
        self.reference_for_tag("latest")
    }

    fn registry_error(&self, action: &str, reason: String, attempts: u32) -> PushError {
        PushError::Registry {
            registry: self.host.clone(),
            repository: self.repository.clone(),
            action: action.to_string(),
            reason,
            attempts,
        }
    }

    fn cancelled(&self) -> PushError {
        PushError::Cancelled {
            registry: self.host.clone(),
            repository: self.repository.clone(),
        }
    }

    async fn ping(&self) -> Result<(), PushError> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(30))
            .user_agent(USER_AGENT)
            .build()
            .map_err(|err| self.registry_error("set up the HTTP client", err.to_string(), 1))?;
        // The same host oci-client will talk to (Docker Hub's API lives at index.docker.io).
        let reference = self.repository_reference();
        let api_host = reference.resolve_registry();
        let url = format!("{}://{api_host}/v2/", scheme_for(api_host));
        let auth = self.state.read().await.auth.clone();

        let answer = |basic: Option<(String, String)>| {
            let http = http.clone();
            let url = url.clone();
            async move {
                let mut request = http.get(&url);
                if let Some((user, password)) = basic {
                    request = request.basic_auth(user, Some(password));
                }
                let response = request.send().await?;
                let status = response.status().as_u16();
                let header = |name: reqwest::header::HeaderName| {
                    response
                        .headers()
                        .get(name)
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_string)
                };
                let content_type = header(reqwest::header::CONTENT_TYPE);
                let challenge = header(reqwest::header::WWW_AUTHENTICATE);
                let body = response.bytes().await.unwrap_or_default();
                let head = String::from_utf8_lossy(&body[..body.len().min(512)]).into_owned();
                Ok::<_, reqwest::Error>(judge_ping(
                    status,
                    content_type.as_deref(),
                    &head,
                    challenge.as_deref(),
                ))
            }
        };
        let ping_once = |basic: Option<(String, String)>| {
            let answer = &answer;
            async move {
                retry(
                    &self.policy,
                    &self.cancel,
                    |err: &PingFailure| match err {
                        PingFailure::Http(e) => classify_reqwest(e).retry,
                        PingFailure::Status(_) => Retryable::Transient { retry_after: None },
                    },
                    |attempt, err, delay| {
                        (self.notify)(format!(
                            "registry {} did not answer ({}); retry {attempt} in {:.1}s",
                            self.host,
                            err.describe(),
                            delay.as_secs_f64()
                        ))
                    },
                    |_| {
                        let basic = basic.clone();
                        async move {
                            match answer(basic).await {
                                Ok(PingVerdict::Transient(code)) => Err(PingFailure::Status(code)),
                                Ok(verdict) => Ok(verdict),
                                Err(err) => Err(PingFailure::Http(err)),
                            }
                        }
                    },
                )
                .await
            }
        };

        let verdict = ping_once(None)
            .await
            .map_err(|failure| self.ping_failure(failure))?;
        match verdict {
            PingVerdict::Usable => Ok(()),
            PingVerdict::NotARegistry(reason) => {
                Err(self.registry_error("reach the registry API", reason, 1))
            }
            PingVerdict::Transient(code) => Err(self.registry_error(
                "reach the registry API",
                format!("HTTP {code}"),
                self.policy.max_attempts,
            )),
            PingVerdict::Challenge { bearer } => {
                let auth_failure = |reason: String| PushError::Authentication {
                    registry: self.host.clone(),
                    repository: self.repository.clone(),
                    reason,
                };
                match (&auth, bearer) {
                    (RegistryAuth::Anonymous, _) => Err(auth_failure(format!(
                        "the registry requires credentials and none were found for {} in the \
                         Docker config",
                        self.host
                    ))),
                    (RegistryAuth::Basic(user, password), false) => {
                        let verdict = ping_once(Some((user.clone(), password.clone())))
                            .await
                            .map_err(|failure| self.ping_failure(failure))?;
                        match verdict {
                            PingVerdict::Usable => Ok(()),
                            PingVerdict::Challenge { .. } => Err(auth_failure(format!(
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
                        }
                    }
                    // A token service: let oci-client fetch a push token now, so refused
                    // credentials fail here with the token service's reason.
                    _ => {
                        let client = self.state.read().await.client.clone();
                        client
                            .auth(&self.repository_reference(), &auth, RegistryOperation::Push)
                            .await
                            .map(|_| ())
                            .map_err(|err| auth_failure(classify(&err).reason))
                    }
                }
            }
        }
    }

    fn ping_failure(&self, failure: RetryFailure<PingFailure>) -> PushError {
        match failure {
            RetryFailure::Cancelled => self.cancelled(),
            RetryFailure::Failed { error, attempts } => {
                self.registry_error("reach the registry API", error.describe(), attempts)
            }
        }
    }

    /// Runs one registry call with retries and credential renewal. `action` names it in errors.
    async fn call<T, Op, Fut>(&self, action: &str, op: Op) -> Result<T, (RegistryFailure, u32)>
    where
        Op: Fn(Arc<Client>, RegistryAuth) -> Fut,
        Fut: std::future::Future<Output = Result<T, OciDistributionError>>,
    {
        let renewed = std::sync::atomic::AtomicBool::new(false);
        let outcome = retry(
            &self.policy,
            &self.cancel,
            |err: &CallError| match err {
                CallError::Registry(err) => classify(err).retry,
                CallError::Renewed => Retryable::Transient {
                    retry_after: Some(Duration::ZERO),
                },
                CallError::Fatal(_) => Retryable::Permanent,
            },
            |attempt, err, delay| {
                if let CallError::Registry(err) = err {
                    (self.notify)(format!(
                        "{action} at {}: {}; retry {attempt} in {:.1}s",
                        self.host,
                        classify(err).reason,
                        delay.as_secs_f64()
                    ));
                }
            },
            |_| async {
                let (client, auth) = {
                    let state = self.state.read().await;
                    (state.client.clone(), state.auth.clone())
                };
                match op(client, auth).await {
                    Ok(value) => Ok(value),
                    Err(err) => {
                        let failure = classify(&err);
                        let renewable = matches!(self.credentials, Credentials::Ecr(_));
                        if failure.kind == FailureKind::Auth
                            && renewable
                            && !renewed.swap(true, std::sync::atomic::Ordering::SeqCst)
                        {
                            (self.notify)(format!(
                                "registry {} refused the ECR token; fetching a new one",
                                self.host
                            ));
                            return match self.renew_credentials().await {
                                Ok(()) => Err(CallError::Renewed),
                                Err(fatal) => Err(CallError::Fatal(fatal)),
                            };
                        }
                        Err(CallError::Registry(err))
                    }
                }
            },
        )
        .await;
        match outcome {
            Ok(value) => Ok(value),
            Err(RetryFailure::Cancelled) => Err((
                RegistryFailure {
                    reason: "cancelled".into(),
                    retry: Retryable::Permanent,
                    kind: FailureKind::Other,
                },
                0,
            )),
            Err(RetryFailure::Failed { error, attempts }) => {
                let failure = match error {
                    CallError::Registry(err) => classify(&err),
                    CallError::Renewed => RegistryFailure {
                        reason: "the registry kept refusing renewed credentials".into(),
                        retry: Retryable::Permanent,
                        kind: FailureKind::Auth,
                    },
                    CallError::Fatal(fatal) => RegistryFailure {
                        reason: fatal.to_string(),
                        retry: Retryable::Permanent,
                        kind: FailureKind::Auth,
                    },
                };
                Err((failure, attempts))
            }
        }
    }

    /// Turns a failed call into the error the user sees.
    fn failure_to_error(
        &self,
        action: &str,
        (failure, attempts): (RegistryFailure, u32),
    ) -> PushError {
        if self.cancel.is_cancelled() {
            return self.cancelled();
        }
        if failure.kind == FailureKind::Auth {
            return PushError::Authentication {
                registry: self.host.clone(),
                repository: self.repository.clone(),
                reason: format!("{} while trying to {action}", failure.reason),
            };
        }
        self.registry_error(action, failure.reason, attempts)
    }

    async fn renew_credentials(&self) -> Result<(), PushError> {
        let auth = self.credentials.auth(true).await?;
        let client = new_client(&self.host).map_err(|err| {
            self.registry_error("set up the registry client", classify(&err).reason, 1)
        })?;
        let mut state = self.state.write().await;
        state.client = Arc::new(client);
        state.auth = auth;
        Ok(())
    }

    /// Registers the credentials with a fresh client before its first request.
    async fn prepared(client: &Client, reference: &Reference, auth: &RegistryAuth) {
        client
            .store_auth_if_needed(reference.resolve_registry(), auth)
            .await;
    }

    /// Whether the repository holds a blob.
    pub(crate) async fn blob_exists(&self, digest: &str) -> Result<bool, PushError> {
        let reference = self.repository_reference();
        let action = format!("check for blob {digest}");
        self.call(&action, |client, auth| {
            let reference = reference.clone();
            async move {
                Self::prepared(&client, &reference, &auth).await;
                match client.blob_exists(&reference, digest).await {
                    Ok(found) => Ok(found),
                    Err(err) if classify(&err).kind == FailureKind::NotFound => Ok(false),
                    Err(err) => Err(err),
                }
            }
        })
        .await
        .map_err(|failure| self.failure_to_error(&action, failure))
    }

    /// Asks the registry to link a blob from another repository; false when it would not
    /// (registries may refuse, or, like ECR, only mount blobs a manifest references).
    pub(crate) async fn mount_blob(&self, digest: &str, from_repository: &str) -> bool {
        if from_repository == self.repository {
            return false;
        }
        let target = self.repository_reference();
        let source = Reference::with_tag(
            self.host.clone(),
            from_repository.to_string(),
            "latest".into(),
        );
        let (client, auth) = {
            let state = self.state.read().await;
            (state.client.clone(), state.auth.clone())
        };
        Self::prepared(&client, &target, &auth).await;
        client.mount_blob(&target, &source, digest).await.is_ok()
    }

    /// Uploads a spool file as a blob. Each try streams the file from its start, so an
    /// interrupted upload is restarted whole; a blob already present is not sent again.
    pub(crate) async fn upload_blob(&self, blob: &SpooledBlob) -> Result<(), PushError> {
        let reference = self.repository_reference();
        let action = format!("upload blob {}", blob.digest);
        self.call(&action, |client, auth| {
            let reference = reference.clone();
            async move {
                Self::prepared(&client, &reference, &auth).await;
                let file = tokio::fs::File::open(&blob.path).await?;
                let stream = tokio_util::io::ReaderStream::with_capacity(file, UPLOAD_READ_CHUNK)
                    .map_err(OciDistributionError::IoError);
                client
                    .push_blob_stream(&reference, stream, &blob.digest, Some(blob.size))
                    .await
                    .map(|_| ())
            }
        })
        .await
        .map_err(|failure| self.failure_to_error(&action, failure))
    }

    /// Uploads a small blob held in memory (the image config).
    pub(crate) async fn upload_bytes(&self, bytes: &[u8], digest: &str) -> Result<(), PushError> {
        let reference = self.repository_reference();
        let action = format!("upload blob {digest}");
        let data = bytes::Bytes::copy_from_slice(bytes);
        self.call(&action, |client, auth| {
            let reference = reference.clone();
            let data = data.clone();
            async move {
                Self::prepared(&client, &reference, &auth).await;
                client.push_blob(&reference, data, digest).await.map(|_| ())
            }
        })
        .await
        .map_err(|failure| self.failure_to_error(&action, failure))
    }

    /// Puts the manifest under a tag, or under its digest when `tag` is None.
    pub(crate) async fn push_manifest(
        &self,
        manifest: &[u8],
        media_type: &str,
        tag: Option<&str>,
    ) -> Result<(), PushError> {
        let reference = match tag {
            Some(tag) => self.reference_for_tag(tag),
            None => self.reference_for_digest(&sha256_digest(manifest)),
        };
        let action = match tag {
            Some(tag) => format!("push the manifest as tag {tag}"),
            None => "push the manifest".to_string(),
        };
        let body = bytes::Bytes::copy_from_slice(manifest);
        let content_type = reqwest::header::HeaderValue::from_str(media_type).map_err(|_| {
            self.registry_error(&action, format!("invalid media type {media_type}"), 1)
        })?;
        self.call(&action, |client, auth| {
            let reference = reference.clone();
            let body = body.clone();
            let content_type = content_type.clone();
            async move {
                Self::prepared(&client, &reference, &auth).await;
                client
                    .push_manifest_raw(&reference, body, content_type)
                    .await
                    .map(|_| ())
            }
        })
        .await
        .map_err(|failure| self.failure_to_error(&action, failure))
    }

    /// The manifest stored under `digest`, or None when the registry does not have it.
    pub(crate) async fn fetch_manifest(&self, digest: &str) -> Result<Option<Vec<u8>>, PushError> {
        let reference = self.reference_for_digest(digest);
        let action = format!("fetch manifest {digest}");
        let accepted = [
            OCI_MANIFEST,
            DOCKER_MANIFEST,
            OCI_INDEX,
            DOCKER_MANIFEST_LIST,
        ];
        self.call(&action, |client, auth| {
            let reference = reference.clone();
            async move {
                match client.pull_manifest_raw(&reference, &auth, &accepted).await {
                    Ok((body, _)) => Ok(Some(body.to_vec())),
                    Err(err) if classify(&err).kind == FailureKind::NotFound => Ok(None),
                    Err(err) => Err(err),
                }
            }
        })
        .await
        .map_err(|failure| self.failure_to_error(&action, failure))
    }

    /// Whether the registry holds a manifest with this digest (HEAD, no body).
    pub(crate) async fn manifest_exists(&self, digest: &str) -> Result<bool, PushError> {
        let reference = self.reference_for_digest(digest);
        let action = format!("check for manifest {digest}");
        self.call(&action, |client, auth| {
            let reference = reference.clone();
            async move {
                match client.fetch_manifest_digest(&reference, &auth).await {
                    Ok(_) => Ok(true),
                    Err(err) if classify(&err).kind == FailureKind::NotFound => Ok(false),
                    Err(err) => Err(err),
                }
            }
        })
        .await
        .map_err(|failure| self.failure_to_error(&action, failure))
    }
}

/// A failed ping: no answer, or a server error answer.
#[derive(Debug)]
enum PingFailure {
    Http(reqwest::Error),
    Status(u16),
}

impl PingFailure {
    fn describe(&self) -> String {
        match self {
            PingFailure::Http(err) => classify_reqwest(err).reason,
            PingFailure::Status(code) => format!("HTTP {code}"),
        }
    }
}

fn classify_reqwest(err: &reqwest::Error) -> RegistryFailure {
    // reqwest errors are what oci-client wraps; classify them the same way.
    let summary = {
        let mut innermost = None;
        let mut source = std::error::Error::source(err);
        while let Some(cause) = source {
            innermost = Some(cause.to_string());
            source = cause.source();
        }
        innermost
    };
    let what = if err.is_connect() {
        "cannot connect (connection refused, or the host is unreachable)"
    } else if err.is_timeout() {
        "the request timed out"
    } else {
        "the connection failed"
    };
    RegistryFailure {
        reason: match summary {
            Some(cause) => format!("{what}: {}", super::registry_failure::summarize(&cause)),
            None => what.to_string(),
        },
        retry: if err.is_builder() {
            Retryable::Permanent
        } else {
            Retryable::Transient { retry_after: None }
        },
        kind: FailureKind::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
