//! Checkouts from real git repositories made with git2 in temporary folders.

use std::path::Path;

use git2::{Repository, Signature};

use super::*;

/// Commits `files` on `branch` of the repository at `dir` (created when absent); the commit id.
pub(crate) fn commit(dir: &Path, branch: &str, files: &[(&str, &str)]) -> String {
    let repo = Repository::open(dir).unwrap_or_else(|_| Repository::init(dir).unwrap());
    for (path, content) in files {
        let file = dir.join(path);
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(file, content).unwrap();
    }
    let mut index = repo.index().unwrap();
    index
        .add_all(["*"], git2::IndexAddOption::DEFAULT, None)
        .unwrap();
    index.write().unwrap();
    let tree = repo.find_tree(index.write_tree().unwrap()).unwrap();
    let signature = Signature::now("shipit tests", "tests@example.invalid").unwrap();
    let reference = format!("refs/heads/{branch}");
    let parent = repo
        .find_reference(&reference)
        .ok()
        .and_then(|r| r.peel_to_commit().ok());
    let parents: Vec<&git2::Commit> = parent.iter().collect();
    let id = repo
        .commit(
            Some(&reference),
            &signature,
            &signature,
            "change",
            &tree,
            &parents,
        )
        .unwrap();
    id.to_string()
}

pub(crate) fn repository(name: &str, clone_url: &Path) -> RepositoryConfig {
    RepositoryConfig {
        name: name.into(),
        clone_url: clone_url.display().to_string(),
        pipeline: "shipit.yaml".into(),
        branches: vec!["main".into()],
        tags: vec![],
        paths: vec![],
        environments: vec![],
        credentials: None,
        known_hosts: None,
        env: vec![],
    }
}

#[tokio::test]
async fn a_run_gets_its_own_workspace_at_the_exact_pushed_commit_on_its_branch() {
    let dir = tempfile::tempdir().unwrap();
    let origin = dir.path().join("origin");
    let first = commit(&origin, "main", &[("app.txt", "one")]);
    // The branch moved on after the push: the run still gets the commit it was queued for.
    let second = commit(&origin, "main", &[("app.txt", "two")]);
    let checkouts = Checkouts::new(dir.path().join("work"));
    let repo = repository("acme/shop", &origin);

    let old = checkouts
        .prepare(&repo, "refs/heads/main", &first, 1)
        .await
        .unwrap();
    let new = checkouts
        .prepare(&repo, "refs/heads/main", &second, 2)
        .await
        .unwrap();

    assert_eq!(old, dir.path().join("work/runs/1"));
    assert_eq!(std::fs::read_to_string(old.join("app.txt")).unwrap(), "one");
    assert_eq!(std::fs::read_to_string(new.join("app.txt")).unwrap(), "two");
    let info = crate::git::read(&old, &|_| None).unwrap().unwrap();
    assert_eq!(info.sha, first);
    assert_eq!(info.branch.as_deref(), Some("main"));
    assert!(!info.dirty);
    let mirrors: Vec<_> = std::fs::read_dir(dir.path().join("work/mirrors"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|name| name.ends_with(".git"))
        .collect();
    assert_eq!(mirrors.len(), 1, "{mirrors:?}");

    checkouts.remove(1).await.unwrap();
    assert!(!old.exists());
    assert!(new.exists());
}

#[tokio::test]
async fn a_tag_push_is_checked_out_with_its_tag() {
    let dir = tempfile::tempdir().unwrap();
    let origin = dir.path().join("origin");
    let sha = commit(&origin, "main", &[("app.txt", "one")]);
    let source = Repository::open(&origin).unwrap();
    let object = source.revparse_single(&sha).unwrap();
    source.tag_lightweight("v1", &object, false).unwrap();
    let checkouts = Checkouts::new(dir.path().join("work"));
    let workspace = checkouts
        .prepare(&repository("acme/shop", &origin), "refs/tags/v1", &sha, 3)
        .await
        .unwrap();
    let info = crate::git::read(&workspace, &|_| None).unwrap().unwrap();
    assert_eq!((info.sha, info.tag.as_deref()), (sha, Some("v1")));
}

#[tokio::test]
async fn a_commit_the_remote_does_not_have_fails_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let origin = dir.path().join("origin");
    commit(&origin, "main", &[("app.txt", "one")]);
    let checkouts = Checkouts::new(dir.path().join("work"));
    let missing = "0123456789abcdef0123456789abcdef01234567";
    let err = checkouts
        .prepare(
            &repository("acme/shop", &origin),
            "refs/heads/main",
            missing,
            1,
        )
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("the remote has no commit {missing} (acme/shop, refs/heads/main)")
    );
    assert!(!checkouts.workspace_dir(1).exists());
}

#[tokio::test]
async fn a_leftover_workspace_is_replaced_by_a_fresh_checkout() {
    let dir = tempfile::tempdir().unwrap();
    let origin = dir.path().join("origin");
    let sha = commit(&origin, "main", &[("app.txt", "one")]);
    let checkouts = Checkouts::new(dir.path().join("work"));
    let leftover = checkouts.workspace_dir(5);
    std::fs::create_dir_all(&leftover).unwrap();
    std::fs::write(leftover.join("stale.txt"), "from a dead daemon").unwrap();
    let workspace = checkouts
        .prepare(
            &repository("acme/shop", &origin),
            "refs/heads/main",
            &sha,
            5,
        )
        .await
        .unwrap();
    assert!(!workspace.join("stale.txt").exists());
    assert!(workspace.join("app.txt").exists());
}
