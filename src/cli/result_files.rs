//! The files a finished run leaves for scripts and CI: the JSON result (`--result-file`), JUnit
//! XML (`--junit-file`), and under GitHub Actions the step outputs and job summary.

use std::path::{Path, PathBuf};

use super::args::GlobalArgs;
use crate::journal::RunRecord;
use crate::report::{CiSystem, ci_files};

/// The files to write for `record`: (path, text, append). `json` is the rendered result.
pub(crate) fn files_for(
    global: &GlobalArgs,
    ci: Option<CiSystem>,
    env: &crate::app::EnvVars,
    record: &RunRecord,
    json: &str,
) -> Vec<(PathBuf, String, bool)> {
    let mut files: Vec<(PathBuf, String, bool)> = Vec::new();
    if let Some(path) = &global.result_file {
        files.push((path.clone(), json.to_owned(), false));
    }
    if let Some(path) = &global.junit_file {
        files.push((path.clone(), ci_files::junit(record), false));
    }
    // GitHub Actions hands every step these two files to append to. The same detection as the
    // output mode's, so `GITHUB_ACTIONS=false` means "not GitHub" for both.
    if ci == Some(CiSystem::GithubActions) {
        if let Some(path) = env.get("GITHUB_OUTPUT").filter(|p| !p.is_empty()) {
            files.push((path.into(), ci_files::github_outputs(record), true));
        }
        if let Some(path) = env.get("GITHUB_STEP_SUMMARY").filter(|p| !p.is_empty()) {
            files.push((path.into(), ci_files::github_summary(record), true));
        }
    }
    files
}

pub(crate) fn write_file(path: &Path, text: &str, append: bool) -> std::io::Result<()> {
    use std::io::Write;
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)?;
    }
    if append {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?
            .write_all(text.as_bytes())
    } else {
        std::fs::write(path, text)
    }
}
