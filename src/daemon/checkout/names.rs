//! The names a checkout is made under, from values a webhook sent: they must never reach
//! outside the work dir, whatever they hold.

use sha2::{Digest, Sha256};

use super::CheckoutError;

/// A mirror's folder name for repository `name` (`acme/shop` → `acme_shop-1a2b3c4d`): only
/// letters, digits, `-`, `_` and `.` survive, and a hash of the whole name keeps two names that
/// sanitize alike (`a/b`, `a_b`) apart.
pub(crate) fn mirror_name(name: &str) -> String {
    let readable: String = name
        .chars()
        .map(|c| match c {
            'a'..='z' | 'A'..='Z' | '0'..='9' | '-' | '_' => c,
            _ => '_',
        })
        .take(64)
        .collect();
    let digest = hex::encode(Sha256::digest(name.as_bytes()));
    format!("{readable}-{}", &digest[..8])
}

/// `sha` as a git object id: exactly 40 hex digits (an abbreviation could name another commit
/// tomorrow).
pub(crate) fn commit_id(sha: &str) -> Result<git2::Oid, CheckoutError> {
    let refused = || CheckoutError::NotACommitId {
        sha: sha.chars().take(64).collect(),
    };
    if sha.len() != 40 || !sha.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(refused());
    }
    git2::Oid::from_str(sha).map_err(|_| refused())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mirror_names_stay_one_plain_folder() {
        for name in ["../../etc", "a/b", "/abs", "..", "a\\b", "ü/ñ", ""] {
            let folder = mirror_name(name);
            assert!(!folder.contains('/') && !folder.contains('\\'), "{folder}");
            assert!(!folder.starts_with('.'), "{folder}");
            assert!(folder.len() <= 64 + 9, "{folder}");
        }
    }

    #[test]
    fn names_that_sanitize_alike_get_distinct_mirrors() {
        assert_ne!(mirror_name("a/b"), mirror_name("a_b"));
        assert_eq!(mirror_name("acme/shop"), mirror_name("acme/shop"));
        assert!(mirror_name("acme/shop").starts_with("acme_shop-"));
    }

    #[test]
    fn only_full_hex_commit_ids_are_taken() {
        assert!(commit_id(&"ab".repeat(20)).is_ok());
        for bad in ["abc123", &"g".repeat(40), &"a".repeat(41), "", "HEAD"] {
            assert!(
                matches!(commit_id(bad), Err(CheckoutError::NotACommitId { .. })),
                "{bad}"
            );
        }
    }
}
