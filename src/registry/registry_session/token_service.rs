//! Bearer tokens from a registry's token service (the Docker token protocol): the
//! `WWW-Authenticate: Bearer` challenge names the realm, and the credentials go there as Basic,
//! or an identity token as an OAuth2 refresh-token grant. Credentials go only over HTTPS, or to
//! this machine.

use std::time::{Duration, Instant};

use oci_client::secrets::RegistryAuth;
use reqwest::header;
use reqwest::{StatusCode, Url};

use super::RegistrySession;
use super::http::{failure_of, is_html, read_limited};
use crate::credentials::identity_token::identity_token;
use crate::error_summary::summarize;
use crate::registry::registry_failure::{
    FailureKind, RegistryFailure, from_transport, protocol_violation,
};
use crate::registry::retry::Retryable;

/// A token is renewed this long before the token service said it expires.
const TOKEN_EXPIRY_MARGIN: Duration = Duration::from_secs(15);
/// A token's lifetime when the token service does not say (the Docker token spec's default).
const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(60);

/// A `WWW-Authenticate: Bearer` challenge: where to get a token, and for what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BearerChallenge {
    pub realm: String,
    pub service: Option<String>,
    pub scope: Option<String>,
}

/// Reads a Bearer challenge (`Bearer realm="…",service="…",scope="repository:a:pull,push"`);
/// None for other schemes or without a realm. Quoted values may hold commas. Pure.
pub(crate) fn parse_bearer_challenge(header: &str) -> Option<BearerChallenge> {
    let header = header.trim_start();
    let (scheme, rest) = header.split_once(char::is_whitespace)?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let mut params: Vec<(String, String)> = Vec::new();
    let mut chars = rest.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        let mut name = String::new();
        while let Some(&c) = chars.peek() {
            if c == '=' || c == ',' || c.is_whitespace() {
                break;
            }
            name.push(c);
            chars.next();
        }
        if name.is_empty() {
            break;
        }
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.peek() != Some(&'=') {
            continue;
        }
        chars.next();
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => value.extend(chars.next()),
                    '"' => break,
                    other => value.push(other),
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == ',' || c.is_whitespace() {
                    break;
                }
                value.push(c);
                chars.next();
            }
        }
        params.push((name.to_ascii_lowercase(), value));
    }
    let get = |key: &str| {
        params
            .iter()
            .find(|(name, _)| name == key)
            .map(|(_, value)| value.clone())
            .filter(|value| !value.is_empty())
    };
    Some(BearerChallenge {
        realm: get("realm")?,
        service: get("service"),
        scope: get("scope"),
    })
}

/// The scopes a token is asked for: push and pull on the session's repository always (so one
/// token serves the whole push), plus whatever else the challenge named (a mount's source).
pub(crate) fn token_scopes(repository: &str, challenge_scope: Option<&str>) -> Vec<String> {
    let own = format!("repository:{repository}:pull,push");
    let mut scopes = vec![own.clone()];
    if let Some(scope) = challenge_scope {
        for scope in scope.split(' ').filter(|s| !s.is_empty()) {
            let covered = scope == own || scope == format!("repository:{repository}:pull");
            if !covered && !scopes.iter().any(|s| s == scope) {
                scopes.push(scope.to_string());
            }
        }
    }
    scopes
}

/// Whether credentials may be sent to a token service at `url`: over HTTPS, or plain HTTP on
/// this machine only.
pub(crate) fn may_send_credentials_to(url: &Url) -> bool {
    match url.scheme() {
        "https" => true,
        "http" => url.host_str().is_some_and(|host| {
            let host = host.trim_start_matches('[').trim_end_matches(']');
            host.eq_ignore_ascii_case("localhost")
                || host
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback())
        }),
        _ => false,
    }
}

/// A token from the token service.
#[derive(Clone)]
pub(super) struct BearerToken {
    pub(super) value: String,
    pub(super) renew_at: Instant,
    pub(super) challenge: BearerChallenge,
}

impl RegistrySession {
    /// Asks the token service a challenge names for a token, with the credentials as Basic.
    pub(super) async fn fetch_token(
        &self,
        challenge: &BearerChallenge,
        auth: &RegistryAuth,
    ) -> Result<BearerToken, RegistryFailure> {
        let mut url = Url::parse(&challenge.realm).map_err(|_| {
            protocol_violation("the Bearer challenge names a token service that is not a URL")
        })?;
        let service_host = match (url.host_str(), url.port()) {
            (Some(host), Some(port)) => format!("{host}:{port}"),
            (Some(host), None) => host.to_string(),
            (None, _) => "?".to_string(),
        };
        {
            let mut query = url.query_pairs_mut();
            if let Some(service) = &challenge.service {
                query.append_pair("service", service);
            }
            for scope in token_scopes(&self.repository, challenge.scope.as_deref()) {
                query.append_pair("scope", &scope);
            }
        }
        let identity = identity_token(auth);
        let basic = match auth {
            RegistryAuth::Basic(user, password) if identity.is_none() => Some((user, password)),
            _ => None,
        };
        if (basic.is_some() || identity.is_some()) && !may_send_credentials_to(&url) {
            return Err(RegistryFailure {
                reason: format!(
                    "the registry's token service {} is plain HTTP on another host; shipit sends \
                     credentials only over HTTPS",
                    summarize(url.as_str())
                ),
                retry: Retryable::Permanent,
                kind: FailureKind::Auth,
            });
        }
        let client = self.http.for_url(&url)?;
        let mut request = match identity {
            // OAuth2's refresh-token grant, as the Docker CLI sends an identity token: a form
            // POST to the realm, the scopes space-separated.
            Some(refresh_token) => {
                let scopes = token_scopes(&self.repository, challenge.scope.as_deref()).join(" ");
                let mut form = vec![
                    ("grant_type", "refresh_token"),
                    ("refresh_token", refresh_token),
                    ("client_id", "shipit"),
                    ("scope", scopes.as_str()),
                ];
                if let Some(service) = &challenge.service {
                    form.push(("service", service.as_str()));
                }
                let body = form_urlencoded::Serializer::new(String::new())
                    .extend_pairs(form)
                    .finish();
                let mut realm = url.clone();
                realm.set_query(None);
                client
                    .post(realm)
                    .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                    .body(body)
            }
            None => client.get(url),
        }
        .timeout(Duration::from_secs(30));
        if let Some((user, password)) = basic {
            request = request.basic_auth(user, Some(password));
        }
        let response = request.send().await.map_err(|err| {
            let mut failure = from_transport(&err);
            failure.reason = format!("token service {service_host}: {}", failure.reason);
            failure
        })?;
        let status = response.status();
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            return Err(RegistryFailure {
                reason: format!(
                    "the token service at {service_host} refused {} (HTTP {})",
                    self.credentials.describe(auth),
                    status.as_u16()
                ),
                retry: Retryable::Permanent,
                kind: FailureKind::Auth,
            });
        }
        if identity.is_some()
            && (status == StatusCode::NOT_FOUND || status == StatusCode::METHOD_NOT_ALLOWED)
        {
            return Err(RegistryFailure {
                reason: format!(
                    "the token service at {service_host} does not take identity tokens (OAuth2 \
                     refresh tokens; HTTP {}): log in with a user name and password",
                    status.as_u16()
                ),
                retry: Retryable::Permanent,
                kind: FailureKind::Auth,
            });
        }
        if !status.is_success() || is_html(response.headers()) {
            let mut failure = failure_of(response).await;
            failure.reason = format!("token service {service_host}: {}", failure.reason);
            if failure.kind == FailureKind::NotFound {
                failure.kind = FailureKind::Other;
            }
            return Err(failure);
        }
        #[derive(serde::Deserialize)]
        struct TokenAnswer {
            token: Option<String>,
            access_token: Option<String>,
            expires_in: Option<u64>,
        }
        let body = read_limited(response, 1024 * 1024).await;
        let answer: TokenAnswer = serde_json::from_slice(&body).map_err(|_| {
            protocol_violation(&format!(
                "the token service {service_host} answered with something that is not a token"
            ))
        })?;
        let value = answer
            .token
            .or(answer.access_token)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                protocol_violation(&format!("the token service {service_host} sent no token"))
            })?;
        let lifetime = answer
            .expires_in
            .map(Duration::from_secs)
            .unwrap_or(DEFAULT_TOKEN_LIFETIME);
        Ok(BearerToken {
            value,
            // A short-lived token is renewed at half its life rather than on every request.
            renew_at: Instant::now()
                + lifetime.saturating_sub(TOKEN_EXPIRY_MARGIN.min(lifetime / 2)),
            challenge: challenge.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_challenges_are_read_with_commas_inside_quotes() {
        assert_eq!(
            parse_bearer_challenge(
                r#"Bearer realm="https://auth.example/token",service="registry.example",scope="repository:team/api:pull,push""#
            ),
            Some(BearerChallenge {
                realm: "https://auth.example/token".into(),
                service: Some("registry.example".into()),
                scope: Some("repository:team/api:pull,push".into()),
            })
        );
        // Any case for the scheme and names, spaces after commas, unquoted values, extra
        // parameters (error="invalid_token") and escapes.
        assert_eq!(
            parse_bearer_challenge(
                r#"bearer Realm=http://127.0.0.1:9/token, error="invalid_token", service="a\"b""#
            ),
            Some(BearerChallenge {
                realm: "http://127.0.0.1:9/token".into(),
                service: Some("a\"b".into()),
                scope: None,
            })
        );
        assert_eq!(parse_bearer_challenge(r#"Basic realm="registry""#), None);
        assert_eq!(parse_bearer_challenge(r#"Bearer service="x""#), None);
        assert_eq!(parse_bearer_challenge("Bearer"), None);
    }

    #[test]
    fn tokens_are_asked_for_push_on_the_repository_plus_what_the_challenge_names() {
        assert_eq!(
            token_scopes("team/api", None),
            vec!["repository:team/api:pull,push"]
        );
        assert_eq!(
            token_scopes("team/api", Some("repository:team/api:pull")),
            vec!["repository:team/api:pull,push"]
        );
        assert_eq!(
            token_scopes(
                "team/api",
                Some("repository:team/base:pull repository:team/api:pull,push")
            ),
            vec!["repository:team/api:pull,push", "repository:team/base:pull"]
        );
    }

    #[test]
    fn credentials_go_to_token_services_over_https_or_on_this_machine_only() {
        let allowed = |url: &str| may_send_credentials_to(&Url::parse(url).unwrap());
        assert!(allowed("https://auth.example/token"));
        assert!(allowed("http://127.0.0.1:5001/token"));
        assert!(allowed("http://localhost/token"));
        assert!(allowed("http://[::1]:80/token"));
        assert!(!allowed("http://auth.example/token"));
        assert!(!allowed("http://10.0.0.5/token"));
        assert!(!allowed("ftp://auth.example/token"));
    }
}
