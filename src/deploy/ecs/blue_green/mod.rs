//! Blue/green through AWS CodeDeploy (services whose deployment controller is CODE_DEPLOY).
//!
//! Files: `deployment_group` (the group, checked before anything changes), `appspec` (what the
//! deployment runs), `start` (CreateDeployment once, or adopting the one an interrupted attempt
//! created), `follow` (the wait loop) with `poll` (its calls), `snapshot` (what a poll saw, as
//! plain data), `gate` (the verdict), `progress` (the lines people read), `reroute`
//! (ContinueDeployment, for `reroute: continue` and `shipit approve`), `stop` (the deadline's
//! stop with rollback), `outcome` (what is recorded); SDK errors are read by `super::aws_failure`, shared with the rolling deploy.

mod appspec;
mod deployment_group;
mod follow;
mod gate;
mod outcome;
mod poll;
mod progress;
mod reroute;
mod snapshot;
mod start;
mod stop;

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::{
    EcsCheckpoint, EcsClients, EcsDeployError, EcsDeployOutcome, EcsDeploySpec, EcsObserver,
};
use crate::pipeline::model::CodeDeployTarget;

const DEFAULT_TIMEOUT: Duration = Duration::from_secs(15 * 60);
const DEFAULT_NO_PROGRESS_TIMEOUT: Duration = Duration::from_secs(5 * 60);

/// Rolls `checkpoint.task_definition_arn` out on `service` through a CodeDeploy deployment
/// (created, or re-attached to when `checkpoint.codedeploy_deployment_id` is set) and follows
/// it to its end. `registered` says whether this deploy registered that revision.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn deploy(
    clients: &EcsClients,
    spec: &EcsDeploySpec,
    service: &aws_sdk_ecs::types::Service,
    mut checkpoint: EcsCheckpoint,
    registered: bool,
    observer: &dyn EcsObserver,
    cancel: CancellationToken,
) -> Result<EcsDeployOutcome, EcsDeployError> {
    let fail = |checkpoint: &EcsCheckpoint,
                last: Option<&snapshot::Snapshot>,
                err: EcsDeployError| {
        let outcome = outcome::blue_green_outcome(spec, checkpoint, registered, last, Some(&err));
        err.with_outcome(outcome)
    };

    let group = match deployment_group::read_deployment_group(clients, spec).await {
        Ok(group) => group,
        Err(err) => return Err(fail(&checkpoint, None, err)),
    };
    let deployment_id =
        match start_or_attach(clients, spec, service, &group, &mut checkpoint, observer).await {
            Ok(id) => id,
            Err(err) => return Err(fail(&checkpoint, None, err)),
        };

    let settings = follow::FollowSettings {
        timeout: spec.config.timeout.map_or(DEFAULT_TIMEOUT, |t| t.get()),
        no_progress_timeout: spec
            .config
            .no_progress_timeout
            .map_or(DEFAULT_NO_PROGRESS_TIMEOUT, |t| t.get()),
        reroute: spec
            .config
            .codedeploy
            .as_ref()
            .map(|c| c.reroute)
            .unwrap_or_default(),
        target: spec.target.clone(),
        reroute_wait_minutes: group.reroute_wait_minutes,
    };
    let followed = follow::follow(clients, &deployment_id, &settings, observer, &cancel).await;
    match followed.result {
        Ok(()) => Ok(outcome::blue_green_outcome(
            spec,
            &checkpoint,
            registered,
            followed.last.as_ref(),
            None,
        )),
        Err(err) => Err(fail(&checkpoint, followed.last.as_ref(), err)),
    }
}

/// The deployment to follow: the journaled one, the one an interrupted attempt of this run
/// created, or a new one. Each id is journaled before the wait starts.
async fn start_or_attach(
    clients: &EcsClients,
    spec: &EcsDeploySpec,
    service: &aws_sdk_ecs::types::Service,
    group: &deployment_group::DeploymentGroup,
    checkpoint: &mut EcsCheckpoint,
    observer: &dyn EcsObserver,
) -> Result<String, EcsDeployError> {
    if let Some(id) = &checkpoint.codedeploy_deployment_id {
        observer.on_progress(&format!("re-attaching to CodeDeploy deployment {id}"));
        return Ok(id.clone());
    }
    if checkpoint.update_requested_at.is_some()
        && let Some(id) = start::find_own_deployment(clients, group, spec).await?
    {
        observer.on_progress(&format!(
            "re-attaching to CodeDeploy deployment {id}, started by an interrupted attempt of this run"
        ));
        checkpoint.codedeploy_deployment_id = Some(id.clone());
        journal(observer, checkpoint, &id).await?;
        return Ok(id);
    }

    let task_definition_arn = checkpoint.task_definition_arn.clone().ok_or_else(|| {
        EcsDeployError::config("no task definition to roll out was registered or chosen")
    })?;
    let default_config = CodeDeployTarget::default();
    let config = spec.config.codedeploy.as_ref().unwrap_or(&default_config);
    let app_spec = appspec::app_spec(&task_definition_arn, config, service)?;

    // Journaled before the call: a run killed between the call and the next journal write
    // finds its deployment by description instead of starting a second one.
    checkpoint.update_requested_at = Some(chrono::Utc::now().to_rfc3339());
    observer.on_checkpoint(checkpoint).await.map_err(|err| {
        EcsDeployError::remote(format!(
            "could not journal the deploy before starting it: {err}"
        ))
    })?;
    let id = start::create_deployment(clients, group, spec, &app_spec).await?;
    checkpoint.codedeploy_deployment_id = Some(id.clone());
    observer.on_progress(&format!(
        "CodeDeploy deployment {id} started (application {}, group {})",
        group.application, group.name
    ));
    journal(observer, checkpoint, &id).await?;
    Ok(id)
}

async fn journal(
    observer: &dyn EcsObserver,
    checkpoint: &EcsCheckpoint,
    deployment_id: &str,
) -> Result<(), EcsDeployError> {
    observer.on_checkpoint(checkpoint).await.map_err(|err| {
        EcsDeployError::remote(format!(
            "CodeDeploy deployment {deployment_id} goes on, but could not be journaled: {err}"
        ))
        .with_hint("resume the run: it finds the deployment by its description")
    })
}

/// Lets a deployment waiting for its production traffic reroute go on (`shipit approve`).
pub async fn approve_reroute(
    clients: &EcsClients,
    deployment_id: &str,
) -> Result<(), EcsDeployError> {
    reroute::approve(clients, deployment_id).await
}
