//! `shipit runs` and `shipit show`: what the journal holds, for the CLI (or the daemon's API)
//! to render.

use super::{AppError, Workspace};
use crate::exit;
use crate::journal::{ListedRun, RunRecord};

/// Every recorded run, oldest first; damaged journals are listed with their error.
pub async fn list_runs(workspace: &Workspace) -> Result<Vec<ListedRun>, AppError> {
    Ok(workspace.store.list().await?)
}

/// One run's record and the exit code it ended with.
pub async fn show_run(workspace: &Workspace, run_id: &str) -> Result<(RunRecord, i32), AppError> {
    let record = workspace.store.load(run_id).await?;
    let code = exit::for_run(&record);
    Ok((record, code))
}
