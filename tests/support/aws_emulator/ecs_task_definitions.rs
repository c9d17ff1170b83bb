//! RegisterTaskDefinition and DescribeTaskDefinition: revisions per family, and the fields ECS
//! fills in on registration.

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::ACCOUNT;
use super::wire::AwsError;
use super::world::{TaskDefinition, World, ecs_arn, epoch};

/// Registers `input` as the family's next revision; returns the stored definition.
pub fn register(
    world: &mut World,
    input: &Value,
    at: DateTime<Utc>,
) -> Result<TaskDefinition, AwsError> {
    let family = input
        .get("family")
        .and_then(Value::as_str)
        .filter(|family| !family.is_empty())
        .ok_or_else(|| AwsError::new("ClientException", "Family must not be empty."))?
        .to_owned();
    let containers = input
        .get("containerDefinitions")
        .and_then(Value::as_array)
        .filter(|containers| !containers.is_empty())
        .ok_or_else(|| AwsError::new("ClientException", "Container list cannot be empty."))?;
    let revisions = world.task_definitions.entry(family.clone()).or_default();
    let revision = revisions.len() + 1;
    let awsvpc = input.get("networkMode").and_then(Value::as_str) == Some("awsvpc");
    let mut document = input.clone();
    let object = document.as_object_mut().ok_or_else(|| {
        AwsError::new("ClientException", "The task definition must be an object.")
    })?;
    let tags = object
        .remove("tags")
        .and_then(|tags| tags.as_array().cloned())
        .unwrap_or_default();
    object.insert(
        "containerDefinitions".into(),
        Value::Array(
            containers
                .iter()
                .map(|c| container_defaults(c, awsvpc))
                .collect(),
        ),
    );
    object.insert(
        "taskDefinitionArn".into(),
        json!(ecs_arn(&format!("task-definition/{family}:{revision}"))),
    );
    object.insert("revision".into(), json!(revision));
    object.insert("status".into(), json!("ACTIVE"));
    object.entry("volumes").or_insert_with(|| json!([]));
    object
        .entry("placementConstraints")
        .or_insert_with(|| json!([]));
    let fargate = input
        .get("requiresCompatibilities")
        .and_then(Value::as_array)
        .is_some_and(|list| list.iter().any(|c| c == "FARGATE"));
    let mut requires = vec![
        json!({"name": "com.amazonaws.ecs.capability.logging-driver.awslogs"}),
        json!({"name": "com.amazonaws.ecs.capability.docker-remote-api.1.19"}),
    ];
    if awsvpc {
        requires.push(json!({"name": "ecs.capability.task-eni"}));
    }
    object.insert("requiresAttributes".into(), Value::Array(requires));
    object.insert(
        "compatibilities".into(),
        if fargate {
            json!(["EC2", "FARGATE"])
        } else {
            json!(["EC2"])
        },
    );
    object.insert("registeredAt".into(), epoch(at));
    object.insert(
        "registeredBy".into(),
        json!(format!("arn:aws:sts::{ACCOUNT}:assumed-role/ci/shipit")),
    );
    let definition = TaskDefinition { document, tags };
    revisions.push(definition.clone());
    Ok(definition)
}

/// What ECS adds to a container definition that leaves these fields out.
fn container_defaults(container: &Value, awsvpc: bool) -> Value {
    let mut container = container.clone();
    let Some(object) = container.as_object_mut() else {
        return container;
    };
    object.entry("cpu").or_insert(json!(0));
    object.entry("essential").or_insert(json!(true));
    for field in [
        "mountPoints",
        "volumesFrom",
        "environment",
        "systemControls",
    ] {
        object.entry(field).or_insert(json!([]));
    }
    let mappings = object
        .entry("portMappings")
        .or_insert(json!([]))
        .as_array_mut()
        .map(std::mem::take)
        .unwrap_or_default();
    let mappings: Vec<Value> = mappings
        .into_iter()
        .map(|mut mapping| {
            if let Some(m) = mapping.as_object_mut() {
                m.entry("protocol").or_insert(json!("tcp"));
                if awsvpc && let Some(port) = m.get("containerPort").cloned() {
                    m.entry("hostPort").or_insert(port);
                }
            }
            mapping
        })
        .collect();
    object.insert("portMappings".into(), Value::Array(mappings));
    container
}

/// The definition `reference` names: an ARN, `family:revision` or `family` (its latest).
pub fn find<'a>(world: &'a World, reference: &str) -> Option<&'a TaskDefinition> {
    let name = reference
        .rsplit_once(":task-definition/")
        .map_or(reference, |(_, name)| name);
    let (family, revision) = match name.rsplit_once(':') {
        Some((family, revision)) => (family, Some(revision.parse::<usize>().ok()?)),
        None => (name, None),
    };
    let revisions = world.task_definitions.get(family)?;
    match revision {
        Some(revision) => revisions.get(revision.checked_sub(1)?),
        None => revisions.last(),
    }
}

pub fn describe(world: &World, input: &Value) -> Result<Value, AwsError> {
    let reference = input
        .get("taskDefinition")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let definition = find(world, reference)
        .ok_or_else(|| AwsError::new("ClientException", "Unable to describe task definition."))?;
    let with_tags = input
        .get("include")
        .and_then(Value::as_array)
        .is_some_and(|include| include.iter().any(|i| i == "TAGS"));
    let mut out = json!({"taskDefinition": definition.document});
    if with_tags {
        out["tags"] = Value::Array(definition.tags.clone());
    }
    Ok(out)
}
