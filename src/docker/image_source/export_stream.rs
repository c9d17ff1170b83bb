//! The Engine API's image export (`GET /images/{name}/get`, what `docker save` writes) as a
//! blocking reader, for a reading thread.

use std::io::Read;

use bollard::Docker;
use futures::StreamExt as _;
use tokio::sync::mpsc;

/// Chunks of the export buffered ahead of the reader (each up to a few hundred KB).
const EXPORT_CHUNKS_AHEAD: usize = 16;

/// The daemon's export stream broke; the text is bollard's.
#[derive(Debug, thiserror::Error)]
#[error("the Docker daemon's export stream failed: {0}")]
pub(crate) struct DaemonStreamError(String);

/// A blocking reader over the export of `image`. The daemon is asked for the export at once,
/// not at the first read: it writes the whole image out before it sends a byte (about a second
/// per 100 MB), and the caller can do other work meanwhile. Dropping the reader ends the
/// request. Must be called within a Tokio runtime; the reader must be read outside of it.
pub(crate) fn open_export(docker: &Docker, image: &str) -> Box<dyn Read + Send> {
    let (chunks, mut received) = mpsc::channel(EXPORT_CHUNKS_AHEAD);
    let mut export = docker.export_image(image);
    tokio::spawn(async move {
        loop {
            let item = tokio::select! {
                item = export.next() => item,
                // The reader is gone (done, stopped early, failed): stop the export.
                () = chunks.closed() => break,
            };
            let Some(item) = item else { break };
            let item =
                item.map_err(|err| std::io::Error::other(DaemonStreamError(err.to_string())));
            let failed = item.is_err();
            if chunks.send(item).await.is_err() || failed {
                break;
            }
        }
    });
    let stream = futures::stream::poll_fn(move |cx| received.poll_recv(cx));
    let reader = tokio_util::io::StreamReader::new(stream);
    Box::new(tokio_util::io::SyncIoBridge::new(reader))
}
