//! Journals a running stage's events the moment they happen and forwards them to the reporter.
//!
//! Every change to the stage's record is saved before the caller goes on, and a change that
//! cannot be saved is an error the caller acts on: a stage whose "running" record cannot be
//! written does not start (a resume could otherwise redo a deploy it never knew about), and
//! outputs that cannot be journaled fail the stage.

use std::time::{Duration, Instant};

use async_trait::async_trait;
use tokio::sync::Mutex;

use crate::journal::{JournalError, RunRecord, RunStore, StageRecord, StageStatus};
use crate::plan::StageId;
use crate::report::{Event, Reporter};
use crate::stages::{Outputs, StageFailure, StageSink};

use super::PreparedStage;

pub(super) struct JournalSink<'a> {
    pub id: &'a StageId,
    pub shared: &'a Mutex<RunRecord>,
    pub store: &'a dyn RunStore,
    pub reporter: &'a dyn Reporter,
}

/// Why a stage's record could not be changed.
#[derive(Debug, thiserror::Error)]
pub(super) enum RecordError {
    #[error("{0}")]
    Journal(#[from] JournalError),
    #[error("{0}")]
    Transition(#[from] crate::journal::record::TransitionError),
    #[error("{stage} has no journal entry")]
    Missing { stage: StageId },
}

impl From<RecordError> for StageFailure {
    fn from(err: RecordError) -> Self {
        StageFailure::failed(err.to_string()).with_hint(
            "the journal must be writable for shipit to run a stage: free space or fix the \
             state directory's permissions, then `shipit resume`",
        )
    }
}

impl JournalSink<'_> {
    /// Applies `change` to the stage's record and saves the run. A failed save undoes the
    /// change in memory too, so the record the run goes on with is the one on disk.
    async fn update<T>(
        &self,
        change: impl FnOnce(&mut StageRecord) -> Result<T, crate::journal::record::TransitionError>,
    ) -> Result<T, RecordError> {
        let mut record = self.shared.lock().await;
        let before = record.clone();
        let stage = record
            .stage_mut(self.id)
            .ok_or_else(|| RecordError::Missing {
                stage: self.id.clone(),
            })?;
        let result = change(stage)?;
        if let Err(err) = self.store.save(&mut record).await {
            *record = before;
            return Err(err.into());
        }
        Ok(result)
    }

    /// Marks the stage running; returns the outputs of an earlier attempt with the same inputs.
    /// An error means the stage must not start.
    pub async fn start(
        &self,
        digest: String,
        reason: String,
        announce: bool,
    ) -> Result<Outputs, RecordError> {
        let now = chrono::Utc::now();
        let (previous, attempt) = self
            .update(|stage| {
                stage.mark_abandoned(now);
                // A success of this run whose outputs are gone (an image pruned before a
                // resume) is work to do again.
                stage.reopen();
                stage.start(digest, reason.clone(), now)?;
                Ok((stage.outputs.clone(), stage.attempts))
            })
            .await?;
        if announce {
            self.reporter.report(&Event::StageStarted {
                stage: self.id.clone(),
                attempt,
                reason,
            });
        }
        Ok(previous)
    }

    pub async fn skip(
        &self,
        prepared: &PreparedStage,
        reason: &str,
        reused_from: &str,
    ) -> Result<(), RecordError> {
        self.update(|stage| {
            stage.skip(
                Some(prepared.input_digest.clone()),
                reason.to_owned(),
                reused_from.to_owned(),
                prepared.reused_outputs.clone(),
            )
        })
        .await?;
        self.reporter.report(&Event::StageSkipped {
            stage: self.id.clone(),
            reason: reason.to_owned(),
        });
        Ok(())
    }

    pub async fn leave_out(&self) -> Result<(), RecordError> {
        self.update(|stage| stage.leave_out()).await?;
        self.reporter.report(&Event::StageSkipped {
            stage: self.id.clone(),
            reason: crate::journal::record::NOT_SELECTED.to_owned(),
        });
        Ok(())
    }

    /// Records the stage's end. A stage whose end cannot be journaled has failed, whatever it
    /// did: the status returned (and reported) says so.
    pub async fn finish(
        &self,
        outcome: Result<(), StageFailure>,
        elapsed: Duration,
    ) -> StageStatus {
        let (status, error) = match &outcome {
            Ok(()) => (StageStatus::Succeeded, None),
            Err(failure) => (failure.status(), Some(failure.into())),
        };
        let saved = self
            .update(|stage| stage.finish(status, error, chrono::Utc::now()))
            .await;
        let (status, message, hint) = match (saved, outcome) {
            (Ok(()), Ok(())) => (status, None, None),
            (Ok(()), Err(failure)) => (status, Some(failure.message), failure.hint),
            (Err(err), _) => {
                let failure = StageFailure::from(err);
                (StageStatus::Failed, Some(failure.message), failure.hint)
            }
        };
        self.reporter.report(&Event::StageFinished {
            stage: self.id.clone(),
            status,
            elapsed,
            error: message,
            hint,
        });
        status
    }

    /// Records a stage that failed before its work began (it could not be prepared, or its
    /// target could not be held): started, then failed, so the journal says why.
    pub async fn fail_unstarted(
        &self,
        digest: String,
        reason: String,
        failure: StageFailure,
        started: Instant,
    ) -> StageStatus {
        if let Err(err) = self.start(digest, reason, false).await {
            return self.report_unjournaled(err, started.elapsed());
        }
        self.finish(Err(failure), started.elapsed()).await
    }

    /// Reports a stage that could not be journaled as failed, without touching the journal.
    pub fn report_unjournaled(&self, err: RecordError, elapsed: Duration) -> StageStatus {
        let failure = StageFailure::from(err);
        self.reporter.report(&Event::StageFinished {
            stage: self.id.clone(),
            status: StageStatus::Failed,
            elapsed,
            error: Some(failure.message),
            hint: failure.hint,
        });
        StageStatus::Failed
    }
}

#[async_trait]
impl StageSink for JournalSink<'_> {
    fn progress(&self, message: &str) {
        self.reporter.report(&Event::StageProgress {
            stage: self.id.clone(),
            message: message.to_owned(),
        });
    }

    fn change(&self, message: &str) {
        self.reporter.report(&Event::StageChange {
            stage: self.id.clone(),
            message: message.to_owned(),
        });
    }

    fn log(&self, line: &str) {
        self.reporter.report(&Event::StageLog {
            stage: self.id.clone(),
            line: line.to_owned(),
        });
    }

    async fn record_outputs(&self, outputs: Outputs) -> Result<(), StageFailure> {
        let shown: Vec<(String, String)> = outputs
            .iter()
            .map(|(key, value)| {
                let shown = match value {
                    serde_json::Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                (key.clone(), shown)
            })
            .collect();
        self.update(|stage| {
            outputs
                .into_iter()
                .try_for_each(|(key, value)| stage.record_output(&key, value))
        })
        .await?;
        for (key, value) in shown {
            self.reporter.report(&Event::StageOutput {
                stage: self.id.clone(),
                key,
                value,
            });
        }
        Ok(())
    }
}
