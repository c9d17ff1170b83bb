//! The emulator's shared state: every resource of the four services, the knobs a test turns,
//! and the record of calls. One mutex guards it; handlers and the clock take turns.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Instant;

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::scenario::{CodeDeployScenario, DeploymentController, Scenario, Timing};
use super::{ACCOUNT, REGION};

/// One request the emulator answered (or refused).
#[derive(Clone, Debug)]
pub struct EmulatorCall {
    /// `ecs`, `codedeploy`, `logs` or `elasticloadbalancing`.
    pub service: String,
    pub operation: String,
    pub at: Instant,
    /// The JSON body, or for the query protocol its form fields as an object.
    pub body: Value,
}

/// "Now" as both clocks see it: the monotonic one for inspection, the wall one for the wire.
#[derive(Clone, Copy, Debug)]
pub struct Now {
    pub instant: Instant,
    pub wall: DateTime<Utc>,
}

impl Now {
    pub fn current() -> Now {
        Now {
            instant: Instant::now(),
            wall: Utc::now(),
        }
    }
}

/// AWS JSON protocols send timestamps as epoch seconds with a fraction.
pub fn epoch(at: DateTime<Utc>) -> Value {
    serde_json::json!(at.timestamp_millis() as f64 / 1000.0)
}

pub fn ecs_arn(resource: &str) -> String {
    format!("arn:aws:ecs:{REGION}:{ACCOUNT}:{resource}")
}

/// A random id of `digits` decimal digits, the first never zero.
pub fn random_digits(digits: usize) -> String {
    let mut out = String::with_capacity(digits);
    out.push(char::from(b'1' + rand::random::<u8>() % 9));
    while out.len() < digits {
        out.push(char::from(b'0' + rand::random::<u8>() % 10));
    }
    out
}

pub fn random_hex(chars: usize) -> String {
    let mut out = String::with_capacity(chars);
    while out.len() < chars {
        out.push_str(&format!("{:x}", rand::random::<u8>() % 16));
    }
    out
}

/// An id shaped like a UUID, as ECS event ids and request ids are.
pub fn random_uuid() -> String {
    format!(
        "{}-{}-{}-{}-{}",
        random_hex(8),
        random_hex(4),
        random_hex(4),
        random_hex(4),
        random_hex(12)
    )
}

#[derive(Clone, Debug)]
pub struct TaskDefinition {
    /// The describe shape (what DescribeTaskDefinition returns as `taskDefinition`).
    pub document: Value,
    pub tags: Vec<Value>,
}

impl TaskDefinition {
    pub fn arn(&self) -> String {
        self.document["taskDefinitionArn"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    pub fn family(&self) -> String {
        self.document["family"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TaskStatus {
    Provisioning,
    Pending,
    Running,
    Stopped,
}

impl TaskStatus {
    pub fn wire_name(self) -> &'static str {
        match self {
            TaskStatus::Provisioning => "PROVISIONING",
            TaskStatus::Pending => "PENDING",
            TaskStatus::Running => "RUNNING",
            TaskStatus::Stopped => "STOPPED",
        }
    }
}

#[derive(Clone, Debug)]
pub struct Task {
    pub id: String,
    pub deployment_id: String,
    pub task_definition_arn: String,
    pub last_status: TaskStatus,
    pub stopping: bool,
    pub steps_in_status: u32,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub stopping_at: Option<DateTime<Utc>>,
    pub stopped_at: Option<DateTime<Utc>>,
    pub stop_code: Option<String>,
    pub stopped_reason: Option<String>,
    pub exit_code: Option<i32>,
    /// The private address registered in the target group once the task runs.
    pub target: Option<String>,
}

impl Task {
    pub fn is_live(&self) -> bool {
        self.last_status != TaskStatus::Stopped
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RolloutState {
    InProgress,
    Completed,
    Failed,
}

impl RolloutState {
    pub fn wire_name(self) -> &'static str {
        match self {
            RolloutState::InProgress => "IN_PROGRESS",
            RolloutState::Completed => "COMPLETED",
            RolloutState::Failed => "FAILED",
        }
    }
}

/// One ECS deployment of a rolling service; it stays in the service's history after it leaves
/// the `deployments` list, for the service deployments API.
#[derive(Clone, Debug)]
pub struct Deployment {
    pub id: String,
    pub task_definition: String,
    /// The task definition the service ran before this deployment (what a rollback returns to).
    pub previous_task_definition: Option<String>,
    pub desired_count: u32,
    pub primary: bool,
    pub listed: bool,
    pub rollout: RolloutState,
    pub rollout_reason: String,
    pub failed_tasks: u32,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub scenario: Scenario,
    pub age_steps: u32,
    /// Set on a deployment ECS started to roll back the named one.
    pub rolls_back: Option<String>,
    /// The service deployments API's view of it.
    pub service_deployment_status: String,
    pub status_reason: Option<String>,
    pub finished_at: Option<DateTime<Utc>>,
    pub rollback_started_at: Option<DateTime<Utc>>,
    pub rollback_revision: Option<String>,
    pub circuit_breaker_status: &'static str,
}

impl Deployment {
    /// The numeric part of `ecs-svc/1234…`, which names the service deployment and revision.
    pub fn number(&self) -> &str {
        self.id.trim_start_matches("ecs-svc/")
    }
}

#[derive(Clone, Debug)]
pub struct ServiceEvent {
    pub id: String,
    pub created_at: DateTime<Utc>,
    pub message: String,
}

/// A task set of a CODE_DEPLOY service.
#[derive(Clone, Debug)]
pub struct TaskSet {
    pub id: String,
    pub primary: bool,
    pub task_definition: String,
    pub desired_count: u32,
    pub running_count: u32,
    pub external_id: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Clone, Debug)]
pub struct Service {
    pub name: String,
    pub cluster: String,
    pub status: String,
    pub desired_count: u32,
    pub task_definition: String,
    pub controller: DeploymentController,
    pub circuit_breaker: bool,
    pub rollback: bool,
    pub minimum_healthy_percent: u32,
    pub maximum_percent: u32,
    pub load_balancer: Option<super::scenario::LoadBalancerSeed>,
    pub health_check_grace_period_seconds: Option<u32>,
    pub subnets: Vec<String>,
    pub security_groups: Vec<String>,
    pub assign_public_ip: bool,
    pub created_at: DateTime<Utc>,
    /// Every deployment, newest last; those with `listed` appear in DescribeServices.
    pub deployments: Vec<Deployment>,
    pub tasks: Vec<Task>,
    /// Oldest first; DescribeServices shows them newest first.
    pub events: Vec<ServiceEvent>,
    pub task_sets: Vec<TaskSet>,
}

impl Service {
    pub fn arn(&self) -> String {
        ecs_arn(&format!("service/{}/{}", self.cluster, self.name))
    }

    pub fn event(&mut self, at: DateTime<Utc>, message: String) {
        self.events.push(ServiceEvent {
            id: random_uuid(),
            created_at: at,
            message: format!("(service {}) {message}", self.name),
        });
    }

    pub fn deployment(&self, id: &str) -> Option<&Deployment> {
        self.deployments.iter().find(|d| d.id == id)
    }

    pub fn deployment_mut(&mut self, id: &str) -> Option<&mut Deployment> {
        self.deployments.iter_mut().find(|d| d.id == id)
    }

    /// The listed PRIMARY deployment of a rolling service.
    pub fn primary(&self) -> Option<&Deployment> {
        self.deployments.iter().find(|d| d.listed && d.primary)
    }
}

#[derive(Clone, Debug, Default)]
pub struct Cluster {
    pub services: BTreeMap<String, Service>,
}

#[derive(Clone, Debug)]
pub struct LogEvent {
    pub timestamp_ms: i64,
    pub message: String,
}

#[derive(Clone, Debug)]
pub struct DeploymentGroup {
    pub seed: super::scenario::DeploymentGroupSeed,
    pub id: String,
    pub scenario: CodeDeployScenario,
}

#[derive(Clone, Debug)]
pub struct LifecycleEvent {
    pub name: &'static str,
    /// The hook's function, for the events that are hooks.
    pub hook_function: Option<String>,
    pub status: &'static str,
    pub start: Option<DateTime<Utc>>,
    pub end: Option<DateTime<Utc>>,
    pub diagnostics: Option<Value>,
}

#[derive(Clone, Debug)]
pub struct CodeDeployDeployment {
    pub id: String,
    pub application: String,
    pub deployment_group: String,
    pub config_name: String,
    pub status: &'static str,
    pub error: Option<(&'static str, String)>,
    pub rollback_deployment_id: Option<String>,
    pub rollback_triggering_deployment_id: Option<String>,
    pub rollback_message: Option<String>,
    pub create_time: DateTime<Utc>,
    pub complete_time: Option<DateTime<Utc>>,
    pub updated_at: DateTime<Utc>,
    pub description: Option<String>,
    pub task_definition: String,
    pub cluster: String,
    pub service: String,
    pub scenario: CodeDeployScenario,
    pub events: Vec<LifecycleEvent>,
    pub steps_in_event: u32,
    pub ready_since_steps: Option<u32>,
    pub continue_requested: bool,
    /// The replacement task set, once Install created it.
    pub green_task_set: Option<String>,
    pub traffic_on_green: bool,
}

impl CodeDeployDeployment {
    pub fn is_done(&self) -> bool {
        matches!(self.status, "Succeeded" | "Failed" | "Stopped")
    }
}

/// What a test turned to make calls fail.
#[derive(Clone, Debug, Default)]
pub struct Knobs {
    pub throttled: HashMap<String, usize>,
    pub denied: HashSet<String>,
    pub calls_before_expiry: Option<usize>,
    pub without_service_deployments_api: bool,
}

#[derive(Debug)]
pub struct World {
    pub timing: Timing,
    pub task_definitions: BTreeMap<String, Vec<TaskDefinition>>,
    pub clusters: BTreeMap<String, Cluster>,
    pub logs: HashMap<(String, String), Vec<LogEvent>>,
    /// Tags of resources other than task definitions, by ARN.
    pub tags: HashMap<String, Vec<Value>>,
    pub scenarios: HashMap<(String, String), Scenario>,
    pub deployment_groups: BTreeMap<(String, String), DeploymentGroup>,
    pub codedeploy_deployments: Vec<CodeDeployDeployment>,
    pub knobs: Knobs,
    pub calls: Vec<EmulatorCall>,
    pub completed_at: HashMap<String, Instant>,
    pub next_target: u32,
    pub eks_clusters: BTreeMap<String, super::eks::EksCluster>,
}

impl World {
    pub fn new(timing: Timing) -> World {
        World {
            timing,
            task_definitions: BTreeMap::new(),
            clusters: BTreeMap::new(),
            logs: HashMap::new(),
            tags: HashMap::new(),
            scenarios: HashMap::new(),
            deployment_groups: BTreeMap::new(),
            codedeploy_deployments: Vec::new(),
            knobs: Knobs::default(),
            calls: Vec::new(),
            completed_at: HashMap::new(),
            next_target: 0,
            eks_clusters: BTreeMap::new(),
        }
    }

    /// A fresh private address in 10.0.0.0/16 for a task's target.
    pub fn next_target_address(&mut self) -> String {
        self.next_target += 1;
        format!(
            "10.0.{}.{}",
            (self.next_target / 250) % 250,
            self.next_target % 250 + 2
        )
    }

    pub fn service(&self, cluster: &str, service: &str) -> Option<&Service> {
        self.clusters.get(cluster)?.services.get(service)
    }

    pub fn service_mut(&mut self, cluster: &str, service: &str) -> Option<&mut Service> {
        self.clusters.get_mut(cluster)?.services.get_mut(service)
    }

    /// Advances every deployment by one step of the clock.
    pub fn tick(&mut self, now: Now) {
        super::ecs_rollout::tick(self, now);
        super::codedeploy_rollout::tick(self, now);
    }
}
