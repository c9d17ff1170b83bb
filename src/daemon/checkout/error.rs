//! Why a run's checkout could not be made. Messages name the repository as configured, never
//! its URL's credentials or the token.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub(crate) enum CheckoutError {
    #[error("`{sha}` is not a commit id: the daemon checks out full 40-hex-digit SHAs")]
    NotACommitId { sha: String },
    #[error("failed to fetch {git_ref} of {repository}: {message}")]
    Fetch {
        repository: String,
        git_ref: String,
        message: String,
    },
    #[error("the remote has no commit {sha} ({repository}, {git_ref})")]
    MissingCommit {
        repository: String,
        git_ref: String,
        sha: String,
    },
    #[error("failed to {action} {}: {message}", path.display())]
    Git {
        action: &'static str,
        path: PathBuf,
        message: String,
    },
    #[error("failed to {action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to finish a checkout: the runtime is shutting down")]
    ShuttingDown,
}

impl CheckoutError {
    pub(crate) fn git(
        action: &'static str,
        path: &std::path::Path,
    ) -> impl Fn(git2::Error) -> Self {
        let path = path.to_path_buf();
        move |e| CheckoutError::Git {
            action,
            path: path.clone(),
            message: e.message().to_owned(),
        }
    }
}
