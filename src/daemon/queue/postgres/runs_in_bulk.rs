//! The PostgreSQL queue's writes of many deliveries and runs at once, in a fixed number of
//! statements whatever their count: the group commit's batch (`PostgresBatches`) and the runs
//! one call queues (`queue_runs`). Arrays go in through `unnest`, so a batch of 200 deliveries
//! is one INSERT, not 200 round trips, and the order of the batch is the order of the ids.
//! Statements are prepared once per connection (`prepare_cached`).

use std::collections::HashSet;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use tokio_postgres::Statement;

use super::{Failure, answer, connection, key_lock, source_name, trigger_json};
use crate::daemon::queue::group_commit::{Accepting, BatchWriter};
use crate::daemon::queue::{Accepted, NewRun, QueueError, QueueId};
use crate::journal::postgres_store::{PostgresDatabase, bounded};

/// The group commit's transactions.
pub(in crate::daemon::queue) struct PostgresBatches {
    database: Arc<PostgresDatabase>,
    /// The connection the last batch committed on, kept for the next: the pool checks a
    /// connection with a round trip each time it hands one out, a fourth round trip per batch.
    /// Only one batch is written at a time, so the lock is never contended. A batch that finds
    /// the kept connection closed by the server is written again on one the pool checks.
    kept: tokio::sync::Mutex<Option<deadpool_postgres::Object>>,
}

impl PostgresBatches {
    pub(in crate::daemon::queue) fn new(database: Arc<PostgresDatabase>) -> Self {
        PostgresBatches {
            database,
            kept: tokio::sync::Mutex::new(None),
        }
    }
}

#[async_trait]
impl BatchWriter for PostgresBatches {
    async fn write(&self, batch: &[Accepting]) -> Result<Vec<Accepted>, QueueError> {
        let mut kept = self.kept.lock().await;
        if let Some(client) = kept.take() {
            match self.write_on(client, batch).await {
                Ok((answers, client)) => {
                    *kept = Some(client);
                    return Ok(answers);
                }
                // The server closed the kept connection (a restart, an idle timeout): once
                // more on a connection the pool checks. Deliveries a lost COMMIT did record
                // are told as duplicates then, and their runs are queued once.
                Err(err) if err.is_unavailable() => {}
                Err(err) => return Err(err),
            }
        }
        let client = connection(&self.database, "record a delivery").await?;
        let (answers, client) = self.write_on(client, batch).await?;
        *kept = Some(client);
        Ok(answers)
    }
}

impl PostgresBatches {
    /// The batch on `client`; the connection back once committed, fit to serve again.
    async fn write_on(
        &self,
        client: deadpool_postgres::Object,
        batch: &[Accepting],
    ) -> Result<(Vec<Accepted>, deadpool_postgres::Object), QueueError> {
        let session = Discarded(Some(client));
        let result = bounded(write_batch(
            session.0.as_ref().expect("set just above"),
            batch,
        ))
        .await;
        let answers = answer(&self.database, "record a delivery", result)?;
        Ok((answers, session.keep()))
    }
}

/// A pooled connection that is closed, not returned, when dropped: one whose transaction was
/// left open (an error, the call's timeout) must not serve another call. Closing it ends the
/// transaction, which the server rolls back.
struct Discarded(Option<deadpool_postgres::Object>);

impl Discarded {
    /// The connection, which is fit to serve again.
    fn keep(mut self) -> deadpool_postgres::Object {
        self.0
            .take()
            .expect("a session holds its connection until kept or dropped")
    }
}

impl Drop for Discarded {
    fn drop(&mut self) {
        if let Some(client) = self.0.take() {
            drop(deadpool_postgres::Object::take(client));
        }
    }
}

/// The batch in one transaction and three round trips: BEGIN, the deliveries and the keys'
/// locks sent together; the runs; the supersession and COMMIT sent together. The server runs
/// pipelined statements in the order they were sent, and a failed one aborts the transaction,
/// so that the COMMIT behind it commits nothing (its error is the one reported).
async fn write_batch(
    client: &deadpool_postgres::Object,
    batch: &[Accepting],
) -> Result<Vec<Accepted>, Failure> {
    // The keys of every run the batch names (a redelivery's too: locking them is harmless).
    let every_run: Vec<&NewRun> = batch.iter().flat_map(|item| &item.runs).collect();
    // `biased`: polled in this order, so sent in this order, and the first statement's error
    // is the one reported (those behind it only say the transaction is aborted).
    let ((), recorded, ()) = tokio::try_join!(
        biased;
        async { client.batch_execute("BEGIN").await.map_err(Failure::from) },
        insert_deliveries(client, batch),
        lock_keys(client, &every_run)
    )?;
    let runs: Vec<&NewRun> = batch
        .iter()
        .zip(&recorded)
        .filter(|(_, recorded)| **recorded)
        .flat_map(|(item, _)| &item.runs)
        .collect();
    let ids = insert_runs(client, &runs).await?;
    // Prepared first (once per connection), so that sending them waits for nothing and the
    // COMMIT behind them is sent last.
    let statements = supersession(client).await?;
    tokio::try_join!(biased; supersede(client, &statements, &runs, &ids), async {
        client.batch_execute("COMMIT").await.map_err(Failure::from)
    })?;
    // Each recorded delivery takes as many ids, in order, as it queued runs.
    let mut ids = ids.into_iter();
    Ok(batch
        .iter()
        .zip(recorded)
        .map(|(item, recorded)| match recorded {
            true => Accepted::Recorded {
                runs: ids.by_ref().take(item.runs.len()).collect(),
            },
            false => Accepted::Duplicate,
        })
        .collect())
}

/// Inserts the batch's deliveries in one statement; which of them were new. `ON CONFLICT DO
/// NOTHING` skips an id the table holds and a repeat of an id earlier in the batch alike; of
/// repeats within the batch, the first is the one recorded.
async fn insert_deliveries(
    tx: &impl GenericClient,
    batch: &[Accepting],
) -> Result<Vec<bool>, Failure> {
    let column = |get: fn(&Accepting) -> Option<&str>| batch.iter().map(get).collect::<Vec<_>>();
    let ids = column(|a| Some(&a.delivery.delivery_id));
    let sources = column(|a| Some(source_name(a.delivery.source)));
    let events = column(|a| Some(&a.delivery.event));
    let repositories = column(|a| a.delivery.repository.as_deref());
    let git_refs = column(|a| a.delivery.git_ref.as_deref());
    let shas = column(|a| a.delivery.sha.as_deref());
    let ignored = column(|a| a.delivery.ignored_because.as_deref());
    let received: Vec<DateTime<Utc>> = batch.iter().map(|a| a.delivery.received_at).collect();
    let insert = tx
        .prepare_cached(
            "INSERT INTO deliveries (delivery_id, source, event, repository, git_ref, sha,
                                     ignored_because, received_at)
             SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[],
                                  $6::text[], $7::text[], $8::timestamptz[])
             ON CONFLICT (delivery_id) DO NOTHING
             RETURNING delivery_id",
        )
        .await?;
    let inserted: HashSet<String> = tx
        .query(
            &insert,
            &[
                &ids,
                &sources,
                &events,
                &repositories,
                &git_refs,
                &shas,
                &ignored,
                &received,
            ],
        )
        .await?
        .iter()
        .map(|row| row.try_get(0))
        .collect::<Result<_, _>>()?;
    let mut taken = HashSet::new();
    Ok(batch
        .iter()
        .map(|a| {
            let id = &a.delivery.delivery_id;
            inserted.contains(id) && taken.insert(id)
        })
        .collect())
}

/// Queues `runs` in their order (see `insert_runs`) under their keys' locks, in the caller's
/// transaction; the ids, in order.
pub(super) async fn queue_runs(
    tx: &deadpool_postgres::Transaction<'_>,
    runs: &[&NewRun],
) -> Result<Vec<QueueId>, Failure> {
    lock_keys(tx, runs).await?;
    let ids = insert_runs(tx, runs).await?;
    let statements = supersession(tx).await?;
    supersede(tx, &statements, runs, &ids).await?;
    Ok(ids)
}

/// Takes the transaction lock of each (repository, git ref) of `runs`, in one order for all
/// callers, so that two transactions naming the same keys never wait for each other in a
/// circle, and runs of one key are queued (and supersede) one transaction after the other.
async fn lock_keys(tx: &impl GenericClient, runs: &[&NewRun]) -> Result<(), Failure> {
    let mut keys: Vec<i64> = runs
        .iter()
        .map(|run| key_lock(&run.repository, &run.git_ref))
        .collect();
    keys.sort_unstable();
    keys.dedup();
    let lock = tx
        .prepare_cached("SELECT pg_advisory_xact_lock($1)")
        .await?;
    for key in keys {
        tx.execute(&lock, &[&key]).await?;
    }
    Ok(())
}

/// Inserts `runs` in their order, queued; the caller holds their keys' locks. The ids, in
/// order.
async fn insert_runs(tx: &impl GenericClient, runs: &[&NewRun]) -> Result<Vec<QueueId>, Failure> {
    if runs.is_empty() {
        return Ok(Vec::new());
    }
    let repositories: Vec<&str> = runs.iter().map(|r| r.repository.as_str()).collect();
    let git_refs: Vec<&str> = runs.iter().map(|r| r.git_ref.as_str()).collect();
    let shas: Vec<&str> = runs.iter().map(|r| r.sha.as_str()).collect();
    let pipelines: Vec<&str> = runs.iter().map(|r| r.pipeline_file.as_str()).collect();
    let environments: Vec<Option<&str>> = runs.iter().map(|r| r.environment.as_deref()).collect();
    let triggers: Vec<String> = runs.iter().map(|r| trigger_json(&r.trigger)).collect();
    // Identity values are drawn in insertion order, which follows `ORDER BY ord`: the sorted
    // ids are the runs' in order.
    let insert = tx
        .prepare_cached(
            "INSERT INTO queued_runs (repository, git_ref, sha, pipeline_file, environment,
                                      trigger, state, queued_at)
             SELECT repository, git_ref, sha, pipeline_file, environment, trigger, 'queued', now()
             FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[])
                  WITH ORDINALITY AS r(repository, git_ref, sha, pipeline_file, environment,
                                       trigger, ord)
             ORDER BY ord
             RETURNING id",
        )
        .await?;
    let mut ids: Vec<QueueId> = tx
        .query(
            &insert,
            &[
                &repositories,
                &git_refs,
                &shas,
                &pipelines,
                &environments,
                &triggers,
            ],
        )
        .await?
        .iter()
        .map(|row| row.try_get(0))
        .collect::<Result<_, _>>()?;
    ids.sort_unstable();
    Ok(ids)
}

/// The two supersession statements (see `supersede`), prepared on `tx`'s connection.
struct Supersession {
    queued: Statement,
    running: Statement,
}

async fn supersession(tx: &impl GenericClient) -> Result<Supersession, Failure> {
    // For each older run of a key, the newer runs of the same key: the first supersedes a
    // queued one, the last asks a running one to cancel, as if queued one after the other.
    let newer = |state: &str, pick: &str| {
        format!(
            "SELECT o.id, (SELECT {pick}(n.id)
                           FROM unnest($1::bigint[], $2::text[], $3::text[])
                                AS n(id, repository, git_ref)
                           WHERE n.repository = o.repository AND n.git_ref = o.git_ref
                             AND n.id > o.id) AS by
             FROM queued_runs o
             WHERE o.state = '{state}'
               AND (o.repository, o.git_ref) IN (SELECT * FROM unnest($2::text[], $3::text[]))"
        )
    };
    let queued = tx
        .prepare_cached(&format!(
            "UPDATE queued_runs q
             SET state = 'superseded', finished_at = now(), message = 'superseded by run ' || s.by
             FROM ({}) s
             WHERE q.id = s.id AND s.by IS NOT NULL",
            newer("queued", "min")
        ))
        .await?;
    let running = tx
        .prepare_cached(&format!(
            "UPDATE queued_runs q
             SET cancel_requested = true, message = 'superseded by run ' || s.by
             FROM ({}) s
             WHERE q.id = s.id AND s.by IS NOT NULL",
            newer("running", "max")
        ))
        .await?;
    Ok(Supersession { queued, running })
}

/// Each of `runs` (queued as `ids`) supersedes the older runs of its (repository, git ref), as
/// if they were queued one after the other: a queued one ends `Superseded` by the first newer
/// run, a running one is asked to cancel by the newest. Both statements are sent at once; the
/// second on its own, so that it sees a run a concurrent claim has just started.
async fn supersede(
    tx: &impl GenericClient,
    statements: &Supersession,
    runs: &[&NewRun],
    ids: &[QueueId],
) -> Result<(), Failure> {
    if runs.is_empty() {
        return Ok(());
    }
    let repositories: Vec<&str> = runs.iter().map(|r| r.repository.as_str()).collect();
    let git_refs: Vec<&str> = runs.iter().map(|r| r.git_ref.as_str()).collect();
    let params: [&(dyn tokio_postgres::types::ToSql + Sync); 3] = [&ids, &repositories, &git_refs];
    tokio::try_join!(
        biased;
        tx.execute(&statements.queued, &params),
        tx.execute(&statements.running, &params)
    )?;
    Ok(())
}
