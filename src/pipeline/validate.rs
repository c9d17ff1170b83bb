//! The checks `shipit validate` runs: everything that can be known wrong before anything runs.
//! Each problem is reported at the key or value it is about; all problems are listed at once.

use std::collections::{BTreeMap, BTreeSet};

use super::Pipeline;
use super::interpolate::{Scope, check_reference, references_in};
use super::model::{DeployTarget, TargetKind};
use super::path::DocPath;
use super::source::Diagnostic;
use crate::config_problem::{ConfigProblem, ValidateConfig};

/// Every problem of the `push:` block of the image at `image_path`, each at its field.
pub(crate) fn push_problems(
    pipeline: &Pipeline,
    image_path: &DocPath,
    problems: &[ConfigProblem],
) -> Vec<Diagnostic> {
    let base = image_path.key("push");
    problems
        .iter()
        .map(|problem| {
            pipeline.diagnostic_at(
                &base.join_relative(&problem.path),
                format!("push.{problem}"),
            )
        })
        .collect()
}

/// Every problem the target kind's block at `target_path` finds in itself, each at its field.
pub(crate) fn target_kind_problems(
    pipeline: &Pipeline,
    target_path: &DocPath,
    kind: &TargetKind,
) -> Vec<Diagnostic> {
    let base = target_path.key(kind.key());
    kind.problems()
        .into_iter()
        .map(|problem| {
            pipeline.diagnostic_at(
                &base.join_relative(&problem.path),
                format!("{}.{problem}", kind.key()),
            )
        })
        .collect()
}

pub(super) fn check(pipeline: &Pipeline) -> Vec<Diagnostic> {
    let mut problems = Vec::new();
    let file = &pipeline.file;
    let root = DocPath::root();
    let at = |path: &DocPath, message: String| pipeline.diagnostic_at(path, message);

    if file.version != 1 {
        problems.push(
            at(
                &root.key("version"),
                format!("unsupported pipeline format version {}", file.version),
            )
            .with_hint("this shipit reads `version: 1`"),
        );
    }
    if !is_name(&file.name) {
        problems.push(at(
            &root.key("name"),
            format!(
                "pipeline name `{}` must be letters, digits, `-`, `_` or `.`",
                file.name
            ),
        ));
    }
    if let Some(env) = &pipeline.environment
        && !file.environments.contains_key(env)
    {
        let known: Vec<_> = file.environments.keys().cloned().collect();
        problems.push(
            pipeline
                .source
                .diagnostic(
                    None,
                    format!("--env {env}: the pipeline defines no such environment"),
                )
                .with_hint(if known.is_empty() {
                    "add it under `environments:`".to_owned()
                } else {
                    format!("choose one of: {}", known.join(", "))
                }),
        );
    }

    for name in file.images.keys() {
        if !is_name(name) {
            problems.push(at(
                &root.key("images").key(name.clone()),
                format!("image name `{name}` must be letters, digits, `-`, `_` or `.`"),
            ));
        }
    }
    for (name, image) in &file.images {
        let path = root.key("images").key(name.clone());
        if !has_expression(&image.context) {
            let context = pipeline.resolve_path(&image.context);
            if !context.is_dir() {
                problems.push(
                    at(
                        &path.key("context"),
                        format!("build context `{}` is not a folder", context.display()),
                    )
                    .with_hint("context paths are relative to the pipeline file"),
                );
            } else if !has_expression(&image.dockerfile)
                && !context.join(&image.dockerfile).is_file()
            {
                problems.push(
                    at(
                        &path.key("dockerfile"),
                        format!(
                            "Dockerfile `{}` does not exist",
                            context.join(&image.dockerfile).display()
                        ),
                    )
                    .with_hint("the dockerfile path is relative to the context"),
                );
            }
        }
        if let Some(push) = &image.push {
            // Values with expressions are checked once resolved, when the push runs.
            let mut checked = push.clone();
            checked.tags.retain(|tag| !has_expression(tag));
            let resolved_later =
                serde_json::to_string(&checked).is_ok_and(|text| has_expression(&text));
            if !resolved_later {
                problems.extend(push_problems(pipeline, &path, &checked.problems()));
            }
        }
    }

    for (name, target) in &file.deploy {
        let path = root.key("deploy").key(name.clone());
        if !is_name(name) {
            problems.push(at(
                &path,
                format!("deploy target name `{name}` must be letters, digits, `-`, `_` or `.`"),
            ));
        }
        for (image_path, image_name) in deployed_images(&path, target) {
            match file.images.get(image_name) {
                None => problems.push(at(
                    &image_path,
                    format!(
                        "deploy target `{name}` names image `{image_name}`, which is not defined under `images`"
                    ),
                )),
                Some(image) if image.push.is_none() && target.kind.needs_pushed_image() => {
                    problems.push(
                        at(
                            &image_path,
                            format!("image `{image_name}` is not pushed, so a cluster cannot pull it"),
                        )
                        .with_hint(format!("add a `push:` block to images.{image_name}")),
                    )
                }
                Some(_) => {}
            }
        }
        problems.extend(target_kind_problems(pipeline, &path, &target.kind));
        for (i, need) in target.needs.iter().enumerate() {
            if !file.deploy.contains_key(need) {
                problems.push(at(
                    &path.key("needs").index(i),
                    format!("`{need}` is not a deploy target"),
                ));
            } else if need == name {
                problems.push(at(
                    &path.key("needs").index(i),
                    format!("deploy target `{name}` needs itself"),
                ));
            }
        }
        let kind_path = path.key(target.kind.key());
        let referenced_files: Vec<(DocPath, &str)> = match &target.kind {
            // `current` names the service's live task definition, not a file.
            TargetKind::Ecs(ecs) if ecs.uses_current_task_definition() => Vec::new(),
            TargetKind::Ecs(ecs) => vec![(
                kind_path.key("task_definition"),
                ecs.task_definition.as_str(),
            )],
            // Globs are matched when the stage runs.
            TargetKind::Eks(eks) => eks
                .manifests
                .iter()
                .enumerate()
                .filter(|(_, m)| !m.contains(['*', '?', '[']))
                .map(|(i, m)| (kind_path.key("manifests").index(i), m.as_str()))
                .collect(),
            TargetKind::Docker(_) => Vec::new(),
        };
        for (file_path, relative) in referenced_files {
            if !has_expression(relative) && !pipeline.resolve_path(relative).is_file() {
                problems.push(at(
                    &file_path,
                    format!(
                        "file `{}` does not exist",
                        pipeline.resolve_path(relative).display()
                    ),
                ));
            }
        }
    }
    if let Some(aws) = &file.aws {
        let base = root.key("aws");
        problems.extend(
            aws.problems()
                .into_iter()
                .map(|problem| at(&base.join_relative(&problem.path), format!("aws.{problem}"))),
        );
    }
    for (index, name) in file.secrets.iter().enumerate() {
        if !is_env_name(name) {
            problems.push(at(
                &root.key("secrets").index(index),
                format!("secrets[{index}]: `{name}` is not an environment variable name"),
            ));
        }
    }
    problems.extend(find_cycle(pipeline));
    problems.extend(check_expressions(pipeline));
    problems.sort_by_key(|d| d.location);
    problems
}

fn check_expressions(pipeline: &Pipeline) -> Vec<Diagnostic> {
    let vars: BTreeSet<String> = pipeline
        .file
        .vars
        .keys()
        .chain(
            pipeline
                .file
                .environments
                .values()
                .flat_map(|e| e.vars.keys()),
        )
        .cloned()
        .collect();
    let has_var = |n: &str| vars.contains(n);
    let has_image = |n: &str| pipeline.file.images.contains_key(n);
    let root = DocPath::root();
    let sections = [
        ("vars", Scope::Vars),
        ("environments", Scope::Vars),
        ("images", Scope::Image),
        ("deploy", Scope::Deploy),
        // Resolved when the run starts, with what a build stage may use.
        ("aws", Scope::Image),
    ];
    let mut problems = Vec::new();
    for (section, scope) in sections {
        let Some(value) = pipeline.document.value.get(section) else {
            continue;
        };
        let mut found = Vec::new();
        references_in(value, &root.key(section), &mut found);
        for (path, reference) in found {
            let result = reference
                .map_err(|e| e.message)
                .and_then(|r| check_reference(&r, scope, &has_var, &has_image));
            if let Err(message) = result {
                problems.push(pipeline.diagnostic_at(&path, message));
            }
        }
    }
    for section in ["name", "version"] {
        if let Some(serde_json::Value::String(s)) = pipeline.document.value.get(section)
            && has_expression(s)
        {
            problems.push(pipeline.diagnostic_at(
                &root.key(section),
                format!("`{section}` cannot use ${{{{ … }}}} expressions"),
            ));
        }
    }
    problems
}

/// Finds one cycle among deploy targets' `needs`, reported at the `needs` entry that closes it.
fn find_cycle(pipeline: &Pipeline) -> Option<Diagnostic> {
    let deploy = &pipeline.file.deploy;
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        Visiting,
        Done,
    }
    let mut marks: BTreeMap<&str, Mark> = BTreeMap::new();
    for start in deploy.keys() {
        if marks.contains_key(start.as_str()) {
            continue;
        }
        // Iterative depth-first search: (node, index of the next need to follow), plus the path.
        let mut stack: Vec<(&str, usize)> = vec![(start.as_str(), 0)];
        marks.insert(start, Mark::Visiting);
        while let Some((node, next)) = stack.last().copied() {
            let needs = deploy.get(node).map(|t| &t.needs[..]).unwrap_or(&[]);
            if next >= needs.len() {
                marks.insert(node, Mark::Done);
                stack.pop();
                continue;
            }
            if let Some(top) = stack.last_mut() {
                top.1 += 1;
            }
            let need = needs[next].as_str();
            if !deploy.contains_key(need) || need == node {
                continue; // reported elsewhere
            }
            match marks.get(need) {
                Some(Mark::Visiting) => {
                    let mut cycle: Vec<&str> = stack
                        .iter()
                        .map(|(n, _)| *n)
                        .skip_while(|n| *n != need)
                        .collect();
                    cycle.push(need);
                    let path = DocPath::root()
                        .key("deploy")
                        .key(node)
                        .key("needs")
                        .index(next);
                    return Some(pipeline.diagnostic_at(
                        &path,
                        format!(
                            "deploy targets need each other in a cycle: {}",
                            cycle.join(" → ")
                        ),
                    ));
                }
                Some(Mark::Done) => {}
                None => {
                    marks.insert(need, Mark::Visiting);
                    stack.push((need, 0));
                }
            }
        }
    }
    None
}

fn has_expression(text: &str) -> bool {
    text.contains("${{")
}

/// An environment variable name as a shell takes it (`secrets:` entries, the variable an ID
/// token is read from).
pub(super) fn is_env_name(name: &str) -> bool {
    name.chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

pub(crate) fn is_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric())
}

/// Each image a deploy target names, with where the file names it: `image`, and the values of
/// an ECS or EKS target's `containers`.
fn deployed_images<'a>(path: &DocPath, target: &'a DeployTarget) -> Vec<(DocPath, &'a str)> {
    let mut images = vec![(path.key("image"), target.image.as_str())];
    let containers = path.key(target.kind.key()).key("containers");
    for (container, image) in target.other_containers() {
        images.push((containers.key(container.clone()), image.as_str()));
    }
    images
}
