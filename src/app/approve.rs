//! `shipit approve deploy:<target>`: lets a blue/green deploy that waits for its production
//! traffic reroute go on. The deployment is the one the target's running deploy journaled.

use super::aws_identity::aws_identity;
use super::lookahead::resolve_ahead;
use super::values::base_values;
use super::{AppError, EnvVars, Workspace};
use crate::deploy::ecs::{self, EcsCheckpoint, EcsClients};
use crate::journal::StageStatus;
use crate::pipeline::Pipeline;
use crate::pipeline::model::TargetKind;
use crate::plan::StageId;
use crate::stages::StageOutputs;

/// What was approved: the CodeDeploy deployment and the run deploying it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Approved {
    pub run_id: String,
    pub deployment_id: String,
}

pub async fn approve(
    workspace: &Workspace,
    pipeline: &Pipeline,
    target: &str,
    env: &EnvVars,
) -> Result<Approved, AppError> {
    let stage = StageId::deploy(target);
    match pipeline.file.deploy.get(target).map(|t| &t.kind) {
        Some(TargetKind::Ecs(_)) => {}
        Some(other) => {
            return Err(AppError::invalid(format!(
                "deploy target `{target}` deploys to {}; only ECS blue/green deploys wait for an approval",
                other.key()
            )));
        }
        None => {
            return Err(AppError::invalid(format!(
                "the pipeline has no deploy target `{target}`"
            )));
        }
    }
    let runs = workspace.store.runs_of(&pipeline.file.name).await?;
    let waiting = runs.iter().find_map(|run| {
        let record = run.stage(&stage)?;
        if record.status != StageStatus::Running {
            return None;
        }
        let checkpoint = EcsCheckpoint::from_outputs(&record.outputs)?;
        Some((run.run_id.clone(), checkpoint.codedeploy_deployment_id?))
    });
    let Some((run_id, deployment_id)) = waiting else {
        return Err(AppError::invalid(format!(
            "no run is deploying {stage} through CodeDeploy right now"
        ))
        .with_hint(
            "`shipit runs` lists the runs; approve while the deploy says it waits for the reroute",
        ));
    };
    let (values, _) = base_values(pipeline, &run_id, env).map_err(AppError::invalid)?;
    let (aws, _) = aws_identity(pipeline, &values, &run_id)?;
    let config = resolve_ahead(pipeline, &stage, &values).map_err(AppError::invalid)?;
    let target_config = config
        .deploy()
        .map_err(|failure| AppError::invalid(failure.message))?;
    let TargetKind::Ecs(ecs_config) = &target_config.kind else {
        return Err(AppError::invalid(format!("{stage} is not an ECS target")));
    };
    let clients = EcsClients::connect(ecs_config, &aws)
        .await
        .map_err(app_error)?;
    ecs::approve_reroute(&clients, &deployment_id)
        .await
        .map_err(app_error)?;
    Ok(Approved {
        run_id,
        deployment_id,
    })
}

/// A deploy error as the command's: the configuration's (exit 2) or AWS's (exit 1).
fn app_error(err: ecs::EcsDeployError) -> AppError {
    let error = match err.kind {
        ecs::EcsErrorKind::Config => AppError::invalid(err.message),
        _ => AppError::failed(err.message),
    };
    match err.hint {
        Some(hint) => error.with_hint(hint),
        None => error,
    }
}
