//! The git adapter: the facts about the checkout that `${{ git.* }}` and the journal use.

use std::collections::BTreeMap;
use std::path::Path;

use git2::{Repository, StatusOptions};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GitInfo {
    pub sha: String,
    pub short_sha: String,
    pub branch: Option<String>,
    pub tag: Option<String>,
    pub dirty: bool,
    /// The `origin` remote's URL without any credentials in it, for the image's
    /// `org.opencontainers.image.source` label.
    pub remote_url: Option<String>,
}

impl GitInfo {
    /// The values `${{ git.* }}` resolves to; fields without a value (no tag) are absent.
    pub fn values(&self) -> BTreeMap<String, String> {
        let mut values = BTreeMap::new();
        values.insert("sha".into(), self.sha.clone());
        values.insert("short_sha".into(), self.short_sha.clone());
        values.insert("dirty".into(), self.dirty.to_string());
        if let Some(branch) = &self.branch {
            values.insert("branch".into(), branch.clone());
        }
        if let Some(tag) = &self.tag {
            values.insert("tag".into(), tag.clone());
        }
        // Not a `${{ git.* }}` reference (validation refuses it); stages read it from here.
        if let Some(url) = &self.remote_url {
            values.insert(REMOTE_URL.into(), url.clone());
        }
        values
    }
}

/// The key of the remote URL in [`GitInfo::values`].
pub const REMOTE_URL: &str = "remote_url";

/// Removes `user:password@` from a URL: remotes often carry a CI token that must never reach
/// an image label.
pub fn without_credentials(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let host_start = rest.find('/').unwrap_or(rest.len());
            match rest[..host_start].rfind('@') {
                Some(at) => format!("{scheme}://{}", &rest[at + 1..]),
                None => url.to_owned(),
            }
        }
        None => url.to_owned(),
    }
}

/// Reads the checkout that contains `dir`. `Ok(None)` when `dir` is not in a git repository;
/// `env` supplies the CI's branch name when the checkout is a detached HEAD, as CI checkouts are.
pub fn read(dir: &Path, env: &dyn Fn(&str) -> Option<String>) -> Result<Option<GitInfo>, String> {
    let repo = match Repository::discover(dir) {
        Ok(repo) => repo,
        Err(e) if e.code() == git2::ErrorCode::NotFound => return Ok(None),
        Err(e) => {
            return Err(format!(
                "failed to open the git repository at {}: {}",
                dir.display(),
                e.message()
            ));
        }
    };
    let head = match repo.head() {
        Ok(head) => head,
        // A repository without commits has no sha to offer.
        Err(e)
            if matches!(
                e.code(),
                git2::ErrorCode::UnbornBranch | git2::ErrorCode::NotFound
            ) =>
        {
            return Ok(None);
        }
        Err(e) => return Err(format!("failed to read HEAD: {}", e.message())),
    };
    let commit = head
        .peel_to_commit()
        .map_err(|e| format!("failed to read the HEAD commit: {}", e.message()))?;
    let sha = commit.id().to_string();
    let branch = if head.is_branch() {
        head.shorthand().map(str::to_owned)
    } else {
        [
            "GITHUB_HEAD_REF",
            "GITHUB_REF_NAME",
            "CI_COMMIT_REF_NAME",
            "BRANCH_NAME",
            "GIT_BRANCH",
            "BUILDKITE_BRANCH",
        ]
        .iter()
        .find_map(|name| env(name).filter(|v| !v.is_empty()))
    };
    let mut tag = None;
    if let Ok(names) = repo.tag_names(None) {
        for name in names.iter().flatten() {
            let target = repo
                .revparse_single(&format!("refs/tags/{name}"))
                .and_then(|object| object.peel_to_commit());
            if target.is_ok_and(|c| c.id() == commit.id()) {
                tag = Some(name.to_owned());
                break;
            }
        }
    }
    let mut options = StatusOptions::new();
    options
        .include_untracked(true)
        .recurse_untracked_dirs(false)
        .include_ignored(false);
    let dirty = repo
        .statuses(Some(&mut options))
        .map(|statuses| {
            statuses
                .iter()
                // shipit's own journal must not make the tree dirty when it is not ignored.
                .any(|entry| {
                    !entry.path().is_some_and(|p| {
                        p == ".shipit/" || p.starts_with(".shipit/") || p.contains("/.shipit/")
                    })
                })
        })
        .unwrap_or(false);
    let remote_url = repo
        .find_remote("origin")
        .ok()
        .and_then(|remote| remote.url().map(without_credentials));
    Ok(Some(GitInfo {
        short_sha: sha[..7].to_owned(),
        sha,
        branch,
        tag,
        dirty,
        remote_url,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_stripped_from_remote_urls() {
        assert_eq!(
            without_credentials("https://ci:s3cret@git.example.com/shop.git"),
            "https://git.example.com/shop.git"
        );
        assert_eq!(
            without_credentials("https://git.example.com/a@b.git"),
            "https://git.example.com/a@b.git"
        );
        assert_eq!(
            without_credentials("git@github.com:shop/web.git"),
            "git@github.com:shop/web.git"
        );
    }
}
