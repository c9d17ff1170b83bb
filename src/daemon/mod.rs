//! `shipit daemon`: a long-running server that turns repository pushes into pipeline runs.
//!
//! ```text
//! config/     the daemon's own file: sources and their secrets, repositories, filters, limits
//! webhooks/   signature checks (GitHub, GitLab, generic HMAC) and payload parsing into a `Push`
//! queue/      deliveries and the runs they ask for, durably recorded; claims, leases, supersession
//! http/       the axum routes: hooks, API (bearer tokens), health, metrics, the web page
//! checkout    a git2 mirror per repository and a fresh workspace per run at the pushed SHA
//! worker      claims queued runs and executes them through `app`, at most N at once
//! ```
//!
//! Everything below `app` is reused as is: a daemon run is a `shipit run` of the pipeline file in
//! the run's checkout, journaled in the daemon's store.

mod checkout;
pub mod config;
pub mod queue;
pub mod worker;
