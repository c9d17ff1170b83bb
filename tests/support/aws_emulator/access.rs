//! The refusals a test arranges before any handler sees a call: expired credentials, denied
//! actions and throttling, each as the real services word it.

use serde_json::Value;

use super::wire::{AwsError, Request, text};
use super::world::{World, ecs_arn};
use super::{ACCOUNT, REGION};

/// The error the knobs make of this call, if any; consumes a throttle or credential budget.
pub fn refusal(world: &mut World, request: &Request) -> Option<AwsError> {
    let knobs = &mut world.knobs;
    if let Some(remaining) = knobs.calls_before_expiry.as_mut() {
        if *remaining == 0 {
            return Some(AwsError::new(
                "ExpiredTokenException",
                "The security token included in the request is expired",
            ));
        }
        *remaining -= 1;
    }
    if knobs.denied.contains(&request.operation) {
        let action = format!("{}:{}", action_prefix(request.service), request.operation);
        let code = if request.service == "elasticloadbalancing" {
            "AccessDenied"
        } else {
            "AccessDeniedException"
        };
        return Some(AwsError::new(
            code,
            format!(
                "User: arn:aws:sts::{ACCOUNT}:assumed-role/ci/shipit is not authorized to perform: {action} \
                 on resource: {} because no identity-based policy allows the {action} action",
                resource_arn(request)
            ),
        ));
    }
    if let Some(left) = knobs.throttled.get_mut(&request.operation)
        && *left > 0
    {
        *left -= 1;
        let code = if request.service == "elasticloadbalancing" {
            "Throttling"
        } else {
            "ThrottlingException"
        };
        return Some(AwsError::new(code, "Rate exceeded"));
    }
    None
}

fn action_prefix(service: &str) -> &str {
    match service {
        "codedeploy" => "codedeploy",
        "logs" => "logs",
        "eks" => "eks",
        "elasticloadbalancing" => "elasticloadbalancing",
        _ => "ecs",
    }
}

/// The ARN IAM would name for the call's resource, `*` when the call names none.
fn resource_arn(request: &Request) -> String {
    let body = &request.body;
    if request.service == "eks" {
        return super::eks::cluster_arn(text(body, "name").unwrap_or("*"));
    }
    let cluster = text(body, "cluster").map(last_segment).unwrap_or("default");
    if let Some(service) = text(body, "service") {
        return ecs_arn(&format!("service/{cluster}/{}", last_segment(service)));
    }
    if let Some(Value::Array(services)) = body.get("services")
        && let Some(service) = services.first().and_then(Value::as_str)
    {
        return ecs_arn(&format!("service/{cluster}/{}", last_segment(service)));
    }
    if let Some(td) = text(body, "taskDefinition") {
        return if td.starts_with("arn:") {
            td.to_owned()
        } else {
            ecs_arn(&format!("task-definition/{td}"))
        };
    }
    if let Some(family) = text(body, "family") {
        return ecs_arn(&format!("task-definition/{family}:*"));
    }
    if let Some(group) = text(body, "logGroupName") {
        return format!("arn:aws:logs:{REGION}:{ACCOUNT}:log-group:{group}:log-stream:*");
    }
    if let Some(arn) = text(body, "TargetGroupArn") {
        return arn.to_owned();
    }
    if let (Some(app), Some(group)) = (
        text(body, "applicationName"),
        text(body, "deploymentGroupName"),
    ) {
        return format!("arn:aws:codedeploy:{REGION}:{ACCOUNT}:deploymentgroup:{app}/{group}");
    }
    if let Some(app) = text(body, "applicationName") {
        return format!("arn:aws:codedeploy:{REGION}:{ACCOUNT}:application:{app}");
    }
    "*".into()
}

/// The name at the end of an ARN (or the name itself).
pub fn last_segment(name_or_arn: &str) -> &str {
    name_or_arn.rsplit('/').next().unwrap_or(name_or_arn)
}
