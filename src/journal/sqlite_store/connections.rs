//! The store's SQLite connections: opened on first need with the store's settings and schema,
//! and kept for the next call. A connection serves one call at a time; concurrent calls open
//! more, and SQLite itself (WAL, the busy timeout) orders their writes, as it does those of
//! other processes.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use rusqlite::Connection;

use super::schema;
use crate::journal::error::JournalError;

/// How long a call waits for another connection's write before it fails: writes last
/// milliseconds, so this is only reached when something is badly stuck.
const BUSY_TIMEOUT: Duration = Duration::from_secs(30);

/// Connections kept beyond this number are closed when their call ends.
const MAX_IDLE: usize = 4;

pub(crate) struct Connections {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
}

/// A database connection with the path it was opened at, for error messages.
pub(crate) struct Db<'a> {
    pub conn: &'a mut Connection,
    pub path: &'a Path,
}

impl Db<'_> {
    /// Maps a SQLite error to `JournalError::Database` naming this database.
    pub fn failed(&self, action: &'static str) -> impl Fn(rusqlite::Error) -> JournalError + use<> {
        failed(self.path, action)
    }
}

fn failed(path: &Path, action: &'static str) -> impl Fn(rusqlite::Error) -> JournalError + use<> {
    let path = path.to_path_buf();
    move |source| JournalError::Database {
        action,
        path: path.clone(),
        source,
    }
}

impl Connections {
    pub fn new(path: PathBuf) -> Self {
        Connections {
            path,
            idle: Mutex::new(Vec::new()),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `work` on an idle connection, or on a new one. Blocks: call on the blocking pool.
    /// The error type is the caller's: the daemon's queue shares these connections (and the
    /// database file) with the run store, and reports its own errors.
    pub fn with<T, E: From<JournalError>>(
        &self,
        work: impl FnOnce(&mut Db<'_>) -> Result<T, E>,
    ) -> Result<T, E> {
        let idle = self
            .idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop();
        let mut conn = match idle {
            Some(conn) => conn,
            None => self.open()?,
        };
        // A transaction left open by a failed call rolls back when it is dropped, so the
        // connection is clean again here.
        let result = work(&mut Db {
            conn: &mut conn,
            path: &self.path,
        });
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        if idle.len() < MAX_IDLE {
            idle.push(conn);
        }
        result
    }

    fn open(&self) -> Result<Connection, JournalError> {
        let mut conn = Connection::open(&self.path).map_err(failed(&self.path, "open"))?;
        conn.busy_timeout(BUSY_TIMEOUT)
            .map_err(failed(&self.path, "set the busy timeout"))?;
        let mode: String = conn
            .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))
            .map_err(failed(&self.path, "switch to WAL mode"))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(JournalError::Corrupt {
                path: self.path.clone(),
                message: format!("it stays in journal mode `{mode}` instead of WAL"),
            });
        }
        // FULL syncs the WAL on every commit: a save that returned survives a power cut.
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(failed(&self.path, "set synchronous=FULL"))?;
        schema::migrate(&mut Db {
            conn: &mut conn,
            path: &self.path,
        })?;
        Ok(conn)
    }
}
