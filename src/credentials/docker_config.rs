//! Credentials for registries other than ECR, from the Docker client's config.json (`auths`,
//! `credHelpers`, `credsStore`), found the way the Docker CLI finds it: `$DOCKER_CONFIG`, else
//! `~/.docker`. The `docker_credential` crate reads the file and speaks the credential helper
//! protocol (`docker-credential-<name> get`, the server on stdin, JSON on stdout).

use std::collections::HashMap;
use std::path::PathBuf;

use docker_credential::{CredentialRetrievalError, DockerCredential};
use oci_client::secrets::RegistryAuth;

use super::error::CredentialsError;
use super::identity_token::identity_token_auth;
use crate::secrets::note_issued_secret;

fn docker_config_path() -> Option<PathBuf> {
    let dir = std::env::var_os("DOCKER_CONFIG")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".docker")))?;
    Some(dir.join("config.json"))
}

/// The key config.json uses for a registry host: Docker Hub keeps its historical URL.
fn server_key(host: &str) -> String {
    match host {
        "docker.io" | "index.docker.io" | "registry-1.docker.io" => {
            "https://index.docker.io/v1/".to_string()
        }
        other => other.to_string(),
    }
}

/// What config.json says about `host`, as oci-client credentials. No config file, no entry, or
/// a helper that has nothing for the host all mean anonymous access.
pub(crate) async fn docker_config_auth(host: &str) -> Result<RegistryAuth, CredentialsError> {
    let Some(path) = docker_config_path() else {
        return Ok(RegistryAuth::Anonymous);
    };
    if !path.exists() {
        return Ok(RegistryAuth::Anonymous);
    }
    let server = server_key(host);
    let lookup = tokio::task::spawn_blocking(move || {
        let file =
            std::fs::File::open(&path).map_err(|_| CredentialRetrievalError::ConfigReadError)?;
        docker_credential::get_credential_from_reader(std::io::BufReader::new(file), &server)
    })
    .await
    .map_err(|err| CredentialsError::DockerConfig {
        registry: host.to_string(),
        reason: format!("the credential lookup did not finish: {err}"),
    })?;
    interpret(host, lookup)
}

/// Every registry's credentials the Docker config holds (`auths` and `credHelpers` entries,
/// and what `credsStore` lists), keyed as config.json keys them: what the Docker CLI sends a
/// classic build in `X-Registry-Config`, since the daemon, not the client, pulls the base
/// images. A registry whose lookup fails is left out and named in the second list (the reason
/// never holds a credential).
pub(crate) async fn all_docker_config_credentials() -> (HashMap<String, RegistryAuth>, Vec<String>)
{
    let Some(path) = docker_config_path() else {
        return (HashMap::new(), Vec::new());
    };
    tokio::task::spawn_blocking(move || {
        let mut found = HashMap::new();
        let mut problems = Vec::new();
        let Ok(text) = std::fs::read(&path) else {
            return (found, problems);
        };
        let Ok(config) = serde_json::from_slice::<serde_json::Value>(&text) else {
            problems.push(format!("{} is not valid JSON", path.display()));
            return (found, problems);
        };
        let mut servers: Vec<String> = ["auths", "credHelpers"]
            .iter()
            .filter_map(|section| config.get(*section)?.as_object())
            .flat_map(|entries| entries.keys().cloned())
            .collect();
        if let Some(store) = config.get("credsStore").and_then(|s| s.as_str()) {
            match list_store(store) {
                Ok(listed) => servers.extend(listed),
                Err(reason) => problems.push(reason),
            }
        }
        servers.sort();
        servers.dedup();
        for server in servers {
            let lookup = docker_credential::get_credential_from_reader(text.as_slice(), &server);
            match interpret(&server, lookup) {
                Ok(RegistryAuth::Anonymous) => {}
                Ok(auth) => {
                    found.insert(server, auth);
                }
                Err(err) => problems.push(err.to_string()),
            }
        }
        (found, problems)
    })
    .await
    .unwrap_or_default()
}

/// The servers a credential store holds credentials for (`docker-credential-<store> list`).
fn list_store(store: &str) -> Result<Vec<String>, String> {
    let helper = format!("docker-credential-{store}");
    let output = std::process::Command::new(&helper)
        .arg("list")
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|err| format!("the credential store {helper} could not run: {err}"))?;
    if !output.status.success() {
        // The helper's output is not echoed: it may hold a secret.
        return Err(format!(
            "the credential store {helper} failed to list its registries ({})",
            output.status
        ));
    }
    let listed: HashMap<String, String> = serde_json::from_slice(&output.stdout)
        .map_err(|_| format!("the credential store {helper} listed something that is not JSON"))?;
    Ok(listed.into_keys().collect())
}

/// Maps the lookup result; pure so the no-credential cases are tested without helpers.
fn interpret(
    host: &str,
    lookup: Result<DockerCredential, CredentialRetrievalError>,
) -> Result<RegistryAuth, CredentialsError> {
    let failure = |reason: String| CredentialsError::DockerConfig {
        registry: host.to_string(),
        reason,
    };
    match lookup {
        Ok(DockerCredential::UsernamePassword(user, password)) => {
            note_issued_secret(&password);
            Ok(RegistryAuth::Basic(user, password))
        }
        // Exchanged at the registry's token service by whoever uses it.
        Ok(DockerCredential::IdentityToken(token)) => {
            note_issued_secret(&token);
            Ok(identity_token_auth(token))
        }
        Err(CredentialRetrievalError::NoCredentialConfigured)
        | Err(CredentialRetrievalError::ConfigNotFound) => Ok(RegistryAuth::Anonymous),
        Err(CredentialRetrievalError::HelperFailure {
            helper,
            stdout,
            stderr,
        }) => {
            // Helpers answer "credentials not found in native keychain" for an unknown server;
            // the Docker CLI treats that as anonymous, and so does shipit.
            let said = format!("{stdout} {stderr}").to_ascii_lowercase();
            if said.contains("credentials not found") || said.contains("not found in") {
                return Ok(RegistryAuth::Anonymous);
            }
            // The helper's output is not echoed: a misbehaving helper could print a secret.
            Err(failure(format!("the credential helper {helper} failed")))
        }
        Err(CredentialRetrievalError::HelperCommunicationError) => Err(failure(
            "could not run the credential helper config.json names (is \
             docker-credential-<name> installed and on PATH?)"
                .into(),
        )),
        Err(CredentialRetrievalError::MalformedHelperResponse) => Err(failure(
            "the credential helper answered with something that is not credentials".into(),
        )),
        Err(CredentialRetrievalError::CredentialDecodingError) => Err(failure(
            "the auth entry in config.json is not base64 of user:password".into(),
        )),
        Err(CredentialRetrievalError::CredentialMismatchError) => Err(failure(
            "the auth entry in config.json disagrees with its username/password fields".into(),
        )),
        Err(CredentialRetrievalError::ConfigReadError) => Err(failure(
            "config.json could not be read or is not valid JSON".into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;

    fn from_config(json: serde_json::Value, host: &str) -> Result<RegistryAuth, CredentialsError> {
        let text = serde_json::to_vec(&json).unwrap();
        interpret(
            host,
            docker_credential::get_credential_from_reader(text.as_slice(), &server_key(host)),
        )
    }

    #[test]
    fn auths_entries_give_basic_credentials() {
        let auth = base64::engine::general_purpose::STANDARD.encode("AWS:s3cret");
        let found = from_config(
            serde_json::json!({"auths": {"127.0.0.1:5000": {"auth": auth}}}),
            "127.0.0.1:5000",
        )
        .unwrap();
        assert_eq!(found, RegistryAuth::Basic("AWS".into(), "s3cret".into()));
    }

    #[test]
    fn docker_hub_uses_its_historical_key() {
        let auth = base64::engine::general_purpose::STANDARD.encode("me:pw");
        let found = from_config(
            serde_json::json!({"auths": {"https://index.docker.io/v1/": {"auth": auth}}}),
            "docker.io",
        )
        .unwrap();
        assert_eq!(found, RegistryAuth::Basic("me".into(), "pw".into()));
    }

    #[test]
    fn an_identity_token_is_kept_for_the_token_service() {
        let found = from_config(
            serde_json::json!({"auths": {"ghcr.io": {"identitytoken": "refresh-me"}}}),
            "ghcr.io",
        )
        .unwrap();
        assert_eq!(found, identity_token_auth("refresh-me".into()));
    }

    #[test]
    fn no_entry_means_anonymous() {
        let found = from_config(serde_json::json!({"auths": {}}), "ghcr.io").unwrap();
        assert_eq!(found, RegistryAuth::Anonymous);
    }

    #[test]
    fn a_missing_helper_is_a_clear_error() {
        let err = from_config(
            serde_json::json!({"credHelpers": {"ghcr.io": "shipit-test-no-such-helper"}}),
            "ghcr.io",
        )
        .unwrap_err();
        assert!(err.to_string().contains("ghcr.io"), "{err}");
        assert!(err.to_string().contains("on PATH"), "{err}");
    }

    #[test]
    fn a_helper_without_credentials_means_anonymous_and_output_is_never_echoed() {
        let not_found = interpret(
            "ghcr.io",
            Err(CredentialRetrievalError::HelperFailure {
                helper: "docker-credential-pass".into(),
                stdout: "credentials not found in native keychain\n".into(),
                stderr: String::new(),
            }),
        )
        .unwrap();
        assert_eq!(not_found, RegistryAuth::Anonymous);
        let err = interpret(
            "ghcr.io",
            Err(CredentialRetrievalError::HelperFailure {
                helper: "docker-credential-pass".into(),
                stdout: "token=hunter2".into(),
                stderr: "boom".into(),
            }),
        )
        .unwrap_err();
        assert!(!err.to_string().contains("hunter2"));
    }
}
