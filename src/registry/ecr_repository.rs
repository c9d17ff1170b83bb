//! ECR repository settings, applied idempotently before a push (create, tag immutability, scan
//! on push, lifecycle policy). The AWS SDK retries throttled and failed API calls itself, so
//! these calls are made once.

use aws_sdk_ecr::error::{DisplayErrorContext, ProvideErrorMetadata};
use aws_sdk_ecr::types::{ImageScanningConfiguration, ImageTagMutability};

use super::push_config::{EcrSettings, LifecycleSettings};
use super::push_error::PushError;
use crate::credentials::ecr_token::EcrContext;
use crate::error_summary::summarize;

/// An ECR API failure as the push reports it.
pub(crate) fn ecr_error<E>(
    repository: &str,
    action: &str,
    err: &aws_sdk_ecr::error::SdkError<E>,
) -> PushError
where
    E: std::error::Error + ProvideErrorMetadata + 'static,
{
    let reason = match err.code() {
        Some("AccessDeniedException") => {
            "the AWS identity is not allowed to do this (AccessDeniedException)".to_string()
        }
        Some("UnrecognizedClientException") | Some("InvalidSignatureException") => {
            "the AWS credentials were refused".to_string()
        }
        _ => summarize(&DisplayErrorContext(err).to_string()),
    };
    PushError::Ecr {
        repository: repository.to_string(),
        action: action.to_string(),
        reason,
    }
}

/// The repository as found (or made) before the push.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RepositoryState {
    pub immutable: bool,
}

/// The lifecycle policy document for the settings; None when they ask for nothing. The rule
/// that selects any tag status must come last, as ECR requires.
pub(crate) fn lifecycle_policy_json(settings: &LifecycleSettings) -> Option<serde_json::Value> {
    let mut rules = Vec::new();
    if let Some(days) = settings.expire_untagged_days {
        rules.push(serde_json::json!({
            "rulePriority": rules.len() + 1,
            "description": format!("expire untagged images {days} days after push"),
            "selection": {
                "tagStatus": "untagged",
                "countType": "sinceImagePushed",
                "countUnit": "days",
                "countNumber": days,
            },
            "action": {"type": "expire"},
        }));
    }
    if let Some(keep) = settings.keep_last {
        rules.push(serde_json::json!({
            "rulePriority": rules.len() + 1,
            "description": format!("keep the last {keep} images"),
            "selection": {
                "tagStatus": "any",
                "countType": "imageCountMoreThan",
                "countNumber": keep,
            },
            "action": {"type": "expire"},
        }));
    }
    (!rules.is_empty()).then(|| serde_json::json!({ "rules": rules }))
}

/// Makes the repository match the settings, changing only what differs.
pub(crate) async fn apply_repository_settings(
    ecr: &EcrContext,
    repository: &str,
    settings: &EcrSettings,
    notify: &(dyn Fn(String) + Send + Sync),
) -> Result<RepositoryState, PushError> {
    let client = &ecr.client;
    let found = client
        .describe_repositories()
        .repository_names(repository)
        .send()
        .await;
    let (mut immutable, scan_on_push) = match found {
        Ok(output) => {
            let repo = output
                .repositories()
                .first()
                .ok_or_else(|| PushError::Ecr {
                    repository: repository.to_string(),
                    action: "describe the repository".into(),
                    reason: "DescribeRepositories returned no repository".into(),
                })?;
            (
                repo.image_tag_mutability()
                    .is_some_and(|m| m.as_str().starts_with("IMMUTABLE")),
                repo.image_scanning_configuration()
                    .is_some_and(|c| c.scan_on_push()),
            )
        }
        Err(err) if err.code() == Some("RepositoryNotFoundException") => {
            if !settings.create_repository {
                return Err(PushError::Ecr {
                    repository: repository.to_string(),
                    action: "find the repository".into(),
                    reason: format!(
                        "it does not exist in {}; create it or set ecr.create_repository: true",
                        ecr.region
                    ),
                });
            }
            let immutable = settings.immutable_tags.unwrap_or(false);
            let scan_on_push = settings.scan_on_push.unwrap_or(false);
            client
                .create_repository()
                .repository_name(repository)
                .image_tag_mutability(if immutable {
                    ImageTagMutability::Immutable
                } else {
                    ImageTagMutability::Mutable
                })
                .image_scanning_configuration(
                    ImageScanningConfiguration::builder()
                        .scan_on_push(scan_on_push)
                        .build(),
                )
                .send()
                .await
                .map_err(|err| ecr_error(repository, "create the repository", &err))?;
            notify(format!("created ECR repository {repository}"));
            (immutable, scan_on_push)
        }
        Err(err) => return Err(ecr_error(repository, "describe the repository", &err)),
    };

    if let Some(want) = settings.immutable_tags
        && want != immutable
    {
        client
            .put_image_tag_mutability()
            .repository_name(repository)
            .image_tag_mutability(if want {
                ImageTagMutability::Immutable
            } else {
                ImageTagMutability::Mutable
            })
            .send()
            .await
            .map_err(|err| ecr_error(repository, "set tag immutability", &err))?;
        notify(format!(
            "set ECR repository {repository} tags to {}",
            if want { "immutable" } else { "mutable" }
        ));
        immutable = want;
    }

    if let Some(want) = settings.scan_on_push
        && want != scan_on_push
    {
        client
            .put_image_scanning_configuration()
            .repository_name(repository)
            .image_scanning_configuration(
                ImageScanningConfiguration::builder()
                    .scan_on_push(want)
                    .build(),
            )
            .send()
            .await
            .map_err(|err| ecr_error(repository, "set scan on push", &err))?;
        notify(format!(
            "turned scan on push {} for ECR repository {repository}",
            if want { "on" } else { "off" }
        ));
    }

    if let Some(policy) = settings.lifecycle.as_ref().and_then(lifecycle_policy_json) {
        let current = match client
            .get_lifecycle_policy()
            .repository_name(repository)
            .send()
            .await
        {
            Ok(output) => output
                .lifecycle_policy_text()
                .and_then(|text| serde_json::from_str::<serde_json::Value>(text).ok()),
            Err(err) if err.code() == Some("LifecyclePolicyNotFoundException") => None,
            Err(err) => return Err(ecr_error(repository, "read the lifecycle policy", &err)),
        };
        if current.as_ref() != Some(&policy) {
            client
                .put_lifecycle_policy()
                .repository_name(repository)
                .lifecycle_policy_text(policy.to_string())
                .send()
                .await
                .map_err(|err| ecr_error(repository, "set the lifecycle policy", &err))?;
            notify(format!(
                "updated the lifecycle policy of ECR repository {repository}"
            ));
        }
    }
    Ok(RepositoryState { immutable })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lifecycle_policy_puts_the_any_rule_last() {
        let policy = lifecycle_policy_json(&LifecycleSettings {
            keep_last: Some(30),
            expire_untagged_days: Some(7),
        })
        .unwrap();
        let rules = policy["rules"].as_array().unwrap();
        assert_eq!(rules.len(), 2);
        assert_eq!(rules[0]["selection"]["tagStatus"], "untagged");
        assert_eq!(rules[0]["selection"]["countNumber"], 7);
        assert_eq!(rules[1]["selection"]["tagStatus"], "any");
        assert_eq!(rules[1]["rulePriority"], 2);
        assert_eq!(rules[1]["selection"]["countNumber"], 30);
        assert!(lifecycle_policy_json(&LifecycleSettings::default()).is_none());
        let only_keep = lifecycle_policy_json(&LifecycleSettings {
            keep_last: Some(5),
            expire_untagged_days: None,
        })
        .unwrap();
        assert_eq!(only_keep["rules"][0]["rulePriority"], 1);
    }
}
