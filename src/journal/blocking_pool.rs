//! Running a store's blocking work (files, SQLite) on tokio's blocking pool, so that it never
//! holds up the async workers.

use super::error::JournalError;

/// Runs `work` on the blocking pool and hands back its result.
/// The error type is the caller's (the daemon's queue reports its own).
pub(crate) async fn blocking<T: Send + 'static, E: From<JournalError> + Send + 'static>(
    work: impl FnOnce() -> Result<T, E> + Send + 'static,
) -> Result<T, E> {
    match tokio::task::spawn_blocking(work).await {
        Ok(result) => result,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(_) => Err(JournalError::ShuttingDown.into()),
    }
}
