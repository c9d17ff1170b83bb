//! The `deploy:<target>` stage for `docker:` targets: runs the built image as containers on the
//! daemon, gated on health, through `crate::deploy::docker`.

use std::sync::Arc;

use async_trait::async_trait;
use serde_json::Value;

use super::docker_daemon::{DaemonConnection, with_causes};
use super::{
    DeployAttempt, FailureKind, ImageArtifact, Outputs, PreviewInput, StageContext, StageExecutor,
    StageFailure, StageInput, StageOutputs,
};
use crate::deploy::docker::{
    self as target, DeployObserver, DeployPreviewRequest, DockerDeployError, DockerDeployOutcome,
    DockerDeployPreview, DockerDeploySpec, DockerTargetConfig, PreviewAttempt, TargetContainer,
    preview_deploy,
};
use crate::pipeline::Pipeline;
use crate::pipeline::model::TargetKind;
use crate::plan::{StageId, StageKind};

pub struct DockerDeployStage {
    pub daemon: Arc<DaemonConnection>,
}

/// Deploy progress as the stage's progress lines.
pub(super) struct Progress<'a>(pub(super) &'a dyn super::StageSink);

impl DeployObserver for Progress<'_> {
    fn on_progress(&self, message: &str) {
        self.0.progress(message);
    }
}

fn spec(input: &StageInput<'_>) -> Result<DockerDeploySpec, StageFailure> {
    let target = input.config.deploy()?;
    let TargetKind::Docker(config) = &target.kind else {
        return Err(StageFailure::failed(format!(
            "{} has no docker: block",
            input.id
        )));
    };
    let (image, image_digest) = if input.id.kind == StageKind::Rollback {
        // A rollback runs the image an earlier run deployed.
        let earlier = input
            .upstream
            .get(&StageId::deploy(&input.id.name))
            .and_then(DockerDeployOutcome::from_outputs)
            .ok_or_else(|| {
                StageFailure::failed(format!(
                    "{}: the run to return to recorded no deployed image",
                    input.id
                ))
            })?;
        (earlier.image, earlier.image_digest)
    } else {
        let artifact = ImageArtifact::of_image(&target.image, input.upstream).ok_or_else(|| {
            StageFailure::failed(format!(
                "{} has no image to run: {} recorded no image id",
                input.id,
                StageId::build(&target.image)
            ))
        })?;
        (artifact.id, artifact.digest)
    };
    Ok(DockerDeploySpec {
        pipeline: input.pipeline.file.name.clone(),
        target: input.id.name.clone(),
        run_id: input.run_id.to_owned(),
        image,
        image_digest,
        config: config.clone(),
    })
}

fn failure(err: DockerDeployError) -> StageFailure {
    let kind = if err.timed_out() {
        FailureKind::TimedOut
    } else if err.is_rolled_back() {
        FailureKind::RolledBack
    } else if matches!(err, DockerDeployError::Cancelled { .. }) {
        FailureKind::Interrupted
    } else {
        FailureKind::Failed
    };
    let mut message = with_causes(&err);
    let mut hint = None;
    if let DockerDeployError::RolledBack {
        exit_code,
        last_logs,
        container,
        ..
    } = &err
    {
        if let Some(code) = exit_code {
            message.push_str(&format!("\n  {container} exit code: {code}"));
        }
        if !last_logs.is_empty() {
            message.push_str(&format!(
                "\n  last {} log lines of {container}:",
                last_logs.len()
            ));
            for line in last_logs {
                message.push_str(&format!("\n    {line}"));
            }
        }
        hint = Some(
            "fix the new version and run again; the previous version keeps serving".to_owned(),
        );
    }
    StageFailure {
        kind,
        message,
        hint,
    }
}

#[async_trait]
impl StageExecutor for DockerDeployStage {
    async fn preview(&self, input: &PreviewInput<'_>) -> Vec<String> {
        match input.config.deploy().map(|target| &target.kind) {
            Ok(TargetKind::Docker(docker)) => {
                deploy_preview(&self.daemon, input.pipeline, &input.id.name, docker).await
            }
            _ => Vec::new(),
        }
    }

    async fn fingerprint(&self, _: &StageInput<'_>) -> Result<Value, StageFailure> {
        // The resolved config and the upstream outputs (the image id) say everything.
        Ok(Value::Null)
    }

    async fn outputs_exist(
        &self,
        _: &StageInput<'_>,
        outputs: &Outputs,
    ) -> Result<bool, StageFailure> {
        let Some(deployed) = DockerDeployOutcome::from_outputs(outputs) else {
            return Ok(false);
        };
        let docker = self.daemon.get().await?.bollard();
        for container in &deployed.containers {
            let running = docker
                .inspect_container(&container.id, None)
                .await
                .ok()
                .and_then(|c| c.state)
                .and_then(|s| s.running)
                .unwrap_or(false);
            if !running {
                return Ok(false);
            }
        }
        Ok(!deployed.containers.is_empty())
    }

    async fn run(
        &self,
        input: &StageInput<'_>,
        context: &StageContext<'_>,
    ) -> Result<(), StageFailure> {
        let spec = spec(input)?;
        let docker = self.daemon.get().await?.bollard();
        let observer = Progress(context.sink);
        // Journaled before any container exists: if this process dies from here on, the
        // resumed stage re-attaches to this run's containers instead of starting afresh.
        let reattach = DeployAttempt::from_outputs(&context.previous_attempt)
            .is_some_and(|attempt| attempt.started);
        context.record(&DeployAttempt { started: true }).await?;
        let outcome = if reattach {
            context
                .sink
                .progress("re-attaching to the interrupted deploy");
            target::resume(docker, &spec, &observer, context.cancel.clone()).await
        } else {
            target::deploy(docker, &spec, &observer, context.cancel.clone()).await
        }
        .map_err(failure)?;
        context.record(&outcome).await?;
        Ok(())
    }
}

/// What a deploy of `target` would start and stop, from the deploy's own planner over the
/// containers running now. A plan without a daemon still plans, and says why it cannot show
/// this. The configuration is the file's, unresolved: names and ports hold no expressions.
async fn deploy_preview(
    daemon: &DaemonConnection,
    pipeline: &Pipeline,
    target: &str,
    config: &DockerTargetConfig,
) -> Vec<String> {
    let client = match daemon.get().await {
        Ok(client) => client,
        Err(failure) => {
            return vec![format!(
                "cannot preview the containers: {}",
                failure.message
            )];
        }
    };
    let request = DeployPreviewRequest {
        pipeline: &pipeline.file.name,
        target,
        // The new run's id is made when it starts: the names shown use a stand-in.
        run_id: "plan",
        config,
        attempt: PreviewAttempt::Fresh,
    };
    match preview_deploy(client.bollard(), &request).await {
        Ok(preview) => vec![deploy_preview_text(&preview)],
        Err(err) => vec![format!("cannot preview the containers: {err}")],
    }
}

/// `start 2 replicas on :8082, :8083; then stop web-9c1d-0 (:8080), web-9c1d-1 (:8081)`.
/// New replicas are named after the run that creates them, so only their ports are shown.
fn deploy_preview_text(preview: &DockerDeployPreview) -> String {
    let ports: Vec<String> = preview
        .start
        .iter()
        .flat_map(|replica| replica.ports.iter().map(|port| format!(":{port}")))
        .collect();
    let replicas = match preview.start.len() {
        1 => "1 replica".to_owned(),
        n => format!("{n} replicas"),
    };
    let mut text = if ports.is_empty() {
        format!("start {replicas}")
    } else {
        format!("start {replicas} on {}", ports.join(", "))
    };
    if !preview.remove_leftovers.is_empty() {
        text = format!(
            "remove leftovers {}, then {text}",
            containers_text(&preview.remove_leftovers)
        );
    }
    if preview.stop.is_empty() {
        text.push_str("; no previous version to stop");
    } else {
        text.push_str(&format!("; then stop {}", containers_text(&preview.stop)));
    }
    text
}

fn containers_text(containers: &[TargetContainer]) -> String {
    containers
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}
