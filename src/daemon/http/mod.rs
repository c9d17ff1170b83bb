//! The daemon's HTTP server (axum):
//!
//! ```text
//! POST /hooks/github|gitlab|generic   webhook deliveries (hooks.rs)
//! /api/runs…                          list, show, trigger, cancel, retry, follow a log (api.rs,
//!                                     log_stream.rs), behind a bearer token (bearer.rs)
//! GET /healthz, /readyz, /metrics     health.rs, metrics.rs
//! GET /, /ui/*                        the web page: run history and a live log (ui/)
//! ```

pub mod api;
pub mod bearer;
pub mod health;
pub mod hooks;
pub mod log_stream;
pub mod metrics;
mod reply;
pub mod state;
pub(crate) mod ui;

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower_http::trace::TraceLayer;

pub use metrics::{Metrics, StageLabels};
pub use state::{DockerFromEnv, DockerProbe, ServerState};

pub fn router(state: Arc<ServerState>) -> Router {
    let api = Router::new()
        .route("/api/runs", get(api::list).post(api::trigger))
        .route("/api/runs/{id}", get(api::show))
        .route("/api/runs/{id}/cancel", post(api::cancel))
        .route("/api/runs/{id}/retry", post(api::retry))
        .route("/api/runs/{id}/log", get(log_stream::follow))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            bearer::require_token,
        ));
    Router::new()
        .route("/hooks/github", post(hooks::github_hook))
        .route("/hooks/gitlab", post(hooks::gitlab_hook))
        .route("/hooks/generic", post(hooks::generic_hook))
        .merge(api)
        .merge(ui::ui_routes())
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(health::metrics))
        .layer(DefaultBodyLimit::max(state.config.max_body_bytes))
        .layer(middleware::from_fn_with_state(state.clone(), time_request))
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}

/// Observes every answer's duration by declared route, for `/metrics`.
async fn time_request(
    State(state): State<Arc<ServerState>>,
    request: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let method = request.method().to_string();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let response = next.run(request).await;
    state.metrics.request(
        metrics::RequestLabels {
            method,
            route,
            status: response.status().as_u16(),
        },
        started.elapsed().as_secs_f64(),
    );
    response
}

/// Serves until `shutdown` is cancelled, then stops accepting and lets requests in flight end.
pub async fn serve(
    listener: TcpListener,
    state: Arc<ServerState>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    axum::serve(listener, router(state))
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
}
