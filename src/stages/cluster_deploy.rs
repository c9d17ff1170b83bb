//! What the cluster deploy stages (ECS, EKS) share: an observer that shows a deploy's changes
//! and journals its checkpoints, and the record of how a deploy ended.

use async_trait::async_trait;

use super::{StageContext, StageFailure, StageOutputs, StageSink};
use crate::deploy::ecs::{EcsCheckpoint, EcsObserver};
use crate::deploy::eks::{EksCheckpoint, EksObserver};

/// A deploy's progress as the stage's change lines, its checkpoints as journaled outputs.
pub(super) struct JournalingObserver<'a> {
    pub(super) sink: &'a dyn StageSink,
}

impl JournalingObserver<'_> {
    async fn journal<C: StageOutputs + Sync>(&self, checkpoint: &C) -> Result<(), String> {
        self.sink
            .record_outputs(checkpoint.to_outputs())
            .await
            .map_err(|failure| failure.message)
    }
}

#[async_trait]
impl EcsObserver for JournalingObserver<'_> {
    fn on_progress(&self, line: &str) {
        self.sink.change(line);
    }

    async fn on_checkpoint(&self, checkpoint: &EcsCheckpoint) -> Result<(), String> {
        self.journal(checkpoint).await
    }
}

#[async_trait]
impl EksObserver for JournalingObserver<'_> {
    fn on_progress(&self, line: &str) {
        self.sink.change(line);
    }

    async fn on_checkpoint(&self, checkpoint: &EksCheckpoint) -> Result<(), String> {
        self.journal(checkpoint).await
    }
}

/// Records how a deploy ended: its outcome on success; on failure, the outcome it got to, for
/// the JSON result (the failure stands even when that record cannot be written).
pub(super) async fn record_end<T: StageOutputs>(
    context: &StageContext<'_>,
    ended: Result<T, (StageFailure, Option<T>)>,
) -> Result<(), StageFailure> {
    match ended {
        Ok(outcome) => context.record(&outcome).await,
        Err((failure, outcome)) => {
            if let Some(outcome) = outcome {
                let _ = context.record(&outcome).await;
            }
            Err(failure)
        }
    }
}
