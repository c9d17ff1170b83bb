//! The one AWS SDK configuration every AWS client of shipit is built from: ECR today, ECS,
//! CodeDeploy and EKS later. The standard credential chain (environment, profiles, SSO, web
//! identity, container and instance credentials) supplies the identity; the region and API
//! endpoint a pipeline names override the environment's. The SDK itself honours
//! `AWS_ENDPOINT_URL` and the service-specific `AWS_ENDPOINT_URL_<SERVICE>` (`_ECR`, `_ECS`, …)
//! when the pipeline names no endpoint.
//!
//! Whose credentials those are is the run's [`AwsIdentity`]: the standard chain, or the role a
//! CI job assumed with its OIDC token (the pipeline's `aws:` block).

use std::sync::Arc;

use aws_credential_types::provider::SharedCredentialsProvider;

use super::error::CredentialsError;
use super::web_identity_role::{RENEW_BEFORE_EXPIRY, WebIdentityRole};

/// How long the SDK waits for the CI identity's credentials: a token request and an STS call.
const IDENTITY_LOAD_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// Whose credentials a run's AWS clients sign with, and the region they use when their own
/// settings name none (the `aws:` block's).
#[derive(Clone, Default)]
pub struct AwsIdentity {
    role: Option<Arc<WebIdentityRole>>,
    region: Option<String>,
}

impl std::fmt::Debug for AwsIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.role {
            Some(role) => write!(f, "AwsIdentity({})", role.request().role_arn),
            None => f.write_str("AwsIdentity(credential chain)"),
        }
    }
}

impl AwsIdentity {
    /// The standard AWS credential chain (environment, profiles, SSO, web identity, container
    /// and instance credentials).
    pub fn credential_chain() -> Self {
        AwsIdentity::default()
    }

    /// A role assumed with the CI job's OIDC token, in the role's region.
    pub(crate) fn web_identity_role(role: WebIdentityRole) -> Self {
        AwsIdentity {
            region: role.request().region.clone(),
            role: Some(Arc::new(role)),
        }
    }

    /// The same credentials, in `region` when a client's settings name none.
    pub(crate) fn in_region(self, region: Option<String>) -> Self {
        AwsIdentity { region, ..self }
    }

    /// What tells identities apart in caches of things bought with credentials (ECR tokens).
    pub(crate) fn cache_label(&self) -> &str {
        self.role
            .as_ref()
            .map_or("", |role| role.request().role_arn.as_str())
    }
}

/// Lets the SDK ask the shared role for credentials.
#[derive(Debug)]
struct SharedRole(Arc<WebIdentityRole>);

impl aws_credential_types::provider::ProvideCredentials for SharedRole {
    fn provide_credentials<'a>(
        &'a self,
    ) -> aws_credential_types::provider::future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        self.0.provide_credentials()
    }
}

/// What a pipeline says about one AWS client, over the environment's settings.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct AwsSettings<'a> {
    /// The region to use instead of the credential chain's.
    pub region: Option<&'a str>,
    /// The API endpoint (a VPC endpoint, an emulator) instead of the SDK's.
    pub endpoint_url: Option<&'a str>,
    /// Where the pipeline names a region, for the error when there is none
    /// (`ecr.region in the push block`).
    pub region_setting: &'static str,
}

/// An SDK configuration that has a region.
#[derive(Debug, Clone)]
pub(crate) struct AwsConfig {
    pub sdk: aws_config::SdkConfig,
    pub region: String,
}

/// Loads the configuration: the identity's credentials, then the settings over it (a region
/// the settings do not name is the `aws:` block's, then the environment's). The credentials
/// themselves are resolved lazily, by the first call a client makes.
pub(crate) async fn load_aws_config(
    settings: AwsSettings<'_>,
    identity: &AwsIdentity,
) -> Result<AwsConfig, CredentialsError> {
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
    let region = settings
        .region
        .map(str::to_owned)
        .or_else(|| identity.region.clone());
    if let Some(role) = &identity.role {
        // The SDK's cache asks again this long before the credentials expire, as the role
        // itself renews them.
        let cache = aws_config::identity::IdentityCache::lazy()
            .buffer_time(RENEW_BEFORE_EXPIRY)
            .load_timeout(IDENTITY_LOAD_TIMEOUT)
            .build();
        loader = loader
            .credentials_provider(SharedCredentialsProvider::new(SharedRole(role.clone())))
            .identity_cache(cache);
    }
    if let Some(region) = region {
        loader = loader.region(aws_config::Region::new(region));
    }
    if let Some(endpoint) = settings.endpoint_url {
        loader = loader.endpoint_url(endpoint);
    }
    let sdk = loader.load().await;
    let region =
        sdk.region()
            .map(|region| region.to_string())
            .ok_or(CredentialsError::NoAwsRegion {
                setting: settings.region_setting,
            })?;
    Ok(AwsConfig { sdk, region })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_pipeline_region_and_endpoint_win_over_the_environment() {
        let config = load_aws_config(
            AwsSettings {
                region: Some("eu-west-3"),
                endpoint_url: Some("http://127.0.0.1:4566"),
                region_setting: "a region setting",
            },
            &AwsIdentity::credential_chain(),
        )
        .await
        .unwrap();
        assert_eq!(config.region, "eu-west-3");
        assert_eq!(config.sdk.endpoint_url(), Some("http://127.0.0.1:4566"));
    }

    #[tokio::test]
    async fn the_identity_region_serves_clients_that_name_none() {
        let identity = AwsIdentity::credential_chain().in_region(Some("ap-south-2".into()));
        let settings = |region| AwsSettings {
            region,
            endpoint_url: None,
            region_setting: "a region setting",
        };
        let config = load_aws_config(settings(None), &identity).await.unwrap();
        assert_eq!(config.region, "ap-south-2");
        let config = load_aws_config(settings(Some("eu-west-3")), &identity)
            .await
            .unwrap();
        assert_eq!(config.region, "eu-west-3");
    }
}
