//! The `deploy:<target>` stage for `eks:` targets: reads the manifests (files and globs),
//! resolves the expressions in their string values, pins each container to its pushed digest,
//! reaches the cluster and hands `crate::deploy::eks` the rest; journals the deploy's
//! checkpoints as they happen and its outcome, on failure too.

use std::path::Path;

use async_trait::async_trait;
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::cluster_deploy::{JournalingObserver, record_end};
use super::pinned_images::{ImageRefs, pinned_images};
use super::{
    FailureKind, Outputs, PreviewInput, StageContext, StageExecutor, StageFailure, StageInput,
    StageOutputs,
};
use crate::deploy::eks::{
    self, ClusterAccess, EksCheckpoint, EksDeployError, EksDeployOutcome, EksDeploySpec,
    EksErrorKind, ManifestDocument,
};
use crate::pipeline::Pipeline;
use crate::pipeline::interpolate::{Values, interpolate_value};
use crate::pipeline::model::{DeployTarget, EksTarget, TargetKind};
use crate::pipeline::path::DocPath;
use crate::plan::{StageId, StageKind};
use crate::stages::AwsIdentity;

pub struct EksDeployStage;

fn eks_target(target: &DeployTarget) -> Result<&EksTarget, StageFailure> {
    match &target.kind {
        TargetKind::Eks(eks) => Ok(eks),
        other => Err(StageFailure::failed(format!(
            "an eks deploy was handed a {} target",
            other.key()
        ))),
    }
}

/// The manifest files the target names, in the order named; a glob's matches sorted. A glob
/// that matches nothing, or a file that cannot be read, is the pipeline's mistake.
fn manifest_files(
    pipeline: &Pipeline,
    eks: &EksTarget,
) -> Result<Vec<(String, String)>, StageFailure> {
    let mut files = Vec::new();
    for pattern in &eks.manifests {
        let paths: Vec<std::path::PathBuf> = if pattern.contains(['*', '?', '[']) {
            let full = pipeline.resolve_path(pattern);
            let matches = glob::glob(&full.to_string_lossy()).map_err(|err| {
                StageFailure::invalid(format!("`{pattern}` is not a valid glob: {err}"))
            })?;
            let mut found: Vec<_> = matches.filter_map(Result::ok).collect();
            found.sort();
            if found.is_empty() {
                return Err(StageFailure::invalid(format!(
                    "the manifest glob `{pattern}` matches no file"
                )));
            }
            found
        } else {
            vec![pipeline.resolve_path(pattern)]
        };
        for path in paths {
            let text = std::fs::read_to_string(&path).map_err(|err| {
                StageFailure::invalid(format!(
                    "failed to read the manifest {}: {err}",
                    relative(pipeline, &path)
                ))
            })?;
            files.push((relative(pipeline, &path), text));
        }
    }
    Ok(files)
}

/// `path` as the pipeline names it: relative to the pipeline file's folder.
fn relative(pipeline: &Pipeline, path: &Path) -> String {
    path.strip_prefix(&pipeline.base_dir)
        .unwrap_or(path)
        .display()
        .to_string()
}

/// Every document of the manifests, parsed, with the `${{ … }}` of its string values resolved.
fn documents(
    pipeline: &Pipeline,
    eks: &EksTarget,
    values: &Values,
) -> Result<Vec<ManifestDocument>, StageFailure> {
    let mut documents = Vec::new();
    for (file, text) in manifest_files(pipeline, eks)? {
        for mut document in eks::parse_manifest(&file, &text).map_err(|err| failure(err).0)? {
            document.object = interpolate_value(&document.object, values, &DocPath::root())
                .map_err(|(at, message)| {
                    StageFailure::invalid(format!(
                        "{file}, document {}, at {at}: {message}",
                        document.index
                    ))
                })?;
            documents.push(document);
        }
    }
    Ok(documents)
}

/// The deploy's request, with each container's image from `refs`.
fn spec(
    pipeline: &Pipeline,
    target_name: &str,
    run_id: &str,
    target: &DeployTarget,
    values: &Values,
    refs: &ImageRefs<'_>,
) -> Result<EksDeploySpec, StageFailure> {
    let eks = eks_target(target)?;
    Ok(EksDeploySpec {
        pipeline: pipeline.file.name.clone(),
        target: target_name.to_owned(),
        run_id: run_id.to_owned(),
        git_sha: values.git.get("sha").cloned(),
        config: eks.clone(),
        base_dir: pipeline.base_dir.clone(),
        documents: documents(pipeline, eks, values)?,
        images: pinned_images(target_name, eks.container_images(&target.image), refs)?,
        smoke_job: smoke_job(pipeline, eks, values)?,
    })
}

/// Blue/green's smoke-check Job, read and resolved like the manifests: one document, a Job.
fn smoke_job(
    pipeline: &Pipeline,
    eks: &EksTarget,
    values: &Values,
) -> Result<Option<ManifestDocument>, StageFailure> {
    let Some(file) = eks
        .blue_green
        .as_ref()
        .and_then(|bg| bg.smoke_check.as_ref())
        .and_then(|check| check.job.as_ref())
    else {
        return Ok(None);
    };
    let path = pipeline.resolve_path(file);
    let text = std::fs::read_to_string(&path).map_err(|err| {
        StageFailure::invalid(format!(
            "failed to read the smoke check job {}: {err}",
            relative(pipeline, &path)
        ))
    })?;
    let name = relative(pipeline, &path);
    let mut found = eks::parse_manifest(&name, &text).map_err(|err| failure(err).0)?;
    let (Some(mut document), true) = (found.pop(), found.is_empty()) else {
        return Err(StageFailure::invalid(format!(
            "the smoke check job {name} must hold exactly one document, a Job"
        )));
    };
    if document.object["kind"] != "Job" {
        return Err(StageFailure::invalid(format!(
            "the smoke check job {name} is a {}, not a Job",
            document.object["kind"]
                .as_str()
                .unwrap_or("document without a kind")
        )));
    }
    document.object = interpolate_value(&document.object, values, &DocPath::root())
        .map_err(|(at, message)| StageFailure::invalid(format!("{name}, at {at}: {message}")))?;
    Ok(Some(document))
}

fn spec_ahead(input: &PreviewInput<'_>) -> Result<EksDeploySpec, StageFailure> {
    spec(
        input.pipeline,
        &input.id.name,
        "plan",
        input.config.deploy()?,
        input.values,
        &ImageRefs::Planned(input.values),
    )
}

fn run_spec(input: &StageInput<'_>) -> Result<EksDeploySpec, StageFailure> {
    spec(
        input.pipeline,
        &input.id.name,
        input.run_id,
        input.config.deploy()?,
        input.values,
        &ImageRefs::Pushed(input.upstream),
    )
}

async fn connect(spec: &EksDeploySpec, aws: &AwsIdentity) -> Result<ClusterAccess, StageFailure> {
    eks::connect(&spec.config, &spec.base_dir, aws)
        .await
        .map_err(|err| failure(err).0)
}

/// The stage's failure for a deploy error, and the outcome to journal with it.
fn failure(err: EksDeployError) -> (StageFailure, Option<EksDeployOutcome>) {
    let kind = match err.kind {
        EksErrorKind::Config => FailureKind::Invalid,
        EksErrorKind::Remote => FailureKind::Failed,
        EksErrorKind::RolledBack => FailureKind::RolledBack,
        EksErrorKind::TimedOut => FailureKind::TimedOut,
        EksErrorKind::Cancelled => FailureKind::Interrupted,
    };
    let failure = StageFailure {
        kind,
        message: err.message,
        hint: err.hint,
    };
    (failure, err.outcome.map(|outcome| *outcome))
}

#[async_trait]
impl StageExecutor for EksDeployStage {
    async fn fingerprint(&self, input: &StageInput<'_>) -> Result<Value, StageFailure> {
        // The manifests' text: a changed file is a new deploy. A rollback's input is the
        // earlier run's record.
        if input.id.kind == StageKind::Rollback {
            return Ok(Value::Null);
        }
        let eks = eks_target(input.config.deploy()?)?;
        let mut hasher = Sha256::new();
        for (file, text) in manifest_files(input.pipeline, eks)? {
            hasher.update(file.as_bytes());
            hasher.update([0]);
            hasher.update(text.as_bytes());
            hasher.update([0]);
        }
        Ok(Value::String(format!(
            "sha256:{}",
            hex::encode(hasher.finalize())
        )))
    }

    async fn outputs_exist(
        &self,
        input: &StageInput<'_>,
        outputs: &Outputs,
    ) -> Result<bool, StageFailure> {
        let Some(deployed) = EksDeployOutcome::from_outputs(outputs) else {
            return Ok(false);
        };
        let spec = run_spec(input)?;
        let access = connect(&spec, input.aws).await?;
        eks::still_deployed(&access.client, &spec, &deployed)
            .await
            .map_err(|err| failure(err).0)
    }

    async fn run(
        &self,
        input: &StageInput<'_>,
        context: &StageContext<'_>,
    ) -> Result<(), StageFailure> {
        let observer = JournalingObserver { sink: context.sink };
        let cancel = context.cancel.clone();
        let deployed = if input.id.kind == StageKind::Rollback {
            // A rollback returns to what an earlier run deployed: its record is the upstream.
            let earlier = input
                .upstream
                .get(&StageId::deploy(&input.id.name))
                .and_then(EksDeployOutcome::from_outputs)
                .ok_or_else(|| {
                    StageFailure::failed(format!(
                        "{}: the run to return to recorded no workloads",
                        input.id
                    ))
                })?;
            let spec = run_spec_for_rollback(input, &earlier)?;
            let access = connect(&spec, input.aws).await?;
            eks::roll_back(&access.client, &spec, &earlier, &observer, cancel).await
        } else {
            let spec = run_spec(input)?;
            let access = connect(&spec, input.aws).await?;
            let previous = EksCheckpoint::from_outputs(&context.previous_attempt)
                .filter(|checkpoint| *checkpoint != EksCheckpoint::default());
            if previous.is_some() {
                context
                    .sink
                    .progress("re-attaching to the rollout the interrupted attempt started");
            }
            eks::deploy(&access.client, &spec, previous.as_ref(), &observer, cancel).await
        };
        record_end(context, deployed.map_err(failure)).await
    }

    async fn preview(&self, input: &PreviewInput<'_>) -> Vec<String> {
        let spec = match spec_ahead(input) {
            Ok(spec) => spec,
            Err(failure) => return vec![failure.message],
        };
        let access = match connect(&spec, input.aws).await {
            Ok(access) => access,
            Err(failure) => {
                return vec![format!("cannot preview the deploy: {}", failure.message)];
            }
        };
        match eks::preview(&access.client, &spec).await {
            Ok(lines) => lines,
            Err(err) => vec![format!("cannot preview the deploy: {}", err.message)],
        }
    }

    async fn preflight(&self, input: &PreviewInput<'_>) -> Result<(), StageFailure> {
        let spec = spec_ahead(input)?;
        let access = connect(&spec, input.aws).await?;
        eks::preflight(&access.client, &spec)
            .await
            .map_err(|err| failure(err).0)
    }
}

/// A rollback's request: the target and its manifests as they are now (the workloads are applied
/// as the manifests say, with the pod templates the earlier run's revisions hold), and the
/// images the earlier run deployed.
fn run_spec_for_rollback(
    input: &StageInput<'_>,
    earlier: &EksDeployOutcome,
) -> Result<EksDeploySpec, StageFailure> {
    let eks = eks_target(input.config.deploy()?)?;
    Ok(EksDeploySpec {
        pipeline: input.pipeline.file.name.clone(),
        target: input.id.name.clone(),
        run_id: input.run_id.to_owned(),
        git_sha: input.values.git.get("sha").cloned(),
        config: eks.clone(),
        base_dir: input.pipeline.base_dir.clone(),
        documents: documents(input.pipeline, eks, input.values)?,
        images: earlier.images.clone(),
        smoke_job: None,
    })
}
