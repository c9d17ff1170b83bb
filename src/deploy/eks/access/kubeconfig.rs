//! Reaching a cluster through a kubeconfig: the target's file (relative to the pipeline file)
//! or `KUBECONFIG` / `~/.kube/config`, and the target's context or the current one. Everything
//! a kubeconfig can say of authentication (exec plugins, client certificates, tokens) is kube's
//! to do; shipit chooses the context and explains what is missing.

use std::path::{Path, PathBuf};

use kube::config::{KubeConfigOptions, Kubeconfig, KubeconfigError};

use super::ClusterAccess;
use crate::deploy::eks::EksDeployError;
use crate::pipeline::model::EksTarget;

/// Where the kubeconfig came from, as messages name it.
enum Source {
    File(PathBuf),
    Environment,
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::File(path) => write!(f, "the kubeconfig {}", path.display()),
            Source::Environment => match std::env::var_os("KUBECONFIG") {
                Some(paths) if !paths.is_empty() => {
                    write!(
                        f,
                        "the kubeconfig KUBECONFIG names ({})",
                        paths.to_string_lossy()
                    )
                }
                _ => f.write_str("the kubeconfig ~/.kube/config"),
            },
        }
    }
}

/// What went wrong reading or using the kubeconfig, without quoting its content (which may
/// hold tokens and keys).
fn kubeconfig_error(source: &Source, err: KubeconfigError) -> EksDeployError {
    let message = match err {
        KubeconfigError::ReadConfig(io, path) => {
            format!("cannot read the kubeconfig {}: {io}", path.display())
        }
        KubeconfigError::FindPath => {
            "there is no kubeconfig: no `eks.kubeconfig`, no KUBECONFIG and no home directory"
                .to_owned()
        }
        KubeconfigError::Parse(err) => match err.location() {
            Some(at) => format!(
                "{source} is not a valid kubeconfig (line {}, column {})",
                at.line(),
                at.column()
            ),
            None => format!("{source} is not a valid kubeconfig"),
        },
        KubeconfigError::LoadClusterOfContext(cluster) => {
            format!("{source} has no cluster `{cluster}`, which the chosen context names")
        }
        other => format!("{source} cannot be used: {other}"),
    };
    EksDeployError::config(message)
}

fn read(target: &EksTarget, base_dir: &Path) -> Result<(Kubeconfig, Source), EksDeployError> {
    let source = match &target.kubeconfig {
        Some(file) => Source::File(base_dir.join(file)),
        None => Source::Environment,
    };
    let read = match &source {
        Source::File(path) => Kubeconfig::read_from(path),
        Source::Environment => Kubeconfig::read(),
    };
    match read {
        Ok(kubeconfig) => Ok((kubeconfig, source)),
        Err(err) => Err(kubeconfig_error(&source, err)),
    }
}

/// The context to use: the target's, else the file's current context; either must exist.
fn chosen_context(
    kubeconfig: &Kubeconfig,
    wanted: Option<&str>,
    source: &Source,
) -> Result<String, EksDeployError> {
    let names: Vec<&str> = kubeconfig
        .contexts
        .iter()
        .map(|context| context.name.as_str())
        .collect();
    let listed = if names.is_empty() {
        "it has no contexts".to_owned()
    } else {
        format!("its contexts: {}", names.join(", "))
    };
    let name = match wanted.or(kubeconfig.current_context.as_deref()) {
        Some(name) => name,
        None => {
            return Err(EksDeployError::config(format!(
                "{source} has no current context and the target names none; {listed}"
            ))
            .with_hint("set `eks.context` in the deploy target"));
        }
    };
    if !names.contains(&name) {
        let whose = if wanted.is_some() {
            "`eks.context`"
        } else {
            "its current context"
        };
        return Err(EksDeployError::config(format!(
            "{source} has no context `{name}` ({whose}); {listed}"
        ))
        .with_hint("set `eks.context` to one of the file's contexts"));
    }
    Ok(name.to_owned())
}

/// A client of the kubeconfig's cluster; `cluster` in the result is the context's name.
pub(crate) async fn kubeconfig_access(
    target: &EksTarget,
    base_dir: &Path,
) -> Result<ClusterAccess, EksDeployError> {
    let (kubeconfig, source) = read(target, base_dir)?;
    let context = chosen_context(&kubeconfig, target.context.as_deref(), &source)?;
    let options = KubeConfigOptions {
        context: Some(context.clone()),
        ..KubeConfigOptions::default()
    };
    let mut config = kube::Config::from_custom_kubeconfig(kubeconfig, &options)
        .await
        .map_err(|err| kubeconfig_error(&source, err))?;
    // The pipeline's namespace, not the context's: manifests deploy where the file says.
    config.default_namespace = target.namespace.clone();
    crate::docker::connect::install_crypto_provider();
    let client = kube::Client::try_from(config).map_err(|err| {
        EksDeployError::config(format!(
            "cannot make a client of the context `{context}` of {source}: {err}"
        ))
    })?;
    Ok(ClusterAccess {
        client,
        cluster: context,
        default_namespace: target.namespace.clone(),
    })
}
