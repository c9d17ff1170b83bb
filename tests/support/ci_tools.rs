//! The validators the CI definition tests drive, all written elsewhere and installed by
//! `scripts/testenv up` from PyPI: actionlint, shellcheck, check-jsonschema, and a python3 with
//! PyYAML, junitparser and xmlschema. Each is found through the env file's variable; one that is
//! missing fails the test with what to do, never lets it pass.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::{repo_root, testenv};

/// What a validator printed and how it ended.
pub struct ToolRun {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl std::fmt::Debug for ToolRun {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {}\n--- stdout\n{}\n--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

/// The program the env file's `variable` names, which must exist.
pub fn tool(variable: &str) -> PathBuf {
    let path = PathBuf::from(testenv(variable));
    assert!(
        path.is_file(),
        "{variable} names {}, which does not exist: run scripts/testenv up, which installs it",
        path.display()
    );
    path
}

/// Runs `program` with `args` in `dir`.
pub fn run_tool(program: &Path, args: &[&str], dir: &Path) -> ToolRun {
    let output = Command::new(program)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|err| panic!("{} does not run: {err}", program.display()));
    ToolRun {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// `check-jsonschema --builtin-schema vendor.NAME FILE`: the schema the tool ships (a copy of
/// SchemaStore's or GitLab's own), so no network is needed.
pub fn check_jsonschema(schema: &str, file: &Path) -> ToolRun {
    let file = file.to_str().expect("a UTF-8 path");
    run_tool(
        &tool("SHIPIT_TEST_CHECK_JSONSCHEMA"),
        &["--builtin-schema", &format!("vendor.{schema}"), file],
        &repo_root(),
    )
}

/// actionlint on the workflows of the repository at `root` (which must be a git repository, so
/// actionlint reads local actions such as `uses: ./`), with shellcheck on every `run:` script.
pub fn actionlint(root: &Path) -> ToolRun {
    let shellcheck = format!("-shellcheck={}", tool("SHIPIT_TEST_SHELLCHECK").display());
    run_tool(
        &tool("SHIPIT_TEST_ACTIONLINT"),
        &["-no-color", &shellcheck],
        root,
    )
}

/// shellcheck on one script.
pub fn shellcheck(script: &Path) -> ToolRun {
    run_tool(
        &tool("SHIPIT_TEST_SHELLCHECK"),
        &[script.to_str().expect("a UTF-8 path")],
        &repo_root(),
    )
}

/// A YAML file as JSON, read by PyYAML (a parser of its own, not shipit's).
pub fn yaml_as_json(file: &Path) -> serde_json::Value {
    let run = run_tool(
        &tool("SHIPIT_TEST_PYTHON"),
        &[
            "-c",
            "import json, sys, yaml; print(json.dumps(yaml.safe_load(open(sys.argv[1]))))",
            file.to_str().expect("a UTF-8 path"),
        ],
        &repo_root(),
    );
    assert_eq!(
        run.code,
        0,
        "PyYAML could not read {}: {run:?}",
        file.display()
    );
    serde_json::from_str(&run.stdout).expect("PyYAML prints JSON")
}

/// One JUnit test case as junitparser reads it.
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
pub struct JunitCase {
    pub name: String,
    pub classname: String,
    pub result: String,
    pub message: Option<String>,
}

/// One JUnit suite as junitparser reads it.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct JunitSuite {
    pub name: String,
    pub tests: u32,
    pub failures: u32,
    pub skipped: u32,
    pub cases: Vec<JunitCase>,
}

/// Validates `report` against tests/ci/JUnit.xsd with xmlschema and reads it with junitparser;
/// fails the test with the validator's own message when it is not what CI servers read.
pub fn check_junit(report: &Path) -> Vec<JunitSuite> {
    let ci = repo_root().join("tests/ci");
    let script = ci.join("check_junit.py");
    let schema = ci.join("JUnit.xsd");
    let run = run_tool(
        &tool("SHIPIT_TEST_PYTHON"),
        &[
            script.to_str().expect("a UTF-8 path"),
            report.to_str().expect("a UTF-8 path"),
            schema.to_str().expect("a UTF-8 path"),
        ],
        &repo_root(),
    );
    assert_eq!(
        run.code,
        0,
        "{} is not a JUnit report CI servers read: {run:?}\n--- the report\n{}",
        report.display(),
        std::fs::read_to_string(report).unwrap_or_default()
    );
    serde_json::from_str(&run.stdout).expect("check_junit.py prints JSON")
}
