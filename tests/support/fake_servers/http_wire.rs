//! Raw HTTP/1.1 pieces the fake servers of the tests share: reading a request head, draining
//! a body, writing a whole answer, relaying a request to the real server behind.

use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

pub async fn read_head(stream: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if stream.read(&mut byte).await? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        head.push(byte[0]);
        if head.len() > 64 * 1024 {
            return Err(std::io::ErrorKind::InvalidData.into());
        }
    }
    Ok(head)
}

/// A header's value in a request head.
pub fn head_value(head: &str, wanted: &str) -> Option<String> {
    head.lines().skip(1).find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.trim()
            .eq_ignore_ascii_case(wanted)
            .then(|| value.trim().to_string())
    })
}

/// Reads and discards up to `limit` bytes of the request body the head announces (bounded in
/// size and time).
pub async fn drain_body_up_to(stream: &mut TcpStream, head: &str, limit: u64) {
    let length = head_value(head, "content-length")
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0)
        .min(limit);
    let mut remaining = length;
    let mut buffer = vec![0u8; 64 * 1024];
    let drain = async {
        while remaining > 0 {
            let want = buffer.len().min(remaining as usize);
            match stream.read(&mut buffer[..want]).await {
                Ok(0) | Err(_) => break,
                Ok(n) => remaining -= n as u64,
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(10), drain).await;
}

pub async fn drain_body(stream: &mut TcpStream, head: &str) {
    drain_body_up_to(stream, head, 256 * 1024 * 1024).await;
}

pub fn http_date(at: SystemTime) -> String {
    chrono::DateTime::<chrono::Utc>::from(at)
        .format("%a, %d %b %Y %H:%M:%S GMT")
        .to_string()
}

/// Writes one whole answer and closes.
pub async fn answer(
    client: &mut TcpStream,
    code: u16,
    extra_headers: &str,
    body: &str,
) -> std::io::Result<()> {
    let reason = match code {
        200 => "OK",
        401 => "Unauthorized",
        404 => "Not Found",
        429 => "Too Many Requests",
        503 => "Service Unavailable",
        _ => "Error",
    };
    let response = format!(
        "HTTP/1.1 {code} {reason}\r\nContent-Type: application/json\r\n{extra_headers}\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    client.write_all(response.as_bytes()).await?;
    client.shutdown().await
}

/// The request head with `Connection: close` and without `drop_headers`.
pub fn close_after(head: &str, drop_headers: &[&str]) -> String {
    let mut rewritten = String::new();
    for line in head.trim_end_matches("\r\n").split("\r\n") {
        let name = line
            .split(':')
            .next()
            .unwrap_or_default()
            .to_ascii_lowercase();
        if name == "connection" || drop_headers.contains(&name.as_str()) {
            continue;
        }
        rewritten.push_str(line);
        rewritten.push_str("\r\n");
    }
    rewritten.push_str("Connection: close\r\n\r\n");
    rewritten
}

/// Sends the request on to `upstream` on a connection of its own and relays the answer.
pub async fn forward(
    client: &mut TcpStream,
    head: &str,
    upstream: SocketAddr,
    drop_headers: &[&str],
) -> std::io::Result<()> {
    let mut server = TcpStream::connect(upstream).await?;
    server
        .write_all(close_after(head, drop_headers).as_bytes())
        .await?;
    tokio::io::copy_bidirectional(client, &mut server).await?;
    Ok(())
}
