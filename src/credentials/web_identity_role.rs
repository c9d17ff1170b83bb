//! The credentials of an IAM role assumed with a CI job's OIDC token
//! (`AssumeRoleWithWebIdentity`), as an AWS SDK credentials provider: every AWS client of a run
//! is handed it. It keeps the role's credentials until five minutes before they expire, then
//! gets a new token and assumes the role again, so a run longer than the session never signs a
//! request with expired credentials.

use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_credential_types::provider::{self, ProvideCredentials};
use aws_sdk_sts::error::{DisplayErrorContext, ProvideErrorMetadata};
use tokio::sync::{Mutex, OnceCell};

use super::ci_identity_token::IdentityTokenSource;
use super::error::CredentialsError;
use crate::error_summary::summarize;
use crate::secrets::note_issued_secret;

/// Credentials this close to their expiry are renewed before use.
pub(crate) const RENEW_BEFORE_EXPIRY: Duration = Duration::from_secs(300);

/// The name the credentials carry in the SDK (its logs and metrics).
const PROVIDER_NAME: &str = "shipit-ci-web-identity";

/// What to assume and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RoleRequest {
    pub role_arn: String,
    pub session_name: String,
    pub duration: Duration,
    /// The STS region; the environment's when `None`.
    pub region: Option<String>,
}

/// A role assumed with the CI job's token, assumed again as its credentials near their end.
pub(crate) struct WebIdentityRole {
    source: IdentityTokenSource,
    request: RoleRequest,
    sts: OnceCell<aws_sdk_sts::Client>,
    current: Mutex<Option<Credentials>>,
}

impl std::fmt::Debug for WebIdentityRole {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebIdentityRole")
            .field("source", &self.source)
            .field("request", &self.request)
            .finish_non_exhaustive()
    }
}

/// Whether credentials are still good to use at `now`.
fn is_fresh(credentials: &Credentials, now: SystemTime) -> bool {
    credentials.expiry().is_none_or(|expiry| {
        expiry
            .duration_since(now)
            .is_ok_and(|left| left > RENEW_BEFORE_EXPIRY)
    })
}

impl WebIdentityRole {
    pub(crate) fn new(source: IdentityTokenSource, request: RoleRequest) -> Self {
        for secret in source.secrets() {
            note_issued_secret(secret);
        }
        WebIdentityRole {
            source,
            request,
            sts: OnceCell::new(),
            current: Mutex::new(None),
        }
    }

    pub(crate) fn request(&self) -> &RoleRequest {
        &self.request
    }

    /// The role's credentials: the ones held while fresh, else newly assumed. One caller at a
    /// time assumes; the others wait for its credentials.
    pub(crate) async fn credentials(&self) -> Result<Credentials, CredentialsError> {
        let mut current = self.current.lock().await;
        if let Some(held) = current.as_ref()
            && is_fresh(held, SystemTime::now())
        {
            return Ok(held.clone());
        }
        let assumed = self.assume().await?;
        *current = Some(assumed.clone());
        Ok(assumed)
    }

    fn refused(&self, reason: String) -> CredentialsError {
        CredentialsError::AssumeRole {
            role_arn: self.request.role_arn.clone(),
            reason,
        }
    }

    async fn sts(&self) -> Result<&aws_sdk_sts::Client, CredentialsError> {
        self.sts
            .get_or_try_init(|| async {
                // AssumeRoleWithWebIdentity is not signed: the token is the proof.
                let mut loader =
                    aws_config::defaults(aws_config::BehaviorVersion::latest()).no_credentials();
                if let Some(region) = &self.request.region {
                    loader = loader.region(aws_config::Region::new(region.clone()));
                }
                let config = loader.load().await;
                if config.region().is_none() {
                    return Err(self.refused(
                        "no AWS region is configured for STS: set aws.region in the pipeline \
                         or AWS_REGION"
                            .into(),
                    ));
                }
                Ok(aws_sdk_sts::Client::new(&config))
            })
            .await
    }

    async fn assume(&self) -> Result<Credentials, CredentialsError> {
        let token = self.source.token().await?;
        note_issued_secret(&token);
        let sts = self.sts().await?;
        let seconds = i32::try_from(self.request.duration.as_secs()).unwrap_or(i32::MAX);
        let output = sts
            .assume_role_with_web_identity()
            .role_arn(&self.request.role_arn)
            .role_session_name(&self.request.session_name)
            .web_identity_token(token)
            .duration_seconds(seconds)
            .send()
            .await
            .map_err(|err| {
                let reason = match err.code() {
                    Some("AccessDenied") => "STS refused it (AccessDenied): the role's trust \
                        policy does not accept this token; check its OIDC provider, audience \
                        sts.amazonaws.com and subject conditions"
                        .to_owned(),
                    Some("InvalidIdentityToken") => "STS found the token invalid \
                        (InvalidIdentityToken): the role's account needs the CI's OIDC identity \
                        provider"
                        .to_owned(),
                    Some("ExpiredTokenException") => {
                        "the token expired before STS saw it (ExpiredTokenException)".to_owned()
                    }
                    Some(code) => format!(
                        "STS refused it ({code}): {}",
                        summarize(err.message().unwrap_or_default())
                    ),
                    None => format!(
                        "STS could not be asked: {}",
                        summarize(&DisplayErrorContext(&err).to_string())
                    ),
                };
                self.refused(reason)
            })?;
        let granted = output
            .credentials()
            .ok_or_else(|| self.refused("STS answered without credentials".into()))?;
        for secret in [
            granted.access_key_id(),
            granted.secret_access_key(),
            granted.session_token(),
        ] {
            note_issued_secret(secret);
        }
        let expiry = SystemTime::try_from(*granted.expiration()).ok();
        Ok(Credentials::new(
            granted.access_key_id(),
            granted.secret_access_key(),
            Some(granted.session_token().to_owned()),
            expiry,
            PROVIDER_NAME,
        ))
    }
}

impl ProvideCredentials for WebIdentityRole {
    fn provide_credentials<'a>(&'a self) -> provider::future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        provider::future::ProvideCredentials::new(async move {
            self.credentials()
                .await
                .map_err(provider::error::CredentialsError::provider_error)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_renewed_five_minutes_before_they_expire() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let expiring = |seconds: u64| {
            Credentials::new(
                "a",
                "s",
                None,
                Some(now + Duration::from_secs(seconds)),
                "t",
            )
        };
        assert!(is_fresh(&expiring(3600), now));
        assert!(is_fresh(&expiring(301), now));
        assert!(!is_fresh(&expiring(300), now));
        assert!(!is_fresh(
            &Credentials::new("a", "s", None, Some(now - Duration::from_secs(1)), "t"),
            now
        ));
    }

    #[tokio::test]
    async fn a_token_that_cannot_be_had_fails_before_sts_is_asked_and_names_the_step() {
        // A port that was free a moment ago: the request finds nobody listening.
        let closed = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let role = WebIdentityRole::new(
            IdentityTokenSource::GithubActions {
                request_url: format!("http://{closed}/token"),
                request_token: "request-token-3".into(),
            },
            RoleRequest {
                role_arn: "arn:aws:iam::123456789012:role/ci".into(),
                session_name: "s".into(),
                duration: Duration::from_secs(900),
                region: Some("us-east-1".into()),
            },
        );
        let err = role.credentials().await.unwrap_err();
        assert!(
            matches!(err, CredentialsError::IdentityToken { .. }),
            "{err}"
        );
        assert!(err.to_string().contains("GitHub Actions"), "{err}");
        assert!(role.sts.get().is_none(), "STS was not set up");
    }
}
