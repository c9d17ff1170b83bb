//! Reaching the cluster of an `eks:` target (`shipit::deploy::eks::connect`):
//!
//! - the whole EKS path against the AWS emulator's DescribeCluster and a small HTTPS API server
//!   of the test's own CA: the first request arrives with a `k8s-aws-v1.` token that is a
//!   presigned STS URL bound to the cluster (its signature is checked here from scratch, the
//!   way STS would), over a connection that trusts the cluster's CA and nothing else;
//! - DescribeCluster against moto, a model of EKS nobody here wrote;
//! - a kubeconfig with two contexts.
//!
//! The AWS credentials are the environment's (`scripts/test` exports dummy keys).

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use bytes::Bytes;
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use serde_json::json;
use sha2::{Digest, Sha256};
use shipit::deploy::eks::{EksErrorKind, connect, describe_eks_cluster};
use shipit::pipeline::model::EksTarget;
use shipit::stages::AwsIdentity;
use support::aws_emulator::AwsEmulator;
use support::{testenv, unique_name};
use tokio::net::TcpListener;

// ---------------------------------------------------------------------------------------------
// A certificate authority of the test's own, and an API server whose certificate it signs.

struct TestCa {
    pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl TestCa {
    fn new(name: &str) -> TestCa {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let pem = params.self_signed(&key).unwrap().pem();
        TestCa {
            pem,
            issuer: Issuer::new(params, key),
        }
    }

    /// A certificate for 127.0.0.1 signed by this CA, and its key.
    fn server_certificate(&self) -> (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) {
        let key = KeyPair::generate().unwrap();
        let params = CertificateParams::new(vec!["127.0.0.1".to_owned()]).unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        (vec![cert.der().clone()], key)
    }
}

/// One request the API server answered: its path and `Authorization` header.
#[derive(Clone, Debug)]
struct Seen {
    path: String,
    authorization: Option<String>,
}

/// An HTTPS server that answers `/version` as an API server does and records what it saw.
struct ApiServer {
    endpoint: String,
    seen: Arc<Mutex<Vec<Seen>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl ApiServer {
    async fn start(ca: &TestCa) -> ApiServer {
        let (chain, key) = ca.server_certificate();
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind(("127.0.0.1", 0)).await.unwrap();
        let endpoint = format!("https://{}", listener.local_addr().unwrap());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let recorder = seen.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                let recorder = recorder.clone();
                tokio::spawn(async move {
                    // A client that refuses the certificate never gets to HTTP.
                    let Ok(tls) = acceptor.accept(stream).await else {
                        return;
                    };
                    let service = service_fn(move |request: hyper::Request<_>| {
                        recorder.lock().unwrap().push(Seen {
                            path: request.uri().path().to_owned(),
                            authorization: request
                                .headers()
                                .get("authorization")
                                .map(|v| v.to_str().unwrap_or_default().to_owned()),
                        });
                        async move { Ok::<_, std::convert::Infallible>(version_response()) }
                    });
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(tls), service)
                        .await;
                });
            }
        });
        ApiServer {
            endpoint,
            seen,
            task,
        }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

fn version_response() -> hyper::Response<Full<Bytes>> {
    let body = json!({
        "major": "1", "minor": "33", "gitVersion": "v1.33.1-eks-test",
        "gitCommit": "0000000", "gitTreeState": "clean", "buildDate": "2025-01-01T00:00:00Z",
        "goVersion": "go1.24", "compiler": "gc", "platform": "linux/amd64"
    });
    hyper::Response::builder()
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap()
}

// ---------------------------------------------------------------------------------------------
// The token, checked as the cluster's authenticator and STS would check it.

/// The run's credentials, from the environment the SDK reads them from.
fn environment_credentials() -> (String, String, Option<String>) {
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let key = var("AWS_ACCESS_KEY_ID").expect(
        "AWS_ACCESS_KEY_ID is not set: run the tests with `scripts/test`, or export dummy keys",
    );
    let secret = var("AWS_SECRET_ACCESS_KEY").expect("AWS_SECRET_ACCESS_KEY is not set");
    (key, secret, var("AWS_SESSION_TOKEN"))
}

fn hmac(key: &[u8], data: &[u8]) -> [u8; 32] {
    let mut block = [0u8; 64];
    if key.len() > 64 {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let mut inner = Sha256::new();
    inner.update(block.map(|b| b ^ 0x36));
    inner.update(data);
    let mut outer = Sha256::new();
    outer.update(block.map(|b| b ^ 0x5c));
    outer.update(inner.finalize());
    outer.finalize().into()
}

/// SigV4's URI encoding: unreserved characters as they are, every other byte as `%XX`.
fn aws_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The presigned URL inside a bearer token.
fn token_url(authorization: &str) -> String {
    let token = authorization
        .strip_prefix("Bearer k8s-aws-v1.")
        .unwrap_or_else(|| panic!("not an EKS bearer token: {}", &authorization[..20]));
    String::from_utf8(URL_SAFE_NO_PAD.decode(token).unwrap()).unwrap()
}

/// Whether the presigned URL's signature is the one `secret` gives for a request carrying
/// `x-k8s-aws-id: cluster`: SigV4 computed from scratch, as STS verifies it.
fn signed_for_cluster(url: &str, secret: &str, cluster: &str) -> bool {
    let (base, query) = url.split_once('?').unwrap();
    let host = base.strip_prefix("https://").unwrap().trim_end_matches('/');
    let params: BTreeMap<String, String> = form_urlencoded::parse(query.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let canonical_query = params
        .iter()
        .filter(|(k, _)| k.as_str() != "X-Amz-Signature")
        .map(|(k, v)| format!("{}={}", aws_encode(k), aws_encode(v)))
        .collect::<Vec<_>>()
        .join("&");
    let canonical_request = format!(
        "GET\n/\n{canonical_query}\nhost:{host}\nx-k8s-aws-id:{cluster}\n\nhost;x-k8s-aws-id\n{}",
        hex::encode(Sha256::digest(b""))
    );
    let date_time = &params["X-Amz-Date"];
    let (_, scope) = params["X-Amz-Credential"].split_once('/').unwrap();
    let string_to_sign = format!(
        "AWS4-HMAC-SHA256\n{date_time}\n{scope}\n{}",
        hex::encode(Sha256::digest(canonical_request.as_bytes()))
    );
    let mut key = format!("AWS4{secret}").into_bytes();
    for part in scope.split('/') {
        key = hmac(&key, part.as_bytes()).to_vec();
    }
    hex::encode(hmac(&key, string_to_sign.as_bytes())) == params["X-Amz-Signature"]
}

// ---------------------------------------------------------------------------------------------
// Targets.

fn eks_target(fields: serde_json::Value) -> EksTarget {
    let mut target = json!({ "manifests": ["k8s/*.yaml"], "namespace": "web" });
    for (key, value) in fields.as_object().unwrap() {
        target[key] = value.clone();
    }
    serde_json::from_value(target).unwrap()
}

fn emulated_cluster_target(emulator: &AwsEmulator, cluster: &str) -> EksTarget {
    eks_target(json!({
        "cluster": cluster,
        "region": emulator.region(),
        "endpoint_url": emulator.endpoint(),
    }))
}

// ---------------------------------------------------------------------------------------------
// EKS through the emulator.

#[tokio::test]
async fn an_eks_cluster_is_reached_with_a_token_bound_to_it_over_its_own_ca() {
    let emulator = AwsEmulator::start().await;
    let ca = TestCa::new("shop cluster CA");
    let server = ApiServer::start(&ca).await;
    emulator.seed_eks_cluster("shop", &server.endpoint, &ca.pem);
    let target = emulated_cluster_target(&emulator, "shop");

    let access = connect(&target, Path::new("."), &AwsIdentity::credential_chain())
        .await
        .unwrap_or_else(|err| panic!("connect failed: {err}"));
    assert_eq!(access.cluster, "shop");
    assert_eq!(access.default_namespace, "web");
    let version = access.client.apiserver_version().await.unwrap();
    assert_eq!(version.git_version, "v1.33.1-eks-test");

    let seen = server.seen();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0].path, "/version");
    let authorization = seen[0]
        .authorization
        .clone()
        .expect("an Authorization header");
    let url = token_url(&authorization);
    let (key, secret, session_token) = environment_credentials();
    assert!(
        url.starts_with("https://sts.us-east-1.amazonaws.com/?"),
        "{url}"
    );
    let params: BTreeMap<String, String> =
        form_urlencoded::parse(url.split_once('?').unwrap().1.as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
    assert_eq!(params["Action"], "GetCallerIdentity");
    assert_eq!(params["Version"], "2011-06-15");
    assert_eq!(params["X-Amz-SignedHeaders"], "host;x-k8s-aws-id");
    assert_eq!(params["X-Amz-Expires"], "60");
    assert!(
        params["X-Amz-Credential"].starts_with(&format!("{key}/"))
            && params["X-Amz-Credential"].ends_with("/us-east-1/sts/aws4_request"),
        "{}",
        params["X-Amz-Credential"]
    );
    assert_eq!(params.get("X-Amz-Security-Token"), session_token.as_ref());
    assert!(signed_for_cluster(&url, &secret, "shop"), "{url}");
    assert!(!signed_for_cluster(&url, &secret, "other"), "{url}");

    // The token is a credential: nothing shipit shows of the access contains it.
    let shown = format!("{access:?}");
    assert!(!shown.contains("k8s-aws-v1"), "{shown}");
    assert_eq!(emulator.count("DescribeCluster"), 1);
}

#[tokio::test]
async fn a_server_whose_certificate_another_ca_signed_is_refused() {
    let emulator = AwsEmulator::start().await;
    let cluster_ca = TestCa::new("shop cluster CA");
    let impostor_ca = TestCa::new("impostor CA");
    let impostor = ApiServer::start(&impostor_ca).await;
    emulator.seed_eks_cluster("shop", &impostor.endpoint, &cluster_ca.pem);

    let access = connect(
        &emulated_cluster_target(&emulator, "shop"),
        Path::new("."),
        &AwsIdentity::credential_chain(),
    )
    .await
    .unwrap();
    let err = access.client.apiserver_version().await.unwrap_err();
    let text = format!("{err} {err:?}");
    assert!(!text.contains("k8s-aws-v1"), "{text}");
    assert!(impostor.seen().is_empty(), "{:?}", impostor.seen());
}

#[tokio::test]
async fn an_unknown_eks_cluster_is_a_config_error_naming_it_and_the_region() {
    let emulator = AwsEmulator::start().await;
    let err = connect(
        &emulated_cluster_target(&emulator, "nowhere"),
        Path::new("."),
        &AwsIdentity::credential_chain(),
    )
    .await
    .unwrap_err();
    assert_eq!(err.kind, EksErrorKind::Config, "{err}");
    assert!(err.message.contains("`nowhere`"), "{}", err.message);
    assert!(err.message.contains("us-east-1"), "{}", err.message);
}

#[tokio::test]
async fn a_refused_describe_cluster_is_a_remote_error_naming_the_permission() {
    let emulator = AwsEmulator::start().await;
    emulator.seed_eks_cluster("shop", "https://127.0.0.1:1", "unused");
    emulator.deny("DescribeCluster");
    let err = connect(
        &emulated_cluster_target(&emulator, "shop"),
        Path::new("."),
        &AwsIdentity::credential_chain(),
    )
    .await
    .unwrap_err();
    assert_eq!(err.kind, EksErrorKind::Remote, "{err}");
    assert!(
        err.message.contains("eks:DescribeCluster"),
        "{}",
        err.message
    );
    assert!(
        err.hint
            .as_deref()
            .unwrap_or_default()
            .contains("eks:DescribeCluster"),
        "{:?}",
        err.hint
    );
}

#[tokio::test]
async fn a_cluster_that_is_not_active_is_a_config_error_saying_its_status() {
    let emulator = AwsEmulator::start().await;
    let ca = TestCa::new("shop cluster CA");
    emulator.seed_eks_cluster("shop", "https://127.0.0.1:1", &ca.pem);
    emulator.set_eks_cluster_status("shop", "CREATING");
    let err = connect(
        &emulated_cluster_target(&emulator, "shop"),
        Path::new("."),
        &AwsIdentity::credential_chain(),
    )
    .await
    .unwrap_err();
    assert_eq!(err.kind, EksErrorKind::Config, "{err}");
    assert!(err.message.contains("CREATING"), "{}", err.message);
}

// ---------------------------------------------------------------------------------------------
// DescribeCluster against moto.

#[tokio::test]
async fn describe_cluster_against_moto_gives_the_endpoint_and_ca_eks_has() {
    let endpoint = testenv("SHIPIT_TEST_AWS_ENDPOINT_URL");
    let region = testenv("SHIPIT_TEST_AWS_REGION");
    let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new(region.clone()))
        .endpoint_url(&endpoint)
        .credentials_provider(aws_credential_types::Credentials::for_tests())
        .load()
        .await;
    let eks = aws_sdk_eks::Client::new(&sdk);
    let name = unique_name("shop");
    let created = eks
        .create_cluster()
        .name(&name)
        .role_arn("arn:aws:iam::123456789012:role/eks-cluster")
        .resources_vpc_config(
            aws_sdk_eks::types::VpcConfigRequest::builder()
                .subnet_ids("subnet-0123456789abcdef0")
                .build(),
        )
        .send()
        .await
        .unwrap()
        .cluster
        .unwrap();

    let target = eks_target(json!({
        "cluster": name,
        "region": region,
        "endpoint_url": endpoint,
    }));
    let described = describe_eks_cluster(&target, &AwsIdentity::credential_chain())
        .await
        .unwrap_or_else(|err| panic!("DescribeCluster failed: {err}"));
    assert_eq!(described.name, name);
    assert_eq!(described.region, region);
    assert_eq!(Some(described.endpoint.as_str()), created.endpoint());
    let created_ca = created
        .certificate_authority()
        .and_then(|ca| ca.data())
        .unwrap();
    assert_eq!(
        described.certificate_authority,
        STANDARD.decode(created_ca).unwrap()
    );

    let unknown = eks_target(json!({
        "cluster": unique_name("nowhere"),
        "region": region,
        "endpoint_url": endpoint,
    }));
    let err = describe_eks_cluster(&unknown, &AwsIdentity::credential_chain())
        .await
        .unwrap_err();
    assert_eq!(err.kind, EksErrorKind::Config, "{err}");
    assert!(err.message.contains("nowhere"), "{}", err.message);
}

// ---------------------------------------------------------------------------------------------
// A kubeconfig with two contexts.

/// `kube/config` under a temporary pipeline directory: contexts `blue` (current) and `green`,
/// each its own server and static token, both servers' certificates signed by `ca`.
fn write_kubeconfig(dir: &Path, ca: &TestCa, blue: &ApiServer, green: &ApiServer) {
    let ca_data = STANDARD.encode(&ca.pem);
    let kubeconfig = format!(
        r#"apiVersion: v1
kind: Config
current-context: blue
clusters:
- name: blue-cluster
  cluster:
    server: {blue}
    certificate-authority-data: {ca_data}
- name: green-cluster
  cluster:
    server: {green}
    certificate-authority-data: {ca_data}
contexts:
- name: blue
  context: {{cluster: blue-cluster, user: blue-user}}
- name: green
  context: {{cluster: green-cluster, user: green-user, namespace: ignored}}
users:
- name: blue-user
  user: {{token: blue-token}}
- name: green-user
  user: {{token: green-token}}
"#,
        blue = blue.endpoint,
        green = green.endpoint,
    );
    std::fs::create_dir_all(dir.join("kube")).unwrap();
    std::fs::write(dir.join("kube/config"), kubeconfig).unwrap();
}

#[tokio::test]
async fn a_kubeconfig_context_picks_the_cluster_and_its_credentials() {
    let ca = TestCa::new("kubeconfig CA");
    let blue = ApiServer::start(&ca).await;
    let green = ApiServer::start(&ca).await;
    let dir = tempfile::tempdir().unwrap();
    write_kubeconfig(dir.path(), &ca, &blue, &green);
    let identity = AwsIdentity::credential_chain();

    let target = eks_target(json!({ "kubeconfig": "kube/config", "context": "green" }));
    let access = connect(&target, dir.path(), &identity).await.unwrap();
    assert_eq!(access.cluster, "green");
    assert_eq!(access.default_namespace, "web");
    access.client.apiserver_version().await.unwrap();
    let seen = green.seen();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0].authorization.as_deref(), Some("Bearer green-token"));
    assert!(blue.seen().is_empty());

    let current = eks_target(json!({ "kubeconfig": "kube/config" }));
    let access = connect(&current, dir.path(), &identity).await.unwrap();
    assert_eq!(access.cluster, "blue");
    access.client.apiserver_version().await.unwrap();
    assert_eq!(
        blue.seen()[0].authorization.as_deref(),
        Some("Bearer blue-token")
    );
}

#[tokio::test]
async fn an_unknown_context_is_a_config_error_listing_the_file_s_contexts() {
    let ca = TestCa::new("kubeconfig CA");
    let blue = ApiServer::start(&ca).await;
    let green = ApiServer::start(&ca).await;
    let dir = tempfile::tempdir().unwrap();
    write_kubeconfig(dir.path(), &ca, &blue, &green);

    let target = eks_target(json!({ "kubeconfig": "kube/config", "context": "purple" }));
    let err = connect(&target, dir.path(), &AwsIdentity::credential_chain())
        .await
        .unwrap_err();
    assert_eq!(err.kind, EksErrorKind::Config, "{err}");
    assert!(err.message.contains("`purple`"), "{}", err.message);
    assert!(err.message.contains("blue, green"), "{}", err.message);
    // The file's tokens are never quoted.
    assert!(!err.message.contains("-token"), "{}", err.message);
}

#[tokio::test]
async fn a_missing_kubeconfig_is_a_config_error_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let target = eks_target(json!({ "kubeconfig": "kube/absent" }));
    let err = connect(&target, dir.path(), &AwsIdentity::credential_chain())
        .await
        .unwrap_err();
    assert_eq!(err.kind, EksErrorKind::Config, "{err}");
    assert!(err.message.contains("kube/absent"), "{}", err.message);
}
