//! A tiny harness that drives the real `shipit` binary in a temporary git repository, and the
//! scenario the build and deploy tests share.
#![allow(dead_code)]

pub mod aws_emulator;
pub mod ci_tools;
pub mod daemon;
pub mod daemon_proxy;
pub mod demo_app;
pub mod demo_images;
pub mod deploy_recorder;
pub mod docker_build_support;
pub mod fake_servers;
pub mod git_servers;
pub mod kube_emulator;
pub mod port_lease;
pub mod scenario;
pub mod step_beacon;
pub mod tcp_cut;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Variables the CI that runs these tests may set, and that would change what shipit does (how
/// it detects a CI, which pipeline file and state folder it uses): a test's command starts
/// without them.
pub const INHERITED_FROM_THE_CI: &[&str] = &[
    "CI",
    "GITHUB_ACTIONS",
    "GITLAB_CI",
    "JENKINS_URL",
    "BUILDKITE",
    "CIRCLECI",
    "TF_BUILD",
    "SHIPIT_FILE",
    "SHIPIT_STATE_DIR",
];

pub struct Project {
    pub dir: tempfile::TempDir,
    envs: Vec<(String, String)>,
    /// Variables of the test's own environment the child does not inherit.
    removed: Vec<String>,
}

pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "stdout is not JSON ({e}):\n{}\nstderr:\n{}",
                self.stdout, self.stderr
            )
        })
    }
}

impl std::fmt::Debug for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {}\n--- stdout\n{}\n--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

fn git(dir: &Path, args: &[&str]) {
    let status = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_AUTHOR_NAME", "shipit tests")
        .env("GIT_AUTHOR_EMAIL", "tests@shipit.invalid")
        .env("GIT_COMMITTER_NAME", "shipit tests")
        .env("GIT_COMMITTER_EMAIL", "tests@shipit.invalid")
        .output()
        .expect("git runs");
    assert!(
        status.status.success(),
        "git {args:?} failed: {}",
        String::from_utf8_lossy(&status.stderr)
    );
}

impl Project {
    /// An empty git repository with one commit.
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        git(dir.path(), &["init", "-q", "-b", "main"]);
        std::fs::write(dir.path().join(".gitignore"), ".shipit/\n").unwrap();
        git(dir.path(), &["add", "-A"]);
        git(dir.path(), &["commit", "-q", "-m", "start"]);
        Project {
            dir,
            envs: Vec::new(),
            removed: Vec::new(),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn file(&self, relative: &str, content: impl AsRef<[u8]>) -> &Self {
        let path = self.dir.path().join(relative);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, content).unwrap();
        self
    }

    pub fn commit(&self) -> &Self {
        git(self.path(), &["add", "-A"]);
        git(self.path(), &["commit", "-q", "-m", "change"]);
        self
    }

    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.envs.push((key.into(), value.into()));
        self
    }

    /// Keeps `key` of the test's environment (`scripts/test` exports dummy AWS keys) away from
    /// the child.
    pub fn without_env(mut self, key: &str) -> Self {
        self.removed.push(key.into());
        self
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_shipit"));
        command.args(args).current_dir(self.path());
        // A predictable output mode whatever CI runs the tests.
        for var in INHERITED_FROM_THE_CI.iter().chain(&["FORCE_COLOR"]) {
            command.env_remove(var);
        }
        command.env("NO_COLOR", "1");
        for key in &self.removed {
            command.env_remove(key);
        }
        for (k, v) in &self.envs {
            command.env(k, v);
        }
        command
    }

    pub fn shipit(&self, args: &[&str]) -> Run {
        let output: Output = self.command(args).output().expect("shipit runs");
        Run {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    pub fn journal_dir(&self) -> PathBuf {
        self.path().join(".shipit/runs")
    }

    pub fn run_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = std::fs::read_dir(self.journal_dir())
            .map(|rd| {
                rd.filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        ids.sort();
        ids
    }
}

/// The record of stage `id` (`build:web`) in a JSON result, plan or journal.
pub fn stage<'a>(result: &'a serde_json::Value, id: &str) -> &'a serde_json::Value {
    find_stage(result, id).unwrap_or_else(|| panic!("no stage {id} in {result}"))
}

fn find_stage<'a>(result: &'a serde_json::Value, id: &str) -> Option<&'a serde_json::Value> {
    result["stages"]
        .as_array()?
        .iter()
        .find(|s| s["stage"] == id)
}

/// The repository's own folder (for `pipelines/`).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A variable the test environment (`scripts/testenv up`, run by `scripts/test`) must provide.
pub fn testenv(name: &str) -> String {
    match std::env::var(name) {
        Ok(value) if !value.is_empty() => value,
        _ => panic!(
            "{name} is not set: this test needs the test environment. Run the tests with `scripts/test`, \
             or `scripts/testenv up` and export the variables from the file `scripts/testenv env` prints."
        ),
    }
}

/// A pipeline name unique to one test, so tests can run side by side on one daemon and clean
/// up only what they made.
pub fn unique_name(prefix: &str) -> String {
    format!(
        "{prefix}-{:x}-{:04x}",
        std::process::id(),
        rand::random::<u16>()
    )
}

/// The docker CLI of the test environment: Debian's 20.10 client, which still has the classic
/// builder and BuildKit without buildx.
pub fn docker_cli_path() -> PathBuf {
    std::env::var_os("SHIPIT_TEST_DOCKER_CLI")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/docker"))
}

/// The docker CLI pointed at the test environment's daemon: its stdout, whatever its status.
pub fn docker(args: &[&str]) -> String {
    testenv("SHIPIT_TEST_DOCKER_HOST");
    try_docker(args).expect("the docker CLI runs")
}

/// Like [`docker`], `None` instead of a panic when the CLI cannot run at all.
pub fn try_docker(args: &[&str]) -> Option<String> {
    let host = std::env::var("SHIPIT_TEST_DOCKER_HOST").ok()?;
    let output = Command::new(docker_cli_path())
        .args(["-H", &host])
        .args(args)
        .output()
        .ok()?;
    Some(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// GET http://127.0.0.1:port/path, body on success.
pub fn http_get(port: u16, path: &str) -> Option<String> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let (head, body) = response.split_once("\r\n\r\n")?;
    (head.starts_with("HTTP/1.0 200") || head.starts_with("HTTP/1.1 200")).then(|| body.to_owned())
}

impl Project {
    /// A project whose shipit talks to the test environment's Docker daemon.
    pub fn with_docker() -> Self {
        Project::new().env("DOCKER_HOST", &testenv("SHIPIT_TEST_DOCKER_HOST"))
    }

    /// Reads one run's journal.
    pub fn journal(&self, run_id: &str) -> serde_json::Value {
        let text = std::fs::read_to_string(self.journal_dir().join(run_id).join("journal.json"))
            .expect("journal exists");
        serde_json::from_str(&text).expect("journal is JSON")
    }

    /// The status of `stage` in the latest run's journal, if there is a run.
    pub fn latest_stage(&self, stage: &str) -> Option<serde_json::Value> {
        let id = self.run_ids().pop()?;
        let text =
            std::fs::read_to_string(self.journal_dir().join(id).join("journal.json")).ok()?;
        let journal: serde_json::Value = serde_json::from_str(&text).ok()?;
        find_stage(&journal, stage).cloned()
    }

    /// Waits (bounded) until `check` holds for the latest journal.
    pub fn wait_for(
        &self,
        what: &str,
        timeout: std::time::Duration,
        check: impl Fn(&Project) -> bool,
    ) {
        let start = std::time::Instant::now();
        while !check(self) {
            assert!(
                start.elapsed() < timeout,
                "timed out after {timeout:?} waiting for {what}"
            );
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }
}
