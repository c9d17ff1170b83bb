//! Why a command could not do what it was asked, and the exit code that says so.

use crate::exit;
use crate::journal::JournalError;

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// The pipeline file, the command line's selection, or a journal is not usable as given.
    #[error("{message}")]
    Invalid {
        message: String,
        hint: Option<String>,
    },
    /// A service outside shipit refused or failed what the command asked of it (CodeDeploy
    /// would not continue a deployment): exit 1, like a failed stage.
    #[error("{message}")]
    Failed {
        message: String,
        hint: Option<String>,
    },
    /// The journal could not be read or written (a full disk, a permission): not the input's
    /// fault, so it is a failure (exit 1) rather than invalid input.
    #[error("{0}")]
    JournalIo(JournalError),
}

impl AppError {
    pub fn invalid(message: impl std::fmt::Display) -> Self {
        AppError::Invalid {
            message: message.to_string(),
            hint: None,
        }
    }

    pub fn failed(message: impl std::fmt::Display) -> Self {
        AppError::Failed {
            message: message.to_string(),
            hint: None,
        }
    }

    pub fn with_hint(self, hint: impl Into<String>) -> Self {
        match self {
            AppError::Invalid { message, .. } => AppError::Invalid {
                message,
                hint: Some(hint.into()),
            },
            AppError::Failed { message, .. } => AppError::Failed {
                message,
                hint: Some(hint.into()),
            },
            other => other,
        }
    }

    pub fn hint(&self) -> Option<&str> {
        match self {
            AppError::Invalid { hint, .. } | AppError::Failed { hint, .. } => hint.as_deref(),
            AppError::JournalIo(_) => {
                Some("free space or fix the state directory's permissions, then try again")
            }
        }
    }

    /// The error as it may be shown: every secret in it masked.
    pub(crate) fn masked(self, secrets: &crate::secrets::SecretSet) -> Self {
        match self {
            AppError::Invalid { message, hint } => AppError::Invalid {
                message: secrets.mask_string(&message),
                hint: hint.map(|hint| secrets.mask_string(&hint)),
            },
            AppError::Failed { message, hint } => AppError::Failed {
                message: secrets.mask_string(&message),
                hint: hint.map(|hint| secrets.mask_string(&hint)),
            },
            // A journal's path and the system's reason: nothing of the run's values.
            AppError::JournalIo(err) => AppError::JournalIo(err),
        }
    }

    pub fn exit_code(&self) -> i32 {
        match self {
            AppError::Invalid { .. } => exit::INVALID_INPUT,
            AppError::Failed { .. } | AppError::JournalIo(_) => exit::STAGE_FAILED,
        }
    }
}

impl From<JournalError> for AppError {
    fn from(err: JournalError) -> Self {
        match err {
            JournalError::Io { .. } => AppError::JournalIo(err),
            other => AppError::invalid(other),
        }
    }
}
