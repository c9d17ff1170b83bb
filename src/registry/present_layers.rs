//! Which of an image's layers the registry already holds, before anything is read: the layer
//! cache's guess, confirmed by a HEAD or a cross-repository mount.

use std::collections::{HashMap, HashSet};

use futures::{StreamExt as _, TryStreamExt as _};

use super::layer_cache::{CachedLayer, LayerCache};
use super::push_config::Compression;
use super::push_error::PushError;
use super::push_progress::Notify;
use super::registry_session::RegistrySession;

/// Concurrent HEAD checks of cached layers.
const CHECK_CONCURRENCY: usize = 8;

/// Which of the image's layers the registry already has, per the cache and a HEAD (or a mount
/// from a repository the cache saw the blob in), said to `notify` when there are any.
pub(crate) async fn find_present_layers(
    session: &RegistrySession,
    cache: &LayerCache,
    diff_ids: &[String],
    compression: Compression,
    notify: &Notify,
) -> Result<HashMap<String, CachedLayer>, PushError> {
    let unique: HashSet<&String> = diff_ids.iter().collect();
    let layer_count = unique.len();
    let candidates: Vec<(String, CachedLayer)> = unique
        .into_iter()
        .filter_map(|diff_id| {
            cache
                .layer(&session.host, compression, diff_id)
                .map(|c| (diff_id.clone(), c.clone()))
        })
        .collect();
    let checks = futures::stream::iter(candidates)
        .map(|(diff_id, cached)| async move {
            if session.blob_exists(&cached.digest).await? {
                return Ok::<_, PushError>(Some((diff_id, cached)));
            }
            for repository in cached.repositories.iter().take(3) {
                if session.mount_blob(&cached.digest, repository).await {
                    return Ok(Some((diff_id, cached)));
                }
            }
            Ok(None)
        })
        .buffer_unordered(CHECK_CONCURRENCY)
        .try_collect::<Vec<_>>()
        .await?;
    let present: HashMap<String, CachedLayer> = checks.into_iter().flatten().collect();
    if !present.is_empty() {
        notify(format!(
            "{} of {layer_count} layers already in {}",
            present.len(),
            session.host
        ));
    }
    Ok(present)
}
