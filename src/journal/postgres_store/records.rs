//! Creating, saving, loading and listing runs in the `runs` table.

use std::path::Path;

use tokio_postgres::Row;

use super::database::{PostgresDatabase, PostgresError, bounded};
use crate::journal::encoded_record::EncodedRecord;
use crate::journal::error::JournalError;
use crate::journal::journal_file::{parse_head, parse_record};
use crate::journal::record::RunRecord;
use crate::journal::run_store::newest_first;
use crate::journal::summary::ListedRun;
use crate::journal::summary_columns::{Columns, StoredSummary, revision_column, timestamp};

/// What a failed statement becomes: `JournalError::Postgres` naming the database, never its
/// password.
pub(super) fn failed(
    database: &PostgresDatabase,
    action: &'static str,
) -> impl Fn(PostgresError) -> JournalError + use<> {
    let address = database.address().to_owned();
    move |source| JournalError::Postgres {
        action,
        database: address.clone(),
        source: Box::new(source),
    }
}

fn name(database: &PostgresDatabase) -> &Path {
    Path::new(database.address())
}

/// Inserts a new run at the revision `run` was encoded at; `RunExists` if the id is taken. One
/// statement: the primary key decides between two creators, and `DO NOTHING` tells the loser
/// by the row count instead of an aborted statement.
pub(super) async fn create(
    database: &PostgresDatabase,
    run: &EncodedRecord,
) -> Result<(), JournalError> {
    let failed = failed(database, "create a run");
    let columns = Columns::of(name(database), &run.summary)?;
    let client = database.connection().await.map_err(&failed)?;
    let finished_at = run.summary.finished_at.as_ref().map(timestamp);
    let inserted = bounded(client.execute(
        "INSERT INTO runs (run_id, revision, pipeline, status, started_at, finished_at,
                           git_sha, stages_done, stages_total, record)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
         ON CONFLICT (run_id) DO NOTHING",
        &[
            &run.summary.run_id,
            &columns.revision,
            &run.summary.pipeline,
            &run.summary.status.as_str(),
            &timestamp(&run.summary.started_at),
            &finished_at,
            &run.summary.git_sha,
            &columns.stages_done,
            &columns.stages_total,
            &run.journal,
        ],
    ))
    .await
    .map_err(&failed)?
    .map_err(|e| failed(PostgresError::from(e)))?;
    if inserted == 0 {
        return Err(JournalError::RunExists {
            run_id: run.summary.run_id.clone(),
        });
    }
    Ok(())
}

/// Replaces the run if its stored revision is still `read`; `Conflict` otherwise. One
/// transaction: the row is read `FOR UPDATE`, so no other save can change it between the check
/// and the write, and the update repeats the revision check all the same.
pub(super) async fn save(
    database: &PostgresDatabase,
    read: u64,
    run: &EncodedRecord,
) -> Result<(), JournalError> {
    let failed = failed(database, "save a run");
    let columns = Columns::of(name(database), &run.summary)?;
    let read_column = revision_column(name(database), read)?;
    let run_id = &run.summary.run_id;
    let mut client = database.connection().await.map_err(&failed)?;
    bounded(async {
        let tx = client.transaction().await.map_err(|e| failed(e.into()))?;
        let stored = tx
            .query_opt(
                "SELECT revision, record FROM runs WHERE run_id = $1 FOR UPDATE",
                &[run_id],
            )
            .await
            .map_err(|e| failed(e.into()))?;
        let Some(stored) = stored else {
            return Err(unknown_run(database, run_id));
        };
        let revision: i64 = stored.try_get(0).map_err(|e| failed(e.into()))?;
        let record: String = stored.try_get(1).map_err(|e| failed(e.into()))?;
        // A damaged record fails here, so it is reported and never overwritten.
        parse_head(name(database), run_id, record.as_bytes())?;
        if revision != read_column {
            return Err(JournalError::Conflict {
                run_id: run_id.clone(),
                read,
                stored: u64::try_from(revision).unwrap_or_default(),
            });
        }
        let finished_at = run.summary.finished_at.as_ref().map(timestamp);
        let changed = tx
            .execute(
                "UPDATE runs SET revision = $3, pipeline = $4, status = $5, started_at = $6,
                        finished_at = $7, git_sha = $8, stages_done = $9, stages_total = $10,
                        record = $11
                 WHERE run_id = $1 AND revision = $2",
                &[
                    run_id,
                    &read_column,
                    &columns.revision,
                    &run.summary.pipeline,
                    &run.summary.status.as_str(),
                    &timestamp(&run.summary.started_at),
                    &finished_at,
                    &run.summary.git_sha,
                    &columns.stages_done,
                    &columns.stages_total,
                    &run.journal,
                ],
            )
            .await
            .map_err(|e| failed(e.into()))?;
        if changed != 1 {
            return Err(JournalError::Conflict {
                run_id: run_id.clone(),
                read,
                stored: read.saturating_add(1),
            });
        }
        // Durable once this returns: PostgreSQL flushes its WAL at commit
        // (synchronous_commit is on unless the server was told otherwise).
        tx.commit().await.map_err(|e| failed(e.into()))
    })
    .await
    .map_err(&failed)?
}

pub(super) async fn load(
    database: &PostgresDatabase,
    run_id: &str,
) -> Result<RunRecord, JournalError> {
    let failed = failed(database, "load a run");
    let client = database.connection().await.map_err(&failed)?;
    let row = bounded(client.query_opt("SELECT record FROM runs WHERE run_id = $1", &[&run_id]))
        .await
        .map_err(&failed)?
        .map_err(|e| failed(e.into()))?;
    let row = row.ok_or_else(|| unknown_run(database, run_id))?;
    let record: String = row.try_get(0).map_err(|e| failed(e.into()))?;
    parse_record(name(database), run_id, record.as_bytes())
}

/// `UnknownRun` unless the run is recorded.
pub(super) async fn check_exists(
    database: &PostgresDatabase,
    run_id: &str,
) -> Result<(), JournalError> {
    let failed = failed(database, "look up a run");
    let client = database.connection().await.map_err(&failed)?;
    let row = bounded(client.query_opt("SELECT 1 FROM runs WHERE run_id = $1", &[&run_id]))
        .await
        .map_err(&failed)?
        .map_err(|e| failed(e.into()))?;
    row.map(|_| ()).ok_or_else(|| unknown_run(database, run_id))
}

/// Every run in id order, from the summary columns alone. `COLLATE "C"` orders by bytes, as
/// SQLite and the file store do, whatever the database's own collation.
pub(super) async fn list(database: &PostgresDatabase) -> Result<Vec<ListedRun>, JournalError> {
    let failed = failed(database, "list the runs");
    let client = database.connection().await.map_err(&failed)?;
    let rows = bounded(client.query(
        "SELECT run_id, revision, pipeline, status, started_at, finished_at, git_sha,
                stages_done, stages_total
         FROM runs ORDER BY run_id COLLATE \"C\"",
        &[],
    ))
    .await
    .map_err(&failed)?
    .map_err(|e| failed(e.into()))?;
    let mut listing = Vec::with_capacity(rows.len());
    for row in &rows {
        let stored = read_summary(row).map_err(|e| failed(e.into()))?;
        let run_id = stored.run_id.clone();
        listing.push(match stored.summary() {
            Ok(summary) => ListedRun::Readable(summary),
            Err(message) => ListedRun::Unreadable {
                error: JournalError::Corrupt {
                    path: name(database).to_path_buf(),
                    message: format!("the summary of run `{run_id}` {message}"),
                },
                run_id,
            },
        });
    }
    Ok(listing)
}

/// The readable records of `pipeline`'s runs, newest first.
pub(super) async fn runs_of(
    database: &PostgresDatabase,
    pipeline: &str,
) -> Result<Vec<RunRecord>, JournalError> {
    let failed = failed(database, "read a pipeline's runs");
    let client = database.connection().await.map_err(&failed)?;
    let rows = bounded(client.query(
        "SELECT run_id, record FROM runs WHERE pipeline = $1 ORDER BY run_id COLLATE \"C\" DESC",
        &[&pipeline],
    ))
    .await
    .map_err(&failed)?
    .map_err(|e| failed(e.into()))?;
    let mut runs = Vec::with_capacity(rows.len());
    for row in &rows {
        let run_id: String = row.try_get(0).map_err(|e| failed(e.into()))?;
        let record: String = row.try_get(1).map_err(|e| failed(e.into()))?;
        if let Ok(run) = parse_record(name(database), &run_id, record.as_bytes()) {
            runs.push(run);
        }
    }
    newest_first(&mut runs);
    Ok(runs)
}

pub(super) fn unknown_run(database: &PostgresDatabase, run_id: &str) -> JournalError {
    JournalError::UnknownRun {
        run_id: run_id.to_owned(),
        dir: name(database).to_path_buf(),
    }
}

fn read_summary(row: &Row) -> Result<StoredSummary, tokio_postgres::Error> {
    Ok(StoredSummary {
        run_id: row.try_get(0)?,
        revision: row.try_get(1)?,
        pipeline: row.try_get(2)?,
        status: row.try_get(3)?,
        started_at: row.try_get(4)?,
        finished_at: row.try_get(5)?,
        git_sha: row.try_get(6)?,
        stages_done: row.try_get(7)?,
        stages_total: row.try_get(8)?,
    })
}
