//! The daemon configuration as the rest of the daemon reads it, after the file was parsed and
//! validated (every secret present and non-empty, every repository with a pipeline file).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

pub use super::secret_value::Secret;

#[derive(Debug, Clone)]
pub struct DaemonConfig {
    /// Where the HTTP server listens; 127.0.0.1:8080 unless the file says otherwise.
    pub listen: SocketAddr,
    pub state: StateConfig,
    /// Mirrors (`<dir>/mirrors/<repo>.git`) and per-run checkouts (`<dir>/runs/<queue id>`).
    pub work_dir: PathBuf,
    /// Runs executing at once in this daemon; 0: it only accepts deliveries, and the other
    /// daemons sharing its database execute them.
    pub concurrency: usize,
    /// How long SIGTERM waits for running stages before leaving the rest resumable.
    pub shutdown_grace: Duration,
    /// Largest webhook body accepted (bytes).
    pub max_body_bytes: usize,
    pub sources: Sources,
    /// sha256 hex digests of the API bearer tokens (the tokens themselves are never stored).
    pub api_token_sha256: Vec<String>,
    pub repositories: Vec<RepositoryConfig>,
}

#[derive(Debug, Clone)]
pub enum StateConfig {
    /// An embedded SQLite database file (WAL).
    Sqlite { path: PathBuf },
    /// A PostgreSQL connection string, shared by several daemons.
    Postgres { url: Secret },
}

/// The secret of each webhook source that is enabled; a source without one is not served.
#[derive(Debug, Clone, Default)]
pub struct Sources {
    pub github: Option<Secret>,
    pub gitlab: Option<Secret>,
    pub generic: Option<Secret>,
}

#[derive(Debug, Clone)]
pub struct RepositoryConfig {
    /// As the webhook names it: `owner/name` (GitHub `repository.full_name`, GitLab
    /// `project.path_with_namespace`, the generic payload's `repository`).
    pub name: String,
    /// Where the daemon fetches from: a URL git2 understands (https, ssh, file, a local path).
    pub clone_url: String,
    /// The pipeline file, relative to the repository root.
    pub pipeline: PathBuf,
    /// Branch globs a push must match (`main`, `release/*`); empty: none.
    pub branches: Vec<String>,
    /// Tag globs a tag push must match; empty: tags are ignored.
    pub tags: Vec<String>,
    /// Path globs at least one changed file must match; empty: any change.
    pub paths: Vec<String>,
    /// The pipeline environment (`--env`) per branch glob, first match wins.
    pub environments: Vec<(String, String)>,
    pub credentials: Option<GitCredentials>,
    /// The SSH host keys trusted for an ssh remote (OpenSSH's known_hosts format), read at
    /// each fetch so that a rotated key needs no restart; unset: `~/.ssh/known_hosts`.
    pub known_hosts: Option<PathBuf>,
    /// Environment variables the run sees (`${{ env.NAME }}`), from this file only.
    pub env: Vec<(String, Secret)>,
}

#[derive(Debug, Clone)]
pub enum GitCredentials {
    /// An HTTPS token (sent as the password, user `x-access-token` unless given).
    Token { username: String, token: Secret },
    /// An SSH private key file, with its passphrase if any.
    SshKey {
        username: String,
        private_key: PathBuf,
        passphrase: Option<Secret>,
    },
}
