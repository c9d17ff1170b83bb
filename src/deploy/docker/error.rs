//! How a docker deploy, its preview or taking a target down fails. Every deploy variant leaves
//! the previous version as it found it (running, when it was running); they differ in what
//! happened to the new one. The `TakeDown…` variants say which containers are still there.

use super::config::ConfigProblem;
use super::health::GateFailure;

#[derive(Debug, thiserror::Error)]
pub enum DockerDeployError {
    /// The `docker:` block has problems; nothing was touched.
    #[error(
        "failed to deploy: the docker target configuration is invalid ({})",
        problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
    )]
    InvalidConfig { problems: Vec<ConfigProblem> },

    /// The image is not on the daemon; nothing was touched.
    #[error(
        "failed to find image `{image}` on the Docker daemon; build it first, or check that \
         DOCKER_HOST points at the daemon that built it"
    )]
    ImageNotFound {
        image: String,
        #[source]
        source: bollard::errors::Error,
    },

    /// The gate asks for the image's HEALTHCHECK and the image has none; nothing was touched.
    #[error(
        "failed to deploy image `{image}`: `health.image: true` uses the image's HEALTHCHECK \
         but the image defines none; add a HEALTHCHECK to the Dockerfile or use an http or \
         command probe"
    )]
    NoHealthcheck { image: String },

    /// Something already listens where a new replica must listen; nothing was started.
    #[error(
        "failed to deploy: port {port} on {host} is already in use by another process, and \
         replica {replica} of the new version must listen there; free the port or choose \
         another base `port`"
    )]
    PortInUse {
        host: String,
        port: u16,
        replica: u32,
    },

    /// A new replica failed its health gate. The new replicas were removed and the previous
    /// version runs as before. A gate that ran out of time is this variant too, with
    /// `reason` `GateFailure::DeadlineExceeded`: the outcome for the user is the same (the
    /// new version is gone, the old one serves); see `timed_out`.
    #[error(
        "new container {container} failed its health gate: {reason}; rolled back{}",
        rolled_back_suffix(previous_running, left_behind)
    )]
    RolledBack {
        reason: GateFailure,
        container: String,
        container_id: String,
        exit_code: Option<i64>,
        /// The failing container's last log lines (up to 30), oldest first.
        last_logs: Vec<String>,
        /// Names of the previous version's containers running after the rollback.
        previous_running: Vec<String>,
        /// New containers the rollback could not remove.
        left_behind: Vec<String>,
    },

    /// The daemon refused to start a new replica (for example a published port is already
    /// allocated). The new replicas were removed; the previous version runs as before.
    #[error(
        "failed to start new container {container}: {message}; rolled back{}",
        rolled_back_suffix(previous_running, left_behind)
    )]
    StartFailed {
        container: String,
        message: String,
        previous_running: Vec<String>,
        left_behind: Vec<String>,
    },

    /// The cancellation token fired before the new version passed its gate. The new
    /// replicas were removed; the previous version runs as before.
    #[error(
        "deploy cancelled before the new version passed its health gate; the new containers \
         were removed{}",
        left_behind_suffix(left_behind)
    )]
    Cancelled {
        removed: Vec<String>,
        left_behind: Vec<String>,
    },

    /// A daemon call failed (the daemon went away, refused a request...). shipit removed the
    /// new replicas where it still could; `shipit resume` (or the next deploy) removes any
    /// left behind, since they carry this run's labels.
    #[error("failed to {action}{}", left_behind_suffix(left_behind))]
    Daemon {
        action: String,
        left_behind: Vec<String>,
        #[source]
        source: bollard::errors::Error,
    },

    /// Taking a target down met a container the daemon would not stop or remove. Every
    /// other container was still stopped and removed; the ones named in `remaining` are
    /// still there, so taking the target down again finishes the job.
    #[error(
        "failed to remove container {container} while taking the target down; still there: \
         {}; take the target down again",
        remaining.join(", ")
    )]
    TakeDownFailed {
        container: String,
        /// Names of the containers that were removed.
        removed: Vec<String>,
        /// Names of the containers still there (the failing one among them).
        remaining: Vec<String>,
        #[source]
        source: bollard::errors::Error,
    },

    /// The cancellation token fired while the target was being taken down: containers whose
    /// removal had not finished were left as they were (a stop the daemon already began may
    /// still complete).
    #[error(
        "failed to take the target down: cancelled with {} container(s) still there ({}); \
         take the target down again",
        remaining.len(),
        remaining.join(", ")
    )]
    TakeDownCancelled {
        removed: Vec<String>,
        remaining: Vec<String>,
    },
}

fn rolled_back_suffix(previous_running: &[String], left_behind: &[String]) -> String {
    let previous = if previous_running.is_empty() {
        " (there was no previous version running)".to_owned()
    } else {
        format!(
            ", the previous version still runs ({})",
            previous_running.join(", ")
        )
    };
    format!("{previous}{}", left_behind_suffix(left_behind))
}

fn left_behind_suffix(left_behind: &[String]) -> String {
    if left_behind.is_empty() {
        String::new()
    } else {
        format!(
            "; could not remove new container(s) {}: run `shipit resume` or remove them with \
             `docker rm -f`",
            left_behind.join(", ")
        )
    }
}

impl DockerDeployError {
    /// The daemon failed to list a target's containers; nothing was touched.
    pub(crate) fn listing(pipeline: &str, target: &str, source: bollard::errors::Error) -> Self {
        DockerDeployError::Daemon {
            action: format!("list the containers of {pipeline}/{target} on the Docker daemon"),
            left_behind: Vec::new(),
            source,
        }
    }

    /// Whether the new version was started and then taken down again (exit code 3 in the
    /// CLI), as opposed to a deploy that failed before starting anything or could not finish.
    pub fn is_rolled_back(&self) -> bool {
        matches!(
            self,
            DockerDeployError::RolledBack { .. } | DockerDeployError::StartFailed { .. }
        )
    }

    /// Whether the health gate ran out of time (a rollback too).
    pub fn timed_out(&self) -> bool {
        matches!(
            self,
            DockerDeployError::RolledBack {
                reason: GateFailure::DeadlineExceeded { .. },
                ..
            }
        )
    }
}
