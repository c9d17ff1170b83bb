//! The pipeline file's typed model (format version 1). These types are the product's interface:
//! the JSON Schema printed by `shipit schema` is derived from them.
//!
//! String values may hold `${{ … }}` expressions; they are checked by `validate` and resolved by
//! `interpolate` when the stage that uses them is about to run.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub use super::aws_role::AwsRole;
pub use crate::config_problem::{ConfigProblem, ValidateConfig};
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
    /// The IAM role a CI job assumes with its OpenID Connect token (GitHub Actions, GitLab);
    /// every AWS call of the run uses it. Its values may use `env.*`, `vars.*`, `git.*` and
    /// `run.id`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aws: Option<AwsRole>,
    /// Environment variables whose values are secret: shipit prints `***` wherever one would
    /// appear (output, results, reports, the journal). Build secrets, registry passwords and AWS
    /// credentials are hidden without being listed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secrets: Vec<String>,
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

/// Why a build secret has no value.
#[derive(Debug, thiserror::Error)]
pub enum SecretUnavailable {
    #[error("environment variable {0} is not set")]
    UnsetVariable(String),
    #[error("failed to read {}: {source}", path.display())]
    UnreadableFile {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
}

impl SecretSource {
    /// The secret's value: the variable's in `env`, or the file's content (`base_dir` is the
    /// pipeline file's folder).
    pub fn read(
        &self,
        base_dir: &std::path::Path,
        env: &BTreeMap<String, String>,
    ) -> Result<Vec<u8>, SecretUnavailable> {
        match self {
            SecretSource::Env(var) => env
                .get(var)
                .map(|value| value.clone().into_bytes())
                .ok_or_else(|| SecretUnavailable::UnsetVariable(var.clone())),
            SecretSource::File(file) => {
                let path = base_dir.join(file);
                std::fs::read(&path)
                    .map_err(|source| SecretUnavailable::UnreadableFile { path, source })
            }
        }
    }
}

/// A deploy target: the image it deploys, the targets it waits for, and exactly one kind of
/// place to deploy to. The file spells the kind as one of the keys `ecs`, `eks` or `docker`;
/// none or two of them is an error at the target's line.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(try_from = "DeployTargetFile", into = "DeployTargetFile")]
pub struct DeployTarget {
    /// The image (a key of `images`) to deploy, pinned by digest.
    pub image: String,
    /// Deploy targets that must finish first; the others run in parallel.
    pub needs: Vec<String>,
    pub kind: TargetKind,
}

/// Where a target deploys to, with that kind's own configuration.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TargetKind {
    Ecs(EcsTarget),
    Eks(EksTarget),
    Docker(DockerTargetConfig),
}

impl DeployTarget {
    /// Every image (a key of `images`) the target deploys: its `image`, and for an ECS or EKS
    /// target the images of its other containers.
    pub fn images(&self) -> Vec<&str> {
        let mut images = vec![self.image.as_str()];
        for image in self.other_containers().values() {
            if !images.contains(&image.as_str()) {
                images.push(image);
            }
        }
        images
    }

    /// An ECS or EKS target's `containers`: more containers and the image each runs.
    pub fn other_containers(&self) -> &BTreeMap<String, String> {
        static NONE: BTreeMap<String, String> = BTreeMap::new();
        match &self.kind {
            TargetKind::Ecs(ecs) => &ecs.containers,
            TargetKind::Eks(eks) => &eks.containers,
            TargetKind::Docker(_) => &NONE,
        }
    }
}

impl TargetKind {
    /// The key the file spells the kind with.
    pub fn key(&self) -> &'static str {
        match self {
            TargetKind::Ecs(_) => "ecs",
            TargetKind::Eks(_) => "eks",
            TargetKind::Docker(_) => "docker",
        }
    }

    /// The kind's own checks: every problem, at paths relative to its block.
    pub fn problems(&self) -> Vec<ConfigProblem> {
        match self {
            TargetKind::Ecs(config) => config.problems(),
            TargetKind::Eks(config) => config.problems(),
            TargetKind::Docker(config) => config.problems(),
        }
    }

    /// A cluster pulls the image from a registry; the docker kind runs the daemon's own copy.
    pub fn needs_pushed_image(&self) -> bool {
        !matches!(self, TargetKind::Docker(_))
    }
}

// The file's spelling of a deploy target; only [`DeployTarget`] leaves the parsing.
/// A deploy target: the image it deploys, the targets it waits for, and exactly one of `ecs`,
/// `eks` or `docker`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "DeployTarget")]
pub struct DeployTargetFile {
    /// The image (a key of `images`) to deploy, pinned by digest.
    pub image: String,
    /// Deploy targets that must finish first; the others run in parallel.
    #[serde(default)]
    pub needs: Vec<String>,
    /// Deploy to an Amazon ECS service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ecs: Option<EcsTarget>,
    /// Deploy to a Kubernetes (Amazon EKS) Deployment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eks: Option<EksTarget>,
    /// Run the image as containers on the Docker daemon shipit talks to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub docker: Option<DockerTargetConfig>,
}

impl TryFrom<DeployTargetFile> for DeployTarget {
    type Error = String;

    fn try_from(file: DeployTargetFile) -> Result<Self, String> {
        let mut kinds: Vec<TargetKind> = [
            file.ecs.map(TargetKind::Ecs),
            file.eks.map(TargetKind::Eks),
            file.docker.map(TargetKind::Docker),
        ]
        .into_iter()
        .flatten()
        .collect();
        let kind = match kinds.len() {
            1 => kinds.remove(0),
            0 => return Err("a deploy target needs one of `ecs`, `eks` or `docker`".to_owned()),
            _ => {
                let keys: Vec<&str> = kinds.iter().map(TargetKind::key).collect();
                return Err(format!(
                    "a deploy target has one kind, and this one has {}; choose one",
                    keys.join(" and ")
                ));
            }
        };
        Ok(DeployTarget {
            image: file.image,
            needs: file.needs,
            kind,
        })
    }
}

impl From<DeployTarget> for DeployTargetFile {
    fn from(target: DeployTarget) -> Self {
        let mut file = DeployTargetFile {
            image: target.image,
            needs: target.needs,
            ecs: None,
            eks: None,
            docker: None,
        };
        match target.kind {
            TargetKind::Ecs(config) => file.ecs = Some(config),
            TargetKind::Eks(config) => file.eks = Some(config),
            TargetKind::Docker(config) => file.docker = Some(config),
        }
        file
    }
}

/// The schema is the file's spelling.
impl JsonSchema for DeployTarget {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        DeployTargetFile::schema_name()
    }

    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        DeployTargetFile::json_schema(generator)
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

/// An Amazon ECS service to deploy to: a new task definition revision with the images replaced
/// by their pushed digests, rolled out by the ECS controller or by CodeDeploy, and gated on the
/// deployment this deploy created.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EcsTarget {
    pub cluster: String,
    pub service: String,
    /// AWS region; the `aws:` block's, then the credential chain's, when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// The ECS, CodeDeploy, CloudWatch Logs and ELB API endpoint instead of AWS's (an emulator,
    /// a VPC endpoint). `AWS_ENDPOINT_URL_<SERVICE>` works too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint_url: Option<String>,
    /// Task definition JSON file, relative to the pipeline file (the `register-task-definition`
    /// input or the `describe-task-definition` output), or `current` to start from the one the
    /// service runs.
    pub task_definition: String,
    /// The container (in the task definition) that runs the target's `image`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
    /// More containers and the image (a key of `images`) each runs, when one target deploys
    /// several images.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub containers: BTreeMap<String, String>,
    #[serde(default)]
    pub strategy: EcsStrategy,
    /// The service's desired task count; the service's own when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub desired_count: Option<u32>,
    /// The floor of RUNNING tasks during the rollout, in percent of the desired count.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub minimum_healthy_percent: Option<u32>,
    /// The ceiling of RUNNING and PENDING tasks during the rollout, in percent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub maximum_percent: Option<u32>,
    /// The deployment circuit breaker (rolling only): `rollback` stops a failing deployment and
    /// returns to the previous one, `detect` stops it only, `off` disables it. The service's
    /// own setting when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub circuit_breaker: Option<CircuitBreakerMode>,
    /// How long ELB health checks of new tasks are ignored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_check_grace_period: Option<HumanDuration>,
    /// Start new tasks even when the task definition did not change.
    #[serde(default)]
    pub force_new_deployment: bool,
    /// How long the deployment may take (default 15m).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<HumanDuration>,
    /// How long the deployment may go without a change in its task counts or a new service
    /// event (default 5m).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub no_progress_timeout: Option<HumanDuration>,
    /// Stopped tasks of the new deployment after which shipit gives up, for services without
    /// the circuit breaker (default: the circuit breaker's own threshold).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed_tasks_limit: Option<u32>,
    /// When shipit gives up waiting (timeout, no progress, too many failed tasks), return the
    /// service to the previous task definition and wait for it to be stable.
    #[serde(default)]
    pub rollback_on_timeout: bool,
    /// CodeDeploy settings (blue_green only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub codedeploy: Option<CodeDeployTarget>,
}

/// What the ECS deployment circuit breaker does with a deployment whose tasks keep failing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum CircuitBreakerMode {
    /// Stop the deployment and return to the last completed one.
    Rollback,
    /// Stop the deployment and leave the service as it is.
    Detect,
    /// No circuit breaker.
    Off,
}

/// A blue/green deploy through AWS CodeDeploy. The AppSpec is generated: the load balancer's
/// container and port, network configuration, capacity providers and platform version come
/// from the service unless named here.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CodeDeployTarget {
    /// Default `AppECS-<cluster>-<service>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub application: Option<String>,
    /// Default `DgpECS-<cluster>-<service>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployment_group: Option<String>,
    /// A deployment configuration (`CodeDeployDefault.ECSAllAtOnce`,
    /// `CodeDeployDefault.ECSCanary10Percent5Minutes`, …); the group's when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployment_config: Option<String>,
    /// The container the load balancer sends traffic to; the service's load balancer's when
    /// absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_port: Option<u16>,
    /// Fargate platform version; the service's when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform_version: Option<String>,
    /// Lambda functions CodeDeploy calls at each lifecycle hook.
    #[serde(default, skip_serializing_if = "CodeDeployHooks::is_empty")]
    pub hooks: CodeDeployHooks,
    /// A group that waits before rerouting production traffic: `wait` for `shipit approve` (or
    /// the group's own wait time), `continue` to reroute at once.
    #[serde(default)]
    pub reroute: RerouteMode,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CodeDeployHooks {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before_install: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after_install: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after_allow_test_traffic: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before_allow_traffic: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after_allow_traffic: Option<String>,
}

impl CodeDeployHooks {
    pub fn is_empty(&self) -> bool {
        *self == CodeDeployHooks::default()
    }

    /// The hooks set, under the AppSpec's names, in the order CodeDeploy runs them.
    pub fn in_order(&self) -> Vec<(&'static str, &str)> {
        [
            ("BeforeInstall", &self.before_install),
            ("AfterInstall", &self.after_install),
            ("AfterAllowTestTraffic", &self.after_allow_test_traffic),
            ("BeforeAllowTraffic", &self.before_allow_traffic),
            ("AfterAllowTraffic", &self.after_allow_traffic),
        ]
        .into_iter()
        .filter_map(|(name, function)| function.as_deref().map(|f| (name, f)))
        .collect()
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RerouteMode {
    #[default]
    Wait,
    Continue,
}

impl EcsTarget {
    /// `task_definition: current`: start from the task definition the service runs.
    pub fn uses_current_task_definition(&self) -> bool {
        self.task_definition.trim() == "current"
    }

    /// Each container this target sets the image of, with the image (a key of `images`) it
    /// runs: `container` runs the target's `image`, `containers` name the others.
    pub fn container_images<'a>(&'a self, image: &'a str) -> BTreeMap<&'a str, &'a str> {
        container_images(self.container.as_deref(), &self.containers, image)
    }

    /// The CodeDeploy application, by default the name the ECS console gives it.
    pub fn codedeploy_application(&self) -> String {
        self.codedeploy
            .as_ref()
            .and_then(|c| c.application.clone())
            .unwrap_or_else(|| format!("AppECS-{}-{}", self.cluster, self.service))
    }

    /// The CodeDeploy deployment group, by default the name the ECS console gives it.
    pub fn codedeploy_deployment_group(&self) -> String {
        self.codedeploy
            .as_ref()
            .and_then(|c| c.deployment_group.clone())
            .unwrap_or_else(|| format!("DgpECS-{}-{}", self.cluster, self.service))
    }
}

/// A Kubernetes (Amazon EKS) target: manifests applied with server-side apply, the target's
/// containers pinned to the pushed digests, and every workload applied gated on its rollout.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EksTarget {
    /// The EKS cluster: its endpoint and CA come from `DescribeCluster`, its token is made in
    /// shipit. Without it, `kubeconfig` and `context` (or the default kubeconfig) name the
    /// cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
    /// AWS region of `cluster`; the `aws:` block's, then the credential chain's, when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// The EKS and STS API endpoint instead of AWS's (an emulator, a VPC endpoint).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint_url: Option<String>,
    /// A kubeconfig file (relative to the pipeline file); `KUBECONFIG` or `~/.kube/config`
    /// when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubeconfig: Option<String>,
    /// The kubeconfig context to use; the current context when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<String>,
    /// The namespace of manifests that name none.
    #[serde(default = "default_namespace")]
    pub namespace: String,
    /// Manifest files or globs (YAML, several documents each), relative to the pipeline file.
    pub manifests: Vec<String>,
    /// The container (in the workloads' pod templates) that runs the target's `image`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
    /// More containers and the image (a key of `images`) each runs.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub containers: BTreeMap<String, String>,
    #[serde(default)]
    pub strategy: EksStrategy,
    /// How long every workload may take to complete its rollout (default 10m).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<HumanDuration>,
    /// Restarts of a new pod's container (a failing liveness probe, a crash) that fail the
    /// deploy (default 2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_restarts: Option<u32>,
    /// How long a new pod may run without becoming ready before the deploy fails (default 3m).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unready_timeout: Option<HumanDuration>,
    /// On failure, return each workload to its previous pod template, as `kubectl rollout
    /// undo` does (default true).
    #[serde(default = "default_true")]
    pub rollback_on_failure: bool,
    /// Take over fields another field manager owns instead of failing on the conflict.
    #[serde(default)]
    pub force_conflicts: bool,
    /// Blue/green settings (`strategy: blue_green` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blue_green: Option<EksBlueGreen>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum EksStrategy {
    /// The Deployment controller's rolling update, gated as `kubectl rollout status` gates it.
    #[default]
    Rolling,
    /// Two Deployments (`<name>-blue`, `<name>-green`) behind one Service whose selector
    /// switches once the idle slot passes the gate.
    BlueGreen,
}

/// Blue/green with plain Deployments: no CRDs or controllers needed.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EksBlueGreen {
    /// The Deployment (in the manifests) run as two slots.
    pub deployment: String,
    /// The Service whose selector is switched to the new slot.
    pub service: String,
    /// A Service that selects the idle slot, for the smoke check (created when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preview_service: Option<String>,
    /// A check of the new slot before traffic switches to it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub smoke_check: Option<SmokeCheck>,
    /// How long the old slot keeps running after the switch, so a rollback is a selector flip
    /// (default 5m).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale_down_delay: Option<HumanDuration>,
}

/// One of: an HTTP request through the preview Service, or a Job (a manifest file) that must
/// succeed.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SmokeCheck {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<SmokeHttp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job: Option<String>,
    /// How long the check may take (default 2m).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<HumanDuration>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SmokeHttp {
    pub path: String,
    /// The preview Service's port (its first when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    #[serde(default = "default_expect_status")]
    pub expect_status: u16,
}

/// A cluster target's containers and the image each runs: `container` runs the target's
/// `image`, `containers` name the others.
fn container_images<'a>(
    container: Option<&'a str>,
    containers: &'a BTreeMap<String, String>,
    image: &'a str,
) -> BTreeMap<&'a str, &'a str> {
    let mut images: BTreeMap<&str, &str> = containers
        .iter()
        .map(|(container, image)| (container.as_str(), image.as_str()))
        .collect();
    if let Some(container) = container {
        images.insert(container, image);
    }
    images
}

fn default_true() -> bool {
    true
}

fn default_expect_status() -> u16 {
    200
}

impl EksTarget {
    /// Each container this target sets the image of, with the image (a key of `images`).
    pub fn container_images<'a>(&'a self, image: &'a str) -> BTreeMap<&'a str, &'a str> {
        container_images(self.container.as_deref(), &self.containers, image)
    }
}

fn default_namespace() -> String {
    "default".to_owned()
}

impl ValidateConfig for EcsTarget {
    fn problems(&self) -> Vec<ConfigProblem> {
        let mut problems = Vec::new();
        for (field, value) in [
            ("cluster", &self.cluster),
            ("service", &self.service),
            ("task_definition", &self.task_definition),
        ] {
            if value.trim().is_empty() {
                problems.push(ConfigProblem::new(field, "must not be empty"));
            }
        }
        match &self.container {
            Some(container) if container.trim().is_empty() => {
                problems.push(ConfigProblem::new("container", "must not be empty"));
            }
            Some(container) if self.containers.contains_key(container) => {
                problems.push(ConfigProblem::new(
                    "containers",
                    format!(
                        "container `{container}` is already the target's `container`; name it once"
                    ),
                ));
            }
            None if self.containers.is_empty() => problems.push(ConfigProblem::new(
                "container",
                "name the container (in the task definition) that runs the target's image",
            )),
            _ => {}
        }
        if self.containers.keys().any(|name| name.trim().is_empty()) {
            problems.push(ConfigProblem::new(
                "containers",
                "a container name must not be empty",
            ));
        }
        match (self.strategy, &self.codedeploy) {
            (EcsStrategy::Rolling, Some(_)) => problems.push(ConfigProblem::new(
                "codedeploy",
                "only `strategy: blue_green` deploys through CodeDeploy; remove it or change the strategy",
            )),
            (EcsStrategy::BlueGreen, _) => {
                // CodeDeploy owns these for a blue/green service: ECS refuses them there.
                for (field, set) in [
                    ("minimum_healthy_percent", self.minimum_healthy_percent.is_some()),
                    ("maximum_percent", self.maximum_percent.is_some()),
                    ("circuit_breaker", self.circuit_breaker.is_some()),
                    ("force_new_deployment", self.force_new_deployment),
                ] {
                    if set {
                        problems.push(ConfigProblem::new(
                            field,
                            "applies to `strategy: rolling` only; CodeDeploy's deployment configuration decides it for blue_green",
                        ));
                    }
                }
            }
            _ => {}
        }
        if let Some(percent) = self.minimum_healthy_percent
            && percent > 100
        {
            problems.push(ConfigProblem::new(
                "minimum_healthy_percent",
                format!("{percent} is above 100"),
            ));
        }
        if let Some(maximum) = self.maximum_percent {
            if maximum < 100 {
                problems.push(ConfigProblem::new(
                    "maximum_percent",
                    format!("{maximum} is below 100; ECS needs room for the desired count"),
                ));
            }
            if let Some(minimum) = self.minimum_healthy_percent
                && minimum == 100
                && maximum == 100
            {
                problems.push(ConfigProblem::new(
                    "maximum_percent",
                    "with minimum_healthy_percent 100 and maximum_percent 100 no task can ever be replaced; raise maximum_percent or lower minimum_healthy_percent",
                ));
            }
        }
        for (field, value) in [
            ("timeout", &self.timeout),
            ("no_progress_timeout", &self.no_progress_timeout),
        ] {
            if value.as_ref().is_some_and(|t| t.0.is_zero()) {
                problems.push(ConfigProblem::new(field, "must be longer than 0s"));
            }
        }
        if self.failed_tasks_limit == Some(0) {
            problems.push(ConfigProblem::new(
                "failed_tasks_limit",
                "must be at least 1",
            ));
        }
        problems
    }
}

impl ValidateConfig for EksTarget {
    fn problems(&self) -> Vec<ConfigProblem> {
        let mut problems = Vec::new();
        // Kubernetes object names: RFC 1123 labels for namespaces, subdomains for the rest.
        if !is_dns_label(&self.namespace) {
            problems.push(ConfigProblem::new(
                "namespace",
                format!(
                    "`{}` is not a Kubernetes namespace name: lowercase letters, digits and `-`, at most 63 characters",
                    self.namespace
                ),
            ));
        }
        if self.manifests.is_empty() {
            problems.push(ConfigProblem::new(
                "manifests",
                "name at least one manifest file or glob",
            ));
        }
        let mut containers: Vec<(String, &str)> = self
            .containers
            .keys()
            .map(|name| (format!("containers.{name}"), name.as_str()))
            .collect();
        if let Some(container) = &self.container {
            containers.push(("container".to_owned(), container));
        } else if self.containers.is_empty() {
            problems.push(ConfigProblem::new(
                "container",
                "name the container (in the pod templates) that runs the target's image",
            ));
        }
        for (field, name) in containers {
            if !is_dns_label(name) {
                problems.push(ConfigProblem::new(
                    field,
                    format!(
                        "`{name}` is not a Kubernetes container name: lowercase letters, digits and `-`, at most 63 characters"
                    ),
                ));
            }
        }
        if self.cluster.is_some() && (self.kubeconfig.is_some() || self.context.is_some()) {
            problems.push(ConfigProblem::new(
                "cluster",
                "name the EKS `cluster`, or a `kubeconfig`/`context`, not both",
            ));
        }
        match (self.strategy, &self.blue_green) {
            (EksStrategy::BlueGreen, None) => problems.push(ConfigProblem::new(
                "blue_green",
                "`strategy: blue_green` needs `blue_green: { deployment, service }`",
            )),
            (EksStrategy::Rolling, Some(_)) => problems.push(ConfigProblem::new(
                "blue_green",
                "only `strategy: blue_green` uses these settings; remove them or change the strategy",
            )),
            (EksStrategy::BlueGreen, Some(blue_green)) => {
                for (field, name) in [
                    ("blue_green.deployment", &blue_green.deployment),
                    ("blue_green.service", &blue_green.service),
                ] {
                    if !is_dns_subdomain(name) {
                        problems.push(ConfigProblem::new(
                            field,
                            format!("`{name}` is not a Kubernetes object name"),
                        ));
                    }
                }
                if let Some(check) = &blue_green.smoke_check
                    && check.http.is_some() == check.job.is_some()
                {
                    problems.push(ConfigProblem::new(
                        "blue_green.smoke_check",
                        "name one of `http` or `job`",
                    ));
                }
                if blue_green
                    .smoke_check
                    .as_ref()
                    .is_some_and(|check| check.http.is_some())
                    && blue_green.preview_service.is_none()
                {
                    problems.push(ConfigProblem::new(
                        "blue_green.smoke_check.http",
                        "is sent through the preview Service: name it in `blue_green.preview_service`",
                    ));
                }
                if let Some(preview) = &blue_green.preview_service
                    && (preview == &blue_green.service || !is_dns_subdomain(preview))
                {
                    problems.push(ConfigProblem::new(
                        "blue_green.preview_service",
                        format!("`{preview}` must be a Kubernetes object name other than the service's"),
                    ));
                }
            }
            (EksStrategy::Rolling, None) => {}
        }
        for (field, value) in [
            ("timeout", &self.timeout),
            ("unready_timeout", &self.unready_timeout),
        ] {
            if value.as_ref().is_some_and(|t| t.0.is_zero()) {
                problems.push(ConfigProblem::new(field, "must be longer than 0s"));
            }
        }
        problems
    }
}

/// An RFC 1123 subdomain, as Kubernetes requires of most object names.
fn is_dns_subdomain(text: &str) -> bool {
    text.contains("${{") || (text.len() <= 253 && text.split('.').all(is_dns_label))
}

/// An RFC 1123 label, as Kubernetes requires of namespace and container names. A value holding
/// an expression is checked once resolved.
fn is_dns_label(text: &str) -> bool {
    if text.contains("${{") {
        return true;
    }
    !text.is_empty()
        && text.len() <= 63
        && text
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !text.starts_with('-')
        && !text.ends_with('-')
}

#[cfg(test)]
mod eks_blue_green_tests {
    use super::*;
    use crate::config_problem::ValidateConfig;
    use serde_json::json;

    fn target(blue_green: serde_json::Value) -> EksTarget {
        serde_json::from_value(json!({
            "cluster": "prod", "namespace": "shop", "manifests": ["k8s/*.yaml"], "container": "web",
            "strategy": "blue_green", "blue_green": blue_green
        }))
        .unwrap()
    }

    fn paths(target: &EksTarget) -> Vec<String> {
        target.problems().into_iter().map(|p| p.path).collect()
    }

    #[test]
    fn blue_green_settings_that_fit_are_valid() {
        let valid = target(json!({
            "deployment": "web", "service": "web", "preview_service": "web-preview",
            "smoke_check": {"http": {"path": "/health"}}, "scale_down_delay": "0s"
        }));
        assert_eq!(paths(&valid), Vec::<String>::new());
        let job = target(json!({
            "deployment": "web", "service": "web", "smoke_check": {"job": "smoke/job.yaml"}
        }));
        assert_eq!(paths(&job), Vec::<String>::new());
    }

    #[test]
    fn an_http_smoke_check_needs_a_preview_service_other_than_the_service() {
        let no_preview = target(json!({
            "deployment": "web", "service": "web", "smoke_check": {"http": {"path": "/health"}}
        }));
        assert_eq!(paths(&no_preview), ["blue_green.smoke_check.http"]);
        let same = target(json!({
            "deployment": "web", "service": "web", "preview_service": "web"
        }));
        assert_eq!(paths(&same), ["blue_green.preview_service"]);
        let both = target(json!({
            "deployment": "web", "service": "web", "preview_service": "p",
            "smoke_check": {"http": {"path": "/"}, "job": "j.yaml"}
        }));
        assert_eq!(paths(&both), ["blue_green.smoke_check"]);
    }
}
