//! A token-auth front on 127.0.0.1: the Docker token protocol in front of an open registry.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use tokio::io::AsyncReadExt as _;
use tokio::net::{TcpListener, TcpStream};

use super::http_wire::{answer, drain_body, forward, head_value, read_head};

/// What a `TokenFront` saw and did.
#[derive(Default)]
pub struct FrontLog {
    /// Tokens issued, in order.
    pub issued: Vec<String>,
    /// The query of every token request that was granted.
    pub token_queries: Vec<String>,
    /// Token requests refused for wrong or missing credentials.
    pub token_refusals: usize,
    /// Registry requests answered 401 (no token, unknown token, or the first one expired).
    pub challenged: usize,
    /// Registry requests forwarded, with the token each carried.
    pub forwarded: Vec<(String, String)>,
}

/// Answers registry requests without a valid `Authorization: Bearer` with a 401 and a Bearer
/// challenge naming its own `/token` endpoint; that endpoint checks Basic credentials and
/// issues tokens; requests with a valid token go on to `upstream` (an open registry). After
/// `first_token_uses` requests the first token is refused, as if it had expired.
pub struct TokenFront {
    addr: SocketAddr,
    pub log: Arc<Mutex<FrontLog>>,
}

pub const FRONT_SERVICE: &str = "shipit-test-registry";
/// The identity token (OAuth2 refresh token) the token front takes in its POST grant.
pub const FRONT_IDENTITY_TOKEN: &str = "front-identity-s3cret-refresh";

impl TokenFront {
    pub async fn start(
        upstream: &str,
        user: &str,
        password: &str,
        first_token_uses: Option<usize>,
    ) -> TokenFront {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let upstream: SocketAddr = upstream.parse().expect("upstream is an ip:port");
        let expected = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
        );
        let log: Arc<Mutex<FrontLog>> = Arc::default();
        let first_uses = Arc::new(AtomicUsize::new(0));
        let log_task = log.clone();
        tokio::spawn(async move {
            for _ in 0..2000 {
                let Ok((client, _)) = listener.accept().await else {
                    return;
                };
                let log = log_task.clone();
                let expected = expected.clone();
                let first_uses = first_uses.clone();
                tokio::spawn(async move {
                    let _ = front_connection(
                        client,
                        addr,
                        upstream,
                        &expected,
                        first_token_uses,
                        &first_uses,
                        &log,
                    )
                    .await;
                });
            }
        });
        TokenFront { addr, log }
    }

    pub fn host(&self) -> String {
        self.addr.to_string()
    }
}

/// A token no one else was given.
fn new_token() -> String {
    static ISSUED: AtomicUsize = AtomicUsize::new(0);
    format!(
        "front-token-{:x}-{}",
        rand::random::<u64>(),
        ISSUED.fetch_add(1, Ordering::SeqCst)
    )
}

async fn front_connection(
    mut client: TcpStream,
    addr: SocketAddr,
    upstream: SocketAddr,
    expected_basic: &str,
    first_token_uses: Option<usize>,
    first_uses: &AtomicUsize,
    log: &Mutex<FrontLog>,
) -> std::io::Result<()> {
    let head = String::from_utf8_lossy(&read_head(&mut client).await?).into_owned();
    let path = head
        .lines()
        .next()
        .and_then(|line| line.split_whitespace().nth(1))
        .unwrap_or_default()
        .to_string();
    let authorization = head_value(&head, "authorization").unwrap_or_default();
    if head.starts_with("POST /token") {
        // OAuth2's refresh-token grant: what a client holding an identity token sends.
        let length: usize = head_value(&head, "content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let mut body = vec![0u8; length];
        client.read_exact(&mut body).await?;
        let form: Vec<(String, String)> = form_urlencoded::parse(&body)
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        let field = |name: &str| {
            form.iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
                .unwrap_or_default()
        };
        if field("grant_type") != "refresh_token"
            || field("refresh_token") != FRONT_IDENTITY_TOKEN
            || field("service") != FRONT_SERVICE
        {
            log.lock().unwrap().token_refusals += 1;
            return answer(&mut client, 401, "", "{\"error\":\"invalid_grant\"}").await;
        }
        let token = new_token();
        {
            let mut log = log.lock().unwrap();
            log.issued.push(token.clone());
            log.token_queries
                .push(format!("oauth scope={}", field("scope")));
        }
        let body = serde_json::json!({"access_token": token, "expires_in": 300}).to_string();
        return answer(&mut client, 200, "", &body).await;
    }
    if let Some(query) = path.strip_prefix("/token") {
        if authorization != expected_basic {
            log.lock().unwrap().token_refusals += 1;
            return answer(
                &mut client,
                401,
                "",
                "{\"details\":\"incorrect username or password\"}",
            )
            .await;
        }
        let token = new_token();
        {
            let mut log = log.lock().unwrap();
            log.issued.push(token.clone());
            log.token_queries.push(query.to_string());
        }
        let body = serde_json::json!({"token": token, "expires_in": 300}).to_string();
        return answer(&mut client, 200, "", &body).await;
    }
    let token = authorization
        .strip_prefix("Bearer ")
        .unwrap_or_default()
        .to_string();
    let valid = {
        let log = log.lock().unwrap();
        match log.issued.iter().position(|t| *t == token) {
            Some(0) => match first_token_uses {
                Some(limit) => first_uses.fetch_add(1, Ordering::SeqCst) < limit,
                None => true,
            },
            Some(_) => true,
            None => false,
        }
    };
    if !valid {
        drain_body(&mut client, &head).await;
        log.lock().unwrap().challenged += 1;
        // The scope a registry names: the repository in the path, if any.
        let repository = path
            .strip_prefix("/v2/")
            .and_then(|rest| {
                ["/blobs/", "/manifests/", "/tags/"]
                    .iter()
                    .find_map(|marker| rest.split_once(marker).map(|(repo, _)| repo))
            })
            .map(str::to_string);
        let scope = repository
            .map(|r| format!(",scope=\"repository:{r}:pull,push\""))
            .unwrap_or_default();
        let challenge = format!(
            "WWW-Authenticate: Bearer realm=\"http://{addr}/token\",service=\"{FRONT_SERVICE}\"{scope}\r\n"
        );
        let body =
            "{\"errors\":[{\"code\":\"UNAUTHORIZED\",\"message\":\"authentication required\"}]}";
        return answer(&mut client, 401, &challenge, body).await;
    }
    log.lock().unwrap().forwarded.push((path, token));
    forward(&mut client, &head, upstream, &["authorization"]).await
}
