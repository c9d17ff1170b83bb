//! The one place that decides whether a stage runs or is skipped, and says why.

use serde::{Deserialize, Serialize};

/// What is known about earlier attempts of a stage, gathered from the journal and, for the
/// output check, from the system the outputs live in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StageHistory {
    /// This run already finished the stage (a resumed run).
    pub done_in_this_run: bool,
    /// The latest success with the same input digest, in any run, and whether its outputs still
    /// exist (`None` when they were not checked).
    pub same_inputs: Option<PriorSuccess>,
    /// The latest success with any input digest.
    pub latest_success_run: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PriorSuccess {
    pub run_id: String,
    pub outputs_exist: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "decision", rename_all = "snake_case")]
pub enum Decision {
    Run { reason: String },
    Skip { reason: String, reused_from: String },
}

impl Decision {
    pub fn is_skip(&self) -> bool {
        matches!(self, Decision::Skip { .. })
    }

    pub fn reason(&self) -> &str {
        match self {
            Decision::Run { reason } | Decision::Skip { reason, .. } => reason,
        }
    }
}

/// Decides whether a stage runs.
///
/// A stage is skipped only when a success with exactly the same input digest is on record *and*
/// its outputs still exist: an image pruned from the daemon or a manifest deleted from the
/// registry means the work must be done again, whatever the journal says.
pub fn decide(history: &StageHistory, forced: bool, current_run: &str) -> Decision {
    if forced {
        return Decision::Run {
            reason: "forced".into(),
        };
    }
    match (&history.same_inputs, history.done_in_this_run) {
        (Some(prior), true) if prior.outputs_exist => Decision::Skip {
            reason: "already done in this run".into(),
            reused_from: current_run.to_owned(),
        },
        (Some(prior), _) if prior.outputs_exist => Decision::Skip {
            reason: format!("unchanged since run {}", prior.run_id),
            reused_from: prior.run_id.clone(),
        },
        (Some(prior), _) => Decision::Run {
            reason: format!(
                "inputs unchanged since run {}, but its outputs are gone",
                prior.run_id
            ),
        },
        (None, _) => match &history.latest_success_run {
            Some(run) => Decision::Run {
                reason: format!("inputs changed since run {run}"),
            },
            None => Decision::Run {
                reason: "no earlier success".into(),
            },
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn history(same: Option<(&str, bool)>, latest: Option<&str>, done: bool) -> StageHistory {
        StageHistory {
            done_in_this_run: done,
            same_inputs: same.map(|(run_id, outputs_exist)| PriorSuccess {
                run_id: run_id.into(),
                outputs_exist,
            }),
            latest_success_run: latest.map(Into::into),
        }
    }

    #[test]
    fn first_run_runs() {
        assert_eq!(
            decide(&history(None, None, false), false, "r2"),
            Decision::Run {
                reason: "no earlier success".into()
            }
        );
    }

    #[test]
    fn unchanged_inputs_with_outputs_present_skip() {
        let d = decide(&history(Some(("r1", true)), Some("r1"), false), false, "r2");
        assert_eq!(
            d,
            Decision::Skip {
                reason: "unchanged since run r1".into(),
                reused_from: "r1".into()
            }
        );
    }

    #[test]
    fn unchanged_inputs_with_outputs_gone_run() {
        let d = decide(
            &history(Some(("r1", false)), Some("r1"), false),
            false,
            "r2",
        );
        assert!(!d.is_skip());
        assert!(d.reason().contains("outputs are gone"));
    }

    #[test]
    fn changed_inputs_run_and_name_the_last_success() {
        let d = decide(&history(None, Some("r1"), false), false, "r2");
        assert_eq!(d.reason(), "inputs changed since run r1");
    }

    #[test]
    fn force_always_runs() {
        assert_eq!(
            decide(&history(Some(("r1", true)), Some("r1"), true), true, "r1").reason(),
            "forced"
        );
    }

    #[test]
    fn a_resumed_run_skips_what_it_finished() {
        let d = decide(&history(Some(("r1", true)), Some("r1"), true), false, "r1");
        assert_eq!(
            d,
            Decision::Skip {
                reason: "already done in this run".into(),
                reused_from: "r1".into()
            }
        );
    }
}
