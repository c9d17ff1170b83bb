//! ListServiceDeployments and DescribeServiceDeployments: each deployment a caller started, as
//! the service deployments API reports it (a rollback belongs to the deployment it undoes).

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::ecs::{cluster_name, existing_service};
use super::ecs_rollout::{circuit_breaker_threshold, revision_arn};
use super::ecs_shapes::cluster_arn;
use super::wire::{AwsError, text};
use super::world::{Deployment, Service, TaskStatus, World, ecs_arn, epoch};

fn service_deployment_arn(service: &Service, deployment: &Deployment) -> String {
    ecs_arn(&format!(
        "service-deployment/{}/{}/{}",
        service.cluster,
        service.name,
        deployment.number()
    ))
}

fn revision_summary(service: &Service, deployment: &Deployment) -> Value {
    let tasks = service
        .tasks
        .iter()
        .filter(|t| t.deployment_id == deployment.id);
    let (mut running, mut pending) = (0, 0);
    for task in tasks.filter(|t| !t.stopping) {
        match task.last_status {
            TaskStatus::Running => running += 1,
            TaskStatus::Provisioning | TaskStatus::Pending => pending += 1,
            TaskStatus::Stopped => {}
        }
    }
    json!({
        "arn": revision_arn(service, &deployment.id),
        "requestedTaskCount": deployment.desired_count,
        "runningTaskCount": running,
        "pendingTaskCount": pending,
    })
}

fn brief(service: &Service, deployment: &Deployment) -> Value {
    let mut out = json!({
        "serviceDeploymentArn": service_deployment_arn(service, deployment),
        "serviceArn": service.arn(),
        "clusterArn": cluster_arn(&service.cluster),
        "createdAt": epoch(deployment.created_at),
        "startedAt": epoch(deployment.created_at),
        "targetServiceRevisionArn": revision_arn(service, &deployment.id),
        "status": deployment.service_deployment_status,
    });
    if let Some(at) = deployment.finished_at {
        out["finishedAt"] = epoch(at);
    }
    if let Some(reason) = &deployment.status_reason {
        out["statusReason"] = json!(reason);
    }
    out
}

fn full(service: &Service, index: usize) -> Value {
    let deployment = &service.deployments[index];
    let mut out = brief(service, deployment);
    out["updatedAt"] = epoch(deployment.updated_at);
    out["targetServiceRevision"] = revision_summary(service, deployment);
    let sources: Vec<Value> = service.deployments[..index]
        .iter()
        .rev()
        .find(|d| d.rolls_back.is_none())
        .map(|d| revision_summary(service, d))
        .into_iter()
        .collect();
    out["sourceServiceRevisions"] = Value::Array(sources);
    out["deploymentConfiguration"] = json!({
        "deploymentCircuitBreaker": {"enable": service.circuit_breaker, "rollback": service.rollback},
        "maximumPercent": service.maximum_percent,
        "minimumHealthyPercent": service.minimum_healthy_percent,
    });
    out["deploymentCircuitBreaker"] = json!({
        "status": deployment.circuit_breaker_status,
        "failureCount": deployment.failed_tasks,
        "threshold": circuit_breaker_threshold(deployment.desired_count),
    });
    if let Some(started) = deployment.rollback_started_at {
        out["rollback"] = json!({
            "reason": super::ecs_rollout::CIRCUIT_BREAKER_REASON,
            "startedAt": epoch(started),
            "serviceRevisionArn": deployment.rollback_revision,
        });
    }
    out
}

fn timestamp(value: &Value) -> Option<DateTime<Utc>> {
    let seconds = value.as_f64()?;
    DateTime::from_timestamp_millis((seconds * 1000.0) as i64)
}

pub fn list(world: &mut World, input: &Value) -> Result<Value, AwsError> {
    let cluster = cluster_name(input);
    let name = text(input, "service")
        .ok_or_else(|| AwsError::new("InvalidParameterException", "Service must be specified."))?;
    let after = timestamp(&input["createdAt"]["after"]);
    let before = timestamp(&input["createdAt"]["before"]);
    let statuses: Vec<&str> = input["status"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    let service = existing_service(world, &cluster, name)?;
    let deployments: Vec<Value> = service
        .deployments
        .iter()
        .rev()
        .filter(|d| d.rolls_back.is_none())
        .filter(|d| after.is_none_or(|at| d.created_at >= at))
        .filter(|d| before.is_none_or(|at| d.created_at <= at))
        .filter(|d| statuses.is_empty() || statuses.contains(&d.service_deployment_status.as_str()))
        .map(|d| brief(service, d))
        .collect();
    Ok(json!({"serviceDeployments": deployments}))
}

pub fn describe(world: &World, input: &Value) -> Result<Value, AwsError> {
    let mut found = Vec::new();
    let mut failures = Vec::new();
    for arn in input["serviceDeploymentArns"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let arn = arn.as_str().unwrap_or_default();
        let number = arn.rsplit('/').next().unwrap_or_default();
        let hit = world
            .clusters
            .values()
            .flat_map(|c| c.services.values())
            .find_map(|service| {
                service
                    .deployments
                    .iter()
                    .position(|d| d.number() == number && d.rolls_back.is_none())
                    .map(|index| full(service, index))
            });
        match hit {
            Some(deployment) => found.push(deployment),
            None => failures.push(json!({"arn": arn, "reason": "MISSING"})),
        }
    }
    Ok(json!({"serviceDeployments": found, "failures": failures}))
}
