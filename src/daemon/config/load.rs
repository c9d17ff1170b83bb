//! Reading the daemon's configuration file into a [`DaemonConfig`]: parsed with the pipeline
//! file's YAML reader (so every error points at `FILE:LINE:COL`), defaults applied, every
//! secret resolved. A secret that is missing or empty is an error, never a source served
//! without one (adnanh/webhook#297 is what failing open looks like).
//!
//! Relative paths (`state.sqlite`, `work_dir`, `secret_file`, `ssh_key`) are relative to the
//! folder of the configuration file, as the pipeline file's paths are to its own folder, so a
//! daemon started from another directory reads the same files.

use std::net::SocketAddr;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use super::file::{
    CredentialsFile, DaemonFile, EnvValueFile, RepositoryFile, SecretSourceFile, StateFile,
};
use super::model::{DaemonConfig, GitCredentials, RepositoryConfig, Secret, Sources, StateConfig};
use crate::daemon::checkout::known_hosts::KnownHosts;
use crate::daemon::checkout::remote::Transport;
use crate::pipeline::source::Diagnostic;
use crate::pipeline::{DocPath, SourceFile, deserialize_at, yaml};

pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
pub const DEFAULT_SQLITE: &str = ".shipit/daemon.db";
pub const DEFAULT_WORK_DIR: &str = ".shipit/daemon";
pub const DEFAULT_PIPELINE: &str = "shipit.yaml";
pub const DEFAULT_CONCURRENCY: usize = 2;
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(300);
/// GitHub caps its payloads at 25 MB, but a push payload is a few kilobytes; 1 MiB leaves room
/// for large pushes while keeping a flood of big bodies cheap to refuse.
pub const DEFAULT_MAX_BODY_BYTES: usize = 1024 * 1024;
/// A configuration file is a page of YAML; anything larger is the wrong file.
const MAX_CONFIG_FILE_BYTES: u64 = 1024 * 1024;
/// Secret files hold one line; this keeps a wrong path (a disk image) from being read whole.
const MAX_SECRET_FILE_BYTES: u64 = 64 * 1024;

/// Why the daemon's configuration could not be used.
#[derive(Debug, thiserror::Error)]
pub enum DaemonConfigError {
    #[error("failed to read the daemon configuration {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: the daemon configuration is {size} bytes, over the {limit} byte limit", path.display())]
    TooLarge {
        path: PathBuf,
        size: u64,
        limit: u64,
    },
    #[error("{}", render(.0))]
    Invalid(Vec<Diagnostic>),
}

fn render(diagnostics: &[Diagnostic]) -> String {
    let mut text = diagnostics
        .iter()
        .map(|d| d.to_string())
        .collect::<Vec<_>>()
        .join("\n");
    if diagnostics.len() > 1 {
        text.push_str(&format!("\n{} problems found", diagnostics.len()));
    }
    text
}

/// Reads and checks the configuration file at `path`; `env` is the daemon's environment (the
/// caller passes the process's, tests their own).
pub fn load(
    path: &Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<DaemonConfig, DaemonConfigError> {
    let read = |source| DaemonConfigError::Read {
        path: path.to_path_buf(),
        source,
    };
    let size = std::fs::metadata(path).map_err(read)?.len();
    if size > MAX_CONFIG_FILE_BYTES {
        return Err(DaemonConfigError::TooLarge {
            path: path.to_path_buf(),
            size,
            limit: MAX_CONFIG_FILE_BYTES,
        });
    }
    let bytes = std::fs::read(path).map_err(read)?;
    let source = SourceFile::from_bytes(path, bytes).map_err(|err| {
        DaemonConfigError::Invalid(vec![Diagnostic::new(
            path,
            None,
            strip_path(&err.to_string(), path),
        )])
    })?;
    from_source(&source, env)
}

/// `ReadError` names the file itself; a diagnostic prints it again in front.
fn strip_path(message: &str, path: &Path) -> String {
    let prefix = format!("{}:", path.display());
    message
        .strip_prefix(&prefix)
        .map(|rest| rest.trim_start().to_owned())
        .unwrap_or_else(|| message.to_owned())
}

/// Parses and checks configuration text; the file is only read again for `secret_file`s.
pub fn from_source(
    source: &SourceFile,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<DaemonConfig, DaemonConfigError> {
    if source.text.trim().is_empty()
        || source
            .text
            .lines()
            .all(|l| l.trim().is_empty() || l.trim_start().starts_with('#'))
    {
        return Err(DaemonConfigError::Invalid(vec![
            source
                .diagnostic(None, "the daemon configuration is empty")
                .with_hint(
                    "it needs at least `sources:` and `repositories:`; see README, \"The daemon\"",
                ),
        ]));
    }
    let document = yaml::parse(source).map_err(|d| DaemonConfigError::Invalid(vec![d]))?;
    let file: DaemonFile = deserialize_at(source, &document, &document.value, &DocPath::root())
        .map_err(|d| DaemonConfigError::Invalid(vec![d]))?;
    let base_dir = match source.path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let mut checker = Checker {
        base_dir,
        env,
        problems: Vec::new(),
    };
    let config = checker.config(file);
    if checker.problems.is_empty() {
        Ok(config)
    } else {
        let diagnostics = checker
            .problems
            .into_iter()
            .map(|problem| {
                let at = if problem.at_key {
                    document.spans.key(&problem.path)
                } else {
                    document.spans.value(&problem.path)
                };
                let message = if problem.path.0.is_empty() {
                    problem.message
                } else {
                    format!("{}: {}", problem.path, problem.message)
                };
                let diagnostic = source.diagnostic(at, message);
                match problem.hint {
                    Some(hint) => diagnostic.with_hint(hint),
                    None => diagnostic,
                }
            })
            .collect();
        Err(DaemonConfigError::Invalid(diagnostics))
    }
}

struct Problem {
    path: DocPath,
    message: String,
    hint: Option<String>,
    /// Point at the key (a map entry whose name is wrong) rather than its value.
    at_key: bool,
}

/// Applies defaults and resolves secrets, collecting every problem rather than stopping at the
/// first, so one `--check` lists all of them.
struct Checker<'a> {
    base_dir: PathBuf,
    env: &'a dyn Fn(&str) -> Option<String>,
    problems: Vec<Problem>,
}

impl Checker<'_> {
    fn problem(&mut self, path: DocPath, message: impl Into<String>, hint: Option<&str>) {
        self.problems.push(Problem {
            path,
            message: message.into(),
            hint: hint.map(str::to_owned),
            at_key: false,
        });
    }

    fn config(&mut self, file: DaemonFile) -> DaemonConfig {
        let root = DocPath::root();
        let listen = match &file.listen {
            None => DEFAULT_LISTEN.parse().expect("the default address parses"),
            Some(text) => text.parse::<SocketAddr>().unwrap_or_else(|_| {
                self.problem(
                    root.key("listen"),
                    format!("`{text}` is not an IP address and port"),
                    Some("write e.g. 127.0.0.1:8080, or 0.0.0.0:8080 to listen on every interface"),
                );
                DEFAULT_LISTEN.parse().expect("the default address parses")
            }),
        };
        let state = match file.state {
            None => StateConfig::Sqlite {
                path: self.base_dir.join(DEFAULT_SQLITE),
            },
            Some(StateFile::Sqlite(path)) => StateConfig::Sqlite {
                path: self.base_dir.join(path),
            },
            Some(StateFile::Postgres(pg)) => {
                let path = root.key("state").key("postgres").key("url_env");
                let url = self.env_secret(&path, &pg.url_env, "the PostgreSQL connection string");
                StateConfig::Postgres { url }
            }
        };
        // 0 is a daemon that only accepts deliveries: the runs are executed by the other
        // daemons sharing its PostgreSQL database.
        let concurrency = file.concurrency.unwrap_or(DEFAULT_CONCURRENCY);
        let max_body_bytes = file.max_body_bytes.unwrap_or(DEFAULT_MAX_BODY_BYTES);
        if max_body_bytes < 1024 {
            self.problem(
                root.key("max_body_bytes"),
                format!("{max_body_bytes} bytes is too small for any webhook payload"),
                Some("leave it out for the default of 1 MiB (1048576)"),
            );
        }
        let sources_path = root.key("sources");
        let sources = Sources {
            github: file
                .sources
                .github
                .map(|s| self.source_secret(&sources_path.key("github"), s)),
            gitlab: file
                .sources
                .gitlab
                .map(|s| self.source_secret(&sources_path.key("gitlab"), s)),
            generic: file
                .sources
                .generic
                .map(|s| self.source_secret(&sources_path.key("generic"), s)),
        };
        let api_token_sha256 = file
            .api
            .tokens
            .iter()
            .enumerate()
            .filter_map(|(i, token)| {
                let digest = token_digest(token);
                if digest.is_none() {
                    self.problem(
                        root.key("api").key("tokens").index(i),
                        "is not `sha256:` followed by 64 hex digits",
                        Some("write the token's digest, never the token: printf %s \"$TOKEN\" | sha256sum"),
                    );
                }
                digest
            })
            .collect();
        let mut repositories: Vec<RepositoryConfig> = Vec::new();
        for (i, repo) in file.repositories.into_iter().enumerate() {
            let path = root.key("repositories").index(i);
            if repositories.iter().any(|r| r.name == repo.name) {
                self.problem(
                    path.key("name"),
                    format!("repository `{}` is configured twice", repo.name),
                    Some("merge the two entries"),
                );
            }
            repositories.push(self.repository(&path, repo));
        }
        DaemonConfig {
            listen,
            state,
            work_dir: self.base_dir.join(
                file.work_dir
                    .unwrap_or_else(|| PathBuf::from(DEFAULT_WORK_DIR)),
            ),
            concurrency,
            shutdown_grace: file
                .shutdown_grace
                .map(|d| d.get())
                .unwrap_or(DEFAULT_SHUTDOWN_GRACE),
            max_body_bytes,
            sources,
            api_token_sha256,
            repositories,
        }
    }

    fn env_secret(&mut self, path: &DocPath, name: &str, what: &str) -> Secret {
        match (self.env)(name) {
            Some(value) if !value.trim().is_empty() => Secret::new(value),
            Some(_) => {
                self.problem(
                    path.clone(),
                    format!("environment variable {name} is empty; {what} must not be empty"),
                    Some("the daemon refuses to start rather than serve without it"),
                );
                Secret::new("")
            }
            None => {
                self.problem(
                    path.clone(),
                    format!("environment variable {name} is not set; it must hold {what}"),
                    Some("set it in the daemon's environment (the file names it, never holds it)"),
                );
                Secret::new("")
            }
        }
    }

    fn source_secret(&mut self, path: &DocPath, source: SecretSourceFile) -> Secret {
        const WHAT: &str = "the webhook secret";
        match (source.secret_env, source.secret_file) {
            (Some(name), None) => self.env_secret(&path.key("secret_env"), &name, WHAT),
            (None, Some(file)) => {
                let path = path.key("secret_file");
                let full = self.base_dir.join(&file);
                match read_secret_file(&full) {
                    Ok(value) if !value.trim().is_empty() => Secret::new(value),
                    Ok(_) => {
                        self.problem(
                            path,
                            format!("{} is empty; {WHAT} must not be empty", full.display()),
                            Some(
                                "the daemon refuses to start rather than accept unsigned webhooks",
                            ),
                        );
                        Secret::new("")
                    }
                    Err(err) => {
                        self.problem(
                            path,
                            format!("failed to read {}: {err}", full.display()),
                            None,
                        );
                        Secret::new("")
                    }
                }
            }
            (Some(_), Some(_)) => {
                self.problem(
                    path.clone(),
                    "has both `secret_env` and `secret_file`",
                    Some("keep one"),
                );
                Secret::new("")
            }
            (None, None) => {
                self.problem(
                    path.clone(),
                    "needs `secret_env: NAME` or `secret_file: PATH`",
                    Some("secrets are never written in this file; a source without one is not served"),
                );
                Secret::new("")
            }
        }
    }

    fn repository(&mut self, path: &DocPath, repo: RepositoryFile) -> RepositoryConfig {
        if repo.name.trim().is_empty() {
            self.problem(
                path.key("name"),
                "must not be empty",
                Some("write it as the webhook names it: owner/name"),
            );
        }
        if repo.clone_url.trim().is_empty() {
            self.problem(path.key("clone_url"), "must not be empty", None);
        }
        let pipeline = repo
            .pipeline
            .unwrap_or_else(|| PathBuf::from(DEFAULT_PIPELINE));
        if pipeline.is_absolute()
            || pipeline
                .components()
                .any(|c| matches!(c, Component::ParentDir))
        {
            self.problem(
                path.key("pipeline"),
                format!(
                    "`{}` must be a path inside the repository",
                    pipeline.display()
                ),
                Some("write it relative to the repository root, without `..`"),
            );
        }
        for (field, globs) in [
            ("branches", &repo.branches),
            ("tags", &repo.tags),
            ("paths", &repo.paths),
        ] {
            for (i, pattern) in globs.iter().enumerate() {
                self.check_glob(path.key(field).index(i), pattern, false);
            }
        }
        for (pattern, environment) in &repo.environments.0 {
            let at = path.key("environments").key(pattern.clone());
            self.check_glob(at.clone(), pattern, true);
            if environment.trim().is_empty() {
                self.problem(at, "the environment name must not be empty", None);
            }
        }
        let transport = Transport::of(&repo.clone_url);
        let credentials = repo.credentials.map(|c| {
            let at = path.key("credentials");
            let credentials = self.credentials(&at, c);
            self.check_credentials_fit(&at, &credentials, &transport);
            credentials
        });
        let known_hosts = repo
            .known_hosts
            .map(|file| self.known_hosts(&path.key("known_hosts"), &file, &transport));
        let env = repo
            .env
            .0
            .into_iter()
            .map(|(name, value)| {
                let at = path.key("env").key(name.clone());
                let value = match value {
                    EnvValueFile::Literal(value) => Secret::new(value),
                    EnvValueFile::FromEnv(from) => {
                        self.env_secret(&at.key("from_env"), &from, &format!("the value of {name}"))
                    }
                };
                (name, value)
            })
            .collect();
        RepositoryConfig {
            name: repo.name,
            clone_url: repo.clone_url,
            pipeline,
            branches: repo.branches,
            tags: repo.tags,
            paths: repo.paths,
            environments: repo.environments.0,
            credentials,
            known_hosts,
            env,
        }
    }

    /// A token goes over HTTPS only (over http:// it would travel in clear text), a key over
    /// SSH only: a mismatch is a config mistake, better found before the first push.
    fn check_credentials_fit(
        &mut self,
        path: &DocPath,
        credentials: &GitCredentials,
        transport: &Transport,
    ) {
        let problem = match (credentials, transport) {
            (GitCredentials::Token { .. }, Transport::Plain) => Some((
                "token_env",
                "a token over http:// or git:// would travel in clear text",
                "use the repository's https:// URL",
            )),
            (GitCredentials::Token { .. }, Transport::Ssh { .. }) => Some((
                "token_env",
                "a token is for https:// remotes, and `clone_url` is an ssh one",
                "use `ssh_key` for an ssh remote, or the repository's https:// URL",
            )),
            (GitCredentials::SshKey { .. }, Transport::Https | Transport::Plain) => Some((
                "ssh_key",
                "an SSH key is for ssh remotes, and `clone_url` is not one",
                "use `token_env` for an https:// remote, or the repository's ssh URL",
            )),
            _ => None,
        };
        if let Some((key, message, hint)) = problem {
            self.problem(path.key(key), message, Some(hint));
        }
    }

    /// The known_hosts file of an ssh remote, read now so that a mistake in it stops the start.
    fn known_hosts(&mut self, path: &DocPath, file: &Path, transport: &Transport) -> PathBuf {
        let full = self.base_dir.join(file);
        if !matches!(transport, Transport::Ssh { .. }) {
            self.problem(
                path.clone(),
                "is for ssh remotes, and `clone_url` is not one",
                Some("HTTPS servers are checked against the system's CAs (and SSL_CERT_FILE)"),
            );
            return full;
        }
        match std::fs::read_to_string(&full) {
            Err(e) => self.problem(
                path.clone(),
                format!("cannot read {}: {e}", full.display()),
                Some("write the host's line into it: ssh-keyscan HOST > FILE, then check the fingerprint"),
            ),
            Ok(text) => {
                if let Err(e) = KnownHosts::parse(&text) {
                    self.problem(path.clone(), format!("{}, {e}", full.display()), None);
                }
            }
        }
        full
    }

    fn check_glob(&mut self, path: DocPath, pattern: &str, at_key: bool) {
        if let Err(err) = glob::Pattern::new(pattern) {
            self.problems.push(Problem {
                path,
                message: format!("`{pattern}` is not a valid glob: {}", err.msg),
                hint: Some("globs use *, ** , ? and [abc]".to_owned()),
                at_key,
            });
        }
    }

    fn credentials(&mut self, path: &DocPath, credentials: CredentialsFile) -> GitCredentials {
        match (credentials.token_env, credentials.ssh_key) {
            (Some(name), None) => {
                if credentials.passphrase_env.is_some() {
                    self.problem(
                        path.key("passphrase_env"),
                        "goes with `ssh_key`, not `token_env`",
                        None,
                    );
                }
                GitCredentials::Token {
                    username: credentials
                        .username
                        .unwrap_or_else(|| "x-access-token".to_owned()),
                    token: self.env_secret(&path.key("token_env"), &name, "the git token"),
                }
            }
            (None, Some(key)) => {
                let passphrase = credentials.passphrase_env.map(|name| {
                    self.env_secret(
                        &path.key("passphrase_env"),
                        &name,
                        "the SSH key's passphrase",
                    )
                });
                let private_key = self.base_dir.join(key);
                if !private_key.is_file() {
                    self.problem(
                        path.key("ssh_key"),
                        format!("{} is not a file", private_key.display()),
                        None,
                    );
                }
                GitCredentials::SshKey {
                    username: credentials.username.unwrap_or_else(|| "git".to_owned()),
                    private_key,
                    passphrase,
                }
            }
            (Some(_), Some(_)) => {
                self.problem(
                    path.clone(),
                    "has both `token_env` and `ssh_key`",
                    Some("keep one"),
                );
                GitCredentials::Token {
                    username: String::new(),
                    token: Secret::new(""),
                }
            }
            (None, None) => {
                self.problem(
                    path.clone(),
                    "needs `token_env: NAME` or `ssh_key: PATH`",
                    Some("leave `credentials` out for a repository anyone can clone"),
                );
                GitCredentials::Token {
                    username: String::new(),
                    token: Secret::new(""),
                }
            }
        }
    }
}

/// The lowercase hex digest of `sha256:<hex>`, if that is what `text` is.
fn token_digest(text: &str) -> Option<String> {
    let hex = text.strip_prefix("sha256:")?;
    (hex.len() == 64 && hex.chars().all(|c| c.is_ascii_hexdigit()))
        .then(|| hex.to_ascii_lowercase())
}

/// A secret file's content without its trailing newline (`echo secret > file` writes one).
fn read_secret_file(path: &Path) -> std::io::Result<String> {
    let meta = std::fs::metadata(path)?;
    if meta.len() > MAX_SECRET_FILE_BYTES {
        return Err(std::io::Error::other(format!(
            "it is {} bytes; a secret file holds one line",
            meta.len()
        )));
    }
    let text = std::fs::read_to_string(path)?;
    Ok(text.trim_end_matches(['\n', '\r']).to_owned())
}
