//! What the build tests need besides their scenario: the docker CLI used as an oracle, scratch
//! contexts and an observer that records what a build reports.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

use shipit::docker::BuildObserver;

/// The docker CLI used as the oracle: Debian's 20.10 client, which still has the
/// classic builder and BuildKit without buildx.
pub fn docker_cli() -> PathBuf {
    let path = super::docker_cli_path();
    assert!(
        path.is_file(),
        "the docker CLI {} is missing; install Debian's docker.io or set SHIPIT_TEST_DOCKER_CLI",
        path.display()
    );
    path
}

/// Runs the docker CLI, returning stdout; panics with stderr on failure.
pub fn cli(args: &[&str], envs: &[(&str, &str)], dir: Option<&Path>) -> String {
    let mut command = Command::new(docker_cli());
    command.args(args);
    for (key, value) in envs {
        command.env(key, value);
    }
    if let Some(dir) = dir {
        command.current_dir(dir);
    }
    let output = command.output().expect("run the docker CLI");
    assert!(
        output.status.success(),
        "docker {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Twelve random hex digits, for values a test wants unlike any earlier run's.
pub fn hex_id() -> String {
    let bytes: [u8; 6] = rand::random();
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// Writes `files` (path, contents) under a new temporary directory.
pub fn context(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    for (path, contents) in files {
        let full = dir.path().join(path);
        std::fs::create_dir_all(full.parent().expect("parent")).expect("mkdir");
        std::fs::write(full, contents).expect("write");
    }
    dir
}

/// Records everything the build reports.
#[derive(Default)]
pub struct Recorder {
    pub steps: Mutex<Vec<String>>,
    pub lines: Mutex<Vec<String>>,
}

impl Recorder {
    pub fn steps(&self) -> Vec<String> {
        self.steps.lock().expect("lock").clone()
    }

    pub fn lines(&self) -> Vec<String> {
        self.lines.lock().expect("lock").clone()
    }

    pub fn all_text(&self) -> String {
        let mut text = self.steps().join("\n");
        text.push('\n');
        text.push_str(&self.lines().join("\n"));
        text
    }
}

impl BuildObserver for Recorder {
    fn on_step(&self, step: &str) {
        self.steps.lock().expect("lock").push(step.to_string());
    }

    fn on_output_line(&self, line: &str) {
        self.lines.lock().expect("lock").push(line.to_string());
    }
}
