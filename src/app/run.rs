//! `shipit run` and `shipit resume`: a new run of a pipeline, or an unfinished one continued
//! from its journal.

use std::collections::BTreeMap;

use super::availability::refuse_unavailable;
use super::aws_identity::aws_identity;
use super::lookahead::check_deploy_targets;
use super::masking::Guards;
use super::run_secrets::run_secrets;
use super::values::{base_values, pipeline_digest, preflight, with_image_placeholders};
use super::{AppError, EnvVars, Stop, Workspace};
use crate::exit;
use crate::journal::{
    GitSnapshot, JournalError, ListedRun, RunRecord, RunStatus, RunStore, StageRecord, is_run_id,
    new_run_id,
};
use crate::pipeline::interpolate::Values;
use crate::pipeline::{LoadError, Pipeline};
use crate::plan::{Participation, Selection, StageGraph, StageId};
use crate::report::{Event, Reporter};
use crate::runner::{Executed, History, Runner};
use crate::secrets::SecretSet;
use crate::stages::AwsIdentity;

/// A run to start: the pipeline, which stages, and the environment variables expressions and
/// build secrets may read.
pub struct RunRequest {
    pub pipeline: Pipeline,
    pub selection: Selection,
    pub env: EnvVars,
    /// The journal id the run takes; a new one when absent. The daemon chooses it and notes it
    /// in its queue before the run begins, so that a daemon dying at any point leaves a run
    /// that is resumed under this id, never a second run beside it.
    pub run_id: Option<String>,
}

/// A run that went to its end (successfully or not) or was stopped: its journal record as
/// written, and the exit code it ends with.
#[derive(Debug)]
pub struct RunOutcome {
    pub record: RunRecord,
    pub exit_code: i32,
    /// A journal write that failed: the run failed with it, and `record` holds what could not
    /// be written.
    pub journal_error: Option<JournalError>,
}

impl RunOutcome {
    /// The outcome as it may be shown and written out (JSON result, JUnit, step files).
    pub(super) fn masked(self, secrets: &SecretSet) -> Self {
        RunOutcome {
            record: secrets.mask_record(&self.record),
            ..self
        }
    }
}

impl From<Executed> for RunOutcome {
    /// A run whose journal could not be written ends with 1 at least, whatever its stages did.
    fn from(executed: Executed) -> Self {
        let Executed {
            record,
            journal_error,
        } = executed;
        let code = exit::for_run(&record);
        RunOutcome {
            exit_code: match journal_error {
                Some(_) => code.max(exit::STAGE_FAILED),
                None => code,
            },
            record,
            journal_error,
        }
    }
}

#[derive(Debug)]
pub enum ResumeOutcome {
    /// The run had already succeeded: nothing was done.
    AlreadySucceeded {
        run_id: String,
    },
    Resumed(Box<RunOutcome>),
}

pub(super) fn participation(
    graph: &StageGraph,
    selection: &Selection,
) -> Result<BTreeMap<StageId, Participation>, AppError> {
    graph
        .participation(selection)
        .map(|list| list.into_iter().collect())
        .map_err(AppError::invalid)
}

pub(super) fn new_record(
    pipeline: &Pipeline,
    graph: &StageGraph,
    run_id: &str,
    selection: Selection,
    git: GitSnapshot,
) -> RunRecord {
    RunRecord {
        format: crate::journal::record::JOURNAL_FORMAT,
        revision: 0,
        run_id: run_id.to_owned(),
        pipeline: pipeline.file.name.clone(),
        pipeline_file: pipeline.source.path.display().to_string(),
        pipeline_digest: pipeline_digest(pipeline),
        environment: pipeline.environment.clone(),
        selection,
        git,
        status: RunStatus::Running,
        started_at: chrono::Utc::now(),
        finished_at: None,
        stopped_by: None,
        stages: graph
            .stages
            .iter()
            .map(|s| StageRecord::pending(s.id.clone()))
            .collect(),
    }
}

/// Starts a new run of `request.pipeline` and runs it to its end.
pub async fn run(
    workspace: &Workspace,
    request: RunRequest,
    reporter: &dyn Reporter,
    stop: &Stop,
) -> Result<RunOutcome, AppError> {
    let secrets = run_secrets(&request.pipeline, &request.env);
    let guards = Guards::new(&secrets, workspace, reporter);
    guards.result(start_run(workspace, request, &guards, stop).await)
}

async fn start_run(
    workspace: &Workspace,
    request: RunRequest,
    guards: &Guards<'_>,
    stop: &Stop,
) -> Result<RunOutcome, AppError> {
    let RunRequest {
        pipeline,
        selection,
        env,
        run_id,
    } = request;
    let graph = StageGraph::from_pipeline(&pipeline);
    let participation = participation(&graph, &selection)?;
    refuse_unavailable(&workspace.executors, &pipeline, &participation)?;
    let run_id = match run_id {
        Some(run_id) if is_run_id(&run_id) => run_id,
        Some(run_id) => {
            return Err(AppError::invalid(format!("`{run_id}` is not a run id")));
        }
        None => new_run_id(chrono::Utc::now()),
    };
    let (values, git) = base_values(&pipeline, &run_id, &env).map_err(AppError::invalid)?;
    preflight(&pipeline, &graph, &values)
        .map_err(|problems| AppError::invalid(LoadError::Invalid(problems)))?;
    let aws = run_aws_identity(&pipeline, &values, &run_id, guards)?;
    check_deploy_targets(
        &workspace.executors,
        &pipeline,
        &graph,
        &participation,
        &with_image_placeholders(&values, &pipeline),
        &aws,
        &guards.reporter,
    )
    .await?;
    let mut record = new_record(&pipeline, &graph, &run_id, selection, git);
    guards.store.create(&mut record).await?;
    let _hold = guards.store.lock_run(&run_id).await?;
    let execution = Execution {
        workspace,
        guards,
        pipeline: &pipeline,
        graph: &graph,
        values,
        participation,
        aws,
    };
    execution.execute(record, false, stop).await
}

/// Runs every stage of `graph` as forced (never skipped: what `shipit down` removes or
/// `shipit rollback` returns to may have changed since any record) with a fresh history:
/// the runs of actions (down, rollback) that are not the pipeline's own graph.
#[allow(clippy::too_many_arguments)]
pub(super) async fn execute_action(
    workspace: &Workspace,
    guards: &Guards<'_>,
    pipeline: &Pipeline,
    graph: &StageGraph,
    values: Values,
    aws: AwsIdentity,
    record: RunRecord,
    stop: &Stop,
) -> RunOutcome {
    let participation: BTreeMap<_, _> = graph
        .stages
        .iter()
        .map(|s| (s.id.clone(), Participation::Forced))
        .collect();
    let runner = Runner {
        pipeline,
        graph,
        store: &guards.store,
        executors: &workspace.executors,
        reporter: &guards.reporter,
        values,
        history: History::default(),
        participation,
        stop: stop.clone(),
        aws,
    };
    runner.execute(record, false).await.into()
}

/// The run's AWS identity; a pipeline that names a role this CI job cannot assume is warned
/// about.
pub(super) fn run_aws_identity(
    pipeline: &Pipeline,
    values: &Values,
    run_id: &str,
    guards: &Guards<'_>,
) -> Result<AwsIdentity, AppError> {
    let (identity, warning) = aws_identity(pipeline, values, run_id)?;
    if let Some(message) = warning {
        guards.reporter.report(&Event::Warning { message });
    }
    Ok(identity)
}

/// Continues run `run_id` (the latest run when `None`) from its first unfinished stage.
pub async fn resume(
    workspace: &Workspace,
    pipeline: Pipeline,
    run_id: Option<&str>,
    env: EnvVars,
    reporter: &dyn Reporter,
    stop: &Stop,
) -> Result<ResumeOutcome, AppError> {
    let secrets = run_secrets(&pipeline, &env);
    let guards = Guards::new(&secrets, workspace, reporter);
    let resumed = continue_run(workspace, pipeline, run_id, env, &guards, stop)
        .await
        .map_err(|err| guards.error(err))?;
    Ok(match resumed {
        ResumeOutcome::Resumed(outcome) => {
            ResumeOutcome::Resumed(Box::new(guards.outcome(*outcome)))
        }
        done @ ResumeOutcome::AlreadySucceeded { .. } => done,
    })
}

async fn continue_run(
    workspace: &Workspace,
    pipeline: Pipeline,
    run_id: Option<&str>,
    env: EnvVars,
    guards: &Guards<'_>,
    stop: &Stop,
) -> Result<ResumeOutcome, AppError> {
    let graph = StageGraph::from_pipeline(&pipeline);
    let run_id = match run_id {
        Some(id) => id.to_owned(),
        None => latest_run_id(workspace).await?,
    };
    // Held before the record is read: no other process can change it until this one ends.
    let _hold = guards.store.lock_run(&run_id).await?;
    let mut record = guards.store.load(&run_id).await?;
    if record.status == RunStatus::Succeeded {
        return Ok(ResumeOutcome::AlreadySucceeded {
            run_id: record.run_id,
        });
    }
    let start_afresh =
        "start a new run with `shipit run`: it reuses every stage whose inputs are unchanged";
    if record.pipeline_digest != pipeline_digest(&pipeline) || record.pipeline != pipeline.file.name
    {
        return Err(AppError::invalid(format!(
            "the pipeline file (or --env) differs from the one run {} started with",
            record.run_id
        ))
        .with_hint(start_afresh));
    }
    let (values, git) = base_values(&pipeline, &record.run_id, &env).map_err(AppError::invalid)?;
    if git.sha != record.git.sha {
        return Err(AppError::invalid(format!(
            "the checkout moved from {} to {} since run {} started",
            record.git.sha.as_deref().unwrap_or("(no commit)"),
            git.sha.as_deref().unwrap_or("(no commit)"),
            record.run_id
        ))
        .with_hint(start_afresh));
    }
    let participation = participation(&graph, &record.selection)?;
    refuse_unavailable(&workspace.executors, &pipeline, &participation)?;
    let aws = run_aws_identity(&pipeline, &values, &record.run_id, guards)?;
    record.reopen_for_resume(chrono::Utc::now());
    let execution = Execution {
        workspace,
        guards,
        pipeline: &pipeline,
        graph: &graph,
        values,
        participation,
        aws,
    };
    let outcome = execution.execute(record, true, stop).await?;
    Ok(ResumeOutcome::Resumed(Box::new(outcome)))
}

async fn latest_run_id(workspace: &Workspace) -> Result<String, AppError> {
    match newest(workspace.store.list().await?) {
        Some(ListedRun::Readable(run)) => Ok(run.run_id),
        Some(ListedRun::Unreadable { error, .. }) => Err(error.into()),
        None => {
            Err(AppError::invalid("no runs recorded yet").with_hint("start one with `shipit run`"))
        }
    }
}

/// The run started last, from a list in id order. An id names the second its run started, then
/// a random part, so of two runs started in one second the last id is the newer only half the
/// time: among the runs of the last id's second, the latest start time wins (ties keep id
/// order; an unreadable run, whose start time is unknown, only when no readable one shares its
/// second).
fn newest(listed: Vec<ListedRun>) -> Option<ListedRun> {
    const SECOND: usize = "YYYYMMDD-HHMMSS".len();
    let second = |run: &ListedRun| run.run_id().get(..SECOND).map(str::to_owned);
    let last_second = second(listed.last()?);
    listed
        .into_iter()
        .filter(|run| second(run) == last_second)
        .max_by_key(|run| match run {
            ListedRun::Readable(summary) => Some(summary.started_at),
            ListedRun::Unreadable { .. } => None,
        })
}

/// Everything a run needs besides its record.
struct Execution<'a> {
    workspace: &'a Workspace,
    guards: &'a Guards<'a>,
    pipeline: &'a Pipeline,
    graph: &'a StageGraph,
    values: Values,
    participation: BTreeMap<StageId, Participation>,
    aws: AwsIdentity,
}

impl Execution<'_> {
    async fn execute(
        self,
        record: RunRecord,
        resumed: bool,
        stop: &Stop,
    ) -> Result<RunOutcome, AppError> {
        let store = &self.guards.store;
        let history = History::load(store, &self.pipeline.file.name, &record.run_id).await?;
        let runner = Runner {
            pipeline: self.pipeline,
            graph: self.graph,
            store,
            executors: &self.workspace.executors,
            reporter: &self.guards.reporter,
            values: self.values,
            history,
            participation: self.participation,
            stop: stop.clone(),
            aws: self.aws,
        };
        Ok(runner.execute(record, resumed).await.into())
    }
}

#[cfg(test)]
mod newest_tests {
    use super::*;
    use crate::journal::RunSummary;

    fn readable(run_id: &str, started_at: &str) -> ListedRun {
        let started_at = chrono::DateTime::parse_from_rfc3339(started_at)
            .unwrap()
            .with_timezone(&chrono::Utc);
        ListedRun::Readable(RunSummary {
            run_id: run_id.to_owned(),
            pipeline: "p".to_owned(),
            status: RunStatus::Succeeded,
            started_at,
            finished_at: None,
            git_sha: None,
            stages_done: 0,
            stages_total: 0,
            revision: 1,
        })
    }

    #[test]
    fn of_two_runs_in_one_second_the_later_start_is_newest_whatever_their_ids() {
        let listed = vec![
            readable(
                "20261201-075145-1111111111111111",
                "2026-12-01T07:51:45.900Z",
            ),
            readable(
                "20261201-075145-ffffffffffffffff",
                "2026-12-01T07:51:45.100Z",
            ),
        ];
        let newest = newest(listed).unwrap();
        assert_eq!(newest.run_id(), "20261201-075145-1111111111111111");
    }

    #[test]
    fn a_run_of_a_later_second_is_newest() {
        let listed = vec![
            readable(
                "20261201-075145-ffffffffffffffff",
                "2026-12-01T07:51:45.900Z",
            ),
            readable(
                "20261201-075146-0000000000000000",
                "2026-12-01T07:51:46.000Z",
            ),
        ];
        assert_eq!(
            newest(listed).unwrap().run_id(),
            "20261201-075146-0000000000000000"
        );
    }
}
