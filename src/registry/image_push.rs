//! The push itself: read → pack → upload → manifest → tags → verify, with layer reuse.
//!
//! Before reading anything, the layer cache says which of the image's layers the registry
//! should already hold, and a HEAD (or a cross-repository mount) confirms it (`present_layers`).
//! The other layers are then read on a blocking thread (`image_reading`), compressed on every
//! core, and each finished blob is handed to up to four concurrent uploads while reading goes
//! on (`reading_passes`, `blob_uploads`). Only then are the config and the manifest pushed,
//! every tag pointed at the manifest, and the manifest fetched back to check its digest
//! (`manifest_publish`); an ECR push also meets ECR's own rules (`ecr_rules`).

use std::path::Path;
use std::sync::Arc;

use bollard::Docker;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use super::ecr_rules::enforce_scan_gate;
use super::image_reading::read_image;
use super::manifest_publish::publish_manifest;
use super::present_layers::find_present_layers;
use super::push_config::PushConfig;
use super::push_error::PushError;
use super::push_progress::{Notify, PushProgress};
use super::push_source::PushSource;
use super::push_target::{RepositorySettings, open_target};
use super::push_workspace::Workspace;
use super::reading_passes::Passes;
use crate::credentials::aws::AwsIdentity;

/// Hears about a push while it runs.
pub trait PushObserver: Send + Sync {
    /// A line worth showing: a layer uploaded, a retry, a repository created.
    fn on_progress(&self, message: &str);
    /// Bytes of the image's layers read so far, of about `total`.
    fn on_bytes(&self, done: u64, total: u64);
}

/// What a push produced, for the journal and the deploy stages.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PushedImage {
    /// The registry host pushed to.
    pub registry: String,
    pub repository: String,
    /// Digest of the manifest.
    pub digest: String,
    /// Bytes stored in the registry: manifest, config and compressed layers.
    pub size: u64,
    /// `host/repository@digest`, then `host/repository:tag` for every tag.
    pub refs: Vec<String>,
}

/// Pushes an image from the Docker daemon (by id or name) to the registry `cfg` names; ECR
/// is signed in to as `identity`. `cache_dir` keeps the layer cache and, while the push runs,
/// its spool files.
pub async fn push_image(
    docker: &Docker,
    image: &str,
    cfg: &PushConfig,
    identity: &AwsIdentity,
    cache_dir: &Path,
    observer: &dyn PushObserver,
    cancel: CancellationToken,
) -> Result<PushedImage, PushError> {
    cfg.validate()?;
    let source = PushSource::daemon(docker, image, cfg.layer_source, observer).await?;
    push_from(source, cfg, identity, cache_dir, observer, cancel).await
}

/// Pushes an image archive file: the output of `docker save`, or an OCI image layout archive
/// (`skopeo copy … oci-archive:FILE`, `docker save` of Docker 25+).
pub async fn push_archive(
    archive: &Path,
    cfg: &PushConfig,
    identity: &AwsIdentity,
    cache_dir: &Path,
    observer: &dyn PushObserver,
    cancel: CancellationToken,
) -> Result<PushedImage, PushError> {
    cfg.validate()?;
    let source = PushSource::archive(archive).await?;
    push_from(source, cfg, identity, cache_dir, observer, cancel).await
}

/// Whether the registry `cfg` names still holds the manifest `digest` (to skip a rerun's push).
pub async fn manifest_exists(
    cfg: &PushConfig,
    identity: &AwsIdentity,
    digest: &str,
) -> Result<bool, PushError> {
    cfg.validate()?;
    let cancel = CancellationToken::new();
    let notify: Notify = Arc::new(|_| {});
    let target = open_target(cfg, identity, &cancel, notify, RepositorySettings::Leave).await?;
    target.session.manifest_exists(digest).await
}

/// Where each of `tags` points in the registry `cfg` names now: a digest, `Some(None)` for a
/// tag whose digest the registry does not report, `None` for a tag it does not have. Touches
/// nothing (no repository is created or set up).
pub async fn tag_digests(
    cfg: &PushConfig,
    identity: &AwsIdentity,
    tags: &[String],
) -> Result<Vec<(String, Option<Option<String>>)>, PushError> {
    cfg.validate()?;
    let cancel = CancellationToken::new();
    let notify: Notify = Arc::new(|_| {});
    let target = open_target(cfg, identity, &cancel, notify, RepositorySettings::Leave).await?;
    let mut found = Vec::with_capacity(tags.len());
    for tag in tags {
        found.push((tag.clone(), target.session.tag_digest(tag).await?));
    }
    Ok(found)
}

async fn push_from(
    source: PushSource,
    cfg: &PushConfig,
    identity: &AwsIdentity,
    cache_dir: &Path,
    observer: &dyn PushObserver,
    cancel: CancellationToken,
) -> Result<PushedImage, PushError> {
    let (progress, lines) = PushProgress::new(source.total_bytes);
    let notify = progress.notify();
    let cancel = cancel.child_token();
    let push = async {
        let early_export = source.open_export_early()?;
        let target = open_target(
            cfg,
            identity,
            &cancel,
            notify.clone(),
            RepositorySettings::Apply,
        )
        .await?;
        let session = &target.session;
        let mut workspace = Workspace::open(cache_dir, &notify)?;
        let present = find_present_layers(
            session,
            &workspace.cache,
            &source.diff_ids,
            cfg.compression,
            &notify,
        )
        .await?;
        let passes = Passes::new(&source, session, &workspace, cfg, &progress, &cancel);
        let read = read_image(
            &passes,
            cfg,
            &workspace.cache,
            &present,
            early_export,
            &progress.total,
        )
        .await?;
        let manifest = publish_manifest(&target, cfg, &read.image, &read.layers, &notify).await?;
        workspace.remember(
            &session.host,
            &cfg.repository,
            &read.layers,
            read.outcomes,
            &notify,
        );
        enforce_scan_gate(&target, cfg, &manifest.digest, &cancel, &notify).await?;
        Ok(pushed_image(
            session.host.clone(),
            cfg,
            manifest.digest,
            manifest.size,
        ))
    };
    progress.drive(lines, observer, push).await
}

/// The push's result, with every reference to it: by digest first, then by each tag.
fn pushed_image(registry: String, cfg: &PushConfig, digest: String, size: u64) -> PushedImage {
    let repository = cfg.repository.clone();
    let mut refs = vec![format!("{registry}/{repository}@{digest}")];
    refs.extend(
        cfg.tags
            .iter()
            .map(|tag| format!("{registry}/{repository}:{tag}")),
    );
    PushedImage {
        registry,
        repository,
        digest,
        size,
        refs,
    }
}
