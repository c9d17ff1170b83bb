//! One Docker daemon connection per process, opened the first time a stage needs it, so that
//! `validate`, `plan` of a pipeline without images, and the ECS/EKS stages never need a daemon.

use tokio::sync::OnceCell;

use super::StageFailure;
use crate::docker::{DockerClient, connect};

#[derive(Default)]
pub struct DaemonConnection {
    client: OnceCell<DockerClient>,
}

impl DaemonConnection {
    pub async fn get(&self) -> Result<&DockerClient, StageFailure> {
        self.client
            .get_or_try_init(|| async {
                connect().await.map_err(|err| {
                    StageFailure::failed(with_causes(&err))
                        .with_hint("start Docker, or point DOCKER_HOST at a running daemon")
                })
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
