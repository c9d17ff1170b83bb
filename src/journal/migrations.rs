//! The daemon database's schema, one numbered list of migrations for both databases it can live
//! in. Migration N is the same change written once for SQLite and once for PostgreSQL, so a
//! database of either kind at version N has the same tables with the same meaning. Each store
//! applies the missing ones when it first connects, all in one transaction, and records the
//! version: SQLite in `PRAGMA user_version` (`sqlite_store/schema.rs`), PostgreSQL in the
//! `shipit_schema` table under an advisory lock (`postgres_store/schema.rs`), so that two
//! daemons starting at once migrate once.
//!
//! Never edit a migration that has shipped: add the next one.

/// One step of the schema.
pub(crate) struct Migration {
    /// What the step does, for error messages.
    pub what: &'static str,
    /// The step on SQLite; empty when SQLite keeps that part outside the database (holds are
    /// `flock`ed files there).
    pub sqlite: &'static str,
    pub postgres: &'static str,
}

/// Every migration in order; a database's version is the number of them applied.
pub(crate) const MIGRATIONS: &[Migration] = &[
    // 1: the runs, each record's JSON beside its revision and its summary's columns, so that
    // listing reads no record. Timestamps are RFC 3339 text in UTC with nanoseconds on both
    // databases: exact (PostgreSQL's timestamptz keeps microseconds, and a summary must equal
    // the record's to the nanosecond) and in time order as text. The record stays text, not
    // jsonb, so that it reads back byte for byte and a damaged one can be reported as it is.
    //
    // On PostgreSQL the holds' holders too: a hold is a session advisory lock, which the server
    // releases when its session ends; `holds` names who took it, for the "busy" errors, and is
    // believed only while that session still holds the lock.
    Migration {
        what: "create the runs table",
        sqlite: "CREATE TABLE runs (
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
        postgres: "CREATE TABLE runs (
        run_id       TEXT   NOT NULL PRIMARY KEY,
        revision     BIGINT NOT NULL,
        pipeline     TEXT   NOT NULL,
        status       TEXT   NOT NULL,
        started_at   TEXT   NOT NULL,
        finished_at  TEXT,
        git_sha      TEXT,
        stages_done  BIGINT NOT NULL,
        stages_total BIGINT NOT NULL,
        record       TEXT   NOT NULL
    );
    CREATE INDEX runs_by_pipeline ON runs (pipeline, run_id);
    CREATE TABLE holds (
        lock_key    BIGINT      NOT NULL PRIMARY KEY,
        run_id      TEXT,
        pid         BIGINT      NOT NULL,
        backend_pid INTEGER     NOT NULL,
        taken_at    TIMESTAMPTZ NOT NULL DEFAULT now()
    );",
    },
    // 2: the daemon's queue (`daemon::queue`) in the same database as its journal, so that one
    // backup holds both: webhook deliveries (their id is the redelivery check), the runs they
    // queued with their claim and lease, and each run's log lines. SQLite keeps timestamps as in
    // 1, so that text order is time order (its lease checks compare them as text); PostgreSQL
    // as timestamptz, compared with the database's own clock, which every daemon shares.
    Migration {
        what: "create the queue tables",
        sqlite: "CREATE TABLE deliveries (
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
        postgres: "CREATE TABLE deliveries (
        delivery_id     TEXT        NOT NULL PRIMARY KEY,
        source          TEXT        NOT NULL,
        event           TEXT        NOT NULL,
        repository      TEXT,
        git_ref         TEXT,
        sha             TEXT,
        ignored_because TEXT,
        received_at     TIMESTAMPTZ NOT NULL
    );
    CREATE TABLE queued_runs (
        id               BIGINT      GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
        repository       TEXT        NOT NULL,
        git_ref          TEXT        NOT NULL,
        sha              TEXT        NOT NULL,
        pipeline_file    TEXT        NOT NULL,
        environment      TEXT,
        trigger          TEXT        NOT NULL,
        state            TEXT        NOT NULL,
        run_id           TEXT,
        claimed_by       TEXT,
        lease_until      TIMESTAMPTZ,
        cancel_requested BOOLEAN     NOT NULL DEFAULT false,
        exit_code        INTEGER,
        message          TEXT,
        queued_at        TIMESTAMPTZ NOT NULL,
        started_at       TIMESTAMPTZ,
        finished_at      TIMESTAMPTZ
    );
    CREATE INDEX queued_runs_by_state ON queued_runs (state, id);
    CREATE INDEX queued_runs_by_key ON queued_runs (repository, git_ref, state);
    CREATE TABLE run_log (
        queue_id BIGINT NOT NULL REFERENCES queued_runs (id),
        seq      BIGINT NOT NULL,
        line     TEXT   NOT NULL,
        PRIMARY KEY (queue_id, seq)
    );",
    },
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_migration_has_its_postgresql_step() {
        for (index, migration) in MIGRATIONS.iter().enumerate() {
            assert!(
                !migration.postgres.trim().is_empty(),
                "migration {} ({}) has no PostgreSQL step",
                index + 1,
                migration.what
            );
        }
    }
}
