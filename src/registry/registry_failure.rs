//! What an error from the registry protocol means: a human reason fit to print, whether trying
//! again can help, and whether the credentials were refused. Pure, so every wire failure the
//! adapter can meet is tested here without a server. The wire itself is shipit's own
//! (`registry_session`), so every answer's status, headers and body are at hand here.

use std::error::Error as _;
use std::time::Duration;

use oci_client::errors::{OciEnvelope, OciErrorCode};

use super::retry::Retryable;
use crate::error_summary::summarize;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FailureKind {
    /// The registry refused the credentials (401/403, UNAUTHORIZED, DENIED).
    Auth,
    /// The thing asked for does not exist (404, BLOB_UNKNOWN, BLOB_UPLOAD_UNKNOWN,
    /// MANIFEST_UNKNOWN).
    NotFound,
    Other,
}

/// A classified registry failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RegistryFailure {
    pub reason: String,
    pub retry: Retryable,
    pub kind: FailureKind,
}

fn transient() -> Retryable {
    Retryable::Transient { retry_after: None }
}

/// Status codes worth another try: timeouts, rate limits and server-side failures.
fn status_is_transient(code: u16) -> bool {
    code == 408 || code == 429 || (500..=599).contains(&code)
}

fn status_kind(code: u16) -> FailureKind {
    match code {
        401 | 403 => FailureKind::Auth,
        404 => FailureKind::NotFound,
        _ => FailureKind::Other,
    }
}

/// An error answer from a registry, as much of it as a verdict needs.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct ErrorAnswer<'a> {
    pub status: u16,
    pub content_type: Option<&'a str>,
    /// The parsed `Retry-After` header, when the answer had a readable one.
    pub retry_after: Option<Duration>,
    /// The start of the body (the adapter reads at most a few KiB of an error body).
    pub body: &'a str,
}

/// Classifies a registry's error answer: the distribution spec's error envelope when the body
/// holds one, an HTML page named as such (never echoed), the status otherwise; 408, 429 and 5xx
/// are retried, after the server's Retry-After when it gave one.
pub(crate) fn from_answer(answer: &ErrorAnswer<'_>) -> RegistryFailure {
    let html = answer
        .content_type
        .is_some_and(|ct| ct.to_ascii_lowercase().contains("text/html"));
    let mut failure = if html {
        html_failure(answer.status)
    } else {
        from_status(answer.status, answer.body)
    };
    if let Retryable::Transient { retry_after } = &mut failure.retry {
        *retry_after = answer.retry_after;
    }
    failure
}

/// A transport failure (no answer, or an answer cut short): the innermost cause is the useful
/// part ("connection reset by peer", "dns error: …"); reqwest's own message repeats the URL.
pub(crate) fn from_transport(err: &reqwest::Error) -> RegistryFailure {
    let what = if err.is_connect() {
        "cannot connect (connection refused, or the host is unreachable)"
    } else if err.is_timeout() {
        "the request timed out"
    } else if err.is_decode() {
        "the answer could not be decoded"
    } else if err.is_body() {
        "the connection broke while sending the request body"
    } else {
        "the connection failed"
    };
    let mut innermost: Option<String> = None;
    let mut source = err.source();
    while let Some(cause) = source {
        innermost = Some(cause.to_string());
        source = cause.source();
    }
    let reason = match innermost {
        Some(cause) if cause != what => format!("{what}: {}", summarize(&cause)),
        _ => what.to_string(),
    };
    let retry = if err.is_builder() || err.is_redirect() || err.is_decode() {
        Retryable::Permanent
    } else {
        transient()
    };
    RegistryFailure {
        reason,
        retry,
        kind: FailureKind::Other,
    }
}

/// An I/O failure on this machine (reading a spooled blob): not the registry's doing.
pub(crate) fn from_local_io(err: &std::io::Error) -> RegistryFailure {
    RegistryFailure {
        reason: format!("reading the blob from the spool failed: {err}"),
        retry: Retryable::Permanent,
        kind: FailureKind::Other,
    }
}

/// An answer the protocol does not allow at this step (a 200 where 202 was due, no Location).
pub(crate) fn protocol_violation(what: &str) -> RegistryFailure {
    RegistryFailure {
        reason: format!("the registry does not follow the distribution spec: {what}"),
        retry: Retryable::Permanent,
        kind: FailureKind::Other,
    }
}

fn html_failure(code: u16) -> RegistryFailure {
    RegistryFailure {
        reason: format!(
            "the server answered HTTP {code} with an HTML page instead of the registry API; \
             is this host a registry, or a proxy or login page in front of one?"
        ),
        retry: if status_is_transient(code) {
            transient()
        } else {
            Retryable::Permanent
        },
        kind: status_kind(code),
    }
}

fn from_envelope(envelope: &OciEnvelope) -> RegistryFailure {
    let mut kind = FailureKind::Other;
    let mut retry = Retryable::Permanent;
    let mut parts = Vec::new();
    for err in &envelope.errors {
        match &err.code {
            OciErrorCode::Unauthorized | OciErrorCode::Denied => kind = FailureKind::Auth,
            OciErrorCode::BlobUnknown
            | OciErrorCode::BlobUploadUnknown
            | OciErrorCode::ManifestUnknown
            | OciErrorCode::NameUnknown
            | OciErrorCode::NotFound => kind = FailureKind::NotFound,
            OciErrorCode::Toomanyrequests => retry = transient(),
            OciErrorCode::Other(code) if code == "UNAVAILABLE" => retry = transient(),
            _ => {}
        }
        let code = serde_json::to_value(&err.code)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_else(|| "ERROR".into());
        parts.push(if err.message.is_empty() {
            code
        } else {
            format!("{code}: {}", err.message)
        });
    }
    RegistryFailure {
        reason: summarize(&parts.join("; ")),
        retry,
        kind,
    }
}

fn from_status(code: u16, body: &str) -> RegistryFailure {
    let retry = if status_is_transient(code) {
        transient()
    } else {
        Retryable::Permanent
    };
    // The distribution spec's error envelope says more than the status does.
    if let Ok(envelope) = serde_json::from_str::<OciEnvelope>(body)
        && !envelope.errors.is_empty()
    {
        let mut failure = from_envelope(&envelope);
        failure.reason = format!("HTTP {code}: {}", failure.reason);
        if status_is_transient(code) {
            failure.retry = transient();
        }
        if failure.kind == FailureKind::Other {
            failure.kind = status_kind(code);
        }
        return failure;
    }
    if looks_like_html(body) {
        return html_failure(code);
    }
    let reason = if body.trim().is_empty() {
        // An empty answer (a HEAD's, say) has only its status to tell.
        match http::StatusCode::from_u16(code)
            .ok()
            .and_then(|status| status.canonical_reason())
        {
            Some(phrase) => format!("HTTP {code} ({phrase})"),
            None => format!("HTTP {code}"),
        }
    } else {
        format!("HTTP {code}: {}", summarize(body))
    };
    RegistryFailure {
        reason,
        retry,
        kind: status_kind(code),
    }
}

pub(crate) fn looks_like_html(body: &str) -> bool {
    let head: String = body
        .trim_start()
        .chars()
        .take(256)
        .collect::<String>()
        .to_ascii_lowercase();
    head.starts_with("<!doctype html") || head.starts_with("<html") || head.contains("<body")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: u16, body: &str) -> RegistryFailure {
        from_answer(&ErrorAnswer {
            status,
            body,
            ..ErrorAnswer::default()
        })
    }

    #[test]
    fn server_errors_and_rate_limits_are_transient() {
        for code in [500, 502, 503, 504, 429, 408] {
            assert!(
                matches!(answer(code, "").retry, Retryable::Transient { .. }),
                "{code}"
            );
        }
        for code in [400, 404, 405, 413, 416] {
            assert_eq!(answer(code, "").retry, Retryable::Permanent, "{code}");
        }
    }

    #[test]
    fn retry_after_rides_along_on_transient_answers_only() {
        let wait = Some(Duration::from_secs(7));
        let failure = from_answer(&ErrorAnswer {
            status: 429,
            retry_after: wait,
            body: r#"{"errors":[{"code":"TOOMANYREQUESTS","message":"slow down"}]}"#,
            ..ErrorAnswer::default()
        });
        assert_eq!(failure.retry, Retryable::Transient { retry_after: wait });
        assert_eq!(failure.reason, "HTTP 429: TOOMANYREQUESTS: slow down");
        let failure = from_answer(&ErrorAnswer {
            status: 503,
            retry_after: wait,
            content_type: Some("text/html"),
            body: "<p>maintenance</p>",
        });
        assert_eq!(failure.retry, Retryable::Transient { retry_after: wait });
        let failure = from_answer(&ErrorAnswer {
            status: 400,
            retry_after: wait,
            ..ErrorAnswer::default()
        });
        assert_eq!(failure.retry, Retryable::Permanent);
    }

    #[test]
    fn refused_credentials_are_auth_failures() {
        assert_eq!(answer(401, "").kind, FailureKind::Auth);
        assert_eq!(answer(403, "").kind, FailureKind::Auth);
        let failure = answer(
            401,
            r#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#,
        );
        assert_eq!(failure.kind, FailureKind::Auth);
        assert_eq!(
            failure.reason,
            "HTTP 401: UNAUTHORIZED: authentication required"
        );
        // A DENIED envelope under another status is still a refusal.
        let failure = answer(400, r#"{"errors":[{"code":"DENIED","message":"no push"}]}"#);
        assert_eq!(failure.kind, FailureKind::Auth);
    }

    #[test]
    fn an_html_page_is_named_as_such_and_not_echoed() {
        for (content_type, body) in [
            (
                None,
                "<!DOCTYPE html><html><head><title>Bad gateway</title></head><body>…</body></html>",
            ),
            (Some("text/html; charset=utf-8"), "<title>Sign in</title>"),
        ] {
            let failure = from_answer(&ErrorAnswer {
                status: 502,
                content_type,
                body,
                ..ErrorAnswer::default()
            });
            assert!(failure.reason.contains("HTML page"), "{}", failure.reason);
            assert!(!failure.reason.contains("<title>"), "{}", failure.reason);
            assert!(matches!(failure.retry, Retryable::Transient { .. }));
        }
        let failure = answer(403, "<html><body>Forbidden by policy</body></html>");
        assert_eq!(failure.kind, FailureKind::Auth);
        assert_eq!(failure.retry, Retryable::Permanent);
        assert!(!failure.reason.contains("policy"));
    }

    #[test]
    fn registry_error_codes_are_kept_and_rate_limits_retried() {
        let failure = answer(
            400,
            r#"{"errors":[{"code":"MANIFEST_INVALID","message":"manifest invalid","detail":{}}]}"#,
        );
        assert_eq!(
            failure.reason,
            "HTTP 400: MANIFEST_INVALID: manifest invalid"
        );
        assert_eq!(failure.retry, Retryable::Permanent);
        let failure = answer(
            400,
            r#"{"errors":[{"code":"TOOMANYREQUESTS","message":"slow"}]}"#,
        );
        assert!(matches!(failure.retry, Retryable::Transient { .. }));
        let failure = answer(404, r#"{"errors":[{"code":"BLOB_UPLOAD_UNKNOWN"}]}"#);
        assert_eq!(failure.kind, FailureKind::NotFound);
        let failure = answer(400, r#"{"errors":[{"code":"BLOB_UNKNOWN"}]}"#);
        assert_eq!(failure.kind, FailureKind::NotFound);
    }

    #[test]
    fn plain_text_bodies_are_summarized_on_one_line() {
        let failure = answer(500, "upstream\n  busy  ");
        assert_eq!(failure.reason, "HTTP 500: upstream busy");
        assert_eq!(answer(500, " ").reason, "HTTP 500 (Internal Server Error)");
        assert_eq!(answer(429, "").reason, "HTTP 429 (Too Many Requests)");
        assert_eq!(answer(599, "").reason, "HTTP 599");
    }
}
