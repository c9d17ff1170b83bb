//! Secrets never appear in anything shipit writes. The application layer builds one
//! [`SecretSet`] per run (the values the pipeline and the environment make secret) and puts two
//! guards in the run's way: [`MaskedReporter`] in front of the renderers, [`MaskedStore`] in
//! front of the journal. Everything else shipit writes about a run (the JSON result, JUnit, the
//! GitHub step outputs and summary, error messages) is made from the masked record and errors
//! the application layer hands back. Credentials obtained while running are noted in
//! [`issued`] and hidden the same way.
//!
//! - [`secret_set`]: the values and the masking itself (`***`).
//! - [`issued`]: credentials the process obtained (registry passwords, ECR tokens, OIDC tokens
//!   and the role credentials bought with them).
//! - [`masked_reporter`]: events masked, secrets named first (`::add-mask::` under GitHub).
//! - [`masked_store`]: journal records masked before they are written.

pub(crate) mod issued;
pub(crate) mod masked_reporter;
pub(crate) mod masked_store;
pub(crate) mod secret_set;

pub(crate) use issued::note_issued_secret;
pub(crate) use masked_reporter::MaskedReporter;
pub(crate) use masked_store::MaskedStore;
pub(crate) use secret_set::SecretSet;
