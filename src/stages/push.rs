//! The `push:<image>` stage: uploads the built image from the daemon to ECR or an OCI registry
//! (`crate::registry`) and records the manifest digest that deploys pin.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde_json::Value;

use super::docker_daemon::{DaemonConnection, with_causes};
use super::{
    BuiltImage, Outputs, PreviewInput, PushedImage, StageContext, StageExecutor, StageFailure,
    StageInput, StageOutputs, StageSink,
};
use crate::plan::StageId;
use crate::registry::{self, PushError, PushObserver};

pub struct PushStage {
    pub daemon: Arc<DaemonConnection>,
    /// The state folder (`.shipit`): the layer cache lives under `cache/registry`.
    pub state_dir: PathBuf,
}

fn failure(err: PushError) -> StageFailure {
    match err {
        PushError::Cancelled { .. } => StageFailure::interrupted(),
        other => StageFailure::failed(with_causes(&other)),
    }
}

/// Byte progress, at most every second: the renderers throttle too, but formatting a line per
/// chunk would be waste.
struct Progress<'a> {
    sink: &'a dyn StageSink,
    last_bytes: Mutex<Option<Instant>>,
}

impl PushObserver for Progress<'_> {
    fn on_progress(&self, message: &str) {
        self.sink.progress(message);
    }

    fn on_bytes(&self, done: u64, total: u64) {
        let mut last = self.last_bytes.lock().unwrap_or_else(|e| e.into_inner());
        if last.is_some_and(|t| t.elapsed() < Duration::from_secs(1)) {
            return;
        }
        *last = Some(Instant::now());
        let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
        self.sink.progress(&format!(
            "read {:.0} of ~{:.0} MiB of layers",
            mib(done),
            mib(total)
        ));
    }
}

#[async_trait]
impl StageExecutor for PushStage {
    /// Which tags the push moves: where each points now, or that it is new.
    async fn preview(&self, input: &PreviewInput<'_>) -> Vec<String> {
        let Ok(config) = input.config.push() else {
            return Vec::new();
        };
        let aws = input.aws;
        if config.tags.is_empty() {
            return vec!["pushes by digest only (no tags)".to_owned()];
        }
        match registry::tag_digests(config, aws, &config.tags).await {
            Ok(found) => vec![tags_text(&found)],
            Err(err) => vec![format!("cannot look up the tags: {}", with_causes(&err))],
        }
    }

    async fn fingerprint(&self, _: &StageInput<'_>) -> Result<Value, StageFailure> {
        // The resolved push block and the build's image id (an upstream output) say everything.
        Ok(Value::Null)
    }

    async fn outputs_exist(
        &self,
        input: &StageInput<'_>,
        outputs: &Outputs,
    ) -> Result<bool, StageFailure> {
        let Some(pushed) = PushedImage::from_outputs(outputs) else {
            return Ok(false);
        };
        registry::manifest_exists(input.config.push()?, input.aws, &pushed.digest)
            .await
            .map_err(failure)
    }

    async fn run(
        &self,
        input: &StageInput<'_>,
        context: &StageContext<'_>,
    ) -> Result<(), StageFailure> {
        let config = input.config.push()?;
        let build = StageId::build(&input.id.name);
        let image_id = input
            .upstream
            .get(&build)
            .and_then(BuiltImage::from_outputs)
            .ok_or_else(|| {
                StageFailure::failed(format!(
                    "{} has no image to push: {build} recorded no image id",
                    input.id
                ))
            })?
            .image_id;
        let docker = self.daemon.get().await?.bollard();
        let cache_dir = self.state_dir.join("cache/registry");
        let observer = Progress {
            sink: context.sink,
            last_bytes: Mutex::new(None),
        };
        let pushed = registry::push_image(
            docker,
            &image_id,
            config,
            input.aws,
            &cache_dir,
            &observer,
            context.cancel.clone(),
        )
        .await
        .map_err(failure)?;
        // All at once: one journal write instead of one per output.
        context
            .record(&PushedImage {
                digest: pushed.digest,
                reference: pushed.refs.first().cloned().unwrap_or_default(),
                registry: pushed.registry,
                repository: pushed.repository,
                size: pushed.size,
                refs: pushed.refs,
                image_id,
            })
            .await?;
        Ok(())
    }
}

/// `tags: latest moves from sha256:0123abcd4567, 3f2a9c1 is new`.
fn tags_text(found: &[(String, Option<Option<String>>)]) -> String {
    let tags: Vec<String> = found
        .iter()
        .map(|(tag, now)| match now {
            Some(Some(digest)) => {
                let short: String = digest.chars().take("sha256:".len() + 12).collect();
                format!("{tag} moves from {short}")
            }
            Some(None) => format!("{tag} moves (the registry names no digest for it)"),
            None => format!("{tag} is new"),
        })
        .collect();
    format!("tags: {}", tags.join(", "))
}
