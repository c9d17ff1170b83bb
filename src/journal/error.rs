//! Everything that can go wrong in a journal store, for every `RunStore` implementation.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("failed to {action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "the journal {} is damaged ({message}); it was left untouched\n  hint: start a new run with `shipit run`; move the folder away if it is in the way"
    , path.display())]
    Corrupt { path: PathBuf, message: String },
    /// `dir` says where the store keeps its runs: a folder, or a database's file or address.
    #[error("no run `{run_id}` in {}\n  hint: `shipit runs` lists the recorded runs", dir.display())]
    UnknownRun { run_id: String, dir: PathBuf },
    #[error(
        "`{run_id}` is not a run id: run ids are letters, digits, `-` and `_`\n  hint: `shipit runs` lists the recorded runs"
    )]
    InvalidRunId { run_id: String },
    #[error("failed to create run `{run_id}`: a run with this id is already recorded")]
    RunExists { run_id: String },
    #[error(
        "failed to save run `{run_id}`: it was saved elsewhere since it was read (revision {read} read, {stored} stored); nothing was written\n  hint: load the run again and apply the change to what is stored"
    )]
    Conflict {
        run_id: String,
        read: u64,
        stored: u64,
    },
    #[error(
        "run `{run_id}` is held by another shipit process{}\n  hint: wait for it to finish; if none is running, the lock frees itself",
        pid_note(*holder_pid)
    )]
    RunBusy {
        run_id: String,
        holder_pid: Option<u32>,
    },
    #[error(
        "deploy target `{target}` of pipeline `{pipeline}` is being deployed by {}{}\n  hint: a run deploys a target only when no other run deploys it",
        holder_run.as_deref().map_or_else(|| "another run".to_owned(), |run| format!("run {run}")),
        pid_note(*holder_pid)
    )]
    TargetBusy {
        pipeline: String,
        target: String,
        holder_run: Option<String>,
        holder_pid: Option<u32>,
    },
    /// `path` is the database file; SQLite's messages name no values, so no secret reaches
    /// them.
    #[error("failed to {action} in the run database {}: {source}", path.display())]
    Database {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    /// `database` is the server's address without the password (`postgres_store/database.rs`
    /// masks it): connection strings hold one, and these messages reach logs.
    #[error("failed to {action} in the run database {database}: {source}")]
    Postgres {
        action: &'static str,
        database: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("failed to serialize the journal: {0}")]
    Serialize(#[from] serde_json::Error),
    #[error("failed to finish a journal operation: the runtime is shutting down")]
    ShuttingDown,
}

impl JournalError {
    /// Whether the store's database could not be reached (PostgreSQL away, or its connection
    /// broken): the same call may succeed once it is back. The daemon's runs wait such an
    /// outage out; every other error is an answer.
    pub fn is_unavailable(&self) -> bool {
        match self {
            JournalError::Postgres { source, .. } => source
                .downcast_ref::<crate::journal::postgres_store::PostgresError>()
                .is_some_and(|e| e.is_unavailable()),
            _ => false,
        }
    }
}

/// " (pid 123)" when the holder's process id is known; holders write it just after taking a
/// lock, so a reader can come too early to see it.
fn pid_note(pid: Option<u32>) -> String {
    pid.map(|pid| format!(" (pid {pid})")).unwrap_or_default()
}
