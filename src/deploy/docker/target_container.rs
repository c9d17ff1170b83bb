//! How a container already running for a target is reported: by a deploy preview (the
//! version it would stop) and by taking a target down (what it removes).

use std::fmt;

use serde::{Deserialize, Serialize};

use super::containers::ListedContainer;

/// Length of the short container id `docker ps` shows.
const SHORT_ID_LEN: usize = 12;

/// A container shipit runs for a target, as the daemon lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetContainer {
    pub name: String,
    /// The short container id, as `docker ps` shows it.
    pub id: String,
    /// The run that deployed it.
    pub run_id: String,
    /// Host ports it listens on or publishes.
    pub ports: Vec<u16>,
    /// Whether it was running when listed; one that is not is removed all the same.
    pub running: bool,
}

impl From<&ListedContainer> for TargetContainer {
    fn from(listed: &ListedContainer) -> Self {
        let container = &listed.container;
        TargetContainer {
            name: container.name.clone(),
            id: container.id.chars().take(SHORT_ID_LEN).collect(),
            run_id: container.run_id.clone(),
            ports: listed.host_ports.clone(),
            running: container.is_running(),
        }
    }
}

/// `web-9c1d-0 (:8080)`, `web-9c1d-0 (:8080, exited)`, `worker-9c1d-0`.
impl fmt::Display for TargetContainer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut notes: Vec<String> = self.ports.iter().map(|port| format!(":{port}")).collect();
        if !self.running {
            notes.push("not running".to_owned());
        }
        if notes.is_empty() {
            write!(f, "{}", self.name)
        } else {
            write!(f, "{} ({})", self.name, notes.join(", "))
        }
    }
}

/// Containers sorted by name, so reports read the same whatever order the daemon lists in.
pub(crate) fn sorted_by_name<'a>(
    listed: impl IntoIterator<Item = &'a ListedContainer>,
) -> Vec<TargetContainer> {
    let mut containers: Vec<TargetContainer> =
        listed.into_iter().map(TargetContainer::from).collect();
    containers.sort_by(|a, b| a.name.cmp(&b.name));
    containers
}

/// `a (:8080), b (:8081)`.
pub(crate) fn list_text(containers: &[TargetContainer]) -> String {
    containers
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use crate::deploy::docker::DockerTargetConfig;
    use crate::deploy::docker::plan::{
        Replica, ReplicaBlueprint, container_body, parse_host_ports_label, replica_ports,
    };

    /// The ports a container is created with are the ports the listing reads back from it.
    fn recorded_ports(config_json: &str, offset: u32) -> (Vec<u16>, Option<Vec<u16>>) {
        let config: DockerTargetConfig = serde_json::from_str(config_json).expect("parses");
        let replica = Replica {
            index: 0,
            offset,
            name: "web-x-0".into(),
        };
        let ports = replica_ports(&config, offset).expect("ports");
        let body = container_body(&ReplicaBlueprint {
            pipeline: "shop",
            target: "web",
            run_id: "run-1",
            image: "img",
            image_digest: "sha256:1",
            config_digest: "cfg",
            config: &config,
            replica: &replica,
            ports: &ports,
        });
        let labels = body.labels.expect("labels");
        (
            ports.host_ports(&config.network),
            parse_host_ports_label(&labels),
        )
    }

    #[test]
    fn a_container_records_the_host_ports_it_serves() {
        let (host, read) = recorded_ports(r#"{"port": 8080}"#, 2);
        assert_eq!(host, vec![8082]);
        assert_eq!(read, Some(host));

        let (host, read) = recorded_ports(
            r#"{"network": "shop", "ports": ["8080:80", "127.0.0.1:9000:9000/udp"]}"#,
            1,
        );
        assert_eq!(host, vec![8081, 9001]);
        assert_eq!(read, Some(host));

        let (host, read) = recorded_ports(r#"{"network": "none"}"#, 0);
        assert!(host.is_empty());
        assert_eq!(read, Some(Vec::new()));
    }

    #[test]
    fn a_missing_or_damaged_ports_label_reads_as_unknown() {
        use std::collections::HashMap;
        assert_eq!(parse_host_ports_label(&HashMap::new()), None);
        let damaged = HashMap::from([("shipit.host-ports".to_owned(), "80,x".to_owned())]);
        assert_eq!(parse_host_ports_label(&damaged), None);
    }
}
