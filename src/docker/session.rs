//! The BuildKit session a BuildKit build attaches to, serving the build context
//! and build secrets.
//!
//! A BuildKit build (`/build?version=2&session=ID`) asks the client for files and
//! secrets over a gRPC session that the client opens by upgrading a `POST /session`
//! request (`Upgrade: h2c`); after the upgrade the daemon is the HTTP/2 client and
//! we are the server. bollard keeps its session code crate-private and its public
//! build call only offers registry auth there, so this module opens the session
//! itself, on a connection of its own to the same endpoint, and serves the gRPC
//! health service (the daemon drops sessions that fail it), the file-sync service
//! the daemon reads the context through (see [`super::context::filesync`]), and
//! the secrets service with values held in memory: secrets never touch the disk,
//! the environment, the build arguments or the image.

use std::collections::HashMap;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bollard::health::health_check_response::ServingStatus;
use bollard::health::health_server::{Health, HealthServer};
use bollard::health::{
    HealthCheckRequest, HealthCheckResponse, HealthListRequest, HealthListResponse,
};
use bollard::moby::buildkit::secrets::v1::secrets_server::{Secrets, SecretsServer};
use bollard::moby::buildkit::secrets::v1::{GetSecretRequest, GetSecretResponse};
use bollard::moby::filesync::v1::auth_server::{Auth, AuthServer};
use bollard::moby::filesync::v1::file_sync_server::FileSyncServer;
use bollard::moby::filesync::v1::{
    CredentialsRequest, CredentialsResponse, FetchTokenRequest, FetchTokenResponse,
    GetTokenAuthorityRequest, GetTokenAuthorityResponse, VerifyTokenAuthorityRequest,
    VerifyTokenAuthorityResponse,
};
use bytes::Bytes;
use futures::StreamExt;
use http_body_util::BodyExt;
use hyper_util::rt::TokioIo;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::task::JoinHandle;
use tonic::transport::server::Connected;
use tonic::{Request, Response, Status};

use super::connect::{DaemonEndpoint, TlsFiles, install_crypto_provider};
use super::context::filesync::{FileSyncService, SyncFailure, SyncedDirs};
use crate::credentials::aws::AwsIdentity;

/// gRPC methods the daemon may call on the session, announced when opening it.
const SESSION_METHODS: &[&str] = &[
    "/grpc.health.v1.Health/Check",
    "/moby.buildkit.secrets.v1.Secrets/GetSecret",
    // Registry credentials for the daemon's pulls (FROM, --cache-from): without it, a base
    // image in a private registry (ECR) cannot be pulled by a BuildKit build.
    "/moby.filesync.v1.Auth/Credentials",
];
/// Announced when the session serves the build context.
const FILE_SYNC_METHOD: &str = "/moby.filesync.v1.FileSync/DiffCopy";

/// Why the session could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("failed to connect to the daemon for the BuildKit session")]
    Connect(#[source] io::Error),
    #[error("failed to set up TLS for the BuildKit session: {0}")]
    Tls(String),
    #[error("failed to open the BuildKit session")]
    Http(#[source] hyper::Error),
    #[error("the daemon refused the BuildKit session (HTTP {status}): {message}")]
    Refused { status: u16, message: String },
}

/// An open session; dropping it closes the connection and ends the session.
pub(crate) struct BuildSession {
    id: String,
    server: JoinHandle<()>,
}

impl BuildSession {
    pub(crate) fn id(&self) -> &str {
        &self.id
    }
}

impl Drop for BuildSession {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// The session's shared key: the daemon keeps the context it received under it
/// and, next time, asks only for the files whose stats changed. Stable per
/// context directory, as the CLI's (which hashes its node id with the path).
fn shared_key(dirs: Option<&SyncedDirs>) -> Option<String> {
    let dirs = dirs?;
    let mut hash = Sha256::new();
    hash.update(b"shipit build context\0");
    hash.update(dirs.context.as_os_str().as_encoded_bytes());
    Some(hex::encode(hash.finalize()))
}

/// Opens a session on `endpoint` that hands out `secrets` by id, registry credentials for
/// base image pulls (an ECR token bought as `identity`) and, when `files` is given, serves
/// the build context and the Dockerfile's directory (recording the first problem reading
/// them in `failure`).
pub(crate) async fn open_session(
    endpoint: &DaemonEndpoint,
    api_version: &str,
    secrets: HashMap<String, Vec<u8>>,
    identity: AwsIdentity,
    files: Option<SyncedDirs>,
    failure: SyncFailure,
) -> Result<BuildSession, SessionError> {
    let id = hex::encode(rand::random::<[u8; 16]>());
    let shared_key = shared_key(files.as_ref()).unwrap_or_else(|| id.clone());
    let stream = dial(endpoint).await?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(SessionError::Http)?;
    // The connection task must keep running until the upgrade hands the socket over.
    tokio::spawn(async move {
        let _ = connection.with_upgrades().await;
    });

    let mut request = http::Request::post(format!("/v{api_version}/session"))
        .header(http::header::HOST, "docker")
        .header(http::header::CONNECTION, "Upgrade")
        .header(http::header::UPGRADE, "h2c")
        .header("X-Docker-Expose-Session-Uuid", &id)
        .header("X-Docker-Expose-Session-Name", "shipit")
        .header("X-Docker-Expose-Session-Sharedkey", &shared_key);
    for method in SESSION_METHODS {
        request = request.header("X-Docker-Expose-Session-Grpc-Method", *method);
    }
    if files.is_some() {
        request = request.header("X-Docker-Expose-Session-Grpc-Method", FILE_SYNC_METHOD);
    }
    let request = request
        .body(http_body_util::Empty::<Bytes>::new())
        .map_err(|err| SessionError::Refused {
            status: 0,
            message: err.to_string(),
        })?;
    let response = sender
        .send_request(request)
        .await
        .map_err(SessionError::Http)?;
    if response.status() != http::StatusCode::SWITCHING_PROTOCOLS {
        let status = response.status().as_u16();
        let body = response
            .into_body()
            .collect()
            .await
            .map(|body| String::from_utf8_lossy(&body.to_bytes()).into_owned())
            .unwrap_or_default();
        return Err(SessionError::Refused {
            status,
            message: body.trim().to_string(),
        });
    }
    let upgraded = hyper::upgrade::on(response)
        .await
        .map_err(SessionError::Http)?;
    let io = SessionIo(TokioIo::new(upgraded));

    let store = SecretStore {
        values: Arc::new(secrets),
    };
    let server = tokio::spawn(async move {
        // The one connection, then nothing: an incoming stream that ended would
        // make tonic stop serving. With a shutdown signal set, aborting this task
        // (dropping the session) shuts the connection down too; without one, the
        // connection task would outlive the session.
        let incoming =
            futures::stream::iter(vec![Ok::<_, io::Error>(io)]).chain(futures::stream::pending());
        // The session ends when the daemon closes it or the build drops it; an
        // error here only means the connection went away.
        let router = tonic::transport::Server::builder()
            .add_service(HealthServer::new(AlwaysServing))
            .add_service(SecretsServer::new(store))
            .add_service(AuthServer::new(RegistryCredentials { identity }))
            .add_optional_service(
                files.map(|dirs| FileSyncServer::new(FileSyncService::new(dirs, failure))),
            );
        let _ = router
            .serve_with_incoming_shutdown(incoming, futures::future::pending::<()>())
            .await;
    });
    Ok(BuildSession { id, server })
}

trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// Opens a raw connection to the daemon, TLS included, like bollard's transports.
async fn dial(endpoint: &DaemonEndpoint) -> Result<Box<dyn Stream>, SessionError> {
    match endpoint {
        DaemonEndpoint::Unix { path } => {
            let stream = tokio::net::UnixStream::connect(path)
                .await
                .map_err(SessionError::Connect)?;
            Ok(Box::new(stream))
        }
        DaemonEndpoint::Tcp { host, port, tls } => {
            let stream = tokio::net::TcpStream::connect((host.as_str(), *port))
                .await
                .map_err(SessionError::Connect)?;
            match tls {
                None => Ok(Box::new(stream)),
                Some(files) => Ok(Box::new(tls_connect(host, files, stream).await?)),
            }
        }
    }
}

async fn tls_connect(
    host: &str,
    files: &TlsFiles,
    stream: tokio::net::TcpStream,
) -> Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>, SessionError> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};

    install_crypto_provider();
    let fail =
        |what: &str, err: &dyn std::fmt::Display| SessionError::Tls(format!("{what}: {err}"));
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(&files.ca)
        .map_err(|err| fail(&files.ca.display().to_string(), &err))?
    {
        let cert = cert.map_err(|err| fail(&files.ca.display().to_string(), &err))?;
        roots
            .add(cert)
            .map_err(|err| fail(&files.ca.display().to_string(), &err))?;
    }
    let chain = CertificateDer::pem_file_iter(&files.cert)
        .map_err(|err| fail(&files.cert.display().to_string(), &err))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|err| fail(&files.cert.display().to_string(), &err))?;
    let key = PrivateKeyDer::from_pem_file(&files.key)
        .map_err(|err| fail(&files.key.display().to_string(), &err))?;
    let config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .map_err(|err| fail("client certificate", &err))?;
    let name = ServerName::try_from(host.to_string()).map_err(|err| fail(host, &err))?;
    tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, stream)
        .await
        .map_err(SessionError::Connect)
}

/// The upgraded connection as tonic wants it.
struct SessionIo(TokioIo<hyper::upgrade::Upgraded>);

impl Connected for SessionIo {
    type ConnectInfo = ();

    fn connect_info(&self) -> Self::ConnectInfo {}
}

impl AsyncRead for SessionIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for SessionIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

/// Health answers for the daemon's session monitor.
struct AlwaysServing;

#[tonic::async_trait]
impl Health for AlwaysServing {
    type WatchStream =
        Pin<Box<dyn futures::Stream<Item = Result<HealthCheckResponse, Status>> + Send + 'static>>;

    async fn check(
        &self,
        _request: Request<HealthCheckRequest>,
    ) -> Result<Response<HealthCheckResponse>, Status> {
        Ok(Response::new(HealthCheckResponse {
            status: ServingStatus::Serving as i32,
        }))
    }

    async fn list(
        &self,
        _request: Request<HealthListRequest>,
    ) -> Result<Response<HealthListResponse>, Status> {
        Err(Status::unimplemented(
            "listing health services is not supported",
        ))
    }

    async fn watch(
        &self,
        _request: Request<HealthCheckRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        Err(Status::unimplemented("watching health is not supported"))
    }
}

/// Registry credentials for the daemon, looked up in the Docker config (`auths`, `credHelpers`,
/// `credsStore`) the way the Docker CLI's session answers (a user name and a secret, or an
/// identity token as the secret with no user name), or for ECR from the AWS credential chain.
/// The daemon fetches any token itself.
struct RegistryCredentials {
    identity: AwsIdentity,
}

#[tonic::async_trait]
impl Auth for RegistryCredentials {
    async fn credentials(
        &self,
        request: Request<CredentialsRequest>,
    ) -> Result<Response<CredentialsResponse>, Status> {
        let host = &request.get_ref().host;
        let auth = crate::credentials::pull::pull_credentials(host, &self.identity)
            .await
            // The message names the registry and why, never a credential.
            .map_err(|err| Status::unavailable(err.to_string()))?;
        let (username, secret) = super::daemon_credentials::user_and_secret(auth);
        Ok(Response::new(CredentialsResponse { username, secret }))
    }

    // Not announced: the daemon asks for these only of sessions that expose them.
    async fn fetch_token(
        &self,
        _: Request<FetchTokenRequest>,
    ) -> Result<Response<FetchTokenResponse>, Status> {
        Err(Status::unimplemented(
            "shipit's session gives credentials only",
        ))
    }

    async fn get_token_authority(
        &self,
        _: Request<GetTokenAuthorityRequest>,
    ) -> Result<Response<GetTokenAuthorityResponse>, Status> {
        Err(Status::unimplemented(
            "shipit's session gives credentials only",
        ))
    }

    async fn verify_token_authority(
        &self,
        _: Request<VerifyTokenAuthorityRequest>,
    ) -> Result<Response<VerifyTokenAuthorityResponse>, Status> {
        Err(Status::unimplemented(
            "shipit's session gives credentials only",
        ))
    }
}

/// Secret values by id. Deliberately without `Debug` so they cannot be logged.
struct SecretStore {
    values: Arc<HashMap<String, Vec<u8>>>,
}

#[tonic::async_trait]
impl Secrets for SecretStore {
    async fn get_secret(
        &self,
        request: Request<GetSecretRequest>,
    ) -> Result<Response<GetSecretResponse>, Status> {
        let id = &request.get_ref().id;
        match self.values.get(id) {
            Some(value) => Ok(Response::new(GetSecretResponse {
                data: value.clone(),
            })),
            // NotFound is what BuildKit expects for an absent optional secret.
            None => Err(Status::not_found(format!(
                "secret {id} was not given to the build"
            ))),
        }
    }
}
