//! `shipit down`: takes docker targets down (what `docker compose down` is to compose), as a
//! run of its own: journaled like any other, one `down:<target>` stage per target, each
//! holding its target so that no deploy of it runs meanwhile.

use super::masking::Guards;
use super::run::{RunOutcome, execute_action, new_record};
use super::run_secrets::run_secrets;
use super::values::base_values;
use super::{AppError, EnvVars, Stop, Workspace};
use crate::deploy::docker::{TakeDownPreview, preview_take_down};
use crate::journal::RunStore;
use crate::journal::new_run_id;
use crate::pipeline::Pipeline;
use crate::pipeline::model::TargetKind;
use crate::plan::{Selection, StageGraph};
use crate::report::Reporter;
use crate::stages::AwsIdentity;

/// The docker targets `shipit down` acts on: the ones named, or every docker target.
pub fn take_down_targets(pipeline: &Pipeline, named: &[String]) -> Result<Vec<String>, AppError> {
    let docker_targets: Vec<String> = pipeline
        .file
        .deploy
        .iter()
        .filter(|(_, target)| matches!(target.kind, TargetKind::Docker(_)))
        .map(|(name, _)| name.clone())
        .collect();
    if named.is_empty() {
        if docker_targets.is_empty() {
            return Err(AppError::invalid(format!(
                "pipeline {} has no docker deploy targets to take down",
                pipeline.file.name
            )));
        }
        return Ok(docker_targets);
    }
    for name in named {
        match pipeline.file.deploy.get(name) {
            None => {
                return Err(AppError::invalid(format!(
                    "the pipeline has no deploy target `{name}`"
                ))
                .with_hint(format!(
                    "its docker targets are: {}",
                    docker_targets.join(", ")
                )));
            }
            Some(target) if !matches!(target.kind, TargetKind::Docker(_)) => {
                return Err(AppError::invalid(format!(
                    "deploy target `{name}` deploys to {}; `shipit down` takes docker targets down",
                    target.kind.key()
                )));
            }
            Some(_) => {}
        }
    }
    Ok(named.to_vec())
}

/// Takes `targets` down (every docker target when empty) and journals it as a run.
pub async fn down(
    workspace: &Workspace,
    pipeline: Pipeline,
    targets: &[String],
    env: EnvVars,
    reporter: &dyn Reporter,
    stop: &Stop,
) -> Result<RunOutcome, AppError> {
    let secrets = run_secrets(&pipeline, &env);
    let guards = Guards::new(&secrets, workspace, reporter);
    guards.result(take_down(workspace, pipeline, targets, env, &guards, stop).await)
}

async fn take_down(
    workspace: &Workspace,
    pipeline: Pipeline,
    targets: &[String],
    env: EnvVars,
    guards: &Guards<'_>,
    stop: &Stop,
) -> Result<RunOutcome, AppError> {
    let targets = take_down_targets(&pipeline, targets)?;
    let graph = StageGraph::for_take_down(&targets);
    let run_id = new_run_id(chrono::Utc::now());
    let (values, git) = base_values(&pipeline, &run_id, &env).map_err(AppError::invalid)?;
    let mut record = new_record(&pipeline, &graph, &run_id, Selection::default(), git);
    guards.store.create(&mut record).await?;
    let _hold = guards.store.lock_run(&run_id).await?;
    // Taking docker targets down makes no AWS call.
    let aws = AwsIdentity::credential_chain();
    Ok(execute_action(
        workspace, guards, &pipeline, &graph, values, aws, record, stop,
    )
    .await)
}

/// What `shipit down` would remove, per target; removes nothing (`--dry-run`).
pub async fn preview_down(
    pipeline: &Pipeline,
    targets: &[String],
) -> Result<Vec<(String, TakeDownPreview)>, AppError> {
    let targets = take_down_targets(pipeline, targets)?;
    let client = crate::docker::connect().await.map_err(|err| {
        AppError::invalid(format!("failed to reach the Docker daemon: {err}"))
            .with_hint("start Docker, or point DOCKER_HOST at a running daemon")
    })?;
    let mut previews = Vec::new();
    for target in targets {
        let preview = preview_take_down(client.bollard(), &pipeline.file.name, &target)
            .await
            .map_err(AppError::invalid)?;
        previews.push((target, preview));
    }
    Ok(previews)
}
