//! A unix-socket proxy in front of the test environment's Docker daemon, for tests that need
//! the connection to misbehave the way a real one can: cut in the middle of a call, or deliver
//! the daemon's messages in pieces.

use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::UnixStream;

/// How the proxy hands the daemon's answers to the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// Byte for byte, as the daemon sends them.
    AsIs,
    /// Each JSON message (`…}\r\n`) is delivered in two reads: up to its closing brace, then its
    /// line end. A daemon does this whenever a message straddles one of its socket writes or
    /// the client's read buffer; the proxy makes it happen to every message.
    LineEndsApart,
}

/// The proxy: listening until dropped or cut.
pub struct DaemonProxy {
    _dir: tempfile::TempDir,
    socket: PathBuf,
    task: tokio::task::JoinHandle<()>,
}

impl DaemonProxy {
    /// Starts a proxy to the daemon `DOCKER_HOST` names (the test environment's).
    pub fn start(delivery: Delivery) -> DaemonProxy {
        let dir = tempfile::tempdir().expect("a temp dir for the proxy socket");
        let socket = dir.path().join("docker.sock");
        let listener =
            tokio::net::UnixListener::bind(&socket).expect("failed to bind the proxy socket");
        let upstream = Arc::new(Upstream::from_env());
        let task = tokio::spawn(async move {
            // The connections live in this set: aborting the task drops them all at once.
            let mut connections = tokio::task::JoinSet::new();
            while let Ok((client, _)) = listener.accept().await {
                let upstream = Arc::clone(&upstream);
                connections.spawn(async move {
                    match upstream.as_ref() {
                        Upstream::Unix(path) => {
                            if let Ok(server) = UnixStream::connect(path).await {
                                relay(client, server, delivery).await;
                            }
                        }
                        Upstream::Tcp(address) => {
                            if let Ok(server) = tokio::net::TcpStream::connect(address).await {
                                relay(client, server, delivery).await;
                            }
                        }
                    }
                });
            }
        });
        DaemonProxy {
            _dir: dir,
            socket,
            task,
        }
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// The proxy as shipit names a daemon.
    pub fn endpoint(&self) -> shipit::docker::DaemonEndpoint {
        shipit::docker::DaemonEndpoint::Unix {
            path: self.socket.clone(),
        }
    }

    /// Cuts every connection and stops accepting new ones: the daemon is gone.
    pub fn cut(&self) {
        self.task.abort();
    }
}

impl Drop for DaemonProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

enum Upstream {
    Unix(PathBuf),
    Tcp(String),
}

impl Upstream {
    fn from_env() -> Upstream {
        let host = super::scenario::daemon_host();
        if let Some(path) = host.strip_prefix("unix://") {
            Upstream::Unix(PathBuf::from(path))
        } else if let Some(address) = host.strip_prefix("tcp://") {
            Upstream::Tcp(address.to_owned())
        } else {
            panic!("the daemon proxy relays to unix:// or tcp:// hosts, not {host}")
        }
    }
}

async fn relay<S>(client: UnixStream, server: S, delivery: Delivery)
where
    S: AsyncRead + AsyncWrite + Send + Unpin,
{
    match delivery {
        Delivery::AsIs => {
            let (mut client, mut server) = (client, server);
            let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
        }
        Delivery::LineEndsApart => {
            let (client_read, client_write) = client.into_split();
            let (server_read, server_write) = tokio::io::split(server);
            let requests = copy_then_close(client_read, server_write);
            let answers = answers_with_line_ends_apart(server_read, client_write);
            let _ = tokio::join!(requests, answers);
        }
    }
}

async fn copy_then_close(
    mut from: impl AsyncRead + Unpin,
    mut to: impl AsyncWrite + Unpin,
) -> std::io::Result<()> {
    tokio::io::copy(&mut from, &mut to).await?;
    to.shutdown().await
}

const MESSAGE_END: &[u8] = b"}\r\n";

async fn answers_with_line_ends_apart(
    mut from: impl AsyncRead + Unpin,
    mut to: tokio::net::unix::OwnedWriteHalf,
) -> std::io::Result<()> {
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        let read = from.read(&mut buffer).await?;
        if read == 0 {
            return to.shutdown().await;
        }
        let mut rest = &buffer[..read];
        while let Some(at) = find(rest, MESSAGE_END) {
            let (message, line_end) = rest.split_at(at + 1);
            to.write_all(message).await?;
            client_has_read_everything(&to).await;
            rest = line_end;
        }
        to.write_all(rest).await?;
    }
}

/// Waits until the client has read every byte written to it, so the next write reaches it in
/// a read of its own. Gives up after a while: the client may have stopped reading for good.
async fn client_has_read_everything(to: &tokio::net::unix::OwnedWriteHalf) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while unread_bytes(to) > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// Bytes written to a unix socket that its peer has not read yet (`SIOCOUTQ`, which Linux
/// numbers like `TIOCOUTQ`).
fn unread_bytes(socket: &tokio::net::unix::OwnedWriteHalf) -> i32 {
    let stream: &UnixStream = socket.as_ref();
    let mut unread: libc::c_int = 0;
    // SAFETY: the descriptor is open for the life of `socket`, and SIOCOUTQ writes one int.
    let status = unsafe { libc::ioctl(stream.as_raw_fd(), libc::TIOCOUTQ, &mut unread) };
    if status == 0 { unread } else { 0 }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}
