//! The kube client of an EKS cluster: its endpoint, its CA as the only trusted root, and a
//! token that is renewed while the client lives.
//!
//! kube-rs takes a static token or runs an exec plugin; it has no hook for a token made in the
//! process. So the client is built from its parts, as kube's own `ClientBuilder` builds it
//! (base URI, retries of 429/503/504, HTTPS through kube's rustls helpers), with one more layer:
//! an async filter that sets `Authorization` on every request (every retry included) from the
//! token source, which signs a new token when the current one is ten minutes old or its
//! credentials are about to expire. A deploy that outlives a token keeps working.

use std::sync::Arc;
use std::time::Duration;

use http::Request;
use http::header::AUTHORIZATION;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use kube::client::retry::RetryPolicy;
use kube::client::{Body, ConfigExt};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use tower::filter::AsyncFilterLayer;
use tower::retry::RetryLayer;
use tower::{BoxError, ServiceBuilder};

use super::eks_cluster::EksCluster;
use super::token_source::EksTokenSource;
use crate::deploy::eks::EksDeployError;

/// How long connecting to the API server may take (kube's own default).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// The certificates of a PEM bundle, as DER; none is an error.
fn certificates(cluster: &str, pem: &[u8]) -> Result<Vec<Vec<u8>>, EksDeployError> {
    let not_pem = |detail: String| {
        EksDeployError::remote(format!(
            "the certificate authority of the EKS cluster `{cluster}` is not a PEM certificate{detail}"
        ))
    };
    let ders = CertificateDer::pem_slice_iter(pem)
        .map(|cert| cert.map(|der| der.to_vec()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|err| not_pem(format!(": {err}")))?;
    if ders.is_empty() {
        return Err(not_pem(String::new()));
    }
    Ok(ders)
}

/// A client of `cluster` authenticated by `tokens`, trusting only the cluster's CA.
pub(crate) fn eks_client(
    cluster: &EksCluster,
    default_namespace: &str,
    tokens: Arc<EksTokenSource>,
) -> Result<kube::Client, EksDeployError> {
    let uri: http::Uri = cluster.endpoint.parse().map_err(|err| {
        EksDeployError::remote(format!(
            "the endpoint of the EKS cluster `{}` is not a URL ({}): {err}",
            cluster.name, cluster.endpoint
        ))
    })?;
    let mut config = kube::Config::new(uri);
    config.root_cert = Some(certificates(&cluster.name, &cluster.certificate_authority)?);
    config.default_namespace = default_namespace.to_owned();

    crate::docker::connect::install_crypto_provider();
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_connect_timeout(Some(CONNECT_TIMEOUT));
    let https = config
        .rustls_https_connector_with_connector(http)
        .map_err(|err| {
            EksDeployError::remote(format!(
                "cannot set up TLS for the EKS cluster `{}`: {err}",
                cluster.name
            ))
        })?;
    let hyper = hyper_util::client::legacy::Client::builder(TokioExecutor::new()).build(https);

    let authorize = move |mut request: Request<Body>| {
        let tokens = tokens.clone();
        async move {
            let header = tokens.authorization().await?;
            request.headers_mut().insert(AUTHORIZATION, header);
            Ok::<_, BoxError>(request)
        }
    };
    let service = ServiceBuilder::new()
        .layer(config.base_uri_layer())
        .layer(RetryLayer::new(RetryPolicy::server_retry()))
        .layer(AsyncFilterLayer::new(authorize))
        .service(hyper);
    Ok(kube::Client::new(service, default_namespace))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_certificate_authority_that_is_not_pem_is_an_error() {
        let err = certificates("shop", b"not a certificate").unwrap_err();
        assert!(err.message.contains("`shop`"), "{}", err.message);
        assert!(
            err.message.contains("not a PEM certificate"),
            "{}",
            err.message
        );
    }
}
