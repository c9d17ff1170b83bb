//! One PostgreSQL database as the daemon's stores use it: a pool of connections with bounded
//! waits, the schema brought up to date once per pool, dedicated sessions for holds, and the
//! server's address with the password left out for every message.

use std::str::FromStr;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod, Runtime};
use tokio::sync::OnceCell;
use tokio_postgres::NoTls;
use tokio_postgres::config::Host;

use super::schema;

/// How long opening a connection may take before the call fails: a database that went away
/// must turn into an error the caller can retry, not a hang.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one call may wait for its statements; far above what any of them takes.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// TCP keepalives notice a server that vanished without closing the connection (a host that
/// died, a cut network) within about a minute, instead of the kernel's two hours.
const KEEPALIVE_IDLE: Duration = Duration::from_secs(30);
const TCP_USER_TIMEOUT: Duration = Duration::from_secs(30);
/// Connections one store keeps at most; holds have sessions of their own on top.
const POOL_SIZE: usize = 8;

/// Why a statement failed, whichever layer failed it.
#[derive(Debug, thiserror::Error)]
pub(crate) enum PostgresError {
    #[error("{}", describe(.0))]
    Statement(#[from] tokio_postgres::Error),
    #[error("{}", describe_pool(.0))]
    Pool(#[from] deadpool_postgres::PoolError),
    #[error("{0}")]
    PoolBuild(#[from] deadpool_postgres::BuildError),
    #[error("no answer within {} s", .0.as_secs())]
    Timeout(Duration),
    #[error("failed to {what} (schema migration {version}): {}", describe(.source))]
    Migration {
        what: &'static str,
        version: usize,
        #[source]
        source: tokio_postgres::Error,
    },
    #[error("its schema version {found} is newer than version {known} that this shipit knows")]
    NewerSchema { found: i64, known: usize },
    #[error("the URL is not a PostgreSQL connection string: {}", describe(.0))]
    Url(tokio_postgres::Error),
}

impl PostgresError {
    /// Whether the server could not be reached, or the connection broke: the same call may
    /// succeed once the server is back. A statement the server refused is not such an error.
    pub(crate) fn is_unavailable(&self) -> bool {
        match self {
            PostgresError::Statement(e) | PostgresError::Migration { source: e, .. } => {
                connection_lost(e)
            }
            // Connecting: also a database closed to new connections for a while
            // (`ALLOW_CONNECTIONS false`, SQLSTATE 55000).
            PostgresError::Pool(deadpool_postgres::PoolError::Backend(e)) => {
                connection_lost(e)
                    || e.code()
                        == Some(&tokio_postgres::error::SqlState::OBJECT_NOT_IN_PREREQUISITE_STATE)
            }
            PostgresError::Pool(deadpool_postgres::PoolError::Timeout(_))
            | PostgresError::Timeout(_) => true,
            _ => false,
        }
    }
}

/// A closed connection, a socket error (refused, reset, timed out), or the server saying it
/// is going away or not yet accepting connections (SQLSTATE class 08, 57P01–57P03).
fn connection_lost(e: &tokio_postgres::Error) -> bool {
    use tokio_postgres::error::SqlState;
    if let Some(code) = e.code() {
        return code.code().starts_with("08")
            || [
                SqlState::ADMIN_SHUTDOWN,
                SqlState::CRASH_SHUTDOWN,
                SqlState::CANNOT_CONNECT_NOW,
            ]
            .contains(code);
    }
    if e.is_closed() {
        return true;
    }
    let mut cause = std::error::Error::source(e);
    while let Some(source) = cause {
        if source.is::<std::io::Error>() {
            return true;
        }
        cause = source.source();
    }
    false
}

/// The server's own reason for a failed statement (tokio-postgres's message alone says only
/// "db error"), or the client's reason with its causes. The server's detail line is left out:
/// it can quote the values of a row.
fn describe(e: &tokio_postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        return format!("{} (SQLSTATE {})", db.message(), db.code().code());
    }
    let mut text = e.to_string();
    let mut cause = std::error::Error::source(e);
    while let Some(source) = cause {
        text.push_str(&format!(": {source}"));
        cause = source.source();
    }
    text
}

fn describe_pool(e: &deadpool_postgres::PoolError) -> String {
    match e {
        deadpool_postgres::PoolError::Backend(e) => describe(e),
        deadpool_postgres::PoolError::Timeout(_) => {
            "no connection within the pool's timeout (is the server reachable?)".to_owned()
        }
        other => other.to_string(),
    }
}

pub(crate) struct PostgresDatabase {
    config: tokio_postgres::Config,
    pool: Pool,
    /// `postgres://user@host:port/dbname`: the URL without its password.
    address: String,
    migrated: OnceCell<()>,
}

impl PostgresDatabase {
    /// The database at `url` (`postgres://user:password@host:port/dbname` or key=value form).
    /// Nothing connects here; the first call does, and migrates the schema.
    pub fn new(url: &str) -> Result<Self, PostgresError> {
        let mut config = tokio_postgres::Config::from_str(url).map_err(PostgresError::Url)?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        if config.get_application_name().is_none() {
            config.application_name("shipit");
        }
        config
            .keepalives(true)
            .keepalives_idle(KEEPALIVE_IDLE)
            .tcp_user_timeout(TCP_USER_TIMEOUT);
        let manager = Manager::from_config(
            config.clone(),
            NoTls,
            ManagerConfig {
                // Each connection taken from the pool is checked with a round trip first: one
                // whose session the server ended (a restart, pg_terminate_backend) is replaced
                // before the call uses it, instead of failing the call. Merely checking whether
                // the client saw its connection close (`Fast`) races with the close arriving.
                recycling_method: RecyclingMethod::Verified,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(POOL_SIZE)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(CALL_TIMEOUT))
            .create_timeout(Some(CONNECT_TIMEOUT))
            .recycle_timeout(Some(CONNECT_TIMEOUT))
            .build()?;
        Ok(PostgresDatabase {
            address: masked_address(&config),
            config,
            pool,
            migrated: OnceCell::new(),
        })
    }

    /// The server's address, without the password.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// A pooled connection, the schema migrated on the pool's first use.
    pub async fn connection(&self) -> Result<Object, PostgresError> {
        let mut client = bounded(self.pool.get()).await??;
        self.migrated
            .get_or_try_init(|| async { bounded(schema::migrate(&mut client)).await? })
            .await?;
        Ok(client)
    }

    /// A session of its own, outside the pool, for a hold that lives as long as the session:
    /// its connection task ends when the client is dropped, which ends the session.
    pub async fn dedicated_session(&self) -> Result<tokio_postgres::Client, PostgresError> {
        let (client, connection) = bounded(self.config.connect(NoTls)).await??;
        tokio::spawn(async move {
            // The error, if any, shows on the client's next statement.
            let _ = connection.await;
        });
        Ok(client)
    }
}

/// `work`, or `Timeout` once `CALL_TIMEOUT` has passed; dropping it mid-transaction rolls the
/// transaction back.
pub(crate) async fn bounded<T>(
    work: impl std::future::Future<Output = T>,
) -> Result<T, PostgresError> {
    tokio::time::timeout(CALL_TIMEOUT, work)
        .await
        .map_err(|_| PostgresError::Timeout(CALL_TIMEOUT))
}

/// `postgres://user@host:port/dbname`: what a message may show of a connection string.
fn masked_address(config: &tokio_postgres::Config) -> String {
    let user = config
        .get_user()
        .map(|u| format!("{u}@"))
        .unwrap_or_default();
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .enumerate()
        .map(|(index, host)| {
            let host = match host {
                Host::Tcp(name) => name.clone(),
                Host::Unix(path) => path.display().to_string(),
            };
            match config.get_ports().get(index).or(config.get_ports().first()) {
                Some(port) => format!("{host}:{port}"),
                None => host,
            }
        })
        .collect();
    let dbname = config.get_dbname().unwrap_or_default();
    format!("postgres://{user}{}/{dbname}", hosts.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_address_never_shows_the_password() {
        for url in [
            "postgres://shipit:s3cret-pw@127.0.0.1:5432/runs",
            "host=127.0.0.1 port=5432 user=shipit password=s3cret-pw dbname=runs",
        ] {
            let database = PostgresDatabase::new(url).unwrap();
            assert_eq!(database.address(), "postgres://shipit@127.0.0.1:5432/runs");
        }
    }

    #[test]
    fn a_bad_url_is_refused_without_echoing_it() {
        let err = PostgresDatabase::new("postgres://shipit:s3cret-pw@127.0.0.1:notaport/runs")
            .err()
            .expect("a bad port was accepted");
        assert!(!err.to_string().contains("s3cret-pw"), "{err}");
    }
}
