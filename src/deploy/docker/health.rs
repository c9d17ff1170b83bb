//! The health gate of one new container, decided from what was observed of it.
//!
//! This is the only place that decides whether a replica passed, failed or needs more time.
//! It is a pure function of the gate's settings and the container's observation history, so
//! every rule is tested on fixtures without a daemon; the rollout loop only collects
//! observations and acts on the decision.

use std::fmt;
use std::time::Duration;

/// What kind of check the gate runs, with its timing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct GatePolicy {
    pub check: GateCheck,
    /// Consecutive failed probes after the start period that fail the gate.
    pub retries: u32,
    /// Failed probes during this time after the container started do not count; with
    /// `GateCheck::Running` the container must stay up this long.
    pub start_period: Duration,
    /// Deadline for the gate, counted from when the gate began waiting on the container.
    pub deadline: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum GateCheck {
    /// No probe: running, without a restart, through the start period.
    Running,
    /// Docker's health status from the image's HEALTHCHECK.
    DockerHealth,
    /// shipit's own probe (HTTP or command); results arrive in `Observation::probe`.
    Probe,
}

/// The container's state as the daemon reported it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ContainerStatus {
    Created,
    Running,
    Paused,
    Restarting,
    Removing,
    Exited,
    Dead,
    /// The daemon no longer knows the container (someone removed it).
    Gone,
}

/// Docker's health status, when the container has a HEALTHCHECK.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum DockerHealth {
    Starting,
    Healthy,
    Unhealthy { last_output: Option<String> },
}

/// The result of one probe of shipit's own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ProbeResult {
    Passed,
    /// What went wrong, as it should read in a report (`GET /health answered 500`).
    Failed(String),
}

/// One look at the container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Observation {
    /// Time since the gate began waiting on this container (for the deadline).
    pub waited: Duration,
    /// Time since the container's process started (for the start period).
    pub uptime: Duration,
    pub status: ContainerStatus,
    pub exit_code: Option<i64>,
    pub restart_count: i64,
    /// `None` when the image has no HEALTHCHECK.
    pub docker_health: Option<DockerHealth>,
    /// The probe taken at this look, if one was taken (only while the container runs).
    pub probe: Option<ProbeResult>,
}

/// The gate's verdict on one container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum GateDecision {
    /// Not decided yet; the text says what the gate waits for.
    Pending(String),
    Healthy,
    Failed(GateFailure),
}

/// Why a container failed its gate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GateFailure {
    /// The process exited (the image's command ended, crashed, or could not bind its port).
    Exited { exit_code: Option<i64> },
    /// Docker restarted it: a crash loop under a restart policy.
    Restarted { restart_count: i64 },
    /// The probe failed `retries` times in a row after the start period, or Docker reports
    /// the image's HEALTHCHECK as unhealthy.
    Unhealthy { detail: String },
    /// The image has no HEALTHCHECK but the gate asked for it.
    NoHealthcheck,
    /// Someone removed or paused the container during the gate.
    Disturbed { status: String },
    /// The gate deadline passed while the container was still not healthy.
    DeadlineExceeded { waited: Duration, last: String },
}

impl fmt::Display for GateFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GateFailure::Exited {
                exit_code: Some(code),
            } => write!(f, "the container exited with code {code}"),
            GateFailure::Exited { exit_code: None } => write!(f, "the container exited"),
            GateFailure::Restarted { restart_count } => write!(
                f,
                "the container restarted {restart_count} time{} (crash loop)",
                if *restart_count == 1 { "" } else { "s" }
            ),
            GateFailure::Unhealthy { detail } => write!(f, "the container is unhealthy: {detail}"),
            GateFailure::NoHealthcheck => write!(
                f,
                "the gate uses the image's HEALTHCHECK but the image defines none; add one to \
                 the Dockerfile or choose an http or command probe"
            ),
            GateFailure::Disturbed { status } => {
                write!(
                    f,
                    "the container was {status} by someone else during the gate"
                )
            }
            GateFailure::DeadlineExceeded { waited, last } => write!(
                f,
                "the container was not healthy after {} ({last}); raise `timeout` if it needs \
                 longer to start",
                humantime::format_duration(*waited)
            ),
        }
    }
}

/// Decides the gate for one container from its observations, oldest first.
///
/// The rules, in order: a container that is gone, exited or restarted has failed whatever
/// its probes said (a crash loop can answer a probe between two crashes); then the check
/// itself; then the deadline, so a probe that passes at the last moment still counts.
pub(crate) fn decide(policy: &GatePolicy, history: &[Observation]) -> GateDecision {
    let Some(latest) = history.last() else {
        return GateDecision::Pending("waiting for the first look at the container".into());
    };

    match latest.status {
        ContainerStatus::Gone | ContainerStatus::Removing => {
            return GateDecision::Failed(GateFailure::Disturbed {
                status: "removed".into(),
            });
        }
        ContainerStatus::Paused => {
            return GateDecision::Failed(GateFailure::Disturbed {
                status: "paused".into(),
            });
        }
        ContainerStatus::Exited | ContainerStatus::Dead => {
            return GateDecision::Failed(GateFailure::Exited {
                exit_code: latest.exit_code,
            });
        }
        ContainerStatus::Restarting => {
            return GateDecision::Failed(GateFailure::Restarted {
                restart_count: latest.restart_count.max(1),
            });
        }
        ContainerStatus::Created | ContainerStatus::Running => {}
    }
    if latest.restart_count > 0 {
        return GateDecision::Failed(GateFailure::Restarted {
            restart_count: latest.restart_count,
        });
    }

    let waiting_for = if latest.status == ContainerStatus::Created {
        "the container to start".to_owned()
    } else {
        match policy.check {
            GateCheck::Running => {
                if latest.uptime >= policy.start_period {
                    return GateDecision::Healthy;
                }
                format!(
                    "running for {} of {}",
                    humantime::format_duration(whole_seconds(latest.uptime)),
                    humantime::format_duration(policy.start_period)
                )
            }
            GateCheck::DockerHealth => match &latest.docker_health {
                None => return GateDecision::Failed(GateFailure::NoHealthcheck),
                Some(DockerHealth::Healthy) => return GateDecision::Healthy,
                Some(DockerHealth::Unhealthy { last_output }) => {
                    return GateDecision::Failed(GateFailure::Unhealthy {
                        detail: match last_output {
                            Some(output) if !output.trim().is_empty() => format!(
                                "Docker reports the HEALTHCHECK unhealthy: {}",
                                output.trim()
                            ),
                            _ => "Docker reports the HEALTHCHECK unhealthy".to_owned(),
                        },
                    });
                }
                Some(DockerHealth::Starting) => "the image's HEALTHCHECK to pass".to_owned(),
            },
            GateCheck::Probe => match probe_verdict(policy, history) {
                ProbeVerdict::Passed => return GateDecision::Healthy,
                ProbeVerdict::Failed(detail) => {
                    return GateDecision::Failed(GateFailure::Unhealthy { detail });
                }
                ProbeVerdict::Waiting(detail) => detail,
            },
        }
    };

    if latest.waited >= policy.deadline {
        return GateDecision::Failed(GateFailure::DeadlineExceeded {
            waited: whole_seconds(latest.waited),
            last: waiting_for,
        });
    }
    GateDecision::Pending(waiting_for)
}

enum ProbeVerdict {
    Passed,
    Failed(String),
    Waiting(String),
}

/// Reads the probe results: the latest one passing is enough (as in Docker's own
/// HEALTHCHECK); `retries` failures in a row, not counting those inside the start period,
/// fail the gate.
fn probe_verdict(policy: &GatePolicy, history: &[Observation]) -> ProbeVerdict {
    let mut probes = history
        .iter()
        .rev()
        .filter_map(|observation| observation.probe.as_ref().map(|p| (observation, p)));
    let Some((_, latest)) = probes.clone().next() else {
        return ProbeVerdict::Waiting("the first probe".into());
    };
    if *latest == ProbeResult::Passed {
        return ProbeVerdict::Passed;
    }
    let last_failure = match latest {
        ProbeResult::Failed(detail) => detail.clone(),
        ProbeResult::Passed => String::new(),
    };
    let counted = probes
        .by_ref()
        .take_while(|(_, probe)| matches!(probe, ProbeResult::Failed(_)))
        .filter(|(observation, _)| observation.uptime >= policy.start_period)
        .count();
    let counted = u32::try_from(counted).unwrap_or(u32::MAX);
    if counted >= policy.retries {
        ProbeVerdict::Failed(format!(
            "{last_failure} ({counted} failed probe{} in a row)",
            if counted == 1 { "" } else { "s" }
        ))
    } else {
        ProbeVerdict::Waiting(format!(
            "last probe: {last_failure}; {counted} of {} allowed failures",
            policy.retries
        ))
    }
}

/// Reports read better without the nanoseconds of a measured duration.
fn whole_seconds(duration: Duration) -> Duration {
    Duration::from_secs(duration.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    fn policy(check: GateCheck) -> GatePolicy {
        GatePolicy {
            check,
            retries: 3,
            start_period: 4 * SECOND,
            deadline: 30 * SECOND,
        }
    }

    fn running(at_secs: u64) -> Observation {
        Observation {
            waited: Duration::from_secs(at_secs),
            uptime: Duration::from_secs(at_secs),
            status: ContainerStatus::Running,
            exit_code: None,
            restart_count: 0,
            docker_health: None,
            probe: None,
        }
    }

    fn probed(at_secs: u64, result: ProbeResult) -> Observation {
        Observation {
            probe: Some(result),
            ..running(at_secs)
        }
    }

    fn answered_500() -> ProbeResult {
        ProbeResult::Failed("GET /health answered 500".into())
    }

    #[test]
    fn no_observation_yet_is_pending() {
        assert!(matches!(
            decide(&policy(GateCheck::Probe), &[]),
            GateDecision::Pending(_)
        ));
    }

    #[test]
    fn a_command_that_exits_at_once_fails_with_its_exit_code() {
        let history = [Observation {
            status: ContainerStatus::Exited,
            exit_code: Some(127),
            ..running(0)
        }];
        assert_eq!(
            decide(&policy(GateCheck::Probe), &history),
            GateDecision::Failed(GateFailure::Exited {
                exit_code: Some(127)
            })
        );
    }

    #[test]
    fn an_exit_fails_even_after_a_passing_probe() {
        let history = [
            probed(1, ProbeResult::Passed),
            Observation {
                status: ContainerStatus::Exited,
                exit_code: Some(1),
                ..running(2)
            },
        ];
        assert!(matches!(
            decide(&policy(GateCheck::Probe), &history),
            GateDecision::Failed(GateFailure::Exited { .. })
        ));
    }

    #[test]
    fn a_restart_loop_fails_even_when_a_probe_passes_between_crashes() {
        let history = [Observation {
            restart_count: 2,
            probe: Some(ProbeResult::Passed),
            ..running(3)
        }];
        assert_eq!(
            decide(&policy(GateCheck::Probe), &history),
            GateDecision::Failed(GateFailure::Restarted { restart_count: 2 })
        );
    }

    #[test]
    fn a_container_caught_restarting_has_failed() {
        let history = [Observation {
            status: ContainerStatus::Restarting,
            restart_count: 0,
            ..running(1)
        }];
        assert_eq!(
            decide(&policy(GateCheck::Running), &history),
            GateDecision::Failed(GateFailure::Restarted { restart_count: 1 })
        );
    }

    #[test]
    fn failures_inside_the_start_period_do_not_count() {
        let history: Vec<_> = (0..4).map(|at| probed(at, answered_500())).collect();
        assert!(matches!(
            decide(&policy(GateCheck::Probe), &history),
            GateDecision::Pending(_)
        ));
    }

    #[test]
    fn a_pass_inside_the_start_period_is_healthy_at_once() {
        let history = [probed(0, answered_500()), probed(1, ProbeResult::Passed)];
        assert_eq!(
            decide(&policy(GateCheck::Probe), &history),
            GateDecision::Healthy
        );
    }

    #[test]
    fn answers_of_500_fail_once_retries_are_exhausted_after_the_start_period() {
        let mut history: Vec<_> = (0..6).map(|at| probed(at, answered_500())).collect();
        // Seconds 4 and 5 count: two of three allowed failures.
        assert!(matches!(
            decide(&policy(GateCheck::Probe), &history),
            GateDecision::Pending(_)
        ));
        history.push(probed(6, answered_500()));
        match decide(&policy(GateCheck::Probe), &history) {
            GateDecision::Failed(GateFailure::Unhealthy { detail }) => {
                assert!(detail.contains("answered 500"), "{detail}");
                assert!(detail.contains("3 failed probes"), "{detail}");
            }
            other => panic!("expected unhealthy, got {other:?}"),
        }
    }

    #[test]
    fn a_pass_resets_the_run_of_failures() {
        let history = [
            probed(5, answered_500()),
            probed(6, answered_500()),
            probed(7, ProbeResult::Passed),
        ];
        assert_eq!(
            decide(&policy(GateCheck::Probe), &history),
            GateDecision::Healthy
        );
        let history = [
            probed(5, answered_500()),
            probed(6, ProbeResult::Passed),
            probed(7, answered_500()),
            probed(8, answered_500()),
        ];
        assert!(matches!(
            decide(&policy(GateCheck::Probe), &history),
            GateDecision::Pending(_)
        ));
    }

    #[test]
    fn looks_without_a_probe_do_not_break_a_run_of_failures() {
        let history = [
            probed(5, answered_500()),
            running(6),
            probed(7, answered_500()),
            probed(8, answered_500()),
        ];
        assert!(matches!(
            decide(&policy(GateCheck::Probe), &history),
            GateDecision::Failed(GateFailure::Unhealthy { .. })
        ));
    }

    #[test]
    fn the_deadline_fails_a_gate_still_waiting() {
        let gate = GatePolicy {
            retries: 100,
            ..policy(GateCheck::Probe)
        };
        let history = [probed(31, answered_500())];
        match decide(&gate, &history) {
            GateDecision::Failed(GateFailure::DeadlineExceeded { waited, last }) => {
                assert_eq!(waited, 31 * SECOND);
                assert!(last.contains("answered 500"), "{last}");
            }
            other => panic!("expected the deadline, got {other:?}"),
        }
    }

    #[test]
    fn a_pass_at_the_deadline_still_counts() {
        let history = [probed(31, ProbeResult::Passed)];
        assert_eq!(
            decide(&policy(GateCheck::Probe), &history),
            GateDecision::Healthy
        );
    }

    #[test]
    fn the_deadline_counts_from_the_gate_not_from_the_container_start() {
        // A container re-attached by resume has been up for long; the gate starts afresh.
        let history = [Observation {
            waited: SECOND,
            uptime: 600 * SECOND,
            probe: Some(answered_500()),
            ..running(0)
        }];
        assert!(matches!(
            decide(&policy(GateCheck::Probe), &history),
            GateDecision::Pending(_)
        ));
    }

    #[test]
    fn without_a_probe_the_container_must_stay_up_through_the_start_period() {
        let gate = policy(GateCheck::Running);
        assert!(matches!(
            decide(&gate, &[running(1)]),
            GateDecision::Pending(_)
        ));
        assert_eq!(decide(&gate, &[running(4)]), GateDecision::Healthy);
    }

    #[test]
    fn the_image_healthcheck_decides_through_docker_status() {
        let gate = policy(GateCheck::DockerHealth);
        let with = |health| Observation {
            docker_health: Some(health),
            ..running(1)
        };
        assert!(matches!(
            decide(&gate, &[with(DockerHealth::Starting)]),
            GateDecision::Pending(_)
        ));
        assert_eq!(
            decide(&gate, &[with(DockerHealth::Healthy)]),
            GateDecision::Healthy
        );
        match decide(
            &gate,
            &[with(DockerHealth::Unhealthy {
                last_output: Some("curl: (7) refused\n".into()),
            })],
        ) {
            GateDecision::Failed(GateFailure::Unhealthy { detail }) => {
                assert!(detail.ends_with("curl: (7) refused"), "{detail}")
            }
            other => panic!("expected unhealthy, got {other:?}"),
        }
    }

    #[test]
    fn asking_for_the_image_healthcheck_of_an_image_without_one_fails() {
        assert_eq!(
            decide(&policy(GateCheck::DockerHealth), &[running(1)]),
            GateDecision::Failed(GateFailure::NoHealthcheck)
        );
    }

    #[test]
    fn a_container_removed_during_the_gate_fails() {
        let history = [Observation {
            status: ContainerStatus::Gone,
            ..running(2)
        }];
        assert!(matches!(
            decide(&policy(GateCheck::Running), &history),
            GateDecision::Failed(GateFailure::Disturbed { .. })
        ));
    }

    #[test]
    fn a_created_container_waits_to_start_until_the_deadline() {
        let created = |at| Observation {
            status: ContainerStatus::Created,
            ..running(at)
        };
        assert!(matches!(
            decide(&policy(GateCheck::Running), &[created(5)]),
            GateDecision::Pending(_)
        ));
        assert!(matches!(
            decide(&policy(GateCheck::Running), &[created(30)]),
            GateDecision::Failed(GateFailure::DeadlineExceeded { .. })
        ));
    }

    #[test]
    fn failure_messages_say_what_to_try() {
        let deadline = GateFailure::DeadlineExceeded {
            waited: 120 * SECOND,
            last: "last probe: connection refused".into(),
        };
        assert_eq!(
            deadline.to_string(),
            "the container was not healthy after 2m (last probe: connection refused); raise \
             `timeout` if it needs longer to start"
        );
        assert_eq!(
            GateFailure::Exited { exit_code: Some(1) }.to_string(),
            "the container exited with code 1"
        );
    }
}
