//! Registry and cloud credentials, shared by the adapters that need them: a build pulling base
//! images (`docker`) and a push (`registry`). This module uses neither of them.
//!
//! - [`docker_config`]: the Docker client's config.json and its credential helpers.
//! - [`identity_token`]: how an identity token (an OAuth2 refresh token) is carried.
//! - [`aws`]: the one AWS SDK configuration every AWS client is built from (ECR now; ECS,
//!   CodeDeploy and EKS later), and the run's AWS identity.
//! - [`ci_identity_token`]: a CI job's OIDC token (GitHub Actions' token endpoint, a GitLab
//!   `id_tokens:` variable).
//! - [`web_identity_role`]: the role assumed with that token, as a credentials provider that
//!   renews itself.
//! - [`ecr_host`]: what an ECR registry host says (its region, its account) and the host
//!   override from the environment.
//! - [`ecr_token`]: ECR registry tokens from GetAuthorizationToken, cached per process.
//! - [`pull`]: the credentials a registry host gets when a base image is pulled from it.
//! - [`error`]: what can go wrong, never holding a credential.

pub(crate) mod aws;
pub(crate) mod ci_identity_token;
pub(crate) mod docker_config;
pub(crate) mod ecr_host;
pub(crate) mod ecr_token;
pub(crate) mod error;
pub(crate) mod identity_token;
pub(crate) mod pull;
pub(crate) mod web_identity_role;

pub(crate) use error::CredentialsError;
