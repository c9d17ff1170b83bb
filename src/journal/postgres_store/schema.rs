//! The PostgreSQL side of the shared migrations (`journal/migrations.rs`): the version is the
//! highest one recorded in `shipit_schema`, and the missing migrations are applied in one
//! transaction under a transaction-level advisory lock, so that two daemons starting at once on
//! a new database migrate it once (the second waits for the lock, then finds nothing to do).

use tokio_postgres::Client;

use super::database::PostgresError;
use super::holds::lock_key;
use crate::journal::migrations::MIGRATIONS;

/// Brings the database up to the newest schema this shipit knows.
pub(super) async fn migrate(client: &mut Client) -> Result<(), PostgresError> {
    let tx = client.transaction().await?;
    tx.execute(
        "SELECT pg_advisory_xact_lock($1)",
        &[&lock_key(&["schema"])],
    )
    .await?;
    // Under the lock, so the table's creation cannot race another daemon's.
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS shipit_schema (
            version    INTEGER     NOT NULL PRIMARY KEY,
            applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
        )",
    )
    .await?;
    let applied: i32 = tx
        .query_one("SELECT coalesce(max(version), 0) FROM shipit_schema", &[])
        .await?
        .try_get(0)?;
    let applied = i64::from(applied);
    let known = MIGRATIONS.len();
    let Ok(done) = usize::try_from(applied) else {
        return Err(PostgresError::NewerSchema {
            found: applied,
            known,
        });
    };
    if done > known {
        return Err(PostgresError::NewerSchema {
            found: applied,
            known,
        });
    }
    for (index, migration) in MIGRATIONS.iter().enumerate().skip(done) {
        tx.batch_execute(migration.postgres)
            .await
            .map_err(|source| PostgresError::Migration {
                what: migration.what,
                version: index + 1,
                source,
            })?;
        let version = i32::try_from(index + 1).unwrap_or(i32::MAX);
        tx.execute(
            "INSERT INTO shipit_schema (version) VALUES ($1)",
            &[&version],
        )
        .await?;
    }
    tx.commit().await?;
    Ok(())
}

/// The schema version recorded in the database, for tests.
#[cfg(test)]
pub(super) async fn version(client: &Client) -> Result<i64, PostgresError> {
    let version: i32 = client
        .query_one("SELECT coalesce(max(version), 0) FROM shipit_schema", &[])
        .await?
        .try_get(0)?;
    Ok(i64::from(version))
}
