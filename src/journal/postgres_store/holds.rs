//! Holds as PostgreSQL session advisory locks: each lease keeps a session of its own holding
//! `pg_try_advisory_lock(key)`. The server releases the lock when the session ends, so a hold
//! never outlives its process, whatever way the process ends; dropping the lease unlocks at
//! once. The `holds` table names who took each lock, for `RunBusy` and `TargetBusy`; a row is
//! believed only while `pg_locks` shows its session still holding that lock, so the rows of
//! dead holders are never reported.
//!
//! A dropped lease unlocks on a task of its own (a drop cannot wait); the next hold taken on
//! the same key through the same store waits for that unlock first, so that "drop, then take
//! again" works in one process as it does with file locks.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio::sync::watch;
use tokio_postgres::Client;

use super::database::{PostgresDatabase, PostgresError, bounded};

/// How long a new hold waits for this store's own release of the same key still in flight.
const RELEASE_WAIT: Duration = Duration::from_secs(5);

/// The advisory lock key of `parts`: 64 bits of their SHA-256, each part length-prefixed so
/// that names are taken literally ((`a/b`, `c`) and (`a`, `b/c`) are different keys). The
/// `shipit` prefix keeps them apart from other applications' advisory locks in a shared
/// database; a collision of two keys would only make two holds exclude each other.
pub(crate) fn lock_key(parts: &[&str]) -> i64 {
    let mut hash = Sha256::new();
    hash.update(b"shipit");
    for part in parts {
        hash.update((part.len() as u64).to_be_bytes());
        hash.update(part.as_bytes());
    }
    let digest = hash.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    i64::from_be_bytes(first)
}

/// Who holds a lock, as far as the `holds` table knows.
pub(super) struct Holder {
    pub run_id: Option<String>,
    pub pid: Option<u32>,
}

/// The releases of this store's dropped leases still in flight, by key.
#[derive(Default, Clone)]
pub(super) struct Releases {
    in_flight: Arc<Mutex<HashMap<i64, watch::Receiver<bool>>>>,
}

impl Releases {
    async fn wait_for(&self, key: i64) {
        let pending = self
            .in_flight
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&key)
            .cloned();
        if let Some(mut done) = pending {
            // A release that takes longer is treated as gone: the lock attempt then reports
            // the hold busy, which the caller retries.
            let _ = tokio::time::timeout(RELEASE_WAIT, done.wait_for(|done| *done)).await;
        }
    }
}

/// A held lock: its session, and what to unlock when dropped.
struct Hold {
    session: Option<Client>,
    key: i64,
    releases: Releases,
}

impl Drop for Hold {
    fn drop(&mut self) {
        let Some(session) = self.session.take() else {
            return;
        };
        // Outside a runtime the session's connection task is gone with it, and the server
        // releases the lock as the connection closes.
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let (done, pending) = watch::channel(false);
        let key = self.key;
        let releases = self.releases.clone();
        releases
            .in_flight
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(key, pending);
        runtime.spawn(async move {
            // Unlocking explicitly, rather than only closing the session, makes the release
            // finished when the statement returns; closing follows.
            // The holder's row goes first, so that `holds` keeps one row per lock held, not
            // one per run ever held; a row left by a session that died is never believed and
            // is replaced by the next holder.
            let _ = bounded(async {
                session
                    .execute(
                        "DELETE FROM holds WHERE lock_key = $1 AND backend_pid = pg_backend_pid()",
                        &[&key],
                    )
                    .await?;
                session
                    .execute("SELECT pg_advisory_unlock($1)", &[&key])
                    .await
            })
            .await;
            drop(session);
            let mut in_flight = releases
                .in_flight
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if in_flight
                .get(&key)
                .is_some_and(|r| r.same_channel(&done.subscribe()))
            {
                in_flight.remove(&key);
            }
            let _ = done.send(true);
        });
    }
}

/// Takes the lock `key` for `run_id` (the run held, or the run deploying a target) on a session
/// of its own; `Ok(Err(holder))` when another session holds it.
pub(super) async fn try_hold(
    database: &PostgresDatabase,
    releases: &Releases,
    key: i64,
    run_id: &str,
) -> Result<Result<crate::journal::run_store::Lease, Holder>, PostgresError> {
    // The pooled connection migrates the schema (the `holds` table) on first use.
    drop(database.connection().await?);
    releases.wait_for(key).await;
    let session = database.dedicated_session().await?;
    let taken: bool = bounded(session.query_one("SELECT pg_try_advisory_lock($1)", &[&key]))
        .await??
        .try_get(0)?;
    if !taken {
        let holder = bounded(holder_of(&session, key)).await??;
        return Ok(Err(holder));
    }
    let pid = i64::from(std::process::id());
    // Written after the lock is taken, so a reader can come too early to see it; the error then
    // names no holder, as the contract allows. If this fails, the session is dropped and its
    // end releases the lock.
    bounded(session.execute(
        "INSERT INTO holds (lock_key, run_id, pid, backend_pid)
         VALUES ($1, $2, $3, pg_backend_pid())
         ON CONFLICT (lock_key) DO UPDATE
         SET run_id = EXCLUDED.run_id, pid = EXCLUDED.pid,
             backend_pid = EXCLUDED.backend_pid, taken_at = now()",
        &[&key, &run_id, &pid],
    ))
    .await??;
    let hold = Hold {
        session: Some(session),
        key,
        releases: releases.clone(),
    };
    Ok(Ok(crate::journal::run_store::Lease::new(hold)))
}

/// The recorded holder of `key`, if its session still holds the lock. `pg_locks` shows a
/// bigint advisory key as its high 32 bits in `classid` and its low 32 bits in `objid`, with
/// `objsubid` 1.
async fn holder_of(session: &Client, key: i64) -> Result<Holder, PostgresError> {
    let row = session
        .query_opt(
            "SELECT h.run_id, h.pid FROM holds h
             WHERE h.lock_key = $1
               AND EXISTS (
                 SELECT 1 FROM pg_locks l
                 WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
                   AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
                   AND l.pid = h.backend_pid
                   AND ((l.classid::bigint << 32) | l.objid::bigint) = $1)",
            &[&key],
        )
        .await?;
    Ok(match row {
        Some(row) => Holder {
            run_id: row.try_get(0)?,
            pid: u32::try_from(row.try_get::<_, i64>(1)?).ok(),
        },
        None => Holder {
            run_id: None,
            pid: None,
        },
    })
}
