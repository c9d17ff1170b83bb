//! The ECS deploy's entry points. Planning (the service, its controller, the task definition
//! to roll out and whether it differs from the live one, the service changes) is one function
//! that `preflight`, `preview` and `deploy` all use, so the plan shows what the deploy does.

use aws_sdk_ecs::types::Service;
use tokio_util::sync::CancellationToken;

use crate::pipeline::model::EcsStrategy;

use super::blue_green;
use super::clients::EcsClients;
use super::ecs_calls::{call_site, describe_service};
use super::error::EcsDeployError;
use super::observer::EcsObserver;
use super::outcome::{EcsCheckpoint, EcsDeployOutcome};
use super::rolling::rollout::{Rollout, base_outcome, fill, roll_out, short};
use super::service_changes::ServiceChanges;
use super::snapshot::ServiceSnapshot;
use super::spec::{EcsDeploySpec, TaskDefinitionSource};
use super::task_definition::diff::task_definition_diff;
use super::task_definition::document::{TaskDefinitionDocument, shipit_tags};
use super::task_definition::normal_form::{normal_form, same_task_definition};
use super::task_definition::raw_calls::{describe, register};

/// What a deploy would do, found without changing anything.
struct Plan {
    live: Service,
    snapshot: ServiceSnapshot,
    live_document: TaskDefinitionDocument,
    desired: TaskDefinitionDocument,
    unchanged: bool,
    changes: ServiceChanges,
}

async fn plan(clients: &EcsClients, spec: &EcsDeploySpec) -> Result<Plan, EcsDeployError> {
    let (snapshot, live) = describe_service(clients, spec).await?;
    let (wanted, strategy) = match spec.config.strategy {
        EcsStrategy::Rolling => ("ECS", "rolling"),
        EcsStrategy::BlueGreen => ("CODE_DEPLOY", "blue_green"),
    };
    if snapshot.controller != wanted {
        let fits = match snapshot.controller.as_str() {
            "ECS" => "`strategy: rolling`",
            "CODE_DEPLOY" => "`strategy: blue_green`",
            _ => "another tool (shipit deploys ECS and CODE_DEPLOY controllers)",
        };
        return Err(EcsDeployError::config(format!(
            "service `{}` uses the {} deployment controller, which `strategy: {strategy}` cannot deploy; it needs {fits}",
            spec.config.service, snapshot.controller
        )));
    }
    let site = call_site(clients, spec);
    let live_document = describe(&clients.ecs, &snapshot.task_definition, site).await?;
    let (mut desired, source) = match &spec.task_definition {
        TaskDefinitionSource::File { path, document } => (
            TaskDefinitionDocument::from_json(document, path)?,
            path.clone(),
        ),
        TaskDefinitionSource::Current => (
            live_document.clone(),
            format!(
                "the live task definition ({})",
                short(&snapshot.task_definition)
            ),
        ),
    };
    desired.pin_images(&spec.images, &source)?;
    let unchanged = same_task_definition(&desired, &live_document);
    let changes = ServiceChanges::plan(&snapshot, &spec.config);
    Ok(Plan {
        live,
        snapshot,
        live_document,
        desired,
        unchanged,
        changes,
    })
}

/// Checks everything checkable without changing anything, so a run can refuse before it builds.
pub async fn preflight(clients: &EcsClients, spec: &EcsDeploySpec) -> Result<(), EcsDeployError> {
    plan(clients, spec).await.map(|_| ())
}

/// The plan's lines: the task definition diff (or "unchanged"), the service changes, the strategy.
pub async fn preview(
    clients: &EcsClients,
    spec: &EcsDeploySpec,
) -> Result<Vec<String>, EcsDeployError> {
    let plan = plan(clients, spec).await?;
    let mut lines = Vec::new();
    if plan.unchanged {
        lines.push(format!(
            "task definition: unchanged ({})",
            short(&plan.snapshot.task_definition)
        ));
    } else {
        lines.push(format!(
            "task definition: new revision of {} (from {})",
            plan.desired.family,
            short(&plan.snapshot.task_definition)
        ));
        lines.extend(
            task_definition_diff(
                &normal_form(&plan.live_document),
                &normal_form(&plan.desired),
            )
            .into_iter()
            .map(|line| format!("  {line}")),
        );
    }
    let changes = plan.changes.lines();
    if changes.is_empty() {
        lines.push("service: no setting changes".to_owned());
    } else {
        lines.extend(changes.into_iter().map(|line| format!("service: {line}")));
    }
    lines.push(format!(
        "strategy: {}",
        match spec.config.strategy {
            EcsStrategy::Rolling => "rolling (the ECS controller, gated on this deployment)",
            EcsStrategy::BlueGreen => "blue_green (a CodeDeploy deployment)",
        }
    ));
    Ok(lines)
}

/// Rolls the target out: registers the task definition when it differs from the live one,
/// then deploys it with the target's strategy. `previous` is what an interrupted attempt
/// journaled: nothing is registered or deployed twice.
pub async fn deploy(
    clients: &EcsClients,
    spec: &EcsDeploySpec,
    previous: Option<&EcsCheckpoint>,
    observer: &dyn EcsObserver,
    cancel: CancellationToken,
) -> Result<EcsDeployOutcome, EcsDeployError> {
    let plan = plan(clients, spec).await?;
    let mut checkpoint = previous.cloned().unwrap_or_default();
    let mut registered = false;
    if checkpoint.task_definition_arn.is_none() {
        checkpoint.previous_task_definition_arn = Some(plan.snapshot.task_definition.clone());
        if plan.unchanged {
            checkpoint.task_definition_arn = Some(plan.snapshot.task_definition.clone());
        } else {
            let request = plan.desired.register_request(&shipit_tags(
                &spec.pipeline,
                &spec.run_id,
                spec.git_sha.as_deref(),
            ));
            let revision = register(&clients.ecs, &request, call_site(clients, spec)).await?;
            observer.on_progress(&format!("registered {}", short(&revision.arn)));
            checkpoint.task_definition_arn = Some(revision.arn);
            registered = true;
        }
        observer.on_checkpoint(&checkpoint).await.map_err(|why| {
            EcsDeployError::remote(format!(
                "the deploy could not be journaled, so a resume could not find it: {why}"
            ))
        })?;
    } else {
        registered = checkpoint.task_definition_arn != checkpoint.previous_task_definition_arn;
    }
    let target = checkpoint.task_definition_arn.clone().unwrap_or_default();
    let nothing_to_do = checkpoint.deployment_id.is_none()
        && checkpoint.update_requested_at.is_none()
        && plan.changes.is_empty()
        && plan.snapshot.is_stable_on(&target);
    if nothing_to_do {
        observer.on_progress(&format!(
            "already deployed: {} is running and stable",
            short(&target)
        ));
        let mut outcome = base_outcome(spec, &checkpoint, registered);
        fill(&mut outcome, &plan.snapshot, "");
        return Ok(outcome);
    }
    match spec.config.strategy {
        EcsStrategy::Rolling => {
            let rollout = Rollout {
                live: &plan.live,
                snapshot: &plan.snapshot,
                changes: &plan.changes,
                document: Some(&plan.desired),
                checkpoint,
                registered,
            };
            roll_out(clients, spec, rollout, observer, cancel).await
        }
        EcsStrategy::BlueGreen => {
            blue_green::deploy(
                clients, spec, &plan.live, checkpoint, registered, observer, cancel,
            )
            .await
        }
    }
}

/// Returns the service to an earlier task definition, gated like a deploy.
pub async fn roll_back(
    clients: &EcsClients,
    spec: &EcsDeploySpec,
    to_task_definition_arn: &str,
    previous: Option<&EcsCheckpoint>,
    observer: &dyn EcsObserver,
    cancel: CancellationToken,
) -> Result<EcsDeployOutcome, EcsDeployError> {
    let (snapshot, live) = describe_service(clients, spec).await?;
    let document = describe(
        &clients.ecs,
        to_task_definition_arn,
        call_site(clients, spec),
    )
    .await?;
    let mut checkpoint = previous.cloned().unwrap_or_default();
    if checkpoint.task_definition_arn.as_deref() != Some(to_task_definition_arn) {
        checkpoint = EcsCheckpoint {
            task_definition_arn: Some(to_task_definition_arn.to_owned()),
            previous_task_definition_arn: Some(snapshot.task_definition.clone()),
            ..EcsCheckpoint::default()
        };
    }
    match spec.config.strategy {
        EcsStrategy::Rolling => {
            let rollout = Rollout {
                live: &live,
                snapshot: &snapshot,
                changes: &ServiceChanges::default(),
                document: Some(&document),
                checkpoint,
                registered: false,
            };
            roll_out(clients, spec, rollout, observer, cancel).await
        }
        EcsStrategy::BlueGreen => {
            blue_green::deploy(clients, spec, &live, checkpoint, false, observer, cancel).await
        }
    }
}

/// Whether the service still runs what `outcome` deployed, stable (a rerun may skip the stage).
pub async fn still_deployed(
    clients: &EcsClients,
    spec: &EcsDeploySpec,
    outcome: &EcsDeployOutcome,
) -> Result<bool, EcsDeployError> {
    let (snapshot, _) = describe_service(clients, spec).await?;
    Ok(!outcome.task_definition_arn.is_empty()
        && snapshot.is_stable_on(&outcome.task_definition_arn))
}
