//! Looking at stages before anything runs: the configuration resolved as far as it can be
//! (images not built yet are placeholders), for `shipit plan`'s previews and for the checks a
//! run makes of its deploy targets before it builds.

use std::collections::BTreeMap;

use super::AppError;
use crate::pipeline::Pipeline;
use crate::pipeline::interpolate::{Values, interpolate_value};
use crate::plan::{Participation, StageGraph, StageId, StageKind};
use crate::report::{Event, Reporter};
use crate::runner::config_path;
use crate::stages::{AwsIdentity, Executors, FailureKind, PreviewInput, StageConfig};

/// Stage `id`'s configuration resolved with `values` and typed; the message says what stands
/// in the way.
pub(super) fn resolve_ahead(
    pipeline: &Pipeline,
    id: &StageId,
    values: &Values,
) -> Result<StageConfig, String> {
    let path = config_path(id);
    let raw = pipeline
        .raw(&path)
        .cloned()
        .unwrap_or(serde_json::Value::Null);
    interpolate_value(&raw, values, &path)
        .map_err(|(at, message)| pipeline.diagnostic_at(&at, message).to_string())
        .and_then(|resolved| {
            StageConfig::resolve(pipeline, id, &path, &resolved).map_err(|failure| failure.message)
        })
}

/// Asks every deploy stage that takes part in the run whether its target fits the world it
/// deploys to, before anything is built. A target that does not (no such service, a strategy
/// its controller does not take) refuses the run; a check that could not be made is a warning.
/// `values` carry image placeholders.
pub(super) async fn check_deploy_targets(
    executors: &Executors,
    pipeline: &Pipeline,
    graph: &StageGraph,
    participation: &BTreeMap<StageId, Participation>,
    values: &Values,
    aws: &AwsIdentity,
    reporter: &dyn Reporter,
) -> Result<(), AppError> {
    let mut refusals = Vec::new();
    for node in &graph.stages {
        if node.id.kind != StageKind::Deploy
            || participation.get(&node.id) == Some(&Participation::Excluded)
        {
            continue;
        }
        let Ok(executor) = executors.for_stage(&node.id, pipeline) else {
            continue;
        };
        // A configuration that cannot be resolved yet is checked when the stage runs.
        let Ok(config) = resolve_ahead(pipeline, &node.id, values) else {
            continue;
        };
        let input = PreviewInput {
            pipeline,
            id: &node.id,
            config: &config,
            values,
            aws,
        };
        match executor.preflight(&input).await {
            Ok(()) => {}
            Err(failure) if failure.kind == FailureKind::Invalid => {
                let mut text = format!("{}: {}", node.id, failure.message);
                if let Some(hint) = failure.hint {
                    text.push_str(&format!("\n  hint: {hint}"));
                }
                refusals.push(text);
            }
            Err(failure) => reporter.report(&Event::Warning {
                message: format!(
                    "could not check {} before the run: {}",
                    node.id, failure.message
                ),
            }),
        }
    }
    if refusals.is_empty() {
        Ok(())
    } else {
        Err(AppError::invalid(refusals.join("\n"))
            .with_hint("nothing was built or deployed; fix the target and run again"))
    }
}
