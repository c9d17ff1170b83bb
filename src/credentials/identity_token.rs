//! An identity token (an OAuth2 refresh token: what `docker login` stores for registries that
//! sign in through OAuth2) travels as Basic credentials with a marker user name, as the
//! credential-helper protocol spells it. Whoever holds such credentials must exchange the
//! secret at the registry's token service and never send it to the registry itself.

use oci_client::secrets::RegistryAuth;

/// The user name that marks Basic credentials as an identity token.
pub(crate) const IDENTITY_TOKEN_USER: &str = "<token>";

/// The identity token `auth` carries, if it is one. Pure.
pub(crate) fn identity_token(auth: &RegistryAuth) -> Option<&str> {
    match auth {
        RegistryAuth::Basic(user, token) if user == IDENTITY_TOKEN_USER => Some(token),
        _ => None,
    }
}

/// Basic credentials that carry `token` as an identity token. Pure.
pub(crate) fn identity_token_auth(token: String) -> RegistryAuth {
    RegistryAuth::Basic(IDENTITY_TOKEN_USER.to_string(), token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_marker_user_makes_an_identity_token() {
        let carried = identity_token_auth("refresh-me".into());
        assert_eq!(identity_token(&carried), Some("refresh-me"));
        let basic = RegistryAuth::Basic("AWS".into(), "pw".into());
        assert_eq!(identity_token(&basic), None);
        assert_eq!(identity_token(&RegistryAuth::Bearer("t".into())), None);
        assert_eq!(identity_token(&RegistryAuth::Anonymous), None);
    }
}
