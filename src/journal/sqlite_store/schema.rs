//! The database's schema and its versions: the migrations are the daemon database's shared list
//! (`journal/migrations.rs`), `PRAGMA user_version` counts those applied, and opening a
//! connection applies the missing ones in one immediate transaction, so that two processes
//! opening a new database at once create it once.

use rusqlite::TransactionBehavior;

use super::connections::Db;
use crate::journal::error::JournalError;
use crate::journal::migrations::MIGRATIONS;

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
        tx.execute_batch(migration.sqlite).map_err(&failed)?;
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
