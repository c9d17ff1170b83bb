//! The `docker:` block of a deploy target: what users write under `deploy.<target>.docker:`,
//! and the checks that run before anything touches the daemon.
//!
//! ```yaml
//! docker:
//!   name: web              # container name prefix (default: <pipeline>-<target>)
//!   replicas: 2
//!   env: { GREETING: hello }
//!   command: ["httpd", "-f", "-p", "8080"]   # optional
//!   network: host          # `host` (default) or a named network
//!   port: 8080             # the port replica 0 listens on (see "Ports" below)
//!   restart: unless-stopped
//!   labels: { team: shop }
//!   health:                # one of http / command / image: true, or none of them
//!     http: { path: /health, expect_status: 200 }
//!     interval: 2s
//!     retries: 3
//!     start_period: 5s
//!   timeout: 2m            # deadline for the whole health gate
//! ```
//!
//! # Ports
//!
//! A deploy starts the new containers *before* it removes the previous ones, so for a while two
//! versions run side by side, and with host networking every replica of both versions shares the
//! host's ports. shipit therefore never gives two live containers of a target the same port:
//! each container gets a *port offset* `k`, the lowest number not used by another live
//! container of the same target (recorded in the `shipit.port-offset` label), and
//!
//! * with `network: host`, the app is told to listen on `port + k` through the environment
//!   variable named by `port_env` (`PORT` by default), and the HTTP probe asks `port + k`;
//! * with a named network, the app listens on the container port of each `ports` entry
//!   (`PORT` is `port` itself, the container has its own network namespace), and each entry
//!   `HOST:CONTAINER` is published on host port `HOST + k`; the HTTP probe asks the published
//!   host port of its container port.
//!
//! Two replicas first deployed with `port: 8080` listen on 8080 and 8081; the next version
//! takes 8082 and 8083 while the first still runs, and the one after that goes back to 8080
//! and 8081. Put a reverse proxy in front when clients need one fixed address, or read the
//! ports from the deploy's JSON result.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use crate::config_problem::ConfigProblem;
use crate::config_problem::ValidateConfig;
pub use crate::duration::HumanDuration;

/// Label keys that shipit sets itself; users cannot override them.
pub(crate) const RESERVED_LABEL_PREFIX: &str = "shipit.";

/// The most replicas one target may ask for: a typo such as `replicas: 200` on a single
/// host is far more likely than a real need, and each replica claims a host port.
const MAX_REPLICAS: u32 = 64;

/// How a `deploy.<target>.docker:` block runs the built image on the Docker daemon.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DockerTargetConfig {
    /// Container name prefix. Containers are named `<name>-<run>-<replica>`, where `<run>` is
    /// a short hash of the run id. Defaults to `<pipeline>-<target>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,

    /// How many containers run the image.
    #[serde(default = "default_replicas")]
    pub replicas: u32,

    /// Environment variables given to every replica.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,

    /// Command (argv, no shell) replacing the image's CMD.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,

    /// `host` (the default, and the only mode on a host without a bridge network), `none`, or
    /// the name of an existing Docker network, which allows published `ports`.
    #[serde(default)]
    #[schemars(with = "String")]
    pub network: NetworkMode,

    /// The port replica 0 of the first version listens on. Every replica is told its own port
    /// through the `port_env` variable; see the module documentation for how ports are shared
    /// between replicas and versions. Defaults to `health.http.port`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,

    /// Name of the environment variable that carries the replica's port.
    #[serde(default = "default_port_env")]
    pub port_env: String,

    /// Published ports, `[IP:]HOST:CONTAINER[/tcp|udp]`, only with a named network. Replica
    /// containers publish `HOST + offset` so versions and replicas never clash.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<String>,

    /// Docker restart policy of the replicas.
    #[serde(default)]
    pub restart: RestartPolicy,

    /// Extra labels on every replica. Keys starting with `shipit.` are reserved.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,

    /// The gate every new replica must pass before the previous version is removed.
    #[serde(default)]
    pub health: HealthConfig,

    /// Deadline for the whole health gate, counted from the start of the first new replica.
    #[serde(default = "default_timeout")]
    pub timeout: HumanDuration,
}

impl Default for DockerTargetConfig {
    fn default() -> Self {
        Self {
            name: None,
            replicas: default_replicas(),
            env: BTreeMap::new(),
            command: None,
            network: NetworkMode::default(),
            port: None,
            port_env: default_port_env(),
            ports: Vec::new(),
            restart: RestartPolicy::default(),
            labels: BTreeMap::new(),
            health: HealthConfig::default(),
            timeout: default_timeout(),
        }
    }
}

fn default_replicas() -> u32 {
    1
}

fn default_port_env() -> String {
    "PORT".to_owned()
}

fn default_timeout() -> HumanDuration {
    HumanDuration(Duration::from_secs(120))
}

/// The network the replicas join.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(from = "String", into = "String")]
pub enum NetworkMode {
    /// Share the host's network stack: the app's port is a host port.
    #[default]
    Host,
    /// No network at all (a worker that needs none).
    None,
    /// A user-defined (or the default `bridge`) network; ports are published.
    Named(String),
}

impl From<String> for NetworkMode {
    fn from(value: String) -> Self {
        match value.as_str() {
            "host" => NetworkMode::Host,
            "none" => NetworkMode::None,
            _ => NetworkMode::Named(value),
        }
    }
}

impl From<NetworkMode> for String {
    fn from(value: NetworkMode) -> Self {
        value.as_docker_mode().to_owned()
    }
}

impl NetworkMode {
    /// The value of `HostConfig.NetworkMode`.
    pub(crate) fn as_docker_mode(&self) -> &str {
        match self {
            NetworkMode::Host => "host",
            NetworkMode::None => "none",
            NetworkMode::Named(name) => name,
        }
    }
}

/// Docker restart policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum RestartPolicy {
    /// Never restart.
    No,
    /// Always restart, also after the daemon restarts.
    Always,
    /// Restart unless someone stopped the container.
    #[default]
    UnlessStopped,
    /// Restart when the process exits with a non-zero code.
    OnFailure,
}

/// The health gate. Set at most one of `http`, `command` and `image`; with none of them the
/// gate only asks that the container is still running, without a restart, once `start_period`
/// has passed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HealthConfig {
    /// Probe an HTTP endpoint of the replica from where shipit runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpProbeConfig>,

    /// Run this argv inside the container (docker exec); exit code 0 passes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,

    /// Use the image's own HEALTHCHECK: the gate passes when Docker reports `healthy` and
    /// fails when it reports `unhealthy` (Docker applies the image's interval and retries).
    #[serde(default, skip_serializing_if = "is_false")]
    pub image: bool,

    /// Time between two probes (and between two looks at the container's state). A probe
    /// that has not answered within this time counts as failed.
    #[serde(default = "default_interval")]
    pub interval: HumanDuration,

    /// Consecutive failed probes, after the start period, that fail the gate.
    #[serde(default = "default_retries")]
    pub retries: u32,

    /// Grace time after the container starts during which failed probes do not count. With
    /// no probe, the time the container must stay up.
    #[serde(default = "default_start_period")]
    pub start_period: HumanDuration,
}

impl Default for HealthConfig {
    fn default() -> Self {
        Self {
            http: None,
            command: None,
            image: false,
            interval: default_interval(),
            retries: default_retries(),
            start_period: default_start_period(),
        }
    }
}

fn is_false(value: &bool) -> bool {
    !*value
}

fn default_interval() -> HumanDuration {
    HumanDuration(Duration::from_secs(2))
}

fn default_retries() -> u32 {
    3
}

fn default_start_period() -> HumanDuration {
    HumanDuration(Duration::from_secs(5))
}

/// An HTTP GET probe.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HttpProbeConfig {
    /// Path to request, starting with `/`.
    #[serde(default = "default_probe_path")]
    pub path: String,

    /// With host networking: the base port probed (offset like `port`); defaults to `port`.
    /// With a named network: the container port, which must be published by `ports`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,

    /// The status that passes. When unset, any status from 200 to 399 passes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expect_status: Option<u16>,

    /// Address shipit connects to. Set it to the Docker host's address when DOCKER_HOST
    /// points at a remote daemon.
    #[serde(default = "default_probe_host")]
    pub host: String,
}

fn default_probe_path() -> String {
    "/".to_owned()
}

fn default_probe_host() -> String {
    "127.0.0.1".to_owned()
}

/// Which gate a configuration asks for, once validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum GateProbe<'a> {
    /// Running without restart through the start period.
    None,
    /// Docker's own health status from the image's HEALTHCHECK.
    Image,
    Http(&'a HttpProbeConfig),
    Command(&'a [String]),
}

impl HealthConfig {
    pub(crate) fn probe(&self) -> GateProbe<'_> {
        if self.image {
            GateProbe::Image
        } else if let Some(http) = &self.http {
            GateProbe::Http(http)
        } else if let Some(command) = &self.command {
            GateProbe::Command(command)
        } else {
            GateProbe::None
        }
    }
}

/// One published port, parsed from `[IP:]HOST:CONTAINER[/PROTO]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PortMapping {
    pub host_ip: Option<IpAddr>,
    pub host_port: u16,
    pub container_port: u16,
    pub protocol: PortProtocol,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PortProtocol {
    Tcp,
    Udp,
}

impl PortProtocol {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            PortProtocol::Tcp => "tcp",
            PortProtocol::Udp => "udp",
        }
    }
}

impl PortMapping {
    pub(crate) fn parse(text: &str) -> Result<Self, String> {
        let (address, protocol) = match text.rsplit_once('/') {
            Some((address, "tcp")) => (address, PortProtocol::Tcp),
            Some((address, "udp")) => (address, PortProtocol::Udp),
            Some((_, other)) => {
                return Err(format!("unknown protocol `{other}`; use tcp or udp"));
            }
            None => (text, PortProtocol::Tcp),
        };
        // The IP part may itself hold colons (IPv6 in brackets), so split from the right.
        let mut parts = address.rsplitn(3, ':');
        let container = parts.next().unwrap_or_default();
        let host = parts.next();
        let ip = parts.next();
        let Some(host) = host else {
            return Err(format!(
                "`{text}` has no host port; write HOST:CONTAINER such as 8080:80"
            ));
        };
        let parse_port = |value: &str, what: &str| -> Result<u16, String> {
            match value.parse::<u16>() {
                Ok(0) => Err(format!(
                    "{what} port 0 in `{text}`: give a fixed port so shipit can probe it"
                )),
                Ok(port) => Ok(port),
                Err(_) => Err(format!(
                    "{what} port `{value}` in `{text}` is not a port number"
                )),
            }
        };
        let host_ip = match ip {
            None => None,
            Some(ip) => {
                let trimmed = ip.trim_start_matches('[').trim_end_matches(']');
                Some(
                    trimmed
                        .parse::<IpAddr>()
                        .map_err(|_| format!("`{ip}` in `{text}` is not an IP address"))?,
                )
            }
        };
        Ok(PortMapping {
            host_ip,
            host_port: parse_port(host, "host")?,
            container_port: parse_port(container, "container")?,
            protocol,
        })
    }
}

fn problem(path: impl Into<String>, message: impl Into<String>) -> ConfigProblem {
    ConfigProblem::new(path, message)
}

/// Docker accepts container names matching `[a-zA-Z0-9][a-zA-Z0-9_.-]+`.
fn is_valid_container_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(first) if first.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

impl DockerTargetConfig {
    /// The container name prefix for a pipeline's target.
    pub(crate) fn name_prefix(&self, pipeline: &str, target: &str) -> String {
        match &self.name {
            Some(name) => name.clone(),
            None => {
                let joined = format!("{pipeline}-{target}");
                let cleaned: String = joined
                    .chars()
                    .map(|c| {
                        if c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-') {
                            c
                        } else {
                            '-'
                        }
                    })
                    .collect();
                let cleaned = cleaned.trim_start_matches(['_', '.', '-']);
                if cleaned.is_empty() {
                    "shipit".to_owned()
                } else {
                    cleaned.to_owned()
                }
            }
        }
    }

    /// The base port the app listens on: `port`, else the HTTP probe's port.
    pub(crate) fn app_port(&self) -> Option<u16> {
        self.port
            .or_else(|| self.health.http.as_ref().and_then(|http| http.port))
    }

    /// The published ports, skipping entries that do not parse (validation reports them).
    pub(crate) fn port_mappings(&self) -> Vec<PortMapping> {
        self.ports
            .iter()
            .filter_map(|text| PortMapping::parse(text).ok())
            .collect()
    }

    /// Every problem with this configuration, each at its field path. An empty list means
    /// the configuration can be deployed (the image and the daemon are checked at deploy).
    pub fn validate(&self) -> Vec<ConfigProblem> {
        self.problems()
    }
}

impl ValidateConfig for DockerTargetConfig {
    fn problems(&self) -> Vec<ConfigProblem> {
        let mut problems = Vec::new();

        if let Some(name) = &self.name
            && (!is_valid_container_name(name) || name.len() > 100)
        {
            problems.push(problem(
                "name",
                format!(
                    "`{name}` is not a valid container name prefix: use letters, digits, `_`, `.` \
                     and `-`, starting with a letter or digit, at most 100 characters"
                ),
            ));
        }

        if self.replicas == 0 {
            problems.push(problem(
                "replicas",
                "replicas must be at least 1; remove the target to stop deploying it",
            ));
        } else if self.replicas > MAX_REPLICAS {
            problems.push(problem(
                "replicas",
                format!("at most {MAX_REPLICAS} replicas run on one Docker host"),
            ));
        }

        for key in self.env.keys() {
            if key.is_empty() || key.contains('=') || key.contains('\0') {
                problems.push(problem(
                    format!("env.{key}"),
                    "an environment variable name must be non-empty, without `=`",
                ));
            }
        }
        if self.app_port().is_some() && self.env.contains_key(&self.port_env) {
            problems.push(problem(
                format!("env.{}", self.port_env),
                format!(
                    "`{}` is set by shipit to each replica's own port; remove it from env, or \
                     name another variable with `port_env`",
                    self.port_env
                ),
            ));
        }
        if self.port_env.is_empty() || self.port_env.contains('=') {
            problems.push(problem(
                "port_env",
                "must be a variable name, non-empty, without `=`",
            ));
        }

        if let Some(command) = &self.command
            && command.is_empty()
        {
            problems.push(problem(
                "command",
                "an empty command runs nothing; remove `command` to use the image's CMD",
            ));
        }

        if let NetworkMode::Named(name) = &self.network
            && (name.is_empty() || name.starts_with("container:"))
        {
            problems.push(problem(
                "network",
                "use `host`, `none` or the name of a Docker network",
            ));
        }

        for (key, _) in self.labels.iter() {
            if key.starts_with(RESERVED_LABEL_PREFIX) {
                problems.push(problem(
                    format!("labels.{key}"),
                    "labels starting with `shipit.` are set by shipit itself",
                ));
            }
        }

        self.validate_ports(&mut problems);
        self.validate_health(&mut problems);

        if self.timeout.0.is_zero() {
            problems.push(problem(
                "timeout",
                "the gate deadline must be longer than 0s",
            ));
        }

        problems
    }
}

impl DockerTargetConfig {
    fn validate_ports(&self, problems: &mut Vec<ConfigProblem>) {
        let mut mappings = Vec::new();
        for (index, text) in self.ports.iter().enumerate() {
            match PortMapping::parse(text) {
                Ok(mapping) => mappings.push((index, mapping)),
                Err(message) => problems.push(problem(format!("ports[{index}]"), message)),
            }
        }
        match &self.network {
            NetworkMode::Host | NetworkMode::None if !self.ports.is_empty() => {
                problems.push(problem(
                    "ports",
                    format!(
                        "ports are published only on a named network; with `network: {}` {}",
                        self.network.as_docker_mode(),
                        if self.network == NetworkMode::Host {
                            "the app listens on the host directly: set `port` instead"
                        } else {
                            "the container has no network"
                        }
                    ),
                ));
            }
            _ => {}
        }
        // Versions alternate between offsets, so a replica's ports can reach
        // `base + 2 * replicas - 1`: the whole range must be valid ports.
        let span = self.replicas.clamp(1, MAX_REPLICAS) * 2 - 1;
        let mut check_span = |path: String, base: u16| {
            if u32::from(base) + span > u32::from(u16::MAX) {
                problems.push(problem(
                    path,
                    format!(
                        "port {base} leaves no room for {} replicas of two versions side by side; \
                         use a port below {}",
                        self.replicas,
                        u32::from(u16::MAX) - span + 1
                    ),
                ));
            }
        };
        if self.network == NetworkMode::Host
            && let Some(port) = self.app_port()
        {
            let path = if self.port.is_some() {
                "port"
            } else {
                "health.http.port"
            };
            check_span(path.to_owned(), port);
        }
        for (index, mapping) in &mappings {
            check_span(format!("ports[{index}]"), mapping.host_port);
        }
        for (position, (_, a)) in mappings.iter().enumerate() {
            for (second, b) in mappings.iter().skip(position + 1) {
                let overlap = a.protocol == b.protocol
                    && u32::from(a.host_port).abs_diff(u32::from(b.host_port)) <= span;
                if overlap {
                    problems.push(problem(
                        format!("ports[{second}]"),
                        format!(
                            "host ports {} and {} are too close: each entry needs room for {} \
                             ports ({} replicas, two versions)",
                            a.host_port,
                            b.host_port,
                            span + 1,
                            self.replicas
                        ),
                    ));
                }
            }
        }
    }

    fn validate_health(&self, problems: &mut Vec<ConfigProblem>) {
        let health = &self.health;
        let chosen = [
            health.http.is_some().then_some("http"),
            health.command.is_some().then_some("command"),
            health.image.then_some("image"),
        ];
        let chosen: Vec<&str> = chosen.into_iter().flatten().collect();
        if chosen.len() > 1 {
            problems.push(problem(
                "health",
                format!("choose one health check, not {}", chosen.join(" and ")),
            ));
        }
        if health.interval.0.is_zero() {
            problems.push(problem("health.interval", "must be longer than 0s"));
        }
        if health.retries == 0 {
            problems.push(problem(
                "health.retries",
                "must be at least 1 (the number of failed probes that fail the gate)",
            ));
        }
        if health.start_period.0 >= self.timeout.0 {
            problems.push(problem(
                "health.start_period",
                format!(
                    "the start period ({}) must be shorter than the gate deadline `timeout` ({})",
                    health.start_period, self.timeout
                ),
            ));
        }
        if let Some(command) = &health.command
            && command.is_empty()
        {
            problems.push(problem("health.command", "the probe command is empty"));
        }
        if let Some(http) = &health.http {
            if !http.path.starts_with('/') {
                problems.push(problem(
                    "health.http.path",
                    format!("`{}` must start with `/`", http.path),
                ));
            }
            if let Some(status) = http.expect_status
                && !(100..=599).contains(&status)
            {
                problems.push(problem(
                    "health.http.expect_status",
                    format!("{status} is not an HTTP status"),
                ));
            }
            if http.host.is_empty() {
                problems.push(problem(
                    "health.http.host",
                    "must be a host name or address",
                ));
            }
            match &self.network {
                NetworkMode::None => problems.push(problem(
                    "health.http",
                    "a container with `network: none` cannot be probed over HTTP; use a command \
                     probe",
                )),
                NetworkMode::Host => {
                    if self.app_port().is_none() {
                        problems.push(problem(
                            "health.http.port",
                            "set the port to probe here or in `port`; with host networking \
                             each replica listens on its own port, which the app reads from \
                             the PORT variable",
                        ));
                    }
                }
                NetworkMode::Named(_) => {
                    let mappings = self.port_mappings();
                    match self.probe_container_port() {
                        None => problems.push(problem(
                            "health.http.port",
                            "set the container port to probe (one of the published `ports`)",
                        )),
                        Some(port) => {
                            let published = mappings.iter().any(|mapping| {
                                mapping.container_port == port
                                    && mapping.protocol == PortProtocol::Tcp
                            });
                            if !published && !mappings.is_empty() {
                                problems.push(problem(
                                    "health.http.port",
                                    format!(
                                        "container port {port} is not published: add \
                                         `HOST:{port}` to `ports`"
                                    ),
                                ));
                            } else if mappings.is_empty() && self.ports.is_empty() {
                                problems.push(problem(
                                    "ports",
                                    format!(
                                        "publish the probed container port {port}, e.g. \
                                         `8080:{port}`"
                                    ),
                                ));
                            }
                        }
                    }
                }
            }
        }
    }

    /// On a named network, the container port the HTTP probe asks for: `health.http.port`,
    /// else `port`, else the only published port.
    pub(crate) fn probe_container_port(&self) -> Option<u16> {
        let http = self.health.http.as_ref()?;
        http.port.or(self.port).or_else(|| {
            let mappings = self.port_mappings();
            match mappings.as_slice() {
                [only] => Some(only.container_port),
                _ => None,
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Fixtures are JSON, the subset of YAML that needs no YAML parser in this module; the
    // pipeline loader feeds the same serde derive from YAML.
    fn parse(json: &str) -> DockerTargetConfig {
        serde_json::from_str(json).expect("fixture parses")
    }

    fn paths(config: &DockerTargetConfig) -> Vec<String> {
        config
            .validate()
            .into_iter()
            .map(|problem| problem.path)
            .collect()
    }

    #[test]
    fn the_documented_example_parses_and_validates() {
        let config = parse(
            r#"{
              "name": "web",
              "replicas": 2,
              "env": { "GREETING": "hello" },
              "command": ["httpd", "-f", "-p", "8080"],
              "network": "host",
              "restart": "unless-stopped",
              "labels": { "team": "shop" },
              "health": {
                "http": { "path": "/health", "port": 8080, "expect_status": 200 },
                "interval": "2s",
                "retries": 3,
                "start_period": "5s"
              },
              "timeout": "2m"
            }"#,
        );
        assert_eq!(config.validate(), vec![]);
        assert_eq!(config.replicas, 2);
        assert_eq!(config.app_port(), Some(8080));
        assert_eq!(config.timeout.get(), Duration::from_secs(120));
        assert_eq!(config.health.interval.get(), Duration::from_secs(2));
        assert_eq!(config.restart, RestartPolicy::UnlessStopped);
        assert!(matches!(config.health.probe(), GateProbe::Http(_)));
    }

    #[test]
    fn defaults_are_one_replica_on_the_host_network_with_a_running_gate() {
        let config = parse("{}");
        assert_eq!(config, DockerTargetConfig::default());
        assert_eq!(config.network, NetworkMode::Host);
        assert_eq!(config.health.probe(), GateProbe::None);
        assert_eq!(config.name_prefix("demo", "local"), "demo-local");
        assert!(config.validate().is_empty());
    }

    #[test]
    fn unknown_fields_are_rejected() {
        let error = serde_json::from_str::<DockerTargetConfig>(r#"{"replica": 2}"#).unwrap_err();
        assert!(error.to_string().contains("replica"), "{error}");
    }

    #[test]
    fn a_bad_duration_says_how_to_write_one() {
        let error = serde_json::from_str::<DockerTargetConfig>(r#"{"timeout": "two minutes"}"#)
            .unwrap_err();
        assert!(error.to_string().contains("1m30s"), "{error}");
    }

    #[test]
    fn the_config_round_trips_through_serialize() {
        let config = parse(
            r#"{"replicas": 3, "network": "shop", "ports": ["8080:80"], "port": 80,
                "health": {"http": {"path": "/health"}}}"#,
        );
        let json = serde_json::to_string(&config).expect("serializes");
        let back: DockerTargetConfig = serde_json::from_str(&json).expect("parses back");
        assert_eq!(back, config);
        assert_eq!(back.network, NetworkMode::Named("shop".into()));
    }

    #[test]
    fn two_health_checks_at_once_are_rejected() {
        let config = parse(r#"{"port": 8080, "health": {"http": {"path": "/x"}, "image": true}}"#);
        assert_eq!(paths(&config), vec!["health"]);
    }

    #[test]
    fn replicas_on_the_host_network_with_an_http_probe_need_a_port() {
        let config = parse(r#"{"replicas": 2, "health": {"http": {"path": "/health"}}}"#);
        assert_eq!(paths(&config), vec!["health.http.port"]);
    }

    #[test]
    fn published_ports_need_a_named_network() {
        let config = parse(r#"{"ports": ["8080:80"]}"#);
        assert_eq!(paths(&config), vec!["ports"]);
    }

    #[test]
    fn port_mappings_parse_with_ip_and_protocol() {
        assert_eq!(
            PortMapping::parse("127.0.0.1:8080:80/udp"),
            Ok(PortMapping {
                host_ip: Some("127.0.0.1".parse().expect("ip")),
                host_port: 8080,
                container_port: 80,
                protocol: PortProtocol::Udp,
            })
        );
        assert!(PortMapping::parse("80").is_err());
        assert!(PortMapping::parse("0:80").is_err());
        assert!(PortMapping::parse("8080:80/sctp").is_err());
        assert!(PortMapping::parse("nohost:8080:80").is_err());
    }

    #[test]
    fn close_published_ports_would_clash_between_versions() {
        let config =
            parse(r#"{"network": "shop", "replicas": 2, "ports": ["8080:80", "8082:81"]}"#);
        assert_eq!(paths(&config), vec!["ports[1]"]);
    }

    #[test]
    fn the_probed_port_must_be_published_on_a_named_network() {
        let config = parse(
            r#"{"network": "shop", "ports": ["8080:80"],
                "health": {"http": {"path": "/", "port": 9000}}}"#,
        );
        assert_eq!(paths(&config), vec!["health.http.port"]);
        let ok = parse(
            r#"{"network": "shop", "ports": ["8080:80"], "health": {"http": {"path": "/"}}}"#,
        );
        assert!(ok.validate().is_empty());
        assert_eq!(ok.probe_container_port(), Some(80));
    }

    #[test]
    fn reserved_labels_and_the_port_variable_cannot_be_overridden() {
        let config =
            parse(r#"{"port": 8080, "labels": {"shipit.run-id": "x"}, "env": {"PORT": "1"}}"#);
        let found = paths(&config);
        assert!(
            found.contains(&"labels.shipit.run-id".to_owned()),
            "{found:?}"
        );
        assert!(found.contains(&"env.PORT".to_owned()), "{found:?}");
    }

    #[test]
    fn a_start_period_longer_than_the_deadline_is_rejected() {
        let config = parse(r#"{"timeout": "10s", "health": {"start_period": "30s"}}"#);
        assert_eq!(paths(&config), vec!["health.start_period"]);
    }

    #[test]
    fn a_port_too_high_for_two_versions_is_rejected() {
        let config = parse(r#"{"port": 65535, "replicas": 1}"#);
        assert_eq!(paths(&config), vec!["port"]);
    }

    #[test]
    fn zero_replicas_and_empty_commands_are_rejected() {
        let config = parse(r#"{"replicas": 0, "command": [], "health": {"command": []}}"#);
        let found = paths(&config);
        assert!(found.contains(&"replicas".to_owned()));
        assert!(found.contains(&"command".to_owned()));
        assert!(found.contains(&"health.command".to_owned()));
    }

    #[test]
    fn the_default_name_prefix_is_a_valid_container_name() {
        let config = DockerTargetConfig::default();
        assert_eq!(
            config.name_prefix("my pipeline", "prod/eu"),
            "my-pipeline-prod-eu"
        );
        assert_eq!(config.name_prefix("--", "_"), "shipit");
    }

    #[test]
    fn the_json_schema_names_every_field() {
        let schema = schemars::schema_for!(DockerTargetConfig);
        let text = serde_json::to_string(&schema).expect("schema serializes");
        for field in [
            "replicas",
            "network",
            "port_env",
            "start_period",
            "expect_status",
        ] {
            assert!(text.contains(field), "{field} missing from schema");
        }
    }
}
