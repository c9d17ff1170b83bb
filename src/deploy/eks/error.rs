//! How an EKS deploy fails. The kind decides the exit code; the message is the whole
//! explanation (the workload, the pod, the container, its reason, the last events and log
//! lines) so that nobody has to run `kubectl describe`.

use super::outcome::EksDeployOutcome;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EksErrorKind {
    /// The pipeline does not fit the cluster: a manifest that is not YAML or has no kind, a
    /// container no workload has, a namespace that does not exist, no such cluster. Exit 2
    /// when found before anything changed.
    Config,
    /// The API refused or failed (403 forbidden, expired credentials, a field-manager conflict)
    /// or the rollout failed without a rollback. Exit 1.
    Remote,
    /// The rollout failed and the workloads were returned to their previous pod templates.
    /// Exit 3.
    RolledBack,
    /// The rollout did not complete before `timeout` (rolled back or not, as the message
    /// says). Exit 4.
    TimedOut,
    /// The run was interrupted; the rollout goes on and a resume re-attaches to it.
    Cancelled,
}

#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct EksDeployError {
    pub kind: EksErrorKind,
    /// What happened and why, in full.
    pub message: String,
    /// What to do about it.
    pub hint: Option<String>,
    /// What the deploy got to, for the journal and the JSON result.
    pub outcome: Option<Box<EksDeployOutcome>>,
}

impl EksDeployError {
    pub fn new(kind: EksErrorKind, message: impl Into<String>) -> Self {
        EksDeployError {
            kind,
            message: message.into(),
            hint: None,
            outcome: None,
        }
    }

    pub fn config(message: impl Into<String>) -> Self {
        Self::new(EksErrorKind::Config, message)
    }

    pub fn remote(message: impl Into<String>) -> Self {
        Self::new(EksErrorKind::Remote, message)
    }

    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    pub fn with_outcome(mut self, outcome: EksDeployOutcome) -> Self {
        self.outcome = Some(Box::new(outcome));
        self
    }
}

impl From<crate::deploy::aws_failure::Explained> for EksDeployError {
    fn from(explained: crate::deploy::aws_failure::Explained) -> Self {
        let kind = if explained.config {
            EksErrorKind::Config
        } else {
            EksErrorKind::Remote
        };
        EksDeployError {
            kind,
            message: explained.message,
            hint: explained.hint,
            outcome: None,
        }
    }
}
