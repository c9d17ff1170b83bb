//! Webhook deliveries: is it from whom it claims (`signature`), what does it say (`github`,
//! `gitlab`, `generic`, all into one `Push`), and does it queue a run (`decide`).

pub mod decide;
pub mod generic;
pub mod github;
pub mod gitlab;
pub mod push;
pub mod signature;

pub use decide::{Decision, decide};
pub use push::{Hook, PayloadError, Push};
pub use signature::{SignatureError, sign_hmac_sha256};
