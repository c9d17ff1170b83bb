//! The AWS calls a deploy makes, each turned into the plain snapshots of `snapshot`. Nothing
//! clever happens here: the decisions are made on the snapshots.

use aws_sdk_ecs::types::{
    DeploymentCircuitBreaker, DeploymentConfiguration, DesiredStatus, Service,
};
use chrono::{DateTime, Utc};

use super::api_error::{CallError, CallSite, call_error, unusable_service};
use super::clients::EcsClients;
use super::service_changes::ServiceChanges;
use super::snapshot::{
    CircuitBreakerSetting, DeploymentSnapshot, EventSnapshot, ServiceDeploymentState,
    ServiceSnapshot, StoppedContainer, StoppedTask, UnhealthyTarget,
};
use super::spec::EcsDeploySpec;

pub(crate) fn call_site<'a>(clients: &'a EcsClients, spec: &'a EcsDeploySpec) -> CallSite<'a> {
    CallSite {
        cluster: &spec.config.cluster,
        service: &spec.config.service,
        region: &clients.region,
    }
}

/// The service, as a snapshot and as the SDK returned it (blue/green reads more of it).
pub(crate) async fn describe_service(
    clients: &EcsClients,
    spec: &EcsDeploySpec,
) -> Result<(ServiceSnapshot, Service), CallError> {
    let site = call_site(clients, spec);
    let output = clients
        .ecs
        .describe_services()
        .cluster(&spec.config.cluster)
        .services(&spec.config.service)
        .send()
        .await
        .map_err(|err| call_error(&err, "ecs:DescribeServices", site))?;
    let Some(service) = output.services().first() else {
        let status = output
            .failures()
            .first()
            .and_then(|failure| failure.reason());
        return Err(CallError {
            error: unusable_service(status.or(Some("MISSING")), site),
            throttled: false,
            code: None,
        });
    };
    if service.status() != Some("ACTIVE") {
        return Err(CallError {
            error: unusable_service(service.status(), site),
            throttled: false,
            code: None,
        });
    }
    Ok((service_snapshot(service), service.clone()))
}

fn service_snapshot(service: &Service) -> ServiceSnapshot {
    let configuration = service.deployment_configuration();
    ServiceSnapshot {
        name: service.service_name().unwrap_or_default().to_owned(),
        status: service.status().unwrap_or_default().to_owned(),
        controller: service
            .deployment_controller()
            .map_or("ECS", |controller| controller.r#type().as_str())
            .to_owned(),
        task_definition: service.task_definition().unwrap_or_default().to_owned(),
        desired_count: i64::from(service.desired_count()),
        minimum_healthy_percent: configuration
            .and_then(|c| c.minimum_healthy_percent())
            .map(i64::from),
        maximum_percent: configuration
            .and_then(|c| c.maximum_percent())
            .map(i64::from),
        circuit_breaker: configuration
            .and_then(|c| c.deployment_circuit_breaker())
            .map(|breaker| CircuitBreakerSetting {
                enable: breaker.enable(),
                rollback: breaker.rollback(),
            }),
        health_check_grace_period_seconds: service
            .health_check_grace_period_seconds()
            .map(i64::from),
        deployments: service
            .deployments()
            .iter()
            .map(|deployment| DeploymentSnapshot {
                id: deployment.id().unwrap_or_default().to_owned(),
                status: deployment.status().unwrap_or_default().to_owned(),
                task_definition: deployment.task_definition().unwrap_or_default().to_owned(),
                desired: i64::from(deployment.desired_count()),
                running: i64::from(deployment.running_count()),
                pending: i64::from(deployment.pending_count()),
                failed_tasks: i64::from(deployment.failed_tasks()),
                rollout_state: deployment
                    .rollout_state()
                    .map(|state| state.as_str().to_owned()),
                rollout_state_reason: deployment.rollout_state_reason().map(str::to_owned),
                created_at: deployment.created_at().and_then(to_chrono),
            })
            .collect(),
        events: service
            .events()
            .iter()
            .map(|event| EventSnapshot {
                id: event.id().unwrap_or_default().to_owned(),
                created_at: event.created_at().and_then(to_chrono),
                message: event.message().unwrap_or_default().to_owned(),
            })
            .collect(),
        target_groups: service
            .load_balancers()
            .iter()
            .filter_map(|lb| lb.target_group_arn().map(str::to_owned))
            .collect(),
        current_service_deployment: service.current_service_deployment().map(str::to_owned),
    }
}

pub(crate) fn to_chrono(time: &aws_sdk_ecs::primitives::DateTime) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp(time.secs(), time.subsec_nanos())
}

/// Updates the service to `task_definition` with `changes`, and returns the id of the PRIMARY
/// deployment the update created.
pub(crate) async fn update_service(
    clients: &EcsClients,
    spec: &EcsDeploySpec,
    live: &Service,
    task_definition: &str,
    changes: &ServiceChanges,
) -> Result<Option<String>, CallError> {
    let mut update = clients
        .ecs
        .update_service()
        .cluster(&spec.config.cluster)
        .service(&spec.config.service)
        .task_definition(task_definition);
    if let Some(change) = changes.desired_count {
        update = update.desired_count(i32::try_from(change.to).unwrap_or(i32::MAX));
    }
    if let Some(change) = changes.health_check_grace_period_seconds {
        update =
            update.health_check_grace_period_seconds(i32::try_from(change.to).unwrap_or(i32::MAX));
    }
    if changes.force_new_deployment {
        update = update.force_new_deployment(true);
    }
    if changes.touches_deployment_configuration() {
        update = update.deployment_configuration(deployment_configuration(
            live.deployment_configuration(),
            changes,
        ));
    }
    let output = update
        .send()
        .await
        .map_err(|err| call_error(&err, "ecs:UpdateService", call_site(clients, spec)))?;
    Ok(output
        .service()
        .and_then(|service| {
            service
                .deployments()
                .iter()
                .find(|d| d.status() == Some("PRIMARY"))
        })
        .and_then(|primary| primary.id())
        .map(str::to_owned))
}

/// The live deployment configuration with the changed fields replaced: it is sent whole, so
/// what the target does not set (alarms, bake time, the other percent) stays as it is.
fn deployment_configuration(
    live: Option<&DeploymentConfiguration>,
    changes: &ServiceChanges,
) -> DeploymentConfiguration {
    let mut builder = DeploymentConfiguration::builder()
        .set_deployment_circuit_breaker(live.and_then(|l| l.deployment_circuit_breaker().cloned()))
        .set_maximum_percent(live.and_then(|l| l.maximum_percent()))
        .set_minimum_healthy_percent(live.and_then(|l| l.minimum_healthy_percent()))
        .set_alarms(live.and_then(|l| l.alarms().cloned()))
        .set_strategy(live.and_then(|l| l.strategy().cloned()))
        .set_bake_time_in_minutes(live.and_then(|l| l.bake_time_in_minutes()))
        .set_lifecycle_hooks(
            live.map(|l| l.lifecycle_hooks().to_vec())
                .filter(|hooks| !hooks.is_empty()),
        )
        .set_linear_configuration(live.and_then(|l| l.linear_configuration().cloned()))
        .set_canary_configuration(live.and_then(|l| l.canary_configuration().cloned()));
    if let Some(change) = changes.minimum_healthy_percent {
        builder = builder.minimum_healthy_percent(i32::try_from(change.to).unwrap_or(100));
    }
    if let Some(change) = changes.maximum_percent {
        builder = builder.maximum_percent(i32::try_from(change.to).unwrap_or(200));
    }
    if let Some(change) = changes.circuit_breaker {
        builder = builder.deployment_circuit_breaker(
            DeploymentCircuitBreaker::builder()
                .enable(change.to.enable)
                .rollback(change.to.rollback)
                .build(),
        );
    }
    builder.build()
}

/// What DescribeServiceDeployments says of `arn`.
pub(crate) async fn describe_service_deployment(
    clients: &EcsClients,
    spec: &EcsDeploySpec,
    arn: &str,
) -> Result<Option<ServiceDeploymentState>, CallError> {
    let output = clients
        .ecs
        .describe_service_deployments()
        .service_deployment_arns(arn)
        .send()
        .await
        .map_err(|err| {
            call_error(
                &err,
                "ecs:DescribeServiceDeployments",
                call_site(clients, spec),
            )
        })?;
    Ok(output
        .service_deployments()
        .first()
        .map(|deployment| ServiceDeploymentState {
            arn: deployment
                .service_deployment_arn()
                .unwrap_or(arn)
                .to_owned(),
            status: deployment
                .status()
                .map(|s| s.as_str().to_owned())
                .unwrap_or_default(),
            status_reason: deployment.status_reason().map(str::to_owned),
            created_at: deployment.created_at().and_then(to_chrono),
        }))
}

/// The stopped tasks of the service started by `deployment_id` (newest ECS keeps, up to 100).
pub(crate) async fn stopped_tasks_of(
    clients: &EcsClients,
    spec: &EcsDeploySpec,
    deployment_id: &str,
) -> Result<Vec<StoppedTask>, CallError> {
    let site = call_site(clients, spec);
    let listed = clients
        .ecs
        .list_tasks()
        .cluster(&spec.config.cluster)
        .service_name(&spec.config.service)
        .desired_status(DesiredStatus::Stopped)
        .send()
        .await
        .map_err(|err| call_error(&err, "ecs:ListTasks", site))?;
    let arns = listed.task_arns();
    if arns.is_empty() {
        return Ok(Vec::new());
    }
    let described = clients
        .ecs
        .describe_tasks()
        .cluster(&spec.config.cluster)
        .set_tasks(Some(arns.iter().take(100).cloned().collect()))
        .send()
        .await
        .map_err(|err| call_error(&err, "ecs:DescribeTasks", site))?;
    Ok(described
        .tasks()
        .iter()
        .filter(|task| task.started_by() == Some(deployment_id))
        .map(|task| StoppedTask {
            task_id: task
                .task_arn()
                .and_then(|arn| arn.rsplit('/').next())
                .unwrap_or_default()
                .to_owned(),
            started_by: task.started_by().map(str::to_owned),
            task_definition: task.task_definition_arn().map(str::to_owned),
            stopped_reason: task.stopped_reason().map(str::to_owned),
            stop_code: task.stop_code().map(|code| code.as_str().to_owned()),
            containers: task
                .containers()
                .iter()
                .map(|container| StoppedContainer {
                    name: container.name().unwrap_or_default().to_owned(),
                    exit_code: container.exit_code().map(i64::from),
                    reason: container.reason().map(str::to_owned),
                })
                .collect(),
            stopped_at: task.stopped_at().and_then(to_chrono),
        })
        .collect())
}

/// The targets of `target_groups` that are not healthy (and not merely draining).
pub(crate) async fn unhealthy_targets(
    clients: &EcsClients,
    target_groups: &[String],
) -> Result<Vec<UnhealthyTarget>, String> {
    let mut unhealthy = Vec::new();
    for group in target_groups {
        let output = clients
            .elb
            .describe_target_health()
            .target_group_arn(group)
            .send()
            .await
            .map_err(
                |err| match aws_sdk_ecs::error::ProvideErrorMetadata::code(&err) {
                    Some("AccessDenied" | "AccessDeniedException") => {
                        "missing elasticloadbalancing:DescribeTargetHealth".to_owned()
                    }
                    _ => format!("{}", aws_sdk_ecs::error::DisplayErrorContext(&err)),
                },
            )?;
        for description in output.target_health_descriptions() {
            let health = description.target_health();
            let state = health
                .and_then(|h| h.state())
                .map(|s| s.as_str().to_owned())
                .unwrap_or_default();
            // A draining target is one ECS is retiring, as every rollout does: no evidence.
            if state == "healthy" || state == "draining" {
                continue;
            }
            let target = description.target();
            unhealthy.push(UnhealthyTarget {
                target_group: group.rsplit(':').next().unwrap_or(group).to_owned(),
                target: format!(
                    "{}:{}",
                    target.and_then(|t| t.id()).unwrap_or("?"),
                    target
                        .and_then(|t| t.port())
                        .map_or_else(|| "?".to_owned(), |p| p.to_string())
                ),
                state,
                reason: health
                    .and_then(|h| h.reason())
                    .map(|r| r.as_str().to_owned()),
                description: health.and_then(|h| h.description()).map(str::to_owned),
            });
        }
    }
    Ok(unhealthy)
}

/// The last `lines` lines of a CloudWatch Logs stream.
pub(crate) async fn log_tail(
    clients: &EcsClients,
    group: &str,
    stream: &str,
    region: Option<&str>,
    lines: i32,
) -> Result<Vec<String>, String> {
    let client = match region {
        Some(region) if region != clients.region => {
            let config = clients
                .logs
                .config()
                .to_builder()
                .region(aws_sdk_ecs::config::Region::new(region.to_owned()))
                .build();
            aws_sdk_cloudwatchlogs::Client::from_conf(config)
        }
        _ => clients.logs.clone(),
    };
    let output = client
        .get_log_events()
        .log_group_name(group)
        .log_stream_name(stream)
        .start_from_head(false)
        .limit(lines)
        .send()
        .await
        .map_err(
            |err| match aws_sdk_cloudwatchlogs::error::ProvideErrorMetadata::code(&err) {
                Some("AccessDeniedException") => "missing logs:GetLogEvents".to_owned(),
                Some("ResourceNotFoundException") => format!("no log stream {group} {stream}"),
                _ => format!(
                    "{}",
                    aws_sdk_cloudwatchlogs::error::DisplayErrorContext(&err)
                ),
            },
        )?;
    Ok(output
        .events()
        .iter()
        .filter_map(|event| event.message().map(str::to_owned))
        .collect())
}
