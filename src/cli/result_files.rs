//! The files a finished run leaves for scripts and CI: the JSON result (`--result-file`), JUnit
//! XML (`--junit-file`), the dotenv file (`--dotenv-file`), and under GitHub Actions the step
//! outputs and job summary.

use std::path::{Path, PathBuf};

use super::args::GlobalArgs;
use crate::journal::RunRecord;
use crate::report::{CiSystem, ci_files};

/// What to write for a run, and what the user should know about it.
#[derive(Debug, Default)]
pub(crate) struct ResultFiles {
    /// (path, text, append).
    pub(crate) files: Vec<(PathBuf, String, bool)>,
    /// Names the dotenv file had to leave out, said as warnings.
    pub(crate) warnings: Vec<String>,
}

/// The files to write for `record`. `json` is the rendered result.
pub(crate) fn files_for(
    global: &GlobalArgs,
    ci: Option<CiSystem>,
    env: &crate::app::EnvVars,
    record: &RunRecord,
    json: &str,
) -> ResultFiles {
    let mut files: Vec<(PathBuf, String, bool)> = Vec::new();
    let mut warnings = Vec::new();
    if let Some(path) = &global.result_file {
        files.push((path.clone(), json.to_owned(), false));
    }
    if let Some(path) = &global.junit_file {
        files.push((path.clone(), ci_files::junit(record), false));
    }
    if let Some(path) = &global.dotenv_file {
        let dotenv = ci_files::dotenv(record);
        warnings.extend(
            dotenv
                .clashes
                .iter()
                .map(|clash| format!("{}: {clash}", path.display())),
        );
        files.push((path.clone(), dotenv.text, false));
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
    ResultFiles { files, warnings }
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
