//! The EKS bearer token, made in-process exactly as `aws eks get-token` and
//! aws-iam-authenticator make it: a presigned STS `GetCallerIdentity` URL whose signature also
//! covers the header `x-k8s-aws-id: <cluster>`, so that a token for one cluster is useless for
//! another. The cluster's authenticator replays the URL to STS to learn who signed it.

use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{
    SignableBody, SignableRequest, SignatureLocation, SigningSettings, sign,
};
use aws_sigv4::sign::v4;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// The prefix aws-iam-authenticator recognises its tokens by.
const TOKEN_PREFIX: &str = "k8s-aws-v1.";
/// The header that binds the presigned URL to one cluster.
const CLUSTER_ID_HEADER: &str = "x-k8s-aws-id";
/// What `aws eks get-token` presigns with; the authenticator itself accepts a token for 15
/// minutes after its X-Amz-Date whatever this says.
const URL_EXPIRES: Duration = Duration::from_secs(60);

/// Why no URL could be signed: a region that cannot be a host name, or the signer's refusal.
/// Never contains the credentials.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot sign the EKS token: {0}")]
pub(crate) struct PresignError(String);

/// The STS host of `region` the authenticator accepts: the regional endpoint, in the China
/// partition's domain for `cn-` regions. Never a pipeline's `endpoint_url`: the cluster, not
/// shipit, calls this host, and it accepts only AWS's.
fn sts_host(region: &str) -> String {
    let domain = if region.starts_with("cn-") {
        "amazonaws.com.cn"
    } else {
        "amazonaws.com"
    };
    format!("sts.{region}.{domain}")
}

/// The presigned `GET https://sts.<region>.amazonaws.com/?Action=GetCallerIdentity&…` for
/// `cluster`, signed at `at` with `credentials` (their session token included in the
/// signature, as STS requires). Pure: the same inputs give the same URL.
pub(crate) fn presign_get_caller_identity(
    at: SystemTime,
    credentials: &Credentials,
    region: &str,
    cluster: &str,
) -> Result<String, PresignError> {
    if region.is_empty()
        || !region
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-')
    {
        return Err(PresignError(format!(
            "`{region}` is not an AWS region name"
        )));
    }
    let host = sts_host(region);
    let url = format!("https://{host}/?Action=GetCallerIdentity&Version=2011-06-15");
    let mut settings = SigningSettings::default();
    settings.signature_location = SignatureLocation::QueryParams;
    settings.expires_in = Some(URL_EXPIRES);
    let identity = credentials.clone().into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name("sts")
        .time(at)
        .settings(settings)
        .build()
        .map_err(|err| PresignError(err.to_string()))?
        .into();
    // The host header is signed as the URL names it; only these two headers are signed.
    let headers = [("host", host.as_str()), (CLUSTER_ID_HEADER, cluster)];
    let signable = SignableRequest::new(
        "GET",
        url.as_str(),
        headers.into_iter(),
        SignableBody::Bytes(&[]),
    )
    .map_err(|err| PresignError(err.to_string()))?;
    let (instructions, _signature) = sign(signable, &params)
        .map_err(|err| PresignError(err.to_string()))?
        .into_parts();
    let mut request = http::Request::get(url.as_str())
        .body(())
        .map_err(|err| PresignError(err.to_string()))?;
    instructions.apply_to_request_http1x(&mut request);
    Ok(request.uri().to_string())
}

/// The bearer token for a presigned URL: `k8s-aws-v1.` and the URL in unpadded base64url.
pub(crate) fn eks_token(presigned_url: &str) -> String {
    format!("{TOKEN_PREFIX}{}", URL_SAFE_NO_PAD.encode(presigned_url))
}

#[cfg(test)]
mod tests {
    use super::*;

    // Recorded from the AWS CLI's own token generator (awscli.customizations.eks.get_token,
    // botocore 1.43) with the clock frozen at 2024-05-17T08:30:00Z, region eu-west-1,
    // cluster `shop-prod`, and the credentials below.
    const BOTOCORE_SIGNATURE: &str =
        "a3f0bea4dd6b2ecdc5acd606a32555694b2088857d8b0de8db020fb4ccfcff07";
    const BOTOCORE_SIGNATURE_WITH_SESSION: &str =
        "6bc689e78ddb20fec8a77aa87e6885ccb91f660ecec5c8fd6b43be4952504ab7";
    const SESSION_TOKEN: &str = "FwoGZXIvYXdzEXAMPLE+session/token==";

    fn at() -> SystemTime {
        // 2024-05-17T08:30:00Z
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_715_934_600)
    }

    fn credentials(session_token: Option<&str>) -> Credentials {
        Credentials::new(
            "AKIDEXAMPLE",
            "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
            session_token.map(str::to_owned),
            None,
            "test",
        )
    }

    fn query(url: &str) -> Vec<(String, String)> {
        let (_, query) = url.split_once('?').expect("a query");
        form_urlencoded::parse(query.as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect()
    }

    fn param(url: &str, name: &str) -> Option<String> {
        query(url)
            .into_iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value)
    }

    #[test]
    fn the_url_has_the_shape_the_authenticator_expects() {
        let url = presign_get_caller_identity(at(), &credentials(None), "eu-west-1", "shop-prod")
            .unwrap();
        assert!(
            url.starts_with("https://sts.eu-west-1.amazonaws.com/?"),
            "{url}"
        );
        let expected = [
            ("Action", "GetCallerIdentity"),
            ("Version", "2011-06-15"),
            ("X-Amz-Algorithm", "AWS4-HMAC-SHA256"),
            (
                "X-Amz-Credential",
                "AKIDEXAMPLE/20240517/eu-west-1/sts/aws4_request",
            ),
            ("X-Amz-Date", "20240517T083000Z"),
            ("X-Amz-Expires", "60"),
            ("X-Amz-SignedHeaders", "host;x-k8s-aws-id"),
        ];
        for (name, value) in expected {
            assert_eq!(param(&url, name).as_deref(), Some(value), "{name} in {url}");
        }
        assert_eq!(param(&url, "X-Amz-Security-Token"), None);
    }

    #[test]
    fn a_fixed_input_gives_the_signature_the_aws_cli_gives() {
        let url = presign_get_caller_identity(at(), &credentials(None), "eu-west-1", "shop-prod")
            .unwrap();
        assert_eq!(
            param(&url, "X-Amz-Signature").as_deref(),
            Some(BOTOCORE_SIGNATURE)
        );
    }

    #[test]
    fn a_session_token_is_signed_into_the_url() {
        let url = presign_get_caller_identity(
            at(),
            &credentials(Some(SESSION_TOKEN)),
            "eu-west-1",
            "shop-prod",
        )
        .unwrap();
        assert_eq!(
            param(&url, "X-Amz-Security-Token").as_deref(),
            Some(SESSION_TOKEN)
        );
        assert_eq!(
            param(&url, "X-Amz-Signature").as_deref(),
            Some(BOTOCORE_SIGNATURE_WITH_SESSION)
        );
    }

    #[test]
    fn the_cluster_name_is_part_of_the_signature() {
        let sign = |cluster| {
            let url = presign_get_caller_identity(at(), &credentials(None), "eu-west-1", cluster)
                .unwrap();
            param(&url, "X-Amz-Signature")
        };
        assert_ne!(sign("shop-prod"), sign("shop-staging"));
    }

    #[test]
    fn china_regions_use_the_china_sts_domain() {
        let url =
            presign_get_caller_identity(at(), &credentials(None), "cn-north-1", "shop").unwrap();
        assert!(
            url.starts_with("https://sts.cn-north-1.amazonaws.com.cn/?"),
            "{url}"
        );
    }

    #[test]
    fn a_region_that_cannot_be_a_host_is_an_error_without_the_secret() {
        let err = presign_get_caller_identity(
            at(),
            &credentials(Some(SESSION_TOKEN)),
            "eu-west-1/evil",
            "shop",
        )
        .unwrap_err();
        let text = err.to_string();
        assert!(text.contains("eu-west-1/evil"), "{text}");
        assert!(!text.contains("wJalrXUtnFEMI"), "{text}");
        assert!(!text.contains(SESSION_TOKEN), "{text}");
    }

    #[test]
    fn the_token_is_the_url_in_unpadded_base64url() {
        // base64url of "https://sts.eu-west-1.amazonaws.com/?a=b" (40 bytes, so `==` padding dropped).
        assert_eq!(
            eks_token("https://sts.eu-west-1.amazonaws.com/?a=b"),
            "k8s-aws-v1.aHR0cHM6Ly9zdHMuZXUtd2VzdC0xLmFtYXpvbmF3cy5jb20vP2E9Yg"
        );
        // The URL-safe alphabet: `-` where standard base64 has `+` (`Pz8+Pg==`).
        let token = eks_token("??>>");
        assert_eq!(token, "k8s-aws-v1.Pz8-Pg");
    }
}
