//! Keeps the progress lines a docker deploy reports, for tests to look for.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use shipit::deploy::docker::DeployObserver;

/// Every progress line of a deploy, in order.
#[derive(Default)]
pub struct Recorder {
    lines: Mutex<Vec<String>>,
}

impl DeployObserver for Recorder {
    fn on_progress(&self, message: &str) {
        self.lines
            .lock()
            .expect("recorder lock")
            .push(message.to_owned());
    }
}

impl Recorder {
    pub fn saw(&self, needle: &str) -> bool {
        self.lines
            .lock()
            .expect("recorder lock")
            .iter()
            .any(|line| line.contains(needle))
    }

    pub fn lines(&self) -> Vec<String> {
        self.lines.lock().expect("recorder lock").clone()
    }

    pub async fn wait_for(&self, needle: &str, limit: Duration) {
        let started = Instant::now();
        while !self.saw(needle) {
            assert!(
                started.elapsed() < limit,
                "no progress line with `{needle}` within {limit:?}: {:?}",
                self.lines()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}
