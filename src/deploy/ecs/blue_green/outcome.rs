//! What a blue/green deploy records as its outcome, on success and attached to every error:
//! the CodeDeploy deployment, its last status, the green task set's counts, the lifecycle
//! events, and where a rollback returned the service.

use super::super::{EcsCheckpoint, EcsDeployError, EcsDeployOutcome, EcsDeploySpec, EcsErrorKind};
use super::progress::lifecycle_lines;
use super::snapshot::Snapshot;

pub(crate) fn blue_green_outcome(
    spec: &EcsDeploySpec,
    checkpoint: &EcsCheckpoint,
    registered: bool,
    last: Option<&Snapshot>,
    error: Option<&EcsDeployError>,
) -> EcsDeployOutcome {
    let target = last.and_then(|s| s.target.as_ref());
    let green = target.and_then(|t| t.green());
    let rolled_back = error.is_some_and(|e| e.kind == EcsErrorKind::RolledBack)
        || last
            .and_then(|s| s.deployment.rollback_info.as_ref())
            .is_some_and(|r| r.rollback_deployment_id.is_some());
    EcsDeployOutcome {
        cluster: spec.config.cluster.clone(),
        service: spec.config.service.clone(),
        strategy: "blue_green".to_string(),
        task_definition_arn: checkpoint.task_definition_arn.clone().unwrap_or_default(),
        previous_task_definition_arn: checkpoint.previous_task_definition_arn.clone(),
        registered,
        deployment_id: None,
        codedeploy_deployment_id: checkpoint.codedeploy_deployment_id.clone(),
        rollout_state: last
            .map(|s| s.deployment.status.clone())
            .filter(|status| !status.is_empty()),
        desired_count: green.map_or(0, |g| g.desired_count),
        running_count: green.map_or(0, |g| g.running_count),
        pending_count: green.map_or(0, |g| g.pending_count),
        failed_tasks: 0,
        images: spec.images.clone(),
        last_events: target.map(lifecycle_lines).unwrap_or_default(),
        failure: error.map(|e| e.message.clone()),
        rolled_back_to: if rolled_back {
            checkpoint.previous_task_definition_arn.clone()
        } else {
            None
        },
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::deploy::ecs::blue_green::deployment_group::tests::spec;

    fn checkpoint() -> EcsCheckpoint {
        EcsCheckpoint {
            task_definition_arn: Some("arn:aws:ecs:eu-west-1:1:task-definition/web:8".into()),
            previous_task_definition_arn: Some(
                "arn:aws:ecs:eu-west-1:1:task-definition/web:7".into(),
            ),
            codedeploy_deployment_id: Some("d-1".into()),
            ..EcsCheckpoint::default()
        }
    }

    fn rolled_back() -> Snapshot {
        serde_json::from_value(json!({
            "deploymentInfo": {"deploymentId": "d-1", "status": "Failed",
                               "rollbackInfo": {"rollbackDeploymentId": "d-2"}},
            "ecsTarget": {
                "lifecycleEvents": [
                    {"lifecycleEventName": "Install", "status": "Succeeded"},
                    {"lifecycleEventName": "AfterAllowTestTraffic", "status": "Failed"},
                ],
                "taskSetsInfo": [
                    {"taskSetLabel": "Blue", "trafficWeight": 100.0, "desiredCount": 3, "runningCount": 3},
                    {"taskSetLabel": "Green", "trafficWeight": 0.0, "desiredCount": 3, "runningCount": 2, "pendingCount": 1},
                ],
            },
        }))
        .unwrap()
    }

    #[test]
    fn a_rolled_back_deploy_records_the_green_counts_the_events_and_where_it_returned() {
        let err = EcsDeployError::new(EcsErrorKind::RolledBack, "AfterAllowTestTraffic failed");
        let outcome = blue_green_outcome(
            &spec(),
            &checkpoint(),
            true,
            Some(&rolled_back()),
            Some(&err),
        );
        assert_eq!(outcome.strategy, "blue_green");
        assert_eq!(outcome.rollout_state.as_deref(), Some("Failed"));
        assert_eq!(
            (
                outcome.desired_count,
                outcome.running_count,
                outcome.pending_count
            ),
            (3, 2, 1)
        );
        assert_eq!(
            outcome.last_events,
            ["Install succeeded", "AfterAllowTestTraffic failed"]
        );
        assert_eq!(
            outcome.failure.as_deref(),
            Some("AfterAllowTestTraffic failed")
        );
        assert_eq!(
            outcome.rolled_back_to,
            checkpoint().previous_task_definition_arn
        );
        assert_eq!(outcome.codedeploy_deployment_id.as_deref(), Some("d-1"));
    }

    #[test]
    fn a_success_has_no_failure_and_no_rollback() {
        let mut done = rolled_back();
        done.deployment.status = "Succeeded".into();
        done.deployment.rollback_info = None;
        let outcome = blue_green_outcome(&spec(), &checkpoint(), false, Some(&done), None);
        assert_eq!(outcome.failure, None);
        assert_eq!(outcome.rolled_back_to, None);
        assert!(!outcome.registered);
    }
}
