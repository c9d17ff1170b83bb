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
use super::queue::{Queue, QueueError};

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
    #[error(
        "the PostgreSQL queue is not available in this build yet; use `state: {{ sqlite: PATH }}`"
    )]
    PostgresUnavailable,
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
        StateConfig::Postgres { .. } => Err(StartError::PostgresUnavailable),
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

/// Runs the daemon until `shutdown` is cancelled (SIGTERM, SIGINT).
pub async fn run(config: DaemonConfig, shutdown: CancellationToken) -> Result<(), StartError> {
    let queue = open_queue(&config.state).await?;
    let metrics = Arc::new(Metrics::new());
    let ingest = Ingest::prepare(config, queue, metrics, shutdown).await?;
    if let Some(address) = ingest.local_addr() {
        tracing::info!(%address, "listening");
    }
    ingest.serve().await?;
    tracing::info!("stopped");
    Ok(())
}
