//! The emulator's certificate authority and server certificate, made at start, and the
//! kubeconfig that trusts them.

use std::sync::Arc;

/// The CA (PEM) clients trust and the TLS configuration the listener serves with.
pub struct Certificates {
    pub ca_pem: String,
    pub server: Arc<rustls::ServerConfig>,
}

pub fn generate() -> Certificates {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().expect("a CA key");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "shipit kube emulator CA");
    let ca_cert = ca_params.self_signed(&ca_key).expect("a self-signed CA");
    let issuer = Issuer::new(ca_params, ca_key);

    let server_key = KeyPair::generate().expect("a server key");
    let mut params = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
        .expect("server parameters");
    params
        .distinguished_name
        .push(DnType::CommonName, "kube-apiserver");
    let server_cert = params
        .signed_by(&server_key, &issuer)
        .expect("a server certificate");

    let chain = vec![server_cert.der().clone(), ca_cert.der().clone()];
    let key = rustls_pki_types::PrivateKeyDer::try_from(server_key.serialize_der())
        .expect("a PKCS#8 key");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut server = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .expect("a TLS server configuration");
    // HTTP/1.1 only: watches are chunked responses.
    server.alpn_protocols = vec![b"http/1.1".to_vec()];
    Certificates {
        ca_pem: ca_cert.pem(),
        server: Arc::new(server),
    }
}

/// A kubeconfig with one cluster (this server, trusting its CA), one user with a bearer token
/// and one context whose default namespace is `namespace`.
pub fn kubeconfig(
    endpoint: &str,
    ca_pem: &str,
    context: &str,
    token: &str,
    namespace: &str,
) -> String {
    use base64::Engine;
    let ca = base64::engine::general_purpose::STANDARD.encode(ca_pem);
    let document = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": context, "cluster": {"server": endpoint, "certificate-authority-data": ca}}],
        "users": [{"name": context, "user": {"token": token}}],
        "contexts": [{"name": context, "context": {"cluster": context, "user": context, "namespace": namespace}}],
        "current-context": context,
        "preferences": {},
    });
    // JSON is YAML, so kubectl and kube-rs read it as a kubeconfig.
    serde_json::to_string_pretty(&document).expect("a kubeconfig serializes")
}
