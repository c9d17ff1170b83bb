//! How a CodeDeploy blue/green deployment of an ECS service moves through its lifecycle events,
//! one clock step at a time, according to the group's scenario.

use serde_json::json;

use super::codedeploy_appspec::{AppSpec, HOOKS};
use super::scenario::{ActionOnTimeout, CodeDeployScenario};
use super::wire::AwsError;
use super::world::{
    CodeDeployDeployment, DeploymentGroup, LifecycleEvent, Now, TaskSet, World, random_digits,
};

/// The lifecycle events of an ECS deployment, in order.
pub const LIFECYCLE: &[&str] = &[
    "BeforeInstall",
    "Install",
    "AfterInstall",
    "AllowTestTraffic",
    "AfterAllowTestTraffic",
    "BeforeAllowTraffic",
    "AllowTraffic",
    "AfterAllowTraffic",
];

/// Steps of the ready wait per minute the group configures.
const STEPS_PER_MINUTE: u32 = 10;

fn new_id() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    let suffix: String = (0..9)
        .map(|_| char::from(ALPHABET[rand::random::<u8>() as usize % ALPHABET.len()]))
        .collect();
    format!("d-{suffix}")
}

/// Creates a deployment in `Created`; returns its id.
pub fn start_deployment(
    world: &mut World,
    group: &DeploymentGroup,
    spec: AppSpec,
    description: Option<String>,
    rollback_of: Option<String>,
    now: Now,
) -> String {
    let id = new_id();
    let events = LIFECYCLE
        .iter()
        .map(|&name| LifecycleEvent {
            name,
            hook_function: spec
                .hooks
                .iter()
                .find(|(hook, _)| hook == name)
                .map(|(_, function)| function.clone()),
            status: "Pending",
            start: None,
            end: None,
            diagnostics: None,
        })
        .collect();
    let scenario = if rollback_of.is_some() {
        CodeDeployScenario::Succeeds
    } else {
        group.scenario.clone()
    };
    world.codedeploy_deployments.push(CodeDeployDeployment {
        id: id.clone(),
        application: group.seed.application.clone(),
        deployment_group: group.seed.deployment_group.clone(),
        config_name: group.seed.deployment_config_name.clone(),
        status: "Created",
        error: None,
        rollback_deployment_id: None,
        rollback_message: rollback_of
            .as_ref()
            .map(|failed| format!("Rollback of deployment {failed}")),
        rollback_triggering_deployment_id: rollback_of,
        create_time: now.wall,
        complete_time: None,
        updated_at: now.wall,
        description,
        task_definition: spec.task_definition,
        cluster: group.seed.cluster.clone(),
        service: group.seed.service.clone(),
        scenario,
        events,
        steps_in_event: 0,
        ready_since_steps: None,
        continue_requested: false,
        green_task_set: None,
        traffic_on_green: false,
    });
    id
}

pub fn tick(world: &mut World, now: Now) {
    for index in 0..world.codedeploy_deployments.len() {
        if !world.codedeploy_deployments[index].is_done() {
            step(world, index, now);
        }
    }
}

fn is_hook(name: &str) -> bool {
    HOOKS.contains(&name)
}

fn step(world: &mut World, index: usize, now: Now) {
    let deployment = &mut world.codedeploy_deployments[index];
    deployment.updated_at = now.wall;
    if deployment.status == "Created" {
        deployment.status = "InProgress";
        begin_event(world, index, 0, now);
        return;
    }
    if deployment.status == "Ready" {
        wait_for_reroute(world, index, now);
        return;
    }
    let Some(current) = deployment
        .events
        .iter()
        .position(|e| e.status == "InProgress")
    else {
        return;
    };
    deployment.steps_in_event += 1;
    let name = deployment.events[current].name;
    let scenario = deployment.scenario.clone();
    match name {
        "Install" => {
            if deployment.green_task_set.is_none() {
                create_green_task_set(world, index, now);
                return;
            }
            if scenario == CodeDeployScenario::Stuck {
                return;
            }
            set_green_running(world, index, now);
        }
        "AllowTraffic" => deployment.traffic_on_green = true,
        _ => {}
    }
    if let CodeDeployScenario::HookFails { hook, message } = &scenario
        && hook == name
    {
        let function = world.codedeploy_deployments[index].events[current]
            .hook_function
            .clone()
            .unwrap_or_default();
        let diagnostics = json!({
            "errorCode": "ScriptFailed",
            "scriptName": function,
            "message": message,
            "logTail": "",
        });
        let event = &mut world.codedeploy_deployments[index].events[current];
        event.diagnostics = Some(diagnostics);
        fail(
            world,
            index,
            "HOOK_EXECUTION_FAILURE",
            message.clone(),
            "Failed",
            now,
        );
        return;
    }
    finish_event(world, index, current, "Succeeded", now);
    advance(world, index, current + 1, now);
}

fn begin_event(world: &mut World, index: usize, event: usize, now: Now) {
    let deployment = &mut world.codedeploy_deployments[index];
    deployment.steps_in_event = 0;
    let event = &mut deployment.events[event];
    event.status = "InProgress";
    event.start = Some(now.wall);
}

fn finish_event(world: &mut World, index: usize, event: usize, status: &'static str, now: Now) {
    let event = &mut world.codedeploy_deployments[index].events[event];
    event.status = status;
    event.start.get_or_insert(now.wall);
    event.end = Some(now.wall);
}

/// Moves on to event `next`, skipping hooks without a function, pausing in `Ready` before
/// production traffic when the deployment waits for a reroute.
fn advance(world: &mut World, index: usize, mut next: usize, now: Now) {
    loop {
        let deployment = &world.codedeploy_deployments[index];
        let Some(event) = deployment.events.get(next) else {
            succeed(world, index, now);
            return;
        };
        if event.name == "BeforeAllowTraffic" && waits_for_reroute(world, deployment) {
            let deployment = &mut world.codedeploy_deployments[index];
            deployment.status = "Ready";
            deployment.ready_since_steps = Some(0);
            return;
        }
        let fails_here = matches!(&deployment.scenario, CodeDeployScenario::HookFails { hook, .. } if hook == event.name);
        if is_hook(event.name) && event.hook_function.is_none() && !fails_here {
            finish_event(world, index, next, "Skipped", now);
            next += 1;
            continue;
        }
        begin_event(world, index, next, now);
        return;
    }
}

fn group_of<'a>(
    world: &'a World,
    deployment: &CodeDeployDeployment,
) -> Option<&'a DeploymentGroup> {
    world.deployment_groups.get(&(
        deployment.application.clone(),
        deployment.deployment_group.clone(),
    ))
}

fn waits_for_reroute(world: &World, deployment: &CodeDeployDeployment) -> bool {
    deployment.scenario == CodeDeployScenario::WaitsForReroute
        && !deployment.continue_requested
        && group_of(world, deployment).is_some_and(|g| g.seed.ready_wait.is_some())
}

fn wait_for_reroute(world: &mut World, index: usize, now: Now) {
    let deployment = &world.codedeploy_deployments[index];
    let Some((minutes, action)) = group_of(world, deployment).and_then(|g| g.seed.ready_wait)
    else {
        return;
    };
    let waited = deployment.ready_since_steps.unwrap_or(0) + 1;
    world.codedeploy_deployments[index].ready_since_steps = Some(waited);
    let timed_out = waited >= minutes * STEPS_PER_MINUTE;
    let continues = world.codedeploy_deployments[index].continue_requested
        || (timed_out && action == ActionOnTimeout::ContinueDeployment);
    if continues {
        let deployment = &mut world.codedeploy_deployments[index];
        deployment.continue_requested = true;
        deployment.status = "InProgress";
        let next = deployment
            .events
            .iter()
            .position(|e| e.name == "BeforeAllowTraffic")
            .unwrap_or(LIFECYCLE.len());
        advance(world, index, next, now);
    } else if timed_out {
        fail(
            world,
            index,
            "TIMEOUT",
            "The deployment timed out while waiting for traffic to be rerouted.".into(),
            "Stopped",
            now,
        );
    }
}

fn create_green_task_set(world: &mut World, index: usize, now: Now) {
    let deployment = &world.codedeploy_deployments[index];
    let (cluster, name, definition, id) = (
        deployment.cluster.clone(),
        deployment.service.clone(),
        deployment.task_definition.clone(),
        deployment.id.clone(),
    );
    let set_id = format!("ecs-svc/{}", random_digits(19));
    if let Some(service) = world.service_mut(&cluster, &name) {
        service.task_sets.push(TaskSet {
            id: set_id.clone(),
            primary: false,
            task_definition: definition,
            desired_count: service.desired_count,
            running_count: 0,
            external_id: Some(id),
            created_at: now.wall,
            updated_at: now.wall,
        });
    }
    world.codedeploy_deployments[index].green_task_set = Some(set_id);
}

fn set_green_running(world: &mut World, index: usize, now: Now) {
    let deployment = &world.codedeploy_deployments[index];
    let (cluster, name, set_id) = (
        deployment.cluster.clone(),
        deployment.service.clone(),
        deployment.green_task_set.clone(),
    );
    if let Some(service) = world.service_mut(&cluster, &name)
        && let Some(set) = service
            .task_sets
            .iter_mut()
            .find(|s| Some(&s.id) == set_id.as_ref())
    {
        set.running_count = set.desired_count;
        set.updated_at = now.wall;
    }
}

fn succeed(world: &mut World, index: usize, now: Now) {
    let deployment = &mut world.codedeploy_deployments[index];
    deployment.status = "Succeeded";
    deployment.complete_time = Some(now.wall);
    let (cluster, name, definition, green, id) = (
        deployment.cluster.clone(),
        deployment.service.clone(),
        deployment.task_definition.clone(),
        deployment.green_task_set.clone(),
        deployment.id.clone(),
    );
    world.completed_at.insert(id, now.instant);
    if let Some(service) = world.service_mut(&cluster, &name) {
        service.task_sets.retain(|s| Some(&s.id) == green.as_ref());
        for set in &mut service.task_sets {
            set.primary = true;
            set.updated_at = now.wall;
        }
        service.task_definition = definition;
        service.event(now.wall, "has reached a steady state.".into());
    }
}

/// Ends the deployment as `status` (Failed or Stopped) with `code`; removes the green task set
/// and, when the group rolls back automatically, starts the rollback deployment.
fn fail(
    world: &mut World,
    index: usize,
    code: &'static str,
    message: String,
    status: &'static str,
    now: Now,
) {
    fail_with_rollback(world, index, code, message, status, None, now);
}

fn fail_with_rollback(
    world: &mut World,
    index: usize,
    code: &'static str,
    message: String,
    status: &'static str,
    rollback_requested: Option<bool>,
    now: Now,
) {
    let deployment = &mut world.codedeploy_deployments[index];
    deployment.status = status;
    deployment.error = Some((code, message));
    deployment.complete_time = Some(now.wall);
    for event in &mut deployment.events {
        match event.status {
            "InProgress" if status == "Failed" => {
                event.status = "Failed";
                event.end = Some(now.wall);
            }
            "InProgress" | "Pending" => {
                event.status = "Skipped";
                event.end = Some(now.wall);
            }
            _ => {}
        }
    }
    let (cluster, name, green, id) = (
        deployment.cluster.clone(),
        deployment.service.clone(),
        deployment.green_task_set.clone(),
        deployment.id.clone(),
    );
    if let Some(service) = world.service_mut(&cluster, &name) {
        service.task_sets.retain(|s| Some(&s.id) != green.as_ref());
    }
    let Some(group) = group_of(world, &world.codedeploy_deployments[index]).cloned() else {
        return;
    };
    if !rollback_requested.unwrap_or(group.seed.auto_rollback) {
        return;
    }
    let Some(current) = world
        .service(&cluster, &name)
        .map(|s| s.task_definition.clone())
    else {
        return;
    };
    let spec = AppSpec {
        task_definition: current,
        hooks: Vec::new(),
    };
    let rollback = start_deployment(world, &group, spec, None, Some(id), now);
    let deployment = &mut world.codedeploy_deployments[index];
    deployment.rollback_message = Some(format!(
        "Automatic rollback started with deployment {rollback}"
    ));
    deployment.rollback_deployment_id = Some(rollback);
}

/// StopDeployment: the deployment ends `Stopped`; with `rollback` a rollback deployment starts.
pub fn stop_deployment(
    world: &mut World,
    id: &str,
    rollback: bool,
    now: Now,
) -> Result<(), AwsError> {
    let index = world
        .codedeploy_deployments
        .iter()
        .position(|d| d.id == id)
        .ok_or_else(|| {
            AwsError::new(
                "DeploymentDoesNotExistException",
                format!("The deployment {id} could not be found."),
            )
        })?;
    if world.codedeploy_deployments[index].is_done() {
        return Err(AwsError::new(
            "DeploymentAlreadyCompletedException",
            format!("The deployment {id} has already completed."),
        ));
    }
    fail_with_rollback(
        world,
        index,
        "MANUAL_STOP",
        "The deployment was stopped by a user.".into(),
        "Stopped",
        Some(rollback),
        now,
    );
    Ok(())
}
