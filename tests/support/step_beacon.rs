//! A listener a build step calls when it starts, for tests that act while a step runs.

use std::time::Duration;

/// A listener on 127.0.0.1 that a build step calls when it starts (build steps share the
/// host's network), so a test can act while the step runs.
pub struct StepBeacon {
    listener: std::net::TcpListener,
}

impl StepBeacon {
    pub fn new() -> StepBeacon {
        let listener = std::net::TcpListener::bind(("127.0.0.1", 0)).expect("bind the beacon");
        listener
            .set_nonblocking(true)
            .expect("a non-blocking beacon");
        StepBeacon { listener }
    }

    /// The shell command that calls the beacon; it never fails the step.
    pub fn call(&self) -> String {
        let port = self.listener.local_addr().expect("beacon address").port();
        format!("(wget -q -O /dev/null http://127.0.0.1:{port}/ || true)")
    }

    /// Waits (bounded) for the step's call, and hangs up on it.
    pub fn wait(&self, what: &str, timeout: Duration) {
        let start = std::time::Instant::now();
        loop {
            match self.listener.accept() {
                Ok(_) => return,
                Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => {
                    assert!(
                        start.elapsed() < timeout,
                        "timed out after {timeout:?} waiting for {what}"
                    );
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(error) => panic!("the beacon failed: {error}"),
            }
        }
    }
}
