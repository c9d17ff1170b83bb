//! What the emulator is told to play: how the pods of a Deployment's rollout behave, and the
//! clock unit everything progresses by.

use std::time::Duration;

/// The emulator's clock: every state change happens a whole number of steps after the previous
/// one, and each step stands for `seconds_per_step` seconds of the cluster's time (so a
/// Deployment's `progressDeadlineSeconds: 12` runs out after 2 steps at the default 6).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timing {
    pub step: Duration,
    pub seconds_per_step: u32,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            step: Duration::from_millis(150),
            seconds_per_step: 6,
        }
    }
}

/// How the pods a rollout creates behave; pods keep the scenario they were created with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PodScenario {
    /// Scheduled at once, Running after one step, Ready `after_steps` steps after creation.
    Ready { after_steps: u32 },
    /// Running, but the readiness probe fails with 503 forever (`Warning Unhealthy`).
    NeverReady,
    /// The container exits with `exit_code` after printing `log_lines`, again and again:
    /// restartCount grows, waiting `CrashLoopBackOff`, lastState terminated.
    CrashLoop {
        exit_code: i32,
        log_lines: Vec<String>,
    },
    /// `ErrImagePull`, then `ImagePullBackOff` forever.
    ImagePullFails,
    /// Pending forever: no node has the CPU (`Warning FailedScheduling`).
    Unschedulable,
    /// The container refers to a Secret key that does not exist.
    CreateContainerConfigError,
    /// Like `Ready`, each pod ready `steps_per_pod` steps after its creation.
    Slow { steps_per_pod: u32 },
    /// A Job's pod: runs `after_steps` steps printing `log_lines`, then its container exits
    /// with `exit_code` (phase Succeeded for 0, Failed otherwise). A Job plays this scenario
    /// when the test sets it for the Job's name; by default it succeeds after two steps.
    Completes {
        exit_code: i32,
        after_steps: u32,
        log_lines: Vec<String>,
    },
}

impl Default for PodScenario {
    fn default() -> Self {
        PodScenario::Ready { after_steps: 2 }
    }
}

impl PodScenario {
    /// A Job's pod that fails with `exit_code` after printing `log_lines`.
    pub fn job_fails(exit_code: i32, log_lines: &[&str]) -> PodScenario {
        PodScenario::Completes {
            exit_code,
            after_steps: 2,
            log_lines: log_lines.iter().map(|line| line.to_string()).collect(),
        }
    }

    /// `CrashLoop` with these log lines.
    pub fn crash_loop(exit_code: i32, log_lines: &[&str]) -> PodScenario {
        PodScenario::CrashLoop {
            exit_code,
            log_lines: log_lines.iter().map(|line| line.to_string()).collect(),
        }
    }
}
