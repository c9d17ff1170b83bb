//! What the deploy benchmarks share: a throwaway project (its files committed to a fresh git
//! repository) and running shipit in it. Included by each benchmark with `#[path]`; not an
//! example itself (cargo builds `examples/*.rs` and `examples/*/main.rs` only).

use std::path::Path;
use std::process::Command;

use serde_json::Value;

/// Writes `files` (path relative to `dir`, content) and a `.gitignore` for shipit's state, and
/// commits them to a new repository in `dir`.
pub fn write_project(dir: &Path, files: &[(&str, String)]) {
    let mut all: Vec<(&str, String)> = files.to_vec();
    all.push((".gitignore", ".shipit/\n".to_owned()));
    for (name, text) in all {
        let path = dir.join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
    for args in [
        &["init", "-q", "-b", "main"][..],
        &["add", "-A"],
        &[
            "-c",
            "user.name=bench",
            "-c",
            "user.email=bench@shipit.invalid",
            "commit",
            "-q",
            "-m",
            "bench",
        ],
    ] {
        let status = Command::new("git")
            .args(args)
            .current_dir(dir)
            .status()
            .unwrap();
        assert!(status.success(), "git {args:?}");
    }
}

/// Runs shipit in `dir` with `--output json`, as in CI: exit code, JSON result, stderr.
pub fn shipit_run(shipit: &Path, dir: &Path, args: &[&str]) -> (i32, Value, String) {
    let output = Command::new(shipit)
        .args(args)
        .args(["--output", "json"])
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .env("CI", "true")
        .output()
        .expect("shipit starts");
    let result = serde_json::from_slice(&output.stdout).unwrap_or(Value::Null);
    (
        output.status.code().unwrap_or(-1),
        result,
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}
