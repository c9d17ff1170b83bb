//! What one look at a CodeDeploy deployment saw, as plain data: the parts of GetDeployment's
//! `deploymentInfo` and GetDeploymentTarget's `ecsTarget` the gate and the progress lines read.
//! Plain structs keep the gate free of the SDK, and their serde names are the API's own, so
//! test fixtures are written exactly as AWS answers.

use aws_sdk_codedeploy::types::{DeploymentInfo, EcsTarget};
use serde::Deserialize;

/// One poll: the deployment, and its ECS target when it was read on this poll.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Snapshot {
    #[serde(rename = "deploymentInfo")]
    pub deployment: DeploymentView,
    #[serde(default, rename = "ecsTarget")]
    pub target: Option<TargetView>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct DeploymentView {
    #[serde(default)]
    pub deployment_id: String,
    /// Created, Queued, InProgress, Baking, Ready, Succeeded, Failed or Stopped.
    #[serde(default)]
    pub status: String,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub error_information: Option<ErrorView>,
    #[serde(default)]
    pub rollback_info: Option<RollbackView>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ErrorView {
    #[serde(default)]
    pub code: Option<String>,
    #[serde(default)]
    pub message: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RollbackView {
    /// Set when CodeDeploy started a rollback deployment for this one.
    #[serde(default)]
    pub rollback_deployment_id: Option<String>,
    #[serde(default)]
    pub rollback_message: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct TargetView {
    #[serde(default)]
    pub lifecycle_events: Vec<LifecycleEventView>,
    #[serde(default, rename = "taskSetsInfo")]
    pub task_sets: Vec<TaskSetView>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct LifecycleEventView {
    #[serde(rename = "lifecycleEventName", default)]
    pub name: String,
    /// Pending, InProgress, Succeeded, Failed, Skipped or Unknown.
    #[serde(default)]
    pub status: String,
    #[serde(default)]
    pub diagnostics: Option<DiagnosticsView>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct DiagnosticsView {
    #[serde(default)]
    pub error_code: Option<String>,
    #[serde(default)]
    pub message: Option<String>,
    #[serde(default)]
    pub log_tail: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct TaskSetView {
    /// BLUE (the original) or GREEN (the replacement).
    #[serde(default, rename = "taskSetLabel")]
    pub label: Option<String>,
    /// The percentage of production traffic the task set receives.
    #[serde(default)]
    pub traffic_weight: f64,
    #[serde(default)]
    pub desired_count: i64,
    #[serde(default)]
    pub running_count: i64,
    #[serde(default)]
    pub pending_count: i64,
}

impl TargetView {
    /// The replacement task set.
    pub(crate) fn green(&self) -> Option<&TaskSetView> {
        self.labelled("GREEN")
    }

    pub(crate) fn labelled(&self, label: &str) -> Option<&TaskSetView> {
        self.task_sets.iter().find(|set| {
            set.label
                .as_deref()
                .is_some_and(|l| l.eq_ignore_ascii_case(label))
        })
    }
}

impl DeploymentView {
    pub(crate) fn from_sdk(info: &DeploymentInfo) -> DeploymentView {
        DeploymentView {
            deployment_id: info.deployment_id().unwrap_or_default().to_string(),
            status: info
                .status()
                .map(|status| status.as_str().to_string())
                .unwrap_or_default(),
            description: info.description().map(str::to_string),
            error_information: info.error_information().map(|error| ErrorView {
                code: error.code().map(|code| code.as_str().to_string()),
                message: error.message().map(str::to_string),
            }),
            rollback_info: info.rollback_info().map(|rollback| RollbackView {
                rollback_deployment_id: rollback.rollback_deployment_id().map(str::to_string),
                rollback_message: rollback.rollback_message().map(str::to_string),
            }),
        }
    }
}

impl TargetView {
    pub(crate) fn from_sdk(target: &EcsTarget) -> TargetView {
        TargetView {
            lifecycle_events: target
                .lifecycle_events()
                .iter()
                .map(|event| LifecycleEventView {
                    name: event.lifecycle_event_name().unwrap_or_default().to_string(),
                    status: event
                        .status()
                        .map(|status| status.as_str().to_string())
                        .unwrap_or_default(),
                    diagnostics: event.diagnostics().map(|diagnostics| DiagnosticsView {
                        error_code: diagnostics
                            .error_code()
                            .map(|code| code.as_str().to_string()),
                        message: diagnostics.message().map(str::to_string),
                        log_tail: diagnostics.log_tail().map(str::to_string),
                    }),
                })
                .collect(),
            task_sets: target
                .task_sets_info()
                .iter()
                .map(|set| TaskSetView {
                    label: set.task_set_label().map(|label| label.as_str().to_string()),
                    traffic_weight: set.traffic_weight(),
                    desired_count: set.desired_count(),
                    running_count: set.running_count(),
                    pending_count: set.pending_count(),
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use aws_sdk_codedeploy::types::{
        DeploymentStatus, Diagnostics, EcsTaskSet, ErrorCode, ErrorInformation, LifecycleErrorCode,
        LifecycleEvent, LifecycleEventStatus, RollbackInfo, TargetLabel,
    };

    use super::*;

    /// The SDK's values and the API's JSON give the same plain data.
    #[test]
    fn the_sdk_answer_and_the_json_fixture_read_the_same() {
        let info = DeploymentInfo::builder()
            .deployment_id("d-ABC123")
            .status(DeploymentStatus::Failed)
            .description("shipit web run r1 deploy:prod")
            .error_information(
                ErrorInformation::builder()
                    .code(ErrorCode::HookExecutionFailure)
                    .message("lifecycle hook failed")
                    .build(),
            )
            .rollback_info(
                RollbackInfo::builder()
                    .rollback_deployment_id("d-ROLL")
                    .rollback_message("rolled back")
                    .build(),
            )
            .build();
        let target = EcsTarget::builder()
            .lifecycle_events(
                LifecycleEvent::builder()
                    .lifecycle_event_name("AfterAllowTestTraffic")
                    .status(LifecycleEventStatus::Failed)
                    .diagnostics(
                        Diagnostics::builder()
                            .error_code(LifecycleErrorCode::ScriptFailed)
                            .message("smoke test failed")
                            .log_tail("GET /health 500")
                            .build(),
                    )
                    .build(),
            )
            .task_sets_info(
                EcsTaskSet::builder()
                    .task_set_label(TargetLabel::Green)
                    .traffic_weight(10.0)
                    .desired_count(2)
                    .running_count(1)
                    .pending_count(1)
                    .build(),
            )
            .build();
        let from_sdk = Snapshot {
            deployment: DeploymentView::from_sdk(&info),
            target: Some(TargetView::from_sdk(&target)),
        };
        let from_json: Snapshot = serde_json::from_value(serde_json::json!({
            "deploymentInfo": {
                "deploymentId": "d-ABC123",
                "status": "Failed",
                "description": "shipit web run r1 deploy:prod",
                "errorInformation": {"code": "HOOK_EXECUTION_FAILURE", "message": "lifecycle hook failed"},
                "rollbackInfo": {"rollbackDeploymentId": "d-ROLL", "rollbackMessage": "rolled back"},
            },
            "ecsTarget": {
                "lifecycleEvents": [{
                    "lifecycleEventName": "AfterAllowTestTraffic",
                    "status": "Failed",
                    "diagnostics": {"errorCode": "ScriptFailed", "message": "smoke test failed", "logTail": "GET /health 500"},
                }],
                "taskSetsInfo": [{
                    "taskSetLabel": "Green", "trafficWeight": 10.0,
                    "desiredCount": 2, "runningCount": 1, "pendingCount": 1,
                }],
            },
        }))
        .unwrap();
        assert_eq!(from_sdk, from_json);
    }
}
