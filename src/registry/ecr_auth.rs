//! Amazon ECR access: the AWS credential chain (aws-config), GetAuthorizationToken, and the
//! registry host to push to. Tokens are cached for the life of the process until five minutes
//! before they expire, so several push stages in one run ask for one token.

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex};
use std::time::{Duration, SystemTime};

use aws_sdk_ecr::error::{DisplayErrorContext, ProvideErrorMetadata};
use base64::Engine as _;

use super::push_config::EcrSettings;
use super::push_error::PushError;
use super::registry_failure::summarize;

/// Environment override of the registry host (emulators, private endpoints).
pub(crate) const REGISTRY_HOST_ENV: &str = "SHIPIT_ECR_REGISTRY_HOST";

/// A token this close to its expiry is not used: a long push could outlive it.
const TOKEN_EXPIRY_MARGIN: Duration = Duration::from_secs(300);

/// An ECR registry password, with where and until when it works.
#[derive(Clone)]
pub(crate) struct EcrToken {
    pub user: String,
    pub password: String,
    /// Host of the registry the token is for (`<account>.dkr.ecr.<region>.amazonaws.com`).
    pub proxy_host: String,
    pub expires_at: SystemTime,
}

impl std::fmt::Debug for EcrToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EcrToken")
            .field("user", &self.user)
            .field("password", &"<redacted>")
            .field("proxy_host", &self.proxy_host)
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

static TOKENS: LazyLock<Mutex<HashMap<String, EcrToken>>> = LazyLock::new(Default::default);

/// Whether a cached token is still good to start using at `now`.
pub(crate) fn is_token_fresh(expires_at: SystemTime, now: SystemTime) -> bool {
    expires_at
        .duration_since(now)
        .is_ok_and(|left| left > TOKEN_EXPIRY_MARGIN)
}

/// `https://123456789012.dkr.ecr.us-east-1.amazonaws.com/` → the host.
fn host_of_endpoint(endpoint: &str) -> String {
    let without_scheme = endpoint
        .split_once("://")
        .map(|(_, rest)| rest)
        .unwrap_or(endpoint);
    without_scheme.trim_end_matches('/').to_ascii_lowercase()
}

/// Where to push: the setting, then the environment override, then the ECR host the user
/// named, then the host the token is for.
pub(crate) fn choose_registry_host(
    setting: Option<&str>,
    env_override: Option<&str>,
    named_host: Option<&str>,
    proxy_host: &str,
) -> String {
    setting
        .or(env_override)
        .or(named_host)
        .map(str::to_ascii_lowercase)
        .unwrap_or_else(|| proxy_host.to_string())
        .trim()
        .to_string()
}

/// The account id in an ECR host name, to ask for that registry's token.
fn account_of_host(host: &str) -> Option<String> {
    let account = host.split('.').next()?;
    (account.len() == 12 && account.chars().all(|c| c.is_ascii_digit())).then(|| account.into())
}

/// An ECR API client with the region and endpoint it was built for.
#[derive(Clone)]
pub(crate) struct EcrContext {
    pub client: aws_sdk_ecr::Client,
    pub region: String,
    cache_key: String,
}

impl EcrContext {
    /// Builds the client from the credential chain, with the settings' region and endpoint
    /// overriding the environment's.
    pub(crate) async fn load(
        settings: Option<&EcrSettings>,
        named_host: Option<&str>,
        region_from_host: Option<&str>,
    ) -> Result<Self, PushError> {
        let region = settings
            .and_then(|s| s.region.clone())
            .or_else(|| region_from_host.map(str::to_string));
        let endpoint = settings.and_then(|s| s.endpoint_url.clone());
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
        if let Some(region) = &region {
            loader = loader.region(aws_config::Region::new(region.clone()));
        }
        if let Some(endpoint) = &endpoint {
            loader = loader.endpoint_url(endpoint.clone());
        }
        let sdk_config = loader.load().await;
        let Some(region) = sdk_config.region().map(|r| r.to_string()) else {
            return Err(PushError::Credentials {
                registry: "ecr".into(),
                reason: "no AWS region is configured: set AWS_REGION, a profile region, or \
                         ecr.region in the push block"
                    .into(),
            });
        };
        // The named account is part of the key so two ECR hosts in one run never share an
        // entry, even though one token would open both.
        let registry_id = named_host.and_then(account_of_host);
        let cache_key = format!(
            "{region}|{}|{}",
            sdk_config.endpoint_url().unwrap_or_default(),
            registry_id.as_deref().unwrap_or_default()
        );
        Ok(EcrContext {
            client: aws_sdk_ecr::Client::new(&sdk_config),
            region,
            cache_key,
        })
    }

    /// A registry token, from the cache unless `refresh` or it is about to expire.
    pub(crate) async fn token(&self, refresh: bool) -> Result<EcrToken, PushError> {
        if !refresh
            && let Some(token) = TOKENS
                .lock()
                .ok()
                .and_then(|tokens| tokens.get(&self.cache_key).cloned())
            && is_token_fresh(token.expires_at, SystemTime::now())
        {
            return Ok(token);
        }
        let token = self.fetch_token().await?;
        if let Ok(mut tokens) = TOKENS.lock() {
            tokens.insert(self.cache_key.clone(), token.clone());
        }
        Ok(token)
    }

    async fn fetch_token(&self) -> Result<EcrToken, PushError> {
        let failure = |reason: String| PushError::Authentication {
            registry: format!("ecr ({})", self.region),
            repository: "-".into(),
            reason,
        };
        // One token opens every registry the identity may use; no registry id is needed.
        let output = self
            .client
            .get_authorization_token()
            .send()
            .await
            .map_err(|err| {
                let code = err.code().unwrap_or_default().to_string();
                let reason = match code.as_str() {
                    "UnrecognizedClientException" | "InvalidSignatureException" => {
                        "GetAuthorizationToken refused the AWS credentials (unknown key or bad \
                     signature)"
                            .to_string()
                    }
                    "AccessDeniedException" => {
                        "the AWS identity may not call ecr:GetAuthorizationToken".to_string()
                    }
                    "ExpiredTokenException" => {
                        "the AWS session credentials have expired".to_string()
                    }
                    _ => format!(
                        "GetAuthorizationToken failed: {}",
                        summarize(&DisplayErrorContext(&err).to_string())
                    ),
                };
                failure(reason)
            })?;
        let data = output.authorization_data().first().ok_or_else(|| {
            failure("GetAuthorizationToken returned no authorization data".into())
        })?;
        let encoded = data
            .authorization_token()
            .ok_or_else(|| failure("GetAuthorizationToken returned no token".into()))?;
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .ok()
            .and_then(|bytes| String::from_utf8(bytes).ok())
            .ok_or_else(|| failure("the ECR token is not base64 of user:password".into()))?;
        let (user, password) = decoded
            .split_once(':')
            .ok_or_else(|| failure("the ECR token is not user:password".into()))?;
        let expires_at = data
            .expires_at()
            .and_then(|at| SystemTime::try_from(*at).ok())
            // ECR tokens last 12 hours; without an expiry, assume one hour to stay safe.
            .unwrap_or_else(|| SystemTime::now() + Duration::from_secs(3600));
        let proxy_host = data
            .proxy_endpoint()
            .map(host_of_endpoint)
            .ok_or_else(|| failure("GetAuthorizationToken returned no registry endpoint".into()))?;
        Ok(EcrToken {
            user: user.to_string(),
            password: password.to_string(),
            proxy_host,
            expires_at,
        })
    }

    /// Forgets the cached token (after the registry refused it mid-push).
    pub(crate) fn forget_token(&self) {
        if let Ok(mut tokens) = TOKENS.lock() {
            tokens.remove(&self.cache_key);
        }
    }
}

/// The host override from the environment, when set and not blank.
pub(crate) fn registry_host_from_env() -> Option<String> {
    std::env::var(REGISTRY_HOST_ENV)
        .ok()
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_used_until_five_minutes_before_expiry() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        assert!(is_token_fresh(now + Duration::from_secs(12 * 3600), now));
        assert!(is_token_fresh(now + Duration::from_secs(301), now));
        assert!(!is_token_fresh(now + Duration::from_secs(300), now));
        assert!(!is_token_fresh(now - Duration::from_secs(1), now));
    }

    #[test]
    fn registry_host_prefers_setting_then_env_then_named_then_token() {
        let proxy = "123456789012.dkr.ecr.us-east-1.amazonaws.com";
        assert_eq!(
            choose_registry_host(Some("127.0.0.1:5001"), Some("x:1"), None, proxy),
            "127.0.0.1:5001"
        );
        assert_eq!(choose_registry_host(None, Some("X:1"), None, proxy), "x:1");
        assert_eq!(
            choose_registry_host(
                None,
                None,
                Some("111111111111.dkr.ecr.eu-west-1.amazonaws.com"),
                proxy
            ),
            "111111111111.dkr.ecr.eu-west-1.amazonaws.com"
        );
        assert_eq!(choose_registry_host(None, None, None, proxy), proxy);
    }

    #[test]
    fn endpoints_become_hosts_and_hosts_give_accounts() {
        assert_eq!(
            host_of_endpoint("https://123456789012.dkr.ecr.us-east-1.amazonaws.com/"),
            "123456789012.dkr.ecr.us-east-1.amazonaws.com"
        );
        assert_eq!(
            account_of_host("123456789012.dkr.ecr.us-east-1.amazonaws.com").as_deref(),
            Some("123456789012")
        );
        assert_eq!(account_of_host("127.0.0.1:5000"), None);
    }

    #[test]
    fn token_debug_output_hides_the_password() {
        let token = EcrToken {
            user: "AWS".into(),
            password: "hunter2".into(),
            proxy_host: "h".into(),
            expires_at: SystemTime::UNIX_EPOCH,
        };
        assert!(!format!("{token:?}").contains("hunter2"));
    }
}
