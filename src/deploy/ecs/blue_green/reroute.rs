//! Letting a deployment that waits in `Ready` reroute production traffic to the new task set
//! (ContinueDeployment with READY_WAIT): `reroute: continue` does it at once, `shipit approve`
//! does it for a person.

use aws_sdk_codedeploy::types::DeploymentWaitType;

use super::super::{EcsClients, EcsDeployError};
use super::poll::Poller;
use crate::deploy::aws_failure::AwsFailure;

/// ContinueDeployment(READY_WAIT) on `deployment_id`.
pub(crate) async fn continue_to_production(
    clients: &EcsClients,
    deployment_id: &str,
) -> Result<(), AwsFailure> {
    clients
        .codedeploy
        .continue_deployment()
        .deployment_id(deployment_id)
        .deployment_wait_type(DeploymentWaitType::ReadyWait)
        .send()
        .await
        .map(|_| ())
        .map_err(|err| AwsFailure::from_sdk("codedeploy:ContinueDeployment", &err))
}

/// `shipit approve`: reroutes a waiting deployment, or says why it cannot.
pub(crate) async fn approve(
    clients: &EcsClients,
    deployment_id: &str,
) -> Result<(), EcsDeployError> {
    let Err(failure) = continue_to_production(clients, deployment_id).await else {
        return Ok(());
    };
    if failure.is("DeploymentDoesNotExistException") || failure.is("InvalidDeploymentIdException") {
        return Err(EcsDeployError::remote(format!(
            "no CodeDeploy deployment {deployment_id} in region {}",
            clients.region
        )));
    }
    if !(failure.is("DeploymentIsNotInReadyStateException")
        || failure.is("DeploymentAlreadyCompletedException"))
    {
        return Err(failure.into_error());
    }
    // Say where the deployment is instead, when it can be read.
    let status = Poller::new(clients, deployment_id)
        .deployment()
        .await
        .map(|deployment| deployment.status)
        .unwrap_or_else(|_| "unknown".to_string());
    Err(not_waiting(deployment_id, &status))
}

pub(crate) fn not_waiting(deployment_id: &str, status: &str) -> EcsDeployError {
    EcsDeployError::remote(format!(
        "CodeDeploy deployment {deployment_id} is not waiting for its production traffic reroute: its status is {status}"
    ))
    .with_hint("only a deployment in status Ready (its deployment group waits before rerouting) can be approved")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deploy::ecs::EcsErrorKind;

    #[test]
    fn approving_a_deployment_that_does_not_wait_says_its_status() {
        let err = not_waiting("d-1", "Succeeded");
        assert_eq!(err.kind, EcsErrorKind::Remote);
        assert_eq!(
            err.message,
            "CodeDeploy deployment d-1 is not waiting for its production traffic reroute: its status is Succeeded"
        );
    }
}
