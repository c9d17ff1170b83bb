//! The uploads beside a reading pass: the blobs the reader hands over are uploaded several at
//! a time (or found in the registry, or mounted from another repository) while reading goes on.

use std::collections::HashMap;
use std::sync::Arc;

use futures::{StreamExt as _, TryStreamExt as _};
use tokio::sync::mpsc;

use super::layer_packer::SpooledBlob;
use super::pass_result::BlobSink;
use super::push_error::PushError;
use super::push_progress::{Notify, human_size, short};
use super::registry_session::RegistrySession;

/// Blobs uploaded at once. Four keeps a fast link busy without opening a burst of
/// connections that rate-limited registries answer with 429.
const UPLOAD_CONCURRENCY: usize = 4;

/// Hands blobs from the reader thread to the uploads, and answers its HEAD questions.
pub(crate) struct UploadSink {
    pub handle: tokio::runtime::Handle,
    pub session: Arc<RegistrySession>,
    pub blobs: mpsc::Sender<SpooledBlob>,
}

impl BlobSink for UploadSink {
    fn has_blob(&self, digest: &str) -> Result<bool, PushError> {
        self.handle.block_on(self.session.blob_exists(digest))
    }

    fn submit(&self, blob: SpooledBlob) -> Result<(), PushError> {
        self.blobs.blocking_send(blob).map_err(|returned| {
            let _ = std::fs::remove_file(&returned.0.path);
            // The uploads stopped; their own error is the one reported.
            PushError::Cancelled {
                registry: self.session.host.clone(),
                repository: self.session.repository.clone(),
            }
        })
    }
}

/// What happened to a blob handed to the uploads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BlobFate {
    AlreadyThere,
    Mounted,
    Uploaded,
}

async fn upload_one(
    session: &RegistrySession,
    blob: &SpooledBlob,
    mount_from: &[String],
) -> Result<BlobFate, PushError> {
    if session.blob_exists(&blob.digest).await? {
        return Ok(BlobFate::AlreadyThere);
    }
    for repository in mount_from.iter().take(3) {
        if session.mount_blob(&blob.digest, repository).await {
            return Ok(BlobFate::Mounted);
        }
    }
    session.upload_blob(blob).await?;
    Ok(BlobFate::Uploaded)
}

/// Runs the uploads for everything the reader submits, `UPLOAD_CONCURRENCY` at a time.
pub(crate) async fn run_uploads(
    session: Arc<RegistrySession>,
    mut blobs: mpsc::Receiver<SpooledBlob>,
    mount_sources: Arc<HashMap<String, Vec<String>>>,
    notify: Notify,
) -> Result<(), PushError> {
    let incoming = futures::stream::poll_fn(move |cx| blobs.poll_recv(cx));
    incoming
        .map(|blob| {
            let session = session.clone();
            let mount_sources = mount_sources.clone();
            let notify = notify.clone();
            async move {
                let mount_from = mount_sources.get(&blob.digest).cloned().unwrap_or_default();
                let fate = upload_one(&session, &blob, &mount_from).await;
                let _ = std::fs::remove_file(&blob.path);
                let fate = fate?;
                notify(match fate {
                    BlobFate::AlreadyThere => {
                        format!("blob {} already in the registry", short(&blob.digest))
                    }
                    BlobFate::Mounted => format!(
                        "blob {} mounted from another repository",
                        short(&blob.digest)
                    ),
                    BlobFate::Uploaded => format!(
                        "uploaded blob {} ({})",
                        short(&blob.digest),
                        human_size(blob.size)
                    ),
                });
                Ok::<_, PushError>(())
            }
        })
        .buffer_unordered(UPLOAD_CONCURRENCY)
        .try_collect::<Vec<()>>()
        .await
        .map(|_| ())
}
