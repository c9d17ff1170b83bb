//! The one AWS SDK configuration every AWS client of shipit is built from: ECR today, ECS,
//! CodeDeploy and EKS later. The standard credential chain (environment, profiles, SSO, web
//! identity, container and instance credentials) supplies the identity; the region and API
//! endpoint a pipeline names override the environment's. The SDK itself honours
//! `AWS_ENDPOINT_URL` and the service-specific `AWS_ENDPOINT_URL_<SERVICE>` (`_ECR`, `_ECS`, …)
//! when the pipeline names no endpoint.

use super::error::CredentialsError;

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

/// Loads the configuration: the credential chain, then the settings over it. The credentials
/// themselves are resolved lazily, by the first call a client makes.
pub(crate) async fn load_aws_config(
    settings: AwsSettings<'_>,
) -> Result<AwsConfig, CredentialsError> {
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
    if let Some(region) = settings.region {
        loader = loader.region(aws_config::Region::new(region.to_string()));
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
        let config = load_aws_config(AwsSettings {
            region: Some("eu-west-3"),
            endpoint_url: Some("http://127.0.0.1:4566"),
            region_setting: "a region setting",
        })
        .await
        .unwrap();
        assert_eq!(config.region, "eu-west-3");
        assert_eq!(config.sdk.endpoint_url(), Some("http://127.0.0.1:4566"));
    }
}
