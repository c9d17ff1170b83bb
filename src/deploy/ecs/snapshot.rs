//! What shipit reads of a service while it deploys, as plain values: the pure decisions (the
//! gate, the service changes) work on these, and tests build them without AWS.

use chrono::{DateTime, Utc};

/// One ECS deployment of the service (`ecs-svc/…`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct DeploymentSnapshot {
    pub(crate) id: String,
    /// PRIMARY, ACTIVE or INACTIVE.
    pub(crate) status: String,
    pub(crate) task_definition: String,
    pub(crate) desired: i64,
    pub(crate) running: i64,
    pub(crate) pending: i64,
    pub(crate) failed_tasks: i64,
    /// COMPLETED, FAILED, IN_PROGRESS; absent on endpoints that do not report it.
    pub(crate) rollout_state: Option<String>,
    pub(crate) rollout_state_reason: Option<String>,
    pub(crate) created_at: Option<DateTime<Utc>>,
}

impl DeploymentSnapshot {
    pub(crate) fn is_primary(&self) -> bool {
        self.status == "PRIMARY"
    }

    pub(crate) fn counts(&self) -> String {
        format!(
            "{} running, {} pending of {} desired{}",
            self.running,
            self.pending,
            self.desired,
            if self.failed_tasks > 0 {
                format!(", {} failed", self.failed_tasks)
            } else {
                String::new()
            }
        )
    }
}

/// A service event, newest first as ECS lists them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct EventSnapshot {
    pub(crate) id: String,
    pub(crate) created_at: Option<DateTime<Utc>>,
    pub(crate) message: String,
}

/// The service's circuit breaker as configured on it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct CircuitBreakerSetting {
    pub(crate) enable: bool,
    pub(crate) rollback: bool,
}

/// The service as one DescribeServices answer shows it.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct ServiceSnapshot {
    pub(crate) name: String,
    /// ACTIVE, DRAINING or INACTIVE.
    pub(crate) status: String,
    /// ECS, CODE_DEPLOY or EXTERNAL (ECS when the answer names none).
    pub(crate) controller: String,
    pub(crate) task_definition: String,
    pub(crate) desired_count: i64,
    pub(crate) minimum_healthy_percent: Option<i64>,
    pub(crate) maximum_percent: Option<i64>,
    pub(crate) circuit_breaker: Option<CircuitBreakerSetting>,
    pub(crate) health_check_grace_period_seconds: Option<i64>,
    pub(crate) deployments: Vec<DeploymentSnapshot>,
    /// Newest first.
    pub(crate) events: Vec<EventSnapshot>,
    /// The target groups of its load balancers.
    pub(crate) target_groups: Vec<String>,
    /// The service deployment (`arn:…:service-deployment/…`) ECS counts as current.
    pub(crate) current_service_deployment: Option<String>,
}

impl ServiceSnapshot {
    pub(crate) fn primary(&self) -> Option<&DeploymentSnapshot> {
        self.deployments.iter().find(|d| d.is_primary())
    }

    pub(crate) fn deployment(&self, id: &str) -> Option<&DeploymentSnapshot> {
        self.deployments.iter().find(|d| d.id == id)
    }

    /// Stable on `task_definition`: one deployment, running it, all desired tasks running, and
    /// not still rolling out.
    pub(crate) fn is_stable_on(&self, task_definition: &str) -> bool {
        match self.deployments.as_slice() {
            [only] => {
                only.task_definition == task_definition
                    && only.running == only.desired
                    && only
                        .rollout_state
                        .as_deref()
                        .is_none_or(|state| state == "COMPLETED")
            }
            _ => false,
        }
    }
}

/// What DescribeServiceDeployments says of a service deployment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ServiceDeploymentState {
    pub(crate) arn: String,
    /// PENDING, IN_PROGRESS, SUCCESSFUL, STOPPED, STOP_REQUESTED, ROLLBACK_REQUESTED,
    /// ROLLBACK_IN_PROGRESS, ROLLBACK_SUCCESSFUL, ROLLBACK_FAILED.
    pub(crate) status: String,
    pub(crate) status_reason: Option<String>,
    pub(crate) created_at: Option<DateTime<Utc>>,
}

/// A task stopped during the deployment, and why.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct StoppedTask {
    pub(crate) task_id: String,
    pub(crate) started_by: Option<String>,
    pub(crate) task_definition: Option<String>,
    pub(crate) stopped_reason: Option<String>,
    pub(crate) stop_code: Option<String>,
    pub(crate) containers: Vec<StoppedContainer>,
    pub(crate) stopped_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct StoppedContainer {
    pub(crate) name: String,
    pub(crate) exit_code: Option<i64>,
    pub(crate) reason: Option<String>,
}

/// A load balancer target that is not healthy.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct UnhealthyTarget {
    pub(crate) target_group: String,
    pub(crate) target: String,
    pub(crate) state: String,
    pub(crate) reason: Option<String>,
    pub(crate) description: Option<String>,
}
