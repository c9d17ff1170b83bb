//! Creating, saving, loading and listing runs in the `runs` table. These functions block; the
//! store calls them on the blocking pool.

use rusqlite::{ErrorCode, OptionalExtension, Row, TransactionBehavior, params};

use super::connections::Db;
use crate::journal::encoded_record::EncodedRecord;
use crate::journal::error::JournalError;
use crate::journal::journal_file::{parse_head, parse_record};
use crate::journal::record::RunRecord;
use crate::journal::run_store::newest_first;
use crate::journal::summary::ListedRun;
use crate::journal::summary_columns::{self, Columns, StoredSummary, timestamp};

/// Inserts a new run at the revision `run` was encoded at; `RunExists` if the id is taken.
pub(super) fn create(db: &mut Db<'_>, run: &EncodedRecord) -> Result<(), JournalError> {
    let columns = Columns::of(db.path, &run.summary)?;
    let inserted = db.conn.execute(
        "INSERT INTO runs (run_id, revision, pipeline, status, started_at, finished_at,
                           git_sha, stages_done, stages_total, record)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        params![
            run.summary.run_id,
            columns.revision,
            run.summary.pipeline,
            run.summary.status.as_str(),
            timestamp(&run.summary.started_at),
            run.summary.finished_at.as_ref().map(timestamp),
            run.summary.git_sha,
            columns.stages_done,
            columns.stages_total,
            run.journal,
        ],
    );
    match inserted {
        Ok(_) => Ok(()),
        // The primary key refuses a taken id, also when two connections insert it at once.
        Err(rusqlite::Error::SqliteFailure(e, _)) if e.code == ErrorCode::ConstraintViolation => {
            Err(JournalError::RunExists {
                run_id: run.summary.run_id.clone(),
            })
        }
        Err(e) => Err(db.failed("create a run")(e)),
    }
}

/// Replaces the run if its stored revision is still `read`; `Conflict` otherwise. The check
/// and the write are one immediate transaction, which takes the database's write lock first.
pub(super) fn save(db: &mut Db<'_>, read: u64, run: &EncodedRecord) -> Result<(), JournalError> {
    let columns = Columns::of(db.path, &run.summary)?;
    let read_column = revision_column(db, read)?;
    let run_id = &run.summary.run_id;
    let failed = db.failed("save a run");
    let path = db.path;
    let tx = db
        .conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(&failed)?;
    let stored: Option<(i64, String)> = tx
        .query_row(
            "SELECT revision, record FROM runs WHERE run_id = ?1",
            [run_id],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .optional()
        .map_err(&failed)?;
    let Some((stored, record)) = stored else {
        return Err(unknown_run(path, run_id));
    };
    // A damaged record fails here, so it is reported and never overwritten.
    parse_head(path, run_id, record.as_bytes())?;
    if stored != read_column {
        return Err(JournalError::Conflict {
            run_id: run_id.clone(),
            read,
            stored: u64::try_from(stored).unwrap_or_default(),
        });
    }
    let changed = tx
        .execute(
            "UPDATE runs SET revision = ?3, pipeline = ?4, status = ?5, started_at = ?6,
                    finished_at = ?7, git_sha = ?8, stages_done = ?9, stages_total = ?10,
                    record = ?11
             WHERE run_id = ?1 AND revision = ?2",
            params![
                run_id,
                read_column,
                columns.revision,
                run.summary.pipeline,
                run.summary.status.as_str(),
                timestamp(&run.summary.started_at),
                run.summary.finished_at.as_ref().map(timestamp),
                run.summary.git_sha,
                columns.stages_done,
                columns.stages_total,
                run.journal,
            ],
        )
        .map_err(&failed)?;
    // The transaction holds the write lock, so the row checked above is the row updated; the
    // count is checked all the same, so that the swap never depends on that reasoning alone.
    if changed != 1 {
        return Err(JournalError::Conflict {
            run_id: run_id.clone(),
            read,
            stored: read.saturating_add(1),
        });
    }
    tx.commit().map_err(&failed)
}

pub(super) fn load(db: &mut Db<'_>, run_id: &str) -> Result<RunRecord, JournalError> {
    let record: Option<String> = db
        .conn
        .query_row(
            "SELECT record FROM runs WHERE run_id = ?1",
            [run_id],
            |row| row.get(0),
        )
        .optional()
        .map_err(db.failed("load a run"))?;
    let record = record.ok_or_else(|| unknown_run(db.path, run_id))?;
    parse_record(db.path, run_id, record.as_bytes())
}

/// `UnknownRun` unless the run is recorded.
pub(super) fn check_exists(db: &mut Db<'_>, run_id: &str) -> Result<(), JournalError> {
    let found: Option<i64> = db
        .conn
        .query_row("SELECT 1 FROM runs WHERE run_id = ?1", [run_id], |row| {
            row.get(0)
        })
        .optional()
        .map_err(db.failed("look up a run"))?;
    found
        .map(|_| ())
        .ok_or_else(|| unknown_run(db.path, run_id))
}

/// Every run in id order, from the summary columns alone.
pub(super) fn list(db: &mut Db<'_>) -> Result<Vec<ListedRun>, JournalError> {
    let failed = db.failed("list the runs");
    let mut statement = db
        .conn
        .prepare(
            "SELECT run_id, revision, pipeline, status, started_at, finished_at, git_sha,
                    stages_done, stages_total
             FROM runs ORDER BY run_id",
        )
        .map_err(&failed)?;
    let rows = statement.query_map([], read_summary).map_err(&failed)?;
    let mut listing = Vec::new();
    for row in rows {
        let stored = row.map_err(&failed)?;
        let run_id = stored.run_id.clone();
        listing.push(match stored.summary() {
            Ok(summary) => ListedRun::Readable(summary),
            Err(message) => ListedRun::Unreadable {
                error: JournalError::Corrupt {
                    path: db.path.to_path_buf(),
                    message: format!("the summary of run `{run_id}` {message}"),
                },
                run_id,
            },
        });
    }
    Ok(listing)
}

/// The readable records of `pipeline`'s runs, newest first.
pub(super) fn runs_of(db: &mut Db<'_>, pipeline: &str) -> Result<Vec<RunRecord>, JournalError> {
    let failed = db.failed("read a pipeline's runs");
    let mut statement = db
        .conn
        .prepare("SELECT run_id, record FROM runs WHERE pipeline = ?1 ORDER BY run_id DESC")
        .map_err(&failed)?;
    let rows = statement
        .query_map([pipeline], |row| {
            Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?))
        })
        .map_err(&failed)?;
    let mut runs = Vec::new();
    for row in rows {
        let (run_id, record) = row.map_err(&failed)?;
        if let Ok(run) = parse_record(db.path, &run_id, record.as_bytes()) {
            runs.push(run);
        }
    }
    newest_first(&mut runs);
    Ok(runs)
}

fn unknown_run(database: &std::path::Path, run_id: &str) -> JournalError {
    JournalError::UnknownRun {
        run_id: run_id.to_owned(),
        dir: database.to_path_buf(),
    }
}

fn revision_column(db: &Db<'_>, revision: u64) -> Result<i64, JournalError> {
    summary_columns::revision_column(db.path, revision)
}

/// A `runs` row's summary columns, in the order `list` selects them.
fn read_summary(row: &Row<'_>) -> rusqlite::Result<StoredSummary> {
    Ok(StoredSummary {
        run_id: row.get(0)?,
        revision: row.get(1)?,
        pipeline: row.get(2)?,
        status: row.get(3)?,
        started_at: row.get(4)?,
        finished_at: row.get(5)?,
        git_sha: row.get(6)?,
        stages_done: row.get(7)?,
        stages_total: row.get(8)?,
    })
}
