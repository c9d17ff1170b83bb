//! `POST /hooks/{github,gitlab,generic}`: verify, parse, decide, record, answer.
//!
//! The order is the security argument: a source that is not configured is 404 before anything
//! is read; the body is read up to `max_body_bytes` (413 beyond); the signature is checked over
//! the raw bytes before any of them is parsed (401 with no detail); only an authenticated
//! sender gets reasons (415, 400, why a push was ignored). The answer 202 comes after
//! `Queue::accept` returned, so a delivery the sender saw acknowledged is on disk.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use serde_json::json;

use super::reply;
use super::state::ServerState;
use crate::daemon::config::Secret;
use crate::daemon::queue::{Accepted, HookSource, NewDelivery};
use crate::daemon::webhooks::push::check_delivery_id;
use crate::daemon::webhooks::signature::{verify_hmac_sha256, verify_shared_token};
use crate::daemon::webhooks::{Decision, Hook, PayloadError, decide, generic, github, gitlab};

pub async fn github_hook(
    State(state): State<Arc<ServerState>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    ingest(&state, HookSource::Github, &headers, body).await
}

pub async fn gitlab_hook(
    State(state): State<Arc<ServerState>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    ingest(&state, HookSource::Gitlab, &headers, body).await
}

pub async fn generic_hook(
    State(state): State<Arc<ServerState>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    ingest(&state, HookSource::Generic, &headers, body).await
}

fn source_name(source: HookSource) -> &'static str {
    match source {
        HookSource::Github => "github",
        HookSource::Gitlab => "gitlab",
        HookSource::Generic => "generic",
    }
}

/// A verified delivery, read.
struct Parsed {
    delivery_id: String,
    event: String,
    hook: Hook,
}

/// A request refused after authentication: status, metric outcome, the reason the sender sees.
struct Refusal {
    status: StatusCode,
    outcome: &'static str,
    reason: String,
}

impl Refusal {
    fn bad_payload(err: PayloadError) -> Self {
        Refusal {
            status: StatusCode::BAD_REQUEST,
            outcome: "bad_payload",
            reason: err.0,
        }
    }
}

async fn ingest(
    state: &ServerState,
    source: HookSource,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let name = source_name(source);
    let sources = &state.config.sources;
    let secret = match source {
        HookSource::Github => sources.github.as_ref(),
        HookSource::Gitlab => sources.gitlab.as_ref(),
        HookSource::Generic => sources.generic.as_ref(),
    };
    let Some(secret) = secret else {
        state.metrics.webhook(name, "source_not_configured");
        return reply::error(
            StatusCode::NOT_FOUND,
            format!("the {name} source is not configured in this daemon"),
        );
    };
    let body = match body {
        Ok(body) => body,
        Err(rejection) => {
            let too_large = rejection.status() == StatusCode::PAYLOAD_TOO_LARGE;
            let outcome = if too_large {
                "too_large"
            } else {
                "unreadable_body"
            };
            state.metrics.webhook(name, outcome);
            tracing::warn!(source = name, outcome, "refused a webhook delivery");
            return if too_large {
                reply::error(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!(
                        "the body is over this daemon's limit of {} bytes",
                        state.config.max_body_bytes
                    ),
                )
            } else {
                reply::error(rejection.status(), "failed to read the request body")
            };
        }
    };
    if let Err(err) = verify(source, secret, headers, &body) {
        state.metrics.webhook(name, err.reason());
        // The reason goes to the log (for the operator), never to the response.
        tracing::warn!(
            source = name,
            outcome = err.reason(),
            "refused a webhook delivery"
        );
        return reply::unauthorized();
    }
    let parsed = match parse(source, headers, &body) {
        Ok(parsed) => parsed,
        Err(refusal) => {
            state.metrics.webhook(name, refusal.outcome);
            tracing::warn!(
                source = name,
                outcome = refusal.outcome,
                reason = %refusal.reason,
                "refused a verified webhook delivery"
            );
            return reply::error(refusal.status, refusal.reason);
        }
    };
    record(state, source, parsed).await
}

fn verify(
    source: HookSource,
    secret: &Secret,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(), crate::daemon::webhooks::SignatureError> {
    let header = |name: &str| headers.get(name).map(|v| v.as_bytes());
    match source {
        HookSource::Github => verify_hmac_sha256(secret, header("x-hub-signature-256"), body),
        HookSource::Gitlab => verify_shared_token(secret, header("x-gitlab-token")),
        HookSource::Generic => verify_hmac_sha256(secret, header("x-shipit-signature-256"), body),
    }
}

/// The media type without parameters (`application/json; charset=utf-8` → `application/json`).
fn media_type(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::CONTENT_TYPE)?.to_str().ok()?;
    Some(value.split(';').next()?.trim().to_ascii_lowercase())
}

fn required_header(headers: &HeaderMap, name: &str) -> Result<String, Refusal> {
    let value = headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .ok_or_else(|| Refusal {
            status: StatusCode::BAD_REQUEST,
            outcome: "bad_payload",
            reason: format!("the {name} header is missing"),
        })?;
    Ok(value.to_owned())
}

fn parse(source: HookSource, headers: &HeaderMap, body: &[u8]) -> Result<Parsed, Refusal> {
    let media = media_type(headers);
    let unsupported = |accepted: &str| Refusal {
        status: StatusCode::UNSUPPORTED_MEDIA_TYPE,
        outcome: "unsupported_media_type",
        reason: format!(
            "content type {} is not accepted; send {accepted}",
            media.as_deref().unwrap_or("(none)")
        ),
    };
    let parsed = match source {
        HookSource::Github => {
            // GitHub sends `payload=<JSON>` when the webhook's content type is set to
            // application/x-www-form-urlencoded; both forms carry the same JSON.
            let form;
            let json = match media.as_deref() {
                Some("application/json") => body,
                Some("application/x-www-form-urlencoded") => {
                    form = github::json_from_form(body).map_err(Refusal::bad_payload)?;
                    &form[..]
                }
                _ => {
                    return Err(unsupported(
                        "application/json or application/x-www-form-urlencoded",
                    ));
                }
            };
            let event = required_header(headers, "x-github-event")?;
            let delivery_id = required_header(headers, "x-github-delivery")?;
            let hook = github::parse(&event, json).map_err(Refusal::bad_payload)?;
            Parsed {
                delivery_id,
                event,
                hook,
            }
        }
        HookSource::Gitlab => {
            if media.as_deref() != Some("application/json") {
                return Err(unsupported("application/json"));
            }
            let event = required_header(headers, "x-gitlab-event")?;
            let delivery_id = required_header(headers, "x-gitlab-event-uuid")?;
            let hook = gitlab::parse(&event, body).map_err(Refusal::bad_payload)?;
            Parsed {
                delivery_id,
                event,
                hook,
            }
        }
        HookSource::Generic => {
            if media.as_deref() != Some("application/json") {
                return Err(unsupported("application/json"));
            }
            let header = headers
                .get("x-shipit-delivery")
                .and_then(|v| v.to_str().ok());
            let (push, delivery_id) = generic::parse(header, body).map_err(Refusal::bad_payload)?;
            Parsed {
                delivery_id,
                event: "push".to_owned(),
                hook: Hook::Push(push),
            }
        }
    };
    check_delivery_id(&parsed.delivery_id).map_err(Refusal::bad_payload)?;
    Ok(parsed)
}

async fn record(state: &ServerState, source: HookSource, parsed: Parsed) -> Response {
    let name = source_name(source);
    let Parsed {
        delivery_id,
        event,
        hook,
    } = parsed;
    let mut delivery = NewDelivery {
        source,
        delivery_id: delivery_id.clone(),
        event: event.clone(),
        repository: None,
        git_ref: None,
        sha: None,
        ignored_because: None,
        received_at: Utc::now(),
    };
    let mut runs = Vec::new();
    let is_ping = hook == Hook::Ping;
    match hook {
        Hook::Push(push) => {
            match decide(&push, &state.config.repositories, &delivery_id) {
                Decision::Run(run) => runs.push(run),
                Decision::Ignored(reason) => delivery.ignored_because = Some(reason),
            }
            delivery.repository = Some(push.repository);
            delivery.git_ref = Some(push.git_ref);
            delivery.sha = Some(push.after);
        }
        Hook::Ping => delivery.ignored_because = Some("ping".to_owned()),
        Hook::Unhandled => {
            delivery.ignored_because = Some(format!("event {event} is not one shipit runs on"))
        }
    }
    let ignored = delivery.ignored_because.clone();
    let repository = delivery.repository.clone().unwrap_or_default();
    let git_ref = delivery.git_ref.clone().unwrap_or_default();
    match state.queue.accept(delivery, runs).await {
        Ok(Accepted::Duplicate) => {
            state.metrics.webhook(name, "duplicate");
            tracing::info!(source = name, delivery = %delivery_id, %repository, %git_ref, outcome = "duplicate", "webhook delivery seen before");
            (
                StatusCode::OK,
                Json(json!({ "delivery": delivery_id, "duplicate": true })),
            )
                .into_response()
        }
        Ok(Accepted::Recorded { runs }) => {
            let outcome = if is_ping {
                "ping"
            } else if runs.is_empty() {
                "ignored"
            } else {
                "queued"
            };
            state.metrics.webhook(name, outcome);
            tracing::info!(
                source = name,
                delivery = %delivery_id,
                %repository,
                %git_ref,
                outcome,
                ignored_because = ignored.as_deref().unwrap_or(""),
                runs = ?runs,
                "webhook delivery recorded"
            );
            if is_ping {
                return (StatusCode::OK, "pong").into_response();
            }
            let mut body = json!({ "delivery": delivery_id, "runs": runs });
            if let Some(reason) = ignored {
                body["ignored"] = json!(reason);
            }
            (StatusCode::ACCEPTED, Json(body)).into_response()
        }
        Err(err) => {
            state.metrics.webhook(name, "store_error");
            tracing::error!(source = name, delivery = %delivery_id, error = %err, "failed to record a webhook delivery");
            // Not acknowledged: the sender may redeliver, and the same id is recorded then.
            reply::error(
                StatusCode::SERVICE_UNAVAILABLE,
                "failed to record the delivery; redeliver it later",
            )
        }
    }
}
