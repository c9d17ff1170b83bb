//! The `deploy:<target>` stage for `ecs:` targets: hands `crate::deploy::ecs` the target with
//! its task definition file read and resolved and each container's pushed digest, journals the
//! deploy's checkpoints as they happen (a resumed run re-attaches to the deployment this one
//! started) and records the outcome, on failure too.

use async_trait::async_trait;
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::cluster_deploy::{JournalingObserver, record_end};
use super::pinned_images::{ImageRefs, pinned_images};
use super::{
    FailureKind, Outputs, PreviewInput, StageContext, StageExecutor, StageFailure, StageInput,
    StageOutputs,
};
use crate::deploy::ecs::{
    self, EcsCheckpoint, EcsClients, EcsDeployError, EcsDeployOutcome, EcsDeploySpec, EcsErrorKind,
    TaskDefinitionSource,
};
use crate::pipeline::Pipeline;
use crate::pipeline::interpolate::{Values, interpolate_value};
use crate::pipeline::model::{DeployTarget, EcsTarget, TargetKind};
use crate::pipeline::path::DocPath;
use crate::plan::{StageId, StageKind};
use crate::stages::AwsIdentity;

pub struct EcsDeployStage;

fn ecs_target(target: &DeployTarget) -> Result<&EcsTarget, StageFailure> {
    match &target.kind {
        TargetKind::Ecs(ecs) => Ok(ecs),
        other => Err(StageFailure::failed(format!(
            "an ecs deploy was handed a {} target",
            other.key()
        ))),
    }
}

/// The task definition the target starts from: `current`, or its file read, parsed and
/// resolved. A file that is missing or not JSON is the pipeline's mistake (`Invalid`).
fn task_definition(
    pipeline: &Pipeline,
    ecs: &EcsTarget,
    values: &Values,
) -> Result<TaskDefinitionSource, StageFailure> {
    if ecs.uses_current_task_definition() {
        return Ok(TaskDefinitionSource::Current);
    }
    let file = &ecs.task_definition;
    let text = read_task_definition(pipeline, file)?;
    let document: Value = serde_json::from_str(&text).map_err(|err| {
        StageFailure::invalid(format!(
            "{file}:{}:{}: the task definition is not JSON: {err}",
            err.line(),
            err.column()
        ))
        .with_hint("write the register-task-definition input or the describe-task-definition output as JSON")
    })?;
    let document = interpolate_value(&document, values, &DocPath::root())
        .map_err(|(at, message)| StageFailure::invalid(format!("{file}, at {at}: {message}")))?;
    Ok(TaskDefinitionSource::File {
        path: file.clone(),
        document,
    })
}

fn read_task_definition(pipeline: &Pipeline, file: &str) -> Result<String, StageFailure> {
    let path = pipeline.resolve_path(file);
    std::fs::read_to_string(&path).map_err(|err| {
        StageFailure::invalid(format!("failed to read the task definition {file}: {err}"))
            .with_hint("task_definition is a JSON file relative to the pipeline file, or `current`")
    })
}

/// The deploy's request, with each container's image from `refs`.
fn spec(
    pipeline: &Pipeline,
    target_name: &str,
    run_id: &str,
    target: &DeployTarget,
    values: &Values,
    refs: &ImageRefs<'_>,
) -> Result<EcsDeploySpec, StageFailure> {
    let ecs = ecs_target(target)?;
    let images = pinned_images(target_name, ecs.container_images(&target.image), refs)?;
    Ok(EcsDeploySpec {
        pipeline: pipeline.file.name.clone(),
        target: target_name.to_owned(),
        run_id: run_id.to_owned(),
        git_sha: values.git.get("sha").cloned(),
        config: ecs.clone(),
        task_definition: task_definition(pipeline, ecs, values)?,
        images,
    })
}

/// The spec of a stage looked at before its images exist: the placeholders of `values` stand
/// in for their references.
fn spec_ahead(input: &PreviewInput<'_>) -> Result<EcsDeploySpec, StageFailure> {
    let target = input.config.deploy()?;
    spec(
        input.pipeline,
        &input.id.name,
        "plan",
        target,
        input.values,
        &ImageRefs::Planned(input.values),
    )
}

fn run_spec(input: &StageInput<'_>) -> Result<EcsDeploySpec, StageFailure> {
    let target = input.config.deploy()?;
    spec(
        input.pipeline,
        &input.id.name,
        input.run_id,
        target,
        input.values,
        &ImageRefs::Pushed(input.upstream),
    )
}

/// A rollback's request: the target as configured now, and the task definition and images an
/// earlier run deployed (the run `shipit rollback` chose, handed over as the upstream
/// `deploy:<target>` outputs).
fn rollback_spec(input: &StageInput<'_>) -> Result<(EcsDeploySpec, String), StageFailure> {
    let target = input.config.deploy()?;
    let earlier = input
        .upstream
        .get(&StageId::deploy(&input.id.name))
        .and_then(EcsDeployOutcome::from_outputs)
        .ok_or_else(|| {
            StageFailure::failed(format!(
                "{}: the run to return to recorded no task definition",
                input.id
            ))
        })?;
    let spec = EcsDeploySpec {
        pipeline: input.pipeline.file.name.clone(),
        target: input.id.name.clone(),
        run_id: input.run_id.to_owned(),
        git_sha: input.values.git.get("sha").cloned(),
        config: ecs_target(target)?.clone(),
        task_definition: TaskDefinitionSource::Current,
        images: earlier.images.clone(),
    };
    Ok((spec, earlier.task_definition_arn))
}

async fn clients(spec: &EcsDeploySpec, aws: &AwsIdentity) -> Result<EcsClients, StageFailure> {
    EcsClients::connect(&spec.config, aws)
        .await
        .map_err(|err| failure(err).0)
}

/// The stage's failure for a deploy error, and the outcome to journal with it.
fn failure(err: EcsDeployError) -> (StageFailure, Option<EcsDeployOutcome>) {
    let kind = match err.kind {
        EcsErrorKind::Config => FailureKind::Invalid,
        EcsErrorKind::Remote | EcsErrorKind::CompetingDeploy => FailureKind::Failed,
        EcsErrorKind::RolledBack => FailureKind::RolledBack,
        EcsErrorKind::TimedOut => FailureKind::TimedOut,
        EcsErrorKind::Cancelled => FailureKind::Interrupted,
    };
    let failure = StageFailure {
        kind,
        message: err.message,
        hint: err.hint,
    };
    (failure, err.outcome.map(|outcome| *outcome))
}

#[async_trait]
impl StageExecutor for EcsDeployStage {
    async fn fingerprint(&self, input: &StageInput<'_>) -> Result<Value, StageFailure> {
        // The task definition file's text: a changed file is a new deploy.
        let ecs = ecs_target(input.config.deploy()?)?;
        if ecs.uses_current_task_definition() || input.id.kind == StageKind::Rollback {
            return Ok(Value::Null);
        }
        let text = read_task_definition(input.pipeline, &ecs.task_definition)?;
        Ok(Value::String(format!(
            "sha256:{}",
            hex::encode(Sha256::digest(text.as_bytes()))
        )))
    }

    async fn outputs_exist(
        &self,
        input: &StageInput<'_>,
        outputs: &Outputs,
    ) -> Result<bool, StageFailure> {
        let Some(deployed) = EcsDeployOutcome::from_outputs(outputs) else {
            return Ok(false);
        };
        let spec = run_spec(input)?;
        let clients = clients(&spec, input.aws).await?;
        ecs::still_deployed(&clients, &spec, &deployed)
            .await
            .map_err(|err| failure(err).0)
    }

    async fn run(
        &self,
        input: &StageInput<'_>,
        context: &StageContext<'_>,
    ) -> Result<(), StageFailure> {
        let (spec, return_to) = if input.id.kind == StageKind::Rollback {
            let (spec, to) = rollback_spec(input)?;
            (spec, Some(to))
        } else {
            (run_spec(input)?, None)
        };
        let clients = clients(&spec, input.aws).await?;
        let previous = EcsCheckpoint::from_outputs(&context.previous_attempt)
            .filter(|checkpoint| *checkpoint != EcsCheckpoint::default());
        if previous.is_some() {
            context
                .sink
                .progress("re-attaching to the deployment the interrupted attempt started");
        }
        let observer = JournalingObserver { sink: context.sink };
        let cancel = context.cancel.clone();
        let deployed = match &return_to {
            Some(arn) => {
                ecs::roll_back(&clients, &spec, arn, previous.as_ref(), &observer, cancel).await
            }
            None => ecs::deploy(&clients, &spec, previous.as_ref(), &observer, cancel).await,
        };
        record_end(context, deployed.map_err(failure)).await
    }

    async fn preview(&self, input: &PreviewInput<'_>) -> Vec<String> {
        let spec = match spec_ahead(input) {
            Ok(spec) => spec,
            Err(failure) => return vec![failure.message],
        };
        let clients = match clients(&spec, input.aws).await {
            Ok(clients) => clients,
            Err(failure) => return vec![format!("cannot preview the deploy: {}", failure.message)],
        };
        match ecs::preview(&clients, &spec).await {
            Ok(lines) => lines,
            Err(err) => vec![format!("cannot preview the deploy: {}", err.message)],
        }
    }

    async fn preflight(&self, input: &PreviewInput<'_>) -> Result<(), StageFailure> {
        let spec = spec_ahead(input)?;
        let clients = clients(&spec, input.aws).await?;
        ecs::preflight(&clients, &spec)
            .await
            .map_err(|err| failure(err).0)
    }
}
