//! Where a push goes: the registry session for the repository, with its credentials (the
//! Docker config's, or an ECR token), and for ECR the repository made to match the push
//! block's settings first.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::ecr_repository::{RepositoryState, apply_repository_settings};
use super::push_config::{PushConfig, RegistryKind};
use super::push_error::PushError;
use super::push_progress::Notify;
use super::registry_session::{Credentials, RegistrySession};
use crate::credentials::aws::{AwsIdentity, AwsSettings};
use crate::credentials::docker_config::docker_config_auth;
use crate::credentials::ecr_host::registry_host_from_env;
use crate::credentials::ecr_token::EcrContext;

/// A connected registry target, with the ECR repository state when it is ECR.
pub(crate) struct Target {
    pub session: Arc<RegistrySession>,
    pub ecr: Option<(EcrContext, RepositoryState)>,
}

/// Whether opening a target also applies the push block's ECR repository settings (a push
/// does; checking that a manifest still exists does not).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RepositorySettings {
    Apply,
    Leave,
}

/// Connects to the registry `cfg` names, checking the credentials on the way; ECR is signed
/// in to as `identity`.
pub(crate) async fn open_target(
    cfg: &PushConfig,
    identity: &AwsIdentity,
    cancel: &CancellationToken,
    notify: Notify,
    settings: RepositorySettings,
) -> Result<Target, PushError> {
    match cfg.registry_kind()? {
        RegistryKind::Generic { host } => {
            let auth = docker_config_auth(&host).await?;
            let session = RegistrySession::connect(
                &host,
                &cfg.repository,
                Credentials::Fixed(auth),
                cancel.clone(),
                notify,
            )
            .await?;
            Ok(Target {
                session: Arc::new(session),
                ecr: None,
            })
        }
        RegistryKind::Ecr { host, region } => {
            open_ecr_target(cfg, identity, host, region, cancel, notify, settings).await
        }
    }
}

async fn open_ecr_target(
    cfg: &PushConfig,
    identity: &AwsIdentity,
    named_host: Option<String>,
    region_from_host: Option<String>,
    cancel: &CancellationToken,
    notify: Notify,
    settings: RepositorySettings,
) -> Result<Target, PushError> {
    let ecr_settings = cfg.ecr.as_ref();
    let aws = AwsSettings {
        region: ecr_settings
            .and_then(|s| s.region.as_deref())
            .or(region_from_host.as_deref()),
        endpoint_url: ecr_settings.and_then(|s| s.endpoint_url.as_deref()),
        region_setting: "ecr.region in the push block (or aws.region)",
    };
    let ecr = EcrContext::load(aws, identity, named_host.as_deref()).await?;
    let token = ecr
        .token(false)
        .await
        .map_err(|err| match PushError::from(err) {
            PushError::Authentication {
                registry, reason, ..
            } => PushError::Authentication {
                registry,
                repository: cfg.repository.clone(),
                reason,
            },
            other => other,
        })?;
    let host = choose_registry_host(
        ecr_settings.and_then(|e| e.registry_host.as_deref()),
        registry_host_from_env().as_deref(),
        named_host.as_deref(),
        &token.proxy_host,
    );
    let state = match (ecr_settings, settings) {
        (Some(wanted), RepositorySettings::Apply) => {
            apply_repository_settings(&ecr, &cfg.repository, wanted, &*notify).await?
        }
        _ => RepositoryState { immutable: false },
    };
    let session = RegistrySession::connect(
        &host,
        &cfg.repository,
        Credentials::Ecr(ecr.clone()),
        cancel.clone(),
        notify,
    )
    .await?;
    Ok(Target {
        session: Arc::new(session),
        ecr: Some((ecr, state)),
    })
}

/// Where an ECR push goes: the setting, then the environment override, then the ECR host the
/// user named, then the host the token is for. Pure.
pub(crate) fn choose_registry_host(
    setting: Option<&str>,
    env_override: Option<&str>,
    named_host: Option<&str>,
    proxy_host: &str,
) -> String {
    setting
        .or(env_override)
        .or(named_host)
        .map(str::to_ascii_lowercase)
        .unwrap_or_else(|| proxy_host.to_string())
        .trim()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_host_prefers_setting_then_env_then_named_then_token() {
        let proxy = "123456789012.dkr.ecr.us-east-1.amazonaws.com";
        assert_eq!(
            choose_registry_host(Some("127.0.0.1:5001"), Some("x:1"), None, proxy),
            "127.0.0.1:5001"
        );
        assert_eq!(choose_registry_host(None, Some("X:1"), None, proxy), "x:1");
        assert_eq!(
            choose_registry_host(
                None,
                None,
                Some("111111111111.dkr.ecr.eu-west-1.amazonaws.com"),
                proxy
            ),
            "111111111111.dkr.ecr.eu-west-1.amazonaws.com"
        );
        assert_eq!(choose_registry_host(None, None, None, proxy), proxy);
    }
}
