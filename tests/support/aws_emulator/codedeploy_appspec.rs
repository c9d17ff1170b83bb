//! The AppSpec content of an ECS deployment, checked as CodeDeploy checks it on
//! CreateDeployment.

use serde_json::Value;
use sha2::{Digest, Sha256};

use super::ecs_task_definitions;
use super::wire::AwsError;
use super::world::World;

/// The hooks an ECS AppSpec may name, in lifecycle order.
pub const HOOKS: &[&str] = &[
    "BeforeInstall",
    "AfterInstall",
    "AfterAllowTestTraffic",
    "BeforeAllowTraffic",
    "AfterAllowTraffic",
];

/// What a valid AppSpec deploys.
#[derive(Clone, Debug)]
pub struct AppSpec {
    pub task_definition: String,
    /// Hook name → function name.
    pub hooks: Vec<(String, String)>,
}

fn invalid(message: impl Into<String>) -> AwsError {
    AwsError::new("InvalidRevisionException", message)
}

pub fn parse(world: &World, revision: &Value) -> Result<AppSpec, AwsError> {
    if revision.is_null() {
        return Err(AwsError::new(
            "RevisionRequiredException",
            "Revision must be specified.",
        ));
    }
    if revision["revisionType"] != "AppSpecContent" {
        return Err(invalid(
            "Only the AppSpecContent revision type is supported for ECS deployments.",
        ));
    }
    let content = revision["appSpecContent"]["content"]
        .as_str()
        .ok_or_else(|| invalid("AppSpec content must be specified."))?;
    if let Some(sha) = revision["appSpecContent"]["sha256"].as_str() {
        let actual = hex::encode(Sha256::digest(content.as_bytes()));
        if !sha.eq_ignore_ascii_case(&actual) {
            return Err(invalid(
                "The SHA256 of the AppSpec content does not match sha256.",
            ));
        }
    }
    let spec: Value = serde_json::from_str(content)
        .map_err(|err| invalid(format!("The AppSpec file is not valid JSON or YAML: {err}")))?;
    let version_ok = match &spec["version"] {
        Value::String(v) => v == "0.0",
        Value::Number(n) => n.as_f64() == Some(0.0),
        _ => false,
    };
    if !version_ok {
        return Err(invalid("The AppSpec file must specify version 0.0."));
    }
    let resources = spec["Resources"]
        .as_array()
        .filter(|r| r.len() == 1)
        .ok_or_else(|| {
            invalid("The AppSpec file must specify exactly one ECS service resource.")
        })?;
    let resource = resources[0]
        .as_object()
        .filter(|o| o.len() == 1)
        .and_then(|o| o.values().next())
        .ok_or_else(|| invalid("The AppSpec file's resource must be a single named object."))?;
    if resource["Type"] != "AWS::ECS::Service" {
        return Err(invalid(
            "The AppSpec resource's Type must be AWS::ECS::Service.",
        ));
    }
    let properties = &resource["Properties"];
    let reference = properties["TaskDefinition"]
        .as_str()
        .ok_or_else(|| invalid("The AppSpec resource must specify a TaskDefinition."))?;
    let definition = ecs_task_definitions::find(world, reference)
        .filter(|_| reference.starts_with("arn:"))
        .ok_or_else(|| {
            invalid(format!(
                "The task definition {reference} is not a registered task definition ARN."
            ))
        })?;
    let container = properties["LoadBalancerInfo"]["ContainerName"]
        .as_str()
        .ok_or_else(|| {
            invalid("The AppSpec resource must specify LoadBalancerInfo.ContainerName.")
        })?;
    let port = properties["LoadBalancerInfo"]["ContainerPort"]
        .as_u64()
        .ok_or_else(|| {
            invalid("The AppSpec resource must specify LoadBalancerInfo.ContainerPort.")
        })?;
    let serves_port = definition.document["containerDefinitions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| c["name"] == container)
        .flat_map(|c| c["portMappings"].as_array().cloned().unwrap_or_default())
        .any(|m| m["containerPort"].as_u64() == Some(port));
    if !serves_port {
        return Err(invalid(format!(
            "The container {container} with port {port} is not in the task definition {reference}."
        )));
    }
    let mut hooks = Vec::new();
    for hook in spec["Hooks"].as_array().into_iter().flatten() {
        let entry = hook
            .as_object()
            .filter(|o| o.len() == 1)
            .and_then(|o| o.iter().next())
            .ok_or_else(|| invalid("Each AppSpec hook must be a single hook name and function."))?;
        let (name, function) = entry;
        if !HOOKS.contains(&name.as_str()) {
            return Err(invalid(format!(
                "{name} is not a valid ECS lifecycle hook."
            )));
        }
        let function = function
            .as_str()
            .ok_or_else(|| invalid(format!("The {name} hook must name a function.")))?;
        hooks.push((name.clone(), function.to_owned()));
    }
    Ok(AppSpec {
        task_definition: definition.arn(),
        hooks,
    })
}
