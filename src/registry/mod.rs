//! The registry adapter: pushes an image from the Docker daemon (or an image archive) to Amazon
//! ECR or any OCI registry over the distribution protocol, and checks whether a pushed manifest
//! is still there. It reads images through `crate::docker::image_source` and gets credentials
//! from `crate::credentials`.
//!
//! Files, in the order a push meets them: `push_config` (the `push:` block), `push_source`
//! (the image and where it is read from), `push_target` (the registry and its credentials),
//! `ecr_repository` (repository settings), `registry_session` (the wire), `present_layers`
//! (what the registry already holds), `image_reading` (which layers are read, and from where),
//! `reading_passes` + `blob_uploads` (a pass and the uploads beside it), `export_packing` +
//! `store_packing` + `pass_result` (what a pass makes of each layer), `layer_packer` +
//! `parallel_gzip` (turning layers into blobs), `layer_assembly` (the manifest's layers),
//! `manifest` + `manifest_publish` (the manifest, its tags, its check), `ecr_rules` (immutable
//! tags, the scan gate), `layer_cache` + `push_workspace` (what earlier pushes learned),
//! `push_progress` (what the observer hears), `image_push` (the sequence), `retry` and
//! `registry_failure` (what a failure means and when to try again), `push_error`.

mod blob_uploads;
mod ecr_repository;
mod ecr_rules;
mod export_packing;
mod image_push;
mod image_reading;
mod layer_assembly;
mod layer_cache;
mod layer_packer;
mod manifest;
mod manifest_publish;
mod parallel_gzip;
mod pass_result;
mod present_layers;
mod push_config;
mod push_error;
mod push_progress;
mod push_source;
mod push_target;
mod push_workspace;
mod reading_passes;
mod registry_failure;
mod registry_session;
mod retry;
mod store_packing;

pub use image_push::{
    PushObserver, PushedImage, manifest_exists, push_archive, push_image, tag_digests,
};
pub use push_config::{
    Compression, EcrSettings, HumanDuration, InvalidPushConfig, InvalidPushValue, LayerSource,
    LifecycleSettings, ManifestFormat, PushConfig, ScanGate, Severity,
};
pub use push_error::PushError;

pub use crate::credentials::aws::AwsIdentity;
