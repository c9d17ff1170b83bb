//! `/api/runs`: list, show, trigger, cancel and retry runs (behind `bearer::require_token`).

use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use glob::{MatchOptions, Pattern};
use serde::Deserialize;
use serde_json::json;

use super::bearer::Caller;
use super::reply;
use super::state::ServerState;
use crate::daemon::queue::{NewRun, QueueError, QueueId, Trigger};
use crate::daemon::webhooks::push::is_commit_sha;

const DEFAULT_LIST: usize = 50;
const MAX_LIST: usize = 500;

pub fn queue_error(err: QueueError) -> Response {
    match err {
        QueueError::UnknownRun { id } => {
            reply::error(StatusCode::NOT_FOUND, format!("no run {id}"))
        }
        other => {
            tracing::error!(error = %other, "queue request failed");
            reply::error(
                StatusCode::SERVICE_UNAVAILABLE,
                "failed to reach the queue; retry later",
            )
        }
    }
}

#[derive(Debug, Deserialize)]
pub struct ListQuery {
    limit: Option<usize>,
}

pub async fn list(
    State(state): State<Arc<ServerState>>,
    Query(query): Query<ListQuery>,
) -> Response {
    let limit = query.limit.unwrap_or(DEFAULT_LIST).clamp(1, MAX_LIST);
    match state.queue.list(limit).await {
        Ok(runs) => Json(json!({ "runs": runs })).into_response(),
        Err(err) => queue_error(err),
    }
}

pub async fn show(State(state): State<Arc<ServerState>>, Path(id): Path<QueueId>) -> Response {
    match state.queue.get(id).await {
        Ok(run) => Json(run).into_response(),
        Err(err) => queue_error(err),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TriggerRequest {
    repository: String,
    #[serde(rename = "ref")]
    git_ref: String,
    sha: String,
}

/// Queues a run of a configured repository at an exact commit. The branch filters do not
/// apply (the caller asked for this run explicitly); the environment is chosen as for a push.
pub async fn trigger(
    State(state): State<Arc<ServerState>>,
    Extension(caller): Extension<Caller>,
    request: Result<Json<TriggerRequest>, JsonRejection>,
) -> Response {
    let Json(request) = match request {
        Ok(request) => request,
        Err(rejection) => return reply::error(rejection.status(), rejection.body_text()),
    };
    let Some(repo) = state
        .config
        .repositories
        .iter()
        .find(|r| r.name == request.repository)
    else {
        return reply::error(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!(
                "repository {} is not configured in this daemon",
                request.repository
            ),
        );
    };
    if !(request.git_ref.starts_with("refs/heads/") || request.git_ref.starts_with("refs/tags/")) {
        return reply::error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "`ref` must be a full ref: refs/heads/BRANCH or refs/tags/TAG",
        );
    }
    if !is_commit_sha(&request.sha) {
        return reply::error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "`sha` must be a full commit id (40 hex digits)",
        );
    }
    let options = MatchOptions {
        require_literal_separator: true,
        ..MatchOptions::new()
    };
    let environment = request
        .git_ref
        .strip_prefix("refs/heads/")
        .and_then(|branch| {
            repo.environments
                .iter()
                .find(|(p, _)| Pattern::new(p).is_ok_and(|p| p.matches_with(branch, options)))
                .map(|(_, e)| e.clone())
        });
    let run = NewRun {
        repository: repo.name.clone(),
        git_ref: request.git_ref,
        sha: request.sha.to_ascii_lowercase(),
        pipeline_file: repo.pipeline.to_string_lossy().into_owned(),
        environment,
        trigger: Trigger::Api { token: caller.0 },
    };
    enqueue(&state, run).await
}

async fn enqueue(state: &ServerState, run: NewRun) -> Response {
    let repository = run.repository.clone();
    match state.queue.enqueue(run).await {
        Ok(id) => {
            tracing::info!(run = id, %repository, "run queued through the API");
            (StatusCode::CREATED, Json(json!({ "run": id }))).into_response()
        }
        Err(err) => queue_error(err),
    }
}

pub async fn cancel(State(state): State<Arc<ServerState>>, Path(id): Path<QueueId>) -> Response {
    match state.queue.request_cancel(id).await {
        Ok(run) => {
            tracing::info!(run = id, "cancel requested through the API");
            Json(run).into_response()
        }
        Err(err) => queue_error(err),
    }
}

/// Queues the same commit again, as a new run that names the one it retries.
pub async fn retry(State(state): State<Arc<ServerState>>, Path(id): Path<QueueId>) -> Response {
    match state.queue.get(id).await {
        Ok(old) => {
            let mut run = old.run;
            run.trigger = Trigger::Retry { of: id };
            enqueue(&state, run).await
        }
        Err(err) => queue_error(err),
    }
}
