//! The AWS clients an ECS deploy uses, all built from the one shared AWS configuration (the
//! run's identity, then the target's region and endpoint): ECS, CodeDeploy for blue/green,
//! CloudWatch Logs for the last lines of a failed container, ELB for target health.

use crate::credentials::aws::{AwsIdentity, AwsSettings, load_aws_config};
use crate::pipeline::model::EcsTarget;

use super::error::EcsDeployError;

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
        Ok(EcsClients {
            ecs: aws_sdk_ecs::Client::new(&config.sdk),
            codedeploy: aws_sdk_codedeploy::Client::new(&config.sdk),
            logs: aws_sdk_cloudwatchlogs::Client::new(&config.sdk),
            elb: aws_sdk_elasticloadbalancingv2::Client::new(&config.sdk),
            region: config.region,
        })
    }
}
