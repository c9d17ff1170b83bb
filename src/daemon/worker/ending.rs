//! How a daemon run ends, decided from what its execution gave back: the only place that turns
//! a run's outcome, a cancel and a shutdown into the queue's end state.

use crate::daemon::queue::{Finished, QueueState};
use crate::journal::RunStatus;

/// What the execution gave back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Ran {
    /// The pipeline ran (or resumed) to an end, or was stopped: the journal's status.
    Executed { status: RunStatus, exit_code: i32 },
    /// Nothing ran: the checkout, the pipeline file or its paths were refused.
    NotStarted { message: String, exit_code: i32 },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Ending {
    Finish(Finished),
    /// The daemon is stopping and the run was interrupted by it: it stays `Running` in the
    /// queue, its lease runs out, and the next daemon to claim it resumes it from its journal.
    LeaveResumable,
}

/// `cancel_reason` is set when the queue asked this run to cancel (a newer push, the API);
/// `shutting_down` when this daemon is stopping.
pub(crate) fn ending(ran: Ran, cancel_reason: Option<String>, shutting_down: bool) -> Ending {
    match ran {
        // A run that got to its end has ended, whoever asked it to stop meanwhile.
        Ran::Executed {
            status: RunStatus::Succeeded,
            exit_code,
        } => Ending::Finish(Finished {
            state: QueueState::Succeeded,
            exit_code: Some(exit_code),
            message: None,
        }),
        Ran::Executed { exit_code, .. } | Ran::NotStarted { exit_code, .. }
            if cancel_reason.is_some() =>
        {
            Ending::Finish(Finished {
                state: QueueState::Cancelled,
                exit_code: Some(exit_code),
                message: cancel_reason,
            })
        }
        Ran::Executed {
            status: RunStatus::Interrupted,
            ..
        } if shutting_down => Ending::LeaveResumable,
        Ran::Executed { status, exit_code } => Ending::Finish(Finished {
            state: QueueState::Failed,
            exit_code: Some(exit_code),
            message: Some(format!("the run ended {}", status.as_str())),
        }),
        Ran::NotStarted { message, exit_code } => Ending::Finish(Finished {
            state: QueueState::Failed,
            exit_code: Some(exit_code),
            message: Some(message),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn executed(status: RunStatus, exit_code: i32) -> Ran {
        Ran::Executed { status, exit_code }
    }

    fn state(ending: &Ending) -> Option<QueueState> {
        match ending {
            Ending::Finish(finished) => Some(finished.state),
            Ending::LeaveResumable => None,
        }
    }

    #[test]
    fn a_succeeded_run_succeeds_even_when_a_stop_came_late() {
        for (cancel, shutdown) in [(None, false), (Some("x".to_owned()), true)] {
            let ending = ending(executed(RunStatus::Succeeded, 0), cancel, shutdown);
            assert_eq!(state(&ending), Some(QueueState::Succeeded));
        }
    }

    #[test]
    fn a_cancelled_run_ends_cancelled_with_the_queue_s_reason() {
        let ending = ending(
            executed(RunStatus::Interrupted, 143),
            Some("superseded by run 7".into()),
            false,
        );
        assert_eq!(
            ending,
            Ending::Finish(Finished {
                state: QueueState::Cancelled,
                exit_code: Some(143),
                message: Some("superseded by run 7".into()),
            })
        );
    }

    #[test]
    fn a_run_interrupted_by_the_daemon_stopping_is_left_to_resume() {
        let ending = ending(executed(RunStatus::Interrupted, 143), None, true);
        assert_eq!(ending, Ending::LeaveResumable);
    }

    #[test]
    fn a_run_that_failed_while_the_daemon_stopped_still_fails() {
        let ending = ending(executed(RunStatus::Failed, 1), None, true);
        assert_eq!(state(&ending), Some(QueueState::Failed));
    }

    #[test]
    fn a_refused_run_fails_with_the_reason() {
        let ending = ending(
            Ran::NotStarted {
                message: "the remote has no commit".into(),
                exit_code: 2,
            },
            None,
            true,
        );
        assert_eq!(
            ending,
            Ending::Finish(Finished {
                state: QueueState::Failed,
                exit_code: Some(2),
                message: Some("the remote has no commit".into()),
            })
        );
    }
}
