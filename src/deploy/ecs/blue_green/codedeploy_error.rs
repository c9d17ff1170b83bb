//! How a failed CodeDeploy call is read: whether waiting and asking again can help (throttling,
//! a lost connection), and otherwise what to tell people (the missing permission, expired
//! credentials, CodeDeploy's own error code and message).

use std::error::Error;

use aws_sdk_codedeploy::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};

use crate::error_summary::summarize;

use super::super::EcsDeployError;

/// A CodeDeploy call that did not succeed, reduced to what shipit decides on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CodeDeployFailure {
    /// The call, as IAM names it (`codedeploy:CreateDeployment`).
    pub action: String,
    /// The API's error code (`DeploymentLimitExceededException`), when AWS answered.
    pub code: Option<String>,
    /// The API's message, or the transport's when no answer came.
    pub message: String,
    /// No answer came (a timeout, a dropped connection): asking again may work.
    pub transport: bool,
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

impl CodeDeployFailure {
    /// Reads an SDK error of the call `action` (the API operation's name, `GetDeployment`).
    pub(crate) fn from_sdk<E, R>(action: &str, err: &SdkError<E, R>) -> CodeDeployFailure
    where
        E: Error + ProvideErrorMetadata + 'static,
        R: std::fmt::Debug,
    {
        let transport = match err {
            SdkError::TimeoutError(_) | SdkError::ResponseError(_) => true,
            SdkError::DispatchFailure(failure) => failure.is_io() || failure.is_timeout(),
            _ => false,
        };
        let message = match err.message() {
            Some(message) => message.to_string(),
            None => DisplayErrorContext(err).to_string(),
        };
        CodeDeployFailure {
            action: format!("codedeploy:{action}"),
            code: err.code().map(str::to_string),
            message,
            transport,
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

    /// The error people read, with what to do about it.
    pub(crate) fn into_error(self) -> EcsDeployError {
        let action = &self.action;
        let code = self.code.as_deref().unwrap_or("");
        if code.starts_with("AccessDenied") {
            let permission = denied_permission(&self.message).unwrap_or(action);
            return EcsDeployError::remote(format!(
                "the AWS identity is not allowed to call {permission} ({code})"
            ))
            .with_hint(format!(
                "grant `{permission}` to the role the run uses (and to its deployment group's resources)"
            ));
        }
        if CREDENTIAL_CODES.contains(&code) {
            return EcsDeployError::remote(format!(
                "AWS refused the credentials calling {action} ({code}): they expired or are not valid"
            ))
            .with_hint("renew the credentials (a new session or role assumption) and resume the run");
        }
        if self.is_throttling() {
            return EcsDeployError::remote(format!(
                "{action} was throttled by AWS past every retry ({code})"
            ));
        }
        let message = summarize(&self.message);
        match self.code {
            Some(code) => EcsDeployError::remote(format!("{action} failed ({code}): {message}")),
            None => EcsDeployError::remote(format!("{action} failed: {message}")),
        }
    }
}

/// The permission an AccessDenied message names: `… is not authorized to perform:
/// codedeploy:CreateDeployment on resource: …`.
fn denied_permission(message: &str) -> Option<&str> {
    let (_, after) = message.split_once("perform: ")?;
    let permission = after.split_whitespace().next()?;
    permission.contains(':').then_some(permission)
}

#[cfg(test)]
mod tests {
    use aws_sdk_codedeploy::error::ErrorMetadata;
    use aws_sdk_codedeploy::operation::create_deployment::CreateDeploymentError;

    use super::*;
    use crate::deploy::ecs::EcsErrorKind;

    fn service_error(code: &str, message: &str) -> CodeDeployFailure {
        let err = CreateDeploymentError::generic(
            ErrorMetadata::builder().code(code).message(message).build(),
        );
        CodeDeployFailure::from_sdk("CreateDeployment", &SdkError::service_error(err, ()))
    }

    #[test]
    fn access_denied_names_the_missing_permission() {
        let failure = service_error(
            "AccessDeniedException",
            "User: arn:aws:sts::123456789012:assumed-role/ci/run is not authorized to perform: codedeploy:CreateDeployment on resource: arn:aws:codedeploy:eu-west-1:123456789012:deploymentgroup:AppECS-main-web/DgpECS-main-web because no identity-based policy allows the codedeploy:CreateDeployment action",
        );
        assert!(!failure.is_retryable());
        let err = failure.into_error();
        assert_eq!(err.kind, EcsErrorKind::Remote);
        assert_eq!(
            err.message,
            "the AWS identity is not allowed to call codedeploy:CreateDeployment (AccessDeniedException)"
        );
        assert!(err.hint.unwrap().contains("`codedeploy:CreateDeployment`"));
    }

    #[test]
    fn access_denied_names_the_permission_aws_names_even_when_another_call_needs_it() {
        let err = service_error(
            "AccessDeniedException",
            "User: arn:aws:sts::123456789012:assumed-role/ci/run is not authorized to perform: codedeploy:GetDeploymentConfig on resource: arn:aws:codedeploy:eu-west-1:123456789012:deploymentconfig:CodeDeployDefault.ECSAllAtOnce",
        )
        .into_error();
        assert!(
            err.message
                .contains("call codedeploy:GetDeploymentConfig ("),
            "{}",
            err.message
        );
    }

    #[test]
    fn access_denied_without_a_parsable_message_names_the_call() {
        let err = service_error("AccessDeniedException", "denied").into_error();
        assert!(
            err.message.contains("codedeploy:CreateDeployment"),
            "{}",
            err.message
        );
    }

    #[test]
    fn expired_credentials_say_so() {
        let err = service_error(
            "ExpiredTokenException",
            "The security token included in the request is expired",
        )
        .into_error();
        assert!(err.message.contains("expired"), "{}", err.message);
        assert!(err.hint.is_some());
    }

    #[test]
    fn throttling_and_timeouts_are_retryable() {
        assert!(service_error("ThrottlingException", "Rate exceeded").is_retryable());
        let timeout: SdkError<CreateDeploymentError, ()> =
            SdkError::timeout_error("read timed out");
        let failure = CodeDeployFailure::from_sdk("GetDeployment", &timeout);
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
            failure.into_error().message,
            "codedeploy:CreateDeployment failed (DeploymentLimitExceededException): The Deployment Group 'DgpECS-main-web' already has an active Deployment 'd-X'"
        );
    }
}
