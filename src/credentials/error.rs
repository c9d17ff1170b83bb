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
}
