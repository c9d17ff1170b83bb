//! The stages: what `build:`, `push:` and `deploy:` do. Each kind implements [`StageExecutor`];
//! the runner decides when each runs and records what happened.

mod build;
mod cluster_deploy;
mod config;
mod deploy_docker;
mod deploy_ecs;
mod deploy_eks;
mod docker_daemon;
mod down_docker;
pub mod outputs;
mod pinned_images;
mod push;

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use tokio_util::sync::CancellationToken;

pub use config::StageConfig;
pub use outputs::{BuiltImage, DeployAttempt, ImageArtifact, PushedImage, StageOutputs};

pub use crate::credentials::aws::AwsIdentity;
use crate::journal::StageStatus;
use crate::pipeline::Pipeline;
use crate::pipeline::model::TargetKind;
use crate::plan::{StageId, StageKind};

/// Outputs a stage recorded, as the journal keeps them: one JSON value per key. Stages read and
/// write them through the typed views of [`outputs`].
pub type Outputs = BTreeMap<String, serde_json::Value>;

/// Everything a stage executor is given about the stage it runs.
pub struct StageInput<'a> {
    pub id: &'a StageId,
    pub pipeline: &'a Pipeline,
    pub run_id: &'a str,
    /// The stage's configuration, resolved, typed and checked.
    pub config: &'a StageConfig,
    /// The outputs of the stages this one needs.
    pub upstream: &'a BTreeMap<StageId, Outputs>,
    /// The run's environment, git facts and vars (build secrets come from `env`).
    pub values: &'a crate::pipeline::interpolate::Values,
    /// Whose credentials the stage's AWS calls sign with (ECR tokens, later ECS and EKS).
    pub aws: &'a AwsIdentity,
}

/// How a stage failed. The kind decides the stage's status and the run's exit code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FailureKind {
    Failed,
    RolledBack,
    TimedOut,
    Interrupted,
    /// The configuration does not fit the world it deploys to (found before anything ran).
    Invalid,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StageFailure {
    pub kind: FailureKind,
    pub message: String,
    pub hint: Option<String>,
}

impl StageFailure {
    pub fn failed(message: impl Into<String>) -> Self {
        StageFailure {
            kind: FailureKind::Failed,
            message: message.into(),
            hint: None,
        }
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        StageFailure {
            kind: FailureKind::Invalid,
            message: message.into(),
            hint: None,
        }
    }

    pub fn interrupted() -> Self {
        StageFailure {
            kind: FailureKind::Interrupted,
            message: "interrupted".into(),
            hint: None,
        }
    }

    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    pub fn status(&self) -> StageStatus {
        match self.kind {
            FailureKind::Failed | FailureKind::Invalid => StageStatus::Failed,
            FailureKind::RolledBack => StageStatus::RolledBack,
            FailureKind::TimedOut => StageStatus::TimedOut,
            FailureKind::Interrupted => StageStatus::Interrupted,
        }
    }
}

/// What a running stage can do besides its own work: report progress, stream its log, record
/// outputs (journaled at once), watch for cancellation, and see what an earlier attempt of the
/// same work recorded (a deploy re-attaches to the deployment it started).
#[async_trait]
pub trait StageSink: Send + Sync {
    fn progress(&self, message: &str);
    /// A change worth a line of its own while the stage waits on something outside shipit
    /// (a deploy's service events and counts): never throttled in CI.
    fn change(&self, message: &str);
    fn log(&self, line: &str);
    /// Records outputs in the journal, in one write, before returning. A stage whose outputs
    /// cannot be journaled fails: a resume could not find what it did.
    async fn record_outputs(&self, outputs: Outputs) -> Result<(), StageFailure>;
}

pub struct StageContext<'a> {
    pub sink: &'a dyn StageSink,
    /// The stage's input digest (a build tags its image with a prefix of it).
    pub input_digest: String,
    pub cancel: CancellationToken,
    /// Outputs an earlier, unfinished attempt of this stage with the same inputs recorded.
    pub previous_attempt: Outputs,
    /// What the executor's `fingerprint` returned for these inputs (a build's context digest).
    pub fingerprint: serde_json::Value,
}

impl StageContext<'_> {
    /// Journals `outputs` before returning.
    pub async fn record<T: StageOutputs>(&self, outputs: &T) -> Result<(), StageFailure> {
        self.sink.record_outputs(outputs.to_outputs()).await
    }
}

#[async_trait]
pub trait StageExecutor: Send + Sync {
    /// What the stage's result depends on beyond its resolved configuration and its upstream
    /// outputs (a build's context content digest, a task definition file's text). Folded into
    /// the input digest.
    async fn fingerprint(&self, input: &StageInput<'_>) -> Result<serde_json::Value, StageFailure>;

    /// Whether the outputs of an earlier success still exist where they were made (image in
    /// the daemon, manifest in the registry). A stage is skipped only if they do.
    async fn outputs_exist(
        &self,
        input: &StageInput<'_>,
        outputs: &Outputs,
    ) -> Result<bool, StageFailure>;

    async fn run(
        &self,
        input: &StageInput<'_>,
        context: &StageContext<'_>,
    ) -> Result<(), StageFailure>;

    /// What running the stage would change, for `shipit plan`: lines for people (which files
    /// of a build context changed, which tags a push moves, which containers a deploy starts
    /// and stops, the task definition diff of an ECS deploy). Asked only of a stage the plan
    /// says will run, after its fingerprint when it could be decided, with its configuration
    /// resolved as far as the plan can (images not built yet are placeholders); it changes
    /// nothing, and says why when it cannot tell.
    async fn preview(&self, _input: &PreviewInput<'_>) -> Vec<String> {
        Vec::new()
    }

    /// Checks, before a run builds anything, what can be checked of this stage without
    /// changing anything (an ECS service exists and takes the target's strategy, a task
    /// definition file names the target's containers), so that a wrong target is found in
    /// seconds rather than after the build. A failure of kind [`FailureKind::Invalid`] refuses
    /// the run; any other is a warning (the stage itself fails later if it still holds).
    async fn preflight(&self, _input: &PreviewInput<'_>) -> Result<(), StageFailure> {
        Ok(())
    }
}

/// What `preview` and `preflight` are given: a stage looked at before anything runs.
pub struct PreviewInput<'a> {
    pub pipeline: &'a Pipeline,
    pub id: &'a StageId,
    /// The configuration resolved as far as it can be before the run (images not built yet
    /// are placeholders).
    pub config: &'a StageConfig,
    /// The values it was resolved with (a deploy resolves the files it reads with them).
    pub values: &'a crate::pipeline::interpolate::Values,
    /// Whose credentials AWS calls sign with.
    pub aws: &'a AwsIdentity,
}

/// The executor for each kind of stage. A deploy kind this build cannot run has none: the
/// application layer refuses a run that selects it before anything starts, and `validate` and
/// `plan` say so.
#[derive(Clone)]
pub struct Executors {
    pub build: Arc<dyn StageExecutor>,
    pub push: Arc<dyn StageExecutor>,
    pub deploy_docker: Arc<dyn StageExecutor>,
    /// `shipit down` of a docker target.
    pub take_down_docker: Arc<dyn StageExecutor>,
    pub deploy_ecs: Option<Arc<dyn StageExecutor>>,
    pub deploy_eks: Option<Arc<dyn StageExecutor>>,
}

impl Executors {
    pub fn for_stage(
        &self,
        id: &StageId,
        pipeline: &Pipeline,
    ) -> Result<Arc<dyn StageExecutor>, StageFailure> {
        match id.kind {
            StageKind::Build => Ok(self.build.clone()),
            StageKind::Push => Ok(self.push.clone()),
            StageKind::Down => match pipeline.file.deploy.get(&id.name).map(|t| &t.kind) {
                Some(TargetKind::Docker(_)) => Ok(self.take_down_docker.clone()),
                Some(kind) => Err(StageFailure::failed(format!(
                    "{id}: `shipit down` takes docker targets down, and this target deploys to {}",
                    kind.key()
                ))),
                None => Err(StageFailure::failed(format!("{id} is not in the pipeline"))),
            },
            // A rollback is a deploy of an earlier run's version, by the target kind's executor.
            StageKind::Deploy | StageKind::Rollback => {
                let kind = pipeline
                    .file
                    .deploy
                    .get(&id.name)
                    .map(|t| &t.kind)
                    .ok_or_else(|| StageFailure::failed(format!("{id} is not in the pipeline")))?;
                self.for_target(kind).ok_or_else(|| {
                    StageFailure::failed(format!("{id}: {}", unavailable_message(kind.key())))
                })
            }
        }
    }

    /// The executor for a deploy target kind; `None` when this build cannot deploy it.
    pub fn for_target(&self, kind: &TargetKind) -> Option<Arc<dyn StageExecutor>> {
        match kind {
            TargetKind::Ecs(_) => self.deploy_ecs.clone(),
            TargetKind::Eks(_) => self.deploy_eks.clone(),
            TargetKind::Docker(_) => Some(self.deploy_docker.clone()),
        }
    }
}

/// What shipit says of a deploy target kind this version cannot run.
pub fn unavailable_message(kind_key: &str) -> String {
    format!(
        "the `{kind_key}` deploy target is not available in this version of shipit; the pipeline \
         file accepts it, `validate` and `plan` check it, and a later version deploys it"
    )
}

impl Executors {
    /// The executors of this build of shipit.
    pub fn default_set(state_dir: &std::path::Path) -> Self {
        let daemon = Arc::new(docker_daemon::DaemonConnection::default());
        Executors {
            build: Arc::new(build::BuildStage {
                daemon: daemon.clone(),
                state_dir: state_dir.to_path_buf(),
            }),
            push: Arc::new(push::PushStage {
                daemon: daemon.clone(),
                state_dir: state_dir.to_path_buf(),
            }),
            deploy_docker: Arc::new(deploy_docker::DockerDeployStage {
                daemon: daemon.clone(),
            }),
            take_down_docker: Arc::new(down_docker::DockerTakeDownStage {
                daemon: daemon.clone(),
            }),
            deploy_ecs: Some(Arc::new(deploy_ecs::EcsDeployStage)),
            deploy_eks: Some(Arc::new(deploy_eks::EksDeployStage)),
        }
    }
}
