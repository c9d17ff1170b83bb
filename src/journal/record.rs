//! What the journal holds for one run, and the legal ways a stage's record changes.
//! Transitions are pure functions over the record; the store persists after each one.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::plan::{Selection, StageId};

/// The reason recorded for a stage a selection left out.
pub const NOT_SELECTED: &str = "not selected";

/// Bumped when the journal's shape changes incompatibly.
pub const JOURNAL_FORMAT: u32 = 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StageStatus {
    /// Not started yet.
    Pending,
    /// Started and not finished. A journal that still says `running` after its process died
    /// belongs to an interrupted run: `shipit resume` picks it up.
    Running,
    Succeeded,
    /// Not run: unchanged, or not selected; `reused_from` names the run whose outputs it reuses.
    Skipped,
    Failed,
    /// A deploy that failed and was rolled back to the previous version.
    RolledBack,
    /// A deploy that was not healthy before its deadline.
    TimedOut,
    /// Stopped by Ctrl-C / SIGTERM.
    Interrupted,
    /// Not run because a stage it needs did not succeed.
    Blocked,
}

impl StageStatus {
    pub fn is_success(self) -> bool {
        matches!(self, StageStatus::Succeeded | StageStatus::Skipped)
    }

    /// Finished without success: the run cannot complete until the stage is run again.
    pub fn is_failure(self) -> bool {
        matches!(
            self,
            StageStatus::Failed | StageStatus::RolledBack | StageStatus::TimedOut
        )
    }

    pub fn as_str(self) -> &'static str {
        match self {
            StageStatus::Pending => "pending",
            StageStatus::Running => "running",
            StageStatus::Succeeded => "succeeded",
            StageStatus::Skipped => "skipped",
            StageStatus::Failed => "failed",
            StageStatus::RolledBack => "rolled_back",
            StageStatus::TimedOut => "timed_out",
            StageStatus::Interrupted => "interrupted",
            StageStatus::Blocked => "blocked",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    Running,
    Succeeded,
    Failed,
    RolledBack,
    TimedOut,
    Interrupted,
}

impl RunStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Running => "running",
            RunStatus::Succeeded => "succeeded",
            RunStatus::Failed => "failed",
            RunStatus::RolledBack => "rolled_back",
            RunStatus::TimedOut => "timed_out",
            RunStatus::Interrupted => "interrupted",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StageError {
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StageRecord {
    pub stage: StageId,
    pub status: StageStatus,
    /// Hash of everything the stage depends on; equal digests mean equal work.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_digest: Option<String>,
    pub attempts: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<DateTime<Utc>>,
    /// Why the stage ran or was skipped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// For a skipped stage: the run whose outputs are reused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reused_from: Option<String>,
    /// Outputs, each recorded the moment it exists (image id, digest, deployment id…).
    #[serde(default)]
    pub outputs: BTreeMap<String, serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<StageError>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("stage {stage}: cannot go from {from} to {to}")]
pub struct TransitionError {
    pub stage: StageId,
    pub from: &'static str,
    pub to: &'static str,
}

impl StageRecord {
    pub fn pending(stage: StageId) -> Self {
        StageRecord {
            stage,
            status: StageStatus::Pending,
            input_digest: None,
            attempts: 0,
            started_at: None,
            finished_at: None,
            reason: None,
            reused_from: None,
            outputs: BTreeMap::new(),
            error: None,
        }
    }

    fn refuse(&self, to: StageStatus) -> TransitionError {
        TransitionError {
            stage: self.stage.clone(),
            from: self.status.as_str(),
            to: to.as_str(),
        }
    }

    /// Pending, or an unfinished/failed earlier attempt, → Running. Outputs of an earlier attempt
    /// are kept: a deploy stage re-attaches to the deployment it recorded.
    pub fn start(
        &mut self,
        input_digest: String,
        reason: String,
        now: DateTime<Utc>,
    ) -> Result<(), TransitionError> {
        match self.status {
            StageStatus::Succeeded | StageStatus::Skipped => {
                return Err(self.refuse(StageStatus::Running));
            }
            _ => {}
        }
        if self.input_digest.as_deref() != Some(input_digest.as_str()) {
            // Outputs of an attempt with other inputs describe other work.
            self.outputs.clear();
        }
        self.status = StageStatus::Running;
        self.input_digest = Some(input_digest);
        self.attempts += 1;
        self.started_at = Some(now);
        self.finished_at = None;
        self.reason = Some(reason);
        self.reused_from = None;
        self.error = None;
        Ok(())
    }

    pub fn record_output(
        &mut self,
        key: &str,
        value: serde_json::Value,
    ) -> Result<(), TransitionError> {
        if self.status != StageStatus::Running {
            return Err(self.refuse(self.status));
        }
        self.outputs.insert(key.to_owned(), value);
        Ok(())
    }

    /// Running → a final status.
    pub fn finish(
        &mut self,
        status: StageStatus,
        error: Option<StageError>,
        now: DateTime<Utc>,
    ) -> Result<(), TransitionError> {
        let allowed = matches!(
            status,
            StageStatus::Succeeded
                | StageStatus::Failed
                | StageStatus::RolledBack
                | StageStatus::TimedOut
                | StageStatus::Interrupted
        );
        if self.status != StageStatus::Running || !allowed {
            return Err(self.refuse(status));
        }
        self.status = status;
        self.error = error;
        self.finished_at = Some(now);
        Ok(())
    }

    /// Not run, reusing the outputs of an earlier success.
    pub fn skip(
        &mut self,
        input_digest: Option<String>,
        reason: String,
        reused_from: String,
        outputs: BTreeMap<String, serde_json::Value>,
    ) -> Result<(), TransitionError> {
        if self.status == StageStatus::Running {
            return Err(self.refuse(StageStatus::Skipped));
        }
        self.status = StageStatus::Skipped;
        self.input_digest = input_digest;
        self.reason = Some(reason);
        self.reused_from = Some(reused_from);
        self.outputs = outputs;
        self.error = None;
        Ok(())
    }

    /// Not part of this run (`--only` / `--from` left it out and nothing selected needs it).
    pub fn leave_out(&mut self) -> Result<(), TransitionError> {
        if self.status == StageStatus::Running {
            return Err(self.refuse(StageStatus::Skipped));
        }
        self.status = StageStatus::Skipped;
        self.reason = Some(NOT_SELECTED.to_owned());
        self.input_digest = None;
        self.reused_from = None;
        self.outputs.clear();
        Ok(())
    }

    /// Not run because `upstream` did not succeed.
    pub fn block(&mut self, upstream: &StageId) -> Result<(), TransitionError> {
        if self.status == StageStatus::Running || self.status.is_success() {
            return Err(self.refuse(StageStatus::Blocked));
        }
        self.status = StageStatus::Blocked;
        self.reason = Some(format!("{upstream} did not succeed"));
        Ok(())
    }

    /// A success whose outputs no longer exist becomes pending again, forgetting them.
    pub fn reopen(&mut self) {
        if self.status.is_success() {
            self.status = StageStatus::Pending;
            self.outputs.clear();
            self.reused_from = None;
        }
    }

    /// Blocked (a stage it needed did not succeed) → pending again, for a resumed run.
    pub fn unblock(&mut self) {
        if self.status == StageStatus::Blocked {
            self.status = StageStatus::Pending;
            self.reason = None;
        }
    }

    /// A record left `running` by a process that died is an interrupted attempt.
    pub fn mark_abandoned(&mut self, now: DateTime<Utc>) {
        if self.status == StageStatus::Running {
            self.status = StageStatus::Interrupted;
            self.finished_at = Some(now);
            self.error = Some(StageError {
                message: "the shipit process stopped while this stage ran".into(),
                hint: None,
            });
        }
    }
}

/// What stopped an interrupted run: the exit code it ends with (130 or 143) follows from it, so
/// `shipit show` says the same code as the run that was stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StopCause {
    /// Ctrl-C (SIGINT).
    Interrupt,
    /// SIGTERM: a CI job cancelled, a container stopped.
    Terminate,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GitSnapshot {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branch: Option<String>,
    #[serde(default)]
    pub dirty: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    pub format: u32,
    /// How many times a `RunStore` has written this record: 1 after `create`, one more after
    /// each `save`. A save is refused unless the stored revision is the one the writer read.
    /// Journals written before revisions existed load as revision 0.
    #[serde(default)]
    pub revision: u64,
    pub run_id: String,
    pub pipeline: String,
    /// The pipeline file, as given on the command line.
    pub pipeline_file: String,
    /// Digest of the pipeline file's text: a resumed run refuses a changed file.
    pub pipeline_digest: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment: Option<String>,
    pub selection: Selection,
    pub git: GitSnapshot,
    pub status: RunStatus,
    pub started_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<DateTime<Utc>>,
    /// For an interrupted run: what stopped it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stopped_by: Option<StopCause>,
    /// Stages in execution order.
    pub stages: Vec<StageRecord>,
}

impl RunRecord {
    pub fn stage(&self, id: &StageId) -> Option<&StageRecord> {
        self.stages.iter().find(|s| &s.stage == id)
    }

    pub fn stage_mut(&mut self, id: &StageId) -> Option<&mut StageRecord> {
        self.stages.iter_mut().find(|s| &s.stage == id)
    }

    /// Reopens an unfinished run for `shipit resume`: a stage left running by a process that
    /// died becomes an interrupted attempt, blocked stages become pending, and the run is
    /// running again. Finished stages keep their records: they are not redone.
    pub fn reopen_for_resume(&mut self, now: DateTime<Utc>) {
        for stage in &mut self.stages {
            stage.mark_abandoned(now);
            stage.unblock();
        }
        self.status = RunStatus::Running;
        self.finished_at = None;
        self.stopped_by = None;
    }

    /// The run's status from its stages' statuses: the most serious outcome wins.
    pub fn derive_status(&self) -> RunStatus {
        let has = |status: StageStatus| self.stages.iter().any(|s| s.status == status);
        if has(StageStatus::Interrupted) || has(StageStatus::Running) {
            RunStatus::Interrupted
        } else if has(StageStatus::Failed) {
            RunStatus::Failed
        } else if has(StageStatus::RolledBack) {
            RunStatus::RolledBack
        } else if has(StageStatus::TimedOut) {
            RunStatus::TimedOut
        } else if self.stages.iter().all(|s| s.status.is_success()) {
            RunStatus::Succeeded
        } else {
            RunStatus::Failed
        }
    }
}

#[cfg(test)]
impl RunRecord {
    /// A running run of `pipeline` with `stages`, started 2026-01-01T00:00:00Z outside any git
    /// checkout, not yet in a store (revision 0): the fixture every test module starts from,
    /// setting after it only the fields it is about.
    pub(crate) fn for_test(run_id: &str, pipeline: &str, stages: Vec<StageRecord>) -> Self {
        RunRecord {
            format: JOURNAL_FORMAT,
            revision: 0,
            run_id: run_id.into(),
            pipeline: pipeline.into(),
            pipeline_file: "shipit.yaml".into(),
            pipeline_digest: "d".into(),
            environment: None,
            selection: Selection::default(),
            git: GitSnapshot {
                sha: None,
                branch: None,
                dirty: false,
            },
            status: RunStatus::Running,
            started_at: DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
                .expect("a valid time")
                .with_timezone(&Utc),
            finished_at: None,
            stopped_by: None,
            stages,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    fn stage() -> StageRecord {
        StageRecord::pending(StageId::build("web"))
    }

    /// A running run with `stages`.
    fn run_of(stages: Vec<StageRecord>) -> RunRecord {
        RunRecord::for_test("r", "p", stages)
    }

    #[test]
    fn a_stage_runs_records_outputs_and_succeeds() {
        let mut s = stage();
        s.start("d1".into(), "no earlier success".into(), now())
            .unwrap();
        s.record_output("image_id", "sha256:abc".into()).unwrap();
        s.finish(StageStatus::Succeeded, None, now()).unwrap();
        assert_eq!(s.status, StageStatus::Succeeded);
        assert_eq!(s.attempts, 1);
        assert_eq!(s.outputs["image_id"], "sha256:abc");
    }

    #[test]
    fn outputs_can_only_be_recorded_while_running() {
        let mut s = stage();
        assert!(s.record_output("x", 1.into()).is_err());
    }

    #[test]
    fn a_finished_success_cannot_start_again() {
        let mut s = stage();
        s.start("d1".into(), "r".into(), now()).unwrap();
        s.finish(StageStatus::Succeeded, None, now()).unwrap();
        assert!(s.start("d1".into(), "r".into(), now()).is_err());
    }

    #[test]
    fn a_retry_with_the_same_inputs_keeps_earlier_outputs_for_reattaching() {
        let mut s = StageRecord::pending(StageId::deploy("web"));
        s.start("d1".into(), "r".into(), now()).unwrap();
        s.record_output("deployment_id", "ecs-svc/1".into())
            .unwrap();
        s.mark_abandoned(now());
        assert_eq!(s.status, StageStatus::Interrupted);
        s.start("d1".into(), "resume".into(), now()).unwrap();
        assert_eq!(s.attempts, 2);
        assert_eq!(s.outputs["deployment_id"], "ecs-svc/1");
    }

    #[test]
    fn a_retry_with_other_inputs_forgets_earlier_outputs() {
        let mut s = stage();
        s.start("d1".into(), "r".into(), now()).unwrap();
        s.record_output("image_id", "a".into()).unwrap();
        s.finish(StageStatus::Failed, None, now()).unwrap();
        s.start("d2".into(), "r".into(), now()).unwrap();
        assert!(s.outputs.is_empty());
    }

    #[test]
    fn a_reopened_success_can_run_again_without_its_old_outputs() {
        let mut s = stage();
        s.start("d1".into(), "r".into(), now()).unwrap();
        s.record_output("image_id", "gone".into()).unwrap();
        s.finish(StageStatus::Succeeded, None, now()).unwrap();
        s.reopen();
        s.start("d1".into(), "outputs are gone".into(), now())
            .unwrap();
        assert_eq!(s.attempts, 2);
        assert!(s.outputs.is_empty());
    }

    #[test]
    fn only_final_statuses_finish_a_stage() {
        let mut s = stage();
        s.start("d1".into(), "r".into(), now()).unwrap();
        assert!(s.finish(StageStatus::Pending, None, now()).is_err());
        assert!(s.finish(StageStatus::Skipped, None, now()).is_err());
        assert!(s.finish(StageStatus::RolledBack, None, now()).is_ok());
    }

    #[test]
    fn a_running_stage_cannot_be_skipped_or_blocked() {
        let mut s = stage();
        s.start("d1".into(), "r".into(), now()).unwrap();
        assert!(
            s.skip(None, "x".into(), "r0".into(), BTreeMap::new())
                .is_err()
        );
        assert!(s.block(&StageId::build("x")).is_err());
    }

    #[test]
    fn the_run_status_is_the_most_serious_stage_outcome() {
        let mut run = run_of(vec![stage(), StageRecord::pending(StageId::deploy("web"))]);
        run.stages[0].status = StageStatus::Succeeded;
        run.stages[1].status = StageStatus::RolledBack;
        assert_eq!(run.derive_status(), RunStatus::RolledBack);
        run.stages[1].status = StageStatus::TimedOut;
        assert_eq!(run.derive_status(), RunStatus::TimedOut);
        run.stages[1].status = StageStatus::Running;
        assert_eq!(run.derive_status(), RunStatus::Interrupted);
        run.stages[1].status = StageStatus::Skipped;
        assert_eq!(run.derive_status(), RunStatus::Succeeded);
    }

    #[test]
    fn a_resumed_run_reopens_abandoned_and_blocked_stages_and_keeps_finished_ones() {
        let mut run = run_of(vec![
            stage(),
            StageRecord::pending(StageId::push("web")),
            StageRecord::pending(StageId::deploy("web")),
        ]);
        run.status = RunStatus::Interrupted;
        run.finished_at = Some(now());
        run.stopped_by = Some(StopCause::Terminate);
        run.stages[0].start("d".into(), "r".into(), now()).unwrap();
        run.stages[0]
            .finish(StageStatus::Succeeded, None, now())
            .unwrap();
        run.stages[1].start("d".into(), "r".into(), now()).unwrap();
        run.stages[2].block(&StageId::push("web")).unwrap();
        run.reopen_for_resume(now());
        assert_eq!(run.stages[0].status, StageStatus::Succeeded);
        assert_eq!(run.stages[1].status, StageStatus::Interrupted);
        assert_eq!(run.stages[2].status, StageStatus::Pending);
        assert_eq!(run.stages[2].reason, None);
        assert_eq!(run.status, RunStatus::Running);
        assert_eq!((run.finished_at, run.stopped_by), (None, None));
    }
}
