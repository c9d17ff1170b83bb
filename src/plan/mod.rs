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
    /// Not asked for, but a selected stage needs it: its outputs come from the journal.
    NotSelected,
    /// Not asked for and nothing selected needs it: not part of this run.
    Excluded,
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
        // The stages asked for: everything, the --only list, or --from and what follows it.
        let asked: BTreeSet<StageId> = match (&selection.from, selection.only.is_empty()) {
            (Some(from), _) => {
                let mut set = self.downstream_of(from);
                set.insert(from.clone());
                set
            }
            (None, false) => selection.only.iter().cloned().collect(),
            (None, true) => self.stages.iter().map(|s| s.id.clone()).collect(),
        };
        let needed: BTreeSet<StageId> = asked.iter().flat_map(|id| self.upstream_of(id)).collect();
        let forced = selection.force || selection.from.is_some();
        Ok(self
            .stages
            .iter()
            .map(|stage| {
                let id = stage.id.clone();
                let participation = match (asked.contains(&id), needed.contains(&id)) {
                    (true, _) if forced => Participation::Forced,
                    (true, _) => Participation::Selected,
                    (false, true) => Participation::NotSelected,
                    (false, false) => Participation::Excluded,
                };
                (id, participation)
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use graph::StageNode;

    /// build:a → push:a → deploy:a, and build:b on its own.
    fn graph() -> StageGraph {
        let node = |id: StageId, needs: Vec<StageId>| StageNode { id, needs };
        StageGraph {
            stages: vec![
                node(StageId::build("a"), vec![]),
                node(StageId::build("b"), vec![]),
                node(StageId::push("a"), vec![StageId::build("a")]),
                node(StageId::deploy("a"), vec![StageId::push("a")]),
            ],
        }
    }

    fn of(selection: Selection) -> BTreeMap<String, Participation> {
        graph()
            .participation(&selection)
            .unwrap()
            .into_iter()
            .map(|(id, p)| (id.to_string(), p))
            .collect()
    }

    use std::collections::BTreeMap;

    #[test]
    fn everything_is_selected_by_default_and_forced_with_force() {
        assert!(
            of(Selection::default())
                .values()
                .all(|p| *p == Participation::Selected)
        );
        assert!(
            of(Selection {
                force: true,
                ..Selection::default()
            })
            .values()
            .all(|p| *p == Participation::Forced)
        );
    }

    #[test]
    fn only_reuses_what_the_stage_needs_and_leaves_the_rest_out() {
        let p = of(Selection {
            only: vec![StageId::deploy("a")],
            ..Selection::default()
        });
        assert_eq!(p["deploy:a"], Participation::Selected);
        assert_eq!(p["push:a"], Participation::NotSelected);
        assert_eq!(p["build:a"], Participation::NotSelected);
        assert_eq!(p["build:b"], Participation::Excluded);
    }

    #[test]
    fn from_forces_the_stage_and_what_follows() {
        let p = of(Selection {
            from: Some(StageId::push("a")),
            ..Selection::default()
        });
        assert_eq!(p["push:a"], Participation::Forced);
        assert_eq!(p["deploy:a"], Participation::Forced);
        assert_eq!(p["build:a"], Participation::NotSelected);
        assert_eq!(p["build:b"], Participation::Excluded);
    }

    #[test]
    fn unknown_stages_and_only_with_from_are_refused() {
        let unknown = graph().participation(&Selection {
            only: vec![StageId::build("zz")],
            ..Selection::default()
        });
        assert!(matches!(unknown, Err(SelectionError::UnknownStage { .. })));
        let both = Selection {
            only: vec![StageId::build("a")],
            from: Some(StageId::build("b")),
            force: false,
        };
        assert_eq!(
            graph().participation(&both),
            Err(SelectionError::OnlyAndFrom)
        );
    }
}
