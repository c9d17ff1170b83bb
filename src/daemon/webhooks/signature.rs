//! Is this delivery from the sender who holds our secret? One check per source, each over the
//! raw body exactly as received (re-serialized JSON would not match the sender's MAC).
//!
//! A failed check says nothing about why: the caller answers 401 with no detail, so that a
//! prober learns neither the expected MAC nor whether its header was even well formed.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::daemon::config::Secret;

type HmacSha256 = Hmac<Sha256>;

/// Why a delivery was refused; for logs and metrics only, never for the response body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("no signature header")]
    Missing,
    #[error("the signature header is not `sha256=` and 64 hex digits")]
    Malformed,
    #[error("the signature does not match")]
    Mismatch,
}

impl SignatureError {
    /// The label of the `webhook outcomes` metric.
    pub fn reason(self) -> &'static str {
        match self {
            SignatureError::Missing => "signature_missing",
            SignatureError::Malformed => "signature_malformed",
            SignatureError::Mismatch => "signature_mismatch",
        }
    }
}

/// GitHub's `X-Hub-Signature-256: sha256=<hex>` and shipit's own `X-Shipit-Signature-256`,
/// which is the same scheme: HMAC-SHA256 of the body keyed with the shared secret.
pub fn verify_hmac_sha256(
    secret: &Secret,
    header: Option<&[u8]>,
    body: &[u8],
) -> Result<(), SignatureError> {
    let header = header.ok_or(SignatureError::Missing)?;
    let hex_mac = header
        .strip_prefix(b"sha256=")
        .ok_or(SignatureError::Malformed)?;
    if hex_mac.len() != 64 {
        return Err(SignatureError::Malformed);
    }
    let received = hex::decode(hex_mac).map_err(|_| SignatureError::Malformed)?;
    let mut mac = HmacSha256::new_from_slice(secret.expose().as_bytes())
        .expect("HMAC takes a key of any length");
    mac.update(body);
    // `verify_slice` compares in constant time, so the time taken tells nothing about how many
    // leading bytes of a forged MAC were right.
    mac.verify_slice(&received)
        .map_err(|_| SignatureError::Mismatch)
}

/// GitLab's `X-Gitlab-Token`: the secret itself, sent as is. Both sides are hashed before the
/// constant-time comparison, so that neither the content nor the length of the secret shows
/// in the time taken.
pub fn verify_shared_token(secret: &Secret, header: Option<&[u8]>) -> Result<(), SignatureError> {
    let header = header.ok_or(SignatureError::Missing)?;
    let expected = Sha256::digest(secret.expose().as_bytes());
    let received = Sha256::digest(header);
    if bool::from(expected.ct_eq(&received)) {
        Ok(())
    } else {
        Err(SignatureError::Mismatch)
    }
}

/// The `sha256=<hex>` header a sender computes; the tests and the benchmark sign with it.
pub fn sign_hmac_sha256(secret: &str, body: &[u8]) -> String {
    let mut mac =
        HmacSha256::new_from_slice(secret.as_bytes()).expect("HMAC takes a key of any length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret() -> Secret {
        Secret::new("It's a Secret to Everybody")
    }

    /// GitHub's own worked example ("Validating webhook deliveries", docs.github.com): this
    /// secret and body give this signature.
    #[test]
    fn githubs_documented_example_verifies() {
        let header = b"sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
        assert_eq!(
            verify_hmac_sha256(&secret(), Some(header), b"Hello, World!"),
            Ok(())
        );
        assert_eq!(
            sign_hmac_sha256("It's a Secret to Everybody", b"Hello, World!").as_bytes(),
            header
        );
    }

    #[test]
    fn a_missing_header_is_refused() {
        assert_eq!(
            verify_hmac_sha256(&secret(), None, b"{}"),
            Err(SignatureError::Missing)
        );
    }

    #[test]
    fn a_changed_body_does_not_verify() {
        let header = sign_hmac_sha256("It's a Secret to Everybody", b"Hello, World!");
        assert_eq!(
            verify_hmac_sha256(&secret(), Some(header.as_bytes()), b"Hello, World?"),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn another_secret_does_not_verify() {
        let header = sign_hmac_sha256("another secret", b"Hello, World!");
        assert_eq!(
            verify_hmac_sha256(&secret(), Some(header.as_bytes()), b"Hello, World!"),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn malformed_headers_are_refused_before_any_comparison() {
        let good = sign_hmac_sha256("It's a Secret to Everybody", b"x");
        for header in [
            good.trim_start_matches("sha256=").to_owned(), // no prefix
            format!("sha1={}", &good[7..]),                // another algorithm
            good[..good.len() - 2].to_owned(),             // too short
            format!("{good}00"),                           // too long
            format!("sha256={}", "zz".repeat(32)),         // not hex
            "sha256=".to_owned(),
        ] {
            assert_eq!(
                verify_hmac_sha256(&secret(), Some(header.as_bytes()), b"x"),
                Err(SignatureError::Malformed),
                "{header}"
            );
        }
    }

    #[test]
    fn uppercase_hex_is_accepted() {
        let header = sign_hmac_sha256("It's a Secret to Everybody", b"x");
        let upper = format!("sha256={}", header[7..].to_ascii_uppercase());
        assert_eq!(
            verify_hmac_sha256(&secret(), Some(upper.as_bytes()), b"x"),
            Ok(())
        );
    }

    proptest::proptest! {
        /// Whatever the secret and the body, the sender's signature verifies, and the same
        /// signature over the body with any one byte changed does not.
        #[test]
        fn a_signature_verifies_its_body_and_no_other(
            secret in "[ -~]{1,64}",
            body in proptest::collection::vec(proptest::prelude::any::<u8>(), 1..512),
            at in proptest::prelude::any::<proptest::sample::Index>(),
            delta in 1u8..=255,
        ) {
            let header = sign_hmac_sha256(&secret, &body);
            let key = Secret::new(secret);
            proptest::prop_assert_eq!(verify_hmac_sha256(&key, Some(header.as_bytes()), &body), Ok(()));
            let mut changed = body.clone();
            let i = at.index(changed.len());
            changed[i] = changed[i].wrapping_add(delta);
            proptest::prop_assert_eq!(
                verify_hmac_sha256(&key, Some(header.as_bytes()), &changed),
                Err(SignatureError::Mismatch)
            );
        }
    }

    #[test]
    fn a_shared_token_must_match_exactly() {
        let secret = Secret::new("gl-token");
        assert_eq!(verify_shared_token(&secret, Some(b"gl-token")), Ok(()));
        assert_eq!(
            verify_shared_token(&secret, Some(b"gl-token ")),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify_shared_token(&secret, Some(b"gl-toke")),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify_shared_token(&secret, Some(b"")),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify_shared_token(&secret, None),
            Err(SignatureError::Missing)
        );
    }
}
