//! Running the daemon: open the queue its configuration names, bind the listen address, serve
//! until shutdown is asked for.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::config::{DaemonConfig, StateConfig};
use super::http::{self, DockerFromEnv, Metrics, ServerState};
use super::queue::{PostgresQueue, Queue, QueueError};
use super::worker;
use crate::journal::{JournalError, PostgresRunStore, RunStore, SqliteRunStore};

/// How often a log stream polls the queue for new lines.
const LOG_POLL: Duration = Duration::from_millis(250);

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("failed to create {}: {source}", path.display())]
    CreateDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to open the queue: {0}")]
    Queue(#[source] QueueError),
    #[error("failed to open the run journal: {0}")]
    Journal(#[source] JournalError),
    #[error("failed to listen on {address}: {source}")]
    Bind {
        address: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to serve HTTP: {0}")]
    Serve(#[source] std::io::Error),
}

/// The queue the configuration names, reachable.
pub async fn open_queue(state: &StateConfig) -> Result<Arc<dyn Queue>, StartError> {
    match state {
        StateConfig::Sqlite { path } => {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).map_err(|source| StartError::CreateDir {
                    path: dir.to_path_buf(),
                    source,
                })?;
            }
            let queue: Arc<dyn Queue> = Arc::new(super::queue::SqliteQueue::new(path.clone()));
            // Opened (and migrated) now, so a bad path is an error at start, not at the first push.
            queue.ping().await.map_err(StartError::Queue)?;
            Ok(queue)
        }
        StateConfig::Postgres { url } => {
            let queue: Arc<dyn Queue> =
                Arc::new(PostgresQueue::new(url.expose()).map_err(StartError::Queue)?);
            // Reached (and migrated) now, for the same reason.
            queue.ping().await.map_err(StartError::Queue)?;
            Ok(queue)
        }
    }
}

/// The ingest side of the daemon, ready to serve: the queue opened and the address bound (so a
/// port in use is an error before anything else starts).
pub struct Ingest {
    pub listener: TcpListener,
    pub state: Arc<ServerState>,
}

impl Ingest {
    pub async fn prepare(
        config: DaemonConfig,
        queue: Arc<dyn Queue>,
        metrics: Arc<Metrics>,
        shutdown: CancellationToken,
    ) -> Result<Ingest, StartError> {
        let listener =
            TcpListener::bind(config.listen)
                .await
                .map_err(|source| StartError::Bind {
                    address: config.listen,
                    source,
                })?;
        let state = Arc::new(ServerState {
            config: Arc::new(config),
            queue,
            metrics,
            docker: Arc::new(DockerFromEnv),
            shutdown,
            log_poll: LOG_POLL,
        });
        Ok(Ingest { listener, state })
    }

    /// The address actually bound (the port the system chose for `:0`).
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.listener.local_addr().ok()
    }

    pub async fn serve(self) -> Result<(), StartError> {
        let shutdown = self.state.shutdown.clone();
        http::serve(self.listener, self.state, shutdown)
            .await
            .map_err(StartError::Serve)
    }
}

/// The journal store of the daemon's runs, beside the queue: the same SQLite file, or the same
/// PostgreSQL database that every daemon sharing the queue shares too (a run one daemon started
/// is resumed by another from this journal).
fn open_store(state: &StateConfig) -> Result<Arc<dyn RunStore>, StartError> {
    match state {
        StateConfig::Sqlite { path } => Ok(Arc::new(SqliteRunStore::new(path.clone()))),
        StateConfig::Postgres { url } => Ok(Arc::new(
            PostgresRunStore::new(url.expose()).map_err(StartError::Journal)?,
        )),
    }
}

/// Runs the daemon until `shutdown` is cancelled (SIGTERM, SIGINT): the HTTP server and the
/// worker side by side. On shutdown the server stops taking requests at once, and the worker
/// lets running stages finish for `shutdown_grace`, leaving the rest resumable.
pub async fn run(config: DaemonConfig, shutdown: CancellationToken) -> Result<(), StartError> {
    let queue = open_queue(&config.state).await?;
    let store = open_store(&config.state)?;
    let metrics = Arc::new(Metrics::new());
    let worker_config = Arc::new(config.clone());
    let ingest = Ingest::prepare(config, queue.clone(), metrics.clone(), shutdown.clone()).await?;
    if let Some(address) = ingest.local_addr() {
        tracing::info!(%address, "listening");
    }
    let worker = (worker_config.concurrency > 0)
        .then(|| worker::start(worker_config, queue, store, metrics, shutdown));
    let served = ingest.serve().await;
    if let Some(worker) = worker {
        worker.stopped().await;
    }
    served?;
    tracing::info!("stopped");
    Ok(())
}
