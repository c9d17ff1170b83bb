//! The `push:<image>` stage: uploads the built image from the daemon to ECR or an OCI registry
//! (`crate::registry`) and records the manifest digest that deploys pin.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde_json::{Value, json};

use super::docker_daemon::{DaemonConnection, with_causes};
use super::{Outputs, StageContext, StageExecutor, StageFailure, StageInput, StageSink};
use crate::pipeline::model::ImageSpec;
use crate::pipeline::{DocPath, deserialize_at};
use crate::plan::StageId;
use crate::registry::{self, PushConfig, PushError, PushObserver};

pub struct PushStage {
    pub daemon: Arc<DaemonConnection>,
    /// The state folder (`.shipit`): the layer cache lives under `cache/registry`.
    pub state_dir: PathBuf,
}

fn push_config(input: &StageInput<'_>) -> Result<PushConfig, StageFailure> {
    let path = DocPath::root().key("images").key(input.id.name.clone());
    let spec: ImageSpec = deserialize_at(
        &input.pipeline.source,
        &input.pipeline.document,
        input.config,
        &path,
    )
    .map_err(|d| StageFailure::failed(d.to_string()))?;
    spec.push
        .ok_or_else(|| StageFailure::failed(format!("images.{} has no push: block", input.id.name)))
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
    async fn fingerprint(&self, _: &StageInput<'_>) -> Result<Value, StageFailure> {
        // The resolved push block and the build's image id (an upstream output) say everything.
        Ok(Value::Null)
    }

    async fn outputs_exist(
        &self,
        input: &StageInput<'_>,
        outputs: &Outputs,
    ) -> Result<bool, StageFailure> {
        let Some(digest) = outputs.get("digest").and_then(Value::as_str) else {
            return Ok(false);
        };
        let config = push_config(input)?;
        registry::manifest_exists(&config, digest)
            .await
            .map_err(failure)
    }

    async fn run(
        &self,
        input: &StageInput<'_>,
        context: &StageContext<'_>,
    ) -> Result<(), StageFailure> {
        let config = push_config(input)?;
        let build = StageId::build(&input.id.name);
        let image_id = input
            .upstream
            .get(&build)
            .and_then(|o| o.get("image_id"))
            .and_then(Value::as_str)
            .ok_or_else(|| {
                StageFailure::failed(format!(
                    "{} has no image to push: {build} recorded no image id",
                    input.id
                ))
            })?
            .to_owned();
        let docker = self.daemon.get().await?.bollard();
        let cache_dir = self.state_dir.join("cache/registry");
        let observer = Progress {
            sink: context.sink,
            last_bytes: Mutex::new(None),
        };
        let pushed = registry::push_image(
            docker,
            &image_id,
            &config,
            &cache_dir,
            &observer,
            context.cancel.clone(),
        )
        .await
        .map_err(failure)?;
        let pinned = pushed.refs.first().cloned().unwrap_or_default();
        // All at once: one journal write instead of one per output.
        context.sink.outputs(vec![
            ("digest", json!(pushed.digest)),
            ("ref", json!(pinned)),
            ("registry", json!(pushed.registry)),
            ("repository", json!(pushed.repository)),
            ("size", json!(pushed.size)),
            ("refs", json!(pushed.refs)),
            // Deploy stages that run the image locally need the daemon's id too.
            ("image_id", json!(image_id)),
        ])?;
        Ok(())
    }
}
