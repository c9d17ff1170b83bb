//! The database's schema and its versions: `PRAGMA user_version` counts the migrations
//! applied, and opening a connection applies the missing ones in one immediate transaction, so
//! that two processes opening a new database at once create it once.

use rusqlite::TransactionBehavior;

use super::connections::Db;
use crate::journal::error::JournalError;

/// Each migration, in order; the database's `user_version` is the number applied. Never edit
/// one that has shipped: add the next.
const MIGRATIONS: &[&str] = &[
    // 1: the runs, each record's JSON beside its revision and its summary's columns, so that
    // listing reads no record; timestamps are RFC 3339 in UTC with nanoseconds.
    "CREATE TABLE runs (
        run_id       TEXT    NOT NULL PRIMARY KEY,
        revision     INTEGER NOT NULL,
        pipeline     TEXT    NOT NULL,
        status       TEXT    NOT NULL,
        started_at   TEXT    NOT NULL,
        finished_at  TEXT,
        git_sha      TEXT,
        stages_done  INTEGER NOT NULL,
        stages_total INTEGER NOT NULL,
        record       TEXT    NOT NULL
    ) STRICT;
    CREATE INDEX runs_by_pipeline ON runs (pipeline, run_id);",
    // 2: the daemon's queue (`daemon::queue::sqlite`) in the same file as its journal, so that
    // one backup holds both: webhook deliveries (their id is the redelivery check), the runs
    // they queued with their claim and lease, and each run's log lines. Timestamps as in 1,
    // so that text order is time order (the lease checks compare them as text).
    "CREATE TABLE deliveries (
        delivery_id     TEXT NOT NULL PRIMARY KEY,
        source          TEXT NOT NULL,
        event           TEXT NOT NULL,
        repository      TEXT,
        git_ref         TEXT,
        sha             TEXT,
        ignored_because TEXT,
        received_at     TEXT NOT NULL
    ) STRICT;
    CREATE TABLE queued_runs (
        id               INTEGER PRIMARY KEY AUTOINCREMENT,
        repository       TEXT    NOT NULL,
        git_ref          TEXT    NOT NULL,
        sha              TEXT    NOT NULL,
        pipeline_file    TEXT    NOT NULL,
        environment      TEXT,
        trigger          TEXT    NOT NULL,
        state            TEXT    NOT NULL,
        run_id           TEXT,
        claimed_by       TEXT,
        lease_until      TEXT,
        cancel_requested INTEGER NOT NULL DEFAULT 0,
        exit_code        INTEGER,
        message          TEXT,
        queued_at        TEXT    NOT NULL,
        started_at       TEXT,
        finished_at      TEXT
    ) STRICT;
    CREATE INDEX queued_runs_by_state ON queued_runs (state, id);
    CREATE INDEX queued_runs_by_key ON queued_runs (repository, git_ref, state);
    CREATE TABLE run_log (
        queue_id INTEGER NOT NULL REFERENCES queued_runs (id),
        seq      INTEGER NOT NULL,
        line     TEXT    NOT NULL,
        PRIMARY KEY (queue_id, seq)
    ) STRICT;",
];

/// Brings the database up to the newest schema this shipit knows.
pub(crate) fn migrate(db: &mut Db<'_>) -> Result<(), JournalError> {
    if version(db)? == MIGRATIONS.len() {
        return Ok(());
    }
    let failed = db.failed("migrate the schema");
    let tx = db
        .conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(&failed)?;
    // Read again under the write lock: another connection may have migrated meanwhile.
    let applied: i64 = tx
        .query_row("PRAGMA user_version", [], |row| row.get(0))
        .map_err(&failed)?;
    let applied = usize::try_from(applied).unwrap_or(usize::MAX);
    if applied > MIGRATIONS.len() {
        return Err(newer(db.path, applied));
    }
    for migration in &MIGRATIONS[applied..] {
        tx.execute_batch(migration).map_err(&failed)?;
    }
    tx.pragma_update(None, "user_version", MIGRATIONS.len() as i64)
        .map_err(&failed)?;
    tx.commit().map_err(&failed)
}

fn version(db: &Db<'_>) -> Result<usize, JournalError> {
    let applied: i64 = db
        .conn
        .query_row("PRAGMA user_version", [], |row| row.get(0))
        .map_err(db.failed("read the schema version"))?;
    let applied = usize::try_from(applied).unwrap_or(usize::MAX);
    if applied > MIGRATIONS.len() {
        return Err(newer(db.path, applied));
    }
    Ok(applied)
}

fn newer(path: &std::path::Path, applied: usize) -> JournalError {
    JournalError::Corrupt {
        path: path.to_path_buf(),
        message: format!(
            "its schema version {applied} is newer than version {} that this shipit knows",
            MIGRATIONS.len()
        ),
    }
}
