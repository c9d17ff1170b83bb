//! The EKS token of a long deploy: made from the run's current credentials, reused while
//! young, made again before the cluster would refuse it. The authenticator accepts a token for
//! 15 minutes after it was signed, and only while the credentials that signed it are valid.

use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use http::HeaderValue;
use tokio::sync::Mutex;

use super::sts_presign::{eks_token, presign_get_caller_identity};

/// A token older than this is made again: five of its fifteen minutes to spare, for clocks that
/// disagree and requests that wait in a queue.
const RENEW_AFTER: Duration = Duration::from_secs(10 * 60);
/// Credentials that expire sooner than this are not trusted to sign a token still in use then.
const CREDENTIALS_MARGIN: Duration = Duration::from_secs(60);

/// Why no token could be made. Names the cluster and the cause, never a credential.
#[derive(Debug, thiserror::Error)]
#[error("no EKS token for cluster `{cluster}`: {reason}")]
pub(crate) struct TokenError {
    cluster: String,
    reason: String,
}

/// Makes and renews the `Authorization` header for one cluster.
pub(crate) struct EksTokenSource {
    cluster: String,
    region: String,
    credentials: SharedCredentialsProvider,
    current: Mutex<Option<CurrentToken>>,
}

struct CurrentToken {
    /// `Bearer k8s-aws-v1.…`, marked sensitive so that no HTTP layer logs it.
    header: HeaderValue,
    renew_at: SystemTime,
}

impl std::fmt::Debug for EksTokenSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EksTokenSource")
            .field("cluster", &self.cluster)
            .field("region", &self.region)
            .finish_non_exhaustive()
    }
}

/// When a token signed at `signed_at` with credentials that expire at `expiry` must be made
/// again.
pub(crate) fn renew_at(signed_at: SystemTime, expiry: Option<SystemTime>) -> SystemTime {
    let by_age = signed_at + RENEW_AFTER;
    match expiry.and_then(|expiry| expiry.checked_sub(CREDENTIALS_MARGIN)) {
        Some(by_credentials) if by_credentials < by_age => by_credentials,
        _ => by_age,
    }
}

impl EksTokenSource {
    pub(crate) fn new(
        cluster: &str,
        region: &str,
        credentials: SharedCredentialsProvider,
    ) -> EksTokenSource {
        EksTokenSource {
            cluster: cluster.to_owned(),
            region: region.to_owned(),
            credentials,
            current: Mutex::new(None),
        }
    }

    /// The header to send now: the current token while it is young enough, a new one
    /// otherwise. Concurrent requests wait for one signing rather than each signing.
    pub(crate) async fn authorization(&self) -> Result<HeaderValue, TokenError> {
        let mut current = self.current.lock().await;
        let now = SystemTime::now();
        if let Some(token) = current.as_ref()
            && now < token.renew_at
        {
            return Ok(token.header.clone());
        }
        let credentials = self
            .credentials
            .provide_credentials()
            .await
            .map_err(|err| self.error(format!("the AWS credentials are not available: {err}")))?;
        let token = self.sign(now, &credentials)?;
        let header = token.header.clone();
        *current = Some(token);
        Ok(header)
    }

    fn sign(&self, now: SystemTime, credentials: &Credentials) -> Result<CurrentToken, TokenError> {
        let url = presign_get_caller_identity(now, credentials, &self.region, &self.cluster)
            .map_err(|err| self.error(err.to_string()))?;
        let mut header = HeaderValue::from_str(&format!("Bearer {}", eks_token(&url)))
            .map_err(|_| self.error("the token is not a valid header value".into()))?;
        header.set_sensitive(true);
        Ok(CurrentToken {
            header,
            renew_at: renew_at(now, credentials.expiry()),
        })
    }

    fn error(&self, reason: String) -> TokenError {
        TokenError {
            cluster: self.cluster.clone(),
            reason,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use aws_credential_types::provider::{error::CredentialsError, future};

    use super::*;

    /// Hands out credentials expiring `lifetime` from now (never when `None`), and counts.
    #[derive(Debug)]
    struct CountingProvider {
        lifetime: Option<Duration>,
        calls: Arc<AtomicUsize>,
    }

    impl ProvideCredentials for CountingProvider {
        fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
        where
            Self: 'a,
        {
            let call = self.calls.fetch_add(1, Ordering::SeqCst);
            let expiry = self.lifetime.map(|lifetime| SystemTime::now() + lifetime);
            future::ProvideCredentials::ready(Ok(Credentials::new(
                format!("AKID{call}"),
                "secret",
                Some("session".into()),
                expiry,
                "test",
            )))
        }
    }

    #[derive(Debug)]
    struct NoCredentials;

    impl ProvideCredentials for NoCredentials {
        fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
        where
            Self: 'a,
        {
            future::ProvideCredentials::ready(Err(CredentialsError::not_loaded(
                "no credentials in the environment",
            )))
        }
    }

    fn source(lifetime: Option<Duration>) -> (EksTokenSource, Arc<AtomicUsize>) {
        let calls = Arc::new(AtomicUsize::new(0));
        let provider = CountingProvider {
            lifetime,
            calls: calls.clone(),
        };
        let source = EksTokenSource::new(
            "shop",
            "us-east-1",
            SharedCredentialsProvider::new(provider),
        );
        (source, calls)
    }

    #[test]
    fn a_token_is_renewed_after_ten_minutes() {
        let signed = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        assert_eq!(renew_at(signed, None), signed + Duration::from_secs(600));
        let far = signed + Duration::from_secs(3600);
        assert_eq!(
            renew_at(signed, Some(far)),
            signed + Duration::from_secs(600)
        );
    }

    #[test]
    fn a_token_is_renewed_before_its_credentials_expire() {
        let signed = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let soon = signed + Duration::from_secs(300);
        assert_eq!(renew_at(signed, Some(soon)), soon - Duration::from_secs(60));
    }

    #[tokio::test]
    async fn a_young_token_is_reused() {
        let (source, calls) = source(None);
        let first = source.authorization().await.unwrap();
        let second = source.authorization().await.unwrap();
        assert_eq!(first, second);
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        assert!(first.is_sensitive());
        assert!(first.to_str().unwrap().starts_with("Bearer k8s-aws-v1."));
    }

    #[tokio::test]
    async fn credentials_about_to_expire_sign_a_new_token_each_time() {
        let (source, calls) = source(Some(Duration::from_secs(30)));
        let first = source.authorization().await.unwrap();
        let second = source.authorization().await.unwrap();
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        assert_ne!(first, second);
    }

    #[tokio::test]
    async fn missing_credentials_are_an_error_naming_the_cluster() {
        let source = EksTokenSource::new(
            "shop",
            "us-east-1",
            SharedCredentialsProvider::new(NoCredentials),
        );
        let err = source.authorization().await.unwrap_err().to_string();
        assert!(err.contains("`shop`"), "{err}");
        assert!(err.contains("not available"), "{err}");
    }
}
