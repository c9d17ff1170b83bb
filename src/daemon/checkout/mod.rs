//! A run's checkout: a bare mirror per repository (`<work_dir>/mirrors/<name>.git`) that
//! fetches the pushed ref and commit, and a fresh workspace per run (`<work_dir>/runs/<queue
//! id>`) at exactly that commit. Runs never share a working directory (Atlantis #2341: parallel
//! clones into one directory), and one mirror is fetched into by one run at a time.
//!
//! The workspace is a git repository of its own whose objects come from the mirror (git's
//! alternates, as `git clone --shared` does), with the pushed branch checked out (or the tag
//! created), so that `${{ git.* }}` and the journal see the commit, branch and tag as in CI.
//!
//! All git work is git2 on the blocking pool; nothing goes through a shell, so no credential
//! is ever on a command line. Remotes are local paths, HTTPS (a token as the password) or SSH
//! (a key file, the host key checked against known_hosts).

mod confinement;
mod error;
pub(crate) mod known_hosts;
mod mirror;
mod names;
pub(crate) mod remote;
mod workspace;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};

pub(crate) use confinement::{confine, lexical_escape};
pub(crate) use error::CheckoutError;

use crate::daemon::config::RepositoryConfig;
use crate::daemon::queue::QueueId;

/// The mirrors and workspaces under one work dir.
pub(crate) struct Checkouts {
    work_dir: PathBuf,
    /// One lock per mirror: runs of one repository fetch one after the other.
    mirror_locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl Checkouts {
    pub(crate) fn new(work_dir: impl Into<PathBuf>) -> Self {
        Checkouts {
            work_dir: work_dir.into(),
            mirror_locks: Mutex::default(),
        }
    }

    /// Where run `id`'s workspace is made.
    pub(crate) fn workspace_dir(&self, id: QueueId) -> PathBuf {
        self.work_dir.join("runs").join(id.to_string())
    }

    fn mirror_dir(&self, repository: &str) -> PathBuf {
        self.work_dir
            .join("mirrors")
            .join(format!("{}.git", names::mirror_name(repository)))
    }

    fn mirror_lock(&self, repository: &str) -> Arc<tokio::sync::Mutex<()>> {
        self.mirror_locks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(names::mirror_name(repository))
            .or_default()
            .clone()
    }

    /// Fetches `git_ref` and `sha` of `repository` into its mirror, then makes run `id`'s
    /// workspace at `sha` (removing whatever an earlier attempt left there). Its path.
    pub(crate) async fn prepare(
        &self,
        repository: &RepositoryConfig,
        git_ref: &str,
        sha: &str,
        id: QueueId,
    ) -> Result<PathBuf, CheckoutError> {
        let oid = names::commit_id(sha)?;
        let mirror_dir = self.mirror_dir(&repository.name);
        {
            let lock = self.mirror_lock(&repository.name);
            let _fetching = lock.lock().await;
            let (repository, git_ref, mirror_dir) =
                (repository.clone(), git_ref.to_owned(), mirror_dir.clone());
            blocking(move || mirror::fetch(&mirror_dir, &repository, &git_ref, oid)).await?;
        }
        let workspace = self.workspace_dir(id);
        let (git_ref, target, clone_url) = (
            git_ref.to_owned(),
            workspace.clone(),
            repository.clone_url.clone(),
        );
        blocking(move || workspace::create(&target, &mirror_dir, &clone_url, &git_ref, oid))
            .await?;
        Ok(workspace)
    }

    /// Removes run `id`'s workspace, if it is there.
    pub(crate) async fn remove(&self, id: QueueId) -> Result<(), CheckoutError> {
        let dir = self.workspace_dir(id);
        blocking(move || workspace::remove(&dir)).await
    }
}

async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, CheckoutError> + Send + 'static,
) -> Result<T, CheckoutError> {
    match tokio::task::spawn_blocking(work).await {
        Ok(result) => result,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(_) => Err(CheckoutError::ShuttingDown),
    }
}

#[cfg(test)]
pub(crate) mod tests;

#[cfg(test)]
mod remote_tests;
