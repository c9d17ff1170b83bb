//! ELBv2's DescribeTargetHealth: the targets the emulated services registered, and how their
//! health checks fare under the deployment's scenario.

use serde_json::Value;

use super::scenario::Scenario;
use super::wire::{AwsError, text, xml_escape};
use super::world::{TaskStatus, World};

pub fn handle(world: &World, operation: &str, input: &Value) -> Result<Value, AwsError> {
    match operation {
        "DescribeTargetHealth" => describe_target_health(world, input),
        _ => Err(AwsError::new(
            "InvalidAction",
            format!("Could not find operation {operation} for version 2015-12-01"),
        )),
    }
}

struct Health {
    address: String,
    port: u16,
    state: &'static str,
    reason: Option<String>,
    description: Option<String>,
}

fn describe_target_health(world: &World, input: &Value) -> Result<Value, AwsError> {
    let arn = text(input, "TargetGroupArn").unwrap_or_default();
    let mut known = false;
    let mut targets = Vec::new();
    for service in world.clusters.values().flat_map(|c| c.services.values()) {
        let Some(lb) = service
            .load_balancer
            .as_ref()
            .filter(|lb| lb.target_group_arn == arn)
        else {
            continue;
        };
        known = true;
        for task in &service.tasks {
            let Some(address) = task.target.clone() else {
                continue;
            };
            let scenario = service
                .deployment(&task.deployment_id)
                .map(|d| d.scenario.clone())
                .unwrap_or_default();
            let (state, reason, description) = match (task.last_status, task.stopping, &scenario) {
                (TaskStatus::Stopped, ..) => continue,
                (_, true, _) => (
                    "draining",
                    Some("Target.DeregistrationInProgress".to_owned()),
                    Some("Target deregistration is in progress".to_owned()),
                ),
                (
                    _,
                    _,
                    Scenario::UnhealthyTargets {
                        reason_code,
                        description,
                    },
                ) => (
                    "unhealthy",
                    Some(reason_code.clone()),
                    Some(description.clone()),
                ),
                _ => ("healthy", None, None),
            };
            targets.push(Health {
                address,
                port: lb.container_port,
                state,
                reason,
                description,
            });
        }
    }
    if !known {
        return Err(AwsError::new(
            "TargetGroupNotFound",
            format!("Target groups '{arn}' not found"),
        ));
    }
    let members: String = targets
        .iter()
        .map(|t| {
            let mut health = format!("<State>{}</State>", t.state);
            if let Some(reason) = &t.reason {
                health.push_str(&format!("<Reason>{}</Reason>", xml_escape(reason)));
            }
            if let Some(description) = &t.description {
                health.push_str(&format!("<Description>{}</Description>", xml_escape(description)));
            }
            format!(
                "<member><Target><Id>{}</Id><Port>{}</Port></Target><HealthCheckPort>{}</HealthCheckPort>\
                 <TargetHealth>{health}</TargetHealth></member>",
                t.address, t.port, t.port
            )
        })
        .collect();
    Ok(Value::String(format!(
        "<TargetHealthDescriptions>{members}</TargetHealthDescriptions>"
    )))
}
