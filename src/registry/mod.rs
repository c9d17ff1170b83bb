//! The registry adapter: pushes an image from the Docker daemon (or an image archive) to Amazon
//! ECR or any OCI registry over the distribution protocol (oci-client), and checks whether a
//! pushed manifest is still there.
//!
//! Files, in the order a push meets them: `push_config` (the `push:` block), `ecr_auth` and
//! `docker_credentials` (credentials), `ecr_repository` (repository settings, scan gate),
//! `registry_session` (the wire), `layer_store` (the daemon's own copy of the layers, read
//! when it is on this machine), `archive_reader` + `image_layout` (the export, otherwise),
//! `layer_packer` + `parallel_gzip` (turning layers into blobs), `layer_cache` (what earlier
//! pushes learned), `image_push` (the orchestration), `retry` and `registry_failure` (what a
//! failure means and when to try again), `push_error`.

mod archive_reader;
mod ecr_repository;
mod image_layout;
mod image_push;
mod layer_cache;
mod layer_packer;
mod layer_store;
mod parallel_gzip;
mod push_config;
mod push_error;
mod push_progress;
mod push_target;
mod registry_failure;
mod registry_session;
mod retry;

pub use image_push::{PushObserver, PushedImage, manifest_exists, push_archive, push_image};
pub use push_config::{
    Compression, ConfigProblem, EcrSettings, HumanDuration, LayerSource, LifecycleSettings,
    ManifestFormat, PushConfig, ScanGate, Severity,
};
pub use push_error::PushError;
