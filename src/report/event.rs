//! Typed events that stages and the runner emit; every renderer consumes the same stream.

use std::time::Duration;

use crate::journal::{RunStatus, StageStatus};
use crate::plan::StageId;

#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    RunStarted {
        run_id: String,
        pipeline: String,
        resumed: bool,
        stages: Vec<StageId>,
    },
    StageSkipped {
        stage: StageId,
        reason: String,
    },
    StageStarted {
        stage: StageId,
        attempt: u32,
        reason: String,
    },
    /// A sub-step: "sending context", "step 3/7: RUN make", "2 of 3 replicas healthy".
    StageProgress {
        stage: StageId,
        message: String,
    },
    /// A change worth a line of its own while a stage waits on something outside shipit (a
    /// service event, new task counts, a lifecycle hook passed): the live line on a terminal,
    /// and always a line of its own in CI and logs, never throttled like progress.
    StageChange {
        stage: StageId,
        message: String,
    },
    /// A raw line of tool output (build log); shown verbose or in CI, kept for failure messages.
    StageLog {
        stage: StageId,
        line: String,
    },
    StageOutput {
        stage: StageId,
        key: String,
        value: String,
    },
    StageFinished {
        stage: StageId,
        status: StageStatus,
        elapsed: Duration,
        error: Option<String>,
        hint: Option<String>,
    },
    RunFinished {
        run_id: String,
        status: RunStatus,
        elapsed: Duration,
    },
    /// Something the user should know that does not fail the run (a journal write that failed
    /// after the stage finished).
    Warning {
        message: String,
    },
}

/// Receives events. Implementations must be cheap: they are called from the stages' tasks.
pub trait Reporter: Send + Sync {
    fn report(&self, event: &Event);

    /// A value that must never be shown, named once before any event could carry it. Events
    /// reach renderers with every secret already masked; a renderer whose CI hides values in
    /// its log by itself (GitHub's `::add-mask::`) tells the CI, and the others ignore it.
    fn register_secret(&self, _value: &str) {}
}

/// Sends each event to several reporters.
pub struct FanOut(pub Vec<Box<dyn Reporter>>);

impl Reporter for FanOut {
    fn report(&self, event: &Event) {
        for reporter in &self.0 {
            reporter.report(event);
        }
    }

    fn register_secret(&self, value: &str) {
        for reporter in &self.0 {
            reporter.register_secret(value);
        }
    }
}
