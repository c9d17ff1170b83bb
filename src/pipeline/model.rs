//! The pipeline file's typed model (format version 1). These types are the product's interface:
//! the JSON Schema printed by `shipit schema` is derived from them.
//!
//! String values may hold `${{ … }}` expressions; they are checked by `validate` and resolved by
//! `interpolate` when the stage that uses them is about to run.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub use crate::deploy::docker::DockerTargetConfig;
pub use crate::duration::HumanDuration;
pub use crate::registry::PushConfig;

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(
    title = "shipit pipeline file",
    description = "A shipit pipeline: images to build and push, targets to deploy them to."
)]
pub struct PipelineFile {
    /// Format version; only `1` exists.
    pub version: u32,
    /// The pipeline's name: labels, journal entries and container names carry it.
    pub name: String,
    /// Values for `${{ vars.NAME }}`. They may use `env.*`, `git.*` and `run.id`.
    #[serde(default)]
    pub vars: BTreeMap<String, String>,
    /// Named overrides chosen with `--env NAME`.
    #[serde(default)]
    pub environments: BTreeMap<String, Environment>,
    /// Container images to build (and optionally push), by name.
    #[serde(default)]
    pub images: BTreeMap<String, ImageSpec>,
    /// Deploy targets, by name.
    #[serde(default)]
    pub deploy: BTreeMap<String, DeployTarget>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Environment {
    /// Replaces the pipeline's `vars` of the same name.
    #[serde(default)]
    pub vars: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ImageSpec {
    /// Build context folder, relative to the pipeline file.
    pub context: String,
    /// Dockerfile path, relative to the context.
    #[serde(default = "default_dockerfile")]
    pub dockerfile: String,
    /// Build stage to stop at (`docker build --target`).
    #[serde(default)]
    pub target: Option<String>,
    /// Build arguments (`--build-arg`). Never put secrets here: use `secrets`.
    #[serde(default)]
    pub args: BTreeMap<String, String>,
    /// Image labels. shipit adds `org.opencontainers.image.revision`, `.source` and `.created`.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Target platform, e.g. `linux/amd64`.
    #[serde(default)]
    pub platform: Option<String>,
    /// Which builder the daemon should use.
    #[serde(default)]
    pub builder: BuilderKind,
    /// Build without the daemon's layer cache.
    #[serde(default)]
    pub no_cache: bool,
    /// Pull newer base images before building.
    #[serde(default)]
    pub pull: bool,
    /// Images whose layers may serve as cache.
    #[serde(default)]
    pub cache_from: Vec<String>,
    /// Build secrets for `RUN --mount=type=secret,id=NAME` (BuildKit only). Their values never
    /// reach the image history, the output or the journal.
    #[serde(default)]
    pub secrets: BTreeMap<String, SecretSource>,
    /// Where to push the image. Without it the image stays in the local daemon.
    #[serde(default)]
    pub push: Option<PushConfig>,
}

fn default_dockerfile() -> String {
    "Dockerfile".to_owned()
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum BuilderKind {
    /// BuildKit when the daemon supports it, the classic builder otherwise.
    #[default]
    Auto,
    Buildkit,
    Classic,
}

/// Where a build secret's value comes from.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "lowercase")]
pub enum SecretSource {
    /// An environment variable of the shipit process.
    Env(String),
    /// A file, relative to the pipeline file.
    File(String),
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DeployTarget {
    /// The image (a key of `images`) to deploy, pinned by digest.
    pub image: String,
    /// Deploy targets that must finish first; the others run in parallel.
    #[serde(default)]
    pub needs: Vec<String>,
    /// Deploy to an Amazon ECS service.
    #[serde(default)]
    pub ecs: Option<EcsTarget>,
    /// Deploy to a Kubernetes (Amazon EKS) Deployment.
    #[serde(default)]
    pub eks: Option<EksTarget>,
    /// Run the image as containers on the Docker daemon shipit talks to.
    #[serde(default)]
    pub docker: Option<DockerTargetConfig>,
}

impl DeployTarget {
    pub fn kinds(&self) -> Vec<&'static str> {
        let mut kinds = Vec::new();
        if self.ecs.is_some() {
            kinds.push("ecs");
        }
        if self.eks.is_some() {
            kinds.push("eks");
        }
        if self.docker.is_some() {
            kinds.push("docker");
        }
        kinds
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum EcsStrategy {
    /// The ECS rolling-update controller, with the deployment circuit breaker.
    #[default]
    Rolling,
    /// Blue/green through AWS CodeDeploy.
    BlueGreen,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EcsTarget {
    pub cluster: String,
    pub service: String,
    /// Task definition JSON file, relative to the pipeline file; the image of `container` is
    /// replaced by the pushed digest.
    pub task_definition: String,
    /// Container (in the task definition) that runs the image.
    pub container: String,
    #[serde(default)]
    pub strategy: EcsStrategy,
    /// How long the deployment may take to become stable.
    #[serde(default)]
    pub timeout: Option<HumanDuration>,
    /// CodeDeploy application and deployment group (blue/green only).
    #[serde(default)]
    pub codedeploy: Option<CodeDeployTarget>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CodeDeployTarget {
    pub application: String,
    pub deployment_group: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EksTarget {
    /// kubeconfig context to use; the current context when absent.
    #[serde(default)]
    pub context: Option<String>,
    #[serde(default = "default_namespace")]
    pub namespace: String,
    /// Name of the Deployment.
    pub deployment: String,
    /// Manifest file (YAML), relative to the pipeline file, applied with the image replaced.
    #[serde(default)]
    pub manifest: Option<String>,
    /// Container (in the pod template) that runs the image.
    pub container: String,
    /// How long the rollout may take to complete.
    #[serde(default)]
    pub timeout: Option<HumanDuration>,
}

fn default_namespace() -> String {
    "default".to_owned()
}
