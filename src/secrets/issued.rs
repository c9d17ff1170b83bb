//! Credentials shipit obtains while it runs (a registry password from the Docker config or a
//! credential helper, an ECR token, a CI's OIDC token and the role credentials it buys): each is
//! noted here the moment it exists, so every run's [`SecretSet`](super::SecretSet) hides it too.
//!
//! The list is the process's, not a run's: the adapters that obtain credentials are shared by
//! every run, and hiding one run's credential in another run's output is never wrong.

use std::sync::{LazyLock, RwLock};

static ISSUED: LazyLock<RwLock<Vec<String>>> = LazyLock::new(Default::default);

/// Notes a credential that must never be shown. Blank values are ignored.
pub(crate) fn note_issued_secret(value: &str) {
    if value.trim().is_empty() {
        return;
    }
    let mut issued = ISSUED.write().unwrap_or_else(|e| e.into_inner());
    if !issued.iter().any(|known| known == value) {
        issued.push(value.to_owned());
    }
}

/// How many credentials have been noted: grows only, so a changed count means new ones.
pub(super) fn issued_count() -> usize {
    ISSUED.read().unwrap_or_else(|e| e.into_inner()).len()
}

/// Every credential noted so far.
pub(super) fn issued_secrets() -> Vec<String> {
    ISSUED.read().unwrap_or_else(|e| e.into_inner()).clone()
}
