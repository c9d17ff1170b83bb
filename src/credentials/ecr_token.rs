//! Amazon ECR registry tokens: GetAuthorizationToken through the shared AWS configuration.
//! Tokens are cached for the life of the process until five minutes before they expire, so
//! several push stages (and base image pulls) in one run ask for one token.

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex};
use std::time::{Duration, SystemTime};

use aws_sdk_ecr::error::{DisplayErrorContext, ProvideErrorMetadata};
use base64::Engine as _;

use super::aws::{AwsIdentity, AwsSettings, load_aws_config};
use super::ecr_host::{account_of_host, host_of_endpoint};
use super::error::CredentialsError;
use crate::error_summary::summarize;
use crate::secrets::note_issued_secret;

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

/// An ECR API client with the region it was built for; its tokens are cached per region,
/// endpoint, account and identity.
#[derive(Clone)]
pub(crate) struct EcrContext {
    pub client: aws_sdk_ecr::Client,
    pub region: String,
    cache_key: String,
}

impl EcrContext {
    /// Builds the client from the shared AWS configuration, signing as `identity`.
    /// `named_host` is the ECR host the user named, if any: its account keeps its tokens apart
    /// from other accounts'.
    pub(crate) async fn load(
        aws: AwsSettings<'_>,
        identity: &AwsIdentity,
        named_host: Option<&str>,
    ) -> Result<Self, CredentialsError> {
        let config = load_aws_config(aws, identity).await?;
        // The named account is part of the key so two ECR hosts in one run never share an
        // entry, even though one token would open both; so is the identity, whose token may
        // open other registries than the chain's.
        let registry_id = named_host.and_then(account_of_host);
        let cache_key = format!(
            "{}|{}|{}|{}",
            config.region,
            config.sdk.endpoint_url().unwrap_or_default(),
            registry_id.as_deref().unwrap_or_default(),
            identity.cache_label()
        );
        Ok(EcrContext {
            client: aws_sdk_ecr::Client::new(&config.sdk),
            region: config.region,
            cache_key,
        })
    }

    /// A registry token, from the cache unless `refresh` or it is about to expire.
    pub(crate) async fn token(&self, refresh: bool) -> Result<EcrToken, CredentialsError> {
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

    async fn fetch_token(&self) -> Result<EcrToken, CredentialsError> {
        let failure = |reason: String| CredentialsError::EcrToken {
            region: self.region.clone(),
            reason,
        };
        // One token opens every registry the identity may use; no registry id is needed.
        let output = self
            .client
            .get_authorization_token()
            .send()
            .await
            .map_err(|err| {
                // The CI identity's own failure says which step failed better than the SDK's
                // wrapping of it.
                if let Some(identity) = CredentialsError::ci_identity_cause(&err) {
                    return identity;
                }
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
        note_issued_secret(password);
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
