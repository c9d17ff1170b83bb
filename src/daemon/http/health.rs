//! `/healthz` (the process serves), `/readyz` (it can do its work: the queue's database and the
//! Docker daemon answer) and `/metrics`.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::state::ServerState;

pub async fn healthz() -> &'static str {
    "ok"
}

pub async fn readyz(State(state): State<Arc<ServerState>>) -> Response {
    let (queue, docker) = tokio::join!(state.queue.ping(), state.docker.ping());
    let queue = queue.map_err(|e| e.to_string());
    let ready = queue.is_ok() && docker.is_ok();
    let shown = |check: &Result<(), String>| match check {
        Ok(()) => "ok".to_owned(),
        Err(reason) => format!("down: {reason}"),
    };
    let body = json!({ "queue": shown(&queue), "docker": shown(&docker) });
    if !ready {
        tracing::warn!(queue = %body["queue"], docker = %body["docker"], "not ready");
    }
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}

pub async fn metrics(State(state): State<Arc<ServerState>>) -> Response {
    match state.queue.count_by_state().await {
        Ok(counts) => state.metrics.set_runs(&counts),
        // The rest of the metrics are still worth serving; the run gauges keep their last value.
        Err(err) => tracing::warn!(error = %err, "failed to count runs for /metrics"),
    }
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.encode(),
    )
        .into_response()
}
