//! One Docker daemon connection per process, opened the first time a stage needs it, so that
//! `validate`, `plan` of a pipeline without images, and the ECS/EKS stages never need a daemon.

use bollard::Docker;
use tokio::sync::OnceCell;

use super::StageFailure;

#[derive(Default)]
pub struct DaemonConnection {
    client: OnceCell<Docker>,
}

impl DaemonConnection {
    pub async fn get(&self) -> Result<&Docker, StageFailure> {
        self.client
            .get_or_try_init(|| async {
                let where_ = std::env::var("DOCKER_HOST")
                    .unwrap_or_else(|_| "unix:///var/run/docker.sock".to_owned());
                let unreachable = |err: bollard::errors::Error| {
                    StageFailure::failed(format!(
                        "failed to reach the Docker daemon at {where_}: {err}"
                    ))
                    .with_hint("start Docker, or point DOCKER_HOST at a running daemon")
                };
                let docker = Docker::connect_with_defaults().map_err(unreachable)?;
                // bollard speaks a newer API than many daemons; agree on the daemon's version.
                docker.negotiate_version().await.map_err(unreachable)
            })
            .await
    }
}

/// An error and its causes, one per line, the way the CLI prints them.
pub fn with_causes(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(&format!("\n  caused by: {cause_text}"));
        }
        source = cause.source();
    }
    text
}
