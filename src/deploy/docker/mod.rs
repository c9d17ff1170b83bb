//! The `docker:` deploy target: runs the built image on the Docker daemon shipit talks to
//! (local, or remote through DOCKER_HOST).
//!
//! A deploy starts the new replicas next to the running ones, waits until every new replica
//! passes the health gate, and only then stops and removes the previous ones. When a new
//! replica fails its gate, the new replicas are removed and the previous ones keep running.
//! Containers carry labels (`shipit.pipeline`, `shipit.target`, `shipit.run-id`,
//! `shipit.image-digest`, `shipit.replica`, …); they are the only record of what runs, so
//! "the previous version" is whatever carries the target's labels and another run id.
//!
//! Files: `config` (the YAML block and its validation), `plan` (which containers to adopt,
//! create, discard or replace; names, ports, labels), `health` (the gate decision),
//! `probe` (HTTP and command probes), `containers` (daemon calls), `rollout` (the executor
//! that ties them together), `preview` (what a deploy would start and stop), `take_down`
//! (removing every container of a target), `target_container` (how a running container is
//! reported), `error`.

mod config;
mod containers;
mod error;
mod health;
mod plan;
mod preview;
mod probe;
mod rollout;
mod take_down;
mod target_container;

use bollard::Docker;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

pub use config::{
    ConfigProblem, DockerTargetConfig, HealthConfig, HttpProbeConfig, HumanDuration, NetworkMode,
    RestartPolicy,
};
pub use error::DockerDeployError;
pub use health::GateFailure;
pub use preview::{
    DeployPreviewRequest, DockerDeployPreview, PlannedReplica, PreviewAttempt, preview_deploy,
};
pub use take_down::{TakeDownOutcome, TakeDownPreview, preview_take_down, take_down};
pub use target_container::TargetContainer;

/// What to deploy where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DockerDeploySpec {
    pub pipeline: String,
    pub target: String,
    /// Identifies this deploy; a resume passes the same run id.
    pub run_id: String,
    /// A reference the daemon can run: an image id or `name:tag`.
    pub image: String,
    /// Recorded in the `shipit.image-digest` label; may be the image id.
    pub image_digest: String,
    pub config: DockerTargetConfig,
}

/// Receives human-readable progress lines while a deploy runs.
pub trait DeployObserver: Send + Sync {
    fn on_progress(&self, message: &str);
}

/// The result of a successful deploy, for the JSON result and the journal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DockerDeployOutcome {
    /// The new version's containers, by replica index.
    pub containers: Vec<DeployedContainer>,
    pub image: String,
    pub image_digest: String,
    /// Ids of the previous version's containers that were removed.
    pub replaced: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeployedContainer {
    pub id: String,
    pub name: String,
    pub replica: u32,
    /// Host ports where the replica listens (host networking) or is published.
    pub ports: Vec<u16>,
}

/// Deploys `spec.image` to the target: starts the new replicas, gates them, then removes the
/// previous version; or rolls back. Leftover containers of an earlier attempt with the same
/// run id are removed first. Cancelling `cancel` before the gate passes removes the new
/// replicas and leaves the previous version running; once every new replica passed, the
/// deploy finishes removing the previous version regardless, because stopping half-way
/// would leave two versions serving.
pub async fn deploy(
    docker: &Docker,
    spec: &DockerDeploySpec,
    observer: &dyn DeployObserver,
    cancel: CancellationToken,
) -> Result<DockerDeployOutcome, DockerDeployError> {
    rollout::run(docker, spec, observer, cancel, plan::Attempt::Fresh).await
}

/// Finishes an interrupted deploy of the same run id: this run's containers that still match
/// the spec and run are taken over (and gated again); any other container of this run is
/// removed and recreated, so none is orphaned. Then the deploy proceeds as `deploy` does.
pub async fn resume(
    docker: &Docker,
    spec: &DockerDeploySpec,
    observer: &dyn DeployObserver,
    cancel: CancellationToken,
) -> Result<DockerDeployOutcome, DockerDeployError> {
    rollout::run(docker, spec, observer, cancel, plan::Attempt::Resume).await
}
