//! The Docker adapter: connecting to the daemon, the build context, image builds.
//!
//! - [`connect`]: find the daemon like the docker CLI, ping it, negotiate the API.
//! - [`context`]: what is sent (`.dockerignore`), how (a streamed tar) and its digest.
//! - [`build`]: one image build with either builder, progress to an observer.
//! - `image_source`: an image's layers read back out of the daemon (its layer store, or the
//!   export) or out of an image archive, for a push.

pub mod build;
mod build_output;
pub mod connect;
pub mod context;
mod daemon_credentials;
pub(crate) mod image_source;
mod session;

pub use build::{
    BuildError, BuildObserver, BuildRequest, BuilderKind, BuiltImage, SecretValue, build_image,
};
pub use connect::{DaemonEndpoint, DockerClient, DockerError, connect, connect_to};
pub use context::{
    BuildContext, BuiltManifest, ContextChanges, ContextDigest, ContextError, ContextStateFiles,
    context_changes, digest_context, record_built_manifest,
};
pub use session::SessionError;
