//! The generic source, for any sender that can compute an HMAC (a script, another CI system):
//! `POST /hooks/generic` with `X-Shipit-Signature-256: sha256=<hex>` and the JSON
//! `{"repository": "acme/shop", "ref": "refs/heads/main", "sha": "<40 hex>", "delivery": "…"}`;
//! the delivery id comes from `X-Shipit-Delivery` or, failing that, the body's `delivery`.

use serde::Deserialize;

use super::push::{PayloadError, Push, is_commit_sha};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Payload {
    repository: String,
    #[serde(rename = "ref")]
    git_ref: String,
    sha: String,
    delivery: Option<String>,
    /// Optional: the head commit's message, so `[skip ci]` works here too.
    message: Option<String>,
}

/// The push and the delivery id (`header_delivery` wins over the body's).
pub fn parse(header_delivery: Option<&str>, json: &[u8]) -> Result<(Push, String), PayloadError> {
    let payload: Payload = serde_json::from_slice(json).map_err(|e| PayloadError::json(&e))?;
    if !(payload.git_ref.starts_with("refs/heads/") || payload.git_ref.starts_with("refs/tags/")) {
        return Err(PayloadError::new(
            "`ref` must be a full ref: refs/heads/BRANCH or refs/tags/TAG",
        ));
    }
    if !is_commit_sha(&payload.sha) {
        return Err(PayloadError::new(
            "`sha` must be a full commit id (40 hex digits)",
        ));
    }
    let delivery = header_delivery
        .map(str::to_owned)
        .or(payload.delivery)
        .ok_or_else(|| {
            PayloadError::new("no delivery id: send X-Shipit-Delivery or a `delivery` field")
        })?;
    Ok((
        Push {
            repository: payload.repository,
            git_ref: payload.git_ref,
            before: None,
            after: payload.sha,
            head_message: payload.message,
            changed_paths: None,
        },
        delivery,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHA: &str = "a41f5c8e9b7d6c5e4f3a2b1c0d9e8f7a6b5c4d3e";

    #[test]
    fn the_header_delivery_id_wins_over_the_bodys() {
        let body = format!(
            r#"{{"repository":"acme/shop","ref":"refs/heads/main","sha":"{SHA}","delivery":"body-1"}}"#
        );
        let (push, delivery) = parse(Some("header-1"), body.as_bytes()).unwrap();
        assert_eq!(delivery, "header-1");
        assert_eq!(push.after, SHA);
        assert_eq!(push.repository, "acme/shop");
        let (_, delivery) = parse(None, body.as_bytes()).unwrap();
        assert_eq!(delivery, "body-1");
    }

    #[test]
    fn a_delivery_id_is_required() {
        let body = format!(r#"{{"repository":"acme/shop","ref":"refs/heads/main","sha":"{SHA}"}}"#);
        assert!(
            parse(None, body.as_bytes())
                .unwrap_err()
                .0
                .contains("no delivery id")
        );
    }

    #[test]
    fn a_short_ref_or_sha_is_refused() {
        let body = format!(r#"{{"repository":"a/b","ref":"main","sha":"{SHA}"}}"#);
        assert!(
            parse(Some("d"), body.as_bytes())
                .unwrap_err()
                .0
                .contains("full ref")
        );
        let body = r#"{"repository":"a/b","ref":"refs/heads/main","sha":"a41f5c8"}"#;
        assert!(
            parse(Some("d"), body.as_bytes())
                .unwrap_err()
                .0
                .contains("full commit id")
        );
    }
}
