//! A run's own workspace: a fresh git repository whose objects are the mirror's (alternates),
//! with the pushed commit checked out. Blocks: called on the blocking pool.

use std::path::Path;

use git2::{Oid, Repository, build::CheckoutBuilder};

use super::CheckoutError;

/// Makes `dir` a checkout of commit `oid`, removing whatever an earlier attempt left there.
/// A branch push checks out a local branch of the same name (so `${{ git.branch }}` is it);
/// a tag push creates the tag at the commit and detaches HEAD there.
pub(super) fn create(
    dir: &Path,
    mirror_dir: &Path,
    clone_url: &str,
    git_ref: &str,
    oid: Oid,
) -> Result<(), CheckoutError> {
    remove(dir)?;
    std::fs::create_dir_all(dir).map_err(|source| CheckoutError::Io {
        action: "create the run's workspace",
        path: dir.to_path_buf(),
        source,
    })?;
    let git = |action| CheckoutError::git(action, dir);
    let repo = Repository::init(dir).map_err(git("create the run's repository"))?;
    let objects = mirror_dir
        .canonicalize()
        .map_err(|source| CheckoutError::Io {
            action: "find the mirror",
            path: mirror_dir.to_path_buf(),
            source,
        })?
        .join("objects");
    let alternates = dir.join(".git/objects/info/alternates");
    std::fs::write(&alternates, format!("{}\n", objects.display())).map_err(|source| {
        CheckoutError::Io {
            action: "point the workspace at the mirror's objects",
            path: alternates.clone(),
            source,
        }
    })?;
    // Open again: the object database reads its alternates when the repository is opened.
    drop(repo);
    let repo = Repository::open(dir).map_err(git("open the run's repository"))?;
    let commit = repo
        .find_commit(oid)
        .map_err(git("find the pushed commit in the run's repository"))?;
    // The URL, for the image's source label (credentials are stripped where it is read).
    repo.remote("origin", clone_url)
        .map_err(git("name the origin remote"))?;
    if let Some(branch) = git_ref.strip_prefix("refs/heads/") {
        repo.branch(branch, &commit, true)
            .map_err(git("create the pushed branch"))?;
        repo.set_head(git_ref)
            .map_err(git("check out the pushed branch"))?;
    } else {
        if let Some(tag) = git_ref.strip_prefix("refs/tags/") {
            repo.tag_lightweight(tag, commit.as_object(), true)
                .map_err(git("create the pushed tag"))?;
        }
        repo.set_head_detached(oid)
            .map_err(git("check out the pushed commit"))?;
    }
    repo.checkout_head(Some(CheckoutBuilder::new().force()))
        .map_err(git("check out the pushed commit"))?;
    Ok(())
}

pub(super) fn remove(dir: &Path) -> Result<(), CheckoutError> {
    match std::fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(CheckoutError::Io {
            action: "remove the run's workspace",
            path: dir.to_path_buf(),
            source,
        }),
    }
}
