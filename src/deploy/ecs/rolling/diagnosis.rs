//! Why a deployment failed, from the evidence AWS holds, so nobody has to open the console:
//! the last service events, the stopped tasks of our deployment with their reasons and exit
//! codes, the load balancer targets that are not healthy, and the last lines the failed
//! container logged. A source that cannot be read says why in one line.

use serde_json::Value;

use crate::deploy::ecs::clients::EcsClients;
use crate::deploy::ecs::ecs_calls::{log_tail, stopped_tasks_of, unhealthy_targets};
use crate::deploy::ecs::snapshot::{ServiceSnapshot, StoppedTask, UnhealthyTarget};
use crate::deploy::ecs::spec::EcsDeploySpec;
use crate::deploy::ecs::task_definition::document::TaskDefinitionDocument;

const EVENTS_SHOWN: usize = 5;
const TASKS_SHOWN: usize = 3;
const LOG_LINES: i32 = 20;

/// Where the awslogs driver writes a container's output: group, stream, region.
pub(crate) fn awslogs_location(
    document: &TaskDefinitionDocument,
    container: &str,
    task_id: &str,
) -> Option<(String, String, Option<String>)> {
    let definition = document
        .body
        .get("containerDefinitions")?
        .as_array()?
        .iter()
        .find(|c| c.get("name").and_then(Value::as_str) == Some(container))?;
    let logging = definition.get("logConfiguration")?;
    if logging.get("logDriver").and_then(Value::as_str) != Some("awslogs") {
        return None;
    }
    let option = |name: &str| {
        logging
            .get("options")?
            .get(name)?
            .as_str()
            .map(str::to_owned)
    };
    let group = option("awslogs-group")?;
    let prefix = option("awslogs-stream-prefix")?;
    Some((
        group,
        format!("{prefix}/{container}/{task_id}"),
        option("awslogs-region"),
    ))
}

/// The evidence, as the lines of the failure message.
pub(crate) struct Evidence {
    pub(crate) events: Vec<String>,
    pub(crate) stopped: Result<Vec<StoppedTask>, String>,
    pub(crate) targets: Result<Vec<UnhealthyTarget>, String>,
    /// The failed container, and its last log lines or why they could not be read.
    pub(crate) log: Option<(String, Result<Vec<String>, String>)>,
}

pub(crate) fn render(evidence: &Evidence) -> String {
    let mut lines = Vec::new();
    if !evidence.events.is_empty() {
        lines.push("last service events:".to_owned());
        lines.extend(evidence.events.iter().map(|event| format!("  {event}")));
    }
    match &evidence.stopped {
        Ok(tasks) if tasks.is_empty() => {
            lines.push("no task of this deployment stopped".to_owned())
        }
        Ok(tasks) => {
            let shown = if tasks.len() > TASKS_SHOWN {
                format!(", {TASKS_SHOWN} shown")
            } else {
                String::new()
            };
            lines.push(format!(
                "stopped tasks of this deployment ({}{shown}):",
                tasks.len()
            ));
            for task in tasks.iter().take(TASKS_SHOWN) {
                lines.push(format!(
                    "  task {}: {}{}",
                    task.task_id,
                    task.stopped_reason.as_deref().unwrap_or("no reason given"),
                    task.stop_code
                        .as_deref()
                        .map(|code| format!(" ({code})"))
                        .unwrap_or_default()
                ));
                for container in &task.containers {
                    let exit = container.exit_code.map_or_else(
                        || "no exit code".to_owned(),
                        |code| format!("exit code {code}"),
                    );
                    let reason = container
                        .reason
                        .as_deref()
                        .map(|r| format!(": {r}"))
                        .unwrap_or_default();
                    lines.push(format!("    container {}: {exit}{reason}", container.name));
                }
            }
        }
        Err(why) => lines.push(format!("stopped tasks could not be read: {why}")),
    }
    match &evidence.targets {
        Ok(targets) if targets.is_empty() => {}
        Ok(targets) => {
            lines.push("load balancer targets not healthy:".to_owned());
            for target in targets {
                lines.push(format!(
                    "  {} {} {}{}{}",
                    target.target_group,
                    target.target,
                    target.state,
                    target
                        .reason
                        .as_deref()
                        .map(|r| format!(" ({r})"))
                        .unwrap_or_default(),
                    target
                        .description
                        .as_deref()
                        .map(|d| format!(": {d}"))
                        .unwrap_or_default()
                ));
            }
        }
        Err(why) => lines.push(format!("target health could not be read: {why}")),
    }
    match &evidence.log {
        Some((container, Ok(log))) if !log.is_empty() => {
            lines.push(format!("last log lines of container {container}:"));
            lines.extend(log.iter().map(|line| format!("  {}", line.trim_end())));
        }
        Some((container, Ok(_))) => lines.push(format!("container {container} logged nothing")),
        Some((container, Err(why))) => lines.push(format!(
            "the log of container {container} could not be read: {why}"
        )),
        None => {}
    }
    lines.join("\n")
}

/// Gathers the evidence of `deployment_id`'s failure and renders it.
pub(crate) async fn explain(
    clients: &EcsClients,
    spec: &EcsDeploySpec,
    service: &ServiceSnapshot,
    unhealthy_while_waiting: &[UnhealthyTarget],
    deployment_id: &str,
    document: Option<&TaskDefinitionDocument>,
) -> String {
    let mut events: Vec<String> = service
        .events
        .iter()
        .take(EVENTS_SHOWN)
        .map(|e| e.message.clone())
        .collect();
    events.reverse();
    let stopped = stopped_tasks_of(clients, spec, deployment_id)
        .await
        .map_err(|failure| failure.error.message);
    // Targets of failed tasks are deregistered by now: what was seen while they ran counts too.
    let targets = unhealthy_targets(clients, &service.target_groups)
        .await
        .map(|mut now| {
            for target in unhealthy_while_waiting {
                if !now.contains(target) {
                    now.push(target.clone());
                }
            }
            now
        });
    let mut log = None;
    if let (Ok(tasks), Some(document)) = (&stopped, document) {
        let failed = tasks.iter().find_map(|task| {
            let container = task
                .containers
                .iter()
                .find(|c| c.exit_code.is_some_and(|code| code != 0))
                .or_else(|| task.containers.first())?;
            Some((task.task_id.clone(), container.name.clone()))
        });
        if let Some((task_id, container)) = failed
            && let Some((group, stream, region)) = awslogs_location(document, &container, &task_id)
        {
            let tail = log_tail(clients, &group, &stream, region.as_deref(), LOG_LINES).await;
            log = Some((container, tail));
        }
    }
    render(&Evidence {
        events,
        stopped,
        targets,
        log,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deploy::ecs::snapshot::StoppedContainer;
    use crate::deploy::ecs::task_definition::fixtures;

    #[test]
    fn the_awslogs_stream_is_prefix_container_task() {
        let document =
            TaskDefinitionDocument::from_json(&fixtures::full_register_input(), "t").unwrap();
        assert_eq!(
            awslogs_location(&document, "web", "abc123"),
            Some((
                "/ecs/web".to_owned(),
                "ecs/web/abc123".to_owned(),
                Some("eu-west-1".to_owned())
            ))
        );
        assert_eq!(
            awslogs_location(&document, "envoy", "abc123"),
            None,
            "no awslogs driver"
        );
        assert_eq!(awslogs_location(&document, "nope", "abc123"), None);
    }

    #[test]
    fn the_explanation_shows_reasons_exit_codes_targets_and_log_lines() {
        let evidence = Evidence {
            events: vec!["(service web) has started 1 tasks".to_owned()],
            stopped: Ok(vec![StoppedTask {
                task_id: "abc123".to_owned(),
                stopped_reason: Some("Essential container in task exited".to_owned()),
                stop_code: Some("EssentialContainerExited".to_owned()),
                containers: vec![StoppedContainer {
                    name: "web".to_owned(),
                    exit_code: Some(137),
                    reason: Some("OutOfMemoryError".to_owned()),
                }],
                ..StoppedTask::default()
            }]),
            targets: Ok(vec![UnhealthyTarget {
                target_group: "targetgroup/web/1".to_owned(),
                target: "10.0.0.5:8080".to_owned(),
                state: "unhealthy".to_owned(),
                reason: Some("Target.ResponseCodeMismatch".to_owned()),
                description: Some("Health checks failed with these codes: [500]".to_owned()),
            }]),
            log: Some((
                "web".to_owned(),
                Ok(vec!["panic: no DATABASE_URL\n".to_owned()]),
            )),
        };
        assert_eq!(
            render(&evidence),
            "last service events:\n  (service web) has started 1 tasks\nstopped tasks of this deployment (1):\n  task abc123: Essential container in task exited (EssentialContainerExited)\n    container web: exit code 137: OutOfMemoryError\nload balancer targets not healthy:\n  targetgroup/web/1 10.0.0.5:8080 unhealthy (Target.ResponseCodeMismatch): Health checks failed with these codes: [500]\nlast log lines of container web:\n  panic: no DATABASE_URL"
        );
    }

    #[test]
    fn each_unreadable_source_says_why_in_one_line() {
        let evidence = Evidence {
            events: Vec::new(),
            stopped: Err("AWS refused ecs:ListTasks".to_owned()),
            targets: Err("missing elasticloadbalancing:DescribeTargetHealth".to_owned()),
            log: Some((
                "web".to_owned(),
                Err("missing logs:GetLogEvents".to_owned()),
            )),
        };
        assert_eq!(
            render(&evidence),
            "stopped tasks could not be read: AWS refused ecs:ListTasks\ntarget health could not be read: missing elasticloadbalancing:DescribeTargetHealth\nthe log of container web could not be read: missing logs:GetLogEvents"
        );
    }
}
