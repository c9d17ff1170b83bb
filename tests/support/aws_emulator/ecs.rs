//! The ECS operations: task definitions, services, tasks, tags; the service deployments API
//! lives in `ecs_service_deployments`.

use serde_json::{Value, json};

use super::access::last_segment;
use super::ecs_rollout::new_deployment;
use super::ecs_shapes::{service_json, task_arn, task_json};
use super::scenario::DeploymentController;
use super::wire::{AwsError, text, unknown_operation};
use super::world::{Now, Service, TaskStatus, World};
use super::{ecs_service_deployments, ecs_task_definitions};

pub fn handle(
    world: &mut World,
    operation: &str,
    input: &Value,
    now: Now,
) -> Result<Value, AwsError> {
    match operation {
        "RegisterTaskDefinition" => {
            let definition = ecs_task_definitions::register(world, input, now.wall)?;
            Ok(json!({"taskDefinition": definition.document, "tags": definition.tags}))
        }
        "DescribeTaskDefinition" => ecs_task_definitions::describe(world, input),
        "DescribeServices" => describe_services(world, input),
        "UpdateService" => update_service(world, input, now),
        "ListTasks" => list_tasks(world, input),
        "DescribeTasks" => describe_tasks(world, input),
        "DescribeClusters" => describe_clusters(world, input),
        "ListServiceDeployments" | "DescribeServiceDeployments"
            if world.knobs.without_service_deployments_api =>
        {
            Err(unknown_operation(operation))
        }
        "ListServiceDeployments" => ecs_service_deployments::list(world, input),
        "DescribeServiceDeployments" => ecs_service_deployments::describe(world, input),
        "TagResource" => tag_resource(world, input),
        "ListTagsForResource" => list_tags(world, input),
        _ => Err(unknown_operation(operation)),
    }
}

/// The cluster's name from the `cluster` field (a name or an ARN; `default` when absent).
pub fn cluster_name(input: &Value) -> String {
    text(input, "cluster")
        .map(last_segment)
        .unwrap_or("default")
        .to_owned()
}

fn cluster_not_found() -> AwsError {
    AwsError::new("ClusterNotFoundException", "Cluster not found.")
}

/// The named service of an existing cluster, or the error ECS sends.
pub fn existing_service<'a>(
    world: &'a mut World,
    cluster: &str,
    service: &str,
) -> Result<&'a mut Service, AwsError> {
    let cluster = world
        .clusters
        .get_mut(cluster)
        .ok_or_else(cluster_not_found)?;
    cluster
        .services
        .get_mut(last_segment(service))
        .ok_or_else(|| AwsError::new("ServiceNotFoundException", "Service not found."))
}

fn describe_services(world: &World, input: &Value) -> Result<Value, AwsError> {
    let cluster = cluster_name(input);
    let services = world.clusters.get(&cluster).ok_or_else(cluster_not_found)?;
    let mut found = Vec::new();
    let mut failures = Vec::new();
    for name in input["services"].as_array().into_iter().flatten() {
        let name = name.as_str().unwrap_or_default();
        match services.services.get(last_segment(name)) {
            Some(service) => found.push(service_json(service)),
            None => failures.push(json!({
                "arn": super::world::ecs_arn(&format!("service/{cluster}/{}", last_segment(name))),
                "reason": "MISSING",
            })),
        }
    }
    Ok(json!({"services": found, "failures": failures}))
}

fn update_service(world: &mut World, input: &Value, now: Now) -> Result<Value, AwsError> {
    let cluster = cluster_name(input);
    let name = text(input, "service")
        .ok_or_else(|| AwsError::new("InvalidParameterException", "Service must be specified."))?
        .to_owned();
    let requested = match text(input, "taskDefinition") {
        Some(reference) => Some(
            ecs_task_definitions::find(world, reference)
                .map(|d| d.arn())
                .ok_or_else(|| AwsError::new("ClientException", "TaskDefinition not found."))?,
        ),
        None => None,
    };
    let scenario = world
        .scenarios
        .get(&(cluster.clone(), last_segment(&name).to_owned()))
        .cloned()
        .unwrap_or_default();
    let service = existing_service(world, &cluster, &name)?;
    if service.status != "ACTIVE" {
        return Err(AwsError::new(
            "ServiceNotActiveException",
            "Service was not ACTIVE.",
        ));
    }
    let changes_definition = requested
        .as_ref()
        .is_some_and(|arn| *arn != service.task_definition);
    if service.controller == DeploymentController::CodeDeploy && changes_definition {
        return Err(AwsError::new(
            "InvalidParameterException",
            "Unable to update task definition on services with a CODE_DEPLOY deployment controller. \
             Use AWS CodeDeploy to trigger a new deployment.",
        ));
    }
    if let Some(count) = input["desiredCount"].as_u64() {
        service.desired_count = count as u32;
        if let Some(primary) = service
            .deployments
            .iter_mut()
            .find(|d| d.listed && d.primary)
        {
            primary.desired_count = count as u32;
        }
        if let Some(set) = service.task_sets.iter_mut().find(|s| s.primary) {
            set.desired_count = count as u32;
            set.running_count = set.running_count.min(count as u32);
        }
    }
    let configuration = &input["deploymentConfiguration"];
    if let Some(percent) = configuration["minimumHealthyPercent"].as_u64() {
        service.minimum_healthy_percent = percent as u32;
    }
    if let Some(percent) = configuration["maximumPercent"].as_u64() {
        service.maximum_percent = percent as u32;
    }
    if let Some(breaker) = configuration.get("deploymentCircuitBreaker") {
        service.circuit_breaker = breaker["enable"].as_bool().unwrap_or(false);
        service.rollback = breaker["rollback"].as_bool().unwrap_or(false);
    }
    if let Some(grace) = input["healthCheckGracePeriodSeconds"].as_u64() {
        service.health_check_grace_period_seconds = Some(grace as u32);
    }
    let force = input["forceNewDeployment"].as_bool().unwrap_or(false);
    if service.controller == DeploymentController::Ecs && (changes_definition || force) {
        let definition = requested.unwrap_or_else(|| service.task_definition.clone());
        new_deployment(service, definition, scenario, None, now);
    }
    Ok(json!({"service": service_json(service)}))
}

fn list_tasks(world: &World, input: &Value) -> Result<Value, AwsError> {
    let cluster = cluster_name(input);
    let services = world.clusters.get(&cluster).ok_or_else(cluster_not_found)?;
    let wanted_service = text(input, "serviceName").map(last_segment);
    let want_stopped = text(input, "desiredStatus") == Some("STOPPED");
    let started_by = text(input, "startedBy");
    let arns: Vec<String> = services
        .services
        .values()
        .filter(|s| wanted_service.is_none_or(|name| name == s.name))
        .flat_map(|s| s.tasks.iter())
        .filter(|t| (t.stopping || t.last_status == TaskStatus::Stopped) == want_stopped)
        .filter(|t| started_by.is_none_or(|by| by == t.deployment_id))
        .map(|t| task_arn(&cluster, &t.id))
        .collect();
    if let Some(name) = wanted_service
        && !services.services.contains_key(name)
    {
        return Err(AwsError::new(
            "ServiceNotFoundException",
            "Service not found.",
        ));
    }
    Ok(json!({"taskArns": arns}))
}

fn describe_tasks(world: &World, input: &Value) -> Result<Value, AwsError> {
    let cluster = cluster_name(input);
    let services = world.clusters.get(&cluster).ok_or_else(cluster_not_found)?;
    let mut tasks = Vec::new();
    let mut failures = Vec::new();
    for reference in input["tasks"].as_array().into_iter().flatten() {
        let id = last_segment(reference.as_str().unwrap_or_default());
        let found = services.services.values().find_map(|service| {
            service
                .tasks
                .iter()
                .find(|t| t.id == id)
                .map(|task| task_json(world, service, task))
        });
        match found {
            Some(task) => tasks.push(task),
            None => failures.push(json!({"arn": task_arn(&cluster, id), "reason": "MISSING"})),
        }
    }
    Ok(json!({"tasks": tasks, "failures": failures}))
}

fn describe_clusters(world: &World, input: &Value) -> Result<Value, AwsError> {
    let mut clusters = Vec::new();
    let mut failures = Vec::new();
    for name in input["clusters"].as_array().into_iter().flatten() {
        let name = last_segment(name.as_str().unwrap_or_default());
        let arn = super::ecs_shapes::cluster_arn(name);
        match world.clusters.get(name) {
            Some(cluster) => clusters.push(json!({
                "clusterArn": arn,
                "clusterName": name,
                "status": "ACTIVE",
                "activeServicesCount": cluster.services.len(),
            })),
            None => failures.push(json!({"arn": arn, "reason": "MISSING"})),
        }
    }
    Ok(json!({"clusters": clusters, "failures": failures}))
}

fn tag_resource(world: &mut World, input: &Value) -> Result<Value, AwsError> {
    let arn = text(input, "resourceArn")
        .ok_or_else(|| AwsError::new("InvalidParameterException", "resourceArn is required"))?
        .to_owned();
    let tags = input["tags"].as_array().cloned().unwrap_or_default();
    let stored = match arn
        .contains(":task-definition/")
        .then(|| ecs_task_definitions::find(world, &arn).map(|d| (d.family(), d.arn())))
        .flatten()
    {
        Some((family, definition_arn)) => world
            .task_definitions
            .get_mut(&family)
            .and_then(|revisions| revisions.iter_mut().find(|d| d.arn() == definition_arn))
            .map(|definition| &mut definition.tags),
        None => Some(world.tags.entry(arn).or_default()),
    };
    if let Some(stored) = stored {
        for tag in tags {
            stored.retain(|existing| existing["key"] != tag["key"]);
            stored.push(tag);
        }
    }
    Ok(json!({}))
}

fn list_tags(world: &World, input: &Value) -> Result<Value, AwsError> {
    let arn = text(input, "resourceArn").unwrap_or_default();
    let tags = if arn.contains(":task-definition/") {
        ecs_task_definitions::find(world, arn)
            .map(|d| d.tags.clone())
            .unwrap_or_default()
    } else {
        world.tags.get(arn).cloned().unwrap_or_default()
    };
    Ok(json!({"tags": tags}))
}
