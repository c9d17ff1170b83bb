//! Deploy target kinds the pipeline file accepts but this build of shipit cannot deploy yet:
//! `validate` and `plan` say so, and a run that selects one is refused before anything starts
//! (rather than failing after a ten-minute build).

use std::collections::BTreeMap;
use std::fmt;

use crate::pipeline::Pipeline;
use crate::plan::{Participation, StageId};
use crate::stages::{Executors, unavailable_message};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnavailableTarget {
    pub target: String,
    pub kind: &'static str,
}

impl UnavailableTarget {
    pub fn stage(&self) -> StageId {
        StageId::deploy(&self.target)
    }
}

impl fmt::Display for UnavailableTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "deploy.{}: {}",
            self.target,
            unavailable_message(self.kind)
        )
    }
}

/// Every deploy target of `pipeline` whose kind this build cannot deploy.
pub fn unavailable_targets(executors: &Executors, pipeline: &Pipeline) -> Vec<UnavailableTarget> {
    pipeline
        .file
        .deploy
        .iter()
        .filter(|(_, target)| executors.for_target(&target.kind).is_none())
        .map(|(name, target)| UnavailableTarget {
            target: name.clone(),
            kind: target.kind.key(),
        })
        .collect()
}

/// Refuses a run in which an unavailable target would take part.
pub(super) fn refuse_unavailable(
    executors: &Executors,
    pipeline: &Pipeline,
    participation: &BTreeMap<StageId, Participation>,
) -> Result<(), super::AppError> {
    let selected: Vec<UnavailableTarget> = unavailable_targets(executors, pipeline)
        .into_iter()
        .filter(|u| participation.get(&u.stage()) != Some(&Participation::Excluded))
        .collect();
    if selected.is_empty() {
        return Ok(());
    }
    let message = selected
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n");
    let runnable: Vec<String> = participation
        .keys()
        .filter(|stage| !selected.iter().any(|u| &u.stage() == *stage))
        .map(|stage| format!("--only {stage}"))
        .collect();
    let hint = if runnable.is_empty() {
        "nothing else in this pipeline can run; `shipit plan` shows what it would do".to_owned()
    } else {
        format!("run the other stages with {}", runnable.join(" "))
    };
    Err(super::AppError::invalid(message).with_hint(hint))
}
