//! Real git servers on 127.0.0.1 for the daemon's fetches over the network: smart HTTP over
//! TLS (git's own `git http-backend`, behind a Basic-auth check as GitHub and GitLab ask for a
//! token) and SSH (OpenSSH's sshd, public-key login only, git's `git-upload-pack` at the other
//! end). Both serve the bare repositories under one folder.
//!
//! Shared by the daemon's checkout tests (included into the library's tests by path) and the
//! daemon's end-to-end tests; it uses only crates the library itself depends on.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;

/// A smart-HTTP git server over TLS that asks for `username:token` by Basic auth.
pub struct GitHttpsServer {
    addr: SocketAddr,
    /// The CA that signed the server's certificate (PEM), written to `ca_file`.
    pub ca_file: PathBuf,
    requests: Arc<Mutex<Vec<Seen>>>,
    _stop: tokio::sync::oneshot::Sender<()>,
}

/// One request as the server saw it: its path and whether it carried the right credentials.
#[derive(Debug, Clone)]
pub struct Seen {
    pub path: String,
    pub authorized: bool,
}

impl GitHttpsServer {
    /// Serves the bare repositories under `root`; writes the CA to `<ca_dir>/git-ca.pem`.
    pub fn start(root: &Path, username: &str, token: &str, ca_dir: &Path) -> GitHttpsServer {
        let (ca_pem, tls) = certificates();
        let ca_file = ca_dir.join("git-ca.pem");
        std::fs::write(&ca_file, ca_pem).expect("the CA file is written");
        let expected = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{username}:{token}"))
        );
        let requests = Arc::new(Mutex::new(Vec::new()));
        let (stop, stopped) = tokio::sync::oneshot::channel();
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let (root, seen) = (root.to_path_buf(), requests.clone());
        std::thread::Builder::new()
            .name("git-https-server".into())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                    .expect("the server's runtime starts");
                runtime.block_on(async move {
                    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                        .await
                        .expect("the server binds 127.0.0.1");
                    addr_tx.send(listener.local_addr().unwrap()).unwrap();
                    let server = Server {
                        root,
                        expected,
                        seen,
                    };
                    tokio::select! {
                        _ = serve(listener, tls, Arc::new(server)) => {}
                        _ = stopped => {}
                    }
                });
                runtime.shutdown_background();
            })
            .expect("the server's thread starts");
        GitHttpsServer {
            addr: addr_rx.recv().expect("the server reports its address"),
            ca_file,
            requests,
            _stop: stop,
        }
    }

    /// The https URL of the bare repository `<root>/<name>`.
    pub fn url(&self, name: &str) -> String {
        format!("https://{}/{name}", self.addr)
    }

    pub fn requests(&self) -> Vec<Seen> {
        self.requests.lock().unwrap().clone()
    }
}

struct Server {
    root: PathBuf,
    expected: String,
    seen: Arc<Mutex<Vec<Seen>>>,
}

type Response = hyper::Response<Full<Bytes>>;

async fn serve(
    listener: tokio::net::TcpListener,
    tls: Arc<rustls::ServerConfig>,
    server: Arc<Server>,
) {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let (acceptor, server) = (acceptor.clone(), server.clone());
        tokio::spawn(async move {
            // A client that refuses the certificate hangs up here: that is what a test of an
            // untrusted server wants to see.
            let Ok(stream) = acceptor.accept(stream).await else {
                return;
            };
            let service = service_fn(move |request| {
                let server = server.clone();
                async move { Ok::<_, Infallible>(server.answer(request).await) }
            });
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

impl Server {
    async fn answer(&self, request: hyper::Request<Incoming>) -> Response {
        let authorized = request
            .headers()
            .get(hyper::header::AUTHORIZATION)
            .is_some_and(|value| value.as_bytes() == self.expected.as_bytes());
        self.seen.lock().unwrap().push(Seen {
            path: request.uri().path().to_owned(),
            authorized,
        });
        if !authorized {
            return hyper::Response::builder()
                .status(401)
                .header("WWW-Authenticate", "Basic realm=\"git\"")
                .body(Full::new(Bytes::new()))
                .unwrap();
        }
        match self.http_backend(request).await {
            Ok(response) => response,
            Err(message) => hyper::Response::builder()
                .status(500)
                .body(Full::new(Bytes::from(message)))
                .unwrap(),
        }
    }

    /// Runs `git http-backend` as the CGI program it is, and turns its output into a response.
    async fn http_backend(&self, request: hyper::Request<Incoming>) -> Result<Response, String> {
        let (parts, body) = request.into_parts();
        let header = |name: &str| {
            parts
                .headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned()
        };
        let body = body.collect().await.map_err(|e| e.to_string())?.to_bytes();
        let mut child = tokio::process::Command::new("git")
            .arg("http-backend")
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("GIT_PROJECT_ROOT", &self.root)
            .env("GIT_HTTP_EXPORT_ALL", "1")
            .env("REQUEST_METHOD", parts.method.as_str())
            .env("PATH_INFO", parts.uri.path())
            .env("QUERY_STRING", parts.uri.query().unwrap_or_default())
            .env("CONTENT_TYPE", header("content-type"))
            .env("CONTENT_LENGTH", body.len().to_string())
            .env("HTTP_CONTENT_ENCODING", header("content-encoding"))
            .env("GIT_PROTOCOL", header("git-protocol"))
            .env("REMOTE_USER", "shipit-tests")
            .env("REMOTE_ADDR", "127.0.0.1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("git http-backend does not start: {e}"))?;
        let mut stdin = child.stdin.take().unwrap();
        tokio::io::AsyncWriteExt::write_all(&mut stdin, &body)
            .await
            .map_err(|e| e.to_string())?;
        drop(stdin);
        let output = child.wait_with_output().await.map_err(|e| e.to_string())?;
        cgi_response(&output.stdout).ok_or_else(|| {
            format!(
                "git http-backend answered no CGI response: {}",
                String::from_utf8_lossy(&output.stderr)
            )
        })
    }
}

/// A CGI program's output: header lines (`Status: 404 Not Found` sets the status), a blank
/// line, the body.
fn cgi_response(output: &[u8]) -> Option<Response> {
    let split = output
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| (i, 4));
    let split = split.or_else(|| output.windows(2).position(|w| w == b"\n\n").map(|i| (i, 2)));
    let (at, separator) = split?;
    let head = std::str::from_utf8(&output[..at]).ok()?;
    let mut response = hyper::Response::builder();
    for line in head.lines() {
        let (name, value) = line.split_once(':')?;
        let value = value.trim();
        if name.eq_ignore_ascii_case("status") {
            response = response.status(value.split(' ').next()?.parse::<u16>().ok()?);
        } else {
            response = response.header(name.trim(), value);
        }
    }
    response
        .body(Full::new(Bytes::copy_from_slice(&output[at + separator..])))
        .ok()
}

/// A fresh CA and a certificate for 127.0.0.1 that it signed. Each CA has a name of its own:
/// OpenSSL looks issuers up by name, and a process that trusts several test CAs of one name
/// would check a certificate against the wrong one.
fn certificates() -> (String, Arc<rustls::ServerConfig>) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().expect("a CA key");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(
        DnType::CommonName,
        format!("shipit git test CA {}", unique()),
    );
    let ca_cert = ca_params.self_signed(&ca_key).expect("a self-signed CA");
    let issuer = Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate().expect("a server key");
    let params = CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
        .expect("server parameters");
    let cert = params
        .signed_by(&key, &issuer)
        .expect("a server certificate");
    let key = rustls_pki_types::PrivateKeyDer::try_from(key.serialize_der()).expect("a PKCS#8 key");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_no_client_auth()
        .with_single_cert(vec![cert.der().clone(), ca_cert.der().clone()], key)
        .expect("a TLS server configuration");
    (ca_cert.pem(), Arc::new(config))
}

fn unique() -> String {
    static COUNTER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let since_epoch = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    format!("{}-{}-{n}", std::process::id(), since_epoch.as_nanos())
}

/// OpenSSH's sshd on 127.0.0.1, letting in the current user with one key.
pub struct Sshd {
    pub port: u16,
    /// The user the key logs in as: whoever runs the tests.
    pub user: String,
    /// The private key the server accepts.
    pub client_key: PathBuf,
    /// The server's host key as a known_hosts line (`[127.0.0.1]:PORT ssh-ed25519 AAAA...`).
    pub known_hosts_line: String,
    child: Child,
}

impl Sshd {
    /// Starts sshd with keys and config made in `dir`. The binary is `SHIPIT_TEST_SSHD`,
    /// which `scripts/testenv` installs and exports.
    pub fn start(dir: &Path) -> Sshd {
        let sshd = std::env::var_os("SHIPIT_TEST_SSHD").unwrap_or_else(|| {
            panic!(
                "SHIPIT_TEST_SSHD is not set: the SSH fetch tests need OpenSSH's sshd; run them through scripts/test (scripts/testenv installs openssh-server)"
            )
        });
        std::fs::create_dir_all(dir).unwrap();
        let host_key = dir.join("ssh_host_ed25519_key");
        let client_key = dir.join("client_ed25519_key");
        for key in [&host_key, &client_key] {
            keygen(key);
        }
        std::fs::copy(
            client_key.with_extension("pub"),
            dir.join("authorized_keys"),
        )
        .unwrap();
        let user = current_user();
        // A port picked by the kernel, then handed to sshd: another process could take it in
        // between, so a start that fails to listen is tried again on a fresh port.
        for _ in 0..5 {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("a free port on 127.0.0.1")
                .port();
            let config = dir.join("sshd_config");
            std::fs::write(
                &config,
                format!(
                    "ListenAddress 127.0.0.1\nPort {port}\nHostKey {}\nAuthorizedKeysFile {}\nPidFile none\nStrictModes no\nUsePAM no\nPasswordAuthentication no\nKbdInteractiveAuthentication no\nPermitRootLogin prohibit-password\nAllowUsers {user}\nLogLevel VERBOSE\n",
                    host_key.display(),
                    dir.join("authorized_keys").display()
                ),
            )
            .unwrap();
            let log = dir.join(format!("sshd-{port}.log"));
            let child = Command::new(&sshd)
                .args(["-D", "-e", "-f"])
                .arg(&config)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(&log).unwrap())
                .spawn()
                .unwrap_or_else(|e| panic!("{} does not start: {e}", Path::new(&sshd).display()));
            let mut child = child;
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                let logged = std::fs::read_to_string(&log).unwrap_or_default();
                if logged.contains("Server listening") {
                    let host_key_pub =
                        std::fs::read_to_string(host_key.with_extension("pub")).unwrap();
                    let key: Vec<&str> = host_key_pub.split_whitespace().take(2).collect();
                    return Sshd {
                        port,
                        user,
                        client_key,
                        known_hosts_line: format!("[127.0.0.1]:{port} {}", key.join(" ")),
                        child,
                    };
                }
                if let Ok(Some(_)) = child.try_wait() {
                    assert!(
                        logged.contains("Address already in use"),
                        "sshd stopped at start:\n{logged}\n(as root it needs /run/sshd, which scripts/testenv makes)"
                    );
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "sshd did not listen in 10 s:\n{logged}"
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        panic!("sshd found no free port in five tries");
    }

    /// The ssh URL of the bare repository at `path`.
    pub fn url(&self, path: &Path) -> String {
        format!(
            "ssh://{}@127.0.0.1:{}{}",
            self.user,
            self.port,
            path.display()
        )
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An ed25519 key pair without passphrase at `path` and `path.pub`.
pub fn keygen(path: &Path) {
    let status = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "shipit-tests", "-f"])
        .arg(path)
        .stdin(Stdio::null())
        .status()
        .expect("ssh-keygen runs (openssh-client)");
    assert!(status.success(), "ssh-keygen failed");
}

fn current_user() -> String {
    let out = Command::new("id").arg("-un").output().expect("id runs");
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}
