//! What the emulator is told to play: how an ECS rolling deployment or a CodeDeploy blue/green
//! deployment progresses, the clock unit it progresses by, and the services and deployment
//! groups a test seeds.

use std::time::Duration;

/// The emulator's clock unit: every state change of a scenario happens a whole number of steps
/// after the previous one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timing {
    pub step: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            step: Duration::from_millis(150),
        }
    }
}

/// How the tasks of an ECS rolling deployment behave.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub enum Scenario {
    /// New tasks start and run; the old deployment drains; the rollout completes.
    #[default]
    Healthy,
    /// Like `Healthy`, but each new task takes this many steps to become RUNNING.
    Slow { step_per_task: u32 },
    /// Each new task reaches RUNNING, then its essential container exits with `exit_code`; its
    /// awslogs stream holds `log_lines`; replacements start until the circuit breaker trips.
    FailingTasks {
        exit_code: i32,
        stopped_reason: String,
        log_lines: Vec<String>,
    },
    /// Tasks run, but their load balancer targets fail health checks with this reason, so the
    /// service stops them and they count as failed.
    UnhealthyTargets {
        reason_code: String,
        description: String,
    },
    /// New tasks stay PROVISIONING or PENDING forever, never counted as failed.
    NeverStarts,
    /// After this many steps someone else registers a new revision of the family and updates
    /// the service, superseding the deployment.
    Competing { after_steps: u32 },
}

impl Scenario {
    /// `FailingTasks` with the reason ECS gives when an essential container exits.
    pub fn failing_tasks(exit_code: i32, log_lines: &[&str]) -> Scenario {
        Scenario::FailingTasks {
            exit_code,
            stopped_reason: "Essential container in task exited".into(),
            log_lines: log_lines.iter().map(|line| line.to_string()).collect(),
        }
    }

    /// `UnhealthyTargets` for an application that answers its health check with 503.
    pub fn unhealthy_503() -> Scenario {
        Scenario::UnhealthyTargets {
            reason_code: "Target.ResponseCodeMismatch".into(),
            description: "Health checks failed with these codes: [503]".into(),
        }
    }
}

/// How a CodeDeploy blue/green deployment of an ECS service behaves.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub enum CodeDeployScenario {
    #[default]
    Succeeds,
    /// The named lifecycle hook (e.g. `AfterAllowTestTraffic`) reports failure with `message`.
    HookFails { hook: String, message: String },
    /// Stays InProgress in the Install event forever.
    Stuck,
    /// With the group's `ready_wait`, the deployment waits in `Ready` after the test traffic
    /// hooks until ContinueDeployment or the wait runs out (1 minute = 10 steps).
    WaitsForReroute,
}

/// Which controller deploys a service.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum DeploymentController {
    #[default]
    Ecs,
    CodeDeploy,
}

impl DeploymentController {
    pub(crate) fn wire_name(self) -> &'static str {
        match self {
            DeploymentController::Ecs => "ECS",
            DeploymentController::CodeDeploy => "CODE_DEPLOY",
        }
    }
}

/// The target group a service registers its tasks in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoadBalancerSeed {
    pub target_group_arn: String,
    pub container_name: String,
    pub container_port: u16,
}

/// A service that exists before the test starts, running `desired_count` tasks of
/// `task_definition` (a RegisterTaskDefinition input, registered when the service is seeded).
#[derive(Clone, Debug)]
pub struct ServiceSeed {
    pub cluster: String,
    pub service: String,
    pub task_definition: serde_json::Value,
    pub desired_count: u32,
    pub controller: DeploymentController,
    pub circuit_breaker: bool,
    pub rollback: bool,
    pub minimum_healthy_percent: u32,
    pub maximum_percent: u32,
    pub load_balancer: Option<LoadBalancerSeed>,
    pub health_check_grace_period_seconds: Option<u32>,
    pub subnets: Vec<String>,
    pub security_groups: Vec<String>,
    pub assign_public_ip: bool,
}

impl ServiceSeed {
    /// A Fargate service with two tasks, the ECS controller and no circuit breaker.
    pub fn new(cluster: &str, service: &str, task_definition: serde_json::Value) -> ServiceSeed {
        ServiceSeed {
            cluster: cluster.into(),
            service: service.into(),
            task_definition,
            desired_count: 2,
            controller: DeploymentController::Ecs,
            circuit_breaker: false,
            rollback: false,
            minimum_healthy_percent: 100,
            maximum_percent: 200,
            load_balancer: None,
            health_check_grace_period_seconds: None,
            subnets: vec!["subnet-0a1b2c3d".into()],
            security_groups: vec!["sg-0a1b2c3d".into()],
            assign_public_ip: false,
        }
    }
}

/// What CodeDeploy does when the replacement task set is ready and the wait runs out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ActionOnTimeout {
    ContinueDeployment,
    StopDeployment,
}

impl ActionOnTimeout {
    pub(crate) fn wire_name(self) -> &'static str {
        match self {
            ActionOnTimeout::ContinueDeployment => "CONTINUE_DEPLOYMENT",
            ActionOnTimeout::StopDeployment => "STOP_DEPLOYMENT",
        }
    }
}

/// A CodeDeploy application and ECS deployment group for a seeded CODE_DEPLOY service.
#[derive(Clone, Debug)]
pub struct DeploymentGroupSeed {
    pub application: String,
    pub deployment_group: String,
    pub cluster: String,
    pub service: String,
    pub deployment_config_name: String,
    /// Wait minutes and what to do when they run out.
    pub ready_wait: Option<(u32, ActionOnTimeout)>,
    pub auto_rollback: bool,
    /// The blue and the green target group names.
    pub target_groups: (String, String),
}

impl DeploymentGroupSeed {
    pub fn new(
        application: &str,
        deployment_group: &str,
        cluster: &str,
        service: &str,
    ) -> DeploymentGroupSeed {
        DeploymentGroupSeed {
            application: application.into(),
            deployment_group: deployment_group.into(),
            cluster: cluster.into(),
            service: service.into(),
            deployment_config_name: "CodeDeployDefault.ECSAllAtOnce".into(),
            ready_wait: None,
            auto_rollback: false,
            target_groups: (format!("{service}-blue"), format!("{service}-green")),
        }
    }
}
