//! The credentials a registry host gets when a build pulls a base image from it.

use oci_client::secrets::RegistryAuth;

use super::aws::{AwsIdentity, AwsSettings};
use super::docker_config::docker_config_auth;
use super::ecr_host::{ecr_host_region, registry_host_from_env};
use super::ecr_token::EcrContext;
use super::error::CredentialsError;

/// Credentials for pulling from `host`: the Docker config's, and for an Amazon ECR registry
/// the config has nothing for (`<account>.dkr.ecr.<region>.amazonaws.com`, or the host
/// `SHIPIT_ECR_REGISTRY_HOST` names) a token from the AWS credential chain, so a `FROM` an ECR
/// repository needs no `docker login` first. The token is bought with `identity`'s credentials.
pub(crate) async fn pull_credentials(
    host: &str,
    identity: &AwsIdentity,
) -> Result<RegistryAuth, CredentialsError> {
    let configured = docker_config_auth(host).await?;
    if configured != RegistryAuth::Anonymous {
        return Ok(configured);
    }
    let region = ecr_host_region(host);
    let overridden = registry_host_from_env().is_some_and(|named| named.eq_ignore_ascii_case(host));
    if region.is_none() && !overridden {
        return Ok(RegistryAuth::Anonymous);
    }
    let aws = AwsSettings {
        region: region.as_deref(),
        endpoint_url: None,
        region_setting: "an ECR registry host that names its region",
    };
    let named = region.is_some().then_some(host);
    let ecr = EcrContext::load(aws, identity, named).await?;
    let token = ecr.token(false).await?;
    Ok(RegistryAuth::Basic(token.user, token.password))
}
