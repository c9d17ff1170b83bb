//! The setup every build and deploy test repeats, in one place: a name of its own (the pipeline
//! name of its deploys, the prefix of its image tags), the test environment's daemon, ports
//! leased for its replicas, and a sweep that removes its containers and images when the test
//! ends, passed or failed. A test then states only what differs.
//!
//! Names are unique per test and process, so tests run side by side on one daemon — also other
//! checkouts' test runs — and each sweeps only what it made.

use std::sync::Mutex;

use shipit::docker::DockerClient;

use super::port_lease::{PortLease, lease_ports};

pub struct Scenario {
    name: String,
    leases: Mutex<Vec<PortLease>>,
}

impl Scenario {
    /// A scenario for the test `test` (a short word: it starts every name the test makes).
    pub fn new(test: &str) -> Scenario {
        Scenario {
            name: super::unique_name(test),
            leases: Mutex::new(Vec::new()),
        }
    }

    /// The pipeline name of the test's deploys; its image tags start with it.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// An image reference of this test (`NAME-WHAT`, tag `latest` unless `what` has one),
    /// removed when the test ends.
    pub fn image(&self, what: &str) -> String {
        format!("{}-{what}", self.name)
    }

    /// `count` consecutive free ports on 127.0.0.1, the first returned, held for the test.
    pub fn ports(&self, count: u16) -> u16 {
        let lease = lease_ports(count);
        let base = lease.base;
        self.leases.lock().expect("lease lock").push(lease);
        base
    }

    /// The test environment's daemon, through shipit's own client.
    pub async fn client(&self) -> DockerClient {
        daemon().await
    }

    /// The test environment's daemon, as the bollard client shipit's deploy takes.
    pub async fn docker(&self) -> bollard::Docker {
        daemon().await.bollard().clone()
    }

    /// Ids of the containers of this test's deploys (of one run, when given), running or not,
    /// sorted.
    pub fn containers(&self, run_id: Option<&str>) -> Vec<String> {
        let mut list = vec!["ps", "-aq", "--no-trunc", "--filter"];
        let pipeline = self.pipeline_filter();
        list.push(&pipeline);
        let run = run_id.map(|run_id| format!("label=shipit.run-id={run_id}"));
        if let Some(run) = &run {
            list.extend(["--filter", run]);
        }
        let mut ids: Vec<String> = super::docker(&list)
            .split_whitespace()
            .map(str::to_owned)
            .collect();
        ids.sort();
        ids
    }

    fn pipeline_filter(&self) -> String {
        format!("label=shipit.pipeline={}", self.name)
    }
}

impl Drop for Scenario {
    /// Containers first (they hold the images and the ports), then every image whose name
    /// starts with the scenario's; the port leases go last, with the fields.
    fn drop(&mut self) {
        remove_all(
            &["rm", "-f"],
            &["ps", "-aq", "--filter", &self.pipeline_filter()],
        );
        // Every image name of the scenario is `NAME-…`, and no other scenario's name starts
        // with `NAME-`: unique names end in two dash-separated hex numbers.
        let references = format!("reference={}-*", self.name);
        remove_all(
            &["rmi", "-f"],
            &[
                "images",
                "--format",
                "{{.Repository}}:{{.Tag}}",
                "--filter",
                &references,
            ],
        );
    }
}

/// Runs `remove` on every word `list` prints. Quietly: it runs while a failed test unwinds,
/// where a second panic would abort the whole test binary.
fn remove_all(remove: &[&str], list: &[&str]) {
    let Some(listed) = super::try_docker(list) else {
        return;
    };
    let mut args = remove.to_vec();
    args.extend(listed.split_whitespace());
    if args.len() > remove.len() {
        super::try_docker(&args);
    }
}

/// `DOCKER_HOST`, which scripts/test points at the test environment's daemon.
pub fn daemon_host() -> String {
    std::env::var("DOCKER_HOST")
        .ok()
        .filter(|host| !host.is_empty())
        .unwrap_or_else(|| super::testenv("SHIPIT_TEST_DOCKER_HOST"))
}

/// Connects to the daemon `DOCKER_HOST` names, failing the test (never skipping it) with a
/// clear message when none answers.
pub async fn daemon() -> DockerClient {
    match shipit::docker::connect().await {
        Ok(client) => client,
        Err(err) => panic!(
            "these tests need a Docker daemon (DOCKER_HOST={:?}): {}; run them through scripts/test, which starts one",
            std::env::var("DOCKER_HOST").unwrap_or_default(),
            error_chain(&err)
        ),
    }
}

/// The image every test Dockerfile starts from.
pub fn base_image() -> String {
    std::env::var("SHIPIT_TEST_BASE_IMAGE")
        .ok()
        .filter(|image| !image.is_empty())
        .unwrap_or_else(|| {
            panic!("SHIPIT_TEST_BASE_IMAGE is not set; scripts/test exports it (busybox:latest)")
        })
}

/// An error with its causes, `: `-separated.
pub fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
