//! `shipit rollback deploy:<target> [--to RUN_ID]`: returns a target to the version an earlier
//! successful run deployed (by default the one before the version live now), as a run of its
//! own: a `rollback:<target>` stage, gated like a deploy, whose upstream is the earlier run's
//! `deploy:<target>` record (the task definition and digests it deployed).

use super::masking::Guards;
use super::run::{RunOutcome, execute_action, new_record, run_aws_identity};
use super::run_secrets::run_secrets;
use super::values::base_values;
use super::{AppError, EnvVars, Stop, Workspace};
use crate::journal::{RunRecord, RunStore, StageRecord, StageStatus, new_run_id};
use crate::pipeline::Pipeline;
use crate::plan::{Selection, StageGraph, StageId};
use crate::report::Reporter;
use crate::stages::Outputs;

pub struct RollbackRequest {
    pub pipeline: Pipeline,
    /// The deploy target to return.
    pub target: String,
    /// The run whose version to return to; the one before the live version when `None`.
    pub to_run: Option<String>,
    pub env: EnvVars,
}

/// The earlier deploy a rollback returns to.
#[derive(Debug, Clone, PartialEq)]
pub struct ReturnPoint {
    pub run_id: String,
    pub input_digest: Option<String>,
    pub outputs: Outputs,
}

/// Returns `request.target` to an earlier run's version and journals it as a run.
pub async fn rollback(
    workspace: &Workspace,
    request: RollbackRequest,
    reporter: &dyn Reporter,
    stop: &Stop,
) -> Result<RunOutcome, AppError> {
    let secrets = run_secrets(&request.pipeline, &request.env);
    let guards = Guards::new(&secrets, workspace, reporter);
    guards.result(roll_back(workspace, request, &guards, stop).await)
}

async fn roll_back(
    workspace: &Workspace,
    request: RollbackRequest,
    guards: &Guards<'_>,
    stop: &Stop,
) -> Result<RunOutcome, AppError> {
    let RollbackRequest {
        pipeline,
        target,
        to_run,
        env,
    } = request;
    let Some(deploy_target) = pipeline.file.deploy.get(&target) else {
        let known: Vec<&str> = pipeline.file.deploy.keys().map(String::as_str).collect();
        return Err(
            AppError::invalid(format!("the pipeline has no deploy target `{target}`"))
                .with_hint(format!("its deploy targets are: {}", known.join(", "))),
        );
    };
    if workspace
        .executors
        .for_target(&deploy_target.kind)
        .is_none()
    {
        return Err(AppError::invalid(format!(
            "deploy.{target}: {}",
            crate::stages::unavailable_message(deploy_target.kind.key())
        )));
    }
    let runs = guards.store.runs_of(&pipeline.file.name).await?;
    let point = return_point(&runs, &target, to_run.as_deref())?;
    let graph = StageGraph::for_rollback(&target);
    let run_id = new_run_id(chrono::Utc::now());
    let (values, git) = base_values(&pipeline, &run_id, &env).map_err(AppError::invalid)?;
    let aws = run_aws_identity(&pipeline, &values, &run_id, guards)?;
    let mut record = new_record(&pipeline, &graph, &run_id, Selection::default(), git);
    // The version to return to, as the rollback stage's upstream: the earlier run's record of
    // the deploy, reused as it is.
    let mut returned_to = StageRecord::pending(StageId::deploy(&target));
    returned_to
        .skip(
            point.input_digest.clone(),
            format!("the version run {} deployed", point.run_id),
            point.run_id.clone(),
            point.outputs.clone(),
        )
        .map_err(AppError::invalid)?;
    record.stages.insert(0, returned_to);
    guards.store.create(&mut record).await?;
    let _hold = guards.store.lock_run(&run_id).await?;
    Ok(execute_action(
        workspace, guards, &pipeline, &graph, values, aws, record, stop,
    )
    .await)
}

/// What identifies the version a deploy put in place: the ECS task definition, the image a
/// docker target runs, or the images an EKS target's containers run.
fn deployed_version(outputs: &Outputs) -> Option<String> {
    ["task_definition_arn", "image_digest"]
        .iter()
        .find_map(|key| {
            outputs
                .get(*key)
                .and_then(|v| v.as_str())
                .map(str::to_owned)
        })
        .or_else(|| {
            outputs
                .get("images")
                .filter(|images| images.as_object().is_some_and(|m| !m.is_empty()))
                .map(|images| images.to_string())
        })
}

/// The deploy to return to, from `runs` (newest first): run `to_run`'s, or the version deployed
/// before the live one (the newest deploy or rollback that succeeded put the live version in
/// place; the deploy that first put it there is found, and the newest older deploy of another
/// version is the one to return to, so that rollbacks in a row keep going back).
pub fn return_point(
    runs: &[RunRecord],
    target: &str,
    to_run: Option<&str>,
) -> Result<ReturnPoint, AppError> {
    let deploy = StageId::deploy(target);
    let point = |run: &RunRecord, stage: &StageRecord| ReturnPoint {
        run_id: run.run_id.clone(),
        input_digest: stage.input_digest.clone(),
        outputs: stage.outputs.clone(),
    };
    if let Some(wanted) = to_run {
        let run = runs
            .iter()
            .find(|run| run.run_id == wanted)
            .ok_or_else(|| {
                AppError::invalid(format!("no run {wanted} of this pipeline is recorded"))
                    .with_hint("`shipit runs` lists them")
            })?;
        return match run.stage(&deploy) {
            Some(stage)
                if stage.status == StageStatus::Succeeded
                    && deployed_version(&stage.outputs).is_some() =>
            {
                Ok(point(run, stage))
            }
            _ => Err(AppError::invalid(format!(
                "run {wanted} did not deploy {target} successfully; there is nothing of it to return to"
            ))
            .with_hint(format!("`shipit runs` and `shipit show` tell which runs deployed {target}"))),
        };
    }
    let rollback = StageId::rollback(target);
    let live = runs.iter().find_map(|run| {
        run.stages
            .iter()
            .filter(|s| s.status == StageStatus::Succeeded)
            .filter(|s| s.stage == deploy || s.stage == rollback)
            .find_map(|s| deployed_version(&s.outputs))
    });
    let Some(live) = live else {
        return Err(AppError::invalid(format!(
            "no successful deploy of {target} is recorded, so there is no earlier version to return to"
        )));
    };
    let deploys: Vec<(&RunRecord, &StageRecord)> = runs
        .iter()
        .filter_map(|run| {
            run.stage(&deploy)
                .filter(|stage| stage.status == StageStatus::Succeeded)
                .filter(|stage| deployed_version(&stage.outputs).is_some())
                .map(|stage| (run, stage))
        })
        .collect();
    let live_deployed_at = deploys
        .iter()
        .position(|(_, stage)| deployed_version(&stage.outputs).as_deref() == Some(&live))
        .unwrap_or(0);
    deploys[live_deployed_at..]
        .iter()
        .find(|(_, stage)| deployed_version(&stage.outputs).is_some_and(|v| v != live))
        .map(|(run, stage)| point(run, stage))
        .ok_or_else(|| {
            AppError::invalid(format!(
                "every recorded deploy of {target} put the live version ({live}) in place; there is no earlier version to return to"
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stage(id: StageId, status: StageStatus, task_definition: &str) -> StageRecord {
        let mut stage = StageRecord::pending(id);
        stage.status = status;
        stage.input_digest = Some(format!("digest-of-{task_definition}"));
        stage.outputs.insert(
            "task_definition_arn".into(),
            serde_json::json!(task_definition),
        );
        stage
    }

    fn run(id: &str, stages: Vec<StageRecord>) -> RunRecord {
        RunRecord::for_test(id, "shop", stages)
    }

    #[test]
    fn by_default_the_newest_deploy_of_another_version_than_the_live_one() {
        // Newest first: run 3 redeployed :7 (live), run 2 deployed :7, run 1 deployed :6.
        let runs = vec![
            run(
                "3",
                vec![stage(
                    StageId::deploy("web"),
                    StageStatus::Succeeded,
                    "web:7",
                )],
            ),
            run(
                "2",
                vec![stage(
                    StageId::deploy("web"),
                    StageStatus::Succeeded,
                    "web:7",
                )],
            ),
            run(
                "1",
                vec![stage(
                    StageId::deploy("web"),
                    StageStatus::Succeeded,
                    "web:6",
                )],
            ),
        ];
        let point = return_point(&runs, "web", None).unwrap();
        assert_eq!(point.run_id, "1");
        assert_eq!(point.outputs["task_definition_arn"], "web:6");
        assert_eq!(point.input_digest.as_deref(), Some("digest-of-web:6"));
    }

    #[test]
    fn after_a_rollback_the_next_one_goes_further_back() {
        let runs = vec![
            run(
                "4",
                vec![stage(
                    StageId::rollback("web"),
                    StageStatus::Succeeded,
                    "web:6",
                )],
            ),
            run(
                "3",
                vec![stage(
                    StageId::deploy("web"),
                    StageStatus::Succeeded,
                    "web:7",
                )],
            ),
            run(
                "2",
                vec![stage(
                    StageId::deploy("web"),
                    StageStatus::Succeeded,
                    "web:6",
                )],
            ),
            run(
                "1",
                vec![stage(
                    StageId::deploy("web"),
                    StageStatus::Succeeded,
                    "web:5",
                )],
            ),
        ];
        // Live is :6 (the rollback), first deployed by run 2; before it came :5 (run 1).
        assert_eq!(return_point(&runs, "web", None).unwrap().run_id, "1");
    }

    #[test]
    fn failed_and_skipped_deploys_are_not_versions_to_return_to() {
        let runs = vec![
            run(
                "3",
                vec![stage(
                    StageId::deploy("web"),
                    StageStatus::Succeeded,
                    "web:7",
                )],
            ),
            run(
                "2",
                vec![stage(
                    StageId::deploy("web"),
                    StageStatus::RolledBack,
                    "web:8",
                )],
            ),
            run(
                "1",
                vec![stage(StageId::deploy("web"), StageStatus::Skipped, "web:6")],
            ),
        ];
        let err = return_point(&runs, "web", None).unwrap_err();
        assert!(err.to_string().contains("no earlier version"), "{err}");
        let err = return_point(&runs, "web", Some("2")).unwrap_err();
        assert!(
            err.to_string().contains("did not deploy web successfully"),
            "{err}"
        );
        assert!(return_point(&runs, "web", Some("9")).is_err());
    }

    #[test]
    fn a_named_run_is_returned_to_even_when_it_is_the_live_version() {
        let runs = vec![
            run(
                "2",
                vec![stage(
                    StageId::deploy("web"),
                    StageStatus::Succeeded,
                    "web:7",
                )],
            ),
            run(
                "1",
                vec![stage(
                    StageId::deploy("web"),
                    StageStatus::Succeeded,
                    "web:6",
                )],
            ),
        ];
        assert_eq!(return_point(&runs, "web", Some("2")).unwrap().run_id, "2");
        assert_eq!(return_point(&runs, "web", Some("1")).unwrap().run_id, "1");
    }

    #[test]
    fn docker_targets_are_told_apart_by_their_image_digest() {
        let docker = |id: &str, digest: &str| {
            let mut stage = StageRecord::pending(StageId::deploy("web"));
            stage.status = StageStatus::Succeeded;
            stage
                .outputs
                .insert("image_digest".into(), serde_json::json!(digest));
            run(id, vec![stage])
        };
        let runs = vec![docker("2", "sha256:b"), docker("1", "sha256:a")];
        assert_eq!(return_point(&runs, "web", None).unwrap().run_id, "1");
    }
}
