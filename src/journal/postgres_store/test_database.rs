//! A database of a test's own on the test environment's PostgreSQL server
//! (`SHIPIT_TEST_POSTGRES_URL`, written by `scripts/testenv up`): created with a random name,
//! dropped when the test ends, so tests run in parallel without seeing each other's rows.

use std::str::FromStr;

/// Where the server is; the tests fail, never skip, without it.
const URL_VARIABLE: &str = "SHIPIT_TEST_POSTGRES_URL";

pub(crate) struct TestDatabase {
    /// The server's URL as given, naming its maintenance database.
    server: String,
    name: String,
    url: String,
}

impl TestDatabase {
    /// A new, empty database.
    pub async fn create() -> TestDatabase {
        let server = std::env::var(URL_VARIABLE).unwrap_or_else(|_| {
            panic!(
                "{URL_VARIABLE} is not set: these tests need the test environment's PostgreSQL server; \
                 run them through scripts/test, or `scripts/testenv up` and export the variables of \
                 the file `scripts/testenv env` names"
            )
        });
        let name = format!("shipit_test_{:016x}", rand::random::<u64>());
        let Some((base, _maintenance_db)) = server.rsplit_once('/') else {
            panic!("{URL_VARIABLE} is not a postgres://…/dbname URL");
        };
        let url = format!("{base}/{name}");
        let admin = connect(&server).await;
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .unwrap_or_else(|e| panic!("failed to create test database {name}: {e}"));
        TestDatabase { server, name, url }
    }

    /// `create` from synchronous code running on a multi-threaded runtime (the conformance
    /// macros make their store in a plain closure).
    pub fn create_blocking() -> TestDatabase {
        tokio::task::block_in_place(|| {
            tokio::runtime::Handle::current().block_on(TestDatabase::create())
        })
    }

    /// The URL of this database, with the server's credentials.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// A connection to the server's maintenance database, which outlives this database's
    /// sessions.
    pub async fn admin(&self) -> tokio_postgres::Client {
        connect(&self.server).await
    }

    /// Ends every session of the tests' role on this database, as a server restart would.
    /// Only those: an autovacuum worker on the database is the superuser's, and ending it is
    /// refused to the tests' role (which made this fail now and then).
    pub async fn end_sessions(&self, admin: &tokio_postgres::Client) {
        admin
            .execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
                 WHERE datname = $1 AND usename = current_user AND pid <> pg_backend_pid()",
                &[&self.name],
            )
            .await
            .unwrap_or_else(|e| panic!("failed to end the sessions on {}: {e}", self.name));
    }

    /// Makes this database unreachable: no new session is let in, and the open ones end.
    pub async fn go_away(&self, admin: &tokio_postgres::Client) {
        admin
            .batch_execute(&format!(
                "ALTER DATABASE {} ALLOW_CONNECTIONS false",
                self.name
            ))
            .await
            .unwrap_or_else(|e| panic!("failed to close {} to new sessions: {e}", self.name));
        self.end_sessions(admin).await;
    }

    /// Lets sessions in again after `go_away`.
    pub async fn come_back(&self, admin: &tokio_postgres::Client) {
        admin
            .batch_execute(&format!(
                "ALTER DATABASE {} ALLOW_CONNECTIONS true",
                self.name
            ))
            .await
            .unwrap_or_else(|e| panic!("failed to open {} to sessions: {e}", self.name));
    }

    /// A connection of the test's own, as another process would open one.
    pub async fn raw(&self) -> tokio_postgres::Client {
        connect(&self.url).await
    }
}

async fn connect(url: &str) -> tokio_postgres::Client {
    let config = tokio_postgres::Config::from_str(url)
        .unwrap_or_else(|_| panic!("{URL_VARIABLE} is not a PostgreSQL URL"));
    let (client, connection) = config
        .connect(tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("failed to connect to the test PostgreSQL server: {e}"));
    tokio::spawn(connection);
    client
}

impl Drop for TestDatabase {
    /// Drops the database on a thread and runtime of its own: a drop cannot await, and the
    /// test's runtime may be shutting down. `FORCE` ends the sessions the test left open.
    fn drop(&mut self) {
        let (server, name) = (self.server.clone(), self.name.clone());
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(async move {
                let admin = connect(&server).await;
                admin
                    .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .await
                    .map_err(std::io::Error::other)
            })
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) {
            eprintln!("warning: test database {} was not dropped", self.name);
        }
    }
}
