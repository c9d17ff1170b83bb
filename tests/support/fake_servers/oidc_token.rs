//! GitHub Actions' OIDC token endpoint, as a job with `permissions: id-token: write` sees it
//! (`ACTIONS_ID_TOKEN_REQUEST_URL`, `ACTIONS_ID_TOKEN_REQUEST_TOKEN`), on 127.0.0.1: a GET with
//! the request token as bearer and an `audience` query parameter is answered with
//! `{"value": "<jwt>"}`; anything else, or every request when told to refuse, with a 403.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use tokio::net::TcpListener;

use super::http_wire::{answer, head_value, read_head};

/// What the endpoint saw.
#[derive(Default, Debug, Clone)]
pub struct TokenRequests {
    /// The audience of every request that was answered with a token.
    pub granted_audiences: Vec<String>,
    /// Requests answered 403.
    pub refused: usize,
}

pub struct OidcTokenEndpoint {
    addr: SocketAddr,
    /// The request token a job would be given.
    pub request_token: String,
    /// The token the endpoint hands out.
    pub jwt: String,
    pub requests: Arc<Mutex<TokenRequests>>,
}

/// A JWT-shaped token (three base64url parts) whose payload names `subject`.
fn jwt_for(subject: &str) -> String {
    let part = |json: serde_json::Value| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json.to_string())
    };
    format!(
        "{}.{}.{}",
        part(serde_json::json!({"alg": "RS256", "typ": "JWT"})),
        part(serde_json::json!({
            "iss": "https://token.actions.githubusercontent.com",
            "aud": "sts.amazonaws.com",
            "sub": subject,
        })),
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>())
    )
}

impl OidcTokenEndpoint {
    /// Starts the endpoint; with `refuse_all` every request gets a 403, as for a job without
    /// `id-token: write` whose variables were copied from elsewhere.
    pub async fn start(subject: &str, refuse_all: bool) -> OidcTokenEndpoint {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let request_token = format!("request-{:016x}", rand::random::<u64>());
        let jwt = jwt_for(subject);
        let requests: Arc<Mutex<TokenRequests>> = Arc::default();
        let (expected, token, log) = (request_token.clone(), jwt.clone(), requests.clone());
        tokio::spawn(async move {
            loop {
                let Ok((mut client, _)) = listener.accept().await else {
                    return;
                };
                let (expected, token, log) = (expected.clone(), token.clone(), log.clone());
                tokio::spawn(async move {
                    let Ok(head) = read_head(&mut client).await else {
                        return;
                    };
                    let head = String::from_utf8_lossy(&head).into_owned();
                    let audience = head
                        .split_whitespace()
                        .nth(1)
                        .and_then(|target| target.split_once('?'))
                        .and_then(|(_, query)| {
                            query
                                .split('&')
                                .find_map(|pair| pair.strip_prefix("audience="))
                        })
                        .map(str::to_owned);
                    let bearer = head_value(&head, "authorization").and_then(|value| {
                        let (scheme, credential) = value.split_once(' ')?;
                        scheme
                            .eq_ignore_ascii_case("bearer")
                            .then(|| credential.trim().to_owned())
                    });
                    let granted = !refuse_all
                        && head.starts_with("GET ")
                        && bearer.as_deref() == Some(expected.as_str());
                    match (granted, audience) {
                        (true, Some(audience)) => {
                            log.lock().unwrap().granted_audiences.push(audience);
                            let body = serde_json::json!({"count": 1, "value": token});
                            let _ = answer(&mut client, 200, "", &body.to_string()).await;
                        }
                        _ => {
                            log.lock().unwrap().refused += 1;
                            let _ = answer(&mut client, 403, "", r#"{"message":"refused"}"#).await;
                        }
                    }
                });
            }
        });
        OidcTokenEndpoint {
            addr,
            request_token,
            jwt,
            requests,
        }
    }

    /// `ACTIONS_ID_TOKEN_REQUEST_URL`: with a query already, as the runner's has.
    pub fn request_url(&self) -> String {
        format!("http://{}/_apis/idtoken?api-version=2.0", self.addr)
    }

    pub fn requests(&self) -> TokenRequests {
        self.requests.lock().unwrap().clone()
    }
}
