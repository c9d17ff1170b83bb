//! The `deploy:<target>` stage for `docker:` targets: runs the built image as containers on the
//! daemon, gated on health, through `crate::deploy::docker`.

use std::sync::Arc;

use async_trait::async_trait;
use serde_json::{Value, json};

use super::docker_daemon::{DaemonConnection, with_causes};
use super::{FailureKind, Outputs, StageContext, StageExecutor, StageFailure, StageInput};
use crate::deploy::docker::{self as target, DeployObserver, DockerDeployError, DockerDeploySpec};
use crate::pipeline::model::{DeployTarget, TargetKind};
use crate::pipeline::{DocPath, deserialize_at};
use crate::plan::{StageId, StageKind};

pub struct DockerDeployStage {
    pub daemon: Arc<DaemonConnection>,
}

struct Progress<'a>(&'a dyn super::StageSink);

impl DeployObserver for Progress<'_> {
    fn on_progress(&self, message: &str) {
        self.0.progress(message);
    }
}

/// The image to run and the digest to label it with, from the build (and push) outputs.
fn image_of(input: &StageInput<'_>, image: &str) -> Result<(String, String), StageFailure> {
    let text = |stage: StageId, key: &str| {
        input
            .upstream
            .get(&stage)
            .and_then(|o| o.get(key))
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    let build = StageId {
        kind: StageKind::Build,
        name: image.to_owned(),
    };
    let push = StageId {
        kind: StageKind::Push,
        name: image.to_owned(),
    };
    // The build's own outputs are reached through the push stage when the image is pushed.
    let image_id = text(build.clone(), "image_id").or_else(|| text(push.clone(), "image_id"));
    let Some(image_id) = image_id else {
        return Err(StageFailure::failed(format!(
            "{} has no image to run: {build} recorded no image id",
            input.id
        )));
    };
    let digest = text(push, "digest").unwrap_or_else(|| image_id.clone());
    Ok((image_id, digest))
}

fn spec(input: &StageInput<'_>) -> Result<DockerDeploySpec, StageFailure> {
    let path = DocPath::root().key("deploy").key(input.id.name.clone());
    let target: DeployTarget = deserialize_at(
        &input.pipeline.source,
        &input.pipeline.document,
        input.config,
        &path,
    )
    .map_err(|d| StageFailure::failed(d.to_string()))?;
    let TargetKind::Docker(config) = target.kind else {
        return Err(StageFailure::failed(format!(
            "{} has no docker: block",
            input.id
        )));
    };
    let (image, image_digest) = image_of(input, &target.image)?;
    Ok(DockerDeploySpec {
        pipeline: input.pipeline.file.name.clone(),
        target: input.id.name.clone(),
        run_id: input.run_id.to_owned(),
        image,
        image_digest,
        config,
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
    async fn fingerprint(&self, _: &StageInput<'_>) -> Result<Value, StageFailure> {
        // The resolved config and the upstream outputs (the image id) say everything.
        Ok(Value::Null)
    }

    async fn outputs_exist(
        &self,
        _: &StageInput<'_>,
        outputs: &Outputs,
    ) -> Result<bool, StageFailure> {
        let docker = self.daemon.get().await?.bollard();
        let Some(containers) = outputs.get("containers").and_then(Value::as_array) else {
            return Ok(false);
        };
        for container in containers {
            let Some(id) = container.get("id").and_then(Value::as_str) else {
                return Ok(false);
            };
            let running = docker
                .inspect_container(id, None)
                .await
                .ok()
                .and_then(|c| c.state)
                .and_then(|s| s.running)
                .unwrap_or(false);
            if !running {
                return Ok(false);
            }
        }
        Ok(!containers.is_empty())
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
        let reattach = context.previous_attempt.contains_key("started");
        context.sink.output("started", json!(true))?;
        let outcome = if reattach {
            context
                .sink
                .progress("re-attaching to the interrupted deploy");
            target::resume(docker, &spec, &observer, context.cancel.clone()).await
        } else {
            target::deploy(docker, &spec, &observer, context.cancel.clone()).await
        }
        .map_err(failure)?;
        context.sink.outputs(vec![
            ("image", json!(outcome.image)),
            ("image_digest", json!(outcome.image_digest)),
            (
                "containers",
                serde_json::to_value(&outcome.containers).unwrap_or(Value::Null),
            ),
            ("replaced", json!(outcome.replaced)),
        ])?;
        Ok(())
    }
}
