//! GitLab deliveries: `X-Gitlab-Event` names the event (`Push Hook`, `Tag Push Hook`),
//! `X-Gitlab-Event-UUID` identifies the delivery, `X-Gitlab-Token` carries the shared secret.
//!
//! Payload reference: https://docs.gitlab.com/user/project/integrations/webhook_events/#push-events

use serde::Deserialize;

use super::push::{Hook, PayloadError, Push};

#[derive(Debug, Deserialize)]
struct PushPayload {
    #[serde(rename = "ref")]
    git_ref: String,
    before: Option<String>,
    after: String,
    project: Project,
    #[serde(default)]
    commits: Vec<Commit>,
    /// GitLab lists at most 20 commits; this is how many the push had.
    #[serde(default)]
    total_commits_count: usize,
}

#[derive(Debug, Deserialize)]
struct Project {
    path_with_namespace: String,
}

#[derive(Debug, Deserialize)]
struct Commit {
    id: String,
    #[serde(default)]
    message: String,
    #[serde(default)]
    added: Vec<String>,
    #[serde(default)]
    modified: Vec<String>,
    #[serde(default)]
    removed: Vec<String>,
}

/// Reads a verified GitLab delivery of event `event` (the `X-Gitlab-Event` header).
pub fn parse(event: &str, json: &[u8]) -> Result<Hook, PayloadError> {
    match event {
        "Push Hook" | "Tag Push Hook" => {
            let payload: PushPayload =
                serde_json::from_slice(json).map_err(|e| PayloadError::json(&e))?;
            Ok(Hook::Push(push(payload)))
        }
        _ => Ok(Hook::Unhandled),
    }
}

fn push(payload: PushPayload) -> Push {
    // The head commit is the one the ref now points at; GitLab's list is not promised in any
    // order, so it is found by id.
    let head_message = payload
        .commits
        .iter()
        .find(|c| c.id == payload.after)
        .map(|c| c.message.clone());
    let complete =
        !payload.commits.is_empty() && payload.total_commits_count <= payload.commits.len();
    let changed_paths = complete.then(|| {
        let mut paths: Vec<String> = payload
            .commits
            .iter()
            .flat_map(|c| c.added.iter().chain(&c.modified).chain(&c.removed))
            .cloned()
            .collect();
        paths.sort();
        paths.dedup();
        paths
    });
    Push {
        repository: payload.project.path_with_namespace,
        git_ref: payload.git_ref,
        before: payload.before,
        after: payload.after,
        head_message,
        changed_paths,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn the_push(event: &str, json: &str) -> Push {
        match parse(event, json.as_bytes()).unwrap() {
            Hook::Push(push) => push,
            other => panic!("not a push: {other:?}"),
        }
    }

    #[test]
    fn a_push_gives_its_project_ref_head_message_and_files() {
        let push = the_push("Push Hook", include_str!("fixtures/gitlab-push.json"));
        assert_eq!(push.repository, "acme/shop");
        assert_eq!(push.git_ref, "refs/heads/main");
        assert_eq!(push.after, "e8f7d6c5b4a39281706f5e4d3c2b1a0918273645");
        assert_eq!(
            push.head_message.as_deref(),
            Some("web: read the cart from the session\n")
        );
        assert_eq!(
            push.changed_paths.unwrap(),
            ["services/api/session.rs", "services/web/cart.js"]
        );
    }

    #[test]
    fn a_push_with_more_commits_than_listed_has_unknown_changed_files() {
        let push = the_push(
            "Push Hook",
            include_str!("fixtures/gitlab-push-truncated.json"),
        );
        assert_eq!(push.changed_paths, None);
    }

    #[test]
    fn a_tag_push_names_the_tag() {
        let push = the_push(
            "Tag Push Hook",
            include_str!("fixtures/gitlab-tag-push.json"),
        );
        assert_eq!(push.git_ref, "refs/tags/v2.0.0");
        assert_eq!(push.after, "82b3d5ae55f7080f1e6022629cdb57bfae7cccc7");
        assert_eq!(push.changed_paths, None);
    }

    #[test]
    fn other_events_are_unhandled() {
        assert_eq!(parse("Merge Request Hook", b"{}").unwrap(), Hook::Unhandled);
    }

    #[test]
    fn a_body_that_is_not_json_is_a_short_reason() {
        let err = parse("Push Hook", b"ref=main").unwrap_err();
        assert!(err.0.starts_with("the body is not valid JSON"), "{err}");
    }
}
