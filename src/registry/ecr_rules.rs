//! The rules ECR imposes on a push beyond the registry protocol: on a repository with
//! immutable tags a tag can be pushed only where it is not taken (checked before anything is
//! written), and the scan gate waits for ECR's scan of the pushed image and fails on findings at
//! or above the push block's severity.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use aws_sdk_ecr::error::ProvideErrorMetadata;
use aws_sdk_ecr::types::ImageIdentifier;
use tokio_util::sync::CancellationToken;

use super::ecr_repository::ecr_error;
use super::push_config::{PushConfig, ScanGate, Severity};
use super::push_error::PushError;
use super::push_progress::Notify;
use super::push_target::Target;
use super::retry::sleep_or_cancel;
use crate::credentials::ecr_token::EcrContext;
use crate::error_summary::summarize;

/// How often the scan gate asks whether the scan is done.
const SCAN_POLL_INTERVAL: Duration = Duration::from_secs(5);

/// The tags to point at the manifest `digest`: all of them, except on an immutable ECR
/// repository, where a tag already on this manifest is left alone and one on another manifest
/// is an error before anything is written.
pub(crate) async fn tags_to_push(
    target: &Target,
    cfg: &PushConfig,
    digest: &str,
) -> Result<Vec<String>, PushError> {
    let mut tags = cfg.tags.clone();
    let Some((ecr, state)) = &target.ecr else {
        return Ok(tags);
    };
    if !state.immutable || tags.is_empty() {
        return Ok(tags);
    }
    let existing = existing_tags(ecr, &cfg.repository, &tags).await?;
    let (conflicts, done) = immutable_tag_plan(&existing, &tags, digest);
    if let Some((tag, existing_digest)) = conflicts.into_iter().next() {
        return Err(PushError::ImmutableTag {
            registry: target.session.host.clone(),
            repository: cfg.repository.clone(),
            tag,
            existing_digest,
        });
    }
    tags.retain(|tag| !done.contains(tag));
    Ok(tags)
}

/// A refused tag push, as the immutable-tag error when the registry says the tag is immutable
/// (a tag pushed meanwhile by someone else).
pub(crate) fn immutable_tag_error(
    err: PushError,
    registry: &str,
    repository: &str,
    tag: &str,
) -> PushError {
    match &err {
        PushError::Registry { reason, .. }
            if reason.contains("TAG_INVALID")
                && reason.to_ascii_lowercase().contains("immutable") =>
        {
            PushError::ImmutableTag {
                registry: registry.to_string(),
                repository: repository.to_string(),
                tag: tag.to_string(),
                existing_digest: "another manifest".into(),
            }
        }
        _ => err,
    }
}

/// The scan gate, when the push block sets one for an ECR push: waits for the scan of
/// `digest` and fails on findings at or above its severity.
pub(crate) async fn enforce_scan_gate(
    target: &Target,
    cfg: &PushConfig,
    digest: &str,
    cancel: &CancellationToken,
    notify: &Notify,
) -> Result<(), PushError> {
    let (Some((ecr, _)), Some(gate)) = (
        &target.ecr,
        cfg.ecr.as_ref().and_then(|e| e.scan_gate.as_ref()),
    ) else {
        return Ok(());
    };
    let counts = wait_for_scan(
        ecr,
        &target.session.host,
        &cfg.repository,
        digest,
        gate,
        cancel,
        &**notify,
    )
    .await?;
    let total: i32 = counts.values().sum();
    notify(format!(
        "scan gate passed ({total} findings below {})",
        gate.severity
    ));
    Ok(())
}

/// Which of `tags` exist in the repository, and the digest each points to.
async fn existing_tags(
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
async fn wait_for_scan(
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

    #[test]
    fn a_tag_the_registry_calls_immutable_becomes_the_immutable_tag_error() {
        let refused = |reason: &str| PushError::Registry {
            registry: "r".into(),
            repository: "team/api".into(),
            action: "push the manifest as tag v1".into(),
            reason: reason.into(),
            attempts: 1,
        };
        let err = immutable_tag_error(
            refused("HTTP 400: TAG_INVALID: the tag v1 is immutable"),
            "r",
            "team/api",
            "v1",
        );
        assert!(
            matches!(&err, PushError::ImmutableTag { tag, .. } if tag == "v1"),
            "{err:?}"
        );
        let err = immutable_tag_error(refused("HTTP 400: MANIFEST_INVALID"), "r", "team/api", "v1");
        assert!(matches!(err, PushError::Registry { .. }), "{err:?}");
    }
}
