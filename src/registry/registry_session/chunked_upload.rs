//! A large blob's upload in `CHUNK_SIZE` PATCHes that survives interruptions: after one, the
//! registry is asked how far it got (`GET` on the upload → `Range`) and the upload continues
//! from there, or starts again when the registry lost it (404) or disputes the offset (416).
//! ECR's deviations are allowed for: it answers a PATCH with 201, and its `Range` after a PATCH
//! lags, so a chunk's success is read from the status alone.

use std::path::Path;
use std::sync::Arc;

use reqwest::header;
use reqwest::{Method, StatusCode, Url};

use super::RegistrySession;
use super::http::{Body, Request, expect, failure_of, header_text, location_of};
use crate::registry::layer_packer::SpooledBlob;
use crate::registry::push_error::PushError;
use crate::registry::push_progress::short;
use crate::registry::registry_failure::{FailureKind, RegistryFailure};
use crate::registry::retry::{Backoff, Decision, RetryNote, Retryable, sleep_or_cancel};

/// Bytes per PATCH of a chunked upload: what an interruption costs at most. ECR wants every
/// chunk but the last to be at least 5 MiB.
const CHUNK_SIZE: u64 = 16 * 1024 * 1024;

/// How many bytes an upload's `Range` header (`0-1023`, or `bytes=0-1023`) says the registry
/// holds. `0-0` is what a registry says for an empty upload. None when unreadable. Pure.
pub(crate) fn acknowledged_bytes(range: &str) -> Option<u64> {
    let range = range.trim();
    let range = range.strip_prefix("bytes=").unwrap_or(range);
    let (start, end) = range.split_once('-')?;
    if start.trim() != "0" {
        return None;
    }
    let end: u64 = end.trim().parse().ok()?;
    Some(if end == 0 { 0 } else { end + 1 })
}

/// The next chunk of a chunked upload: `(start, length)`, or None when all is sent. Pure.
pub(crate) fn next_chunk(offset: u64, size: u64, chunk_size: u64) -> Option<(u64, u64)> {
    (offset < size).then(|| (offset, chunk_size.min(size - offset)))
}

/// Where a chunked upload stands.
#[derive(Debug, Clone)]
struct UploadCursor {
    pub(super) location: Url,
    /// Bytes the registry took.
    pub(super) offset: u64,
    /// Whether the offset came from the registry's status after an interruption.
    resumed: bool,
}

/// What the answer to a chunk's PATCH means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ChunkVerdict {
    /// The chunk is stored: go on after it. Any 2xx: the spec says 202, ECR answers 201. The
    /// answer's `Range` is not read: ECR's stays at the first chunk's end.
    Taken,
    /// 416: the registry's idea of the offset differs from shipit's.
    OffsetDisputed,
    Failed,
}

/// Judges a chunk's PATCH answer by its status. Pure.
pub(crate) fn judge_chunk(status: u16) -> ChunkVerdict {
    match status {
        200..=299 => ChunkVerdict::Taken,
        416 => ChunkVerdict::OffsetDisputed,
        _ => ChunkVerdict::Failed,
    }
}

/// A 404 in the middle of a chunked upload means the registry dropped the upload session (it
/// expired, or the registry restarted): the next try asks for its status and starts again.
fn lost_upload_is_transient(mut failure: RegistryFailure) -> RegistryFailure {
    if failure.kind == FailureKind::NotFound {
        failure.retry = Retryable::Transient { retry_after: None };
        failure.kind = FailureKind::Other;
    }
    failure
}

impl RegistrySession {
    /// A chunked upload that survives interruptions: after a failure the registry is asked how
    /// much it holds and the upload goes on from there; progress starts a fresh run of tries.
    pub(super) async fn upload_chunked(
        &self,
        blob: &SpooledBlob,
        path: Arc<Path>,
    ) -> Result<(), PushError> {
        let action = format!("upload blob {}", blob.digest);
        let mut backoff = Backoff::new(self.policy);
        let mut cursor: Option<UploadCursor> = None;
        let mut interrupted = false;
        let mut attempt = 0u32;
        loop {
            let step = tokio::select! {
                biased;
                _ = self.cancel.cancelled() => return Err(self.cancelled()),
                step = self.upload_step(blob, &path, &mut cursor, interrupted, &mut backoff) => step,
            };
            let failure = match step {
                Ok(()) => return Ok(()),
                Err(failure) => failure,
            };
            attempt += 1;
            interrupted = cursor.is_some();
            match backoff.on_failure(failure.retry, rand::random::<f64>()) {
                Decision::Wait { delay, honoured } => {
                    self.say_retry(
                        &action,
                        &failure,
                        RetryNote {
                            attempt,
                            delay,
                            honoured,
                        },
                    );
                    if !sleep_or_cancel(delay, &self.cancel).await {
                        return Err(self.cancelled());
                    }
                }
                Decision::GiveUp(gave_up) => {
                    return Err(self.failure_to_error(&action, failure, attempt, gave_up));
                }
            }
        }
    }

    /// One try of a chunked upload, from wherever `cursor` says it stands.
    async fn upload_step(
        &self,
        blob: &SpooledBlob,
        path: &Arc<Path>,
        cursor: &mut Option<UploadCursor>,
        interrupted: bool,
        backoff: &mut Backoff,
    ) -> Result<(), RegistryFailure> {
        if interrupted && let Some(current) = cursor.take() {
            match self.upload_status(&current.location).await {
                Ok((acknowledged, location)) if acknowledged <= blob.size => {
                    self.say(format!(
                        "resuming the upload of blob {} at byte {acknowledged} of {}",
                        short(&blob.digest),
                        blob.size
                    ));
                    *cursor = Some(UploadCursor {
                        location: location.unwrap_or(current.location),
                        offset: acknowledged,
                        resumed: true,
                    });
                }
                Ok((acknowledged, _)) => self.say(format!(
                    "the registry says it holds {acknowledged} bytes of blob {}, which has {}; \
                     starting the upload again",
                    short(&blob.digest),
                    blob.size
                )),
                Err(failure) if failure.kind == FailureKind::NotFound => {
                    // The upload may have completed before its answer was lost.
                    let head =
                        Request::new(Method::HEAD, self.url(&format!("blobs/{}", blob.digest)));
                    if self.probe(&head).await == Ok(true) {
                        return Ok(());
                    }
                    self.say(format!(
                        "the registry lost the upload of blob {}; starting it again",
                        short(&blob.digest)
                    ));
                }
                Err(failure) => {
                    *cursor = Some(current);
                    return Err(failure);
                }
            }
        }
        if cursor.is_none() {
            *cursor = Some(UploadCursor {
                location: self.start_upload().await?,
                offset: 0,
                resumed: false,
            });
        }
        let current = cursor.as_mut().expect("an upload is open");
        while let Some((start, len)) = next_chunk(current.offset, blob.size, CHUNK_SIZE) {
            let request = Request::new(Method::PATCH, current.location.clone())
                .header(header::CONTENT_TYPE, "application/octet-stream")
                .header(
                    header::CONTENT_RANGE,
                    &format!("{start}-{}", start + len - 1),
                )
                .body(Body::File {
                    path: path.clone(),
                    offset: start,
                    len,
                });
            let response = self.exchange(&request).await?;
            match judge_chunk(response.status().as_u16()) {
                ChunkVerdict::Taken => {
                    if let Some(location) = location_of(&response) {
                        current.location = location;
                    }
                    current.offset = start + len;
                    backoff.progressed();
                }
                ChunkVerdict::OffsetDisputed => {
                    // The registry holds another amount than shipit was told: start again
                    // rather than trust its status a second time.
                    *cursor = None;
                    self.say(format!(
                        "the registry disputes the offset of the upload of blob {}; starting it \
                         again",
                        short(&blob.digest)
                    ));
                    return Err(RegistryFailure {
                        reason: format!(
                            "the registry refused the chunk at byte {start} (HTTP 416)"
                        ),
                        retry: Retryable::Transient { retry_after: None },
                        kind: FailureKind::Other,
                    });
                }
                ChunkVerdict::Failed => {
                    return Err(lost_upload_is_transient(failure_of(response).await));
                }
            }
        }
        let resumed = current.resumed;
        self.finish_upload(&current.location, &blob.digest)
            .await
            .map_err(|failure| {
                if resumed && failure.reason.contains("DIGEST_INVALID") {
                    // A registry whose status misled the resume: the bytes are wrong, so the
                    // upload starts again (once more at most: a fresh upload is not resumed).
                    *cursor = None;
                    return RegistryFailure {
                        retry: Retryable::Transient { retry_after: None },
                        ..failure
                    };
                }
                lost_upload_is_transient(failure)
            })
    }

    /// Asks the registry how much of an upload it holds: the bytes acknowledged, and the
    /// location to go on at (a registry may hand out a new one).
    async fn upload_status(&self, location: &Url) -> Result<(u64, Option<Url>), RegistryFailure> {
        let request = Request::new(Method::GET, location.clone());
        let response = expect(
            self.exchange(&request).await?,
            &[StatusCode::NO_CONTENT, StatusCode::OK, StatusCode::ACCEPTED],
        )
        .await?;
        let acknowledged = header_text(response.headers(), header::RANGE)
            .and_then(|range| acknowledged_bytes(&range))
            .unwrap_or(0);
        Ok((acknowledged, location_of(&response)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upload_ranges_say_how_many_bytes_the_registry_holds() {
        assert_eq!(acknowledged_bytes("0-1023"), Some(1024));
        assert_eq!(
            acknowledged_bytes("bytes=0-16777215"),
            Some(16 * 1024 * 1024)
        );
        assert_eq!(acknowledged_bytes(" 0-0 "), Some(0));
        assert_eq!(acknowledged_bytes("5-10"), None);
        assert_eq!(acknowledged_bytes("0-"), None);
        assert_eq!(acknowledged_bytes("garbage"), None);
    }

    #[test]
    fn any_success_takes_a_chunk_and_416_disputes_the_offset() {
        for status in [202, 201, 204, 200] {
            assert_eq!(judge_chunk(status), ChunkVerdict::Taken, "{status}");
        }
        assert_eq!(judge_chunk(416), ChunkVerdict::OffsetDisputed);
        for status in [400, 401, 404, 500, 307] {
            assert_eq!(judge_chunk(status), ChunkVerdict::Failed, "{status}");
        }
    }

    #[test]
    fn chunks_cover_the_blob_from_any_offset() {
        let chunks = |mut offset: u64, size: u64| {
            let mut out = vec![];
            while let Some((start, len)) = next_chunk(offset, size, 10) {
                out.push((start, len));
                offset = start + len;
            }
            out
        };
        assert_eq!(chunks(0, 25), vec![(0, 10), (10, 10), (20, 5)]);
        // Resumed from an offset the registry acknowledged, not on a chunk boundary.
        assert_eq!(chunks(13, 25), vec![(13, 10), (23, 2)]);
        assert_eq!(chunks(25, 25), vec![]);
        assert_eq!(chunks(0, 0), vec![]);
    }
}
