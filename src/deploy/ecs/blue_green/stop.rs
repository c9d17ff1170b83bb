//! Giving up on a deployment at shipit's deadline: StopDeployment with automatic rollback, then
//! a bounded wait for CodeDeploy to confirm it ended, so the error can say where the service
//! was left.

use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::super::{EcsClients, PollPace};
use super::poll::Poller;
use super::snapshot::DeploymentView;
use crate::deploy::aws_failure::AwsFailure;

/// How long to wait for a stopped deployment to end.
pub(crate) const STOP_WAIT: Duration = Duration::from_secs(120);
/// The pause between looks while it ends.
const STOP_POLL: Duration = Duration::from_secs(5);

/// Where the stop left the deployment.
#[derive(Debug, Default)]
pub(crate) struct Stopped {
    /// The deployment's last state read, when one was.
    pub last: Option<DeploymentView>,
    /// Why StopDeployment itself failed, when it did.
    pub stop_failure: Option<String>,
}

impl Stopped {
    /// Whether CodeDeploy confirmed the deployment ended.
    pub(crate) fn ended(&self) -> bool {
        self.last
            .as_ref()
            .is_some_and(|d| matches!(d.status.as_str(), "Stopped" | "Failed" | "Succeeded"))
    }
}

pub(crate) async fn stop_with_rollback(
    clients: &EcsClients,
    poller: &Poller<'_>,
    deployment_id: &str,
    pace: &mut PollPace,
    cancel: &CancellationToken,
) -> Stopped {
    let mut stopped = Stopped::default();
    let answer = clients
        .codedeploy
        .stop_deployment()
        .deployment_id(deployment_id)
        .auto_rollback_enabled(true)
        .send()
        .await;
    pace.record_calls(Instant::now(), 1);
    if let Err(err) = answer {
        let failure = AwsFailure::from_sdk("codedeploy:StopDeployment", &err);
        // A deployment that ended meanwhile needs no stop; read how it ended.
        if !failure.is("DeploymentAlreadyCompletedException") {
            stopped.stop_failure = Some(failure.into_error().message);
            return stopped;
        }
    }
    let until = Instant::now() + STOP_WAIT;
    loop {
        if let Ok(deployment) = poller.deployment().await {
            stopped.last = Some(deployment);
        }
        pace.record_calls(Instant::now(), 1);
        if stopped.ended() || Instant::now() >= until {
            return stopped;
        }
        let delay = pace.next_delay(Instant::now(), 1).max(STOP_POLL);
        tokio::select! {
            _ = cancel.cancelled() => return stopped,
            _ = tokio::time::sleep(delay) => {}
        }
    }
}
