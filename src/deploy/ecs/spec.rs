//! What an ECS deploy is asked to do, resolved: the target's configuration with every
//! expression replaced, the task definition it starts from, and the image each container runs.

use std::collections::BTreeMap;

use crate::pipeline::model::EcsTarget;

#[derive(Debug, Clone)]
pub struct EcsDeploySpec {
    /// The pipeline's name, for the task definition's tags.
    pub pipeline: String,
    /// The deploy target's name.
    pub target: String,
    /// The run deploying, for the task definition's tags and the CodeDeploy description.
    pub run_id: String,
    /// The commit deployed, when the pipeline lives in a git repository.
    pub git_sha: Option<String>,
    pub config: EcsTarget,
    pub task_definition: TaskDefinitionSource,
    /// Container name → the digest-pinned reference it runs (`registry/repo@sha256:…`).
    pub images: BTreeMap<String, String>,
}

/// Where the new task definition starts from.
#[derive(Debug, Clone)]
pub enum TaskDefinitionSource {
    /// A JSON file of the repository, parsed, with the `${{ … }}` in its string values
    /// resolved (after parsing, so a value can never break the JSON). `path` is as the
    /// pipeline names it, for messages. Either shape: the `register-task-definition` input, or
    /// the `describe-task-definition` output (`{"taskDefinition": {…}, "tags": […]}`).
    File {
        path: String,
        document: serde_json::Value,
    },
    /// `task_definition: current`: the one the service runs now.
    Current,
}
