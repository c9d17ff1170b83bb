//! `shipit plan`: what a run would do, stage by stage, decided by the same code the run uses
//! (`Runner::prepare`), without running anything or writing a journal.

use serde::Serialize;

use super::availability::unavailable_targets;
use super::aws_identity::aws_identity;
use super::lookahead::resolve_ahead;
use super::run::{new_record, participation};
use super::run_secrets::run_secrets;
use super::values::{base_values, with_image_placeholders};
use super::{AppError, EnvVars, Workspace};
use crate::journal::record::NOT_SELECTED;
use crate::pipeline::Pipeline;
use crate::plan::{Decision, Participation, Selection, StageGraph, StageId};
use crate::runner::{History, Runner, Stop, image_values};
use crate::stages::{PreviewInput, unavailable_message};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PlannedAction {
    Run,
    Skip,
    /// A deploy target whose kind this version of shipit cannot deploy: a run selecting it is
    /// refused.
    Unavailable,
    /// The stage could not be prepared (its outputs are gone while it is not selected, a
    /// build context cannot be read…): the run would fail there.
    Error,
}

impl PlannedAction {
    pub fn as_str(self) -> &'static str {
        match self {
            PlannedAction::Run => "run",
            PlannedAction::Skip => "skip",
            PlannedAction::Unavailable => "unavailable",
            PlannedAction::Error => "error",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct PlannedStage {
    pub stage: StageId,
    pub action: PlannedAction,
    pub reason: String,
    /// What the stage would change, when that can be known before it runs: the containers a
    /// docker deploy would start and stop.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub details: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PlanReport {
    pub pipeline: String,
    pub stages: Vec<PlannedStage>,
}

impl PlanReport {
    pub fn has_errors(&self) -> bool {
        self.stages.iter().any(|s| s.action == PlannedAction::Error)
    }
}

/// Plans a run of `pipeline` with `selection`. The run's secrets are masked in the report and
/// in errors, as in a run's output.
pub async fn plan(
    workspace: &Workspace,
    pipeline: &Pipeline,
    selection: Selection,
    env: &EnvVars,
) -> Result<PlanReport, AppError> {
    let secrets = run_secrets(pipeline, env);
    let mut report = plan_stages(workspace, pipeline, selection, env)
        .await
        .map_err(|err| err.masked(&secrets))?;
    for stage in &mut report.stages {
        stage.reason = secrets.mask_string(&stage.reason);
        for detail in &mut stage.details {
            *detail = secrets.mask_string(detail);
        }
    }
    Ok(report)
}

async fn plan_stages(
    workspace: &Workspace,
    pipeline: &Pipeline,
    selection: Selection,
    env: &EnvVars,
) -> Result<PlanReport, AppError> {
    let graph = StageGraph::from_pipeline(pipeline);
    let participation = participation(&graph, &selection)?;
    let run_id = "plan";
    let (values, git) = base_values(pipeline, run_id, env).map_err(AppError::invalid)?;
    // A plan says nothing of a role this job cannot assume: the run does.
    let (aws, _) = aws_identity(pipeline, &values, run_id)?;
    let store = workspace.store.as_ref();
    let reporter = crate::report::FanOut(Vec::new());
    let runner = Runner {
        pipeline,
        graph: &graph,
        store,
        executors: &workspace.executors,
        reporter: &reporter,
        values,
        history: History::load(store, &pipeline.file.name, run_id).await?,
        participation,
        stop: Stop::default(),
        aws,
    };
    // Simulate the run: a skipped stage contributes the outputs it reuses, so the stages after
    // it can be decided too; a stage that will run leaves its dependents undecided.
    let mut record = new_record(pipeline, &graph, run_id, selection, git);
    let mut stages = Vec::new();
    let planned = |stage: &StageId, action, reason: String| PlannedStage {
        stage: stage.clone(),
        action,
        reason,
        details: Vec::new(),
    };
    let unavailable = unavailable_targets(&workspace.executors, pipeline);
    for node in &graph.stages {
        if let Some(target) = unavailable.iter().find(|u| u.stage() == node.id) {
            let reason = unavailable_message(target.kind);
            stages.push(planned(&node.id, PlannedAction::Unavailable, reason));
            continue;
        }
        if runner.participation.get(&node.id) == Some(&Participation::Excluded) {
            stages.push(planned(
                &node.id,
                PlannedAction::Skip,
                NOT_SELECTED.to_owned(),
            ));
            continue;
        }
        let waiting_on: Vec<String> = node
            .needs
            .iter()
            .filter(|n| !record.stage(n).is_some_and(|s| s.status.is_success()))
            .map(|n| n.to_string())
            .collect();
        if !waiting_on.is_empty() {
            let reason = format!("decided once {} finishes", waiting_on.join(", "));
            stages.push(planned(&node.id, PlannedAction::Run, reason));
            continue;
        }
        match runner.prepare(&node.id, &record).await {
            Ok(prepared) => match &prepared.decision {
                Decision::Skip {
                    reason,
                    reused_from,
                } => {
                    if let Some(stage) = record.stage_mut(&node.id) {
                        stage
                            .skip(
                                Some(prepared.input_digest.clone()),
                                reason.clone(),
                                reused_from.clone(),
                                prepared.reused_outputs.clone(),
                            )
                            .map_err(AppError::invalid)?;
                    }
                    stages.push(planned(&node.id, PlannedAction::Skip, reason.clone()));
                }
                Decision::Run { reason } => {
                    stages.push(planned(&node.id, PlannedAction::Run, reason.clone()))
                }
            },
            Err(failure) => stages.push(planned(&node.id, PlannedAction::Error, failure.message)),
        }
    }
    // What each stage that runs would change, from its own executor, with its configuration
    // resolved as far as it can be before anything runs.
    // Images a skipped stage reuses are known; the others are placeholders.
    let mut values = with_image_placeholders(&runner.values, pipeline);
    values.images.extend(image_values(&record));
    for stage in &mut stages {
        if stage.action != PlannedAction::Run {
            continue;
        }
        let executor = workspace.executors.for_stage(&stage.stage, pipeline);
        let config = resolve_ahead(pipeline, &stage.stage, &values);
        stage.details = match (executor, config) {
            (Ok(executor), Ok(config)) => {
                let input = PreviewInput {
                    pipeline,
                    id: &stage.stage,
                    config: &config,
                    values: &values,
                    aws: &runner.aws,
                };
                executor.preview(&input).await
            }
            (Err(failure), _) => vec![failure.message],
            (_, Err(message)) => vec![message],
        };
    }
    Ok(PlanReport {
        pipeline: pipeline.file.name.clone(),
        stages,
    })
}
