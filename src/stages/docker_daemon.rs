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
                    StageFailure::failed(with_causes(&err)).with_hint(if permission_denied(&err) {
                        SOCKET_PERMISSION_HINT
                    } else {
                        "start Docker, or point DOCKER_HOST at a running daemon"
                    })
                })
            })
            .await
    }
}

/// What to do when the daemon's socket refuses this user, which is what shipit's image meets
/// when the socket is mounted into it without its group.
const SOCKET_PERMISSION_HINT: &str = "the socket refuses this user: give it the socket's group \
    (for shipit's image, `docker run --group-add \"$(stat -c %g /var/run/docker.sock)\" …`), \
    or point DOCKER_HOST at a daemon it may use";

/// Whether the connection failed because the operating system refused it (a socket without
/// read and write permission for this user), as opposed to no daemon listening.
fn permission_denied(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(err);
    while let Some(error) = cause {
        if error
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::PermissionDenied)
        {
            return true;
        }
        cause = error.source();
    }
    false
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

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("failed to reach the daemon")]
    struct Wrapped(#[source] std::io::Error);

    #[test]
    fn a_refused_socket_is_told_from_a_missing_daemon_through_the_causes() {
        let refused = Wrapped(std::io::Error::from(std::io::ErrorKind::PermissionDenied));
        let missing = Wrapped(std::io::Error::from(std::io::ErrorKind::NotFound));
        assert!(permission_denied(&refused));
        assert!(!permission_denied(&missing));
    }
}
