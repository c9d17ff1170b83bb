//! How a deploy tells the outside what it does: progress lines, and checkpoints that must be
//! journaled before the deploy goes on.

use async_trait::async_trait;

use super::outcome::EksCheckpoint;

#[async_trait]
pub trait EksObserver: Send + Sync {
    /// One line per change worth showing: a workload's counts (`deployment/web: 2/3 updated,
    /// 1 ready, 1 available`), a pod problem, an event.
    fn on_progress(&self, line: &str);

    /// Journals `checkpoint` before returning; the deploy stops when it fails, since a resume
    /// could not re-attach.
    async fn on_checkpoint(&self, checkpoint: &EksCheckpoint) -> Result<(), String>;
}
