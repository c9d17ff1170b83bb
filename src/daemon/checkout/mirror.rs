//! The bare mirror of one repository: fetches a pushed ref, and the pushed commit itself when
//! the ref has moved on, with the repository's credentials, over a local path, HTTPS (libgit2
//! with OpenSSL, which trusts the system's CAs and `SSL_CERT_FILE`) or SSH (libssh2, with the
//! host key checked against the repository's known_hosts). Blocks: called on the blocking pool.

use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use git2::{
    CertificateCheckStatus, Cred, CredentialType, FetchOptions, RemoteCallbacks, Repository,
};

use super::CheckoutError;
use super::known_hosts::{self, HostKeyVerdict, KnownHosts};
use super::remote::Transport;
use crate::daemon::config::{GitCredentials, RepositoryConfig};

/// Makes sure the mirror at `dir` holds commit `oid`: fetches `git_ref` (force, as pushes
/// rewrite branches), then `oid` itself if the ref no longer leads to it.
pub(super) fn fetch(
    dir: &Path,
    repository: &RepositoryConfig,
    git_ref: &str,
    oid: git2::Oid,
) -> Result<(), CheckoutError> {
    // libgit2 replaces a callback's message with its own ("invalid or unknown remote ssh
    // hostkey"): the callbacks leave theirs here, and it is the one reported.
    let refusal = Refusal::default();
    let fetch_failed = |error: git2::Error| {
        let mut message = refusal.take().unwrap_or_else(|| error.message().to_owned());
        if error.code() == git2::ErrorCode::Certificate
            && matches!(Transport::of(&repository.clone_url), Transport::Https)
        {
            message.push_str(
                "; the server's certificate is not signed by a CA this machine trusts (a private CA goes in the file SSL_CERT_FILE names, in the daemon's environment)",
            );
        }
        CheckoutError::Fetch {
            repository: repository.name.clone(),
            git_ref: git_ref.to_owned(),
            message: masked(message, repository),
        }
    };
    if !git_ref.starts_with("refs/") || !git2::Reference::is_valid_name(git_ref) {
        return Err(fetch_failed(git2::Error::from_str(
            "it is not a full git ref name",
        )));
    }
    // Several daemons on one host may share the work dir: the flock orders their fetches as
    // the in-process lock orders this daemon's runs.
    let _flock = lock_file(dir)?;
    let mirror = open_or_init(dir)?;
    if mirror.find_commit(oid).is_ok() {
        return Ok(());
    }
    let mut remote = mirror
        .remote_anonymous(&repository.clone_url)
        .map_err(fetch_failed)?;
    let refspec = format!("+{git_ref}:{git_ref}");
    remote
        .fetch(
            &[refspec.as_str()],
            Some(&mut options(repository, &refusal)),
            None,
        )
        .map_err(fetch_failed)?;
    if mirror.find_commit(oid).is_err() {
        // The branch moved on since the push: ask for the commit itself. Servers that refuse
        // unadvertised objects fail here, which the check below reports.
        let _ = remote.fetch(
            &[oid.to_string().as_str()],
            Some(&mut options(repository, &refusal)),
            None,
        );
    }
    match mirror.find_commit(oid) {
        Ok(_) => Ok(()),
        Err(_) => Err(CheckoutError::MissingCommit {
            repository: repository.name.clone(),
            git_ref: git_ref.to_owned(),
            sha: oid.to_string(),
        }),
    }
}

fn open_or_init(dir: &Path) -> Result<Repository, CheckoutError> {
    if dir.join("HEAD").exists() {
        Repository::open_bare(dir).map_err(CheckoutError::git("open the mirror", dir))
    } else {
        Repository::init_bare(dir).map_err(CheckoutError::git("create the mirror", dir))
    }
}

fn lock_file(dir: &Path) -> Result<std::fs::File, CheckoutError> {
    let path = dir.with_extension("git.lock");
    let io = |action| {
        let path = path.clone();
        move |source| CheckoutError::Io {
            action,
            path,
            source,
        }
    };
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(io("create the mirrors folder"))?;
    }
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(io("open the mirror lock"))?;
    fs4::fs_std::FileExt::lock_exclusive(&file).map_err(io("lock the mirror"))?;
    Ok(file)
}

/// Why a callback refused the remote, in its own words.
#[derive(Clone, Default)]
struct Refusal(Arc<Mutex<Option<String>>>);

impl Refusal {
    fn refuse(&self, message: String) -> git2::Error {
        let error = git2::Error::from_str(&message);
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = Some(message);
        error
    }

    fn take(&self) -> Option<String> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).take()
    }
}

/// The fetch options: the repository's credentials, offered once (a refused credential fails
/// the fetch instead of looping), and for SSH the host key check.
fn options(repository: &RepositoryConfig, refusal: &Refusal) -> FetchOptions<'static> {
    let mut callbacks = RemoteCallbacks::new();
    let credentials = repository.credentials.clone();
    let mut offered = false;
    let refused = refusal.clone();
    callbacks.credentials(move |_url, url_user, allowed| {
        let username = match &credentials {
            Some(
                GitCredentials::Token { username, .. } | GitCredentials::SshKey { username, .. },
            ) => url_user.unwrap_or(username),
            None => url_user.unwrap_or("git"),
        };
        // SSH asks for the user name first when the URL has none: that offers nothing yet.
        if allowed == CredentialType::USERNAME {
            return Cred::username(username);
        }
        if offered {
            return Err(refused.refuse("the configured credentials were refused".to_owned()));
        }
        offered = true;
        match &credentials {
            Some(GitCredentials::Token { token, .. })
                if allowed.contains(CredentialType::USER_PASS_PLAINTEXT) =>
            {
                Cred::userpass_plaintext(username, token.expose())
            }
            Some(GitCredentials::SshKey {
                private_key,
                passphrase,
                ..
            }) if allowed.contains(CredentialType::SSH_KEY) => Cred::ssh_key(
                username,
                None,
                private_key,
                passphrase.as_ref().map(|p| p.expose()),
            ),
            _ => Err(refused.refuse(
                "the remote asks for credentials the daemon's configuration does not give"
                    .to_owned(),
            )),
        }
    });
    if let Transport::Ssh { host, port } = Transport::of(&repository.clone_url) {
        let file = repository.known_hosts.clone().or_else(default_known_hosts);
        let refused = refusal.clone();
        callbacks.certificate_check(move |cert, _| {
            let Some(key) = cert.as_hostkey().and_then(|k| k.hostkey()) else {
                return Err(refused.refuse(format!("{host}:{port} sent no SSH host key")));
            };
            check_host_key(file.as_deref(), &host, port, key)
                .map(|()| CertificateCheckStatus::CertificateOk)
                .map_err(|message| refused.refuse(message))
        });
    }
    let mut options = FetchOptions::new();
    options.remote_callbacks(callbacks);
    options
}

/// `~/.ssh/known_hosts` of the daemon's user, where ssh and libgit2 look without a setting.
fn default_known_hosts() -> Option<PathBuf> {
    std::env::var_os("HOME")
        .filter(|home| !home.is_empty())
        .map(|home| PathBuf::from(home).join(".ssh").join("known_hosts"))
}

/// Whether `key`, sent by `host` on `port`, is one the known_hosts `file` trusts; if not, what
/// to tell the user.
fn check_host_key(file: Option<&Path>, host: &str, port: u16, key: &[u8]) -> Result<(), String> {
    let presented = format!(
        "{} {}",
        known_hosts::key_type_of(key).unwrap_or("unknown"),
        known_hosts::fingerprint(key)
    );
    let scan = if port == 22 {
        format!("ssh-keyscan {host}")
    } else {
        format!("ssh-keyscan -p {port} {host}")
    };
    let Some(file) = file else {
        return Err(format!(
            "cannot check the SSH host key of {host}:{port} ({presented}): no known_hosts file; set the repository's `known_hosts:` in the daemon's config"
        ));
    };
    let text = match std::fs::read_to_string(file) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(format!("cannot read {}: {e}", file.display())),
    };
    let known = KnownHosts::parse(&text).map_err(|e| format!("{}, {e}", file.display()))?;
    match known.verdict(host, port, key) {
        HostKeyVerdict::Trusted => Ok(()),
        HostKeyVerdict::Unknown => Err(format!(
            "the SSH host key of {host}:{port} ({presented}) is not in {}; check that fingerprint with the host's owner, then add the host's line (`{scan}`) to that file",
            file.display()
        )),
        HostKeyVerdict::Changed { known_types } => Err(format!(
            "the SSH host key of {host}:{port} changed: it sent {presented}, and {} knows it by another {} key; if the host's key was replaced, replace its line there (`{scan}`), otherwise someone may be in the middle",
            file.display(),
            known_types.join(" or ")
        )),
        HostKeyVerdict::Revoked => Err(format!(
            "the SSH host key of {host}:{port} ({presented}) is revoked in {}",
            file.display()
        )),
    }
}

/// `message` with the repository's token and URL replaced, should git quote either.
fn masked(message: String, repository: &RepositoryConfig) -> String {
    let mut message = message.replace(&repository.clone_url, "<the repository's URL>");
    if let Some(GitCredentials::Token { token, .. }) = &repository.credentials
        && !token.expose().is_empty()
    {
        message = message.replace(token.expose(), "***");
    }
    message
}
