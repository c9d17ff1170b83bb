//! What a docker deploy would do, without doing it: which containers it would start (names,
//! ports), which it would stop, and which leftovers of an interrupted attempt it would
//! remove or take over. `shipit plan` shows it.
//!
//! The preview runs the deploy's own planner (`plan::plan_target`) over the deploy's own
//! listing of the target, so the two cannot disagree.

use std::collections::HashMap;
use std::fmt;

use bollard::Docker;
use serde::Serialize;

use super::containers::{self, ListedContainer};
use super::error::DockerDeployError;
use super::plan::{self, Attempt, TargetRollout};
use super::target_container::{self, TargetContainer};
use super::{ConfigProblem, DockerTargetConfig};

/// Which deploy to preview.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PreviewAttempt<'a> {
    /// `deploy`: a new run's deploy (what `shipit plan` previews).
    Fresh,
    /// `resume` of an interrupted deploy of the same run id, which takes over this run's
    /// containers created from this image and configuration.
    Resume {
        image: &'a str,
        image_digest: &'a str,
    },
}

/// The deploy to preview: the target, and the run id the deploy would get.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeployPreviewRequest<'a> {
    pub pipeline: &'a str,
    pub target: &'a str,
    pub run_id: &'a str,
    pub config: &'a DockerTargetConfig,
    pub attempt: PreviewAttempt<'a>,
}

/// What a deploy would do, in the order it would do it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DockerDeployPreview {
    /// Containers an interrupted attempt of this run left that cannot be taken over: removed
    /// before anything starts.
    pub remove_leftovers: Vec<TargetContainer>,
    /// Containers of this run a resume takes over as they are (and gates again).
    pub adopt: Vec<PlannedReplica>,
    /// New replicas to create and start, by replica index.
    pub start: Vec<PlannedReplica>,
    /// The previous version: stopped and removed once every new replica passes its gate.
    pub stop: Vec<TargetContainer>,
}

/// One replica of the new version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PlannedReplica {
    pub name: String,
    pub replica: u32,
    /// Host ports it will listen on or publish.
    pub ports: Vec<u16>,
}

/// Previews a deploy of the target: lists the target's containers and plans the rollout the
/// deploy would run. Touches nothing. An invalid configuration is refused as the deploy
/// refuses it (`InvalidConfig`).
pub async fn preview_deploy(
    docker: &Docker,
    request: &DeployPreviewRequest<'_>,
) -> Result<DockerDeployPreview, DockerDeployError> {
    let listed = containers::list_target_containers(docker, request.pipeline, request.target)
        .await
        .map_err(|source| DockerDeployError::listing(request.pipeline, request.target, source))?;
    preview_rollout(request, &listed)
        .map_err(|problems| DockerDeployError::InvalidConfig { problems })
}

/// The preview over the containers the daemon reported, or the configuration's problems.
pub(crate) fn preview_rollout(
    request: &DeployPreviewRequest<'_>,
    listed: &[ListedContainer],
) -> Result<DockerDeployPreview, Vec<ConfigProblem>> {
    let problems = request.config.validate();
    if !problems.is_empty() {
        return Err(problems);
    }
    let (attempt, config_digest) = match request.attempt {
        // A fresh attempt adopts nothing, so it never compares configuration digests.
        PreviewAttempt::Fresh => (Attempt::Fresh, String::new()),
        PreviewAttempt::Resume {
            image,
            image_digest,
        } => (
            Attempt::Resume,
            plan::config_digest(image, image_digest, request.config),
        ),
    };
    let existing: Vec<_> = listed.iter().map(|l| l.container.clone()).collect();
    let planned = plan::plan_target(
        &TargetRollout {
            attempt,
            pipeline: request.pipeline,
            target: request.target,
            run_id: request.run_id,
            config_digest: &config_digest,
            config: request.config,
        },
        &existing,
    )
    .map_err(|problem| vec![problem])?;
    let network = &request.config.network;
    let replica = |replica: &plan::Replica| PlannedReplica {
        name: replica.name.clone(),
        replica: replica.index,
        ports: planned
            .ports
            .get(&replica.index)
            .map(|ports| ports.host_ports(network))
            .unwrap_or_default(),
    };
    let by_id: HashMap<&str, &ListedContainer> = listed
        .iter()
        .map(|l| (l.container.id.as_str(), l))
        .collect();
    let reported = |containers: &[plan::ExistingContainer]| {
        target_container::sorted_by_name(
            containers
                .iter()
                .filter_map(|container| by_id.get(container.id.as_str()).copied()),
        )
    };
    let rollout = &planned.rollout;
    let mut adopt: Vec<PlannedReplica> = rollout.adopt.iter().map(|(r, _)| replica(r)).collect();
    adopt.sort_by_key(|r| r.replica);
    Ok(DockerDeployPreview {
        remove_leftovers: reported(&rollout.discard),
        adopt,
        start: rollout.create.iter().map(replica).collect(),
        stop: reported(&rollout.previous),
    })
}

/// `start web-3f2a-0 on :8082, web-3f2a-1 on :8083; then stop web-9c1d-0 (:8080), …`
impl fmt::Display for DockerDeployPreview {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut steps = Vec::new();
        if !self.remove_leftovers.is_empty() {
            steps.push(format!(
                "remove leftovers {}",
                target_container::list_text(&self.remove_leftovers)
            ));
        }
        if !self.adopt.is_empty() {
            steps.push(format!("re-attach to {}", replicas_text(&self.adopt)));
        }
        if !self.start.is_empty() {
            steps.push(format!("start {}", replicas_text(&self.start)));
        }
        let mut text = steps.join("; ");
        if self.stop.is_empty() {
            text.push_str(" (no previous version to stop)");
        } else {
            text.push_str(&format!(
                "; then stop {}",
                target_container::list_text(&self.stop)
            ));
        }
        f.write_str(&text)
    }
}

/// `web-3f2a-0 on :8082, web-3f2a-1 on :8083 and :9001`.
fn replicas_text(replicas: &[PlannedReplica]) -> String {
    replicas
        .iter()
        .map(|replica| {
            let ports: Vec<String> = replica.ports.iter().map(|p| format!(":{p}")).collect();
            if ports.is_empty() {
                replica.name.clone()
            } else {
                format!("{} on {}", replica.name, ports.join(" and "))
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deploy::docker::plan::{ExistingContainer, replica_name};

    fn listed(run: &str, replica: u32, offset: u32, ports: &[u16], state: &str) -> ListedContainer {
        ListedContainer {
            container: ExistingContainer {
                id: format!("{run}{replica}-0123456789abcdef"),
                name: format!("web-{run}-{replica}"),
                run_id: run.into(),
                replica: Some(replica),
                port_offset: Some(offset),
                config_digest: Some("cfg".into()),
                state: state.into(),
            },
            host_ports: ports.to_vec(),
        }
    }

    fn config(json: &str) -> DockerTargetConfig {
        serde_json::from_str(json).expect("fixture parses")
    }

    fn request<'a>(config: &'a DockerTargetConfig, run_id: &'a str) -> DeployPreviewRequest<'a> {
        DeployPreviewRequest {
            pipeline: "shop",
            target: "web",
            run_id,
            config,
            attempt: PreviewAttempt::Fresh,
        }
    }

    #[test]
    fn a_first_deploy_starts_every_replica_from_the_base_port_and_stops_nothing() {
        let config = config(r#"{"name": "web", "replicas": 2, "port": 8080}"#);
        let preview = preview_rollout(&request(&config, "run-2"), &[]).expect("preview");
        let started: Vec<_> = preview
            .start
            .iter()
            .map(|r| (r.name.clone(), r.replica, r.ports.clone()))
            .collect();
        assert_eq!(
            started,
            vec![
                (replica_name("web", "run-2", 0), 0, vec![8080]),
                (replica_name("web", "run-2", 1), 1, vec![8081]),
            ]
        );
        assert!(preview.stop.is_empty() && preview.adopt.is_empty());
        assert!(preview.remove_leftovers.is_empty());
    }

    #[test]
    fn the_next_version_takes_the_free_offsets_and_stops_the_previous_one() {
        let config = config(r#"{"name": "web", "replicas": 2, "port": 8080}"#);
        let running = [
            listed("one", 1, 1, &[8081], "running"),
            listed("one", 0, 0, &[8080], "running"),
        ];
        let preview = preview_rollout(&request(&config, "run-2"), &running).expect("preview");
        let ports: Vec<_> = preview.start.iter().map(|r| r.ports.clone()).collect();
        assert_eq!(ports, vec![vec![8082], vec![8083]]);
        let stopped: Vec<_> = preview
            .stop
            .iter()
            .map(|c| {
                (
                    c.name.as_str(),
                    c.id.as_str(),
                    c.run_id.as_str(),
                    c.ports.clone(),
                )
            })
            .collect();
        assert_eq!(
            stopped,
            vec![
                ("web-one-0", "one0-0123456", "one", vec![8080]),
                ("web-one-1", "one1-0123456", "one", vec![8081]),
            ]
        );
    }

    #[test]
    fn a_stopped_previous_container_is_removed_too_and_says_so() {
        let config = config(r#"{"name": "web", "port": 8080}"#);
        let existing = [listed("one", 0, 0, &[8080], "exited")];
        let preview = preview_rollout(&request(&config, "run-2"), &existing).expect("preview");
        assert_eq!(preview.stop.len(), 1);
        assert!(!preview.stop[0].running);
        assert!(
            preview
                .to_string()
                .ends_with("then stop web-one-0 (:8080, not running)"),
            "{preview}"
        );
    }

    #[test]
    fn a_published_port_is_offset_on_a_named_network() {
        let config = config(r#"{"name": "web", "network": "shop", "ports": ["8080:80"]}"#);
        let existing = [listed("one", 0, 0, &[8080], "running")];
        let preview = preview_rollout(&request(&config, "run-2"), &existing).expect("preview");
        assert_eq!(preview.start[0].ports, vec![8081]);
    }

    #[test]
    fn a_fresh_deploy_removes_leftovers_of_its_own_run_first() {
        let config = config(r#"{"name": "web", "port": 8080}"#);
        let existing = [listed("run-2", 0, 3, &[8083], "running")];
        let preview = preview_rollout(&request(&config, "run-2"), &existing).expect("preview");
        assert_eq!(preview.remove_leftovers.len(), 1);
        assert_eq!(preview.start[0].ports, vec![8080]);
        assert!(
            preview
                .to_string()
                .starts_with("remove leftovers web-run-2-0 (:8083); start ")
        );
    }

    #[test]
    fn a_resume_takes_over_containers_made_from_the_same_image_and_config() {
        let config = config(r#"{"name": "web", "replicas": 2, "port": 8080}"#);
        let digest = plan::config_digest("img", "sha256:1", &config);
        let mut ours = listed("run-2", 0, 2, &[8082], "running");
        ours.container.config_digest = Some(digest);
        let existing = [listed("one", 0, 0, &[8080], "running"), ours];
        let mut request = request(&config, "run-2");
        request.attempt = PreviewAttempt::Resume {
            image: "img",
            image_digest: "sha256:1",
        };
        let preview = preview_rollout(&request, &existing).expect("preview");
        assert_eq!(preview.adopt.len(), 1);
        assert_eq!(preview.adopt[0].ports, vec![8082]);
        assert_eq!(preview.start.len(), 1);
        assert_eq!(preview.start[0].replica, 1);
        assert_eq!(preview.start[0].ports, vec![8081]);
        assert!(preview.remove_leftovers.is_empty());
        // The same containers, previewed as a new run's deploy: nothing is taken over.
        let fresh = preview_rollout(&self::request(&config, "run-2"), &existing).expect("preview");
        assert!(fresh.adopt.is_empty());
        assert_eq!(fresh.remove_leftovers.len(), 1);
    }

    #[test]
    fn an_invalid_configuration_is_refused_like_the_deploy_refuses_it() {
        let config = config(r#"{"replicas": 0}"#);
        let problems = preview_rollout(&request(&config, "run-2"), &[]).expect_err("invalid");
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].path, "replicas");
    }

    #[test]
    fn ports_past_the_last_one_are_refused_as_the_deploy_refuses_them() {
        let config = config(r#"{"port": 65535}"#);
        let existing = [listed("one", 0, 0, &[65535], "running")];
        let problems = preview_rollout(&request(&config, "run-2"), &existing).expect_err("past");
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].path, "port");
    }

    #[test]
    fn the_text_names_what_starts_then_what_stops() {
        let preview = DockerDeployPreview {
            remove_leftovers: Vec::new(),
            adopt: Vec::new(),
            start: vec![
                PlannedReplica {
                    name: "web-3f2a-0".into(),
                    replica: 0,
                    ports: vec![8082],
                },
                PlannedReplica {
                    name: "web-3f2a-1".into(),
                    replica: 1,
                    ports: vec![8083, 9001],
                },
            ],
            stop: vec![TargetContainer {
                name: "web-9c1d-0".into(),
                id: "0123456789ab".into(),
                run_id: "one".into(),
                ports: vec![8080],
                running: true,
            }],
        };
        assert_eq!(
            preview.to_string(),
            "start web-3f2a-0 on :8082, web-3f2a-1 on :8083 and :9001; then stop web-9c1d-0 (:8080)"
        );
        let first = DockerDeployPreview {
            stop: Vec::new(),
            ..preview
        };
        assert!(first.to_string().ends_with("(no previous version to stop)"));
    }
}
