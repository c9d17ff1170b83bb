//! Taking a docker target down, as `docker compose down` does for a compose project: every
//! container carrying the pipeline's and the target's labels is stopped gracefully (the grace
//! period a deploy gives the version it replaces) and removed. `shipit down` runs it;
//! `shipit down --dry-run` shows the preview.

use std::fmt;

use bollard::Docker;
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use super::DeployObserver;
use super::containers::{self, ListedContainer};
use super::error::DockerDeployError;
use super::target_container::{self, TargetContainer};

/// What taking a target down would remove.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TakeDownPreview {
    /// Every container of the target, running or not, by name.
    pub containers: Vec<TargetContainer>,
}

/// What taking a target down removed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TakeDownOutcome {
    /// By name; empty when nothing of the target was there.
    pub removed: Vec<TargetContainer>,
}

/// The take-down of the listed containers.
pub(crate) fn plan_take_down(listed: &[ListedContainer]) -> TakeDownPreview {
    TakeDownPreview {
        containers: target_container::sorted_by_name(listed),
    }
}

/// `remove web-9c1d-0 (:8080), web-9c1d-1 (:8081)`, or `nothing to remove`.
impl fmt::Display for TakeDownPreview {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.containers.is_empty() {
            f.write_str("nothing to remove")
        } else {
            write!(
                f,
                "remove {}",
                target_container::list_text(&self.containers)
            )
        }
    }
}

/// Lists what [`take_down`] would remove. Touches nothing.
pub async fn preview_take_down(
    docker: &Docker,
    pipeline: &str,
    target: &str,
) -> Result<TakeDownPreview, DockerDeployError> {
    let listed = containers::list_target_containers(docker, pipeline, target)
        .await
        .map_err(|source| DockerDeployError::listing(pipeline, target, source))?;
    Ok(plan_take_down(&listed))
}

/// Stops and removes every container of the pipeline's target, in parallel, each given the
/// deploy's grace period to stop on SIGTERM. A target with nothing there is not an error: the
/// outcome is empty. When one container cannot be removed the others still are, and the error
/// names what is left. Cancelling `cancel` stops waiting: removals not yet finished are
/// abandoned and reported as still there.
pub async fn take_down(
    docker: &Docker,
    pipeline: &str,
    target: &str,
    observer: &dyn DeployObserver,
    cancel: CancellationToken,
) -> Result<TakeDownOutcome, DockerDeployError> {
    let plan = preview_take_down(docker, pipeline, target).await?;
    let label = format!("{pipeline}/{target}");
    if plan.containers.is_empty() {
        observer.on_progress(&format!("no container of {label} to remove"));
        return Ok(TakeDownOutcome {
            removed: Vec::new(),
        });
    }
    if cancel.is_cancelled() {
        return Err(DockerDeployError::TakeDownCancelled {
            removed: Vec::new(),
            remaining: names(&plan.containers),
        });
    }

    let mut pending: FuturesUnordered<_> = plan
        .containers
        .iter()
        .enumerate()
        .map(|(index, container)| {
            observer.on_progress(&format!("stopping container {container}"));
            async move { (index, containers::retire(docker, &container.id).await) }
        })
        .collect();
    let mut done = vec![false; plan.containers.len()];
    let mut first_failure = None;
    loop {
        let next = tokio::select! {
            next = pending.next() => next,
            () = cancel.cancelled() => break,
        };
        let Some((index, result)) = next else { break };
        let container = &plan.containers[index];
        match result {
            Ok(()) => {
                done[index] = true;
                observer.on_progress(&format!("removed container {}", container.name));
            }
            Err(source) => {
                observer.on_progress(&format!(
                    "failed to remove container {}: {source}",
                    container.name
                ));
                first_failure.get_or_insert((container.name.clone(), source));
            }
        }
    }

    // After a cancellation this abandons the removals still under way.
    drop(pending);

    let (removed, remaining): (Vec<_>, Vec<_>) = plan
        .containers
        .into_iter()
        .zip(done)
        .partition(|(_, done)| *done);
    let removed: Vec<TargetContainer> = removed.into_iter().map(|(c, _)| c).collect();
    let remaining: Vec<TargetContainer> = remaining.into_iter().map(|(c, _)| c).collect();
    if let Some((container, source)) = first_failure {
        return Err(DockerDeployError::TakeDownFailed {
            container,
            removed: names(&removed),
            remaining: names(&remaining),
            source,
        });
    }
    if !remaining.is_empty() {
        return Err(DockerDeployError::TakeDownCancelled {
            removed: names(&removed),
            remaining: names(&remaining),
        });
    }
    observer.on_progress(&format!(
        "removed {} container{} of {label}",
        removed.len(),
        if removed.len() == 1 { "" } else { "s" }
    ));
    Ok(TakeDownOutcome { removed })
}

fn names(containers: &[TargetContainer]) -> Vec<String> {
    containers.iter().map(|c| c.name.clone()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deploy::docker::plan::ExistingContainer;

    fn listed(name: &str, state: &str, ports: &[u16]) -> ListedContainer {
        ListedContainer {
            container: ExistingContainer {
                id: format!("{name}-0123456789abcdef"),
                name: name.into(),
                run_id: "run-1".into(),
                replica: Some(0),
                port_offset: Some(0),
                config_digest: None,
                state: state.into(),
            },
            host_ports: ports.to_vec(),
        }
    }

    #[test]
    fn every_container_of_the_target_is_removed_running_or_not_by_name() {
        let plan = plan_take_down(&[
            listed("web-b", "running", &[8081]),
            listed("web-a", "exited", &[8080]),
            listed("web-c", "created", &[]),
        ]);
        let names: Vec<_> = plan.containers.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, vec!["web-a", "web-b", "web-c"]);
        assert_eq!(plan.containers[0].id, "web-a-012345");
        assert_eq!(
            plan.to_string(),
            "remove web-a (:8080, not running), web-b (:8081), web-c (not running)"
        );
    }

    #[test]
    fn an_empty_target_has_nothing_to_remove() {
        let plan = plan_take_down(&[]);
        assert!(plan.containers.is_empty());
        assert_eq!(plan.to_string(), "nothing to remove");
    }
}
