//! The rollout plan: from the containers the daemon reports for a target, decide which
//! belong to the previous version, which containers of this run a resume can adopt, which
//! must go, and what each new replica looks like (name, port offset, labels, ports).
//!
//! Pure functions over plain data; `rollout.rs` applies the plan.

use std::collections::{BTreeSet, HashMap};

use sha2::{Digest, Sha256};

use super::config::{
    ConfigProblem, DockerTargetConfig, NetworkMode, PortMapping, PortProtocol, RestartPolicy,
};

/// Labels shipit puts on every container it runs. They are the only record of a deploy: the
/// previous version of a target is found by `pipeline` + `target`, a run's own containers by
/// `run-id`.
pub(crate) mod label {
    pub const PIPELINE: &str = "shipit.pipeline";
    pub const TARGET: &str = "shipit.target";
    pub const RUN_ID: &str = "shipit.run-id";
    pub const IMAGE_DIGEST: &str = "shipit.image-digest";
    pub const REPLICA: &str = "shipit.replica";
    pub const PORT_OFFSET: &str = "shipit.port-offset";
    /// Digest of the image reference and configuration a container was created from, so a
    /// resume adopts only containers that match what it would create.
    pub const CONFIG_DIGEST: &str = "shipit.config-digest";
    /// The host ports the container listens on or publishes, comma-separated, so what a
    /// container serves can be reported without knowing the configuration it was made from.
    pub const HOST_PORTS: &str = "shipit.host-ports";
}

/// The value of the `shipit.host-ports` label.
pub(crate) fn host_ports_label(ports: &[u16]) -> String {
    ports
        .iter()
        .map(u16::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// Reads the `shipit.host-ports` label back; `None` when it is missing or damaged.
pub(crate) fn parse_host_ports_label(labels: &HashMap<String, String>) -> Option<Vec<u16>> {
    let value = labels.get(label::HOST_PORTS)?;
    if value.is_empty() {
        return Some(Vec::new());
    }
    value.split(',').map(|port| port.parse().ok()).collect()
}

/// A container of the target, as listed by the daemon.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ExistingContainer {
    pub id: String,
    pub name: String,
    pub run_id: String,
    pub replica: Option<u32>,
    pub port_offset: Option<u32>,
    pub config_digest: Option<String>,
    /// The daemon's state word: `created`, `running`, `exited`, `restarting`…
    pub state: String,
}

impl ExistingContainer {
    pub(crate) fn is_running(&self) -> bool {
        self.state == "running"
    }

    /// Reads a container from its labels; `None` when it lacks shipit's run label.
    pub(crate) fn from_labels(
        id: String,
        name: String,
        state: String,
        labels: &HashMap<String, String>,
    ) -> Option<Self> {
        let run_id = labels.get(label::RUN_ID)?.clone();
        let number = |key: &str| labels.get(key).and_then(|value| value.parse().ok());
        Some(ExistingContainer {
            id,
            name: name.trim_start_matches('/').to_owned(),
            run_id,
            replica: number(label::REPLICA),
            port_offset: number(label::PORT_OFFSET),
            config_digest: labels.get(label::CONFIG_DIGEST).cloned(),
            state,
        })
    }
}

/// One new replica to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Replica {
    pub index: u32,
    pub offset: u32,
    pub name: String,
}

/// Whether this attempt starts afresh or re-attaches to an interrupted one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Attempt {
    Fresh,
    Resume,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct RolloutPlan {
    /// Containers of this run that a resume takes over as they are.
    pub adopt: Vec<(Replica, ExistingContainer)>,
    /// Replicas to create and start.
    pub create: Vec<Replica>,
    /// Containers of this run that cannot be taken over: removed before anything starts.
    pub discard: Vec<ExistingContainer>,
    /// Containers of other runs: the version being replaced.
    pub previous: Vec<ExistingContainer>,
}

/// What identifies this run's containers and how many it wants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PlanInput<'a> {
    pub attempt: Attempt,
    pub run_id: &'a str,
    pub config_digest: &'a str,
    pub replicas: u32,
    pub name_prefix: &'a str,
}

/// Plans a rollout.
///
/// A fresh attempt never trusts containers already carrying its run id (they are leftovers of
/// an attempt that did not finish), so it discards them. A resume adopts one container per
/// replica index when it was created from the same configuration and is running or about to
/// (`created`); anything else of this run is discarded and recreated, so nothing is orphaned.
/// New replicas take the lowest port offsets that no previous or adopted container holds,
/// which lets both versions run side by side during the gate.
pub(crate) fn plan_rollout(input: &PlanInput<'_>, existing: &[ExistingContainer]) -> RolloutPlan {
    let mut plan = RolloutPlan::default();
    let mut adopted_indexes = BTreeSet::new();
    let mut used_offsets = BTreeSet::new();

    let (ours, others): (Vec<_>, Vec<_>) = existing
        .iter()
        .cloned()
        .partition(|container| container.run_id == input.run_id);

    for container in &others {
        if let Some(offset) = container.port_offset {
            used_offsets.insert(offset);
        }
    }
    plan.previous = others;

    let mut ours = ours;
    // Adopt deterministically: by replica index, then by name.
    ours.sort_by(|a, b| (a.replica, &a.name).cmp(&(b.replica, &b.name)));
    for container in ours {
        let adoptable = input.attempt == Attempt::Resume
            && container.config_digest.as_deref() == Some(input.config_digest)
            && matches!(container.state.as_str(), "running" | "created")
            && matches!(container.replica, Some(index) if index < input.replicas)
            && container
                .port_offset
                .is_some_and(|offset| !used_offsets.contains(&offset));
        match (adoptable, container.replica, container.port_offset) {
            (true, Some(index), Some(offset)) if adopted_indexes.insert(index) => {
                used_offsets.insert(offset);
                plan.adopt.push((
                    Replica {
                        index,
                        offset,
                        name: container.name.clone(),
                    },
                    container,
                ));
            }
            _ => plan.discard.push(container),
        }
    }

    let mut next_offset = 0;
    for index in 0..input.replicas {
        if adopted_indexes.contains(&index) {
            continue;
        }
        while used_offsets.contains(&next_offset) {
            next_offset += 1;
        }
        used_offsets.insert(next_offset);
        plan.create.push(Replica {
            index,
            offset: next_offset,
            name: replica_name(input.name_prefix, input.run_id, index),
        });
    }
    plan
}

/// A short, stable tag of the run id for container names: run ids may be long or hold
/// characters Docker rejects in names, and two versions must never share a name.
pub(crate) fn run_tag(run_id: &str) -> String {
    let digest = Sha256::digest(run_id.as_bytes());
    hex::encode(&digest[..4])
}

pub(crate) fn replica_name(prefix: &str, run_id: &str, index: u32) -> String {
    format!("{prefix}-{}-{index}", run_tag(run_id))
}

/// Digest of what a container is created from: the image and the target configuration.
pub(crate) fn config_digest(
    image: &str,
    image_digest: &str,
    config: &DockerTargetConfig,
) -> String {
    let mut hasher = Sha256::new();
    hasher.update(image.as_bytes());
    hasher.update([0]);
    hasher.update(image_digest.as_bytes());
    hasher.update([0]);
    // Serializing a plain config struct cannot fail; an empty fallback still yields a digest
    // that differs from any real one.
    hasher.update(serde_json::to_vec(config).unwrap_or_default());
    hex::encode(&hasher.finalize()[..8])
}

/// The ports of one replica, with its offset applied.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct ReplicaPorts {
    /// The value of the port variable given to the app.
    pub app_port: Option<u16>,
    /// Published ports (named networks), host side already offset.
    pub published: Vec<PortMapping>,
    /// The host port the HTTP probe connects to.
    pub probe_port: Option<u16>,
}

impl ReplicaPorts {
    /// The host ports where this replica can be reached, for the deploy's result.
    pub(crate) fn host_ports(&self, network: &NetworkMode) -> Vec<u16> {
        match network {
            NetworkMode::Host => self.app_port.into_iter().collect(),
            NetworkMode::None => Vec::new(),
            NetworkMode::Named(_) => self.published.iter().map(|m| m.host_port).collect(),
        }
    }
}

fn offset_port(base: u16, offset: u32) -> Result<u16, String> {
    u32::from(base)
        .checked_add(offset)
        .and_then(|port| u16::try_from(port).ok())
        .ok_or_else(|| {
            format!(
                "port {base} + offset {offset} is past 65535; choose a lower base port (the \
                 previous version holds the lower offsets)"
            )
        })
}

/// Computes a replica's ports: see the module documentation of `config` for the scheme.
pub(crate) fn replica_ports(
    config: &DockerTargetConfig,
    offset: u32,
) -> Result<ReplicaPorts, String> {
    match &config.network {
        NetworkMode::Host => {
            let app_port = config
                .app_port()
                .map(|port| offset_port(port, offset))
                .transpose()?;
            let probe_port = match &config.health.http {
                Some(http) => http
                    .port
                    .or(config.app_port())
                    .map(|port| offset_port(port, offset))
                    .transpose()?,
                None => None,
            };
            Ok(ReplicaPorts {
                app_port,
                published: Vec::new(),
                probe_port,
            })
        }
        NetworkMode::None => Ok(ReplicaPorts {
            app_port: config.port,
            ..ReplicaPorts::default()
        }),
        NetworkMode::Named(_) => {
            let mut published = Vec::new();
            for mapping in config.port_mappings() {
                published.push(PortMapping {
                    host_port: offset_port(mapping.host_port, offset)?,
                    ..mapping
                });
            }
            let probe_port = config.probe_container_port().and_then(|container_port| {
                published
                    .iter()
                    .find(|m| m.container_port == container_port && m.protocol == PortProtocol::Tcp)
                    .map(|m| m.host_port)
            });
            Ok(ReplicaPorts {
                app_port: config.port,
                published,
                probe_port,
            })
        }
    }
}

/// A target's rollout as both the deploy and its preview see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TargetRollout<'a> {
    pub attempt: Attempt,
    pub pipeline: &'a str,
    pub target: &'a str,
    pub run_id: &'a str,
    /// Only a resume reads it (to adopt containers made from the same image and config).
    pub config_digest: &'a str,
    pub config: &'a DockerTargetConfig,
}

/// A rollout plan with the ports of every replica it creates or adopts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PortedPlan {
    pub rollout: RolloutPlan,
    /// By replica index, for every created and adopted replica.
    pub ports: HashMap<u32, ReplicaPorts>,
}

/// Plans a target's rollout and computes each new replica's ports. The deploy and the
/// preview of a deploy both call this, so what `plan` announces is what `run` does.
pub(crate) fn plan_target(
    target: &TargetRollout<'_>,
    existing: &[ExistingContainer],
) -> Result<PortedPlan, ConfigProblem> {
    let config = target.config;
    let name_prefix = config.name_prefix(target.pipeline, target.target);
    let rollout = plan_rollout(
        &PlanInput {
            attempt: target.attempt,
            run_id: target.run_id,
            config_digest: target.config_digest,
            replicas: config.replicas,
            name_prefix: &name_prefix,
        },
        existing,
    );
    let mut ports = HashMap::new();
    for replica in rollout
        .create
        .iter()
        .chain(rollout.adopt.iter().map(|(replica, _)| replica))
    {
        let replica_ports =
            replica_ports(config, replica.offset).map_err(|message| ConfigProblem {
                path: "port".into(),
                message,
            })?;
        ports.insert(replica.index, replica_ports);
    }
    Ok(PortedPlan { rollout, ports })
}

/// Everything needed to create one replica's container.
pub(crate) struct ReplicaBlueprint<'a> {
    pub pipeline: &'a str,
    pub target: &'a str,
    pub run_id: &'a str,
    pub image: &'a str,
    pub image_digest: &'a str,
    pub config_digest: &'a str,
    pub config: &'a DockerTargetConfig,
    pub replica: &'a Replica,
    pub ports: &'a ReplicaPorts,
}

/// The create request for one replica.
pub(crate) fn container_body(
    blueprint: &ReplicaBlueprint<'_>,
) -> bollard::models::ContainerCreateBody {
    use bollard::models::{
        ContainerCreateBody, HostConfig, PortBinding, RestartPolicy as DockerRestart,
        RestartPolicyNameEnum,
    };

    let config = blueprint.config;
    let mut labels: HashMap<String, String> = config
        .labels
        .iter()
        .map(|(key, value)| (key.clone(), value.clone()))
        .collect();
    for (key, value) in [
        (label::PIPELINE, blueprint.pipeline.to_owned()),
        (label::TARGET, blueprint.target.to_owned()),
        (label::RUN_ID, blueprint.run_id.to_owned()),
        (label::IMAGE_DIGEST, blueprint.image_digest.to_owned()),
        (label::REPLICA, blueprint.replica.index.to_string()),
        (label::PORT_OFFSET, blueprint.replica.offset.to_string()),
        (label::CONFIG_DIGEST, blueprint.config_digest.to_owned()),
        (
            label::HOST_PORTS,
            host_ports_label(&blueprint.ports.host_ports(&config.network)),
        ),
    ] {
        labels.insert(key.to_owned(), value);
    }

    let mut env: Vec<String> = config
        .env
        .iter()
        .map(|(key, value)| format!("{key}={value}"))
        .collect();
    if let Some(port) = blueprint.ports.app_port {
        env.push(format!("{}={port}", config.port_env));
    }

    let (exposed_ports, port_bindings) = if blueprint.ports.published.is_empty() {
        (None, None)
    } else {
        let mut bindings: HashMap<String, Option<Vec<PortBinding>>> = HashMap::new();
        let mut exposed = Vec::new();
        for mapping in &blueprint.ports.published {
            let key = format!("{}/{}", mapping.container_port, mapping.protocol.as_str());
            exposed.push(key.clone());
            bindings
                .entry(key)
                .or_insert_with(|| Some(Vec::new()))
                .get_or_insert_with(Vec::new)
                .push(PortBinding {
                    host_ip: mapping.host_ip.map(|ip| ip.to_string()),
                    host_port: Some(mapping.host_port.to_string()),
                });
        }
        exposed.sort();
        exposed.dedup();
        (Some(exposed), Some(bindings))
    };

    let restart = match config.restart {
        RestartPolicy::No => RestartPolicyNameEnum::NO,
        RestartPolicy::Always => RestartPolicyNameEnum::ALWAYS,
        RestartPolicy::UnlessStopped => RestartPolicyNameEnum::UNLESS_STOPPED,
        RestartPolicy::OnFailure => RestartPolicyNameEnum::ON_FAILURE,
    };

    ContainerCreateBody {
        image: Some(blueprint.image.to_owned()),
        cmd: config.command.clone(),
        env: Some(env),
        labels: Some(labels),
        exposed_ports,
        host_config: Some(HostConfig {
            network_mode: Some(config.network.as_docker_mode().to_owned()),
            port_bindings,
            restart_policy: Some(DockerRestart {
                name: Some(restart),
                maximum_retry_count: None,
            }),
            ..HostConfig::default()
        }),
        ..ContainerCreateBody::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn container(run: &str, replica: u32, offset: u32, state: &str) -> ExistingContainer {
        ExistingContainer {
            id: format!("id-{run}-{replica}"),
            name: format!("web-{run}-{replica}"),
            run_id: run.into(),
            replica: Some(replica),
            port_offset: Some(offset),
            config_digest: Some("digest".into()),
            state: state.into(),
        }
    }

    fn input(attempt: Attempt, replicas: u32) -> PlanInput<'static> {
        PlanInput {
            attempt,
            run_id: "run-2",
            config_digest: "digest",
            replicas,
            name_prefix: "web",
        }
    }

    fn offsets(plan: &RolloutPlan) -> Vec<u32> {
        plan.create.iter().map(|replica| replica.offset).collect()
    }

    #[test]
    fn a_first_deploy_creates_every_replica_from_offset_zero() {
        let plan = plan_rollout(&input(Attempt::Fresh, 2), &[]);
        assert_eq!(offsets(&plan), vec![0, 1]);
        assert!(plan.previous.is_empty() && plan.adopt.is_empty() && plan.discard.is_empty());
        assert_eq!(plan.create[1].name, replica_name("web", "run-2", 1));
    }

    #[test]
    fn new_replicas_take_offsets_the_previous_version_does_not_hold() {
        let previous = [
            container("run-1", 0, 0, "running"),
            container("run-1", 1, 1, "running"),
        ];
        let plan = plan_rollout(&input(Attempt::Fresh, 2), &previous);
        assert_eq!(offsets(&plan), vec![2, 3]);
        assert_eq!(plan.previous, previous.to_vec());
    }

    #[test]
    fn versions_alternate_between_two_ranges_of_offsets() {
        let previous = [
            container("run-1", 0, 2, "running"),
            container("run-1", 1, 3, "running"),
        ];
        assert_eq!(
            offsets(&plan_rollout(&input(Attempt::Fresh, 2), &previous)),
            vec![0, 1]
        );
    }

    #[test]
    fn growing_the_replica_count_skips_offsets_still_in_use() {
        let previous = [
            container("run-1", 0, 0, "running"),
            container("run-1", 1, 1, "running"),
            container("run-1", 2, 2, "running"),
        ];
        assert_eq!(
            offsets(&plan_rollout(&input(Attempt::Fresh, 2), &previous)),
            vec![3, 4]
        );
    }

    #[test]
    fn a_fresh_attempt_discards_leftovers_of_its_own_run() {
        let leftovers = [container("run-2", 0, 2, "running")];
        let plan = plan_rollout(&input(Attempt::Fresh, 1), &leftovers);
        assert_eq!(plan.discard, leftovers.to_vec());
        assert_eq!(offsets(&plan), vec![0]);
    }

    #[test]
    fn a_resume_adopts_matching_running_replicas_and_creates_the_rest() {
        let existing = [
            container("run-1", 0, 0, "running"),
            container("run-2", 0, 1, "running"),
        ];
        let plan = plan_rollout(&input(Attempt::Resume, 2), &existing);
        assert_eq!(plan.adopt.len(), 1);
        assert_eq!(plan.adopt[0].0.index, 0);
        assert_eq!(plan.adopt[0].0.offset, 1);
        assert_eq!(plan.create.len(), 1);
        assert_eq!(plan.create[0].index, 1);
        assert_eq!(plan.create[0].offset, 2);
        assert!(plan.discard.is_empty());
    }

    #[test]
    fn a_resume_discards_exited_changed_duplicate_and_surplus_containers() {
        let mut changed = container("run-2", 1, 3, "running");
        changed.config_digest = Some("other".into());
        let mut duplicate = container("run-2", 0, 4, "running");
        duplicate.name = "web-zz-0".into();
        let existing = [
            container("run-2", 0, 2, "running"),
            duplicate.clone(),
            changed.clone(),
            container("run-2", 5, 5, "running"),
            container("run-2", 2, 6, "exited"),
        ];
        let plan = plan_rollout(&input(Attempt::Resume, 3), &existing);
        assert_eq!(plan.adopt.len(), 1);
        let discarded: Vec<_> = plan.discard.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(discarded.len(), 4, "{discarded:?}");
        assert!(discarded.contains(&duplicate.name.as_str()));
        assert!(discarded.contains(&changed.name.as_str()));
        let created: Vec<_> = plan.create.iter().map(|r| (r.index, r.offset)).collect();
        assert_eq!(created, vec![(1, 0), (2, 1)]);
    }

    #[test]
    fn the_run_tag_is_short_stable_and_differs_between_runs() {
        // Stable across processes and releases: a resume names the replicas of a run as its
        // first attempt did, so the tag of a given run id is fixed here, not recomputed.
        assert_eq!(run_tag("run-1"), "4e65d3fb");
        assert_eq!(run_tag("run-2"), "b9d17232");
        // Eight lowercase hex digits, valid in a container name whatever the run id holds.
        for run_id in [
            "run-1",
            "",
            "20240501-101500-ab12",
            "run/1 with spaces:ä",
            "x".repeat(300).as_str(),
        ] {
            let tag = run_tag(run_id);
            assert_eq!(tag.len(), 8, "{tag}");
            assert!(
                tag.chars()
                    .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c)),
                "{tag}"
            );
        }
        // Different runs get different tags.
        let tags: BTreeSet<String> = (0..1000).map(|n| run_tag(&format!("run-{n}"))).collect();
        assert_eq!(tags.len(), 1000);
    }

    fn host_config(json: &str) -> DockerTargetConfig {
        serde_json::from_str(json).expect("fixture parses")
    }

    #[test]
    fn host_networking_offsets_the_app_and_probe_ports() {
        let config = host_config(r#"{"port": 8080, "health": {"http": {"path": "/health"}}}"#);
        let ports = replica_ports(&config, 3).expect("ports");
        assert_eq!(ports.app_port, Some(8083));
        assert_eq!(ports.probe_port, Some(8083));
        assert_eq!(ports.host_ports(&config.network), vec![8083]);
    }

    #[test]
    fn a_named_network_offsets_published_host_ports_only() {
        let config = host_config(
            r#"{"network": "shop", "port": 80, "ports": ["127.0.0.1:8080:80", "9000:9000/udp"],
                "health": {"http": {"path": "/health"}}}"#,
        );
        let ports = replica_ports(&config, 1).expect("ports");
        assert_eq!(ports.app_port, Some(80));
        assert_eq!(ports.probe_port, Some(8081));
        assert_eq!(ports.host_ports(&config.network), vec![8081, 9001]);
    }

    #[test]
    fn an_offset_past_the_last_port_is_an_error() {
        let config = host_config(r#"{"port": 65535}"#);
        assert!(replica_ports(&config, 1).is_err());
    }

    #[test]
    fn the_create_request_carries_labels_env_network_and_restart_policy() {
        let config = host_config(
            r#"{"port": 8080, "env": {"GREETING": "hello"}, "labels": {"team": "shop"},
                "command": ["httpd", "-f"], "restart": "on-failure"}"#,
        );
        let replica = Replica {
            index: 1,
            offset: 3,
            name: "web-x-1".into(),
        };
        let ports = replica_ports(&config, replica.offset).expect("ports");
        let body = container_body(&ReplicaBlueprint {
            pipeline: "demo",
            target: "local",
            run_id: "run-2",
            image: "demo:1",
            image_digest: "sha256:abc",
            config_digest: "cfg",
            config: &config,
            replica: &replica,
            ports: &ports,
        });
        let labels = body.labels.expect("labels");
        assert_eq!(labels[label::PIPELINE], "demo");
        assert_eq!(labels[label::TARGET], "local");
        assert_eq!(labels[label::RUN_ID], "run-2");
        assert_eq!(labels[label::IMAGE_DIGEST], "sha256:abc");
        assert_eq!(labels[label::REPLICA], "1");
        assert_eq!(labels[label::PORT_OFFSET], "3");
        assert_eq!(labels["team"], "shop");
        let env = body.env.expect("env");
        assert!(env.contains(&"GREETING=hello".to_owned()));
        assert!(env.contains(&"PORT=8083".to_owned()));
        assert_eq!(body.cmd, Some(vec!["httpd".to_owned(), "-f".to_owned()]));
        let host = body.host_config.expect("host config");
        assert_eq!(host.network_mode.as_deref(), Some("host"));
        assert_eq!(
            host.restart_policy.and_then(|policy| policy.name),
            Some(bollard::models::RestartPolicyNameEnum::ON_FAILURE)
        );
        assert!(host.port_bindings.is_none());
    }

    #[test]
    fn labels_read_back_into_an_existing_container() {
        let labels: HashMap<String, String> = [
            (label::RUN_ID, "run-1"),
            (label::REPLICA, "2"),
            (label::PORT_OFFSET, "5"),
            (label::CONFIG_DIGEST, "cfg"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        let container =
            ExistingContainer::from_labels("id".into(), "/web-1".into(), "running".into(), &labels)
                .expect("has a run label");
        assert_eq!(container.name, "web-1");
        assert_eq!(container.replica, Some(2));
        assert_eq!(container.port_offset, Some(5));
        assert!(container.is_running());
        assert!(
            ExistingContainer::from_labels(
                "id".into(),
                "x".into(),
                "running".into(),
                &HashMap::new()
            )
            .is_none()
        );
    }

    proptest::proptest! {
        /// Whatever the previous version holds, a fresh rollout creates exactly `replicas`
        /// containers, each with its own offset, none shared with a live container.
        #[test]
        fn new_offsets_are_distinct_and_never_shared_with_the_previous_version(
            previous_offsets in proptest::collection::vec(0u32..40, 0..20),
            replicas in 1u32..20,
        ) {
            let previous: Vec<ExistingContainer> = previous_offsets
                .iter()
                .enumerate()
                .map(|(index, offset)| {
                    container("run-1", u32::try_from(index).unwrap_or(0), *offset, "running")
                })
                .collect();
            let plan = plan_rollout(&input(Attempt::Fresh, replicas), &previous);
            let created = offsets(&plan);
            proptest::prop_assert_eq!(created.len(), replicas as usize);
            let unique: BTreeSet<u32> = created.iter().copied().collect();
            proptest::prop_assert_eq!(unique.len(), created.len());
            for offset in &created {
                proptest::prop_assert!(!previous_offsets.contains(offset));
            }
            // Offsets stay compact: never past what the previous ones and the new ones need.
            let bound = u32::try_from(previous_offsets.len()).unwrap_or(u32::MAX) + replicas;
            proptest::prop_assert!(created.iter().all(|offset| *offset < bound));
        }
    }
}
