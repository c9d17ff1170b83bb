//! What authenticates a session's requests: the credentials (fixed for the push, or an ECR
//! token that can be replaced), the bearer token the registry's token service issued for them,
//! and every secret seen, to scrub from messages. Behind one lock, so that concurrent calls
//! refused at once renew once.

use std::time::Instant;

use base64::Engine as _;
use oci_client::secrets::RegistryAuth;
use reqwest::header::HeaderValue;

use super::RegistrySession;
use super::token_service::{BearerToken, parse_bearer_challenge, token_scopes};
use crate::credentials::ecr_token::EcrContext;
use crate::credentials::identity_token::identity_token;
use crate::registry::push_error::PushError;
use crate::registry::registry_failure::{FailureKind, RegistryFailure};
use crate::registry::retry::Retryable;

/// Where credentials come from, and whether they can be renewed mid-push.
#[derive(Clone)]
pub(crate) enum Credentials {
    /// Fixed for the push: anonymous, or from the Docker config.
    Fixed(RegistryAuth),
    /// An ECR token, renewed when the registry refuses it.
    Ecr(EcrContext),
}

impl Credentials {
    pub(super) async fn auth(&self, refresh: bool) -> Result<RegistryAuth, PushError> {
        match self {
            Credentials::Fixed(auth) => Ok(auth.clone()),
            Credentials::Ecr(ecr) => {
                if refresh {
                    ecr.forget_token();
                }
                let token = ecr.token(refresh).await?;
                Ok(RegistryAuth::Basic(token.user, token.password))
            }
        }
    }

    pub(super) fn describe(&self, auth: &RegistryAuth) -> &'static str {
        match (self, auth) {
            (Credentials::Ecr(_), _) => "the ECR token",
            (_, RegistryAuth::Anonymous) => "no credentials (anonymous)",
            (_, auth) if identity_token(auth).is_some() => {
                "the identity token from the Docker config"
            }
            _ => "the credentials from the Docker config",
        }
    }
}

/// Replaces every secret in `text` with `***`. Pure.
pub(crate) fn redact(text: &str, secrets: &[String]) -> String {
    let mut text = text.to_string();
    for secret in secrets {
        if secret.len() >= 4 && text.contains(secret.as_str()) {
            text = text.replace(secret.as_str(), "***");
        }
    }
    text
}

/// What authenticates the requests, behind one lock so that concurrent calls refused at once
/// renew once.
pub(super) struct AuthState {
    /// Bumped whenever the credentials or the token change.
    pub(super) generation: u64,
    pub(super) auth: RegistryAuth,
    pub(super) token: Option<BearerToken>,
    /// Every credential and token seen, to scrub from messages.
    pub(super) secrets: Vec<String>,
}

impl AuthState {
    pub(super) fn remember_secrets(&mut self) {
        let mut found = Vec::new();
        match &self.auth {
            RegistryAuth::Basic(user, password) => {
                found.push(password.clone());
                found.push(
                    base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}")),
                );
            }
            RegistryAuth::Bearer(token) => found.push(token.clone()),
            RegistryAuth::Anonymous => {}
        }
        if let Some(token) = &self.token {
            found.push(token.value.clone());
        }
        for secret in found {
            if !self.secrets.contains(&secret) {
                self.secrets.push(secret);
            }
        }
    }

    pub(super) fn header(&self) -> Option<HeaderValue> {
        let text = match (&self.token, &self.auth) {
            (Some(token), _) => format!("Bearer {}", token.value),
            (None, RegistryAuth::Bearer(token)) => format!("Bearer {token}"),
            (None, auth) if identity_token(auth).is_some() => return None,
            (None, RegistryAuth::Basic(user, password)) => format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
            ),
            (None, RegistryAuth::Anonymous) => return None,
        };
        let mut value = HeaderValue::from_str(&text).ok()?;
        value.set_sensitive(true);
        Some(value)
    }
}

impl RegistrySession {
    /// The Authorization header for the next request, renewing a token about to expire.
    pub(super) async fn authorization(
        &self,
    ) -> Result<(u64, Option<HeaderValue>), RegistryFailure> {
        let mut state = self.auth.lock().await;
        if let Some(token) = &state.token
            && Instant::now() >= token.renew_at
        {
            let challenge = token.challenge.clone();
            let fresh = self.fetch_token(&challenge, &state.auth).await?;
            self.install_token(&mut state, fresh);
        }
        Ok((state.generation, state.header()))
    }

    pub(super) fn install_token(&self, state: &mut AuthState, token: BearerToken) {
        state.token = Some(token);
        state.generation += 1;
        state.remember_secrets();
        if let Ok(mut secrets) = self.secrets.lock() {
            *secrets = state.secrets.clone();
        }
    }

    /// After a 401: renews what can be renewed (a token, from the challenge; an ECR token) and
    /// says whether the request should be sent again. Calls refused together renew once.
    pub(super) async fn renew_after_refusal(
        &self,
        generation: u64,
        challenge: Option<&str>,
    ) -> Result<bool, RegistryFailure> {
        let mut state = self.auth.lock().await;
        if state.generation != generation {
            return Ok(true);
        }
        if let Some(challenge) = challenge.and_then(parse_bearer_challenge) {
            // A challenge for a scope beyond the session's (a mount's source) is no refusal.
            let refused = challenge
                .scope
                .as_deref()
                .is_none_or(|scope| token_scopes(&self.repository, Some(scope)).len() == 1);
            if state.token.is_some() && refused {
                self.say(format!(
                    "registry {} refused the token (it may have expired); fetching a new one",
                    self.host
                ));
            }
            let token = self.fetch_token(&challenge, &state.auth).await?;
            self.install_token(&mut state, token);
            return Ok(true);
        }
        if let Credentials::Ecr(_) = self.credentials {
            self.say(format!(
                "registry {} refused the ECR token; fetching a new one",
                self.host
            ));
            let auth = self
                .credentials
                .auth(true)
                .await
                .map_err(|err| RegistryFailure {
                    reason: err.to_string(),
                    retry: Retryable::Permanent,
                    kind: FailureKind::Auth,
                })?;
            state.auth = auth;
            state.generation += 1;
            state.remember_secrets();
            if let Ok(mut secrets) = self.secrets.lock() {
                *secrets = state.secrets.clone();
            }
            return Ok(true);
        }
        Ok(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_scrubbed_from_messages() {
        let secrets = vec!["s3cret-pass".to_string(), "tok".to_string()];
        assert_eq!(
            redact("echoed s3cret-pass back, and tok", &secrets),
            "echoed *** back, and tok"
        );
    }
}
