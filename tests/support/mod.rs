//! A tiny harness that drives the real `shipit` binary in a temporary git repository.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub struct Project {
    pub dir: tempfile::TempDir,
    envs: Vec<(String, String)>,
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

    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_shipit"));
        command.args(args).current_dir(self.path());
        // A predictable output mode whatever CI runs the tests.
        for var in [
            "CI",
            "GITHUB_ACTIONS",
            "GITLAB_CI",
            "JENKINS_URL",
            "BUILDKITE",
            "CIRCLECI",
            "TF_BUILD",
            "FORCE_COLOR",
            "SHIPIT_FILE",
            "SHIPIT_STATE_DIR",
        ] {
            command.env_remove(var);
        }
        command.env("NO_COLOR", "1");
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
