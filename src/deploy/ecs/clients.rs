//! The AWS clients an ECS deploy uses, all built from the one shared AWS configuration (the
//! run's identity, then the target's region and endpoint): ECS, CodeDeploy for blue/green,
//! CloudWatch Logs for the last lines of a failed container, ELB for target health.

use crate::credentials::aws::{AwsIdentity, AwsSettings, load_aws_config};
use crate::pipeline::model::EcsTarget;

use aws_config::retry::RetryConfig;

use super::error::EcsDeployError;

/// Attempts per call, the first included.
const MAX_ATTEMPTS: u32 = 5;

#[derive(Debug, Clone)]
pub struct EcsClients {
    pub ecs: aws_sdk_ecs::Client,
    pub codedeploy: aws_sdk_codedeploy::Client,
    pub logs: aws_sdk_cloudwatchlogs::Client,
    pub elb: aws_sdk_elasticloadbalancingv2::Client,
    /// The region the clients call.
    pub region: String,
}

impl EcsClients {
    /// The clients for `target`, signing as `identity`. Credentials are resolved by the first
    /// call, so this fails only when no region can be found.
    pub async fn connect(
        target: &EcsTarget,
        identity: &AwsIdentity,
    ) -> Result<EcsClients, EcsDeployError> {
        let settings = AwsSettings {
            region: target.region.as_deref(),
            endpoint_url: target.endpoint_url.as_deref(),
            region_setting: "`ecs.region` in the deploy target, or the `aws:` block's region",
        };
        let config = load_aws_config(settings, identity)
            .await
            .map_err(|err| EcsDeployError::config(err.to_string()))?;
        // A deploy's calls are few and matter: ride out a burst of throttling (backing off
        // with jitter) rather than fail a deploy on the SDK's default three attempts.
        let sdk = config
            .sdk
            .to_builder()
            .retry_config(RetryConfig::standard().with_max_attempts(MAX_ATTEMPTS))
            .build();
        Ok(EcsClients {
            ecs: aws_sdk_ecs::Client::new(&sdk),
            codedeploy: aws_sdk_codedeploy::Client::new(&sdk),
            logs: aws_sdk_cloudwatchlogs::Client::new(&sdk),
            elb: aws_sdk_elasticloadbalancingv2::Client::new(&sdk),
            region: config.region,
        })
    }
}
