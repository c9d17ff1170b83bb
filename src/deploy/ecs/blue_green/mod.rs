//! Blue/green through AWS CodeDeploy (services whose deployment controller is CODE_DEPLOY).
//! Being written in this change; see the issue.

mod appspec;
mod gate;
mod progress;
mod snapshot;

use tokio_util::sync::CancellationToken;

use super::{
    EcsCheckpoint, EcsClients, EcsDeployError, EcsDeployOutcome, EcsDeploySpec, EcsObserver,
};

/// Rolls `checkpoint.task_definition_arn` out on `service` through a CodeDeploy deployment
/// (created, or re-attached to when `checkpoint.codedeploy_deployment_id` is set) and follows
/// it to its end. `registered` says whether this deploy registered that revision.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn deploy(
    _clients: &EcsClients,
    _spec: &EcsDeploySpec,
    _service: &aws_sdk_ecs::types::Service,
    _checkpoint: EcsCheckpoint,
    _registered: bool,
    _observer: &dyn EcsObserver,
    _cancel: CancellationToken,
) -> Result<EcsDeployOutcome, EcsDeployError> {
    Err(EcsDeployError::config(
        "blue/green deploys are being written",
    ))
}

/// Lets a deployment waiting for its production traffic reroute go on (`shipit approve`).
pub async fn approve_reroute(
    _clients: &EcsClients,
    _deployment_id: &str,
) -> Result<(), EcsDeployError> {
    Err(EcsDeployError::config(
        "blue/green deploys are being written",
    ))
}
