//! The JSON bodies the daemon answers with, so that every error reads the same way:
//! `{"error": "..."}` with a short reason that names no secret.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

pub fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({ "error": message.into() }))).into_response()
}

/// A refused signature or token: the same body whatever was wrong, so a prober learns nothing.
pub fn unauthorized() -> Response {
    error(StatusCode::UNAUTHORIZED, "unauthorized")
}
