//! `Authorization: Bearer TOKEN` for `/api`: the token's sha256 is compared, in constant time,
//! with the digests the configuration lists, so the tokens themselves are stored nowhere.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::Response;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::reply;
use super::state::ServerState;

/// Who called, as runs record it: `sha256:` and the first 12 hex digits of the token's digest
/// (enough to tell tokens apart in a list, useless to guess the token).
#[derive(Debug, Clone)]
pub struct Caller(pub String);

/// The caller's label when `token` hashes to one of `digests` (lowercase hex).
pub fn authorize(token: &str, digests: &[String]) -> Option<Caller> {
    let digest = hex::encode(Sha256::digest(token.as_bytes()));
    // Every digest is compared, so the time taken does not say which one matched.
    let mut found = false;
    for expected in digests {
        found |= bool::from(digest.as_bytes().ct_eq(expected.as_bytes()));
    }
    found.then(|| Caller(format!("sha256:{}", &digest[..12])))
}

pub async fn require_token(
    State(state): State<Arc<ServerState>>,
    mut request: Request,
    next: Next,
) -> Response {
    let token = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    match token.and_then(|t| authorize(t, &state.config.api_token_sha256)) {
        Some(caller) => {
            request.extensions_mut().insert(caller);
            next.run(request).await
        }
        None => reply::unauthorized(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEST_DIGEST: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

    #[test]
    fn a_token_whose_digest_is_listed_is_let_in() {
        // sha256("test") is the digest above.
        let caller = authorize("test", &["00".repeat(32), TEST_DIGEST.to_owned()]).unwrap();
        assert_eq!(caller.0, "sha256:9f86d081884c");
    }

    #[test]
    fn any_other_token_is_refused() {
        assert!(authorize("test ", &[TEST_DIGEST.to_owned()]).is_none());
        assert!(authorize("", &[TEST_DIGEST.to_owned()]).is_none());
        assert!(authorize("test", &[]).is_none());
        // The digest itself is not a token.
        assert!(authorize(TEST_DIGEST, &[TEST_DIGEST.to_owned()]).is_none());
    }

    #[test]
    fn a_digest_differing_only_in_its_last_digit_is_no_match() {
        let mut near = TEST_DIGEST.to_owned();
        near.replace_range(63.., "9");
        assert!(authorize("test", &[near]).is_none());
    }
}
