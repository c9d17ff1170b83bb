//! Which service settings a deploy changes: only those the target sets and the service does
//! not already have. The plan shows them and the update sends them; a setting the target
//! leaves out is never sent, so what was configured elsewhere stays.

use crate::pipeline::model::{CircuitBreakerMode, EcsTarget};

use super::snapshot::{CircuitBreakerSetting, ServiceSnapshot};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Change<T> {
    pub(crate) from: Option<T>,
    pub(crate) to: T,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ServiceChanges {
    pub(crate) desired_count: Option<Change<i64>>,
    pub(crate) minimum_healthy_percent: Option<Change<i64>>,
    pub(crate) maximum_percent: Option<Change<i64>>,
    pub(crate) circuit_breaker: Option<Change<CircuitBreakerSetting>>,
    pub(crate) health_check_grace_period_seconds: Option<Change<i64>>,
    pub(crate) force_new_deployment: bool,
}

impl ServiceChanges {
    /// From the live service and the target's configuration.
    pub(crate) fn plan(live: &ServiceSnapshot, config: &EcsTarget) -> ServiceChanges {
        ServiceChanges {
            desired_count: changed(
                Some(live.desired_count),
                config.desired_count.map(i64::from),
            ),
            minimum_healthy_percent: changed(
                live.minimum_healthy_percent,
                config.minimum_healthy_percent.map(i64::from),
            ),
            maximum_percent: changed(live.maximum_percent, config.maximum_percent.map(i64::from)),
            circuit_breaker: changed(
                live.circuit_breaker,
                config.circuit_breaker.map(|mode| CircuitBreakerSetting {
                    enable: mode != CircuitBreakerMode::Off,
                    rollback: mode == CircuitBreakerMode::Rollback,
                }),
            ),
            health_check_grace_period_seconds: changed(
                live.health_check_grace_period_seconds,
                config
                    .health_check_grace_period
                    .as_ref()
                    .map(|period| i64::try_from(period.0.as_secs()).unwrap_or(i64::MAX)),
            ),
            force_new_deployment: config.force_new_deployment,
        }
    }

    /// Whether any field of the deployment configuration changes (it is sent whole then).
    pub(crate) fn touches_deployment_configuration(&self) -> bool {
        self.minimum_healthy_percent.is_some()
            || self.maximum_percent.is_some()
            || self.circuit_breaker.is_some()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.lines().is_empty()
    }

    /// The circuit breaker the service has once these changes are made.
    pub(crate) fn circuit_breaker_after(
        &self,
        live: &ServiceSnapshot,
    ) -> Option<CircuitBreakerSetting> {
        self.circuit_breaker
            .map(|change| change.to)
            .or(live.circuit_breaker)
    }

    /// One line per change, for the plan.
    pub(crate) fn lines(&self) -> Vec<String> {
        let mut lines = Vec::new();
        let mut number = |name: &str, change: &Option<Change<i64>>, unit: &str| {
            if let Some(change) = change {
                let from = change
                    .from
                    .map_or_else(|| "unset".to_owned(), |from| format!("{from}{unit}"));
                lines.push(format!("{name}: {from} → {}{unit}", change.to));
            }
        };
        number("desired count", &self.desired_count, "");
        number(
            "minimum healthy percent",
            &self.minimum_healthy_percent,
            "%",
        );
        number("maximum percent", &self.maximum_percent, "%");
        number(
            "health check grace period",
            &self.health_check_grace_period_seconds,
            "s",
        );
        if let Some(change) = &self.circuit_breaker {
            let from = change.from.map_or("unset", breaker_name);
            lines.push(format!(
                "circuit breaker: {from} → {}",
                breaker_name(change.to)
            ));
        }
        if self.force_new_deployment {
            lines.push("force a new deployment".to_owned());
        }
        lines
    }
}

fn breaker_name(setting: CircuitBreakerSetting) -> &'static str {
    match (setting.enable, setting.rollback) {
        (false, _) => "off",
        (true, false) => "detect",
        (true, true) => "rollback",
    }
}

fn changed<T: PartialEq + Copy>(live: Option<T>, wanted: Option<T>) -> Option<Change<T>> {
    let to = wanted?;
    (live != Some(to)).then_some(Change { from: live, to })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::duration::HumanDuration;

    fn target() -> EcsTarget {
        serde_json::from_value(serde_json::json!({
            "cluster": "c", "service": "s", "task_definition": "current", "container": "web"
        }))
        .unwrap()
    }

    fn live() -> ServiceSnapshot {
        ServiceSnapshot {
            desired_count: 3,
            minimum_healthy_percent: Some(100),
            maximum_percent: Some(200),
            circuit_breaker: Some(CircuitBreakerSetting {
                enable: true,
                rollback: true,
            }),
            health_check_grace_period_seconds: Some(60),
            ..ServiceSnapshot::default()
        }
    }

    #[test]
    fn a_target_that_sets_nothing_changes_nothing() {
        let changes = ServiceChanges::plan(&live(), &target());
        assert_eq!(changes, ServiceChanges::default());
        assert!(changes.is_empty());
        assert!(!changes.touches_deployment_configuration());
    }

    #[test]
    fn settings_equal_to_the_live_ones_are_not_changes() {
        let mut config = target();
        config.desired_count = Some(3);
        config.minimum_healthy_percent = Some(100);
        config.maximum_percent = Some(200);
        config.circuit_breaker = Some(CircuitBreakerMode::Rollback);
        config.health_check_grace_period = Some(HumanDuration(Duration::from_secs(60)));
        assert!(ServiceChanges::plan(&live(), &config).is_empty());
    }

    #[test]
    fn each_differing_setting_is_one_line_from_the_live_value() {
        let mut config = target();
        config.desired_count = Some(5);
        config.minimum_healthy_percent = Some(50);
        config.circuit_breaker = Some(CircuitBreakerMode::Detect);
        config.health_check_grace_period = Some(HumanDuration(Duration::from_secs(90)));
        config.force_new_deployment = true;
        let mut service = live();
        service.maximum_percent = None;
        let changes = ServiceChanges::plan(&service, &config);
        assert_eq!(
            changes.lines(),
            [
                "desired count: 3 → 5",
                "minimum healthy percent: 100% → 50%",
                "health check grace period: 60s → 90s",
                "circuit breaker: rollback → detect",
                "force a new deployment",
            ]
        );
        assert!(changes.touches_deployment_configuration());
        assert_eq!(
            changes.circuit_breaker_after(&service),
            Some(CircuitBreakerSetting {
                enable: true,
                rollback: false
            })
        );
    }

    #[test]
    fn turning_the_breaker_off_on_a_service_without_one_is_a_change_from_unset() {
        let mut config = target();
        config.circuit_breaker = Some(CircuitBreakerMode::Off);
        let mut service = live();
        service.circuit_breaker = None;
        let changes = ServiceChanges::plan(&service, &config);
        assert_eq!(changes.lines(), ["circuit breaker: unset → off"]);
    }
}
