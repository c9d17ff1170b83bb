//! What an error from the registry protocol means: a human reason fit to print, whether trying
//! again can help, and whether the credentials were refused. Pure, so every wire failure the
//! adapter can meet is tested here without a server.

use std::error::Error as _;

use oci_client::errors::{OciDistributionError, OciEnvelope, OciErrorCode};

use super::retry::Retryable;

/// The longest cause text kept from a server answer.
const MAX_REASON_CHARS: usize = 300;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FailureKind {
    /// The registry refused the credentials (401/403, UNAUTHORIZED, DENIED).
    Auth,
    /// The thing asked for does not exist (404, BLOB_UNKNOWN, MANIFEST_UNKNOWN).
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

pub(crate) fn classify(error: &OciDistributionError) -> RegistryFailure {
    match error {
        OciDistributionError::RequestError(err) => {
            if let Some(status) = err.status() {
                return from_status(status.as_u16(), "");
            }
            let what = if err.is_connect() {
                "cannot connect (connection refused, or the host is unreachable)"
            } else if err.is_timeout() {
                "the request timed out"
            } else if err.is_decode() {
                "the answer could not be decoded"
            } else {
                "the connection failed"
            };
            // reqwest's own message repeats the URL; the innermost cause is the useful part
            // ("connection reset by peer", "dns error: …").
            let mut innermost: Option<String> = None;
            let mut source = err.source();
            while let Some(cause) = source {
                innermost = Some(cause.to_string());
                source = cause.source();
            }
            let reason = match innermost {
                Some(cause) => format!("{what}: {}", summarize(&cause)),
                None => what.to_string(),
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
        OciDistributionError::ServerError { code, message, .. } => from_status(*code, message),
        OciDistributionError::RegistryError { envelope, .. } => from_envelope(envelope),
        OciDistributionError::UnauthorizedError { .. } => RegistryFailure {
            reason: "the registry answered 401 Unauthorized".into(),
            retry: Retryable::Permanent,
            kind: FailureKind::Auth,
        },
        OciDistributionError::AuthenticationFailure(text) => RegistryFailure {
            reason: format!(
                "the token service refused the credentials: {}",
                summarize(text)
            ),
            retry: Retryable::Permanent,
            kind: FailureKind::Auth,
        },
        OciDistributionError::ImageManifestNotFoundError(_) => RegistryFailure {
            reason: "the manifest does not exist".into(),
            retry: Retryable::Permanent,
            kind: FailureKind::NotFound,
        },
        OciDistributionError::SpecViolationError(text) => RegistryFailure {
            reason: format!(
                "the registry does not follow the distribution spec: {}",
                summarize(text)
            ),
            retry: Retryable::Permanent,
            kind: FailureKind::Other,
        },
        OciDistributionError::RegistryNoLocationError => RegistryFailure {
            reason: "the registry did not say where to upload (no Location header); is it a \
                     registry, or a proxy in front of one?"
                .into(),
            retry: Retryable::Permanent,
            kind: FailureKind::Other,
        },
        other => RegistryFailure {
            reason: summarize(&other.to_string()),
            retry: Retryable::Permanent,
            kind: FailureKind::Other,
        },
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
    // oci-client passes some error bodies through unparsed; the distribution spec's error
    // envelope says more than the status does.
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
    let reason = if looks_like_html(body) {
        format!(
            "the server answered HTTP {code} with an HTML page instead of the registry API; \
             is this host a registry, or a proxy or login page in front of one?"
        )
    } else if body.trim().is_empty() {
        format!("HTTP {code}")
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

/// One line, no URL query strings (signed upload URLs carry credentials there), bounded length.
pub(crate) fn summarize(text: &str) -> String {
    let mut words: Vec<String> = Vec::new();
    for word in text.split_whitespace() {
        if (word.starts_with("http://") || word.starts_with("https://") || word.contains("://"))
            && let Some((base, _)) = word.split_once('?')
        {
            words.push(format!("{base}?…"));
            continue;
        }
        words.push(word.to_string());
    }
    let line = words.join(" ");
    if line.chars().count() > MAX_REASON_CHARS {
        let cut: String = line.chars().take(MAX_REASON_CHARS).collect();
        format!("{cut}…")
    } else {
        line
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(code: u16, message: &str) -> OciDistributionError {
        OciDistributionError::ServerError {
            code,
            url: "http://127.0.0.1:5000/v2/app/blobs/uploads/?secret=1".into(),
            message: message.into(),
        }
    }

    fn envelope(json: &str) -> OciDistributionError {
        OciDistributionError::RegistryError {
            envelope: serde_json::from_str::<OciEnvelope>(json).unwrap(),
            url: "http://127.0.0.1:5000/v2/".into(),
        }
    }

    #[test]
    fn server_errors_and_rate_limits_are_transient() {
        for code in [500, 502, 503, 504, 429, 408] {
            assert!(
                matches!(
                    classify(&server(code, "")).retry,
                    Retryable::Transient { .. }
                ),
                "{code}"
            );
        }
        for code in [400, 404, 405, 413] {
            assert_eq!(
                classify(&server(code, "")).retry,
                Retryable::Permanent,
                "{code}"
            );
        }
    }

    #[test]
    fn refused_credentials_are_auth_failures() {
        assert_eq!(classify(&server(401, "")).kind, FailureKind::Auth);
        assert_eq!(classify(&server(403, "")).kind, FailureKind::Auth);
        let failure = classify(&envelope(
            r#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#,
        ));
        assert_eq!(failure.kind, FailureKind::Auth);
        assert_eq!(failure.reason, "UNAUTHORIZED: authentication required");
        assert_eq!(
            classify(&OciDistributionError::UnauthorizedError { url: "u".into() }).kind,
            FailureKind::Auth
        );
    }

    #[test]
    fn an_html_page_is_named_as_such_and_not_echoed() {
        let failure = classify(&server(
            502,
            "<!DOCTYPE html><html><head><title>Bad gateway</title></head><body>…</body></html>",
        ));
        assert!(failure.reason.contains("HTML page"), "{}", failure.reason);
        assert!(!failure.reason.contains("<title>"));
    }

    #[test]
    fn registry_error_codes_are_kept_and_rate_limits_retried() {
        let failure = classify(&envelope(
            r#"{"errors":[{"code":"MANIFEST_INVALID","message":"manifest invalid","detail":{}}]}"#,
        ));
        assert_eq!(failure.reason, "MANIFEST_INVALID: manifest invalid");
        assert_eq!(failure.retry, Retryable::Permanent);
        let failure = classify(&envelope(
            r#"{"errors":[{"code":"TOOMANYREQUESTS","message":"slow down"}]}"#,
        ));
        assert!(matches!(failure.retry, Retryable::Transient { .. }));
        let failure = classify(&envelope(r#"{"errors":[{"code":"BLOB_UNKNOWN"}]}"#));
        assert_eq!(failure.kind, FailureKind::NotFound);
    }

    #[test]
    fn an_unparsed_error_body_is_read_as_an_envelope() {
        let failure = classify(&server(
            400,
            r#"{"errors":[{"code":"MANIFEST_INVALID","message":"manifest invalid"}]}"#,
        ));
        assert_eq!(
            failure.reason,
            "HTTP 400: MANIFEST_INVALID: manifest invalid"
        );
        assert_eq!(failure.retry, Retryable::Permanent);
        let failure = classify(&server(401, r#"{"errors":[{"code":"UNAUTHORIZED"}]}"#));
        assert_eq!(failure.kind, FailureKind::Auth);
    }

    #[test]
    fn summaries_drop_query_strings_and_stay_short() {
        let text = format!(
            "redirected to https://bucket.example/upload?X-Amz-Signature=abc then {}",
            "x".repeat(1000)
        );
        let summary = summarize(&text);
        assert!(!summary.contains("Signature"));
        assert!(summary.contains("https://bucket.example/upload?…"));
        assert!(summary.chars().count() <= MAX_REASON_CHARS + 1);
    }
}
