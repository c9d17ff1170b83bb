//! A failed AWS call of a deploy (ECS, CodeDeploy, EKS), read once for every client: whether
//! waiting and asking again can help (throttling, no answer at all), and otherwise what to tell
//! people (the permission to grant, the credentials to renew or set, the API's own code and
//! message). Each deploy kind turns the explanation into its own error type.

use std::error::Error;

use aws_sdk_ecs::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};

use crate::error_summary::summarize;

/// A call that did not succeed, reduced to what shipit decides on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AwsFailure {
    /// The call, as IAM names it (`ecs:UpdateService`, `codedeploy:CreateDeployment`).
    pub action: String,
    /// The API's error code (`DeploymentLimitExceededException`), when AWS answered.
    pub code: Option<String>,
    /// The API's message, or the SDK's account of what went wrong when no answer came.
    pub message: String,
    /// No answer came (a timeout, a dropped connection): asking again may work.
    pub transport: bool,
    /// The SDK found no credentials to sign with: nothing was sent.
    pub no_credentials: bool,
}

const THROTTLING_CODES: &[&str] = &[
    "ThrottlingException",
    "Throttling",
    "ThrottledException",
    "TooManyRequestsException",
    "RequestLimitExceeded",
    "RequestThrottled",
];

const CREDENTIAL_CODES: &[&str] = &[
    "ExpiredToken",
    "ExpiredTokenException",
    "RequestExpired",
    "InvalidClientTokenId",
    "UnrecognizedClientException",
    "InvalidSignatureException",
    "SignatureDoesNotMatch",
];

impl AwsFailure {
    /// Reads an SDK error of `action` (`ecs:UpdateService`).
    pub(crate) fn from_sdk<E, R>(action: &str, err: &SdkError<E, R>) -> AwsFailure
    where
        E: Error + ProvideErrorMetadata + 'static,
        R: std::fmt::Debug,
    {
        let transport = match err {
            SdkError::TimeoutError(_) | SdkError::ResponseError(_) => true,
            SdkError::DispatchFailure(failure) => failure.is_io() || failure.is_timeout(),
            _ => false,
        };
        let debug = format!("{err:?}");
        let message = match err.message() {
            Some(message) => message.to_owned(),
            None => DisplayErrorContext(err).to_string(),
        };
        AwsFailure {
            action: action.to_owned(),
            code: err.code().map(str::to_owned),
            message,
            transport,
            no_credentials: debug.contains("CredentialsNotLoaded")
                || debug.contains("NoCredentials"),
        }
    }

    /// Whether the API answered with this error code.
    pub(crate) fn is(&self, code: &str) -> bool {
        self.code.as_deref() == Some(code)
    }

    /// AWS asked to slow down: back off and ask again while the deadline allows.
    pub(crate) fn is_throttling(&self) -> bool {
        self.code
            .as_deref()
            .is_some_and(|code| THROTTLING_CODES.contains(&code))
    }

    /// Waiting and asking again may help: throttling, or no answer at all.
    pub(crate) fn is_retryable(&self) -> bool {
        self.is_throttling() || self.transport
    }

    /// What people read, with what to do about it.
    pub(crate) fn explain(self) -> Explained {
        let action = &self.action;
        let code = self.code.as_deref().unwrap_or("");
        if code.starts_with("AccessDenied") || code == "UnauthorizedOperation" {
            let permission = denied_permission(&self.message).unwrap_or(action);
            return Explained::remote(format!(
                "AWS refused {permission}: the identity shipit deploys with may not call it ({code})"
            ))
            .with_hint(format!(
                "grant `{permission}` to the role or user shipit deploys with"
            ));
        }
        if CREDENTIAL_CODES.contains(&code) {
            return Explained::remote(format!(
                "AWS refused the credentials calling {action} ({code}): the session expired or is not valid; the deployment goes on, `shipit resume` re-attaches"
            ))
            .with_hint("renew the credentials (a longer `aws.duration`, or a fresh login) and run `shipit resume`");
        }
        if self.is_throttling() {
            return Explained::remote(format!("AWS throttled {action} past every retry ({code})"))
                .with_hint("other tools share this account's API rate; try again later");
        }
        if self.no_credentials {
            return Explained::config(format!("no AWS credentials found for {action}"))
                .with_hint("set `aws.role_arn` in the pipeline, AWS_PROFILE, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY");
        }
        let message = summarize(&self.message);
        match self.code {
            Some(code) => Explained::remote(format!("{action} failed ({code}): {message}")),
            None => Explained::remote(format!("{action} could not reach AWS: {message}")),
        }
    }
}

/// A failed call explained: whose mistake it is, what happened, what to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Explained {
    /// The configuration's (no credentials at all), not AWS's.
    pub config: bool,
    pub message: String,
    pub hint: Option<String>,
}

impl Explained {
    fn remote(message: String) -> Self {
        Explained {
            config: false,
            message,
            hint: None,
        }
    }

    fn config(message: String) -> Self {
        Explained {
            config: true,
            message,
            hint: None,
        }
    }

    fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
}

/// The permission an AccessDenied message names: `… is not authorized to perform:
/// codedeploy:CreateDeployment on resource: …`.
fn denied_permission(message: &str) -> Option<&str> {
    let (_, after) = message.split_once("not authorized to perform:")?;
    let permission = after
        .split_whitespace()
        .next()?
        .trim_end_matches([',', '.', ';']);
    permission.contains(':').then_some(permission)
}

#[cfg(test)]
mod tests {
    use aws_sdk_codedeploy::error::ErrorMetadata;
    use aws_sdk_codedeploy::operation::create_deployment::CreateDeploymentError;

    use super::*;

    fn service_error(code: &str, message: &str) -> AwsFailure {
        let err = CreateDeploymentError::generic(
            ErrorMetadata::builder().code(code).message(message).build(),
        );
        AwsFailure::from_sdk(
            "codedeploy:CreateDeployment",
            &SdkError::service_error(err, ()),
        )
    }

    #[test]
    fn access_denied_names_the_missing_permission() {
        let failure = service_error(
            "AccessDeniedException",
            "User: arn:aws:sts::123456789012:assumed-role/ci/run is not authorized to perform: codedeploy:CreateDeployment on resource: arn:aws:codedeploy:eu-west-1:123456789012:deploymentgroup:AppECS-main-web/DgpECS-main-web because no identity-based policy allows the codedeploy:CreateDeployment action",
        );
        assert!(!failure.is_retryable());
        let err = failure.explain();
        assert!(!err.config);
        assert!(
            err.message
                .starts_with("AWS refused codedeploy:CreateDeployment:"),
            "{}",
            err.message
        );
        assert_eq!(
            err.hint.as_deref(),
            Some("grant `codedeploy:CreateDeployment` to the role or user shipit deploys with")
        );
    }

    #[test]
    fn access_denied_names_the_permission_aws_names_even_when_another_call_needs_it() {
        let err = service_error(
            "AccessDeniedException",
            "User: arn:aws:sts::123456789012:assumed-role/ci/run is not authorized to perform: codedeploy:GetDeploymentConfig on resource: arn:aws:codedeploy:eu-west-1:123456789012:deploymentconfig:CodeDeployDefault.ECSAllAtOnce",
        )
        .explain();
        assert!(
            err.message
                .contains("refused codedeploy:GetDeploymentConfig:"),
            "{}",
            err.message
        );
        let unparsed = service_error("AccessDeniedException", "denied").explain();
        assert!(
            unparsed.message.contains("codedeploy:CreateDeployment"),
            "{}",
            unparsed.message
        );
    }

    #[test]
    fn expired_credentials_say_that_the_deployment_goes_on() {
        let err = service_error(
            "ExpiredTokenException",
            "The security token included in the request is expired",
        )
        .explain();
        assert!(!err.config);
        assert!(err.message.contains("expired"), "{}", err.message);
        assert!(
            err.message.contains("`shipit resume` re-attaches"),
            "{}",
            err.message
        );
    }

    #[test]
    fn throttling_and_timeouts_are_retryable_and_nothing_else_is() {
        for code in [
            "ThrottlingException",
            "TooManyRequestsException",
            "RequestLimitExceeded",
        ] {
            assert!(
                service_error(code, "Rate exceeded").is_retryable(),
                "{code}"
            );
        }
        let timeout: SdkError<CreateDeploymentError, ()> =
            SdkError::timeout_error("read timed out");
        let failure = AwsFailure::from_sdk("codedeploy:GetDeployment", &timeout);
        assert!(failure.transport && failure.is_retryable());
        assert!(!service_error("DeploymentGroupDoesNotExistException", "no group").is_retryable());
    }

    #[test]
    fn other_errors_keep_the_code_and_message() {
        let failure = service_error(
            "DeploymentLimitExceededException",
            "The Deployment Group 'DgpECS-main-web' already has an active Deployment 'd-X'",
        );
        assert!(failure.is("DeploymentLimitExceededException"));
        assert_eq!(
            failure.explain().message,
            "codedeploy:CreateDeployment failed (DeploymentLimitExceededException): The Deployment Group 'DgpECS-main-web' already has an active Deployment 'd-X'"
        );
    }

    #[test]
    fn no_credentials_at_all_is_the_configurations_problem() {
        let failure = AwsFailure {
            action: "ecs:DescribeServices".into(),
            code: None,
            message: "failed to construct request".into(),
            transport: false,
            no_credentials: true,
        };
        let err = failure.explain();
        assert!(err.config);
        assert!(
            err.message.contains("no AWS credentials"),
            "{}",
            err.message
        );
    }
}
