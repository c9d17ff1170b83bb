//! Content digests as the image spec writes them (`sha256:<64 lowercase hex>`).

use sha2::{Digest as _, Sha256};

/// `sha256:<hex>` of some bytes.
pub(crate) fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// The hex part of a `sha256:` digest, when it is one.
pub(crate) fn sha256_hex(digest: &str) -> Option<&str> {
    let hex = digest.strip_prefix("sha256:")?;
    (hex.len() == 64
        && hex
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()))
    .then_some(hex)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_are_sha256_in_lowercase_hex() {
        let digest = sha256_digest(b"");
        assert_eq!(
            digest,
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(sha256_hex(&digest), Some(&digest[7..]));
        assert_eq!(
            sha256_hex(&digest.to_ascii_uppercase().replace("SHA256", "sha256")),
            None
        );
        assert_eq!(sha256_hex("sha256:abc"), None);
        assert_eq!(sha256_hex("sha512:e3b0"), None);
    }
}
