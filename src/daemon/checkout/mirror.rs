//! The bare mirror of one repository: fetches a pushed ref, and the pushed commit itself when
//! the ref has moved on, with the repository's credentials. Blocks: called on the blocking pool.

use std::fs::OpenOptions;
use std::path::Path;

use git2::{Cred, CredentialType, FetchOptions, RemoteCallbacks, Repository};

use super::CheckoutError;
use crate::daemon::config::{GitCredentials, RepositoryConfig};

/// Refuses, before any network, a URL whose transport this build of git2 lacks.
pub(super) fn check_url(url: &str) -> Result<(), CheckoutError> {
    let kind = if url.starts_with("https://") {
        Some("https")
    } else if url.starts_with("ssh://") || url.starts_with("git+ssh://") {
        Some("ssh")
    } else if !url.contains("://") && is_scp_like(url) {
        // `git@github.com:acme/shop.git`, git's short form of an ssh URL.
        Some("ssh")
    } else {
        None
    };
    match kind {
        Some(url_kind) => Err(CheckoutError::UnsupportedRemote {
            repository: String::new(),
            url_kind,
        }),
        None => Ok(()),
    }
}

/// `host:path` before any `/`, as git reads it (a local path with a colon after a slash is
/// a path).
fn is_scp_like(url: &str) -> bool {
    match (url.find(':'), url.find('/')) {
        (Some(colon), Some(slash)) => colon < slash,
        (Some(_), None) => true,
        _ => false,
    }
}

/// Makes sure the mirror at `dir` holds commit `oid`: fetches `git_ref` (force, as pushes
/// rewrite branches), then `oid` itself if the ref no longer leads to it.
pub(super) fn fetch(
    dir: &Path,
    repository: &RepositoryConfig,
    git_ref: &str,
    oid: git2::Oid,
) -> Result<(), CheckoutError> {
    let fetch_failed = |message: String| CheckoutError::Fetch {
        repository: repository.name.clone(),
        git_ref: git_ref.to_owned(),
        message: masked(message, repository),
    };
    if !git_ref.starts_with("refs/") || !git2::Reference::is_valid_name(git_ref) {
        return Err(fetch_failed("it is not a full git ref name".to_owned()));
    }
    check_url(&repository.clone_url).map_err(|err| match err {
        CheckoutError::UnsupportedRemote { url_kind, .. } => CheckoutError::UnsupportedRemote {
            repository: repository.name.clone(),
            url_kind,
        },
        other => other,
    })?;
    // Several daemons on one host may share the work dir: the flock orders their fetches as
    // the in-process lock orders this daemon's runs.
    let _flock = lock_file(dir)?;
    let mirror = open_or_init(dir)?;
    if mirror.find_commit(oid).is_ok() {
        return Ok(());
    }
    let mut remote = mirror
        .remote_anonymous(&repository.clone_url)
        .map_err(|e| fetch_failed(e.message().to_owned()))?;
    let refspec = format!("+{git_ref}:{git_ref}");
    remote
        .fetch(&[refspec.as_str()], Some(&mut options(repository)), None)
        .map_err(|e| fetch_failed(e.message().to_owned()))?;
    if mirror.find_commit(oid).is_err() {
        // The branch moved on since the push: ask for the commit itself. Servers that refuse
        // unadvertised objects fail here, which the check below reports.
        let _ = remote.fetch(
            &[oid.to_string().as_str()],
            Some(&mut options(repository)),
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

/// The fetch options with the repository's credentials, offered once: a refused credential
/// fails the fetch instead of looping.
fn options(repository: &RepositoryConfig) -> FetchOptions<'static> {
    let credentials = repository.credentials.clone();
    let mut offered = false;
    let mut callbacks = RemoteCallbacks::new();
    callbacks.credentials(move |_url, url_user, allowed| {
        if offered {
            return Err(git2::Error::from_str(
                "the configured credentials were refused",
            ));
        }
        offered = true;
        match &credentials {
            Some(GitCredentials::Token { username, token })
                if allowed.contains(CredentialType::USER_PASS_PLAINTEXT) =>
            {
                Cred::userpass_plaintext(username, token.expose())
            }
            Some(GitCredentials::SshKey {
                username,
                private_key,
                passphrase,
            }) if allowed.contains(CredentialType::SSH_KEY) => Cred::ssh_key(
                url_user.unwrap_or(username),
                None,
                private_key,
                passphrase.as_ref().map(|p| p.expose()),
            ),
            _ => Err(git2::Error::from_str(
                "the remote asks for credentials the daemon's configuration does not give",
            )),
        }
    });
    let mut options = FetchOptions::new();
    options.remote_callbacks(callbacks);
    options
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn https_and_ssh_remotes_are_refused_before_any_network() {
        for url in [
            "https://github.com/acme/shop.git",
            "ssh://git@github.com/acme/shop.git",
            "git@github.com:acme/shop.git",
        ] {
            let err = check_url(url).unwrap_err();
            assert!(
                matches!(err, CheckoutError::UnsupportedRemote { .. }),
                "{url}"
            );
        }
        for url in ["/srv/git/shop.git", "file:///srv/git/shop.git", "./shop"] {
            check_url(url).unwrap();
        }
    }
}
