//! The daemon's HTTP side: the axum routes.
//!
//! ```text
//! ui/   the web page: run history and a live log view, served from assets compiled into the binary
//! ```

pub(crate) mod ui;
