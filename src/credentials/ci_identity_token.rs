//! A CI job's OpenID Connect token, the proof of identity AWS takes in exchange for a role's
//! credentials (`AssumeRoleWithWebIdentity`):
//!
//! - GitHub Actions hands a job with `permissions: id-token: write` a URL and a bearer token
//!   (`ACTIONS_ID_TOKEN_REQUEST_URL`, `ACTIONS_ID_TOKEN_REQUEST_TOKEN`) to request one from,
//!   for an audience of the caller's choosing; a new one can be requested whenever needed.
//! - GitLab puts the token of a job's `id_tokens:` entry in the variable the entry names.

use std::collections::BTreeMap;
use std::time::Duration;

use super::error::CredentialsError;

/// The audience AWS STS expects in the token (`aud`).
pub(crate) const STS_AUDIENCE: &str = "sts.amazonaws.com";

/// The GitHub Actions variables a job with `id-token: write` gets.
pub(crate) const GITHUB_REQUEST_URL_ENV: &str = "ACTIONS_ID_TOKEN_REQUEST_URL";
pub(crate) const GITHUB_REQUEST_TOKEN_ENV: &str = "ACTIONS_ID_TOKEN_REQUEST_TOKEN";

/// How long the runner may take to answer a token request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Where the job's OIDC token comes from.
#[derive(Clone, PartialEq, Eq)]
pub(crate) enum IdentityTokenSource {
    /// Requested from the GitHub Actions runner, anew for every exchange.
    GithubActions {
        request_url: String,
        request_token: String,
    },
    /// Given to the job in an environment variable (GitLab's `id_tokens:`).
    Variable { name: String, token: String },
}

impl std::fmt::Debug for IdentityTokenSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

impl IdentityTokenSource {
    /// The source the environment offers: GitHub's request variables first, then the variable
    /// `token_env` names; `None` when neither is set (no CI identity: the standard AWS
    /// credential chain applies).
    pub(crate) fn from_env(env: &BTreeMap<String, String>, token_env: &str) -> Option<Self> {
        let set = |name: &str| env.get(name).filter(|v| !v.trim().is_empty()).cloned();
        if let (Some(request_url), Some(request_token)) =
            (set(GITHUB_REQUEST_URL_ENV), set(GITHUB_REQUEST_TOKEN_ENV))
        {
            return Some(IdentityTokenSource::GithubActions {
                request_url,
                request_token,
            });
        }
        set(token_env).map(|token| IdentityTokenSource::Variable {
            name: token_env.to_owned(),
            token: token.trim().to_owned(),
        })
    }

    /// Where the token comes from, for messages; never the token.
    pub(crate) fn describe(&self) -> String {
        match self {
            IdentityTokenSource::GithubActions { .. } => {
                "the GitHub Actions OIDC token endpoint".to_owned()
            }
            IdentityTokenSource::Variable { name, .. } => format!("${name}"),
        }
    }

    /// The secrets the source itself holds (GitHub's request token, GitLab's token).
    pub(crate) fn secrets(&self) -> Vec<&str> {
        match self {
            IdentityTokenSource::GithubActions { request_token, .. } => vec![request_token],
            IdentityTokenSource::Variable { token, .. } => vec![token],
        }
    }

    /// The token, for the audience AWS STS expects.
    pub(crate) async fn token(&self) -> Result<String, CredentialsError> {
        match self {
            IdentityTokenSource::GithubActions {
                request_url,
                request_token,
            } => request_github_token(request_url, request_token)
                .await
                .map_err(|reason| CredentialsError::IdentityToken {
                    origin: self.describe(),
                    reason,
                }),
            IdentityTokenSource::Variable { token, .. } => Ok(token.clone()),
        }
    }
}

/// `request_url` with the audience added to its query (the runner's URL already has one).
fn with_audience(request_url: &str) -> Result<reqwest::Url, String> {
    let mut url = reqwest::Url::parse(request_url)
        .map_err(|_| format!("{GITHUB_REQUEST_URL_ENV} is not a URL"))?;
    url.query_pairs_mut().append_pair("audience", STS_AUDIENCE);
    let host = url.host_str().unwrap_or_default();
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let loopback = host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    // The request carries a bearer token: never over plain HTTP beyond this machine.
    if url.scheme() != "https" && !(url.scheme() == "http" && loopback) {
        return Err(format!(
            "{GITHUB_REQUEST_URL_ENV} must be an https URL (plain http only on loopback)"
        ));
    }
    Ok(url)
}

/// The runner's answer: `{"value": "<jwt>"}`.
#[derive(serde::Deserialize)]
struct TokenAnswer {
    value: String,
}

/// Asks the GitHub Actions runner for a token. The reason of a failure names the HTTP status
/// and never holds the answer's body or either token.
async fn request_github_token(request_url: &str, request_token: &str) -> Result<String, String> {
    let url = with_audience(request_url)?;
    let client = reqwest::Client::builder()
        .timeout(REQUEST_TIMEOUT)
        .build()
        .map_err(|err| format!("could not set up the HTTP client: {err}"))?;
    let response = client
        .get(url)
        .bearer_auth(request_token)
        .header(reqwest::header::ACCEPT, "application/json")
        .send()
        .await
        .map_err(|err| {
            let why = if err.is_timeout() {
                "it did not answer in time"
            } else if err.is_connect() {
                "it could not be reached"
            } else {
                "the request failed"
            };
            format!("the token request failed: {why}")
        })?;
    let status = response.status();
    if status == reqwest::StatusCode::UNAUTHORIZED || status == reqwest::StatusCode::FORBIDDEN {
        return Err(format!(
            "the token request was refused (HTTP {}): the job needs `permissions: id-token: \
             write`, and the request token may have expired",
            status.as_u16()
        ));
    }
    if !status.is_success() {
        return Err(format!(
            "the token request failed with HTTP {}",
            status.as_u16()
        ));
    }
    let body = response
        .bytes()
        .await
        .map_err(|_| "the token answer could not be read".to_owned())?;
    let answer: TokenAnswer = serde_json::from_slice(&body)
        .map_err(|_| "the token answer is not {\"value\": \"<token>\"}".to_owned())?;
    if answer.value.trim().is_empty() {
        return Err("the token answer holds an empty token".to_owned());
    }
    Ok(answer.value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn github_wins_then_the_named_variable_and_nothing_without_either() {
        let both = env(&[
            (
                GITHUB_REQUEST_URL_ENV,
                "https://runner.example/token?api-version=2.0",
            ),
            (GITHUB_REQUEST_TOKEN_ENV, "request-token"),
            ("AWS_ID_TOKEN", "gitlab-token"),
        ]);
        assert!(matches!(
            IdentityTokenSource::from_env(&both, "AWS_ID_TOKEN"),
            Some(IdentityTokenSource::GithubActions { .. })
        ));
        let gitlab = env(&[
            (GITHUB_REQUEST_URL_ENV, "https://runner.example/token"),
            ("MY_TOKEN", " gitlab-token\n"),
        ]);
        assert_eq!(
            IdentityTokenSource::from_env(&gitlab, "MY_TOKEN"),
            Some(IdentityTokenSource::Variable {
                name: "MY_TOKEN".into(),
                token: "gitlab-token".into()
            })
        );
        assert_eq!(IdentityTokenSource::from_env(&gitlab, "AWS_ID_TOKEN"), None);
        assert_eq!(
            IdentityTokenSource::from_env(&env(&[("AWS_ID_TOKEN", " ")]), "AWS_ID_TOKEN"),
            None
        );
    }

    #[test]
    fn the_audience_is_added_and_plain_http_is_refused_beyond_loopback() {
        let url = with_audience("https://runner.example/token?api-version=2.0").unwrap();
        assert_eq!(
            url.as_str(),
            "https://runner.example/token?api-version=2.0&audience=sts.amazonaws.com"
        );
        assert!(with_audience("http://127.0.0.1:8080/token").is_ok());
        assert!(with_audience("http://[::1]:8080/token").is_ok());
        let refused = with_audience("http://runner.example/token").unwrap_err();
        assert!(refused.contains("https"), "{refused}");
        assert!(with_audience("not a url").is_err());
    }

    /// A one-request token endpoint on 127.0.0.1 answering `status` with `body`; gives its URL
    /// and, once answered, the request head it read.
    async fn token_endpoint(
        status: u16,
        body: &'static str,
    ) -> (String, tokio::task::JoinHandle<String>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!(
            "http://{}/token?api-version=2.0",
            listener.local_addr().unwrap()
        );
        let served = tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") {
                stream.read_exact(&mut byte).await.unwrap();
                head.push(byte[0]);
            }
            let answer = format!(
                "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            stream.write_all(answer.as_bytes()).await.unwrap();
            String::from_utf8(head).unwrap()
        });
        (url, served)
    }

    #[tokio::test]
    async fn github_is_asked_with_the_bearer_token_for_the_sts_audience() {
        let (url, served) = token_endpoint(200, r#"{"count":1,"value":"eyJ.payload.sig"}"#).await;
        let source = IdentityTokenSource::GithubActions {
            request_url: url,
            request_token: "request-token-1".into(),
        };
        assert_eq!(source.token().await.unwrap(), "eyJ.payload.sig");
        let head = served.await.unwrap().to_ascii_lowercase();
        assert!(
            head.starts_with("get /token?api-version=2.0&audience=sts.amazonaws.com http/1.1"),
            "{head}"
        );
        assert!(
            head.contains("authorization: bearer request-token-1"),
            "{head}"
        );
    }

    #[tokio::test]
    async fn a_refused_request_says_so_and_names_neither_token_nor_body() {
        let (url, _served) = token_endpoint(403, r#"{"message":"leaky-body-text"}"#).await;
        let source = IdentityTokenSource::GithubActions {
            request_url: url,
            request_token: "request-token-2".into(),
        };
        let err = source.token().await.unwrap_err().to_string();
        assert!(err.contains("refused (HTTP 403)"), "{err}");
        assert!(err.contains("id-token: write"), "{err}");
        assert!(
            !err.contains("request-token-2") && !err.contains("leaky-body-text"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn an_answer_without_a_token_is_an_error() {
        let (url, _served) = token_endpoint(200, r#"{"value":""}"#).await;
        let source = IdentityTokenSource::GithubActions {
            request_url: url,
            request_token: "t".into(),
        };
        let err = source.token().await.unwrap_err().to_string();
        assert!(err.contains("empty token"), "{err}");
    }

    #[test]
    fn descriptions_never_hold_a_token() {
        let source = IdentityTokenSource::GithubActions {
            request_url: "https://runner.example/token".into(),
            request_token: "request-s3cret".into(),
        };
        assert!(!format!("{source:?}").contains("s3cret"));
        let source = IdentityTokenSource::Variable {
            name: "AWS_ID_TOKEN".into(),
            token: "jwt-s3cret".into(),
        };
        assert_eq!(source.describe(), "$AWS_ID_TOKEN");
        assert!(!format!("{source:?}").contains("s3cret"));
    }
}
