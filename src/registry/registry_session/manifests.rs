//! Manifests: pushed under a tag or their digest, fetched back, checked for.

use reqwest::header::{self, HeaderValue};
use reqwest::{Method, StatusCode};

use super::RegistrySession;
use super::http::{Body, Request, expect};
use crate::docker::image_source::digest::sha256_digest;
use crate::docker::image_source::media_types::{
    DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, OCI_INDEX, OCI_MANIFEST,
};
use crate::registry::push_error::PushError;
use crate::registry::registry_failure::from_transport;

impl RegistrySession {
    /// Puts the manifest under a tag, or under its digest when `tag` is None.
    pub(crate) async fn push_manifest(
        &self,
        manifest: &[u8],
        media_type: &str,
        tag: Option<&str>,
    ) -> Result<(), PushError> {
        let reference = match tag {
            Some(tag) => tag.to_string(),
            None => sha256_digest(manifest),
        };
        let action = match tag {
            Some(tag) => format!("push the manifest as tag {tag}"),
            None => "push the manifest".to_string(),
        };
        if HeaderValue::from_str(media_type).is_err() {
            return Err(self.registry_error(
                &action,
                format!("invalid media type {media_type}"),
                1,
            ));
        }
        let request = Request::new(Method::PUT, self.url(&format!("manifests/{reference}")))
            .header(header::CONTENT_TYPE, media_type)
            .body(Body::Bytes(bytes::Bytes::copy_from_slice(manifest)));
        self.call(&action, || async {
            let response = self.exchange(&request).await?;
            expect(
                response,
                &[StatusCode::CREATED, StatusCode::OK, StatusCode::ACCEPTED],
            )
            .await
            .map(|_| ())
        })
        .await
    }

    fn manifest_request(&self, method: Method, digest: &str) -> Request {
        let accepted = [
            OCI_MANIFEST,
            DOCKER_MANIFEST,
            OCI_INDEX,
            DOCKER_MANIFEST_LIST,
        ]
        .join(", ");
        Request::new(method, self.url(&format!("manifests/{digest}")))
            .header(header::ACCEPT, &accepted)
    }

    /// The manifest stored under `digest`, or None when the registry does not have it.
    pub(crate) async fn fetch_manifest(&self, digest: &str) -> Result<Option<Vec<u8>>, PushError> {
        let action = format!("fetch manifest {digest}");
        let request = self.manifest_request(Method::GET, digest);
        self.call(&action, || async {
            let response = self.exchange(&request).await?;
            if response.status() == StatusCode::NOT_FOUND {
                return Ok(None);
            }
            let response = expect(response, &[StatusCode::OK]).await?;
            let body = response.bytes().await.map_err(|err| from_transport(&err))?;
            Ok(Some(body.to_vec()))
        })
        .await
    }

    /// The digest of the manifest tag `tag` points at now (HEAD, no body): `None` when the
    /// registry has no such tag, `Some(None)` when it has one but names no digest.
    pub(crate) async fn tag_digest(&self, tag: &str) -> Result<Option<Option<String>>, PushError> {
        let action = format!("look up tag {tag}");
        let request = self.manifest_request(Method::HEAD, tag);
        self.call(&action, || async {
            let response = self.exchange(&request).await?;
            if response.status() == StatusCode::NOT_FOUND {
                return Ok(None);
            }
            let response = expect(response, &[StatusCode::OK]).await?;
            let digest = response
                .headers()
                .get("docker-content-digest")
                .and_then(|value| value.to_str().ok())
                .map(str::to_owned);
            Ok(Some(digest))
        })
        .await
    }

    /// Whether the registry holds a manifest with this digest (HEAD, no body).
    pub(crate) async fn manifest_exists(&self, digest: &str) -> Result<bool, PushError> {
        let action = format!("check for manifest {digest}");
        let request = self.manifest_request(Method::HEAD, digest);
        self.call(&action, || self.probe(&request)).await
    }
}
