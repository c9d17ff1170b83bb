//! Registry credentials in the shapes the daemon takes them: one entry of the Engine API's
//! `X-Registry-Config` (a classic build's pulls), and the user name and secret a BuildKit
//! session answers with. Both keep an identity token apart from a password, so the daemon
//! exchanges it at the registry's token service instead of sending it as one.

use bollard::auth::DockerCredentials;
use oci_client::secrets::RegistryAuth;

use crate::credentials::identity_token::identity_token;

/// Credentials as a user name and a secret, the shape BuildKit's session takes: an identity
/// token is the secret with an empty user name; no credentials are two empty strings. Pure.
pub(crate) fn user_and_secret(auth: RegistryAuth) -> (String, String) {
    if let Some(token) = identity_token(&auth) {
        return (String::new(), token.to_string());
    }
    match auth {
        RegistryAuth::Basic(user, password) => (user, password),
        RegistryAuth::Bearer(token) => (String::new(), token),
        RegistryAuth::Anonymous => (String::new(), String::new()),
    }
}

/// Credentials as one entry of the Engine API's `X-Registry-Config` (a classic build's pulls);
/// None when there are none. Pure.
pub(crate) fn engine_credentials(server: &str, auth: RegistryAuth) -> Option<DockerCredentials> {
    let entry = DockerCredentials {
        serveraddress: Some(server.to_string()),
        ..DockerCredentials::default()
    };
    if let Some(token) = identity_token(&auth) {
        return Some(DockerCredentials {
            identitytoken: Some(token.to_string()),
            ..entry
        });
    }
    match auth {
        RegistryAuth::Basic(user, password) => Some(DockerCredentials {
            username: Some(user),
            password: Some(password),
            ..entry
        }),
        RegistryAuth::Bearer(token) => Some(DockerCredentials {
            registrytoken: Some(token),
            ..entry
        }),
        RegistryAuth::Anonymous => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::credentials::identity_token::identity_token_auth;

    #[test]
    fn engine_and_session_shapes_keep_identity_tokens_apart_from_passwords() {
        let identity = identity_token_auth("refresh-me".into());
        let entry = engine_credentials("ghcr.io", identity.clone()).unwrap();
        assert_eq!(entry.identitytoken.as_deref(), Some("refresh-me"));
        assert_eq!((entry.username, entry.password), (None, None));
        assert_eq!(entry.serveraddress.as_deref(), Some("ghcr.io"));
        assert_eq!(
            user_and_secret(identity),
            (String::new(), "refresh-me".into())
        );

        let basic = RegistryAuth::Basic("AWS".into(), "pw".into());
        let entry = engine_credentials("ecr", basic.clone()).unwrap();
        assert_eq!(
            (entry.username.as_deref(), entry.password.as_deref()),
            (Some("AWS"), Some("pw"))
        );
        assert_eq!(entry.identitytoken, None);
        assert_eq!(user_and_secret(basic), ("AWS".into(), "pw".into()));

        assert!(engine_credentials("x", RegistryAuth::Anonymous).is_none());
        assert_eq!(
            user_and_secret(RegistryAuth::Anonymous),
            (String::new(), String::new())
        );
    }
}
