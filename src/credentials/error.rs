//! Why credentials could not be had. No variant holds a credential: a helper's output and an
//! SDK's error text are never copied in whole.

/// A failed credential lookup.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum CredentialsError {
    /// The Docker config or one of its credential helpers could not answer for a registry.
    #[error("failed to get credentials for registry {registry}: {reason}")]
    DockerConfig { registry: String, reason: String },

    /// Neither the pipeline nor the environment names an AWS region.
    #[error(
        "failed to configure AWS: no region is configured: set AWS_REGION, a profile region, or \
         {setting}"
    )]
    NoAwsRegion {
        /// Where the pipeline can name one (`ecr.region in the push block`).
        setting: &'static str,
    },

    /// GetAuthorizationToken did not give a usable token.
    #[error("failed to get an ECR token in {region}: {reason}")]
    EcrToken { region: String, reason: String },

    /// The CI job's OIDC token could not be had (the runner refused the request, the answer
    /// held none).
    #[error("failed to get the CI job's OIDC token from {origin}: {reason}")]
    IdentityToken { origin: String, reason: String },

    /// STS would not exchange the token for the role's credentials.
    #[error("failed to assume role {role_arn} with the CI job's OIDC token: {reason}")]
    AssumeRole { role_arn: String, reason: String },
}

impl CredentialsError {
    /// Whether the failure is the CI identity's (the token or the role), whatever AWS call
    /// needed it.
    pub(crate) fn is_ci_identity(&self) -> bool {
        matches!(
            self,
            CredentialsError::IdentityToken { .. } | CredentialsError::AssumeRole { .. }
        )
    }

    /// The CI identity's failure somewhere in an SDK error's causes: a credentials provider's
    /// error reaches the caller wrapped by the SDK.
    pub(crate) fn ci_identity_cause(
        err: &(dyn std::error::Error + 'static),
    ) -> Option<CredentialsError> {
        let mut cause = Some(err);
        while let Some(current) = cause {
            if let Some(found) = current.downcast_ref::<CredentialsError>()
                && found.is_ci_identity()
            {
                return Some(found.clone());
            }
            cause = current.source();
        }
        None
    }
}
