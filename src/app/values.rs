//! The values `${{ … }}` expressions resolve against before any stage has run (env, git, run.id
//! and vars), and the check that every stage's configuration resolves with them.

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

use super::EnvVars;
use crate::journal::GitSnapshot;
use crate::pipeline::interpolate::{Values, interpolate_str, interpolate_value};
use crate::pipeline::{Diagnostic, Pipeline};
use crate::plan::StageGraph;
use crate::runner::config_path;

/// env, git, run.id and the resolved vars. An unresolvable var is an invalid-input error
/// pointing at the var.
pub(super) fn base_values(
    pipeline: &Pipeline,
    run_id: &str,
    env: &EnvVars,
) -> Result<(Values, GitSnapshot), Diagnostic> {
    let mut values = Values {
        env: env.clone(),
        run_id: Some(run_id.to_owned()),
        ..Values::default()
    };
    let unknown = || GitSnapshot {
        sha: None,
        branch: None,
        dirty: false,
    };
    let snapshot = match crate::git::read(&pipeline.base_dir, &|name| env.get(name).cloned()) {
        Ok(Some(info)) => {
            values.git = info.values();
            GitSnapshot {
                sha: Some(info.sha.clone()),
                branch: info.branch.clone(),
                dirty: info.dirty,
            }
        }
        Ok(None) => {
            values.git_unavailable = Some(format!(
                "{} is not inside a git repository with commits",
                pipeline.base_dir.display()
            ));
            unknown()
        }
        Err(message) => {
            values.git_unavailable = Some(message);
            unknown()
        }
    };
    for (name, raw, path) in pipeline.vars_raw() {
        let value = interpolate_str(&raw, &values)
            .map_err(|message| pipeline.diagnostic_at(&path, message))?;
        values.vars.insert(name, value);
    }
    Ok((values, snapshot))
}

/// Resolves every stage's configuration before anything runs, with image outputs stubbed, so a
/// missing environment variable is reported up front rather than after a 10-minute build.
pub(super) fn preflight(
    pipeline: &Pipeline,
    graph: &StageGraph,
    values: &Values,
) -> Result<(), Vec<Diagnostic>> {
    let values = with_image_placeholders(values, pipeline);
    let problems: Vec<Diagnostic> = graph
        .stages
        .iter()
        .filter_map(|stage| {
            let path = config_path(&stage.id);
            let raw = pipeline.raw(&path)?;
            interpolate_value(raw, &values, &path)
                .err()
                .map(|(at, message)| pipeline.diagnostic_at(&at, message))
        })
        .collect();
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems)
    }
}

/// `values` with `images.NAME.*` of every image set to a placeholder, for resolving what can be
/// resolved before any image is built.
pub(super) fn with_image_placeholders(values: &Values, pipeline: &Pipeline) -> Values {
    let mut values = values.clone();
    for name in pipeline.file.images.keys() {
        let placeholder: BTreeMap<String, String> = ["digest", "ref", "id"]
            .iter()
            .map(|k| (k.to_string(), "pending".to_owned()))
            .collect();
        values.images.insert(name.clone(), placeholder);
    }
    values
}

/// The pipeline file's text and the chosen environment: a resumed run refuses a change in
/// either.
pub(super) fn pipeline_digest(pipeline: &Pipeline) -> String {
    let mut hasher = Sha256::new();
    hasher.update(pipeline.source.text.as_bytes());
    hasher.update([0]);
    hasher.update(pipeline.environment.as_deref().unwrap_or("").as_bytes());
    format!("sha256:{}", hex::encode(hasher.finalize()))
}
