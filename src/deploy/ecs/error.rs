//! How an ECS deploy fails. The kind decides the exit code; the message is the whole
//! explanation (what failed, the stopped tasks' reasons, container exit codes, target health,
//! the last log lines) so that nobody has to open the console.

use super::outcome::EcsDeployOutcome;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EcsErrorKind {
    /// The pipeline does not fit what AWS holds: no such cluster, service, container or
    /// deployment group, a controller that does not match the strategy, a task definition file
    /// that is not JSON. Exit 2 when found before anything changed.
    Config,
    /// An AWS call failed (access denied, expired credentials, throttled past every retry) or
    /// the deployment failed without a rollback. Exit 1.
    Remote,
    /// Another deployment replaced ours while we waited. Exit 1, named as such.
    CompetingDeploy,
    /// The deployment failed and the service returned to the previous version (the circuit
    /// breaker, CodeDeploy's rollback, or shipit's own). Exit 3.
    RolledBack,
    /// The deployment did not finish before `timeout`, or made no progress for
    /// `no_progress_timeout`. Exit 4.
    TimedOut,
    /// The run was interrupted; the deployment goes on and a resume re-attaches to it.
    Cancelled,
}

#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct EcsDeployError {
    pub kind: EcsErrorKind,
    /// What happened and why, in full (several lines when there is evidence to show).
    pub message: String,
    /// What to do about it.
    pub hint: Option<String>,
    /// What the deploy got to, for the journal and the JSON result.
    pub outcome: Option<Box<EcsDeployOutcome>>,
}

impl EcsDeployError {
    pub fn new(kind: EcsErrorKind, message: impl Into<String>) -> Self {
        EcsDeployError {
            kind,
            message: message.into(),
            hint: None,
            outcome: None,
        }
    }

    pub fn config(message: impl Into<String>) -> Self {
        Self::new(EcsErrorKind::Config, message)
    }

    pub fn remote(message: impl Into<String>) -> Self {
        Self::new(EcsErrorKind::Remote, message)
    }

    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    pub fn with_outcome(mut self, outcome: EcsDeployOutcome) -> Self {
        self.outcome = Some(Box::new(outcome));
        self
    }
}

impl From<crate::deploy::aws_failure::Explained> for EcsDeployError {
    fn from(explained: crate::deploy::aws_failure::Explained) -> Self {
        let kind = if explained.config {
            EcsErrorKind::Config
        } else {
            EcsErrorKind::Remote
        };
        EcsDeployError {
            kind,
            message: explained.message,
            hint: explained.hint,
            outcome: None,
        }
    }
}

impl crate::deploy::aws_failure::AwsFailure {
    /// The ECS deploy's error for this failure.
    pub(crate) fn into_error(self) -> EcsDeployError {
        self.explain().into()
    }
}
