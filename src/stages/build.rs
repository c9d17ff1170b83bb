//! The `build:<image>` stage: builds the image through the Docker daemon (`crate::docker`),
//! tags it `<pipeline>-<image>:<input digest prefix>` and records its id, size and layers.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use serde_json::{Value, json};

use super::docker_daemon::{DaemonConnection, with_causes};
use super::{
    BuiltImage, FailureKind, Outputs, PreviewInput, StageContext, StageExecutor, StageFailure,
    StageInput, StageOutputs, StageSink,
};
use crate::docker::{
    self, BuildContext, BuildError, BuildObserver, BuildRequest, ContextStateFiles, SecretValue,
};
use crate::pipeline::Pipeline;
use crate::pipeline::model::{BuilderKind, ImageSpec, SecretUnavailable};

pub struct BuildStage {
    pub daemon: Arc<DaemonConnection>,
    /// The state folder (`.shipit`): the context stat caches live under `cache/`.
    pub state_dir: PathBuf,
}

/// The labels shipit adds to every image, from git. `created` is added at build time only: it
/// must not change the input digest.
fn provenance_labels(input: &StageInput<'_>) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    if let Some(sha) = input.values.git.get("sha") {
        labels.insert("org.opencontainers.image.revision".to_owned(), sha.clone());
    }
    if let Some(url) = input.values.git.get(crate::git::REMOTE_URL) {
        labels.insert("org.opencontainers.image.source".to_owned(), url.clone());
    }
    labels
}

fn open_context(input: &StageInput<'_>, spec: &ImageSpec) -> Result<BuildContext, StageFailure> {
    let dir = input.pipeline.resolve_path(&spec.context);
    BuildContext::open(&dir, Some(std::path::Path::new(&spec.dockerfile)))
        .map_err(|err| StageFailure::failed(with_causes(&err)))
}

/// The local tag: lowercase (image names must be), unique per input digest.
fn local_ref(input: &StageInput<'_>, input_digest: &str) -> String {
    let hex = input_digest.trim_start_matches("sha256:");
    format!(
        "{}-{}:{}",
        input.pipeline.file.name.to_lowercase(),
        input.id.name.to_lowercase(),
        &hex[..hex.len().min(12)]
    )
}

/// Reads each build secret's value. Values are never journaled, printed or hashed.
fn secret_values(
    input: &StageInput<'_>,
    spec: &ImageSpec,
) -> Result<BTreeMap<String, SecretValue>, StageFailure> {
    let mut secrets = BTreeMap::new();
    for (id, source) in &spec.secrets {
        let value = source
            .read(&input.pipeline.base_dir, &input.values.env)
            .map_err(|err| match &err {
                SecretUnavailable::UnsetVariable(var) => StageFailure::failed(format!(
                    "build secret `{id}` comes from environment variable {var}, which is not set"
                ))
                .with_hint(format!("export {var} before running shipit")),
                _ => StageFailure::failed(format!("build secret `{id}`: {err}")),
            })?;
        secrets.insert(id.clone(), SecretValue::new(value));
    }
    Ok(secrets)
}

struct Observer<'a>(&'a dyn StageSink);

impl BuildObserver for Observer<'_> {
    fn on_step(&self, step: &str) {
        self.0.progress(step);
    }

    fn on_output_line(&self, line: &str) {
        self.0.log(line);
    }
}

impl BuildStage {
    /// Where the image's context state lives: its stat cache and file manifests.
    fn context_files(&self, pipeline: &Pipeline, image: &str) -> ContextStateFiles {
        ContextStateFiles::new(&self.state_dir, &pipeline.file.name, image)
    }
}

#[async_trait]
impl StageExecutor for BuildStage {
    async fn preview(&self, input: &PreviewInput<'_>) -> Vec<String> {
        match docker::context_changes(&self.context_files(input.pipeline, &input.id.name)) {
            Some(changes) if !changes.is_empty() => {
                vec![format!("context changed: {}", changes.summary(3))]
            }
            Some(_) => Vec::new(),
            None => vec!["no earlier build of this image on record".to_owned()],
        }
    }

    async fn fingerprint(&self, input: &StageInput<'_>) -> Result<Value, StageFailure> {
        let spec = input.config.build()?;
        let context = open_context(input, spec)?;
        let cache = self
            .context_files(input.pipeline, &input.id.name)
            .stat_cache()
            .to_path_buf();
        if let Some(parent) = cache.parent() {
            let _ = std::fs::create_dir_all(parent);
        }
        // Hashing reads files: keep it off the async threads.
        let digest =
            tokio::task::spawn_blocking(move || docker::digest_context(&context, Some(&cache)))
                .await
                .map_err(|err| {
                    StageFailure::failed(format!("failed to digest the build context: {err}"))
                })?
                .map_err(|err| StageFailure::failed(with_causes(&err)))?;
        // Secret *names and sources* matter; their values never enter the digest.
        let secrets: BTreeMap<&String, String> = spec
            .secrets
            .iter()
            .map(|(id, source)| (id, format!("{source:?}")))
            .collect();
        Ok(json!({
            "context": digest.digest,
            "labels": provenance_labels(input),
            "secrets": secrets,
        }))
    }

    async fn outputs_exist(
        &self,
        _: &StageInput<'_>,
        outputs: &Outputs,
    ) -> Result<bool, StageFailure> {
        let Some(built) = BuiltImage::from_outputs(outputs) else {
            return Ok(false);
        };
        let client = self.daemon.get().await?;
        client
            .image_exists(&built.image_id)
            .await
            .map_err(|err| StageFailure::failed(with_causes(&err)))
    }

    async fn run(
        &self,
        input: &StageInput<'_>,
        context: &StageContext<'_>,
    ) -> Result<(), StageFailure> {
        let spec = input.config.build()?;
        let client = self.daemon.get().await?;
        context.sink.log(&format!(
            "docker daemon {} (API {}) at {}",
            client.server_version(),
            client.api_version(),
            client.endpoint()
        ));
        let mut labels = spec.labels.clone();
        for (key, value) in provenance_labels(input) {
            labels.entry(key).or_insert(value);
        }
        labels.insert(
            "org.opencontainers.image.created".to_owned(),
            chrono::Utc::now().to_rfc3339(),
        );
        let input_digest = context.input_digest.clone();
        let tag = local_ref(input, &input_digest);
        let mut request = BuildRequest::new(input.pipeline.resolve_path(&spec.context));
        request.dockerfile = Some(PathBuf::from(&spec.dockerfile));
        request.target = spec.target.clone();
        request.build_args = spec.args.clone();
        request.labels = labels;
        request.platform = spec.platform.clone();
        request.no_cache = spec.no_cache;
        request.pull = spec.pull;
        request.cache_from = spec.cache_from.clone();
        request.secrets = secret_values(input, spec)?;
        request.builder = match spec.builder {
            BuilderKind::Auto => docker::BuilderKind::Auto,
            BuilderKind::Buildkit => docker::BuilderKind::BuildKit,
            BuilderKind::Classic => docker::BuilderKind::Classic,
        };
        request.tags = vec![tag.clone()];
        request.aws_identity = input.aws.clone();
        let built = docker::build_image(
            client,
            &request,
            &Observer(context.sink),
            context.cancel.clone(),
        )
        .await
        .map_err(|err| match err {
            BuildError::Cancelled => StageFailure::interrupted(),
            other => StageFailure {
                kind: FailureKind::Failed,
                message: with_causes(&other),
                hint: None,
            },
        })?;
        context
            .record(&BuiltImage {
                image_id: built.id,
                local_ref: tag,
                size: Some(built.size),
                layers: built.layer_diff_ids,
                builder: Some(format!("{:?}", built.builder).to_lowercase()),
            })
            .await?;
        // What this build's context held, so `shipit plan` can say which files changed since.
        // Losing it costs only that line of the plan.
        if let Some(context_digest) = context.fingerprint["context"].as_str() {
            let files = self.context_files(input.pipeline, &input.id.name);
            if let Err(err) = docker::record_built_manifest(&files, context_digest) {
                context
                    .sink
                    .log(&format!("not recorded for `shipit plan`: {err}"));
            }
        }
        Ok(())
    }
}
