//! An AWS call's failure as an `EcsDeployError` that says what to do: the permission to
//! grant, the credentials to set, the cluster or service that does not exist where shipit
//! looked. Throttling that outlived the SDK's retries is marked, so a wait loop backs off and
//! goes on instead of failing.

use aws_sdk_ecs::error::{ProvideErrorMetadata, SdkError};

use super::error::{EcsDeployError, EcsErrorKind};
use crate::deploy::aws_failure::AwsFailure;

/// Where a call went, for messages.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CallSite<'a> {
    pub(crate) cluster: &'a str,
    pub(crate) service: &'a str,
    pub(crate) region: &'a str,
}

/// A failed call: the error to report, and what the caller may want to tell apart.
#[derive(Debug, Clone)]
pub(crate) struct CallError {
    pub(crate) error: EcsDeployError,
    /// AWS asked to slow down, still after the SDK's retries.
    pub(crate) throttled: bool,
    /// The AWS error code, when AWS answered.
    pub(crate) code: Option<String>,
}

impl From<CallError> for EcsDeployError {
    fn from(failure: CallError) -> Self {
        failure.error
    }
}

impl CallError {
    /// The endpoint does not know the operation (older endpoints, some emulators).
    pub(crate) fn is_unknown_operation(&self) -> bool {
        self.code.as_deref() == Some("UnknownOperationException")
    }
}

/// Turns an SDK error of `call` (`ecs:UpdateService`) into a `CallError`: a cluster or service
/// that is not there is the configuration's problem, named with where shipit looked; the rest
/// is read as for every AWS call.
pub(crate) fn call_error<E, R>(err: &SdkError<E, R>, call: &str, site: CallSite<'_>) -> CallError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    classify(AwsFailure::from_sdk(call, err), site)
}

/// The decision, apart from the SDK's types.
fn classify(failure: AwsFailure, site: CallSite<'_>) -> CallError {
    let throttled = failure.is_throttling();
    let code = failure.code.clone();
    let error = match code.as_deref() {
        Some("ClusterNotFoundException") => EcsDeployError::config(format!(
            "cluster `{}` does not exist in {}",
            site.cluster, site.region
        ))
        .with_hint("check `ecs.cluster` and `ecs.region`"),
        Some("ServiceNotFoundException") => EcsDeployError::config(format!(
            "service `{}` does not exist in cluster `{}` ({})",
            site.service, site.cluster, site.region
        ))
        .with_hint("check `ecs.service`; shipit deploys to an existing service"),
        Some("ServiceNotActiveException") => EcsDeployError::config(format!(
            "service `{}` in cluster `{}` ({}) is not active",
            site.service, site.cluster, site.region
        ))
        .with_hint("a deleted or draining service cannot take a deployment; create it again"),
        _ => failure.into_error(),
    };
    CallError {
        error,
        throttled,
        code,
    }
}

/// A service that cannot take a deployment, from DescribeServices' answer (which reports a
/// missing service as a failure entry, not an error).
pub(crate) fn unusable_service(status: Option<&str>, site: CallSite<'_>) -> EcsDeployError {
    match status {
        None | Some("MISSING") => EcsDeployError::config(format!(
            "service `{}` does not exist in cluster `{}` ({})",
            site.service, site.cluster, site.region
        ))
        .with_hint("check `ecs.service`, `ecs.cluster` and `ecs.region`; shipit deploys to an existing service"),
        Some(status) => EcsDeployError::new(
            EcsErrorKind::Config,
            format!(
                "service `{}` in cluster `{}` ({}) is {status}, not ACTIVE",
                site.service, site.cluster, site.region
            ),
        )
        .with_hint("a deleted or draining service cannot take a deployment"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SITE: CallSite<'static> = CallSite {
        cluster: "prod",
        service: "web",
        region: "eu-west-1",
    };

    fn classified(code: Option<&str>, message: &str, debug: &str) -> CallError {
        let failure = AwsFailure {
            action: "ecs:UpdateService".to_owned(),
            code: code.map(str::to_owned),
            message: message.to_owned(),
            transport: debug.contains("Io"),
            no_credentials: debug.contains("CredentialsNotLoaded"),
        };
        classify(failure, SITE)
    }

    #[test]
    fn access_denied_names_the_missing_permission() {
        let failure = classified(
            Some("AccessDeniedException"),
            "User: arn:aws:sts::1:assumed-role/ci/x is not authorized to perform: ecs:DescribeServices on resource: arn:aws:ecs:eu-west-1:1:service/prod/web because no identity-based policy allows the ecs:DescribeServices action",
            "",
        );
        assert_eq!(failure.error.kind, EcsErrorKind::Remote);
        assert!(
            failure
                .error
                .message
                .starts_with("AWS refused ecs:DescribeServices:"),
            "{}",
            failure.error.message
        );
        assert_eq!(
            failure.error.hint.as_deref(),
            Some("grant `ecs:DescribeServices` to the role or user shipit deploys with")
        );
        let unparsed = classified(Some("AccessDeniedException"), "denied", "");
        assert_eq!(
            unparsed.error.hint.as_deref(),
            Some("grant `ecs:UpdateService` to the role or user shipit deploys with")
        );
    }

    #[test]
    fn each_failure_gets_its_kind_and_what_to_do() {
        for (code, debug, kind, says) in [
            (
                Some("ExpiredTokenException"),
                "",
                EcsErrorKind::Remote,
                "`shipit resume` re-attaches",
            ),
            (
                Some("ClusterNotFoundException"),
                "",
                EcsErrorKind::Config,
                "cluster `prod` does not exist in eu-west-1",
            ),
            (
                Some("ServiceNotFoundException"),
                "",
                EcsErrorKind::Config,
                "service `web` does not exist in cluster `prod` (eu-west-1)",
            ),
            (
                Some("ServiceNotActiveException"),
                "",
                EcsErrorKind::Config,
                "is not active",
            ),
            (
                Some("InvalidParameterException"),
                "",
                EcsErrorKind::Remote,
                "ecs:UpdateService failed (InvalidParameterException): boom",
            ),
            (
                None,
                "DispatchFailure { source: CredentialsNotLoaded(..) }",
                EcsErrorKind::Config,
                "no AWS credentials found",
            ),
            (
                None,
                "DispatchFailure { source: Io }",
                EcsErrorKind::Remote,
                "ecs:UpdateService could not reach AWS",
            ),
        ] {
            let failure = classified(code, "boom", debug);
            assert_eq!(failure.error.kind, kind, "{code:?}");
            assert!(
                failure.error.message.contains(says),
                "{code:?}: {}",
                failure.error.message
            );
            assert!(!failure.throttled);
        }
    }

    #[test]
    fn throttling_is_marked_for_the_wait_loop() {
        for code in [
            "ThrottlingException",
            "TooManyRequestsException",
            "RequestLimitExceeded",
        ] {
            assert!(
                classified(Some(code), "Rate exceeded", "").throttled,
                "{code}"
            );
        }
        assert!(classified(Some("UnknownOperationException"), "", "").is_unknown_operation());
    }

    #[test]
    fn a_missing_or_inactive_service_is_a_config_error_naming_where_shipit_looked() {
        assert_eq!(
            unusable_service(Some("MISSING"), SITE).message,
            "service `web` does not exist in cluster `prod` (eu-west-1)"
        );
        let draining = unusable_service(Some("DRAINING"), SITE);
        assert_eq!(draining.kind, EcsErrorKind::Config);
        assert_eq!(
            draining.message,
            "service `web` in cluster `prod` (eu-west-1) is DRAINING, not ACTIVE"
        );
    }
}
