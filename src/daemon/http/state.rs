//! What every handler shares: the configuration, the queue, the metrics, the probes `/readyz`
//! runs, and the token that says the daemon is shutting down (log streams end on it, so a
//! graceful shutdown is not held open by a follower).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio_util::sync::CancellationToken;

use super::metrics::Metrics;
use crate::daemon::config::DaemonConfig;
use crate::daemon::queue::Queue;

pub struct ServerState {
    pub config: Arc<DaemonConfig>,
    pub queue: Arc<dyn Queue>,
    pub metrics: Arc<Metrics>,
    pub docker: Arc<dyn DockerProbe>,
    pub shutdown: CancellationToken,
    /// How often a log stream asks the queue for new lines. The queue, not this process, is
    /// where lines arrive: another daemon sharing the database may be running the job.
    pub log_poll: Duration,
}

/// Is the Docker daemon the runs will build with reachable?
#[async_trait]
pub trait DockerProbe: Send + Sync {
    /// `Err` carries a one-line reason, shown by `/readyz`.
    async fn ping(&self) -> Result<(), String>;
}

/// The Docker daemon named by the environment (`DOCKER_HOST`), reached the way every stage
/// reaches it (`docker::connect`).
pub struct DockerFromEnv;

/// A readiness probe answers in time or counts as down.
const DOCKER_PING_TIMEOUT: Duration = Duration::from_secs(3);

#[async_trait]
impl DockerProbe for DockerFromEnv {
    async fn ping(&self) -> Result<(), String> {
        match tokio::time::timeout(DOCKER_PING_TIMEOUT, crate::docker::connect()).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(err)) => Err(err.to_string()),
            Err(_) => Err(format!(
                "no answer within {} s",
                DOCKER_PING_TIMEOUT.as_secs()
            )),
        }
    }
}
