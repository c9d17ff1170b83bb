//! What an ECS deploy records: the checkpoint (journaled as soon as each part exists, so a
//! resumed run re-attaches instead of deploying twice) and the outcome (the JSON result's view
//! of the target).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// What a deploy has done so far. Every field is journaled the moment it is known.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EcsCheckpoint {
    /// The task definition the deploy rolls out (registered by it, or the live one when
    /// nothing changed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_definition_arn: Option<String>,
    /// The task definition the service ran before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_task_definition_arn: Option<String>,
    /// The ECS deployment (`ecs-svc/…`) the service update created (rolling).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployment_id: Option<String>,
    /// The CodeDeploy deployment (`d-…`) (blue/green).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub codedeploy_deployment_id: Option<String>,
    /// When the deploy asked for the service update or the CodeDeploy deployment (RFC 3339),
    /// so a resume can recognise a deployment it created but could not record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub update_requested_at: Option<String>,
}

/// Where an ECS deploy ended: recorded on success and on failure.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EcsDeployOutcome {
    pub cluster: String,
    pub service: String,
    /// `rolling` or `blue_green`.
    pub strategy: String,
    pub task_definition_arn: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_task_definition_arn: Option<String>,
    /// Whether this deploy registered a new revision (false when the task definition was
    /// unchanged).
    #[serde(default)]
    pub registered: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployment_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub codedeploy_deployment_id: Option<String>,
    /// The deployment's last state: ECS `rolloutState` (COMPLETED, FAILED, IN_PROGRESS) or the
    /// CodeDeploy status (Succeeded, Failed, Stopped, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout_state: Option<String>,
    #[serde(default)]
    pub desired_count: i64,
    #[serde(default)]
    pub running_count: i64,
    #[serde(default)]
    pub pending_count: i64,
    #[serde(default)]
    pub failed_tasks: i64,
    /// Container name → the image reference it runs.
    #[serde(default)]
    pub images: BTreeMap<String, String>,
    /// The last service events (or CodeDeploy lifecycle events), oldest first.
    #[serde(default)]
    pub last_events: Vec<String>,
    /// Why the deploy failed, in full.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<String>,
    /// The task definition the service returned to after a rollback.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rolled_back_to: Option<String>,
}
