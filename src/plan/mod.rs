//! What a run will do: the stage graph, the stages a command line selects, and the decision to
//! run or skip each one.

pub mod decide;
pub mod graph;
pub mod stage_id;

use std::collections::BTreeSet;

pub use decide::{Decision, StageHistory, decide};
pub use graph::StageGraph;
pub use stage_id::{StageId, StageKind};

/// The stages a command line asks for.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Selection {
    /// `--only STAGE` (repeatable): run just these.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub only: Vec<StageId>,
    /// `--from STAGE`: run this stage and everything after it, even if unchanged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<StageId>,
    /// `--force`: run every selected stage, even if unchanged.
    #[serde(default)]
    pub force: bool,
}

/// How one stage takes part in a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Participation {
    /// Decide from its inputs whether to run it.
    Selected,
    /// Run it whatever the journal says.
    Forced,
    /// Not asked for: its outputs come from the journal.
    NotSelected,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectionError {
    #[error("the pipeline has no stage `{stage}`; its stages are: {known}")]
    UnknownStage { stage: StageId, known: String },
    #[error("--only and --from cannot be combined")]
    OnlyAndFrom,
}

impl StageGraph {
    pub fn participation(
        &self,
        selection: &Selection,
    ) -> Result<Vec<(StageId, Participation)>, SelectionError> {
        let known = || {
            self.stages
                .iter()
                .map(|s| s.id.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        };
        for stage in selection.only.iter().chain(&selection.from) {
            if !self.contains(stage) {
                return Err(SelectionError::UnknownStage {
                    stage: stage.clone(),
                    known: known(),
                });
            }
        }
        if !selection.only.is_empty() && selection.from.is_some() {
            return Err(SelectionError::OnlyAndFrom);
        }
        let from_set: Option<BTreeSet<StageId>> = selection.from.as_ref().map(|from| {
            let mut set = self.downstream_of(from);
            set.insert(from.clone());
            set
        });
        Ok(self
            .stages
            .iter()
            .map(|stage| {
                let id = stage.id.clone();
                let participation = if let Some(set) = &from_set {
                    if set.contains(&id) {
                        Participation::Forced
                    } else {
                        Participation::NotSelected
                    }
                } else if !selection.only.is_empty() && !selection.only.contains(&id) {
                    Participation::NotSelected
                } else if selection.force {
                    Participation::Forced
                } else {
                    Participation::Selected
                };
                (id, participation)
            })
            .collect())
    }
}
