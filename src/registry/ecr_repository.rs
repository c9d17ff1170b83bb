//! ECR repository settings, applied idempotently before a push (create, tag immutability, scan
//! on push, lifecycle policy), the immutable-tag check, and the scan gate after it. The AWS SDK
//! retries throttled and failed API calls itself, so these calls are made once.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use aws_sdk_ecr::error::{DisplayErrorContext, ProvideErrorMetadata};
use aws_sdk_ecr::types::{ImageIdentifier, ImageScanningConfiguration, ImageTagMutability};
use tokio_util::sync::CancellationToken;

use super::push_config::{EcrSettings, LifecycleSettings, ScanGate, Severity};
use super::push_error::PushError;
use super::retry::sleep_or_cancel;
use crate::credentials::ecr_token::EcrContext;
use crate::error_summary::summarize;

/// How often the scan gate asks whether the scan is done.
const SCAN_POLL_INTERVAL: Duration = Duration::from_secs(5);

fn ecr_error<E>(repository: &str, action: &str, err: &aws_sdk_ecr::error::SdkError<E>) -> PushError
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

/// Which of `tags` exist in the repository, and the digest each points to.
pub(crate) async fn existing_tags(
    ecr: &EcrContext,
    repository: &str,
    tags: &[String],
) -> Result<HashMap<String, String>, PushError> {
    let mut found = HashMap::new();
    // One tag per call: DescribeImages fails as a whole when any listed tag is missing.
    for tag in tags {
        let result = ecr
            .client
            .describe_images()
            .repository_name(repository)
            .image_ids(ImageIdentifier::builder().image_tag(tag).build())
            .send()
            .await;
        match result {
            Ok(output) => {
                if let Some(digest) = output
                    .image_details()
                    .first()
                    .and_then(|detail| detail.image_digest())
                {
                    found.insert(tag.clone(), digest.to_string());
                }
            }
            Err(err) if err.code() == Some("ImageNotFoundException") => {}
            Err(err) => return Err(ecr_error(repository, &format!("look up tag {tag}"), &err)),
        }
    }
    Ok(found)
}

/// For an immutable repository: the tags that already point elsewhere (a conflict) and those
/// that already point to this manifest (nothing to push). Pure.
pub(crate) fn immutable_tag_plan(
    existing: &HashMap<String, String>,
    tags: &[String],
    digest: &str,
) -> (Vec<(String, String)>, Vec<String>) {
    let mut conflicts = Vec::new();
    let mut done = Vec::new();
    for tag in tags {
        match existing.get(tag) {
            Some(current) if current == digest => done.push(tag.clone()),
            Some(current) => conflicts.push((tag.clone(), current.clone())),
            None => {}
        }
    }
    (conflicts, done)
}

/// Findings at or above the threshold, as "2 CRITICAL, 1 HIGH"; None when the gate passes.
pub(crate) fn scan_gate_verdict(
    counts: &BTreeMap<String, i32>,
    threshold: Severity,
) -> Option<String> {
    let mut failing: Vec<(Severity, i32)> = counts
        .iter()
        .filter_map(|(name, count)| Some((Severity::from_ecr_name(name)?, *count)))
        .filter(|(severity, count)| *severity >= threshold && *count > 0)
        .collect();
    if failing.is_empty() {
        return None;
    }
    failing.sort_by_key(|(severity, _)| std::cmp::Reverse(*severity));
    Some(
        failing
            .iter()
            .map(|(severity, count)| format!("{count} {severity}"))
            .collect::<Vec<_>>()
            .join(", "),
    )
}

/// Waits for the image's scan and applies the gate. Starts a scan when none exists (scan on
/// push off). Returns the finding counts by severity.
pub(crate) async fn wait_for_scan(
    ecr: &EcrContext,
    registry: &str,
    repository: &str,
    digest: &str,
    gate: &ScanGate,
    cancel: &CancellationToken,
    notify: &(dyn Fn(String) + Send + Sync),
) -> Result<BTreeMap<String, i32>, PushError> {
    let scan_failed = |reason: String| PushError::ScanFailed {
        registry: registry.to_string(),
        repository: repository.to_string(),
        digest: digest.to_string(),
        reason,
    };
    let deadline = Instant::now() + gate.timeout.0;
    let mut started = false;
    let mut announced = false;
    loop {
        let result = ecr
            .client
            .describe_image_scan_findings()
            .repository_name(repository)
            .image_id(ImageIdentifier::builder().image_digest(digest).build())
            .send()
            .await;
        match result {
            Ok(output) => {
                let status = output
                    .image_scan_status()
                    .and_then(|s| s.status())
                    .map(|s| s.as_str().to_string())
                    .unwrap_or_default();
                match status.as_str() {
                    "COMPLETE" | "ACTIVE" => {
                        let counts: BTreeMap<String, i32> = output
                            .image_scan_findings()
                            .and_then(|f| f.finding_severity_counts())
                            .map(|counts| {
                                counts
                                    .iter()
                                    .map(|(k, v)| (k.as_str().to_string(), *v))
                                    .collect()
                            })
                            .unwrap_or_default();
                        if let Some(summary) = scan_gate_verdict(&counts, gate.severity) {
                            return Err(PushError::ScanFindings {
                                registry: registry.to_string(),
                                repository: repository.to_string(),
                                digest: digest.to_string(),
                                threshold: gate.severity,
                                summary,
                            });
                        }
                        return Ok(counts);
                    }
                    "IN_PROGRESS" | "PENDING" | "" => {}
                    other => {
                        let description = output
                            .image_scan_status()
                            .and_then(|s| s.description())
                            .map(summarize)
                            .unwrap_or_default();
                        return Err(scan_failed(format!("the scan ended {other} {description}")));
                    }
                }
            }
            Err(err) if err.code() == Some("ScanNotFoundException") && !started => {
                started = true;
                if let Err(err) = ecr
                    .client
                    .start_image_scan()
                    .repository_name(repository)
                    .image_id(ImageIdentifier::builder().image_digest(digest).build())
                    .send()
                    .await
                {
                    return Err(ecr_error(repository, "start the image scan", &err));
                }
                notify(format!("started an ECR scan of {digest}"));
                continue;
            }
            Err(err) if err.code() == Some("ScanNotFoundException") => {}
            Err(err) => return Err(ecr_error(repository, "read the scan findings", &err)),
        }
        if !announced {
            notify(format!("waiting for the ECR scan of {digest}"));
            announced = true;
        }
        let now = Instant::now();
        if now >= deadline {
            return Err(scan_failed(format!(
                "the scan did not complete within {}",
                humantime::format_duration(gate.timeout.0)
            )));
        }
        if !sleep_or_cancel(SCAN_POLL_INTERVAL.min(deadline - now), cancel).await {
            return Err(PushError::Cancelled {
                registry: registry.to_string(),
                repository: repository.to_string(),
            });
        }
    }
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

    #[test]
    fn immutable_tags_conflict_only_when_they_point_elsewhere() {
        let existing = HashMap::from([
            ("v1".to_string(), "sha256:old".to_string()),
            ("same".to_string(), "sha256:new".to_string()),
        ]);
        let tags = vec!["v1".to_string(), "same".to_string(), "fresh".to_string()];
        let (conflicts, done) = immutable_tag_plan(&existing, &tags, "sha256:new");
        assert_eq!(
            conflicts,
            vec![("v1".to_string(), "sha256:old".to_string())]
        );
        assert_eq!(done, vec!["same".to_string()]);
    }

    #[test]
    fn scan_gate_fails_at_or_above_the_threshold() {
        let counts = BTreeMap::from([
            ("CRITICAL".to_string(), 1),
            ("HIGH".to_string(), 2),
            ("MEDIUM".to_string(), 9),
            ("UNDEFINED".to_string(), 4),
        ]);
        assert_eq!(
            scan_gate_verdict(&counts, Severity::High).as_deref(),
            Some("1 CRITICAL, 2 HIGH")
        );
        assert_eq!(
            scan_gate_verdict(&BTreeMap::from([("MEDIUM".to_string(), 3)]), Severity::High),
            None
        );
        assert_eq!(
            scan_gate_verdict(&BTreeMap::from([("HIGH".to_string(), 0)]), Severity::Low),
            None
        );
    }
}
