//! How a run (`run`, `resume`, `down`) keeps its secrets out of everything it writes: the
//! reporter and the journal it is given are wrapped in masking guards, and the outcome or error
//! it hands back is masked before the caller renders it (the JSON result, JUnit, GitHub's step
//! files and every error message are made from those).

use super::run::RunOutcome;
use super::{AppError, Workspace};
use crate::report::Reporter;
use crate::secrets::{MaskedReporter, MaskedStore, SecretSet};

/// The guards of one run.
pub(super) struct Guards<'a> {
    secrets: &'a SecretSet,
    /// Renderers hear every secret named first, and every event masked.
    pub reporter: MaskedReporter<'a>,
    /// The journal is written masked.
    pub store: MaskedStore<'a>,
}

impl<'a> Guards<'a> {
    /// Names the secrets to `reporter` at once, before anything else is reported.
    pub(super) fn new(
        secrets: &'a SecretSet,
        workspace: &'a Workspace,
        reporter: &'a dyn Reporter,
    ) -> Self {
        Guards {
            secrets,
            reporter: MaskedReporter::new(reporter, secrets),
            store: MaskedStore::new(workspace.store.as_ref(), secrets),
        }
    }

    /// An outcome as it may be shown and written out.
    pub(super) fn outcome(&self, outcome: RunOutcome) -> RunOutcome {
        outcome.masked(self.secrets)
    }

    /// An error as it may be shown.
    pub(super) fn error(&self, err: AppError) -> AppError {
        err.masked(self.secrets)
    }

    /// A run's result as it may be shown.
    pub(super) fn result(
        &self,
        result: Result<RunOutcome, AppError>,
    ) -> Result<RunOutcome, AppError> {
        result
            .map(|outcome| self.outcome(outcome))
            .map_err(|err| self.error(err))
    }
}
