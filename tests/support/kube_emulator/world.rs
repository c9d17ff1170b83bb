//! Everything the emulator knows: the stored objects under one global resourceVersion, the
//! history of changes watches replay, the scenarios and knobs a test set, and what it saw.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Instant;

use serde_json::{Value, json};

use super::resources::ResourceType;
use super::scenario::{PodScenario, Timing};
use super::selector::{FieldSelector, LabelSelector};
use super::status::ApiError;

/// A stored object's identity: resource plural, namespace ("" for cluster-scoped), name.
pub type Key = (&'static str, String, String);

/// One change, as a watch sends it.
#[derive(Debug, Clone)]
pub struct Change {
    pub resource_version: u64,
    pub kind: &'static str,
    pub plural: &'static str,
    pub object: Value,
}

/// One request the emulator answered.
#[derive(Debug, Clone)]
pub struct KubeRequest {
    pub method: String,
    pub path: String,
    pub query: String,
    pub at: Instant,
    /// The bearer token it carried, if any.
    pub token: Option<String>,
}

/// What the kubelet simulation knows of a pod beyond its object.
#[derive(Debug, Clone)]
pub struct PodRun {
    pub scenario: PodScenario,
    pub age_steps: u32,
}

/// The test's knobs.
/// Decides whether a bearer token is accepted.
pub type TokenCheck = Box<dyn Fn(&str) -> bool + Send>;

#[derive(Default)]
pub struct Knobs {
    pub token_check: Option<TokenCheck>,
    /// (verb, resource plural) pairs answered 403.
    pub forbidden: HashSet<(String, String)>,
    pub fail_watches: bool,
    /// (namespace, service) → the status and body its service proxy answers.
    pub proxy_answers: HashMap<(String, String), (u16, String)>,
}

pub struct World {
    pub objects: BTreeMap<Key, Value>,
    pub resource_version: u64,
    pub history: Vec<Change>,
    pub changed: tokio::sync::watch::Sender<u64>,
    pub timing: Timing,
    pub steps: u64,
    pub scenarios: HashMap<(String, String), PodScenario>,
    /// The scenario each ReplicaSet's pods play, by ReplicaSet uid.
    pub replica_set_scenarios: HashMap<String, PodScenario>,
    pub pods: HashMap<String, PodRun>,
    /// The step a Deployment (by uid) last made progress at.
    pub last_progress: HashMap<String, u64>,
    pub completed: HashMap<(String, String, i64), Instant>,
    pub requests: Vec<KubeRequest>,
    pub knobs: Knobs,
    /// `127.0.0.1:PORT`, as `/api` reports the server's address.
    pub endpoint: String,
}

/// The user every request is made as, for Forbidden messages.
pub const USER: &str = "ci";

impl World {
    pub fn new(timing: Timing) -> World {
        World {
            objects: BTreeMap::new(),
            resource_version: 1000,
            history: Vec::new(),
            changed: tokio::sync::watch::channel(1000).0,
            timing,
            steps: 0,
            scenarios: HashMap::new(),
            replica_set_scenarios: HashMap::new(),
            pods: HashMap::new(),
            last_progress: HashMap::new(),
            completed: HashMap::new(),
            requests: Vec::new(),
            knobs: Knobs::default(),
            endpoint: String::new(),
        }
    }

    /// The keys of every object of one kind, taken out of the map so that a controller can
    /// change the world while it goes through them (and read each object again as it is).
    pub fn keys_of(&self, plural: &str) -> Vec<Key> {
        self.objects
            .keys()
            .filter(|(kind, _, _)| *kind == plural)
            .cloned()
            .collect()
    }

    pub fn get(&self, plural: &'static str, namespace: &str, name: &str) -> Option<&Value> {
        self.objects
            .get(&(plural, namespace.to_string(), name.to_string()))
    }

    /// The objects of a type, optionally in one namespace, that match the selectors.
    pub fn list(
        &self,
        plural: &'static str,
        namespace: Option<&str>,
        labels: &LabelSelector,
        fields: &FieldSelector,
    ) -> Vec<Value> {
        self.objects
            .iter()
            .filter(|((p, ns, _), object)| {
                *p == plural
                    && namespace.is_none_or(|wanted| wanted == ns)
                    && labels.matches(object)
                    && fields.matches(object)
            })
            .map(|(_, object)| object.clone())
            .collect()
    }

    /// A new object as the server would store it (metadata and defaults filled in), not yet
    /// stored; `create` stores it, a dry run only shows it.
    pub fn prepare_create(
        &self,
        resource: &'static ResourceType,
        mut object: Value,
    ) -> Result<Value, ApiError> {
        let namespace = object["metadata"]["namespace"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let mut name = object["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        if name.is_empty()
            && let Some(prefix) = object["metadata"]["generateName"].as_str()
        {
            name = format!("{prefix}{}", random_suffix(5));
            object["metadata"]["name"] = json!(name);
        }
        if name.is_empty() {
            return Err(ApiError::invalid(
                resource.kind,
                resource.group,
                "",
                "metadata.name",
                "Required value: name or generateName is required",
            ));
        }
        if resource.namespaced && self.get("namespaces", "", &namespace).is_none() {
            return Err(ApiError::not_found("namespaces", "", &namespace));
        }
        if self.objects.contains_key(&key_of(resource, &object)) {
            return Err(ApiError::already_exists(
                resource.plural,
                resource.group,
                &name,
            ));
        }
        object["apiVersion"] = json!(resource.api_version());
        object["kind"] = json!(resource.kind);
        let metadata = &mut object["metadata"];
        metadata["uid"] = json!(random_uuid());
        metadata["creationTimestamp"] = json!(timestamp());
        if resource.has_generation() {
            metadata["generation"] = json!(1);
        }
        super::defaults::apply(resource, &mut object);
        Ok(object)
    }

    /// Stores a new object, filling in what the server fills in.
    pub fn create(
        &mut self,
        resource: &'static ResourceType,
        object: Value,
    ) -> Result<Value, ApiError> {
        let object = self.prepare_create(resource, object)?;
        let key = key_of(resource, &object);
        Ok(self.store(key, object, "ADDED"))
    }

    /// A replacement of `old` as the server would store it: defaults filled in, `generation`
    /// bumped when the spec changed.
    pub fn prepare_replace(
        resource: &'static ResourceType,
        old: &Value,
        mut object: Value,
    ) -> Value {
        super::defaults::apply(resource, &mut object);
        for preserved in ["uid", "creationTimestamp"] {
            object["metadata"][preserved] = old["metadata"][preserved].clone();
        }
        if resource.has_generation() {
            let generation = old["metadata"]["generation"].as_i64().unwrap_or(1);
            let bumped = if old["spec"] != object["spec"] {
                generation + 1
            } else {
                generation
            };
            object["metadata"]["generation"] = json!(bumped);
        }
        object
    }

    /// Replaces a stored object (the caller checked it exists).
    pub fn replace(
        &mut self,
        resource: &'static ResourceType,
        old: &Value,
        object: Value,
    ) -> Value {
        let object = Self::prepare_replace(resource, old, object);
        let key = key_of(resource, &object);
        self.store(key, object, "MODIFIED")
    }

    /// Writes an object's status the way a controller does, when it changed.
    pub fn set_status(&mut self, resource: &'static ResourceType, object: &Value, status: Value) {
        if object["status"] == status {
            return;
        }
        let mut updated = object.clone();
        updated["status"] = status;
        let key = key_of(resource, &updated);
        self.store(key, updated, "MODIFIED");
    }

    pub fn delete(
        &mut self,
        resource: &'static ResourceType,
        namespace: &str,
        name: &str,
    ) -> Option<Value> {
        let object =
            self.objects
                .remove(&(resource.plural, namespace.to_string(), name.to_string()))?;
        let mut deleted = object;
        let resource_version = self.next_resource_version();
        deleted["metadata"]["resourceVersion"] = json!(resource_version.to_string());
        self.record(
            resource.plural,
            "DELETED",
            deleted.clone(),
            resource_version,
        );
        Some(deleted)
    }

    fn store(&mut self, key: Key, mut object: Value, kind: &'static str) -> Value {
        let resource_version = self.next_resource_version();
        object["metadata"]["resourceVersion"] = json!(resource_version.to_string());
        let plural = key.0;
        self.objects.insert(key, object.clone());
        self.record(plural, kind, object.clone(), resource_version);
        object
    }

    fn next_resource_version(&mut self) -> u64 {
        self.resource_version += 1;
        self.resource_version
    }

    fn record(
        &mut self,
        plural: &'static str,
        kind: &'static str,
        object: Value,
        resource_version: u64,
    ) {
        self.history.push(Change {
            resource_version,
            kind,
            plural,
            object,
        });
        self.changed.send_replace(resource_version);
    }

    /// The changes after `resource_version`, oldest first.
    pub fn changes_after(&self, resource_version: u64) -> &[Change] {
        let start = self
            .history
            .partition_point(|c| c.resource_version <= resource_version);
        &self.history[start..]
    }
}

pub fn key_of(resource: &ResourceType, object: &Value) -> Key {
    let namespace = if resource.namespaced {
        object["metadata"]["namespace"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    } else {
        String::new()
    };
    let name = object["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    (resource.plural, namespace, name)
}

pub fn timestamp() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

pub fn random_uuid() -> String {
    let bytes: [u8; 16] = rand::random();
    let hex = hex::encode(bytes);
    format!(
        "{}-{}-4{}-a{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[13..16],
        &hex[17..20],
        &hex[20..32]
    )
}

/// The characters the API server's generated names use (no vowels, no confusable digits).
pub const SAFE_ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

pub fn random_suffix(length: usize) -> String {
    use rand::Rng;
    let mut rng = rand::rng();
    (0..length)
        .map(|_| SAFE_ALPHABET[rng.random_range(0..SAFE_ALPHABET.len())] as char)
        .collect()
}
