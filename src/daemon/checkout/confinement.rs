//! A pushed pipeline file is untrusted input (ANCHORS §4.9): every path it names must resolve
//! inside the run's checkout, or a build could ship the daemon host's files into an image, or
//! a deploy read the host's kubeconfig. Refused: absolute paths, `..` leading out, symlinks
//! leading out (each path is canonicalized and compared with the canonical checkout root), and
//! `${{ }}` expressions in a path (their value is only known once the stage runs, after this
//! check).
//!
//! `named_paths` (which fields name files, and relative to what) and `lexical_escape` are pure;
//! `confine` adds the filesystem's say on symlinks.

use std::path::{Component, Path, PathBuf};

use crate::pipeline::Pipeline;
use crate::pipeline::model::{SecretSource, TargetKind};

/// A path the pipeline file names, with the field that names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NamedPath {
    /// `images.web.context`, `deploy.api.eks.manifests[0]`…
    pub field: String,
    /// The folder the path is relative to.
    pub base: PathBuf,
    pub path: String,
    /// A glob (`k8s/*.yaml`): every file it matches is checked too.
    pub glob: bool,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "the pipeline file's {field} names `{path}`, which {reason}: a daemon run reads files from its checkout only"
)]
pub(crate) struct Escape {
    pub field: String,
    pub path: String,
    pub reason: String,
}

/// Every path the pipeline file names, in file order.
pub(crate) fn named_paths(pipeline: &Pipeline) -> Vec<NamedPath> {
    let base = &pipeline.base_dir;
    let mut paths = Vec::new();
    let mut add = |field: String, base: &Path, path: &str, glob: bool| {
        paths.push(NamedPath {
            field,
            base: base.to_path_buf(),
            path: path.to_owned(),
            glob,
        })
    };
    for (name, image) in &pipeline.file.images {
        add(
            format!("images.{name}.context"),
            base,
            &image.context,
            false,
        );
        // The Dockerfile is relative to the context.
        let context = base.join(&image.context);
        add(
            format!("images.{name}.dockerfile"),
            &context,
            &image.dockerfile,
            false,
        );
        for (secret, source) in &image.secrets {
            if let SecretSource::File(file) = source {
                add(
                    format!("images.{name}.secrets.{secret}.file"),
                    base,
                    file,
                    false,
                );
            }
        }
    }
    for (name, target) in &pipeline.file.deploy {
        match &target.kind {
            TargetKind::Ecs(ecs) if ecs.task_definition != "current" => add(
                format!("deploy.{name}.ecs.task_definition"),
                base,
                &ecs.task_definition,
                false,
            ),
            TargetKind::Ecs(_) | TargetKind::Docker(_) => {}
            TargetKind::Eks(eks) => {
                if let Some(kubeconfig) = &eks.kubeconfig {
                    add(
                        format!("deploy.{name}.eks.kubeconfig"),
                        base,
                        kubeconfig,
                        false,
                    );
                }
                for (i, manifest) in eks.manifests.iter().enumerate() {
                    add(
                        format!("deploy.{name}.eks.manifests[{i}]"),
                        base,
                        manifest,
                        true,
                    );
                }
                let job = eks
                    .blue_green
                    .as_ref()
                    .and_then(|bg| bg.smoke_check.as_ref())
                    .and_then(|check| check.job.as_ref());
                if let Some(job) = job {
                    add(
                        format!("deploy.{name}.eks.blue_green.smoke_check.job"),
                        base,
                        job,
                        false,
                    );
                }
            }
        }
    }
    paths
}

/// Why `path` (relative to `base`) leaves `root` on paper, before any symlink is followed.
/// `base` and `root` are both lexically clean absolute paths, `base` inside `root`.
pub(crate) fn lexical_escape(root: &Path, base: &Path, path: &str) -> Option<String> {
    if path.contains("${{") {
        return Some("is an expression (a daemon run takes literal paths only)".to_owned());
    }
    let relative = Path::new(path);
    if relative.is_absolute() || path.starts_with('~') {
        return Some("is absolute".to_owned());
    }
    let mut resolved = base.to_path_buf();
    for component in relative.components() {
        match component {
            Component::Normal(part) => resolved.push(part),
            Component::CurDir => {}
            Component::ParentDir => {
                if !resolved.pop() || !resolved.starts_with(root) {
                    return Some("leads out of the checkout with `..`".to_owned());
                }
            }
            Component::RootDir | Component::Prefix(_) => return Some("is absolute".to_owned()),
        }
    }
    if resolved.starts_with(root) {
        None
    } else {
        Some("leads out of the checkout with `..`".to_owned())
    }
}

/// Checks every path `pipeline` names against the checkout at `root`; the first escape found
/// in file order. Paths that do not exist are left to the stage that reads them (it fails
/// naming the file); paths that exist are canonicalized, so a symlink leading out is caught,
/// and so is every file a glob matches.
pub(crate) fn confine(pipeline: &Pipeline, root: &Path) -> Result<(), Escape> {
    let root = root.canonicalize().map_err(|e| Escape {
        field: "checkout".to_owned(),
        path: root.display().to_string(),
        reason: format!("cannot be read ({e})"),
    })?;
    for named in named_paths(pipeline) {
        let escape = |reason: String| Escape {
            field: named.field.clone(),
            path: named.path.clone(),
            reason,
        };
        // The base is made canonical first, so that the lexical check compares like with like
        // (a temporary folder behind a symlink, as on macOS).
        let base = canonical_prefix(&named.base);
        if let Some(reason) = lexical_escape(&root, &base, &named.path) {
            return Err(escape(reason));
        }
        let candidates: Vec<PathBuf> = if named.glob {
            let pattern = base.join(&named.path);
            glob::glob(&pattern.to_string_lossy())
                .map(|matches| matches.filter_map(Result::ok).collect())
                .unwrap_or_default()
        } else {
            vec![base.join(&named.path)]
        };
        for candidate in candidates {
            if let Ok(real) = candidate.canonicalize()
                && !real.starts_with(&root)
            {
                return Err(escape(
                    "is a symlink leading out of the checkout".to_owned(),
                ));
            }
        }
    }
    Ok(())
}

/// `path` with its longest existing prefix canonicalized: symlinks in it resolved.
fn canonical_prefix(path: &Path) -> PathBuf {
    let mut rest = Vec::new();
    let mut current = path.to_path_buf();
    loop {
        if let Ok(real) = current.canonicalize() {
            return rest
                .into_iter()
                .rev()
                .fold(real, |acc, part| acc.join(part));
        }
        match (current.file_name().map(|n| n.to_owned()), current.parent()) {
            (Some(name), Some(parent)) => {
                rest.push(name);
                current = parent.to_path_buf();
            }
            _ => return path.to_path_buf(),
        }
    }
}

#[cfg(test)]
mod tests;
