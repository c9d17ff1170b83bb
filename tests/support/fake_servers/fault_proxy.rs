//! A fault-injecting HTTP proxy on 127.0.0.1, in front of a real registry: by rule it answers
//! a request with an error status, a `Retry-After`, a reset, a body cut short, an echo of the
//! credentials, ECR's way of answering a chunk, or holds it unanswered; it records every
//! request it sees. Every request is forced onto its own connection, so each can be inspected.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

use super::http_wire::{
    answer, close_after, drain_body, drain_body_up_to, forward, head_value, http_date, read_head,
};

/// What the proxy does instead of forwarding a request.
#[derive(Clone, Copy, Debug)]
pub enum Fault {
    /// Answer with this status and body, and close (a 429 says `Retry-After: 1`).
    Status(u16, &'static str),
    /// Answer with this status and a `Retry-After` header (and a `Date` header, as servers do).
    RetryAfter(u16, After),
    /// Reset the connection without answering.
    Reset,
    /// Read this many bytes of the request body, then reset the connection; nothing reaches
    /// the registry, so it still holds what it acknowledged before.
    CutBody(usize),
    /// Answer with this status and an error envelope that echoes the request's credentials,
    /// as a careless proxy or registry might.
    EchoCredentials(u16),
    /// Forward, then answer a chunk's PATCH as ECR does: `201 Created` instead of `202`, and a
    /// `Range` stuck at the end of the first chunk.
    EcrLikeChunk,
    /// Take the request in and never answer: the client stays in the middle of it (an upload
    /// held mid-way) until it gives up, or for five minutes at most.
    Hold,
}

/// The form of an injected `Retry-After`.
#[derive(Clone, Copy, Debug)]
pub enum After {
    /// Delay-seconds: `Retry-After: 2`.
    Seconds(u64),
    /// An HTTP-date this many seconds after the answer's own `Date`.
    DateIn(u64),
}

/// Which requests get a fault: those with `method` whose path holds `path_contains`, at the
/// turns `fail_on` names.
#[derive(Clone, Debug)]
pub struct Rule {
    pub method: &'static str,
    pub path_contains: &'static str,
    /// Which matching requests fail (1-based).
    pub fail_on: Vec<usize>,
    pub fault: Fault,
}

/// A request the proxy saw.
#[derive(Clone)]
pub struct Seen {
    pub at: Instant,
    pub wall: SystemTime,
    pub method: String,
    /// Path and query, as sent.
    pub path: String,
    pub content_range: Option<String>,
    pub injected: bool,
    /// For an injected Retry-After: the earliest time the header allows the next try.
    pub not_before: Option<SystemTime>,
}

impl Seen {
    /// The path without its query (an upload's location carries changing state there).
    pub fn resource(&self) -> &str {
        self.path.split('?').next().unwrap_or_default()
    }

    /// Where a PATCH's Content-Range starts.
    pub fn range_start(&self) -> Option<u64> {
        self.content_range
            .as_deref()?
            .split('-')
            .next()?
            .trim()
            .parse()
            .ok()
    }
}

impl std::fmt::Debug for Seen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.method, self.resource())?;
        if let Some(range) = &self.content_range {
            write!(f, " [{range}]")?;
        }
        if self.injected {
            write!(f, " (fault)")?;
        }
        Ok(())
    }
}

/// An HTTP proxy on 127.0.0.1 in front of a real registry that injects faults by rule and
/// records every request it sees.
pub struct FaultProxy {
    addr: SocketAddr,
    requests: Arc<Mutex<Vec<Seen>>>,
    injected: Arc<AtomicUsize>,
    /// Told of every request seen, for `wait_for`.
    seen_one: Arc<Notify>,
}

impl FaultProxy {
    /// Forwards to `upstream`, applying `rules`. Every request is forced onto its own
    /// connection (`Connection: close`) so each one can be inspected.
    pub async fn start(upstream: &str, rules: Vec<Rule>) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let upstream: SocketAddr = upstream.parse().expect("upstream is an ip:port");
        let requests = Arc::new(Mutex::new(Vec::new()));
        let injected = Arc::new(AtomicUsize::new(0));
        let counters: Arc<Mutex<HashMap<usize, usize>>> = Arc::default();
        let rules = Arc::new(rules);
        let seen_one = Arc::new(Notify::new());
        let (requests_task, injected_task, seen_task) =
            (requests.clone(), injected.clone(), seen_one.clone());
        tokio::spawn(async move {
            // Bounded: a test never needs more connections than this.
            for _ in 0..5000 {
                let Ok((client, _)) = listener.accept().await else {
                    return;
                };
                let rules = rules.clone();
                let counters = counters.clone();
                let requests = requests_task.clone();
                let injected = injected_task.clone();
                let seen = seen_task.clone();
                tokio::spawn(async move {
                    let _ = handle_connection(
                        client, upstream, &rules, &counters, &requests, &injected, &seen,
                    )
                    .await;
                });
            }
        });
        FaultProxy {
            addr,
            requests,
            injected,
            seen_one,
        }
    }

    /// `127.0.0.1:<port>`, the host to push to.
    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    /// Every request seen so far, in order.
    pub fn seen(&self) -> Vec<Seen> {
        self.requests.lock().unwrap().clone()
    }

    /// How many faults were injected.
    pub fn injected(&self) -> usize {
        self.injected.load(Ordering::SeqCst)
    }

    /// Waits until a request that `matches` has been seen, and gives it; fails the test after
    /// `timeout`.
    pub async fn wait_for(
        &self,
        what: &str,
        timeout: Duration,
        matches: impl Fn(&Seen) -> bool,
    ) -> Seen {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            // Registered before looking, so a request seen in between still wakes this up.
            let notified = self.seen_one.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(seen) = self.seen().into_iter().find(|seen| matches(seen)) {
                return seen;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                panic!(
                    "no {what} within {timeout:?}; the proxy saw {:?}",
                    self.seen()
                );
            }
        }
    }
}

async fn handle_connection(
    mut client: TcpStream,
    upstream: SocketAddr,
    rules: &[Rule],
    counters: &Mutex<HashMap<usize, usize>>,
    requests: &Mutex<Vec<Seen>>,
    injected: &AtomicUsize,
    seen_one: &Notify,
) -> std::io::Result<()> {
    let head = read_head(&mut client).await?;
    let text = String::from_utf8_lossy(&head).into_owned();
    let request_line = text.lines().next().unwrap_or_default().to_string();
    let mut parts = request_line.split_whitespace();
    let (method, path) = (
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
    );
    // Every matching rule counts the request; the first whose turn it is applies.
    let mut fault = None;
    for (index, rule) in rules.iter().enumerate() {
        if rule.method == method && path.contains(rule.path_contains) {
            let mut counters = counters.lock().unwrap();
            let seen = counters.entry(index).or_insert(0);
            *seen += 1;
            if fault.is_none() && rule.fail_on.contains(seen) {
                fault = Some(rule.fault);
            }
        }
    }
    let wall = SystemTime::now();
    let not_before = match fault {
        Some(Fault::RetryAfter(_, After::Seconds(secs))) => Some(wall + Duration::from_secs(secs)),
        // HTTP-dates have whole seconds: the Date sent is `wall` rounded down.
        Some(Fault::RetryAfter(_, After::DateIn(secs))) => {
            Some(whole_seconds(wall) + Duration::from_secs(secs))
        }
        _ => None,
    };
    requests.lock().unwrap().push(Seen {
        at: Instant::now(),
        wall,
        method: method.to_string(),
        path: path.to_string(),
        content_range: head_value(&text, "content-range"),
        injected: fault.is_some(),
        not_before,
    });
    if fault.is_some() {
        injected.fetch_add(1, Ordering::SeqCst);
    }
    seen_one.notify_waiters();
    match fault {
        Some(Fault::Reset) => {
            // Closing with unread request bytes makes the kernel answer with a reset.
            drop(client);
            Ok(())
        }
        Some(Fault::CutBody(after)) => {
            drain_body_up_to(&mut client, &text, after as u64).await;
            drop(client);
            Ok(())
        }
        Some(Fault::Status(code, body)) => {
            // A registry reads the request before it answers; answering first would let the
            // client see a broken pipe instead of the status, depending on timing.
            drain_body(&mut client, &text).await;
            let extra = if code == 429 {
                "Retry-After: 1\r\n"
            } else {
                ""
            };
            answer(&mut client, code, extra, body).await
        }
        Some(Fault::RetryAfter(code, after)) => {
            drain_body(&mut client, &text).await;
            let value = match after {
                After::Seconds(secs) => secs.to_string(),
                After::DateIn(_) => http_date(not_before.expect("a date was chosen")),
            };
            let extra = format!("Date: {}\r\nRetry-After: {value}\r\n", http_date(wall));
            let body = "{\"errors\":[{\"code\":\"TOOMANYREQUESTS\",\"message\":\"slow down\"}]}";
            answer(&mut client, code, &extra, body).await
        }
        Some(Fault::EchoCredentials(code)) => {
            drain_body(&mut client, &text).await;
            let authorization = head_value(&text, "authorization").unwrap_or_default();
            let decoded = authorization
                .strip_prefix("Basic ")
                .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .unwrap_or_default();
            let message = format!("not accepted for Authorization: {authorization} ({decoded})");
            let body = serde_json::json!({
                "errors": [{"code": "MANIFEST_INVALID", "message": message}]
            })
            .to_string();
            answer(&mut client, code, "", &body).await
        }
        Some(Fault::EcrLikeChunk) => {
            let mut server = TcpStream::connect(upstream).await?;
            server.write_all(close_after(&text, &[]).as_bytes()).await?;
            let length = head_value(&text, "content-length")
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0);
            tokio::io::copy(&mut (&mut client).take(length), &mut server).await?;
            let answer = String::from_utf8_lossy(&read_head(&mut server).await?).into_owned();
            let mut rewritten = String::new();
            for line in answer.trim_end_matches("\r\n").split("\r\n") {
                if line.starts_with("HTTP/1.1 202") {
                    rewritten.push_str("HTTP/1.1 201 Created\r\n");
                } else if line.to_ascii_lowercase().starts_with("range:") {
                    rewritten.push_str("Range: 0-16777215\r\n");
                } else {
                    rewritten.push_str(line);
                    rewritten.push_str("\r\n");
                }
            }
            rewritten.push_str("\r\n");
            client.write_all(rewritten.as_bytes()).await?;
            tokio::io::copy(&mut server, &mut client).await?;
            client.shutdown().await
        }
        Some(Fault::Hold) => {
            // Read what the client sends and never answer, until it gives up on the request.
            let mut buffer = vec![0u8; 64 * 1024];
            let hold = async {
                while let Ok(n) = client.read(&mut buffer).await {
                    if n == 0 {
                        break;
                    }
                }
            };
            let _ = tokio::time::timeout(Duration::from_secs(300), hold).await;
            Ok(())
        }
        None => forward(&mut client, &text, upstream, &[]).await,
    }
}

fn whole_seconds(at: SystemTime) -> SystemTime {
    let since = at.duration_since(UNIX_EPOCH).unwrap();
    UNIX_EPOCH + Duration::from_secs(since.as_secs())
}
