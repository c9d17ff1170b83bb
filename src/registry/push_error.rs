//! Errors of the registry adapter. Every message names the registry and repository it concerns,
//! says why, and `PushError::hint` says what to try. No variant holds a credential, and causes
//! from the wire are summarized (HTML pages recognised, URLs stripped of query strings) before
//! they are stored.

use std::path::PathBuf;

use super::push_config::{InvalidPushConfig, InvalidPushValue, Severity};
use crate::credentials::CredentialsError;

impl From<InvalidPushValue> for PushError {
    fn from(invalid: InvalidPushValue) -> Self {
        PushError::InvalidConfig(invalid.into())
    }
}

/// A failed push, manifest check or repository setting.
#[derive(Debug, thiserror::Error)]
pub enum PushError {
    #[error("invalid push settings: {0}")]
    InvalidConfig(#[from] InvalidPushConfig),

    #[error("failed to inspect image {image} in the Docker daemon")]
    Inspect {
        image: String,
        #[source]
        source: bollard::errors::Error,
    },

    #[error("failed to export image {image}: {reason}")]
    Export { image: String, reason: String },

    #[error(
        "failed to {action} at registry {registry} (repository {repository}){}: {reason}",
        attempts_note(*attempts)
    )]
    Registry {
        registry: String,
        repository: String,
        action: String,
        reason: String,
        attempts: u32,
    },

    #[error("failed to authenticate to registry {registry} for repository {repository}: {reason}")]
    Authentication {
        registry: String,
        repository: String,
        reason: String,
    },

    #[error("failed to get credentials for registry {registry}: {reason}")]
    Credentials { registry: String, reason: String },

    /// The CI job's OIDC token, or the role it should buy, could not be had: the message says
    /// which step failed.
    #[error("{message}")]
    CiIdentity { message: String },

    #[error("failed to {action} for ECR repository {repository}: {reason}")]
    Ecr {
        repository: String,
        action: String,
        reason: String,
    },

    #[error(
        "failed to push tag {tag} to registry {registry} (repository {repository}): the \
         repository has immutable tags and {tag} already points to {existing_digest}"
    )]
    ImmutableTag {
        registry: String,
        repository: String,
        tag: String,
        existing_digest: String,
    },

    #[error(
        "image {digest} in registry {registry} (repository {repository}) failed the scan gate: \
         {summary} at or above {threshold}"
    )]
    ScanFindings {
        registry: String,
        repository: String,
        digest: String,
        threshold: Severity,
        summary: String,
    },

    #[error(
        "failed to scan image {digest} in registry {registry} (repository {repository}): {reason}"
    )]
    ScanFailed {
        registry: String,
        repository: String,
        digest: String,
        reason: String,
    },

    #[error("failed to {action} {}", path.display())]
    LocalIo {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("the push to registry {registry} (repository {repository}) was cancelled")]
    Cancelled {
        registry: String,
        repository: String,
    },
}

/// A credential lookup's failure as the push reports it: a Docker config problem names the
/// registry, an ECR token refused names the region (the repository is filled in by whoever
/// knows it).
impl From<CredentialsError> for PushError {
    fn from(err: CredentialsError) -> Self {
        match err {
            CredentialsError::DockerConfig { registry, reason } => {
                PushError::Credentials { registry, reason }
            }
            CredentialsError::NoAwsRegion { setting } => PushError::Credentials {
                registry: "ecr".into(),
                reason: format!(
                    "no AWS region is configured: set AWS_REGION, a profile region, or {setting}"
                ),
            },
            CredentialsError::EcrToken { region, reason } => PushError::Authentication {
                registry: format!("ecr ({region})"),
                repository: "-".into(),
                reason,
            },
            identity @ (CredentialsError::IdentityToken { .. }
            | CredentialsError::AssumeRole { .. }) => PushError::CiIdentity {
                message: identity.to_string(),
            },
        }
    }
}

fn attempts_note(attempts: u32) -> String {
    if attempts > 1 {
        format!(" after {attempts} attempts")
    } else {
        String::new()
    }
}

impl PushError {
    /// What the user can try, for the `hint:` line under the error.
    pub fn hint(&self) -> Option<String> {
        match self {
            PushError::InvalidConfig(_) => Some("fix the push: block of the pipeline file".into()),
            PushError::Inspect { image, .. } => Some(format!(
                "check that the build stage produced {image} and that the Docker daemon \
                 (DOCKER_HOST) is the one it built on"
            )),
            PushError::Export { .. } => Some(
                "check the Docker daemon's disk and logs; rerunning re-exports the image".into(),
            ),
            PushError::Registry { registry, .. } => Some(format!(
                "check that {registry} is reachable from here and is a container registry; \
                 rerunning resumes from the blobs already uploaded"
            )),
            PushError::Authentication { registry, .. } => Some(format!(
                "for ECR check the AWS credentials and ecr:GetAuthorizationToken permission; \
                 otherwise run `docker login {registry}` or fix the credential helper in \
                 ~/.docker/config.json"
            )),
            PushError::Credentials { .. } => Some(
                "check ~/.docker/config.json (or $DOCKER_CONFIG) and that its credential \
                 helper is installed and on PATH"
                    .into(),
            ),
            PushError::CiIdentity { .. } => Some(
                "under GitHub Actions give the job `permissions: id-token: write`; under GitLab \
                 give it an `id_tokens:` entry named as aws.web_identity_token_env says; the \
                 role's trust policy must accept the CI's OIDC provider, the token's audience \
                 and the job's subject"
                    .into(),
            ),
            PushError::Ecr { .. } => Some(
                "check the AWS credentials, region and the IAM permissions for ECR; for a \
                 missing repository set ecr.create_repository: true"
                    .into(),
            ),
            PushError::ImmutableTag { .. } => Some(
                "push under a new tag (for example one derived from the commit), or make the \
                 repository's tags mutable"
                    .into(),
            ),
            PushError::ScanFindings { .. } => Some(
                "see the findings in the ECR console or with `aws ecr \
                 describe-image-scan-findings`; fix them or raise scan_gate.severity"
                    .into(),
            ),
            PushError::ScanFailed { .. } => Some(
                "check that scanning is supported for the image's OS; raise \
                 scan_gate.timeout if the scan was still running"
                    .into(),
            ),
            PushError::LocalIo { .. } => Some("check free disk space and permissions".into()),
            PushError::Cancelled { .. } => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_errors_name_registry_repository_and_attempts() {
        let err = PushError::Registry {
            registry: "127.0.0.1:5000".into(),
            repository: "team/api".into(),
            action: "upload blob sha256:abc".into(),
            reason: "HTTP 503".into(),
            attempts: 5,
        };
        assert_eq!(
            err.to_string(),
            "failed to upload blob sha256:abc at registry 127.0.0.1:5000 (repository \
             team/api) after 5 attempts: HTTP 503"
        );
        assert!(err.hint().unwrap().contains("127.0.0.1:5000"));
    }
}
