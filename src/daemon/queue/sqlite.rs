//! `SqliteQueue`: the queue contract (see `mod.rs`) in the daemon's SQLite database, the same
//! file as its journal (`SqliteRunStore`), with the same connection handling: WAL, a busy
//! timeout, the schema migrated on first open (tables `deliveries`, `queued_runs`, `run_log`,
//! migration 2 in `journal/sqlite_store/schema.rs`).
//!
//! Every change is one immediate transaction, which takes the database's write lock before it
//! reads: a claim reads the open runs and leases one with no other daemon (process) in between,
//! and an accepted delivery and its runs are on disk together, or not at all. The decisions
//! themselves (which run a claim hands out, what a new run supersedes) are pure functions over
//! the open runs (`open_runs.rs`).
//!
//! `accept` is group-committed (`../group_commit.rs`): the deliveries that arrive while one
//! transaction is being synced are written together in the next, one fsync for all, and each
//! caller is answered once that transaction committed. A new run's supersession reads only the
//! open runs of its own (repository, ref), once per batch.
//!
//! All SQLite work runs on tokio's blocking pool.

mod open_runs;
mod rows;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::{ErrorCode, OptionalExtension, Transaction, TransactionBehavior, params};

use super::group_commit::{Accepting, BatchWriter, GroupCommit};
use super::{
    Accepted, Finished, NewDelivery, NewRun, Queue, QueueError, QueueId, QueueState, QueuedRun,
    Renewal,
};
use crate::journal::JournalError;
use crate::journal::blocking_pool::blocking;
use crate::journal::sqlite_store::connections::{Connections, Db};
use open_runs::{OpenByKey, OpenRun, next_claim};
use rows::{COLUMNS, state_text, timestamp};

pub struct SqliteQueue {
    connections: Arc<Connections>,
    accepts: Arc<GroupCommit<SqliteBatches>>,
}

/// The group commit's transactions, on the blocking pool.
struct SqliteBatches(Arc<Connections>);

#[async_trait]
impl BatchWriter for SqliteBatches {
    async fn write(&self, batch: &[Accepting]) -> Result<Vec<Accepted>, QueueError> {
        let (connections, batch) = (self.0.clone(), batch.to_vec());
        blocking(move || connections.with(|db| write_deliveries(db, &batch))).await
    }
}

impl SqliteQueue {
    /// The queue in the database file at `database` (usually the journal's), created with its
    /// schema on first use. Nothing is opened here.
    pub fn new(database: impl Into<PathBuf>) -> Self {
        let connections = Arc::new(Connections::new(database.into()));
        SqliteQueue {
            accepts: Arc::new(GroupCommit::new(SqliteBatches(connections.clone()))),
            connections,
        }
    }

    pub fn database(&self) -> &Path {
        self.connections.path()
    }

    /// Runs `work` on a connection on the blocking pool.
    async fn with<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut Db<'_>) -> Result<T, QueueError> + Send + 'static,
    ) -> Result<T, QueueError> {
        let connections = self.connections.clone();
        blocking(move || connections.with(work)).await
    }
}

/// Opening the database (or migrating it) failed; the journal error names the file.
impl From<JournalError> for QueueError {
    fn from(err: JournalError) -> Self {
        QueueError::Database {
            action: "open the queue database",
            message: err.to_string(),
        }
    }
}

/// Maps a SQLite error to `QueueError::Database`. SQLite's messages name no values, so no
/// payload value or secret reaches them.
fn failed(action: &'static str) -> impl Fn(rusqlite::Error) -> QueueError {
    move |e| QueueError::Database {
        action,
        message: e.to_string(),
    }
}

fn immediate<'a>(db: &'a mut Db<'_>, action: &'static str) -> Result<Transaction<'a>, QueueError> {
    db.conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(failed(action))
}

fn lease_end(now: DateTime<Utc>, lease: Duration) -> DateTime<Utc> {
    let lease = chrono::Duration::from_std(lease).unwrap_or(chrono::Duration::MAX);
    now.checked_add_signed(lease)
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

fn open_runs(tx: &Transaction<'_>) -> Result<Vec<OpenRun>, QueueError> {
    let failed = failed("read the open runs");
    let mut statement = tx
        .prepare(
            "SELECT id, repository, git_ref, state, lease_until FROM queued_runs
             WHERE state IN ('queued', 'running') ORDER BY id",
        )
        .map_err(&failed)?;
    let raw = statement
        .query_map([], rows::open_run)
        .map_err(&failed)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(&failed)?;
    raw.into_iter().map(rows::checked_open_run).collect()
}

/// The open runs of one (repository, ref), through the `queued_runs_by_key` index.
fn open_runs_of_key(
    tx: &Transaction<'_>,
    repository: &str,
    git_ref: &str,
) -> Result<Vec<OpenRun>, QueueError> {
    let failed = failed("read the open runs");
    let mut statement = tx
        .prepare_cached(
            "SELECT id, repository, git_ref, state, lease_until FROM queued_runs
             WHERE repository = ?1 AND git_ref = ?2 AND state IN ('queued', 'running')
             ORDER BY id",
        )
        .map_err(&failed)?;
    let raw = statement
        .query_map(params![repository, git_ref], rows::open_run)
        .map_err(&failed)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(&failed)?;
    raw.into_iter().map(rows::checked_open_run).collect()
}

/// Inserts `run` and supersedes what it supersedes; its id. `open` holds the open runs of the
/// keys this transaction queued for so far, and is loaded for `run`'s key here.
fn queue_run(
    tx: &Transaction<'_>,
    open: &mut OpenByKey,
    run: &NewRun,
    now: &str,
) -> Result<QueueId, QueueError> {
    let failed = failed("queue a run");
    // Read before the insert, so that the new run is not among its own key's open runs.
    if !open.is_loaded(&run.repository, &run.git_ref) {
        let of_key = open_runs_of_key(tx, &run.repository, &run.git_ref)?;
        open.load(&run.repository, &run.git_ref, of_key);
    }
    let trigger = rows::trigger_text(&run.trigger)?;
    tx.prepare_cached(
        "INSERT INTO queued_runs (repository, git_ref, sha, pipeline_file, environment, trigger,
                                  state, queued_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'queued', ?7)",
    )
    .and_then(|mut insert| {
        insert.execute(params![
            run.repository,
            run.git_ref,
            run.sha,
            run.pipeline_file,
            run.environment,
            trigger,
            now
        ])
    })
    .map_err(&failed)?;
    let id = tx.last_insert_rowid();
    let plan = open.queue(&run.repository, &run.git_ref, id);
    for older in plan.superseded {
        tx.execute(
            "UPDATE queued_runs SET state = 'superseded', finished_at = ?2, message = ?3
             WHERE id = ?1",
            params![older, now, format!("superseded by run {id}")],
        )
        .map_err(&failed)?;
    }
    for running in plan.cancel {
        tx.execute(
            "UPDATE queued_runs SET cancel_requested = 1, message = ?2 WHERE id = ?1",
            params![running, format!("superseded by run {id}")],
        )
        .map_err(&failed)?;
    }
    Ok(id)
}

fn get_run(conn: &rusqlite::Connection, id: QueueId) -> Result<QueuedRun, QueueError> {
    let raw = conn
        .query_row(
            &format!("SELECT {COLUMNS} FROM queued_runs WHERE id = ?1"),
            [id],
            rows::raw_run,
        )
        .optional()
        .map_err(failed("read a queued run"))?;
    raw.ok_or(QueueError::UnknownRun { id })?.checked()
}

/// After an update by the lease holder changed nothing: `UnknownRun` or `LeaseLost`.
fn not_held(conn: &rusqlite::Connection, id: QueueId) -> QueueError {
    match get_run(conn, id) {
        Ok(_) => QueueError::LeaseLost { id },
        Err(err) => err,
    }
}

fn check_exists(conn: &rusqlite::Connection, id: QueueId) -> Result<(), QueueError> {
    let found: Option<i64> = conn
        .query_row("SELECT id FROM queued_runs WHERE id = ?1", [id], |row| {
            row.get(0)
        })
        .optional()
        .map_err(failed("read a queued run"))?;
    found.map(|_| ()).ok_or(QueueError::UnknownRun { id })
}

/// One group commit's batch (see `BatchWriter::write`) in one immediate transaction.
/// Duplicates are told by the primary key.
fn write_deliveries(db: &mut Db<'_>, batch: &[Accepting]) -> Result<Vec<Accepted>, QueueError> {
    let failed = failed("record a delivery");
    let tx = immediate(db, "record a delivery")?;
    let now = timestamp(&Utc::now());
    let mut open = OpenByKey::default();
    let mut answers = Vec::with_capacity(batch.len());
    for Accepting { delivery, runs } in batch {
        let inserted = tx
            .prepare_cached(
                "INSERT INTO deliveries (delivery_id, source, event, repository, git_ref, sha,
                                         ignored_because, received_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )
            .and_then(|mut insert| {
                insert.execute(params![
                    delivery.delivery_id,
                    rows::source_text(delivery.source),
                    delivery.event,
                    delivery.repository,
                    delivery.git_ref,
                    delivery.sha,
                    delivery.ignored_because,
                    timestamp(&delivery.received_at),
                ])
            });
        match inserted {
            Ok(_) => {}
            // The primary key is the redelivery check, also against a concurrent one. A
            // refused INSERT undoes only itself; the transaction goes on with the next one.
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == ErrorCode::ConstraintViolation =>
            {
                answers.push(Accepted::Duplicate);
                continue;
            }
            Err(e) => return Err(failed(e)),
        }
        let mut ids = Vec::with_capacity(runs.len());
        for run in runs {
            ids.push(queue_run(&tx, &mut open, run, &now)?);
        }
        answers.push(Accepted::Recorded { runs: ids });
    }
    tx.commit().map_err(&failed)?;
    Ok(answers)
}

#[async_trait]
impl Queue for SqliteQueue {
    async fn accept(
        &self,
        delivery: NewDelivery,
        runs: Vec<NewRun>,
    ) -> Result<Accepted, QueueError> {
        self.accepts.accept(delivery, runs).await
    }

    async fn enqueue(&self, run: NewRun) -> Result<QueueId, QueueError> {
        self.with(move |db| {
            let tx = immediate(db, "queue a run")?;
            let id = queue_run(
                &tx,
                &mut OpenByKey::default(),
                &run,
                &timestamp(&Utc::now()),
            )?;
            tx.commit().map_err(failed("queue a run"))?;
            Ok(id)
        })
        .await
    }

    async fn claim(&self, daemon: &str, lease: Duration) -> Result<Option<QueuedRun>, QueueError> {
        let daemon = daemon.to_owned();
        self.with(move |db| {
            let failed = failed("claim a run");
            let tx = immediate(db, "claim a run")?;
            let now = Utc::now();
            let Some(id) = next_claim(&open_runs(&tx)?, now) else {
                return Ok(None);
            };
            tx.execute(
                "UPDATE queued_runs SET state = 'running', claimed_by = ?2, lease_until = ?3,
                        started_at = COALESCE(started_at, ?4)
                 WHERE id = ?1",
                params![
                    id,
                    daemon,
                    timestamp(&lease_end(now, lease)),
                    timestamp(&now)
                ],
            )
            .map_err(&failed)?;
            let claimed = get_run(&tx, id)?;
            tx.commit().map_err(&failed)?;
            Ok(Some(claimed))
        })
        .await
    }

    async fn heartbeat(
        &self,
        daemon: &str,
        ids: &[QueueId],
        lease: Duration,
    ) -> Result<Renewal, QueueError> {
        let (daemon, ids) = (daemon.to_owned(), ids.to_vec());
        self.with(move |db| {
            let failed = failed("renew leases");
            let tx = immediate(db, "renew leases")?;
            let until = timestamp(&lease_end(Utc::now(), lease));
            let mut renewed = Vec::new();
            for &id in &ids {
                let asked: Option<bool> = tx
                    .query_row(
                        "UPDATE queued_runs SET lease_until = ?3
                         WHERE id = ?1 AND claimed_by = ?2 AND state = 'running'
                         RETURNING cancel_requested",
                        params![id, daemon, until],
                        |row| row.get(0),
                    )
                    .optional()
                    .map_err(&failed)?;
                if let Some(cancel) = asked {
                    renewed.push((id, cancel));
                }
            }
            tx.commit().map_err(&failed)?;
            Ok(Renewal::of(&ids, &renewed))
        })
        .await
    }

    async fn set_run_id(&self, daemon: &str, id: QueueId, run_id: &str) -> Result<(), QueueError> {
        let (daemon, run_id) = (daemon.to_owned(), run_id.to_owned());
        self.with(move |db| {
            let changed = db
                .conn
                .execute(
                    "UPDATE queued_runs SET run_id = ?3
                     WHERE id = ?1 AND claimed_by = ?2 AND state = 'running'",
                    params![id, daemon, run_id],
                )
                .map_err(failed("note a run's journal id"))?;
            match changed {
                0 => Err(not_held(db.conn, id)),
                _ => Ok(()),
            }
        })
        .await
    }

    async fn finish(
        &self,
        daemon: &str,
        id: QueueId,
        finished: Finished,
    ) -> Result<(), QueueError> {
        if matches!(finished.state, QueueState::Queued | QueueState::Running) {
            return Err(QueueError::Database {
                action: "finish a run",
                message: format!("`{}` is not how a run ends", state_text(finished.state)),
            });
        }
        let daemon = daemon.to_owned();
        self.with(move |db| {
            let changed = db
                .conn
                .execute(
                    "UPDATE queued_runs SET state = ?3, exit_code = ?4, message = ?5,
                            finished_at = ?6, lease_until = NULL
                     WHERE id = ?1 AND claimed_by = ?2 AND state = 'running'",
                    params![
                        id,
                        daemon,
                        state_text(finished.state),
                        finished.exit_code,
                        finished.message,
                        timestamp(&Utc::now()),
                    ],
                )
                .map_err(failed("finish a run"))?;
            match changed {
                0 => Err(not_held(db.conn, id)),
                _ => Ok(()),
            }
        })
        .await
    }

    async fn request_cancel(&self, id: QueueId) -> Result<QueuedRun, QueueError> {
        self.with(move |db| {
            let failed = failed("cancel a run");
            let tx = immediate(db, "cancel a run")?;
            let now = timestamp(&Utc::now());
            tx.execute(
                "UPDATE queued_runs SET state = 'cancelled', finished_at = ?2,
                        message = 'cancelled before it started'
                 WHERE id = ?1 AND state = 'queued'",
                params![id, now],
            )
            .map_err(&failed)?;
            tx.execute(
                "UPDATE queued_runs SET cancel_requested = 1, message = 'cancel requested'
                 WHERE id = ?1 AND state = 'running'",
                params![id],
            )
            .map_err(&failed)?;
            let run = get_run(&tx, id)?;
            tx.commit().map_err(&failed)?;
            Ok(run)
        })
        .await
    }

    async fn get(&self, id: QueueId) -> Result<QueuedRun, QueueError> {
        self.with(move |db| get_run(db.conn, id)).await
    }

    async fn list(&self, limit: usize) -> Result<Vec<QueuedRun>, QueueError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.with(move |db| {
            let failed = failed("list the queued runs");
            let mut statement = db
                .conn
                .prepare(&format!(
                    "SELECT {COLUMNS} FROM queued_runs ORDER BY id DESC LIMIT ?1"
                ))
                .map_err(&failed)?;
            let raw = statement
                .query_map([limit], rows::raw_run)
                .map_err(&failed)?
                .collect::<Result<Vec<_>, _>>()
                .map_err(&failed)?;
            raw.into_iter().map(rows::RawRun::checked).collect()
        })
        .await
    }

    async fn count_by_state(&self) -> Result<Vec<(QueueState, u64)>, QueueError> {
        self.with(move |db| {
            let failed = failed("count the queued runs");
            let mut statement = db
                .conn
                .prepare("SELECT state, COUNT(*) FROM queued_runs GROUP BY state")
                .map_err(&failed)?;
            let counted = statement
                .query_map([], |row| {
                    Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)?))
                })
                .map_err(&failed)?
                .collect::<Result<Vec<_>, _>>()
                .map_err(&failed)?;
            let mut counts: Vec<(QueueState, u64)> =
                rows::ALL_STATES.iter().map(|state| (*state, 0)).collect();
            for (state, count) in counted {
                let state = rows::parse_state(&state)?;
                if let Some(entry) = counts.iter_mut().find(|(s, _)| *s == state) {
                    entry.1 = u64::try_from(count).unwrap_or_default();
                }
            }
            Ok(counts)
        })
        .await
    }

    async fn append_log(&self, id: QueueId, lines: &[String]) -> Result<(), QueueError> {
        let lines = lines.to_vec();
        self.with(move |db| {
            let failed = failed("append to a run's log");
            let tx = immediate(db, "append to a run's log")?;
            check_exists(&tx, id)?;
            let last: i64 = tx
                .query_row(
                    "SELECT COALESCE(MAX(seq), 0) FROM run_log WHERE queue_id = ?1",
                    [id],
                    |row| row.get(0),
                )
                .map_err(&failed)?;
            {
                let mut insert = tx
                    .prepare("INSERT INTO run_log (queue_id, seq, line) VALUES (?1, ?2, ?3)")
                    .map_err(&failed)?;
                for (seq, line) in (last + 1..).zip(&lines) {
                    insert.execute(params![id, seq, line]).map_err(&failed)?;
                }
            }
            tx.commit().map_err(&failed)
        })
        .await
    }

    async fn log_after(
        &self,
        id: QueueId,
        after: u64,
        limit: usize,
    ) -> Result<Vec<(u64, String)>, QueueError> {
        let after = i64::try_from(after).unwrap_or(i64::MAX);
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.with(move |db| {
            let failed = failed("read a run's log");
            check_exists(db.conn, id)?;
            let mut statement = db
                .conn
                .prepare(
                    "SELECT seq, line FROM run_log WHERE queue_id = ?1 AND seq > ?2
                     ORDER BY seq LIMIT ?3",
                )
                .map_err(&failed)?;
            let lines = statement
                .query_map(params![id, after, limit], |row| {
                    Ok((row.get::<_, i64>(0)?, row.get::<_, String>(1)?))
                })
                .map_err(&failed)?
                .collect::<Result<Vec<_>, _>>()
                .map_err(&failed)?;
            Ok(lines
                .into_iter()
                .map(|(seq, line)| (u64::try_from(seq).unwrap_or_default(), line))
                .collect())
        })
        .await
    }

    async fn ping(&self) -> Result<(), QueueError> {
        self.with(|db| {
            // Taking the write lock proves the file is writable, not only readable.
            let tx = immediate(db, "reach the queue database")?;
            tx.query_row("SELECT COUNT(*) FROM queued_runs", [], |row| {
                row.get::<_, i64>(0)
            })
            .map_err(failed("reach the queue database"))?;
            tx.rollback().map_err(failed("reach the queue database"))
        })
        .await
    }
}

#[cfg(test)]
mod tests;
