//! The application layer: what `shipit run`, `resume`, `plan`, `down`, `runs` and `show` do, as
//! functions that take a typed request and give back a typed outcome, with events going to the
//! caller's [`Reporter`](crate::report::Reporter) as they happen.
//!
//! Nothing here reads the process environment, prints, or exits: the CLI passes the process's
//! environment variables in and renders what comes back, and the daemon will call the same
//! functions with its own values, store and sink.
//!
//! A run (`run`, `resume`, `down`) decides here which values are secret (`run_secrets`) and
//! whose AWS credentials it uses (`aws_identity`); its reporter and journal are wrapped so that
//! no secret reaches either, and what it hands back is masked too (`masking`).

mod approve;
mod availability;
mod aws_identity;
mod down;
mod error;
mod inspect;
mod lookahead;
mod masking;
mod plan;
mod rollback;
mod run;
mod run_secrets;
mod values;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

pub use crate::runner::Stop;
pub use approve::{Approved, approve};
pub use availability::{UnavailableTarget, unavailable_targets};
pub use down::{down, preview_down, take_down_targets};
pub use error::AppError;
pub use inspect::{list_runs, show_run};
pub use plan::{PlanReport, PlannedAction, PlannedStage, plan};
pub use rollback::{ReturnPoint, RollbackRequest, return_point, rollback};
pub use run::{ResumeOutcome, RunOutcome, RunRequest, resume, run};

use crate::journal::{FsRunStore, RunStore};
use crate::pipeline::{LoadError, Pipeline};
use crate::stages::Executors;

/// Environment variables as the caller chooses to expose them: `${{ env.NAME }}`, build secrets
/// from `env`, and the CI variables git facts fall back on.
pub type EnvVars = BTreeMap<String, String>;

/// Where runs are journaled and what executes each stage kind.
pub struct Workspace {
    pub store: Arc<dyn RunStore>,
    pub executors: Executors,
}

impl Workspace {
    /// Journals under `state_dir` (`.shipit`) and this build's executors.
    pub fn local(state_dir: &Path) -> Self {
        Workspace {
            store: Arc::new(FsRunStore::new(state_dir)),
            executors: Executors::default_set(state_dir),
        }
    }
}

/// Reads, parses and validates a pipeline file, with the `--env` overrides named.
pub fn load_pipeline(file: &Path, environment: Option<&str>) -> Result<Pipeline, AppError> {
    Pipeline::load(file, environment).map_err(|err| {
        let missing = matches!(
            &err,
            LoadError::Read(crate::pipeline::ReadError::Io { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound
        );
        let hint = missing.then(|| {
            "pass the pipeline file with -f FILE, or create shipit.yaml (see pipelines/demo.yaml)"
                .to_owned()
        });
        AppError::Invalid {
            message: err.to_string(),
            hint,
        }
    })
}
