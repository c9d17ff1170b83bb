//! Blobs: whether the repository holds one, a cross-repository mount, and an upload in one PUT
//! (a blob up to `CHUNKED_ABOVE`, restarted whole when interrupted).

use std::path::Path;
use std::sync::Arc;

use reqwest::header;
use reqwest::{Method, StatusCode, Url};

use super::RegistrySession;
use super::http::{Body, Request, expect, location_of};
use crate::registry::layer_packer::SpooledBlob;
use crate::registry::push_error::PushError;
use crate::registry::registry_failure::{FailureKind, RegistryFailure};
use crate::registry::retry::Retryable;

/// Blobs larger than this are uploaded in chunks that an interruption does not lose.
const CHUNKED_ABOVE: u64 = 32 * 1024 * 1024;

impl RegistrySession {
    /// Whether the repository holds a blob.
    pub(crate) async fn blob_exists(&self, digest: &str) -> Result<bool, PushError> {
        let action = format!("check for blob {digest}");
        let request = Request::new(Method::HEAD, self.url(&format!("blobs/{digest}")));
        self.call(&action, || self.probe(&request)).await
    }

    /// HEAD-like: true on 200, false on 404.
    pub(super) async fn probe(&self, request: &Request) -> Result<bool, RegistryFailure> {
        let response = self.exchange(request).await?;
        if response.status() == StatusCode::NOT_FOUND {
            return Ok(false);
        }
        expect(response, &[StatusCode::OK]).await.map(|_| true)
    }

    /// Asks the registry to link a blob from another repository; false when it would not
    /// (registries may refuse, or, like ECR, only mount blobs a manifest references).
    pub(crate) async fn mount_blob(&self, digest: &str, from_repository: &str) -> bool {
        if from_repository == self.repository {
            return false;
        }
        let mut url = self.url("blobs/uploads/");
        url.query_pairs_mut()
            .append_pair("mount", digest)
            .append_pair("from", from_repository);
        match self.exchange(&Request::new(Method::POST, url)).await {
            Ok(response) => response.status() == StatusCode::CREATED,
            Err(_) => false,
        }
    }

    /// Opens an upload session; its location.
    pub(super) async fn start_upload(&self) -> Result<Url, RegistryFailure> {
        let request = Request::new(Method::POST, self.url("blobs/uploads/"));
        let response = expect(self.exchange(&request).await?, &[StatusCode::ACCEPTED]).await?;
        location_of(&response).ok_or_else(|| RegistryFailure {
            reason: "the registry did not say where to upload (no Location header); is it a \
                     registry, or a proxy in front of one?"
                .into(),
            retry: Retryable::Permanent,
            kind: FailureKind::Other,
        })
    }

    /// Closes an upload session with the blob's digest.
    pub(super) async fn finish_upload(
        &self,
        location: &Url,
        digest: &str,
    ) -> Result<(), RegistryFailure> {
        self.put_blob(location, digest, Body::Empty).await
    }

    async fn put_blob(
        &self,
        location: &Url,
        digest: &str,
        body: Body,
    ) -> Result<(), RegistryFailure> {
        let mut url = location.clone();
        url.query_pairs_mut().append_pair("digest", digest);
        let request = Request::new(Method::PUT, url)
            .header(header::CONTENT_TYPE, "application/octet-stream")
            .body(body);
        expect(
            self.exchange(&request).await?,
            &[StatusCode::CREATED, StatusCode::NO_CONTENT, StatusCode::OK],
        )
        .await
        .map(|_| ())
    }

    /// Uploads a spool file as a blob: one PUT up to `CHUNKED_ABOVE`, resumable chunks above.
    pub(crate) async fn upload_blob(&self, blob: &SpooledBlob) -> Result<(), PushError> {
        let path: Arc<Path> = Arc::from(blob.path.as_path());
        if blob.size > CHUNKED_ABOVE {
            return self.upload_chunked(blob, path).await;
        }
        let action = format!("upload blob {}", blob.digest);
        let body = Body::File {
            path,
            offset: 0,
            len: blob.size,
        };
        self.call(&action, || async {
            let location = self.start_upload().await?;
            self.put_blob(&location, &blob.digest, body.clone()).await
        })
        .await
    }

    /// Uploads a small blob held in memory (the image config).
    pub(crate) async fn upload_bytes(&self, bytes: &[u8], digest: &str) -> Result<(), PushError> {
        let action = format!("upload blob {digest}");
        let body = Body::Bytes(bytes::Bytes::copy_from_slice(bytes));
        self.call(&action, || async {
            let location = self.start_upload().await?;
            self.put_blob(&location, digest, body.clone()).await
        })
        .await
    }
}
