//! A real `shipit daemon` process for tests: started with a configuration file in a folder of
//! its own, found through the address it logs, stopped with SIGTERM or killed with SIGKILL.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::INHERITED_FROM_THE_CI;

pub struct Daemon {
    child: Child,
    pub address: SocketAddr,
    /// The folder the daemon runs in; its configuration is `daemon.yaml` there.
    pub dir: PathBuf,
    logs: Arc<Mutex<String>>,
}

/// The `shipit daemon` command for the configuration `dir/daemon.yaml`, logging JSON.
pub fn daemon_command(dir: &Path, envs: &[(&str, &str)]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_shipit"));
    command
        .args(["daemon", "--config"])
        .arg(dir.join("daemon.yaml"))
        .args(["--log-format", "json"])
        .current_dir(dir)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for name in INHERITED_FROM_THE_CI {
        command.env_remove(name);
    }
    for (key, value) in envs {
        command.env(key, value);
    }
    command
}

impl Daemon {
    /// Starts the daemon of `dir/daemon.yaml` and waits until it says where it listens.
    pub fn start(dir: &Path, envs: &[(&str, &str)]) -> Daemon {
        let mut child = daemon_command(dir, envs).spawn().unwrap();
        let logs = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let stderr = child.stderr.take().unwrap();
        let sink = logs.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if line.contains("\"listening\"")
                    && let Some(address) = serde_json::from_str::<serde_json::Value>(&line)
                        .ok()
                        .and_then(|v| v["fields"]["address"].as_str().map(str::to_owned))
                {
                    let _ = tx.send(address);
                }
                let mut logs = sink.lock().unwrap();
                logs.push_str(&line);
                logs.push('\n');
            }
        });
        let address = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(address) => address.parse().unwrap(),
            Err(_) => {
                let _ = child.kill();
                panic!(
                    "the daemon did not say where it listens within 60 s; its log:\n{}",
                    logs.lock().unwrap()
                );
            }
        };
        Daemon {
            child,
            address,
            dir: dir.to_path_buf(),
            logs,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.address)
    }

    pub fn logs(&self) -> String {
        self.logs.lock().unwrap().clone()
    }

    /// SIGKILL: the daemon gets no chance to tidy anything.
    pub fn kill(mut self) -> String {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.logs()
    }

    /// SIGTERM, then the exit code once it stopped (within `within`).
    pub fn stop(mut self, within: Duration) -> (i32, String) {
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                std::thread::sleep(Duration::from_millis(100));
                return (status.code().unwrap_or(-1), self.logs());
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!(
                    "the daemon did not stop within {within:?} of SIGTERM:\n{}",
                    self.logs()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An HTTP client that never goes through a proxy (every request goes to loopback).
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}

/// A GitHub `push` delivery for `repository` at `git_ref` → `sha`, as GitHub shapes it (the
/// recorded fixture with those three changed).
pub fn github_push(repository: &str, git_ref: &str, sha: &str, message: &str) -> String {
    let mut push: serde_json::Value = serde_json::from_str(include_str!(
        "../../src/daemon/webhooks/fixtures/github-push.json"
    ))
    .unwrap();
    push["ref"] = git_ref.into();
    push["after"] = sha.into();
    push["repository"]["full_name"] = repository.into();
    push["head_commit"]["id"] = sha.into();
    push["head_commit"]["message"] = message.into();
    serde_json::to_string(&push).unwrap()
}
