//! Connecting to the Docker daemon the way the docker CLI does.
//!
//! `DOCKER_HOST` picks the daemon (`unix://` socket or `tcp://` address, the
//! default socket when unset); for TCP, a non-empty `DOCKER_TLS_VERIFY` turns on
//! TLS with the client certificate, key and CA from `DOCKER_CERT_PATH` (default
//! `~/.docker`), files `cert.pem`, `key.pem` and `ca.pem`. The API version is
//! negotiated down to the daemon's, as the CLI does. Docker CLI contexts
//! (`DOCKER_CONTEXT`, `docker context use`) are not read.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bollard::Docker;
use bollard::errors::Error as BollardError;

/// The daemon socket used when `DOCKER_HOST` is unset.
pub const DEFAULT_SOCKET: &str = "/var/run/docker.sock";
/// bollard's per-request timeout for ordinary calls (a build has its own).
const REQUEST_TIMEOUT_SECS: u64 = 120;
/// How long the first ping may take before the daemon counts as unreachable.
const PING_TIMEOUT: Duration = Duration::from_secs(15);
/// The first API version with BuildKit builds (`version=2`) and sessions.
const BUILDKIT_MIN_API: (u32, u32) = (1, 39);

/// Where the daemon listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DaemonEndpoint {
    Unix {
        path: PathBuf,
    },
    Tcp {
        host: String,
        port: u16,
        tls: Option<TlsFiles>,
    },
}

/// Client certificate, key and CA for a TLS-verified TCP daemon.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl fmt::Display for DaemonEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DaemonEndpoint::Unix { path } => write!(f, "unix://{}", path.display()),
            DaemonEndpoint::Tcp { host, port, tls } => {
                let host = if host.contains(':') {
                    format!("[{host}]")
                } else {
                    host.clone()
                };
                write!(f, "tcp://{host}:{port}")?;
                if tls.is_some() {
                    write!(f, " (TLS)")?;
                }
                Ok(())
            }
        }
    }
}

/// Failures talking to the daemon outside of a build.
#[derive(Debug, thiserror::Error)]
pub enum DockerError {
    #[error("failed to use DOCKER_HOST={value:?}: {reason}")]
    InvalidHost { value: String, reason: String },
    #[error(
        "failed to reach the Docker daemon at {endpoint}; is dockerd running? Set DOCKER_HOST to the daemon's socket or address"
    )]
    Unreachable {
        endpoint: String,
        #[source]
        source: BollardError,
    },
    #[error(
        "failed to reach the Docker daemon at {endpoint}: no answer within {seconds} s; is dockerd running and responsive?"
    )]
    PingTimeout { endpoint: String, seconds: u64 },
    #[error("failed to set up TLS for the Docker daemon at {endpoint}: {reason}")]
    Tls { endpoint: String, reason: String },
    #[error("failed to {operation} on the Docker daemon at {endpoint}")]
    Api {
        operation: String,
        endpoint: String,
        #[source]
        source: BollardError,
    },
}

/// A connected daemon: the bollard client plus what the ping and version told.
#[derive(Debug, Clone)]
pub struct DockerClient {
    docker: Docker,
    endpoint: DaemonEndpoint,
    server_version: String,
    api_version: String,
    os: String,
}

/// Connects to the daemon named by the environment, pings it and negotiates the
/// API version.
pub async fn connect() -> Result<DockerClient, DockerError> {
    let home = std::env::var_os("HOME").map(PathBuf::from);
    let endpoint = endpoint_from_env(
        std::env::var("DOCKER_HOST").ok().as_deref(),
        std::env::var("DOCKER_TLS_VERIFY").ok().as_deref(),
        std::env::var("DOCKER_CERT_PATH").ok().as_deref(),
        home.as_deref(),
    )?;
    connect_to(endpoint).await
}

/// Connects to a given endpoint.
pub async fn connect_to(endpoint: DaemonEndpoint) -> Result<DockerClient, DockerError> {
    let shown = endpoint.to_string();
    let unreachable = |source| DockerError::Unreachable {
        endpoint: shown.clone(),
        source,
    };
    // A client speaking API `version`; building one opens no connection.
    let client_for = |version: &bollard::ClientVersion| -> Result<Docker, DockerError> {
        Ok(match &endpoint {
            DaemonEndpoint::Unix { path } => {
                Docker::connect_with_unix(&path.to_string_lossy(), REQUEST_TIMEOUT_SECS, version)
                    .map_err(unreachable)?
            }
            DaemonEndpoint::Tcp {
                host,
                port,
                tls: None,
            } => Docker::connect_with_http(
                &format!("tcp://{}", host_port(host, *port)),
                REQUEST_TIMEOUT_SECS,
                version,
            )
            .map_err(unreachable)?,
            DaemonEndpoint::Tcp {
                host,
                port,
                tls: Some(files),
            } => {
                install_crypto_provider();
                for file in [&files.ca, &files.cert, &files.key] {
                    if !file.is_file() {
                        return Err(DockerError::Tls {
                            endpoint: shown.clone(),
                            reason: format!(
                                "{} is missing; DOCKER_CERT_PATH must hold ca.pem, cert.pem and key.pem",
                                file.display()
                            ),
                        });
                    }
                }
                Docker::connect_with_ssl(
                    &format!("tcp://{}", host_port(host, *port)),
                    &files.key,
                    &files.cert,
                    &files.ca,
                    REQUEST_TIMEOUT_SECS,
                    version,
                )
                .map_err(|err| DockerError::Tls {
                    endpoint: shown.clone(),
                    reason: err.to_string(),
                })?
            }
        })
    };
    // One `GET /version` is the liveness check and the negotiation at once (the CLI's ping,
    // bollard's negotiate_version and a version read cost three round trips, about a tenth
    // of a warm push).
    let docker = client_for(bollard::API_DEFAULT_VERSION)?;
    let version = match tokio::time::timeout(PING_TIMEOUT, docker.version()).await {
        Ok(Ok(version)) => version,
        Ok(Err(source)) => return Err(unreachable(source)),
        Err(_) => {
            return Err(DockerError::PingTimeout {
                endpoint: shown.clone(),
                seconds: PING_TIMEOUT.as_secs(),
            });
        }
    };
    let server_api = version
        .api_version
        .as_deref()
        .and_then(parse_api_version)
        .map(|(major_version, minor_version)| bollard::ClientVersion {
            major_version: major_version as usize,
            minor_version: minor_version as usize,
        });
    let docker = match server_api {
        Some(server) if server < *bollard::API_DEFAULT_VERSION => client_for(&server)?,
        _ => docker,
    };
    let negotiated = docker.client_version();
    Ok(DockerClient {
        docker,
        endpoint,
        server_version: version.version.unwrap_or_default(),
        api_version: format!("{}.{}", negotiated.major_version, negotiated.minor_version),
        os: version.os.unwrap_or_default(),
    })
}

/// TLS through bollard needs a process-wide rustls crypto provider; when several
/// are compiled in (other crates may bring aws-lc-rs) none is chosen
/// automatically, so pick ring unless someone already chose.
pub(crate) fn install_crypto_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
}

fn host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

impl DockerClient {
    /// The bollard client, for calls this adapter does not wrap.
    pub fn bollard(&self) -> &Docker {
        &self.docker
    }

    pub fn endpoint(&self) -> &DaemonEndpoint {
        &self.endpoint
    }

    /// The daemon's version, e.g. `20.10.24+dfsg1`.
    pub fn server_version(&self) -> &str {
        &self.server_version
    }

    /// The negotiated API version, e.g. `1.41`.
    pub fn api_version(&self) -> &str {
        &self.api_version
    }

    /// Whether the daemon can run BuildKit builds: Linux daemons from API 1.39.
    pub fn supports_buildkit(&self) -> bool {
        self.os.eq_ignore_ascii_case("linux")
            && parse_api_version(&self.api_version).is_some_and(|v| v >= BUILDKIT_MIN_API)
    }

    /// Whether an image (id, digest or name:tag) exists in the daemon.
    pub async fn image_exists(&self, reference: &str) -> Result<bool, DockerError> {
        match self.docker.inspect_image(reference).await {
            Ok(_) => Ok(true),
            Err(BollardError::DockerResponseServerError {
                status_code: 404, ..
            }) => Ok(false),
            Err(source) => Err(self.api_error(format!("inspect image {reference}"), source)),
        }
    }

    pub(crate) fn api_error(&self, operation: String, source: BollardError) -> DockerError {
        DockerError::Api {
            operation,
            endpoint: self.endpoint.to_string(),
            source,
        }
    }
}

fn parse_api_version(version: &str) -> Option<(u32, u32)> {
    let (major, minor) = version.split_once('.')?;
    Some((major.parse().ok()?, minor.parse().ok()?))
}

/// Decides the endpoint from the environment's values, like the docker CLI.
pub(crate) fn endpoint_from_env(
    docker_host: Option<&str>,
    tls_verify: Option<&str>,
    cert_path: Option<&str>,
    home: Option<&Path>,
) -> Result<DaemonEndpoint, DockerError> {
    let host = docker_host.map(str::trim).unwrap_or_default();
    if host.is_empty() {
        return Ok(DaemonEndpoint::Unix {
            path: PathBuf::from(DEFAULT_SOCKET),
        });
    }
    let invalid = |reason: &str| DockerError::InvalidHost {
        value: host.to_string(),
        reason: reason.to_string(),
    };
    let (scheme, rest) = host
        .split_once("://")
        .ok_or_else(|| invalid("expected unix:///path/to/docker.sock or tcp://host:port"))?;
    // The CLI treats an empty DOCKER_TLS_VERIFY as unset.
    let verify = tls_verify.is_some_and(|value| !value.is_empty());
    match scheme {
        "unix" => {
            let path = if rest.is_empty() {
                DEFAULT_SOCKET
            } else {
                rest
            };
            Ok(DaemonEndpoint::Unix {
                path: PathBuf::from(path),
            })
        }
        "tcp" | "http" | "https" => {
            let tls = verify || scheme == "https";
            let address = rest.split('/').next().unwrap_or_default();
            let (host_part, port) =
                split_host_port(address).ok_or_else(|| invalid("the address must be host:port"))?;
            let port = match port {
                Some(port) => port,
                None if tls => 2376,
                None => 2375,
            };
            let host_part = if host_part.is_empty() {
                "localhost".to_string()
            } else {
                host_part
            };
            let tls = tls.then(|| {
                let dir = match cert_path.filter(|path| !path.is_empty()) {
                    Some(path) => PathBuf::from(path),
                    None => home.map(|home| home.join(".docker")).unwrap_or_default(),
                };
                TlsFiles {
                    ca: dir.join("ca.pem"),
                    cert: dir.join("cert.pem"),
                    key: dir.join("key.pem"),
                }
            });
            Ok(DaemonEndpoint::Tcp {
                host: host_part,
                port,
                tls,
            })
        }
        "ssh" => Err(invalid(
            "ssh:// daemons are not supported; forward the socket (ssh -L /tmp/docker.sock:/var/run/docker.sock host) and use unix://",
        )),
        "npipe" => Err(invalid("named pipes exist only on Windows")),
        _ => Err(invalid("unknown scheme; use unix:// or tcp://")),
    }
}

/// Splits `host:port`, `[v6]:port`, `host` or `[v6]`.
fn split_host_port(address: &str) -> Option<(String, Option<u16>)> {
    if let Some(rest) = address.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        let port = match after.strip_prefix(':') {
            Some(port) => Some(port.parse().ok()?),
            None if after.is_empty() => None,
            None => return None,
        };
        return Some((host.to_string(), port));
    }
    match address.rsplit_once(':') {
        Some((host, port)) => Some((host.to_string(), Some(port.parse().ok()?))),
        None => Some((address.to_string(), None)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoint(host: Option<&str>, verify: Option<&str>) -> DaemonEndpoint {
        endpoint_from_env(host, verify, None, Some(Path::new("/home/u"))).unwrap()
    }

    #[test]
    fn no_docker_host_means_the_default_socket() {
        assert_eq!(
            endpoint(None, None),
            DaemonEndpoint::Unix {
                path: PathBuf::from(DEFAULT_SOCKET)
            }
        );
        assert_eq!(endpoint(Some(""), None), endpoint(None, None));
    }

    #[test]
    fn unix_hosts_name_the_socket() {
        assert_eq!(
            endpoint(Some("unix:///run/user/1/docker.sock"), None),
            DaemonEndpoint::Unix {
                path: PathBuf::from("/run/user/1/docker.sock")
            }
        );
    }

    #[test]
    fn tcp_hosts_default_to_2375_without_tls() {
        assert_eq!(
            endpoint(Some("tcp://127.0.0.1"), None),
            DaemonEndpoint::Tcp {
                host: "127.0.0.1".to_string(),
                port: 2375,
                tls: None
            }
        );
        assert_eq!(
            endpoint(Some("tcp://127.0.0.1:1234"), Some("")),
            DaemonEndpoint::Tcp {
                host: "127.0.0.1".to_string(),
                port: 1234,
                tls: None
            }
        );
    }

    #[test]
    fn tls_verify_uses_the_cert_path_or_the_home_docker_dir() {
        let DaemonEndpoint::Tcp { port, tls, .. } = endpoint(Some("tcp://127.0.0.1"), Some("1"))
        else {
            panic!("expected tcp")
        };
        assert_eq!(port, 2376);
        assert_eq!(tls.unwrap().ca, PathBuf::from("/home/u/.docker/ca.pem"));
        let with_path =
            endpoint_from_env(Some("tcp://h:1"), Some("1"), Some("/certs"), None).unwrap();
        let DaemonEndpoint::Tcp { tls, .. } = with_path else {
            panic!("expected tcp")
        };
        assert_eq!(tls.unwrap().key, PathBuf::from("/certs/key.pem"));
    }

    #[test]
    fn ipv6_addresses_are_bracketed() {
        let DaemonEndpoint::Tcp { host, port, .. } = endpoint(Some("tcp://[::1]:2375"), None)
        else {
            panic!("expected tcp")
        };
        assert_eq!((host.as_str(), port), ("::1", 2375));
        assert_eq!(
            endpoint(Some("tcp://[::1]:2375"), None).to_string(),
            "tcp://[::1]:2375"
        );
    }

    #[test]
    fn unsupported_hosts_explain_what_to_use() {
        for host in [
            "ssh://me@box",
            "npipe:////./pipe/docker",
            "foo",
            "tcp://h:port",
        ] {
            let err = endpoint_from_env(Some(host), None, None, None).unwrap_err();
            assert!(matches!(err, DockerError::InvalidHost { .. }), "{host}");
        }
    }

    #[test]
    fn api_versions_compare_numerically() {
        assert!(parse_api_version("1.41").unwrap() >= BUILDKIT_MIN_API);
        assert!(parse_api_version("1.9").unwrap() < BUILDKIT_MIN_API);
        assert_eq!(parse_api_version("x"), None);
    }
}
