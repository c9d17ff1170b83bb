//! A connection to one repository of one registry, speaking the distribution protocol over
//! shipit's own HTTP requests: ping, blob HEAD, cross-repository mount, blob upload, manifest
//! push and fetch. Every call goes through the shared retry policy.
//!
//! The wire is shipit's own (reqwest) rather than oci-client's calls because those hide the
//! answer's headers: without them neither a rate limit's `Retry-After` nor an upload's `Range`
//! can be read, so waits could not be honoured and an interrupted upload could only restart.
//!
//! The files: `ping` (the first call: is it a registry, does it want credentials), `auth` and
//! `token_service` (Basic credentials, the Docker config's or the ECR token, or a bearer token
//! from the registry's token service, renewed before it expires and when the registry refuses
//! it), `http` (the clients, requests that can be sent again, failures classified, retries),
//! `blobs` and `chunked_upload` (uploads, resumed after an interruption), `manifests`.
//! Credentials and tokens are only ever sent to the registry's own host (and the token
//! service), and are scrubbed from every message.

use oci_client::Reference;
use reqwest::Url;
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

use crate::registry::push_config::is_loopback_host;
use crate::registry::push_error::PushError;
use crate::registry::push_progress::Notify;
use crate::registry::registry_failure::{FailureKind, RegistryFailure, from_transport};
use crate::registry::retry::{GiveUp, RetryFailure, RetryPolicy};

mod auth;
mod blobs;
mod chunked_upload;
mod http;
mod manifests;
mod ping;
mod token_service;

pub(crate) use auth::Credentials;
use auth::{AuthState, redact};
use http::HttpClients;

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
    notify: Notify,
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

impl RegistrySession {
    /// Connects: pings `/v2/` and checks the credentials (fetching a token when the registry
    /// uses a token service), so bad hosts and bad credentials fail before any export work.
    pub(crate) async fn connect(
        host: &str,
        repository: &str,
        credentials: Credentials,
        cancel: CancellationToken,
        notify: Notify,
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_registries_are_reached_over_plain_http() {
        assert_eq!(scheme_for("127.0.0.1:5000"), "http");
        assert_eq!(scheme_for("localhost:5000"), "http");
        assert_eq!(scheme_for("registry.example.com"), "https");
        assert_eq!(scheme_for("10.1.2.3:5000"), "https");
    }
}
