//! The end of a push, once every layer is in the registry: the config uploaded, the manifest
//! put under each tag (or under its digest when there are none), and fetched back to check that
//! the registry serves exactly these bytes under this digest.

use super::ecr_rules::{immutable_tag_error, tags_to_push};
use super::layer_assembly::AssembledLayer;
use super::manifest::{BlobDescriptor, build_manifest, config_media_type, manifest_media_type};
use super::push_config::PushConfig;
use super::push_error::PushError;
use super::push_progress::{Notify, short};
use super::push_target::Target;
use super::registry_session::RegistrySession;
use crate::docker::image_source::archive_layout::SourceImage;
use crate::docker::image_source::digest::sha256_digest;

/// The manifest as pushed.
pub(crate) struct PublishedManifest {
    pub digest: String,
    /// Bytes stored in the registry: manifest, config and compressed layers.
    pub size: u64,
}

/// Uploads the config, pushes the manifest of `layers` under every tag and verifies it.
pub(crate) async fn publish_manifest(
    target: &Target,
    cfg: &PushConfig,
    image: &SourceImage,
    layers: &[AssembledLayer],
    notify: &Notify,
) -> Result<PublishedManifest, PushError> {
    let session = &target.session;
    // The config, as exported: its digest is the image id.
    if !session.blob_exists(&image.config_digest).await? {
        session
            .upload_bytes(&image.config, &image.config_digest)
            .await?;
    }
    let config = BlobDescriptor {
        media_type: config_media_type(cfg.format).to_string(),
        digest: image.config_digest.clone(),
        size: image.config.len() as u64,
    };
    let descriptors: Vec<BlobDescriptor> = layers.iter().map(|l| l.descriptor.clone()).collect();
    let manifest = build_manifest(cfg.format, &config, &descriptors);
    let digest = sha256_digest(&manifest);

    let tags = tags_to_push(target, cfg, &digest).await?;
    let media_type = manifest_media_type(cfg.format);
    if cfg.tags.is_empty() {
        session.push_manifest(&manifest, media_type, None).await?;
    }
    for tag in &tags {
        session
            .push_manifest(&manifest, media_type, Some(tag))
            .await
            .map_err(|err| immutable_tag_error(err, &session.host, &cfg.repository, tag))?;
    }
    notify(format!(
        "pushed manifest {}{}",
        short(&digest),
        if cfg.tags.is_empty() {
            String::new()
        } else {
            format!(" as {}", cfg.tags.join(", "))
        }
    ));
    verify_manifest(session, &digest, notify).await?;
    Ok(PublishedManifest {
        size: manifest.len() as u64 + config.size + descriptors.iter().map(|d| d.size).sum::<u64>(),
        digest,
    })
}

/// Reads the manifest back: the registry must serve exactly these bytes under this digest. A
/// push-only identity may not read; that skips the check rather than failing a push that
/// succeeded.
async fn verify_manifest(
    session: &RegistrySession,
    digest: &str,
    notify: &Notify,
) -> Result<(), PushError> {
    let mismatch = |reason: &str| PushError::Registry {
        registry: session.host.clone(),
        repository: session.repository.clone(),
        action: format!("verify manifest {digest}"),
        reason: reason.into(),
        attempts: 1,
    };
    match session.fetch_manifest(digest).await {
        Ok(Some(stored)) if sha256_digest(&stored) == digest => Ok(()),
        Ok(Some(_)) => Err(mismatch(
            "the registry serves different bytes under the manifest's digest",
        )),
        Ok(None) => Err(mismatch(
            "the registry accepted the manifest but does not serve it",
        )),
        Err(PushError::Authentication { .. }) => {
            notify(format!(
                "not allowed to read manifest {} back; skipped verifying it",
                short(digest)
            ));
            Ok(())
        }
        Err(err) => Err(err),
    }
}
