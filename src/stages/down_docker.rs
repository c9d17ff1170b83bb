//! The `down:<target>` stage for `docker:` targets (`shipit down`): stops and removes every
//! container shipit runs for the target, through `crate::deploy::docker::take_down`.

use std::sync::Arc;

use async_trait::async_trait;
use serde_json::Value;

use super::deploy_docker::Progress;
use super::docker_daemon::{DaemonConnection, with_causes};
use super::{FailureKind, Outputs, StageContext, StageExecutor, StageFailure, StageInput};
use crate::deploy::docker::{self as target, DockerDeployError};

pub struct DockerTakeDownStage {
    pub daemon: Arc<DaemonConnection>,
}

#[async_trait]
impl StageExecutor for DockerTakeDownStage {
    async fn fingerprint(&self, _: &StageInput<'_>) -> Result<Value, StageFailure> {
        Ok(Value::Null)
    }

    /// Never reused: containers may have been started since any record said otherwise.
    async fn outputs_exist(&self, _: &StageInput<'_>, _: &Outputs) -> Result<bool, StageFailure> {
        Ok(false)
    }

    async fn run(
        &self,
        input: &StageInput<'_>,
        context: &StageContext<'_>,
    ) -> Result<(), StageFailure> {
        input.config.deploy()?;
        let docker = self.daemon.get().await?.bollard();
        let observer = Progress(context.sink);
        let outcome = target::take_down(
            docker,
            &input.pipeline.file.name,
            &input.id.name,
            &observer,
            context.cancel.clone(),
        )
        .await
        .map_err(|err| {
            let kind = match err {
                DockerDeployError::TakeDownCancelled { .. } => FailureKind::Interrupted,
                _ => FailureKind::Failed,
            };
            StageFailure {
                kind,
                message: with_causes(&err),
                hint: None,
            }
        })?;
        if outcome.removed.is_empty() {
            context.sink.progress("nothing of this target was running");
        }
        context.record(&outcome).await
    }
}
