//! How a service, a deployment and a task look on the wire (DescribeServices, DescribeTasks).

use serde_json::{Value, json};

use super::ecs_task_definitions;
use super::scenario::DeploymentController;
use super::world::{Deployment, Service, Task, TaskStatus, World, ecs_arn, epoch};

pub fn cluster_arn(cluster: &str) -> String {
    ecs_arn(&format!("cluster/{cluster}"))
}

pub fn task_arn(cluster: &str, task_id: &str) -> String {
    ecs_arn(&format!("task/{cluster}/{task_id}"))
}

pub fn task_set_arn(service: &Service, task_set_id: &str) -> String {
    ecs_arn(&format!(
        "task-set/{}/{}/{task_set_id}",
        service.cluster, service.name
    ))
}

fn count(tasks: &[&Task], status: TaskStatus) -> usize {
    tasks
        .iter()
        .filter(|t| t.last_status == status && !t.stopping)
        .count()
}

fn pending(tasks: &[&Task]) -> usize {
    count(tasks, TaskStatus::Provisioning) + count(tasks, TaskStatus::Pending)
}

pub fn deployment_json(service: &Service, deployment: &Deployment) -> Value {
    let tasks: Vec<&Task> = service
        .tasks
        .iter()
        .filter(|t| t.deployment_id == deployment.id)
        .collect();
    json!({
        "id": deployment.id,
        "status": if deployment.primary { "PRIMARY" } else { "ACTIVE" },
        "taskDefinition": deployment.task_definition,
        "desiredCount": deployment.desired_count,
        "pendingCount": pending(&tasks),
        "runningCount": count(&tasks, TaskStatus::Running),
        "failedTasks": deployment.failed_tasks,
        "createdAt": epoch(deployment.created_at),
        "updatedAt": epoch(deployment.updated_at),
        "launchType": "FARGATE",
        "platformVersion": "1.4.0",
        "platformFamily": "Linux",
        "networkConfiguration": network_configuration(service),
        "rolloutState": deployment.rollout.wire_name(),
        "rolloutStateReason": deployment.rollout_reason,
    })
}

fn network_configuration(service: &Service) -> Value {
    json!({"awsvpcConfiguration": {
        "subnets": service.subnets,
        "securityGroups": service.security_groups,
        "assignPublicIp": if service.assign_public_ip { "ENABLED" } else { "DISABLED" },
    }})
}

fn load_balancers(service: &Service) -> Value {
    match &service.load_balancer {
        Some(lb) => json!([{
            "targetGroupArn": lb.target_group_arn,
            "containerName": lb.container_name,
            "containerPort": lb.container_port,
        }]),
        None => json!([]),
    }
}

/// The service as DescribeServices shows it.
pub fn service_json(service: &Service) -> Value {
    let live: Vec<&Task> = service.tasks.iter().collect();
    let (deployments, task_sets, running, pending_count) = match service.controller {
        DeploymentController::Ecs => {
            let mut listed: Vec<&Deployment> =
                service.deployments.iter().filter(|d| d.listed).collect();
            // PRIMARY first, then the older ones newest first, as ECS lists them.
            listed.sort_by_key(|d| (!d.primary, std::cmp::Reverse(d.created_at)));
            (
                listed
                    .iter()
                    .map(|d| deployment_json(service, d))
                    .collect::<Vec<_>>(),
                None,
                count(&live, TaskStatus::Running),
                pending(&live),
            )
        }
        DeploymentController::CodeDeploy => {
            let primary = service.task_sets.iter().find(|s| s.primary);
            let deployments = primary
                .map(|set| {
                    vec![json!({
                        "id": set.id,
                        "status": "PRIMARY",
                        "taskDefinition": set.task_definition,
                        "desiredCount": set.desired_count,
                        "pendingCount": set.desired_count.saturating_sub(set.running_count),
                        "runningCount": set.running_count,
                        "failedTasks": 0,
                        "createdAt": epoch(set.created_at),
                        "updatedAt": epoch(set.updated_at),
                        "launchType": "FARGATE",
                        "platformVersion": "1.4.0",
                        "networkConfiguration": network_configuration(service),
                    })]
                })
                .unwrap_or_default();
            let sets: Vec<Value> = service
                .task_sets
                .iter()
                .map(|set| {
                    json!({
                        "id": set.id,
                        "taskSetArn": task_set_arn(service, &set.id),
                        "serviceArn": service.arn(),
                        "clusterArn": cluster_arn(&service.cluster),
                        "externalId": set.external_id,
                        "status": if set.primary { "PRIMARY" } else { "ACTIVE" },
                        "taskDefinition": set.task_definition,
                        "computedDesiredCount": set.desired_count,
                        "pendingCount": set.desired_count.saturating_sub(set.running_count),
                        "runningCount": set.running_count,
                        "createdAt": epoch(set.created_at),
                        "updatedAt": epoch(set.updated_at),
                        "launchType": "FARGATE",
                        "platformVersion": "1.4.0",
                        "networkConfiguration": network_configuration(service),
                        "loadBalancers": load_balancers(service),
                        "scale": {"value": 100.0, "unit": "PERCENT"},
                        "stabilityStatus": if set.running_count == set.desired_count { "STEADY_STATE" } else { "STABILIZING" },
                        "stabilityStatusAt": epoch(set.updated_at),
                    })
                })
                .collect();
            let running = primary.map_or(0, |s| s.running_count as usize);
            let pending_count = primary.map_or(0, |s| {
                s.desired_count.saturating_sub(s.running_count) as usize
            });
            (deployments, Some(sets), running, pending_count)
        }
    };
    let events: Vec<Value> = service
        .events
        .iter()
        .rev()
        .take(100)
        .map(|e| json!({"id": e.id, "createdAt": epoch(e.created_at), "message": e.message}))
        .collect();
    let mut out = json!({
        "serviceArn": service.arn(),
        "serviceName": service.name,
        "clusterArn": cluster_arn(&service.cluster),
        "loadBalancers": load_balancers(service),
        "serviceRegistries": [],
        "status": service.status,
        "desiredCount": service.desired_count,
        "runningCount": running,
        "pendingCount": pending_count,
        "launchType": "FARGATE",
        "platformVersion": "LATEST",
        "platformFamily": "Linux",
        "taskDefinition": service.task_definition,
        "deploymentConfiguration": {
            "deploymentCircuitBreaker": {"enable": service.circuit_breaker, "rollback": service.rollback},
            "maximumPercent": service.maximum_percent,
            "minimumHealthyPercent": service.minimum_healthy_percent,
        },
        "deployments": deployments,
        "roleArn": format!("arn:aws:iam::{}:role/aws-service-role/ecs.amazonaws.com/AWSServiceRoleForECS", super::ACCOUNT),
        "events": events,
        "createdAt": epoch(service.created_at),
        "placementConstraints": [],
        "placementStrategy": [],
        "networkConfiguration": network_configuration(service),
        "schedulingStrategy": "REPLICA",
        "deploymentController": {"type": service.controller.wire_name()},
        "createdBy": format!("arn:aws:iam::{}:role/ci", super::ACCOUNT),
        "enableECSManagedTags": false,
        "propagateTags": "NONE",
        "enableExecuteCommand": false,
    });
    if let Some(grace) = service.health_check_grace_period_seconds {
        out["healthCheckGracePeriodSeconds"] = json!(grace);
    }
    if let Some(sets) = task_sets {
        out["taskSets"] = Value::Array(sets);
    }
    out
}

/// The task as DescribeTasks shows it.
pub fn task_json(world: &World, service: &Service, task: &Task) -> Value {
    let definition = ecs_task_definitions::find(world, &task.task_definition_arn);
    let containers: Vec<Value> = definition
        .and_then(|d| d.document["containerDefinitions"].as_array().cloned())
        .unwrap_or_default()
        .iter()
        .map(|container| {
            let essential = container["essential"].as_bool().unwrap_or(true);
            let mut out = json!({
                "containerArn": ecs_arn(&format!("container/{}/{}/{}", service.cluster, task.id, super::world::random_uuid())),
                "taskArn": task_arn(&service.cluster, &task.id),
                "name": container["name"],
                "image": container["image"],
                "lastStatus": task.last_status.wire_name(),
                "healthStatus": "UNKNOWN",
                "networkInterfaces": [],
                "cpu": container["cpu"].as_i64().unwrap_or(0).to_string(),
            });
            if task.last_status == TaskStatus::Stopped {
                let exit = if essential { task.exit_code.unwrap_or(0) } else { 0 };
                out["exitCode"] = json!(exit);
                if task.stop_code.as_deref() == Some("TaskFailedToStart") {
                    out["reason"] = json!("CannotPullContainerError");
                }
            }
            out
        })
        .collect();
    let group = format!("service:{}", service.name);
    let mut out = json!({
        "taskArn": task_arn(&service.cluster, &task.id),
        "clusterArn": cluster_arn(&service.cluster),
        "taskDefinitionArn": task.task_definition_arn,
        "lastStatus": task.last_status.wire_name(),
        "desiredStatus": if task.stopping || task.last_status == TaskStatus::Stopped { "STOPPED" } else { "RUNNING" },
        "startedBy": task.deployment_id,
        "group": group,
        "launchType": "FARGATE",
        "platformVersion": "1.4.0",
        "platformFamily": "Linux",
        "availabilityZone": "us-east-1a",
        "connectivity": "CONNECTED",
        "containers": containers,
        "createdAt": epoch(task.created_at),
        "healthStatus": "UNKNOWN",
        "cpu": definition.and_then(|d| d.document["cpu"].as_str()).unwrap_or("256"),
        "memory": definition.and_then(|d| d.document["memory"].as_str()).unwrap_or("512"),
        "version": 1,
        "attachments": [],
        "tags": [],
    });
    if let Some(at) = task.started_at {
        out["startedAt"] = epoch(at);
        out["pullStartedAt"] = epoch(at);
        out["pullStoppedAt"] = epoch(at);
    }
    if let Some(at) = task.stopping_at {
        out["stoppingAt"] = epoch(at);
        out["executionStoppedAt"] = epoch(at);
    }
    if let Some(at) = task.stopped_at {
        out["stoppedAt"] = epoch(at);
    }
    if let Some(code) = &task.stop_code {
        out["stopCode"] = json!(code);
    }
    if let Some(reason) = &task.stopped_reason {
        out["stoppedReason"] = json!(reason);
    }
    out
}
