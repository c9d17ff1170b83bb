//! How a deploy tells the outside what it does: progress lines, and checkpoints that must be
//! journaled before the deploy goes on.

use async_trait::async_trait;

use super::outcome::EcsCheckpoint;

#[async_trait]
pub trait EcsObserver: Send + Sync {
    /// One line per change worth showing: a new service event, our deployment's counts, a
    /// CodeDeploy lifecycle event, traffic shifted. The caller keeps one live line per target
    /// on a terminal and prints each line in CI.
    fn on_progress(&self, line: &str);

    /// Journals `checkpoint` before returning. Called after each thing a resume must find (the
    /// registered task definition, the deployment started); the deploy stops when it fails,
    /// since a resume could not re-attach.
    async fn on_checkpoint(&self, checkpoint: &EcsCheckpoint) -> Result<(), String>;
}
