//! An emulator of the Kubernetes API server (core/v1, apps/v1 and batch/v1 Jobs) for tests,
//! with a simulated Deployment controller, ReplicaSet controller, StatefulSet and DaemonSet
//! controllers (with ControllerRevisions), Job controller, scheduler and
//! kubelet whose rollouts progress over time through scripted pod scenarios, and the service
//! proxy (`services/NAME:PORT/proxy/…`) answering as a test scripts it. No real API server
//! runs on the test machines.
//!
//! It serves HTTPS on 127.0.0.1 with a CA made at start, the discovery and OpenAPI documents
//! kubectl and kube-rs read, GET/LIST/WATCH/POST/PUT/PATCH (server-side apply, merge, strategic
//! merge, JSON patch)/DELETE with one global resourceVersion, so real `kubectl` and kube-rs work
//! against it unchanged. It is test support only and uses nothing else from `tests/support`, so
//! an example or bench can include it with `#[path = ".../kube_emulator/mod.rs"] mod kube_emulator;`.
#![allow(dead_code)]

mod clock;
mod daemon_set_controller;
mod defaults;
mod deployment_controller;
mod events;
mod field_ownership;
mod job_controller;
mod kubelet;
mod patch;
mod replica_set_controller;
mod resources;
mod rest;
mod scenario;
mod selector;
mod server;
mod stateful_set_controller;
mod status;
mod tls;
mod watch;
mod workload_revisions;
mod world;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use serde_json::Value;

// Each test binary uses a different part of the API; the rest is not unused.
#[allow(unused_imports)]
pub use scenario::{PodScenario, Timing};
#[allow(unused_imports)]
pub use world::KubeRequest;

use world::World;

/// A running emulator; it stops when dropped.
pub struct KubeEmulator {
    world: Arc<Mutex<World>>,
    addr: SocketAddr,
    ca_pem: String,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl KubeEmulator {
    /// Starts an emulator with the default clock (150 ms steps of 6 cluster seconds).
    pub fn start() -> KubeEmulator {
        KubeEmulator::start_with(Timing::default())
    }

    pub fn start_with(timing: Timing) -> KubeEmulator {
        let certificates = tls::generate();
        let world = Arc::new(Mutex::new(World::new(timing)));
        let (addr, stop) = server::spawn(world.clone(), certificates.server);
        let emulator = KubeEmulator {
            world,
            addr,
            ca_pem: certificates.ca_pem,
            _stop: stop,
        };
        emulator.lock().endpoint = addr.to_string();
        emulator
    }

    fn lock(&self) -> MutexGuard<'_, World> {
        // A panic elsewhere while holding the lock leaves the state as usable as it was.
        self.world
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// `https://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("https://{}", self.addr)
    }

    /// The CA certificate (PEM) the server's certificate chains to.
    pub fn ca_pem(&self) -> String {
        self.ca_pem.clone()
    }

    pub fn timing(&self) -> Timing {
        self.lock().timing
    }

    /// Writes a kubeconfig for this server: its CA, a user with `token`, and a context named
    /// `context_name` whose default namespace is `default`.
    pub fn write_kubeconfig(
        &self,
        path: &Path,
        context_name: &str,
        token: &str,
    ) -> std::io::Result<()> {
        std::fs::write(
            path,
            tls::kubeconfig(
                &self.endpoint(),
                &self.ca_pem,
                context_name,
                token,
                "default",
            ),
        )
    }

    /// Requests whose bearer token fails `accepts` (or that carry none) are answered 401.
    pub fn require_token(&self, accepts: impl Fn(&str) -> bool + Send + 'static) {
        self.lock().knobs.token_check = Some(Box::new(accepts));
    }

    /// Every `verb` (get, list, watch, create, update, patch, delete) on `resource` (a plural,
    /// e.g. `deployments`) is answered 403 Forbidden for user `ci`.
    pub fn forbid(&self, verb: &str, resource: &str) {
        self.lock()
            .knobs
            .forbidden
            .insert((verb.into(), resource.into()));
    }

    /// What `GET /api/v1/namespaces/NS/services/NAME[:PORT]/proxy/…` answers while the
    /// Service has a ready endpoint (by default 200 `ok`); with none, the API server's own 503
    /// "no endpoints available".
    pub fn set_proxy_answer(&self, namespace: &str, service: &str, status: u16, body: &str) {
        self.lock()
            .knobs
            .proxy_answers
            .insert((namespace.into(), service.into()), (status, body.into()));
    }

    /// The scenario the pods of this Deployment's next ReplicaSets play (or, for a Job of this
    /// name, its pods: `PodScenario::Completes`).
    pub fn set_scenario(&self, namespace: &str, deployment: &str, scenario: PodScenario) {
        self.lock()
            .scenarios
            .insert((namespace.into(), deployment.into()), scenario);
    }

    /// Creates an object directly (a Namespace, a Secret…), as the API server would store it.
    pub fn seed(&self, object: Value) -> Value {
        let api_version = object["apiVersion"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let kind = object["kind"].as_str().unwrap_or_default().to_string();
        let resource = resources::by_kind(&api_version, &kind)
            .unwrap_or_else(|| panic!("the emulator does not serve {api_version} {kind}"));
        self.lock()
            .create(resource, object)
            .unwrap_or_else(|err| panic!("the seeded object is refused: {}", err.body))
    }

    /// The stored object, if any.
    pub fn object(
        &self,
        api_version: &str,
        kind: &str,
        namespace: &str,
        name: &str,
    ) -> Option<Value> {
        let resource = resources::by_kind(api_version, kind)?;
        let namespace = if resource.namespaced { namespace } else { "" };
        self.lock().get(resource.plural, namespace, name).cloned()
    }

    /// The pods in `namespace` whose labels match `selector` (`app=web`).
    pub fn pods(&self, namespace: &str, selector: &str) -> Vec<Value> {
        let labels = selector::LabelSelector::parse(selector).unwrap_or_default();
        self.lock()
            .list("pods", Some(namespace), &labels, &Default::default())
    }

    /// Every request so far, oldest first.
    pub fn requests(&self) -> Vec<KubeRequest> {
        self.lock().requests.clone()
    }

    /// How many requests with this method had a path containing `path_contains`.
    pub fn count(&self, method: &str, path_contains: &str) -> usize {
        self.lock()
            .requests
            .iter()
            .filter(|r| r.method == method && r.path.contains(path_contains))
            .count()
    }

    /// When the simulated controller completed this generation's rollout (updated, available
    /// and current replicas all equal to spec.replicas, observedGeneration == generation).
    pub fn completed_at(
        &self,
        namespace: &str,
        deployment: &str,
        generation: i64,
    ) -> Option<Instant> {
        self.lock()
            .completed
            .get(&(namespace.into(), deployment.into(), generation))
            .copied()
    }
}
