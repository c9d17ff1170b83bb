//! The CodeDeploy operations for ECS blue/green deployment groups; how a deployment progresses
//! is `codedeploy_rollout`'s.

use serde_json::{Value, json};

use super::codedeploy_appspec;
use super::codedeploy_rollout::{LIFECYCLE, start_deployment, stop_deployment};
use super::ecs_shapes::task_set_arn;
use super::wire::{AwsError, required, text, unknown_operation};
use super::world::{CodeDeployDeployment, DeploymentGroup, Now, World, epoch};
use super::{ACCOUNT, REGION};

pub fn handle(
    world: &mut World,
    operation: &str,
    input: &Value,
    now: Now,
) -> Result<Value, AwsError> {
    match operation {
        "GetApplication" => get_application(world, input),
        "GetDeploymentGroup" => {
            let group = group(world, input)?;
            Ok(json!({"deploymentGroupInfo": group_info(group)}))
        }
        "CreateDeployment" => create_deployment(world, input, now),
        "GetDeployment" => {
            let deployment = deployment(world, input)?;
            let group = world.deployment_groups.get(&(
                deployment.application.clone(),
                deployment.deployment_group.clone(),
            ));
            Ok(json!({"deploymentInfo": deployment_info(deployment, group)}))
        }
        "ListDeployments" => list_deployments(world, input),
        "ListDeploymentTargets" => {
            let deployment = deployment(world, input)?;
            Ok(json!({"targetIds": [target_id(deployment)]}))
        }
        "GetDeploymentTarget" => get_deployment_target(world, input),
        "ContinueDeployment" => continue_deployment(world, input),
        "StopDeployment" => {
            let id = required(input, "deploymentId", "DeploymentIdRequiredException")?.to_owned();
            let rollback = input["autoRollbackEnabled"].as_bool().unwrap_or(false);
            stop_deployment(world, &id, rollback, now)?;
            Ok(json!({"status": "Pending", "statusMessage": "Stopping Active Deployment"}))
        }
        _ => Err(unknown_operation(operation)),
    }
}

fn get_application(world: &World, input: &Value) -> Result<Value, AwsError> {
    let name = required(input, "applicationName", "ApplicationNameRequiredException")?;
    let group = world
        .deployment_groups
        .values()
        .find(|g| g.seed.application == name)
        .ok_or_else(|| application_missing(name))?;
    Ok(json!({"application": {
        "applicationId": group.id,
        "applicationName": name,
        "createTime": epoch(chrono::Utc::now()),
        "linkedToGitHub": false,
        "computePlatform": "ECS",
    }}))
}

fn application_missing(name: &str) -> AwsError {
    AwsError::new(
        "ApplicationDoesNotExistException",
        format!("No application found for name: {name}"),
    )
}

fn group<'a>(world: &'a World, input: &Value) -> Result<&'a DeploymentGroup, AwsError> {
    let application = required(input, "applicationName", "ApplicationNameRequiredException")?;
    let name = required(
        input,
        "deploymentGroupName",
        "DeploymentGroupNameRequiredException",
    )?;
    if !world
        .deployment_groups
        .keys()
        .any(|(app, _)| app == application)
    {
        return Err(application_missing(application));
    }
    world
        .deployment_groups
        .get(&(application.to_owned(), name.to_owned()))
        .ok_or_else(|| {
            AwsError::new(
                "DeploymentGroupDoesNotExistException",
                format!("No Deployment Group found for name: {name}"),
            )
        })
}

fn group_info(group: &DeploymentGroup) -> Value {
    let seed = &group.seed;
    let ready = match seed.ready_wait {
        Some((minutes, action)) => {
            json!({"actionOnTimeout": action.wire_name(), "waitTimeInMinutes": minutes})
        }
        None => json!({"actionOnTimeout": "CONTINUE_DEPLOYMENT", "waitTimeInMinutes": 0}),
    };
    json!({
        "applicationName": seed.application,
        "deploymentGroupId": group.id,
        "deploymentGroupName": seed.deployment_group,
        "deploymentConfigName": seed.deployment_config_name,
        "serviceRoleArn": format!("arn:aws:iam::{ACCOUNT}:role/codedeploy-ecs"),
        "autoRollbackConfiguration": {
            "enabled": seed.auto_rollback,
            "events": if seed.auto_rollback { json!(["DEPLOYMENT_FAILURE", "DEPLOYMENT_STOP_ON_REQUEST"]) } else { json!([]) },
        },
        "deploymentStyle": {"deploymentType": "BLUE_GREEN", "deploymentOption": "WITH_TRAFFIC_CONTROL"},
        "blueGreenDeploymentConfiguration": {
            "terminateBlueInstancesOnDeploymentSuccess": {"action": "TERMINATE", "terminationWaitTimeInMinutes": 0},
            "deploymentReadyOption": ready,
        },
        "loadBalancerInfo": {"targetGroupPairInfoList": [{
            "targetGroups": [{"name": seed.target_groups.0}, {"name": seed.target_groups.1}],
            "prodTrafficRoute": {"listenerArns": [format!("arn:aws:elasticloadbalancing:{REGION}:{ACCOUNT}:listener/app/{}/0123456789abcdef/prod", seed.service)]},
            "testTrafficRoute": {"listenerArns": [format!("arn:aws:elasticloadbalancing:{REGION}:{ACCOUNT}:listener/app/{}/0123456789abcdef/test", seed.service)]},
        }]},
        "ecsServices": [{"serviceName": seed.service, "clusterName": seed.cluster}],
        "computePlatform": "ECS",
        "outdatedInstancesStrategy": "UPDATE",
    })
}

fn create_deployment(world: &mut World, input: &Value, now: Now) -> Result<Value, AwsError> {
    let group = group(world, input)?.clone();
    let spec = codedeploy_appspec::parse(world, &input["revision"])?;
    if let Some(active) = world.codedeploy_deployments.iter().find(|d| {
        d.application == group.seed.application
            && d.deployment_group == group.seed.deployment_group
            && !d.is_done()
    }) {
        return Err(AwsError::new(
            "DeploymentLimitExceededException",
            format!(
                "The Deployment Group '{}' already has an active Deployment '{}'",
                group.seed.deployment_group, active.id
            ),
        ));
    }
    let id = start_deployment(
        world,
        &group,
        spec,
        text(input, "description").map(str::to_owned),
        None,
        now,
    );
    Ok(json!({"deploymentId": id}))
}

fn deployment<'a>(world: &'a World, input: &Value) -> Result<&'a CodeDeployDeployment, AwsError> {
    let id = required(input, "deploymentId", "DeploymentIdRequiredException")?;
    world
        .codedeploy_deployments
        .iter()
        .find(|d| d.id == id)
        .ok_or_else(|| {
            AwsError::new(
                "DeploymentDoesNotExistException",
                format!("The deployment {id} could not be found."),
            )
        })
}

fn overview(deployment: &CodeDeployDeployment) -> Value {
    let mut counts = json!({"Pending": 0, "InProgress": 0, "Succeeded": 0, "Failed": 0, "Skipped": 0, "Ready": 0});
    let key = match deployment.status {
        "Created" | "Queued" => "Pending",
        "Stopped" => "Failed",
        other => other,
    };
    counts[key] = json!(1);
    counts
}

fn deployment_info(deployment: &CodeDeployDeployment, group: Option<&DeploymentGroup>) -> Value {
    let mut out = json!({
        "applicationName": deployment.application,
        "deploymentGroupName": deployment.deployment_group,
        "deploymentConfigName": deployment.config_name,
        "deploymentId": deployment.id,
        "revision": {"revisionType": "AppSpecContent"},
        "status": deployment.status,
        "createTime": epoch(deployment.create_time),
        "deploymentOverview": overview(deployment),
        "creator": if deployment.rollback_triggering_deployment_id.is_some() { "codeDeployRollback" } else { "user" },
        "ignoreApplicationStopFailures": false,
        "updateOutdatedInstancesOnly": false,
        "deploymentStyle": {"deploymentType": "BLUE_GREEN", "deploymentOption": "WITH_TRAFFIC_CONTROL"},
        "instanceTerminationWaitTimeStarted": false,
        "deploymentStatusMessages": [],
        "computePlatform": "ECS",
    });
    if let Some(group) = group {
        let info = group_info(group);
        out["autoRollbackConfiguration"] = info["autoRollbackConfiguration"].clone();
        out["blueGreenDeploymentConfiguration"] = info["blueGreenDeploymentConfiguration"].clone();
        out["loadBalancerInfo"] = info["loadBalancerInfo"].clone();
    }
    if deployment.status != "Created" {
        out["startTime"] = epoch(deployment.create_time);
    }
    if let Some(at) = deployment.complete_time {
        out["completeTime"] = epoch(at);
    }
    if let Some(description) = &deployment.description {
        out["description"] = json!(description);
    }
    if let Some((code, message)) = &deployment.error {
        out["errorInformation"] = json!({"code": code, "message": message});
    }
    let mut rollback = serde_json::Map::new();
    if let Some(id) = &deployment.rollback_deployment_id {
        rollback.insert("rollbackDeploymentId".into(), json!(id));
    }
    if let Some(id) = &deployment.rollback_triggering_deployment_id {
        rollback.insert("rollbackTriggeringDeploymentId".into(), json!(id));
    }
    if let Some(message) = &deployment.rollback_message {
        rollback.insert("rollbackMessage".into(), json!(message));
    }
    if !rollback.is_empty() {
        out["rollbackInfo"] = Value::Object(rollback);
    }
    out
}

fn target_id(deployment: &CodeDeployDeployment) -> String {
    format!("{}:{}", deployment.cluster, deployment.service)
}

fn list_deployments(world: &World, input: &Value) -> Result<Value, AwsError> {
    let group = group(world, input)?;
    let statuses: Vec<&str> = input["includeOnlyStatuses"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    let ids: Vec<&str> = world
        .codedeploy_deployments
        .iter()
        .rev()
        .filter(|d| {
            d.application == group.seed.application
                && d.deployment_group == group.seed.deployment_group
        })
        .filter(|d| statuses.is_empty() || statuses.contains(&d.status))
        .map(|d| d.id.as_str())
        .collect();
    Ok(json!({"deployments": ids}))
}

fn target_status(deployment: &CodeDeployDeployment) -> &'static str {
    match deployment.status {
        "Created" | "Queued" => "Pending",
        "Stopped" => "Failed",
        "Baking" => "InProgress",
        other => other,
    }
}

fn get_deployment_target(world: &World, input: &Value) -> Result<Value, AwsError> {
    let deployment = deployment(world, input)?;
    let wanted = required(input, "targetId", "DeploymentTargetIdRequiredException")?;
    if wanted != target_id(deployment) {
        return Err(AwsError::new(
            "DeploymentTargetDoesNotExistException",
            format!(
                "The target {wanted} does not exist in deployment {}",
                deployment.id
            ),
        ));
    }
    let service = world.service(&deployment.cluster, &deployment.service);
    let group = world.deployment_groups.get(&(
        deployment.application.clone(),
        deployment.deployment_group.clone(),
    ));
    let (blue_group, green_group) = group
        .map(|g| g.seed.target_groups.clone())
        .unwrap_or_default();
    let mut task_sets = Vec::new();
    if let Some(service) = service {
        for set in &service.task_sets {
            let green = deployment.green_task_set.as_deref() == Some(set.id.as_str());
            let carries_traffic = if green {
                deployment.traffic_on_green
            } else {
                !deployment.traffic_on_green
            };
            task_sets.push(json!({
                "identifer": task_set_arn(service, &set.id),
                "desiredCount": set.desired_count,
                "pendingCount": set.desired_count.saturating_sub(set.running_count),
                "runningCount": set.running_count,
                "status": if set.primary { "PRIMARY" } else { "ACTIVE" },
                "trafficWeight": if carries_traffic { 100.0 } else { 0.0 },
                "targetGroup": {"name": if green { &green_group } else { &blue_group }},
                "taskSetLabel": if green { "Green" } else { "Blue" },
            }));
        }
    }
    let events: Vec<Value> = deployment
        .events
        .iter()
        .map(|event| {
            let mut out = json!({"lifecycleEventName": event.name, "status": event.status});
            if let Some(at) = event.start {
                out["startTime"] = epoch(at);
            }
            if let Some(at) = event.end {
                out["endTime"] = epoch(at);
            }
            if let Some(diagnostics) = &event.diagnostics {
                out["diagnostics"] = diagnostics.clone();
            }
            out
        })
        .collect();
    debug_assert_eq!(events.len(), LIFECYCLE.len());
    Ok(json!({"deploymentTarget": {
        "deploymentTargetType": "ECSTarget",
        "ecsTarget": {
            "deploymentId": deployment.id,
            "targetId": target_id(deployment),
            "targetArn": super::world::ecs_arn(&format!("service/{}/{}", deployment.cluster, deployment.service)),
            "status": target_status(deployment),
            "lastUpdatedAt": epoch(deployment.updated_at),
            "lifecycleEvents": events,
            "taskSetsInfo": task_sets,
        },
    }}))
}

fn continue_deployment(world: &mut World, input: &Value) -> Result<Value, AwsError> {
    let id = required(input, "deploymentId", "DeploymentIdRequiredException")?.to_owned();
    let deployment = world
        .codedeploy_deployments
        .iter_mut()
        .find(|d| d.id == id)
        .ok_or_else(|| {
            AwsError::new(
                "DeploymentDoesNotExistException",
                format!("The deployment {id} could not be found."),
            )
        })?;
    if deployment.status != "Ready" {
        return Err(AwsError::new(
            "DeploymentIsNotInReadyStateException",
            format!("The deployment {id} is not in a ready state."),
        ));
    }
    deployment.continue_requested = true;
    Ok(json!({}))
}
