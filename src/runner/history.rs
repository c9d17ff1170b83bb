//! Earlier successes of each stage, from every recorded run of the pipeline, for the skip
//! decision.

use std::collections::BTreeMap;

use crate::journal::{JournalError, RunStore, StageStatus};
use crate::plan::StageId;
use crate::stages::Outputs;

#[derive(Debug, Clone)]
pub struct Candidate {
    /// The run that actually did the work (a skipped record points at the run it reused).
    pub run_id: String,
    pub outputs: Outputs,
}

#[derive(Debug, Clone, Default)]
pub struct History {
    /// Per stage: (input digest, candidate), newest first.
    successes: BTreeMap<StageId, Vec<(String, Candidate)>>,
}

impl History {
    /// Reads every readable record of `pipeline` except `current_run`'s. Damaged journals are
    /// passed over (`shipit runs` reports them); a store that cannot be read at all is an
    /// error, since skipping on a partial history could redo or reuse the wrong work.
    pub async fn load(
        store: &dyn RunStore,
        pipeline: &str,
        current_run: &str,
    ) -> Result<Self, JournalError> {
        let mut history = History::default();
        for run in store.runs_of(pipeline).await? {
            if run.run_id == current_run {
                continue;
            }
            for stage in run.stages {
                let done = matches!(stage.status, StageStatus::Succeeded | StageStatus::Skipped);
                let (true, Some(digest)) = (done, stage.input_digest) else {
                    continue;
                };
                let run_id = stage.reused_from.unwrap_or_else(|| run.run_id.clone());
                history.successes.entry(stage.stage).or_default().push((
                    digest,
                    Candidate {
                        run_id,
                        outputs: stage.outputs,
                    },
                ));
            }
        }
        Ok(history)
    }

    pub fn same_inputs(&self, stage: &StageId, digest: &str) -> Option<Candidate> {
        self.successes
            .get(stage)?
            .iter()
            .find(|(d, _)| d == digest)
            .map(|(_, c)| c.clone())
    }

    pub fn latest_success(&self, stage: &StageId) -> Option<String> {
        self.successes
            .get(stage)?
            .first()
            .map(|(_, c)| c.run_id.clone())
    }
}
