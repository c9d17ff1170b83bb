//! The first call of a session: `GET /v2/`, which says whether the host is a registry at all,
//! and whether it wants credentials (Basic, or a bearer token from a token service), so bad
//! hosts and bad credentials fail before any export work.

use std::time::Duration;

use oci_client::secrets::RegistryAuth;
use reqwest::header;

use super::RegistrySession;
use super::http::{header_text, read_limited, retry_after_of};
use super::token_service::parse_bearer_challenge;
use crate::registry::push_error::PushError;
use crate::registry::registry_failure::{
    FailureKind, RegistryFailure, from_transport, looks_like_html,
};
use crate::registry::retry::{RetryFailure, Retryable, retry};

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
    pub(super) challenge: Option<String>,
}

impl RegistrySession {
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

    pub(super) async fn ping(&self) -> Result<(), PushError> {
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
}
