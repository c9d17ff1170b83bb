//! The session's HTTP: the clients, requests that can be sent again, how an answer that is not
//! the one expected becomes a classified failure, and every call run through the retry policy.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use reqwest::header::{self, HeaderMap, HeaderValue};
use reqwest::{Method, StatusCode, Url};
use tokio::io::{AsyncReadExt as _, AsyncSeekExt as _};

use super::RegistrySession;
use crate::registry::push_error::PushError;
use crate::registry::registry_failure::{
    ErrorAnswer, FailureKind, RegistryFailure, from_answer, from_local_io, from_transport,
    protocol_violation,
};
use crate::registry::retry::{RetryNote, Retryable, parse_retry_after, retry};

const USER_AGENT: &str = concat!("shipit/", env!("CARGO_PKG_VERSION"));

/// Bytes per read of a spool file during upload.
const UPLOAD_READ_CHUNK: usize = 256 * 1024;
/// The most of an error answer's body that is read (its start is all a message uses).
const ERROR_BODY_LIMIT: usize = 16 * 1024;

/// A request body that can be sent again (after a token renewal, or on a retry).
#[derive(Clone)]
pub(super) enum Body {
    Empty,
    Bytes(bytes::Bytes),
    /// `len` bytes of a file from `offset`.
    File {
        path: Arc<Path>,
        offset: u64,
        len: u64,
    },
}

/// One request, described so that it can be built again.
pub(super) struct Request {
    pub(super) method: Method,
    pub(super) url: Url,
    pub(super) headers: HeaderMap,
    pub(super) body: Body,
}

impl Request {
    pub(super) fn new(method: Method, url: Url) -> Self {
        Request {
            method,
            url,
            headers: HeaderMap::new(),
            body: Body::Empty,
        }
    }

    pub(super) fn header(mut self, name: header::HeaderName, value: &str) -> Self {
        if let Ok(value) = HeaderValue::from_str(value) {
            self.headers.insert(name, value);
        }
        self
    }

    pub(super) fn body(mut self, body: Body) -> Self {
        self.body = body;
        self
    }
}

/// A session's HTTP clients. A client that speaks TLS loads the system's trusted roots when it
/// is built (hundreds of files, a good part of a warm push's time); a loopback registry is
/// spoken to over plain HTTP and never needs them, so the TLS client is only built the first
/// time an `https` URL comes up (a registry elsewhere, its token service, a redirect).
pub(super) struct HttpClients {
    plain: reqwest::Client,
    tls: std::sync::OnceLock<Result<reqwest::Client, String>>,
}

impl HttpClients {
    fn builder() -> reqwest::ClientBuilder {
        reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .read_timeout(Duration::from_secs(120))
            .user_agent(USER_AGENT)
    }

    pub(super) fn new() -> Result<Self, reqwest::Error> {
        Ok(Self {
            // No roots at all: this client can make no TLS connection, and has no need to.
            plain: Self::builder().tls_certs_only(std::iter::empty()).build()?,
            tls: std::sync::OnceLock::new(),
        })
    }

    /// The client for `url`'s scheme.
    pub(super) fn for_url(&self, url: &Url) -> Result<&reqwest::Client, RegistryFailure> {
        if url.scheme() != "https" {
            return Ok(&self.plain);
        }
        self.tls
            .get_or_init(|| {
                Self::builder()
                    .build()
                    .map_err(|err| from_transport(&err).reason)
            })
            .as_ref()
            .map_err(|reason| RegistryFailure {
                reason: format!("the TLS client could not be set up: {reason}"),
                retry: Retryable::Permanent,
                kind: FailureKind::Other,
            })
    }
}

pub(super) fn header_text(headers: &HeaderMap, name: header::HeaderName) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

pub(super) fn retry_after_of(headers: &HeaderMap) -> Option<Duration> {
    let value = header_text(headers, header::RETRY_AFTER)?;
    let date = header_text(headers, header::DATE);
    parse_retry_after(&value, date.as_deref(), SystemTime::now())
}

pub(super) fn is_html(headers: &HeaderMap) -> bool {
    header_text(headers, header::CONTENT_TYPE)
        .is_some_and(|ct| ct.to_ascii_lowercase().contains("text/html"))
}

/// Reads the start of an error answer and classifies it.
pub(super) async fn failure_of(response: reqwest::Response) -> RegistryFailure {
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = read_limited(response, ERROR_BODY_LIMIT).await;
    let body = String::from_utf8_lossy(&body);
    let content_type = header_text(&headers, header::CONTENT_TYPE);
    from_answer(&ErrorAnswer {
        status,
        content_type: content_type.as_deref(),
        retry_after: retry_after_of(&headers),
        body: &body,
    })
}

pub(super) async fn read_limited(mut response: reqwest::Response, limit: usize) -> Vec<u8> {
    let mut body = Vec::new();
    while body.len() < limit {
        match response.chunk().await {
            Ok(Some(chunk)) => body.extend_from_slice(&chunk),
            _ => break,
        }
    }
    body.truncate(limit);
    body
}

/// The answer, when its status is one of `ok` and it is not an HTML page; its failure otherwise.
pub(super) async fn expect(
    response: reqwest::Response,
    ok: &[StatusCode],
) -> Result<reqwest::Response, RegistryFailure> {
    let status = response.status();
    if ok.contains(&status) && !is_html(response.headers()) {
        return Ok(response);
    }
    if status.is_success() {
        if is_html(response.headers()) {
            // A portal or proxy answering for the registry: never a registry's own answer.
            return Err(from_answer(&ErrorAnswer {
                status: status.as_u16(),
                content_type: Some("text/html"),
                ..ErrorAnswer::default()
            }));
        }
        return Err(protocol_violation(&format!(
            "expected HTTP {}, got HTTP {}",
            ok.first().map(|s| s.as_u16()).unwrap_or(200),
            status.as_u16()
        )));
    }
    Err(failure_of(response).await)
}

/// The `Location` of an answer, resolved against the request's URL.
pub(super) fn location_of(response: &reqwest::Response) -> Option<Url> {
    let location = header_text(response.headers(), header::LOCATION)?;
    response.url().join(&location).ok()
}

impl RegistrySession {
    /// Sends a request with the session's credentials; a 401 renews them (once per request)
    /// and sends it again. Any status comes back; transport failures are classified.
    pub(super) async fn exchange(
        &self,
        request: &Request,
    ) -> Result<reqwest::Response, RegistryFailure> {
        let mut renewed = false;
        loop {
            let (generation, authorization) = self.authorization().await?;
            let mut builder = self
                .http
                .for_url(&request.url)?
                .request(request.method.clone(), request.url.clone())
                .headers(request.headers.clone());
            if let Some(value) = authorization
                && self.is_registry_host(&request.url)
            {
                builder = builder.header(header::AUTHORIZATION, value);
            }
            builder = match &request.body {
                // Some registries want the length said even for an empty POST or PUT.
                Body::Empty if request.method != Method::GET && request.method != Method::HEAD => {
                    builder.header(header::CONTENT_LENGTH, "0")
                }
                Body::Empty => builder,
                Body::Bytes(bytes) => builder.body(bytes.clone()),
                Body::File { path, offset, len } => {
                    let mut file = tokio::fs::File::open(path)
                        .await
                        .map_err(|err| from_local_io(&err))?;
                    file.seek(std::io::SeekFrom::Start(*offset))
                        .await
                        .map_err(|err| from_local_io(&err))?;
                    let stream = tokio_util::io::ReaderStream::with_capacity(
                        file.take(*len),
                        UPLOAD_READ_CHUNK,
                    );
                    builder
                        .header(header::CONTENT_LENGTH, len.to_string())
                        .body(reqwest::Body::wrap_stream(stream))
                }
            };
            let response = builder.send().await.map_err(|err| from_transport(&err))?;
            if response.status() == StatusCode::UNAUTHORIZED && !renewed {
                let challenge = header_text(response.headers(), header::WWW_AUTHENTICATE);
                if self
                    .renew_after_refusal(generation, challenge.as_deref())
                    .await?
                {
                    renewed = true;
                    continue;
                }
            }
            return Ok(response);
        }
    }

    /// Runs one registry call with retries. `action` names it in messages and errors.
    pub(super) async fn call<T, Op, Fut>(&self, action: &str, mut op: Op) -> Result<T, PushError>
    where
        Op: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, RegistryFailure>>,
    {
        retry(
            &self.policy,
            &self.cancel,
            |failure: &RegistryFailure| failure.retry,
            |note, failure| self.say_retry(action, failure, note),
            |_| op(),
        )
        .await
        .map_err(|failure| self.retry_failure_to_error(action, failure))
    }

    pub(super) fn say_retry(&self, action: &str, failure: &RegistryFailure, note: RetryNote) {
        self.say(format!(
            "{action} at {}: {}; {}",
            self.host,
            failure.reason,
            note.describe()
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tls_client_is_built_only_for_an_https_url() {
        let clients = HttpClients::new().unwrap();
        let plain = Url::parse("http://127.0.0.1:5000/v2/").unwrap();
        clients.for_url(&plain).unwrap();
        assert!(
            clients.tls.get().is_none(),
            "plain HTTP built the TLS client"
        );
        let tls = Url::parse("https://registry.example/v2/").unwrap();
        clients.for_url(&tls).unwrap();
        assert!(matches!(clients.tls.get(), Some(Ok(_))));
    }
}
