//! shipit's own health probes: an HTTP GET from where shipit runs, or a command run inside
//! the container with `docker exec`. Each returns a `ProbeResult` whose failure text reads
//! well in a report; deciding what the results mean is `health::decide`'s job.

use std::time::Duration;

use bollard::Docker;
use bollard::exec::{StartExecOptions, StartExecResults};
use bollard::models::ExecConfig;
use futures::StreamExt;
use http_body_util::Empty;
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use super::health::ProbeResult;

/// Where and how to GET.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HttpProbe {
    pub host: String,
    pub port: u16,
    pub path: String,
    /// Exact status to expect; `None` accepts 200 to 399.
    pub expect_status: Option<u16>,
}

impl HttpProbe {
    pub(crate) fn url(&self) -> String {
        format!("http://{}{}", self.authority(), self.path)
    }

    fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    fn accepts(&self, status: u16) -> bool {
        match self.expect_status {
            Some(expected) => status == expected,
            None => (200..400).contains(&status),
        }
    }
}

/// One GET, with a fresh connection each time so a server that stopped accepting new
/// connections is noticed. The whole exchange must finish within `timeout`.
pub(crate) async fn probe_http(probe: &HttpProbe, timeout: Duration) -> ProbeResult {
    match tokio::time::timeout(timeout, get_status(probe)).await {
        Ok(Ok(status)) if probe.accepts(status) => ProbeResult::Passed,
        Ok(Ok(status)) => ProbeResult::Failed(format!(
            "GET {} answered {status}{}",
            probe.url(),
            match probe.expect_status {
                Some(expected) => format!(", expected {expected}"),
                None => String::new(),
            }
        )),
        Ok(Err(reason)) => ProbeResult::Failed(format!("GET {} failed: {reason}", probe.url())),
        Err(_) => ProbeResult::Failed(format!(
            "GET {} did not answer within {}",
            probe.url(),
            humantime::format_duration(timeout)
        )),
    }
}

async fn get_status(probe: &HttpProbe) -> Result<u16, String> {
    let stream = TcpStream::connect((probe.host.as_str(), probe.port))
        .await
        .map_err(|error| error.to_string())?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|error| error.to_string())?;
    // The connection task ends when the response is read and the sender dropped.
    let driver = tokio::spawn(connection);
    let request = hyper::Request::get(probe.path.as_str())
        .header(hyper::header::HOST, probe.authority())
        .header(hyper::header::USER_AGENT, "shipit-health-probe")
        .body(Empty::<Bytes>::new())
        .map_err(|error| error.to_string())?;
    let response = sender.send_request(request).await;
    drop(sender);
    driver.abort();
    response
        .map(|response| response.status().as_u16())
        .map_err(|error| error.to_string())
}

/// Whether something already accepts connections on `host:port`. Used before starting new
/// replicas: with host networking a squatter on the port would answer the probe in place of
/// the new container, and the gate would pass a version that never started.
pub(crate) async fn is_port_taken(host: &str, port: u16) -> bool {
    matches!(
        tokio::time::timeout(Duration::from_secs(1), TcpStream::connect((host, port))).await,
        Ok(Ok(_))
    )
}

/// Runs `command` inside the container; exit code 0 passes. Daemon errors count as a failed
/// probe, not as a failed deploy: the container state check that runs with every probe
/// tells a dead container from a flaky exec.
pub(crate) async fn probe_command(
    docker: &Docker,
    container: &str,
    command: &[String],
    timeout: Duration,
) -> ProbeResult {
    match tokio::time::timeout(timeout, run_exec(docker, container, command)).await {
        Ok(Ok((0, _))) => ProbeResult::Passed,
        Ok(Ok((code, output))) => {
            let last_line = output
                .lines()
                .rev()
                .find(|line| !line.trim().is_empty())
                .map(|line| format!(": {}", line.trim()))
                .unwrap_or_default();
            ProbeResult::Failed(format!(
                "`{}` exited with {code}{last_line}",
                command.join(" ")
            ))
        }
        Ok(Err(error)) => ProbeResult::Failed(format!(
            "failed to run `{}` in the container: {error}",
            command.join(" ")
        )),
        Err(_) => ProbeResult::Failed(format!(
            "`{}` did not finish within {}",
            command.join(" "),
            humantime::format_duration(timeout)
        )),
    }
}

/// The most probe output kept: only the last line is reported.
const MAX_PROBE_OUTPUT: usize = 16 * 1024;

async fn run_exec(
    docker: &Docker,
    container: &str,
    command: &[String],
) -> Result<(i64, String), bollard::errors::Error> {
    let exec = docker
        .create_exec(
            container,
            ExecConfig {
                cmd: Some(command.to_vec()),
                attach_stdout: Some(true),
                attach_stderr: Some(true),
                ..ExecConfig::default()
            },
        )
        .await?;
    let mut output = String::new();
    let started = docker
        .start_exec(
            &exec.id,
            Some(StartExecOptions {
                detach: false,
                tty: false,
                output_capacity: None,
            }),
        )
        .await?;
    if let StartExecResults::Attached {
        output: mut stream, ..
    } = started
    {
        while let Some(chunk) = stream.next().await {
            output.push_str(&chunk?.to_string());
            if output.len() > MAX_PROBE_OUTPUT {
                let cut = output.len() - MAX_PROBE_OUTPUT;
                let cut = (cut..output.len())
                    .find(|index| output.is_char_boundary(*index))
                    .unwrap_or(output.len());
                output.drain(..cut);
            }
        }
    }
    let inspected = docker.inspect_exec(&exec.id).await?;
    // An exec whose process vanished without an exit code did not pass.
    Ok((inspected.exit_code.unwrap_or(-1), output))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// A one-shot server answering every connection with `status`.
    async fn serve(status: u16) -> u16 {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let mut buffer = [0u8; 1024];
                let _ = socket.read(&mut buffer).await;
                let response = format!(
                    "HTTP/1.1 {status} X\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok"
                );
                let _ = socket.write_all(response.as_bytes()).await;
            }
        });
        port
    }

    fn probe(port: u16, expect_status: Option<u16>) -> HttpProbe {
        HttpProbe {
            host: "127.0.0.1".into(),
            port,
            path: "/health".into(),
            expect_status,
        }
    }

    #[tokio::test]
    async fn a_200_passes_the_default_expectation() {
        let port = serve(200).await;
        assert_eq!(
            probe_http(&probe(port, None), Duration::from_secs(2)).await,
            ProbeResult::Passed
        );
    }

    #[tokio::test]
    async fn a_500_fails_with_the_status_in_the_detail() {
        let port = serve(500).await;
        match probe_http(&probe(port, None), Duration::from_secs(2)).await {
            ProbeResult::Failed(detail) => assert!(detail.ends_with("answered 500"), "{detail}"),
            other => panic!("expected a failure, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn an_exact_expected_status_must_match() {
        let port = serve(204).await;
        assert!(matches!(
            probe_http(&probe(port, Some(200)), Duration::from_secs(2)).await,
            ProbeResult::Failed(_)
        ));
        assert_eq!(
            probe_http(&probe(port, Some(204)), Duration::from_secs(2)).await,
            ProbeResult::Passed
        );
    }

    #[tokio::test]
    async fn a_closed_port_fails_and_is_free() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        drop(listener);
        assert!(matches!(
            probe_http(&probe(port, None), Duration::from_secs(2)).await,
            ProbeResult::Failed(_)
        ));
        assert!(!is_port_taken("127.0.0.1", port).await);
    }

    #[tokio::test]
    async fn a_listening_port_is_taken() {
        let port = serve(200).await;
        assert!(is_port_taken("127.0.0.1", port).await);
    }
}
