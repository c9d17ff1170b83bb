//! How the deployments of a rolling (ECS controller) service progress, one clock step at a
//! time, according to the scenario each deployment plays.

use serde_json::Value;

/// How long a task whose target fails its health checks keeps running before ECS stops it. On
/// AWS that is the health check interval times the unhealthy threshold (a minute or so): long
/// enough for a deploy that polls to see the target's reason code while the task runs.
const UNHEALTHY_STEPS_BEFORE_STOP: u32 = 12;

use super::ecs_task_definitions;
use super::scenario::{DeploymentController, Scenario};
use super::world::{
    Deployment, LogEvent, Now, RolloutState, Service, Task, TaskStatus, World, random_digits,
    random_hex,
};

pub const CIRCUIT_BREAKER_REASON: &str = "ECS deployment circuit breaker: tasks failed to start.";

/// The number of failed tasks at which the deployment circuit breaker trips.
pub fn circuit_breaker_threshold(desired_count: u32) -> u32 {
    let half = desired_count.div_ceil(2);
    half.clamp(3, 200)
}

/// Makes a new PRIMARY deployment of `task_definition`; the previous PRIMARY becomes ACTIVE.
pub fn new_deployment(
    service: &mut Service,
    task_definition: String,
    scenario: Scenario,
    rolls_back: Option<String>,
    now: Now,
) -> String {
    for previous in service
        .deployments
        .iter_mut()
        .filter(|d| d.listed && d.primary)
    {
        previous.primary = false;
        previous.updated_at = now.wall;
        if previous.service_deployment_status == "IN_PROGRESS" {
            previous.service_deployment_status = "STOPPED".into();
            previous.status_reason =
                Some("Service deployment stopped because a new deployment was started.".into());
            previous.finished_at = Some(now.wall);
        }
    }
    let id = format!("ecs-svc/{}", random_digits(19));
    service.deployments.push(Deployment {
        id: id.clone(),
        previous_task_definition: Some(service.task_definition.clone()),
        task_definition: task_definition.clone(),
        desired_count: service.desired_count,
        primary: true,
        listed: true,
        rollout: RolloutState::InProgress,
        rollout_reason: "ECS deployment in progress.".into(),
        failed_tasks: 0,
        created_at: now.wall,
        updated_at: now.wall,
        scenario,
        age_steps: 0,
        rolls_back,
        service_deployment_status: "IN_PROGRESS".into(),
        status_reason: None,
        finished_at: None,
        rollback_started_at: None,
        rollback_revision: None,
        circuit_breaker_status: if service.circuit_breaker {
            "MONITORING"
        } else {
            "DISABLED"
        },
    });
    service.task_definition = task_definition;
    id
}

/// A task of `deployment_id`, just placed.
pub fn new_task(deployment_id: &str, task_definition: &str, now: Now) -> Task {
    Task {
        id: random_hex(32),
        deployment_id: deployment_id.into(),
        task_definition_arn: task_definition.into(),
        last_status: TaskStatus::Provisioning,
        stopping: false,
        steps_in_status: 0,
        created_at: now.wall,
        started_at: None,
        stopping_at: None,
        stopped_at: None,
        stop_code: None,
        stopped_reason: None,
        exit_code: None,
        target: None,
    }
}

/// Advances every rolling service by one step.
pub fn tick(world: &mut World, now: Now) {
    let keys: Vec<(String, String)> = world
        .clusters
        .iter()
        .flat_map(|(cluster, c)| {
            c.services
                .iter()
                .filter(|(_, s)| s.controller == DeploymentController::Ecs)
                .map(|(name, _)| (cluster.clone(), name.clone()))
                .collect::<Vec<_>>()
        })
        .collect();
    for (cluster, name) in keys {
        // The service leaves the world while it moves, so the step can use the rest of the
        // world (task definitions, logs, target addresses) alongside it.
        let Some(mut service) = world
            .clusters
            .get_mut(&cluster)
            .and_then(|c| c.services.remove(&name))
        else {
            continue;
        };
        step_service(world, &mut service, now);
        if let Some(c) = world.clusters.get_mut(&cluster) {
            c.services.insert(name, service);
        }
    }
}

fn step_service(world: &mut World, service: &mut Service, now: Now) {
    for deployment in service.deployments.iter_mut().filter(|d| d.listed) {
        deployment.age_steps += 1;
    }
    advance_tasks(world, service, now);
    progress_primary(world, service, now);
}

fn scenario_of(service: &Service, task: &Task) -> Scenario {
    service
        .deployment(&task.deployment_id)
        .map(|d| d.scenario.clone())
        .unwrap_or_default()
}

/// Steps each task spends PROVISIONING, then PENDING, before it runs.
fn start_steps(scenario: &Scenario) -> (u32, u32) {
    match scenario {
        Scenario::Slow { step_per_task } => {
            let total = (*step_per_task).max(2);
            (total / 2, total - total / 2)
        }
        _ => (1, 1),
    }
}

fn stop(task: &mut Task, now: Now, code: &str, reason: String, exit_code: Option<i32>) {
    task.last_status = TaskStatus::Stopped;
    task.steps_in_status = 0;
    task.stopping_at.get_or_insert(now.wall);
    task.stopped_at = Some(now.wall);
    task.stop_code = Some(code.into());
    task.stopped_reason = Some(reason);
    task.exit_code = exit_code;
}

fn task_list(ids: &[String]) -> String {
    ids.iter()
        .map(|id| format!("(task {id})"))
        .collect::<Vec<_>>()
        .join(" ")
}

fn advance_tasks(world: &mut World, service: &mut Service, now: Now) {
    let mut registered = Vec::new();
    let mut failed = Vec::new();
    for index in 0..service.tasks.len() {
        let scenario = scenario_of(service, &service.tasks[index]);
        let target_group = service
            .load_balancer
            .as_ref()
            .map(|lb| lb.target_group_arn.clone());
        let task = &mut service.tasks[index];
        if !task.is_live() {
            continue;
        }
        task.steps_in_status += 1;
        if task.stopping {
            let reason = format!(
                "Scaling activity initiated by (deployment {})",
                task.deployment_id
            );
            stop(task, now, "ServiceSchedulerInitiated", reason, Some(0));
            continue;
        }
        let (provisioning, pending) = start_steps(&scenario);
        match task.last_status {
            TaskStatus::Provisioning if task.steps_in_status >= provisioning => {
                task.last_status = TaskStatus::Pending;
                task.steps_in_status = 0;
            }
            TaskStatus::Pending
                if scenario != Scenario::NeverStarts && task.steps_in_status >= pending =>
            {
                task.last_status = TaskStatus::Running;
                task.steps_in_status = 0;
                task.started_at = Some(now.wall);
                if target_group.is_some() {
                    task.target = Some(world.next_target_address());
                    registered.push(task.id.clone());
                }
            }
            TaskStatus::Running => match &scenario {
                Scenario::FailingTasks {
                    exit_code,
                    stopped_reason,
                    ..
                } => {
                    let reason = stopped_reason.clone();
                    stop(
                        task,
                        now,
                        "EssentialContainerExited",
                        reason,
                        Some(*exit_code),
                    );
                    failed.push((task.deployment_id.clone(), task.id.clone()));
                }
                Scenario::UnhealthyTargets { .. }
                    if task.steps_in_status >= UNHEALTHY_STEPS_BEFORE_STOP =>
                {
                    let reason = format!(
                        "Task failed ELB health checks in (target-group {})",
                        target_group.clone().unwrap_or_default()
                    );
                    stop(task, now, "ServiceSchedulerInitiated", reason, None);
                    failed.push((task.deployment_id.clone(), task.id.clone()));
                }
                _ => {}
            },
            _ => {}
        }
    }
    if let (false, Some(lb)) = (registered.is_empty(), &service.load_balancer) {
        let message = format!(
            "registered {} targets in (target-group {})",
            registered.len(),
            lb.target_group_arn
        );
        service.event(now.wall, message);
    }
    if !failed.is_empty() {
        let ids: Vec<String> = failed.iter().map(|(_, task)| task.clone()).collect();
        let message = format!(
            "has stopped {} running tasks: {}.",
            ids.len(),
            task_list(&ids)
        );
        service.event(now.wall, message);
    }
    for (deployment_id, task_id) in failed {
        write_failure_logs(world, service, &task_id);
        if let Some(deployment) = service.deployment_mut(&deployment_id) {
            deployment.failed_tasks += 1;
            deployment.updated_at = now.wall;
        }
    }
}

/// The awslogs streams of the stopped task's essential containers receive the scenario's lines.
fn write_failure_logs(world: &mut World, service: &Service, task_id: &str) {
    let Some(task) = service.tasks.iter().find(|t| t.id == task_id) else {
        return;
    };
    let Scenario::FailingTasks { log_lines, .. } = scenario_of(service, task) else {
        return;
    };
    let Some(definition) = ecs_task_definitions::find(world, &task.task_definition_arn) else {
        return;
    };
    let mut streams = Vec::new();
    for container in definition.document["containerDefinitions"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let essential = container["essential"].as_bool().unwrap_or(true);
        let options = &container["logConfiguration"]["options"];
        let awslogs = container["logConfiguration"]["logDriver"] == "awslogs";
        if let (true, true, Some(group), Some(prefix), Some(name)) = (
            essential,
            awslogs,
            options["awslogs-group"].as_str(),
            options["awslogs-stream-prefix"].as_str(),
            container["name"].as_str(),
        ) {
            streams.push((group.to_owned(), format!("{prefix}/{name}/{task_id}")));
        }
    }
    let base = task
        .started_at
        .unwrap_or(task.created_at)
        .timestamp_millis();
    for stream in streams {
        let events = world.logs.entry(stream).or_default();
        for (offset, line) in log_lines.iter().enumerate() {
            events.push(LogEvent {
                timestamp_ms: base + offset as i64,
                message: line.clone(),
            });
        }
    }
}

/// Whether a task of this scenario counts as a healthy replacement.
fn serves(scenario: &Scenario, task: &Task) -> bool {
    task.last_status == TaskStatus::Running
        && !task.stopping
        && !matches!(
            scenario,
            Scenario::FailingTasks { .. } | Scenario::UnhealthyTargets { .. }
        )
}

fn progress_primary(world: &mut World, service: &mut Service, now: Now) {
    let Some(primary) = service.primary().cloned() else {
        return;
    };
    match primary.rollout {
        RolloutState::Failed => return,
        RolloutState::Completed => {
            place_tasks(service, &primary, now);
            return;
        }
        RolloutState::InProgress => {}
    }
    if let Scenario::Competing { after_steps } = primary.scenario
        && primary.age_steps >= after_steps
    {
        compete(world, service, &primary, now);
        return;
    }
    if service.circuit_breaker
        && primary.failed_tasks >= circuit_breaker_threshold(primary.desired_count)
    {
        trip_circuit_breaker(service, &primary, now);
        return;
    }
    place_tasks(service, &primary, now);
    let serving = service
        .tasks
        .iter()
        .filter(|t| t.deployment_id == primary.id && serves(&primary.scenario, t))
        .count();
    if serving < primary.desired_count as usize {
        return;
    }
    let old_running: Vec<String> = service
        .tasks
        .iter()
        .filter(|t| t.deployment_id != primary.id && t.is_live() && !t.stopping)
        .map(|t| t.id.clone())
        .collect();
    if !old_running.is_empty() {
        for task in service
            .tasks
            .iter_mut()
            .filter(|t| old_running.contains(&t.id))
        {
            task.stopping = true;
            task.stopping_at = Some(now.wall);
        }
        let message = format!(
            "has stopped {} running tasks: {}.",
            old_running.len(),
            task_list(&old_running)
        );
        service.event(now.wall, message);
        return;
    }
    if service
        .tasks
        .iter()
        .any(|t| t.deployment_id != primary.id && t.is_live())
    {
        return;
    }
    complete(world, service, &primary.id, now);
}

/// Starts tasks until the deployment has its desired count, or stops the extra ones.
fn place_tasks(service: &mut Service, deployment: &Deployment, now: Now) {
    let live: Vec<usize> = (0..service.tasks.len())
        .filter(|&i| {
            let t = &service.tasks[i];
            t.deployment_id == deployment.id && t.is_live() && !t.stopping
        })
        .collect();
    let desired = deployment.desired_count as usize;
    if live.len() > desired {
        for &index in &live[desired..] {
            service.tasks[index].stopping = true;
            service.tasks[index].stopping_at = Some(now.wall);
        }
        return;
    }
    let missing = desired - live.len();
    if missing == 0 {
        return;
    }
    let started: Vec<Task> = (0..missing)
        .map(|_| new_task(&deployment.id, &deployment.task_definition, now))
        .collect();
    let ids: Vec<String> = started.iter().map(|t| t.id.clone()).collect();
    service.tasks.extend(started);
    service.event(
        now.wall,
        format!("has started {} tasks: {}.", ids.len(), task_list(&ids)),
    );
}

fn complete(world: &mut World, service: &mut Service, deployment_id: &str, now: Now) {
    for old in service
        .deployments
        .iter_mut()
        .filter(|d| d.listed && d.id != deployment_id)
    {
        old.listed = false;
    }
    let Some(deployment) = service.deployment_mut(deployment_id) else {
        return;
    };
    deployment.rollout = RolloutState::Completed;
    deployment.rollout_reason = format!("ECS deployment {deployment_id} completed.");
    deployment.updated_at = now.wall;
    deployment.finished_at = Some(now.wall);
    deployment.service_deployment_status = "SUCCESSFUL".into();
    if deployment.circuit_breaker_status == "MONITORING" {
        deployment.circuit_breaker_status = "MONITORING_COMPLETE";
    }
    let rolled_back = deployment.rolls_back.clone();
    if let Some(failed) = rolled_back.and_then(|id| service.deployment_mut(&id)) {
        failed.service_deployment_status = "ROLLBACK_SUCCESSFUL".into();
        failed.finished_at = Some(now.wall);
    }
    world.completed_at.insert(deployment_id.into(), now.instant);
    service.event(
        now.wall,
        format!("(deployment {deployment_id}) deployment completed."),
    );
    service.event(now.wall, "has reached a steady state.".into());
}

fn trip_circuit_breaker(service: &mut Service, primary: &Deployment, now: Now) {
    if let Some(deployment) = service.deployment_mut(&primary.id) {
        deployment.rollout = RolloutState::Failed;
        deployment.rollout_reason = CIRCUIT_BREAKER_REASON.into();
        deployment.circuit_breaker_status = "TRIGGERED";
        deployment.updated_at = now.wall;
        deployment.status_reason = Some(CIRCUIT_BREAKER_REASON.into());
    }
    service.event(
        now.wall,
        format!(
            "(deployment {}) deployment failed: tasks failed to start.",
            primary.id
        ),
    );
    let previous = primary.previous_task_definition.clone();
    match (service.rollback, previous) {
        (true, Some(previous)) => {
            let rollback = new_deployment(
                service,
                previous,
                Scenario::Healthy,
                Some(primary.id.clone()),
                now,
            );
            let revision = revision_arn(service, &rollback);
            if let Some(failed) = service.deployment_mut(&primary.id) {
                failed.service_deployment_status = "ROLLBACK_IN_PROGRESS".into();
                failed.finished_at = None;
                failed.rollback_started_at = Some(now.wall);
                failed.rollback_revision = Some(revision);
            }
            service.event(now.wall, format!("rolling back to deployment {rollback}."));
        }
        _ => {
            if let Some(failed) = service.deployment_mut(&primary.id) {
                failed.service_deployment_status = "STOPPED".into();
                failed.finished_at = Some(now.wall);
            }
        }
    }
}

/// The ARN of the service revision a deployment deploys.
pub fn revision_arn(service: &Service, deployment_id: &str) -> String {
    super::world::ecs_arn(&format!(
        "service-revision/{}/{}/{}",
        service.cluster,
        service.name,
        deployment_id.trim_start_matches("ecs-svc/")
    ))
}

/// Someone else registers a new revision of the family and deploys it over ours.
fn compete(world: &mut World, service: &mut Service, ours: &Deployment, now: Now) {
    let Some(definition) = ecs_task_definitions::find(world, &ours.task_definition).cloned() else {
        return;
    };
    let mut input = definition.document.clone();
    if let Some(object) = input.as_object_mut() {
        for field in [
            "taskDefinitionArn",
            "revision",
            "status",
            "requiresAttributes",
            "compatibilities",
            "registeredAt",
            "registeredBy",
        ] {
            object.remove(field);
        }
        object.insert("tags".into(), Value::Array(definition.tags.clone()));
    }
    let Ok(competitor) = ecs_task_definitions::register(world, &input, now.wall) else {
        return;
    };
    new_deployment(service, competitor.arn(), Scenario::Healthy, None, now);
}
