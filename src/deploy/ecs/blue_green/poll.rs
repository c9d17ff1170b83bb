//! The calls of one look at a deployment: GetDeployment every time, and the ECS target
//! (lifecycle events, task sets and traffic) through ListDeploymentTargets once, then
//! GetDeploymentTarget when the loop asks for it.

use super::super::EcsClients;
use super::snapshot::{DeploymentView, TargetView};
use crate::deploy::aws_failure::AwsFailure;

pub(crate) struct Poller<'a> {
    clients: &'a EcsClients,
    deployment_id: &'a str,
    /// The deployment's ECS target (`cluster:service`), once CodeDeploy lists it.
    target_id: Option<String>,
}

impl<'a> Poller<'a> {
    pub(crate) fn new(clients: &'a EcsClients, deployment_id: &'a str) -> Self {
        Poller {
            clients,
            deployment_id,
            target_id: None,
        }
    }

    /// GetDeployment: one call.
    pub(crate) async fn deployment(&self) -> Result<DeploymentView, AwsFailure> {
        let output = self
            .clients
            .codedeploy
            .get_deployment()
            .deployment_id(self.deployment_id)
            .send()
            .await
            .map_err(|err| AwsFailure::from_sdk("codedeploy:GetDeployment", &err))?;
        let info = output.deployment_info().ok_or_else(|| AwsFailure {
            action: "codedeploy:GetDeployment".into(),
            code: None,
            message: format!("no information about deployment {}", self.deployment_id),
            transport: false,
            no_credentials: false,
        })?;
        Ok(DeploymentView::from_sdk(info))
    }

    /// The calls `target` makes next: two until the target is known.
    pub(crate) fn target_calls(&self) -> usize {
        if self.target_id.is_some() { 1 } else { 2 }
    }

    /// The ECS target, None while CodeDeploy has not listed it yet.
    pub(crate) async fn target(&mut self) -> Result<Option<TargetView>, AwsFailure> {
        let target_id = match &self.target_id {
            Some(id) => id.clone(),
            None => {
                let listed = self
                    .clients
                    .codedeploy
                    .list_deployment_targets()
                    .deployment_id(self.deployment_id)
                    .send()
                    .await
                    .map_err(|err| {
                        AwsFailure::from_sdk("codedeploy:ListDeploymentTargets", &err)
                    })?;
                let Some(id) = listed.target_ids().first() else {
                    return Ok(None);
                };
                self.target_id = Some(id.clone());
                id.clone()
            }
        };
        let output = self
            .clients
            .codedeploy
            .get_deployment_target()
            .deployment_id(self.deployment_id)
            .target_id(target_id)
            .send()
            .await
            .map_err(|err| AwsFailure::from_sdk("codedeploy:GetDeploymentTarget", &err))?;
        Ok(output
            .deployment_target()
            .and_then(|target| target.ecs_target())
            .map(TargetView::from_sdk))
    }
}
