//! Journals a running stage's events the moment they happen and forwards them to the reporter.

use std::sync::Mutex;
use std::time::Duration;

use crate::journal::{JournalStore, RunRecord, StageStatus};
use crate::plan::StageId;
use crate::report::{Event, Reporter};
use crate::stages::{Outputs, StageFailure, StageSink};

use super::PreparedStage;

pub(super) struct JournalSink<'a> {
    pub id: &'a StageId,
    pub shared: &'a Mutex<RunRecord>,
    pub store: &'a dyn JournalStore,
    pub reporter: &'a dyn Reporter,
}

impl JournalSink<'_> {
    /// Applies `change` to the stage's record and saves the run; a failed save is returned.
    fn update<T>(
        &self,
        change: impl FnOnce(&mut crate::journal::StageRecord) -> T,
    ) -> Result<T, String> {
        let mut record = self.shared.lock().unwrap_or_else(|e| e.into_inner());
        let stage = record
            .stage_mut(self.id)
            .ok_or_else(|| format!("{} has no journal entry", self.id))?;
        let result = change(stage);
        self.store.save(&record).map_err(|e| e.to_string())?;
        Ok(result)
    }

    /// Marks the stage running; returns the outputs of an earlier attempt with the same inputs.
    pub fn start(&self, digest: String, reason: String, announce: bool) -> Outputs {
        let now = chrono::Utc::now();
        let result = self.update(|stage| {
            stage.mark_abandoned(now);
            // A success of this run whose outputs are gone (an image pruned before a resume)
            // is work to do again.
            stage.reopen();
            let _ = stage.start(digest, reason.clone(), now);
            (stage.outputs.clone(), stage.attempts)
        });
        let (previous, attempt) = result.unwrap_or_default();
        if announce {
            self.reporter.report(&Event::StageStarted {
                stage: self.id.clone(),
                attempt,
                reason,
            });
        }
        previous
    }

    pub fn skip(&self, prepared: &PreparedStage, reason: &str, reused_from: &str) {
        let _ = self.update(|stage| {
            let _ = stage.skip(
                Some(prepared.input_digest.clone()),
                reason.to_owned(),
                reused_from.to_owned(),
                prepared.reused_outputs.clone(),
            );
        });
        self.reporter.report(&Event::StageSkipped {
            stage: self.id.clone(),
            reason: reason.to_owned(),
        });
    }

    pub fn leave_out(&self) {
        let _ = self.update(|stage| {
            let _ = stage.leave_out();
        });
        self.reporter.report(&Event::StageSkipped {
            stage: self.id.clone(),
            reason: crate::journal::record::NOT_SELECTED.to_owned(),
        });
    }

    pub fn finish(&self, outcome: Result<(), StageFailure>, elapsed: Duration) -> StageStatus {
        let (status, error) = match &outcome {
            Ok(()) => (StageStatus::Succeeded, None),
            Err(failure) => (failure.status(), Some(failure.into())),
        };
        let saved = self.update(|stage| stage.finish(status, error, chrono::Utc::now()));
        let (status, message, hint) = match (saved, outcome) {
            (Ok(Ok(())), Ok(())) => (status, None, None),
            (Ok(Ok(())), Err(failure)) => (status, Some(failure.message), failure.hint),
            (Ok(Err(transition)), _) => (StageStatus::Failed, Some(transition.to_string()), None),
            (Err(journal), _) => (
                StageStatus::Failed,
                Some(format!("failed to write the journal: {journal}")),
                None,
            ),
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
}

impl StageSink for JournalSink<'_> {
    fn progress(&self, message: &str) {
        self.reporter.report(&Event::StageProgress {
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

    fn record_outputs(&self, outputs: Outputs) -> Result<(), StageFailure> {
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
        .map_err(|e| StageFailure::failed(format!("failed to write the journal: {e}")))?
        .map_err(|e| StageFailure::failed(e.to_string()))?;
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
