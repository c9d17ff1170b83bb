//! GitHub deliveries: `X-GitHub-Event` names the event, `X-GitHub-Delivery` its id (a GUID that a
//! redelivery reuses), the body is the event's payload as JSON, or as the `payload` field of a
//! form when the webhook's content type is `application/x-www-form-urlencoded`.
//!
//! Payload reference: https://docs.github.com/en/webhooks/webhook-events-and-payloads#push

use serde::Deserialize;

use super::push::{Hook, PayloadError, Push};

#[derive(Debug, Deserialize)]
struct PushPayload {
    #[serde(rename = "ref")]
    git_ref: String,
    before: Option<String>,
    after: String,
    repository: Repository,
    /// `null` when the push deleted the ref.
    head_commit: Option<Commit>,
    #[serde(default)]
    commits: Vec<Commit>,
}

#[derive(Debug, Deserialize)]
struct Repository {
    full_name: String,
}

#[derive(Debug, Deserialize)]
struct Commit {
    #[serde(default)]
    message: String,
    #[serde(default)]
    added: Vec<String>,
    #[serde(default)]
    modified: Vec<String>,
    #[serde(default)]
    removed: Vec<String>,
}

/// GitHub caps a push payload's `commits` at 2048; a longer push lists only part of its files.
const MAX_LISTED_COMMITS: usize = 2048;

/// The JSON of a form-encoded delivery (`payload=<url-encoded JSON>`); the signature covers the
/// form body as sent, so this runs only after it verified.
pub fn json_from_form(body: &[u8]) -> Result<Vec<u8>, PayloadError> {
    form_urlencoded::parse(body)
        .find(|(key, _)| key == "payload")
        .map(|(_, value)| value.into_owned().into_bytes())
        .ok_or_else(|| PayloadError::new("the form body has no `payload` field"))
}

/// Reads a verified GitHub delivery of event `event` (the `X-GitHub-Event` header).
pub fn parse(event: &str, json: &[u8]) -> Result<Hook, PayloadError> {
    match event {
        "ping" => Ok(Hook::Ping),
        "push" => {
            let payload: PushPayload =
                serde_json::from_slice(json).map_err(|e| PayloadError::json(&e))?;
            Ok(Hook::Push(push(payload)))
        }
        _ => Ok(Hook::Unhandled),
    }
}

fn push(payload: PushPayload) -> Push {
    // A push with no listed commit (a new branch at an existing commit, a force push back to an
    // older one) says nothing about which files changed, so no path filter can judge it.
    let changed_paths = if payload.commits.is_empty() || payload.commits.len() >= MAX_LISTED_COMMITS
    {
        None
    } else {
        let mut paths: Vec<String> = payload
            .commits
            .iter()
            .flat_map(|c| c.added.iter().chain(&c.modified).chain(&c.removed))
            .cloned()
            .collect();
        paths.sort();
        paths.dedup();
        Some(paths)
    };
    Push {
        repository: payload.repository.full_name,
        git_ref: payload.git_ref,
        before: payload.before,
        after: payload.after,
        head_message: payload.head_commit.map(|c| c.message),
        changed_paths,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PUSH: &str = include_str!("fixtures/github-push.json");
    const PUSH_DELETED: &str = include_str!("fixtures/github-push-deleted-branch.json");
    const PUSH_NEW_BRANCH: &str = include_str!("fixtures/github-push-new-branch.json");
    const PING: &str = include_str!("fixtures/github-ping.json");

    fn the_push(hook: Hook) -> Push {
        match hook {
            Hook::Push(push) => push,
            other => panic!("not a push: {other:?}"),
        }
    }

    #[test]
    fn a_push_gives_its_ref_commits_and_changed_files() {
        let push = the_push(parse("push", PUSH.as_bytes()).unwrap());
        assert_eq!(push.repository, "acme/shop");
        assert_eq!(push.git_ref, "refs/heads/main");
        assert_eq!(
            push.before.as_deref(),
            Some("3b9d1a6c1e2f04b5a7c8d9e0f1a2b3c4d5e6f708")
        );
        assert_eq!(push.after, "a41f5c8e9b7d6c5e4f3a2b1c0d9e8f7a6b5c4d3e");
        assert_eq!(
            push.head_message.as_deref(),
            Some("web: serve the cart from the new API\n\nThe old endpoint goes next week.")
        );
        assert_eq!(
            push.changed_paths.unwrap(),
            [
                "docs/cart.md",
                "services/api/old_cart.rs",
                "services/web/Dockerfile",
                "services/web/cart.js"
            ]
        );
    }

    #[test]
    fn a_deleted_branch_has_a_null_after_and_no_head_commit() {
        let push = the_push(parse("push", PUSH_DELETED.as_bytes()).unwrap());
        assert!(super::super::push::is_null_sha(&push.after));
        assert_eq!(push.head_message, None);
    }

    #[test]
    fn a_new_branch_without_commits_has_unknown_changed_files() {
        let push = the_push(parse("push", PUSH_NEW_BRANCH.as_bytes()).unwrap());
        assert_eq!(push.git_ref, "refs/heads/release/2.0");
        assert_eq!(push.changed_paths, None);
        assert!(push.head_message.is_some());
    }

    #[test]
    fn a_ping_is_answered_without_reading_further() {
        assert_eq!(parse("ping", PING.as_bytes()).unwrap(), Hook::Ping);
    }

    #[test]
    fn other_events_are_unhandled() {
        assert_eq!(parse("issues", b"{}").unwrap(), Hook::Unhandled);
    }

    #[test]
    fn a_truncated_body_is_a_short_reason() {
        let err = parse("push", &PUSH.as_bytes()[..200]).unwrap_err();
        assert!(err.0.starts_with("the JSON body ends early"), "{err}");
    }

    #[test]
    fn a_push_without_its_repository_is_refused() {
        let err = parse("push", br#"{"ref":"refs/heads/main","after":"x"}"#).unwrap_err();
        assert!(err.0.contains("missing field `repository`"), "{err}");
    }

    #[test]
    fn a_form_encoded_delivery_carries_the_json_in_payload() {
        let form: String = form_urlencoded::Serializer::new(String::new())
            .append_pair("payload", PUSH)
            .finish();
        let json = json_from_form(form.as_bytes()).unwrap();
        assert_eq!(json, PUSH.as_bytes());
        assert!(json_from_form(b"other=1").is_err());
    }
}
