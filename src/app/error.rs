//! Why a command could not do what it was asked, and the exit code that says so.

use crate::exit;

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// The pipeline file, the command line's selection, or a journal is not usable as given.
    #[error("{message}")]
    Invalid {
        message: String,
        hint: Option<String>,
    },
}

impl AppError {
    pub fn invalid(message: impl std::fmt::Display) -> Self {
        AppError::Invalid {
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
        }
    }

    pub fn hint(&self) -> Option<&str> {
        match self {
            AppError::Invalid { hint, .. } => hint.as_deref(),
        }
    }

    /// The error as it may be shown: every secret in it masked.
    pub(crate) fn masked(self, secrets: &crate::secrets::SecretSet) -> Self {
        match self {
            AppError::Invalid { message, hint } => AppError::Invalid {
                message: secrets.mask_string(&message),
                hint: hint.map(|hint| secrets.mask_string(&hint)),
            },
        }
    }

    pub fn exit_code(&self) -> i32 {
        match self {
            AppError::Invalid { .. } => exit::INVALID_INPUT,
        }
    }
}

impl From<crate::journal::JournalError> for AppError {
    fn from(err: crate::journal::JournalError) -> Self {
        AppError::invalid(err)
    }
}
