//! `PostgresQueue`: the queue contract (see `mod.rs`) in a PostgreSQL database, shared by any
//! number of daemons. The tables are migration 2 of the daemon database
//! (`journal/migrations.rs`), beside the PostgreSQL run store's.
//!
//! - `accept` is group-committed (`../group_commit.rs`): the deliveries that arrive while one
//!   transaction commits go together into the next, written in a fixed number of statements
//!   whatever their count (`runs_in_bulk.rs`): one `INSERT … ON CONFLICT DO NOTHING` of the
//!   deliveries tells the redeliveries, one INSERT queues the new runs, two UPDATEs supersede.
//! - `claim` picks candidates `FOR UPDATE SKIP LOCKED`, so daemons never wait for each other's
//!   rows, then takes a transaction advisory lock on the candidate's (repository, git ref) and
//!   checks again under it that no other run of that key is running: two daemons claiming runs
//!   of one key at once would otherwise each see none running yet.
//! - Leases and timestamps use the database's clock, which every daemon shares.
//!
//! Every call is bounded (connect and statement timeouts, `journal::postgres_store`), so a
//! database that went away is `QueueError::Unavailable` at once and the pool reconnects once it
//! is back. Messages name the database by its address without the password.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;

use super::group_commit::GroupCommit;
use super::{
    Accepted, Finished, HookSource, NewDelivery, NewRun, Queue, QueueError, QueueId, QueueState,
    QueuedRun, Renewal, Trigger,
};
use crate::journal::postgres_store::holds::lock_key;
use crate::journal::postgres_store::{PostgresDatabase, PostgresError, bounded};
use runs_in_bulk::{PostgresBatches, queue_runs};

/// How many claimable runs one claim looks at before it gives up for now: candidates are
/// skipped only when another daemon is claiming a run of the same key at that moment.
const CLAIM_CANDIDATES: i64 = 16;

const RUN_COLUMNS: &str = "id, repository, git_ref, sha, pipeline_file, environment, trigger, \
     state, run_id, claimed_by, lease_until, cancel_requested, exit_code, message, queued_at, \
     started_at, finished_at";

pub struct PostgresQueue {
    database: Arc<PostgresDatabase>,
    accepts: Arc<GroupCommit<PostgresBatches>>,
}

impl PostgresQueue {
    /// The queue in the database at `url`; nothing connects until the first call, which brings
    /// the schema up to date. A URL that cannot be read is refused without repeating it.
    pub fn new(url: &str) -> Result<Self, QueueError> {
        let database = PostgresDatabase::new(url).map_err(|e| QueueError::Database {
            action: "read the queue database's connection string",
            message: e.to_string(),
        })?;
        let database = Arc::new(database);
        Ok(PostgresQueue {
            accepts: Arc::new(GroupCommit::new(PostgresBatches::new(database.clone()))),
            database,
        })
    }

    /// The database's address, without the password.
    pub fn address(&self) -> &str {
        self.database.address()
    }
}

impl PostgresQueue {
    /// One call that does `action`: `work` on a pooled connection within the call's time
    /// bound, its failures turned into the `QueueError` that says `action`.
    async fn call<T>(
        &self,
        action: &'static str,
        work: impl AsyncFnOnce(&mut deadpool_postgres::Object) -> Result<T, Failure>,
    ) -> Result<T, QueueError> {
        let mut client = connection(&self.database, action).await?;
        let result = bounded(work(&mut client)).await;
        answer(&self.database, action, result)
    }
}

/// What a failed statement of a call that does `action` becomes: `Unavailable` when the
/// database could not be reached, else `Database`; both name the database without its
/// password.
fn failed(
    database: &PostgresDatabase,
    action: &'static str,
) -> impl Fn(PostgresError) -> QueueError + use<> {
    let address = database.address().to_owned();
    move |e| {
        let message = format!("{address}: {e}");
        if e.is_unavailable() {
            QueueError::Unavailable { action, message }
        } else {
            QueueError::Database { action, message }
        }
    }
}

/// A pooled connection for a call that does `action`.
async fn connection(
    database: &PostgresDatabase,
    action: &'static str,
) -> Result<deadpool_postgres::Object, QueueError> {
    database
        .connection()
        .await
        .map_err(failed(database, action))
}

/// A call's answer from its bounded statements: database failures and the timeout become a
/// `QueueError` saying `action`.
fn answer<T>(
    database: &PostgresDatabase,
    action: &'static str,
    result: Result<Result<T, Failure>, PostgresError>,
) -> Result<T, QueueError> {
    match result {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(Failure::Queue(e))) => Err(e),
        Ok(Err(Failure::Database(e))) | Err(e) => Err(failed(database, action)(e)),
    }
}

/// Why a call ended without its result: the database, or an answer of the contract.
enum Failure {
    Database(PostgresError),
    Queue(QueueError),
}

impl From<PostgresError> for Failure {
    fn from(e: PostgresError) -> Self {
        Failure::Database(e)
    }
}

impl From<tokio_postgres::Error> for Failure {
    fn from(e: tokio_postgres::Error) -> Self {
        Failure::Database(e.into())
    }
}

fn millis(lease: Duration) -> f64 {
    lease.as_secs_f64() * 1000.0
}

fn source_name(source: HookSource) -> &'static str {
    match source {
        HookSource::Github => "github",
        HookSource::Gitlab => "gitlab",
        HookSource::Generic => "generic",
    }
}

fn state_name(state: QueueState) -> &'static str {
    match state {
        QueueState::Queued => "queued",
        QueueState::Running => "running",
        QueueState::Succeeded => "succeeded",
        QueueState::Failed => "failed",
        QueueState::Cancelled => "cancelled",
        QueueState::Superseded => "superseded",
    }
}

const ALL_STATES: [QueueState; 6] = [
    QueueState::Queued,
    QueueState::Running,
    QueueState::Succeeded,
    QueueState::Failed,
    QueueState::Cancelled,
    QueueState::Superseded,
];

fn parse_state(text: &str) -> Option<QueueState> {
    ALL_STATES
        .into_iter()
        .find(|state| state_name(*state) == text)
}

/// The trigger as stored: its serde JSON (`{"kind":"webhook","delivery_id":…}`).
fn trigger_json(trigger: &Trigger) -> String {
    serde_json::to_string(trigger).unwrap_or_else(|_| "{}".to_owned())
}

fn parse_trigger(text: &str) -> Option<Trigger> {
    serde_json::from_str(text).ok()
}

/// A `queued_runs` row selected with `RUN_COLUMNS`.
fn queued_run(row: &Row) -> Result<QueuedRun, Failure> {
    let id: i64 = row.try_get(0)?;
    let damaged = |what: &str| {
        Failure::Queue(QueueError::Database {
            action: "read a queued run",
            message: format!("run {id} has {what}"),
        })
    };
    let state: String = row.try_get(7)?;
    let trigger: String = row.try_get(6)?;
    Ok(QueuedRun {
        id,
        run: NewRun {
            repository: row.try_get(1)?,
            git_ref: row.try_get(2)?,
            sha: row.try_get(3)?,
            pipeline_file: row.try_get(4)?,
            environment: row.try_get(5)?,
            trigger: parse_trigger(&trigger)
                .ok_or_else(|| damaged(&format!("an unknown trigger `{trigger}`")))?,
        },
        state: parse_state(&state)
            .ok_or_else(|| damaged(&format!("an unknown state `{state}`")))?,
        run_id: row.try_get(8)?,
        claimed_by: row.try_get(9)?,
        lease_until: row.try_get(10)?,
        cancel_requested: row.try_get(11)?,
        exit_code: row.try_get(12)?,
        message: row.try_get(13)?,
        queued_at: row.try_get::<_, DateTime<Utc>>(14)?,
        started_at: row.try_get(15)?,
        finished_at: row.try_get(16)?,
    })
}

/// The transaction advisory lock of a (repository, git ref): held by whoever queues or claims
/// a run of that key until its transaction ends, so that those never interleave.
fn key_lock(repository: &str, git_ref: &str) -> i64 {
    lock_key(&["queue key", repository, git_ref])
}

/// `UnknownRun` if no run `id` exists, else `LeaseLost`: what an update that matched no row
/// held by `daemon` means.
async fn missing_or_lost(
    client: &deadpool_postgres::Object,
    id: QueueId,
) -> Result<QueueError, Failure> {
    let exists = client
        .query_opt("SELECT 1 FROM queued_runs WHERE id = $1", &[&id])
        .await?
        .is_some();
    Ok(if exists {
        QueueError::LeaseLost { id }
    } else {
        QueueError::UnknownRun { id }
    })
}

#[async_trait]
impl Queue for PostgresQueue {
    async fn accept(
        &self,
        delivery: NewDelivery,
        runs: Vec<NewRun>,
    ) -> Result<Accepted, QueueError> {
        self.accepts.accept(delivery, runs).await
    }

    async fn enqueue(&self, run: NewRun) -> Result<QueueId, QueueError> {
        self.call("queue a run", async |client| {
            let tx = client.transaction().await?;
            let ids = queue_runs(&tx, &[&run]).await?;
            tx.commit().await?;
            ids.first().copied().ok_or_else(|| {
                Failure::Queue(QueueError::Database {
                    action: "queue a run",
                    message: "the insert returned no id".to_owned(),
                })
            })
        })
        .await
    }

    async fn claim(&self, daemon: &str, lease: Duration) -> Result<Option<QueuedRun>, QueueError> {
        self.call("claim a run", async |client| {
            let tx = client.transaction().await?;
            // Running runs whose lease ran out (their daemon died) first, keeping their journal
            // run id; then the oldest queued runs whose key has no running run.
            let candidates = tx
                .query(
                    "SELECT q.id, q.repository, q.git_ref FROM queued_runs q
                     WHERE (q.state = 'queued' AND NOT EXISTS (
                               SELECT 1 FROM queued_runs r
                               WHERE r.repository = q.repository AND r.git_ref = q.git_ref
                                 AND r.state = 'running'))
                        OR (q.state = 'running' AND q.lease_until <= now())
                     ORDER BY q.state = 'running' DESC, q.id
                     LIMIT $1
                     FOR UPDATE SKIP LOCKED",
                    &[&CLAIM_CANDIDATES],
                )
                .await?;
            for candidate in candidates {
                let id: i64 = candidate.try_get(0)?;
                let repository: String = candidate.try_get(1)?;
                let git_ref: String = candidate.try_get(2)?;
                let key = key_lock(&repository, &git_ref);
                let locked: bool = tx
                    .query_one("SELECT pg_try_advisory_xact_lock($1)", &[&key])
                    .await?
                    .try_get(0)?;
                if !locked {
                    continue;
                }
                // Under the key's lock, with a fresh snapshot: a run of this key that another
                // claim started and committed meanwhile shows here.
                let busy = tx
                    .query_opt(
                        "SELECT 1 FROM queued_runs
                         WHERE repository = $1 AND git_ref = $2 AND state = 'running'
                           AND id <> $3 AND lease_until > now()",
                        &[&repository, &git_ref, &id],
                    )
                    .await?
                    .is_some();
                if busy {
                    continue;
                }
                let statement = format!(
                    "UPDATE queued_runs
                     SET state = 'running', claimed_by = $2,
                         lease_until = now() + $3 * interval '1 millisecond',
                         started_at = coalesce(started_at, now())
                     WHERE id = $1
                     RETURNING {RUN_COLUMNS}"
                );
                let row = tx
                    .query_one(&statement, &[&id, &daemon, &millis(lease)])
                    .await?;
                let claimed = queued_run(&row)?;
                tx.commit().await?;
                return Ok(Some(claimed));
            }
            Ok(None)
        })
        .await
    }

    async fn heartbeat(
        &self,
        daemon: &str,
        ids: &[QueueId],
        lease: Duration,
    ) -> Result<Renewal, QueueError> {
        self.call("renew leases", async |client| {
            let rows = client
                .query(
                    "UPDATE queued_runs SET lease_until = now() + $3 * interval '1 millisecond'
                     WHERE id = ANY($1) AND claimed_by = $2 AND state = 'running'
                     RETURNING id, cancel_requested",
                    &[&ids, &daemon, &millis(lease)],
                )
                .await?;
            let renewed = rows
                .iter()
                .map(|row| Ok((row.try_get(0)?, row.try_get(1)?)))
                .collect::<Result<Vec<(QueueId, bool)>, tokio_postgres::Error>>()?;
            Ok(Renewal::of(ids, &renewed))
        })
        .await
    }

    async fn set_run_id(&self, daemon: &str, id: QueueId, run_id: &str) -> Result<(), QueueError> {
        self.call("note a run's journal id", async |client| {
            let changed = client
                .execute(
                    "UPDATE queued_runs SET run_id = $3
                     WHERE id = $1 AND claimed_by = $2 AND state = 'running'",
                    &[&id, &daemon, &run_id],
                )
                .await?;
            if changed == 0 {
                return Err(Failure::Queue(missing_or_lost(client, id).await?));
            }
            Ok(())
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
                message: format!("`{}` is not how a run ends", state_name(finished.state)),
            });
        }
        self.call("finish a run", async |client| {
            let changed = client
                .execute(
                    "UPDATE queued_runs
                     SET state = $3, exit_code = $4, message = $5, finished_at = now(),
                         lease_until = NULL
                     WHERE id = $1 AND claimed_by = $2 AND state = 'running'",
                    &[
                        &id,
                        &daemon,
                        &state_name(finished.state),
                        &finished.exit_code,
                        &finished.message,
                    ],
                )
                .await?;
            if changed == 0 {
                return Err(Failure::Queue(missing_or_lost(client, id).await?));
            }
            Ok(())
        })
        .await
    }

    async fn request_cancel(&self, id: QueueId) -> Result<QueuedRun, QueueError> {
        self.call("cancel a run", async |client| {
            // One statement per state, each a no-op for the others: a queued run ends at once,
            // a running one is asked to stop, a finished one stays as it ended.
            let statement = format!(
                "UPDATE queued_runs
                 SET cancel_requested = state IN ('queued', 'running') OR cancel_requested,
                     state = CASE WHEN state = 'queued' THEN 'cancelled' ELSE state END,
                     finished_at = CASE WHEN state = 'queued' THEN now() ELSE finished_at END,
                     message = CASE WHEN state = 'queued' THEN 'cancelled before it started'
                                    WHEN state = 'running' THEN 'cancel requested'
                                    ELSE message END
                 WHERE id = $1
                 RETURNING {RUN_COLUMNS}"
            );
            let row = client.query_opt(&statement, &[&id]).await?;
            match row {
                Some(row) => queued_run(&row),
                None => Err(Failure::Queue(QueueError::UnknownRun { id })),
            }
        })
        .await
    }

    async fn get(&self, id: QueueId) -> Result<QueuedRun, QueueError> {
        self.call("read a queued run", async |client| {
            let statement = format!("SELECT {RUN_COLUMNS} FROM queued_runs WHERE id = $1");
            match client.query_opt(&statement, &[&id]).await? {
                Some(row) => queued_run(&row),
                None => Err(Failure::Queue(QueueError::UnknownRun { id })),
            }
        })
        .await
    }

    async fn list(&self, limit: usize) -> Result<Vec<QueuedRun>, QueueError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.call("list the queued runs", async |client| {
            let statement =
                format!("SELECT {RUN_COLUMNS} FROM queued_runs ORDER BY id DESC LIMIT $1");
            let rows = client.query(&statement, &[&limit]).await?;
            rows.iter().map(queued_run).collect()
        })
        .await
    }

    async fn count_by_state(&self) -> Result<Vec<(QueueState, u64)>, QueueError> {
        self.call("count the queued runs", async |client| {
            let rows = client
                .query(
                    "SELECT state, count(*) FROM queued_runs GROUP BY state ORDER BY state",
                    &[],
                )
                .await?;
            // Every state, those with no run at 0, so that /metrics shows each one.
            let mut counts: Vec<(QueueState, u64)> =
                ALL_STATES.iter().map(|state| (*state, 0)).collect();
            for row in rows {
                let state: String = row.try_get(0)?;
                let count: i64 = row.try_get(1)?;
                if let Some(entry) = counts
                    .iter_mut()
                    .find(|(known, _)| Some(*known) == parse_state(&state))
                {
                    entry.1 = u64::try_from(count).unwrap_or_default();
                }
            }
            Ok(counts)
        })
        .await
    }

    async fn append_log(&self, id: QueueId, lines: &[String]) -> Result<(), QueueError> {
        self.call("append to a run's log", async |client| {
            let tx = client.transaction().await?;
            // The run's row lock orders concurrent appends to one log.
            let exists = tx
                .query_opt("SELECT 1 FROM queued_runs WHERE id = $1 FOR UPDATE", &[&id])
                .await?
                .is_some();
            if !exists {
                return Err(Failure::Queue(QueueError::UnknownRun { id }));
            }
            let params: [&(dyn ToSql + Sync); 2] = [&id, &lines];
            tx.execute(
                "INSERT INTO run_log (queue_id, seq, line)
                 SELECT $1, base.seq + numbered.n, numbered.line
                 FROM (SELECT coalesce(max(seq), 0) AS seq FROM run_log WHERE queue_id = $1) base,
                      unnest($2::text[]) WITH ORDINALITY AS numbered (line, n)",
                &params,
            )
            .await?;
            tx.commit().await?;
            Ok(())
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
        self.call("read a run's log", async |client| {
            let rows = client
                .query(
                    "SELECT seq, line FROM run_log WHERE queue_id = $1 AND seq > $2
                     ORDER BY seq LIMIT $3",
                    &[&id, &after, &limit],
                )
                .await?;
            if rows.is_empty()
                && client
                    .query_opt("SELECT 1 FROM queued_runs WHERE id = $1", &[&id])
                    .await?
                    .is_none()
            {
                return Err(Failure::Queue(QueueError::UnknownRun { id }));
            }
            let mut lines = Vec::with_capacity(rows.len());
            for row in rows {
                let seq: i64 = row.try_get(0)?;
                lines.push((u64::try_from(seq).unwrap_or_default(), row.try_get(1)?));
            }
            Ok(lines)
        })
        .await
    }

    async fn ping(&self) -> Result<(), QueueError> {
        self.call("reach the queue database", async |client| {
            // A standby answers reads but refuses writes: not ready.
            let read_only: bool = client
                .query_one("SELECT pg_is_in_recovery()", &[])
                .await?
                .try_get(0)?;
            if read_only {
                return Err(Failure::Queue(QueueError::Database {
                    action: "reach the queue database",
                    message: "the server is a read-only standby".to_owned(),
                }));
            }
            Ok(())
        })
        .await
    }
}

mod runs_in_bulk;
#[cfg(test)]
mod tests;
