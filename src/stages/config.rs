//! A stage's configuration as its executor receives it: resolved (every `${{ … }}` replaced),
//! typed, and checked once, before the stage is decided or run. Problems point at the line of
//! the pipeline file they come from.

use serde_json::Value;

use super::StageFailure;
use crate::config_problem::ValidateConfig;
use crate::pipeline::model::{DeployTarget, ImageSpec};
use crate::pipeline::{
    Diagnostic, DocPath, LoadError, Pipeline, deserialize_at, push_problems, target_kind_problems,
};
use crate::plan::{StageId, StageKind};
use crate::registry::PushConfig;

#[derive(Debug, Clone)]
pub enum StageConfig {
    /// `build:<image>`: the image's spec.
    Build(ImageSpec),
    /// `push:<image>`: the image's `push:` block.
    Push(PushConfig),
    /// `deploy:<target>` and `down:<target>`: the target, with its one kind.
    Deploy(DeployTarget),
}

impl StageConfig {
    /// Types and checks `resolved`, the stage's configuration (found at `path`) with its
    /// expressions resolved. Values with expressions were passed over by `shipit validate`;
    /// this is where they are checked.
    pub fn resolve(
        pipeline: &Pipeline,
        id: &StageId,
        path: &DocPath,
        resolved: &Value,
    ) -> Result<StageConfig, StageFailure> {
        typed(pipeline, id, path, resolved)
            .map_err(|problems| StageFailure::failed(LoadError::Invalid(problems).to_string()))
    }

    fn kind_name(&self) -> &'static str {
        match self {
            StageConfig::Build(_) => "build",
            StageConfig::Push(_) => "push",
            StageConfig::Deploy(_) => "deploy",
        }
    }

    fn mismatch(&self, wanted: &str) -> StageFailure {
        StageFailure::failed(format!(
            "a {wanted} stage was handed the configuration of a {} stage",
            self.kind_name()
        ))
    }

    pub fn build(&self) -> Result<&ImageSpec, StageFailure> {
        match self {
            StageConfig::Build(spec) => Ok(spec),
            other => Err(other.mismatch("build")),
        }
    }

    pub fn push(&self) -> Result<&PushConfig, StageFailure> {
        match self {
            StageConfig::Push(config) => Ok(config),
            other => Err(other.mismatch("push")),
        }
    }

    pub fn deploy(&self) -> Result<&DeployTarget, StageFailure> {
        match self {
            StageConfig::Deploy(target) => Ok(target),
            other => Err(other.mismatch("deploy")),
        }
    }
}

fn deserialize<T: serde::de::DeserializeOwned>(
    pipeline: &Pipeline,
    value: &Value,
    path: &DocPath,
) -> Result<T, Vec<Diagnostic>> {
    deserialize_at(&pipeline.source, &pipeline.document, value, path).map_err(|d| vec![d])
}

fn typed(
    pipeline: &Pipeline,
    id: &StageId,
    path: &DocPath,
    value: &Value,
) -> Result<StageConfig, Vec<Diagnostic>> {
    match id.kind {
        StageKind::Build => {
            let spec: ImageSpec = deserialize(pipeline, value, path)?;
            Ok(StageConfig::Build(spec))
        }
        StageKind::Push => {
            let spec: ImageSpec = deserialize(pipeline, value, path)?;
            let Some(push) = spec.push else {
                let message = format!("images.{} has no push: block", id.name);
                return Err(vec![pipeline.diagnostic_at(path, message)]);
            };
            let problems = push_problems(pipeline, path, &push.problems());
            if !problems.is_empty() {
                return Err(problems);
            }
            Ok(StageConfig::Push(push))
        }
        StageKind::Deploy | StageKind::Down | StageKind::Rollback => {
            let target: DeployTarget = deserialize(pipeline, value, path)?;
            let problems = target_kind_problems(pipeline, path, &target.kind);
            if problems.is_empty() {
                Ok(StageConfig::Deploy(target))
            } else {
                Err(problems)
            }
        }
    }
}
