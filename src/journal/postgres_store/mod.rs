//! `PostgresRunStore`: the `RunStore` contract (see `run_store.rs`) kept in a PostgreSQL
//! database, for daemons on several machines sharing one store:
//!
//! ```text
//! runs           each record's JSON, its revision and its summary's columns beside it
//! holds          who holds each advisory lock, for the "busy" errors (see `holds.rs`)
//! shipit_schema  the migrations applied (see `journal/migrations.rs`)
//! ```
//!
//! `create` is one `INSERT … ON CONFLICT DO NOTHING`; `save` one transaction that reads the row
//! `FOR UPDATE`, checks its revision and writes it. Holds are session advisory locks, each on a
//! session of its own that the lease keeps, so the server releases them when the lease is
//! dropped or its process or connection dies.
//!
//! Every call is bounded (connect and statement timeouts), so a database that went away is an
//! error the caller can retry, and the pool reconnects once it is back. Messages name the
//! database by its address without the password.

mod database;
pub(crate) mod holds;
mod records;
mod schema;

#[cfg(test)]
pub(crate) mod test_database;
#[cfg(test)]
mod tests;

use async_trait::async_trait;

pub(crate) use database::{PostgresDatabase, PostgresError, bounded};

use super::encoded_record::EncodedRecord;
use super::error::JournalError;
use super::record::RunRecord;
use super::run_id::is_run_id;
use super::run_store::{Lease, RunStore};
use super::summary::ListedRun;
use holds::{Releases, lock_key, try_hold};
use records::failed;

pub struct PostgresRunStore {
    database: PostgresDatabase,
    releases: Releases,
}

impl PostgresRunStore {
    /// The store in the database at `url` (`postgres://user:password@host:port/dbname`). Nothing
    /// connects here: the first call connects and brings the schema up to date. A URL that
    /// cannot be read is refused, without repeating it (it holds a password).
    pub fn new(url: &str) -> Result<Self, JournalError> {
        let database = PostgresDatabase::new(url).map_err(|source| JournalError::Postgres {
            action: "read the connection string",
            database: "(not shown: it holds a password)".to_owned(),
            source: Box::new(source),
        })?;
        Ok(PostgresRunStore {
            database,
            releases: Releases::default(),
        })
    }

    /// The database's address, without the password.
    pub fn address(&self) -> &str {
        self.database.address()
    }
}

/// `InvalidRunId` unless `run_id` is one; every method checks this before anything else.
fn checked(run_id: &str) -> Result<String, JournalError> {
    if is_run_id(run_id) {
        Ok(run_id.to_owned())
    } else {
        Err(JournalError::InvalidRunId {
            run_id: run_id.to_owned(),
        })
    }
}

#[async_trait]
impl RunStore for PostgresRunStore {
    async fn create(&self, run: &mut RunRecord) -> Result<(), JournalError> {
        checked(&run.run_id)?;
        let encoded = EncodedRecord::at(run, 1)?;
        records::create(&self.database, &encoded).await?;
        run.revision = 1;
        Ok(())
    }

    async fn save(&self, run: &mut RunRecord) -> Result<(), JournalError> {
        checked(&run.run_id)?;
        let read = run.revision;
        let next = read.checked_add(1).ok_or_else(|| JournalError::Corrupt {
            path: self.address().into(),
            message: format!(
                "run `{}` has revision {read}, which cannot grow any further",
                run.run_id
            ),
        })?;
        let encoded = EncodedRecord::at(run, next)?;
        records::save(&self.database, read, &encoded).await?;
        run.revision = next;
        Ok(())
    }

    async fn load(&self, run_id: &str) -> Result<RunRecord, JournalError> {
        let run_id = checked(run_id)?;
        records::load(&self.database, &run_id).await
    }

    async fn list(&self) -> Result<Vec<ListedRun>, JournalError> {
        records::list(&self.database).await
    }

    async fn runs_of(&self, pipeline: &str) -> Result<Vec<RunRecord>, JournalError> {
        records::runs_of(&self.database, pipeline).await
    }

    async fn lock_run(&self, run_id: &str) -> Result<Lease, JournalError> {
        let run_id = checked(run_id)?;
        records::check_exists(&self.database, &run_id).await?;
        let key = lock_key(&["run", &run_id]);
        match try_hold(&self.database, &self.releases, key, &run_id)
            .await
            .map_err(failed(&self.database, "hold a run"))?
        {
            Ok(lease) => Ok(lease),
            Err(holder) => Err(JournalError::RunBusy {
                run_id,
                holder_pid: holder.pid,
            }),
        }
    }

    async fn try_lock_target(
        &self,
        pipeline: &str,
        target: &str,
        run_id: &str,
    ) -> Result<Lease, JournalError> {
        let run_id = checked(run_id)?;
        let key = lock_key(&["target", pipeline, target]);
        match try_hold(&self.database, &self.releases, key, &run_id)
            .await
            .map_err(failed(&self.database, "hold a deploy target"))?
        {
            Ok(lease) => Ok(lease),
            Err(holder) => Err(JournalError::TargetBusy {
                pipeline: pipeline.to_owned(),
                target: target.to_owned(),
                holder_run: holder.run_id,
                holder_pid: holder.pid,
            }),
        }
    }
}
