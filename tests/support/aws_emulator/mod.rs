//! An emulator of the parts of Amazon ECS, CodeDeploy (ECS platform), CloudWatch Logs
//! (GetLogEvents) and ELBv2 (DescribeTargetHealth) that shipit's ECS deploy uses (and of EKS,
//! DescribeCluster, that its EKS deploy uses), whose
//! deployments progress over time through scripted scenarios (moto answers with the right
//! shapes, but its deployments never move).
//!
//! One HTTP server on 127.0.0.1 answers all four services the way the real endpoints do, so the
//! AWS SDKs and the AWS CLI work against it unchanged with `AWS_ENDPOINT_URL`; signatures are
//! accepted unverified. It is test support only and uses nothing else from `tests/support`, so
//! an example or bench can include it with `#[path = ".../aws_emulator/mod.rs"] mod aws_emulator;`.
#![allow(dead_code)]

mod access;
mod codedeploy;
mod codedeploy_appspec;
mod codedeploy_rollout;
mod ecs;
mod ecs_rollout;
mod ecs_service_deployments;
mod ecs_shapes;
mod ecs_task_definitions;
mod eks;
mod elb;
mod logs;
mod scenario;
mod server;
mod wire;
mod world;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

// Each test binary uses a different part of the API; the rest is not unused.
#[allow(unused_imports)]
pub use scenario::{
    ActionOnTimeout, CodeDeployScenario, DeploymentController, DeploymentGroupSeed,
    LoadBalancerSeed, Scenario, ServiceSeed, Timing,
};
#[allow(unused_imports)]
pub use world::EmulatorCall;

use world::{DeploymentGroup, Now, RolloutState, Service, TaskStatus, World};

/// The region every ARN the emulator makes names.
pub const REGION: &str = "us-east-1";
/// The account every ARN the emulator makes names.
pub const ACCOUNT: &str = "123456789012";

/// A running emulator; it stops when dropped.
pub struct AwsEmulator {
    world: Arc<Mutex<World>>,
    addr: SocketAddr,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl AwsEmulator {
    /// Starts an emulator with the default clock step (150 ms) on 127.0.0.1 and a free port.
    pub async fn start() -> AwsEmulator {
        AwsEmulator::start_with(Timing::default()).await
    }

    /// Starts an emulator whose scenarios move by `timing.step`.
    pub async fn start_with(timing: Timing) -> AwsEmulator {
        let world = Arc::new(Mutex::new(World::new(timing)));
        let (addr, stop) = server::spawn(world.clone());
        AwsEmulator {
            world,
            addr,
            _stop: stop,
        }
    }

    /// `http://127.0.0.1:PORT`, for `AWS_ENDPOINT_URL` or `--endpoint-url`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn region(&self) -> &'static str {
        REGION
    }

    pub fn account(&self) -> &'static str {
        ACCOUNT
    }

    pub fn timing(&self) -> Timing {
        self.lock().timing
    }

    fn lock(&self) -> MutexGuard<'_, World> {
        // A panic elsewhere while holding the lock leaves the state as usable as it was.
        self.world
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Registers a task definition (a RegisterTaskDefinition input); returns its ARN.
    pub fn register_task_definition(&self, input: serde_json::Value) -> String {
        let mut world = self.lock();
        ecs_task_definitions::register(&mut world, &input, chrono::Utc::now())
            .unwrap_or_else(|err| panic!("the seeded task definition is invalid: {}", err.message))
            .arn()
    }

    /// Creates a service (and its cluster, on first use) already running `desired_count`
    /// tasks of the seed's task definition, registered here; returns that definition's ARN.
    pub fn seed_service(&self, seed: ServiceSeed) -> String {
        let definition = self.register_task_definition(seed.task_definition.clone());
        let now = Now::current();
        let mut world = self.lock();
        let mut service = Service {
            name: seed.service.clone(),
            cluster: seed.cluster.clone(),
            status: "ACTIVE".into(),
            desired_count: seed.desired_count,
            task_definition: definition.clone(),
            controller: seed.controller,
            circuit_breaker: seed.circuit_breaker,
            rollback: seed.rollback,
            minimum_healthy_percent: seed.minimum_healthy_percent,
            maximum_percent: seed.maximum_percent,
            load_balancer: seed.load_balancer.clone(),
            health_check_grace_period_seconds: seed.health_check_grace_period_seconds,
            subnets: seed.subnets.clone(),
            security_groups: seed.security_groups.clone(),
            assign_public_ip: seed.assign_public_ip,
            created_at: now.wall,
            deployments: Vec::new(),
            tasks: Vec::new(),
            events: Vec::new(),
            task_sets: Vec::new(),
        };
        match seed.controller {
            DeploymentController::Ecs => {
                let id = ecs_rollout::new_deployment(
                    &mut service,
                    definition.clone(),
                    Scenario::Healthy,
                    None,
                    now,
                );
                for _ in 0..seed.desired_count {
                    let mut task = ecs_rollout::new_task(&id, &definition, now);
                    task.last_status = TaskStatus::Running;
                    task.started_at = Some(now.wall);
                    if seed.load_balancer.is_some() {
                        task.target = Some(world.next_target_address());
                    }
                    service.tasks.push(task);
                }
                if let Some(deployment) = service.deployment_mut(&id) {
                    deployment.rollout = RolloutState::Completed;
                    deployment.rollout_reason = format!("ECS deployment {id} completed.");
                    deployment.service_deployment_status = "SUCCESSFUL".into();
                    deployment.finished_at = Some(now.wall);
                }
            }
            DeploymentController::CodeDeploy => service.task_sets.push(world::TaskSet {
                id: format!("ecs-svc/{}", world::random_digits(19)),
                primary: true,
                task_definition: definition.clone(),
                desired_count: seed.desired_count,
                running_count: seed.desired_count,
                external_id: None,
                created_at: now.wall,
                updated_at: now.wall,
            }),
        }
        service.event(now.wall, "has reached a steady state.".into());
        world
            .clusters
            .entry(seed.cluster.clone())
            .or_default()
            .services
            .insert(seed.service.clone(), service);
        definition
    }

    /// Creates a CodeDeploy application and ECS deployment group (scenario `Succeeds`).
    pub fn seed_deployment_group(&self, seed: DeploymentGroupSeed) {
        let key = (seed.application.clone(), seed.deployment_group.clone());
        self.lock().deployment_groups.insert(
            key,
            DeploymentGroup {
                seed,
                id: world::random_uuid(),
                scenario: CodeDeployScenario::Succeeds,
            },
        );
    }

    /// The scenario deployments of this service created after the call play.
    pub fn set_scenario(&self, cluster: &str, service: &str, scenario: Scenario) {
        self.lock()
            .scenarios
            .insert((cluster.into(), service.into()), scenario);
    }

    /// The scenario CodeDeploy deployments of this group created after the call play.
    pub fn set_codedeploy_scenario(
        &self,
        application: &str,
        deployment_group: &str,
        scenario: CodeDeployScenario,
    ) {
        let mut world = self.lock();
        let group = world
            .deployment_groups
            .get_mut(&(application.into(), deployment_group.into()))
            .unwrap_or_else(|| {
                panic!("no deployment group {application}/{deployment_group} was seeded")
            });
        group.scenario = scenario;
    }

    /// The next `times` calls of `operation` fail with ThrottlingException "Rate exceeded".
    pub fn throttle(&self, operation: &str, times: usize) {
        self.lock().knobs.throttled.insert(operation.into(), times);
    }

    /// Every call of `operation` fails with AccessDeniedException.
    pub fn deny(&self, operation: &str) {
        self.lock().knobs.denied.insert(operation.into());
    }

    /// After `calls` more calls, every call fails with ExpiredTokenException.
    pub fn expire_credentials_after(&self, calls: usize) {
        self.lock().knobs.calls_before_expiry = Some(calls);
    }

    /// ListServiceDeployments and DescribeServiceDeployments answer UnknownOperationException,
    /// like an endpoint that predates them.
    pub fn without_service_deployments_api(&self) {
        self.lock().knobs.without_service_deployments_api = true;
    }

    /// Every call so far, oldest first.
    pub fn calls(&self) -> Vec<EmulatorCall> {
        self.lock().calls.clone()
    }

    /// How many calls of `operation` arrived (refused ones included).
    pub fn count(&self, operation: &str) -> usize {
        self.lock()
            .calls
            .iter()
            .filter(|c| c.operation == operation)
            .count()
    }

    /// What DescribeServices would say of the service now (`null` when there is none).
    pub fn service(&self, cluster: &str, service: &str) -> serde_json::Value {
        self.lock()
            .service(cluster, service)
            .map(ecs_shapes::service_json)
            .unwrap_or(serde_json::Value::Null)
    }

    /// When the emulator marked this ECS deployment COMPLETED or this CodeDeploy deployment
    /// Succeeded.
    pub fn completed_at(&self, deployment_id: &str) -> Option<Instant> {
        self.lock().completed_at.get(deployment_id).copied()
    }

    /// The ARN of the task definition the service's steady tasks run: that of its latest
    /// completed deployment (rolling) or of its primary task set (CodeDeploy).
    pub fn live_task_definition(&self, cluster: &str, service: &str) -> String {
        let world = self.lock();
        let Some(service) = world.service(cluster, service) else {
            return String::new();
        };
        match service.controller {
            DeploymentController::Ecs => service
                .deployments
                .iter()
                .rev()
                .find(|d| d.rollout == RolloutState::Completed)
                .map_or_else(
                    || service.task_definition.clone(),
                    |d| d.task_definition.clone(),
                ),
            DeploymentController::CodeDeploy => {
                service.task_sets.iter().find(|s| s.primary).map_or_else(
                    || service.task_definition.clone(),
                    |s| s.task_definition.clone(),
                )
            }
        }
    }
}
