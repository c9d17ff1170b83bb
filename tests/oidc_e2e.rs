//! CI-native AWS credentials through the real binary: a pipeline with `aws: { role_arn }` run
//! as a GitHub Actions job with `id-token: write` (a fake token endpoint on 127.0.0.1 stands in
//! for the runner's) and no AWS keys at all pushes through `registry: ecr`: shipit requests the
//! job's OIDC token, assumes the role with STS AssumeRoleWithWebIdentity (moto), and signs
//! every ECR call with the role's credentials. A refused token request fails the run saying so.

mod support;

use support::fake_servers::oidc_token::OidcTokenEndpoint;
use support::{Project, Run, stage, testenv, unique_name};

/// The role the tests assume: in moto's default account, whose ECR token the test
/// environment's auth registry accepts.
const ROLE_ARN: &str = "arn:aws:iam::123456789012:role/shipit-ci";

/// The body of a GET on moto's API (an HTTP/1.0 request: the answer ends with the connection).
fn moto_get(path: &str) -> String {
    use std::io::{Read, Write};
    let endpoint = testenv("SHIPIT_TEST_AWS_ENDPOINT_URL");
    let host = endpoint.trim_start_matches("http://").trim_end_matches('/');
    let mut stream = std::net::TcpStream::connect(host).expect("moto answers");
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (_, body) = response.split_once("\r\n\r\n").expect("an HTTP answer");
    body.to_owned()
}

/// The roles moto's STS handed out to sessions named `session_name`, as moto records them
/// (role ARN, keys).
fn assumed_roles(session_name: &str) -> Vec<serde_json::Value> {
    let data: serde_json::Value =
        serde_json::from_str(&moto_get("/moto-api/data.json")).expect("moto's model data");
    data["sts"]["AssumedRole"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|role| role["session_name"] == session_name)
        .cloned()
        .collect()
}

/// A project whose shipit runs as a GitHub Actions job with `id-token: write`, with no AWS
/// keys in its environment, STS and ECR answered by moto.
fn github_job(endpoint: &OidcTokenEndpoint) -> Project {
    let moto = testenv("SHIPIT_TEST_AWS_ENDPOINT_URL");
    let mut project = Project::with_docker();
    for key in [
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_PROFILE",
        "AWS_ROLE_ARN",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
    ] {
        project = project.without_env(key);
    }
    project
        .env("GITHUB_ACTIONS", "true")
        .env("ACTIONS_ID_TOKEN_REQUEST_URL", &endpoint.request_url())
        .env("ACTIONS_ID_TOKEN_REQUEST_TOKEN", &endpoint.request_token)
        .env("AWS_ENDPOINT_URL_STS", &moto)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .env("SHIPIT_TEST_AWS_ENDPOINT_URL", &moto)
        .env(
            "SHIPIT_TEST_AUTH_REGISTRY",
            &testenv("SHIPIT_TEST_AUTH_REGISTRY"),
        )
}

/// A pipeline that assumes `ROLE_ARN` as `session_name` and pushes to moto's ECR (its
/// registry host the test environment's auth registry).
fn ecr_pipeline(project: &Project, name: &str, session_name: &str) {
    project
        .file(
            "shipit.yaml",
            format!(
                "version: 1\nname: {name}\naws:\n  role_arn: {ROLE_ARN}\n  session_name: {session_name}\n  region: us-east-1\n  duration: 15m\nimages:\n  api:\n    context: api\n    push:\n      registry: ecr\n      repository: e2e/{name}\n      tags: [v1]\n      ecr:\n        endpoint_url: \"${{{{ env.SHIPIT_TEST_AWS_ENDPOINT_URL }}}}\"\n        registry_host: \"${{{{ env.SHIPIT_TEST_AUTH_REGISTRY }}}}\"\n        create_repository: true\n"
            ),
        )
        .file("api/Dockerfile", format!("FROM busybox:latest\nRUN echo {name} > /id.txt\n"))
        .commit();
}

/// Everything the run wrote to its streams and its journal, but for the `::add-mask::` lines,
/// which exist to name the secrets to GitHub.
fn written(project: &Project, run: &Run) -> String {
    let mut all: String = format!("{}{}", run.stdout, run.stderr)
        .lines()
        .filter(|line| !line.starts_with("::add-mask::"))
        .map(|line| format!("{line}\n"))
        .collect();
    for id in project.run_ids() {
        let dir = project.journal_dir().join(id);
        for file in ["journal.json", "summary.json"] {
            all.push_str(&std::fs::read_to_string(dir.join(file)).unwrap_or_default());
        }
    }
    all
}

#[test]
fn a_github_job_with_only_its_oidc_token_assumes_the_role_and_pushes_to_ecr() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let name = unique_name("e2e-oidc");
    let endpoint = runtime.block_on(OidcTokenEndpoint::start(
        &format!("repo:shop/{name}"),
        false,
    ));
    let session_name = format!("shipit-test-{name}");
    let project = github_job(&endpoint);
    ecr_pipeline(&project, &name, &session_name);

    let run = project.shipit(&["run", "--output", "json"]);
    assert_eq!(run.code, 0, "{run:?}");
    let result = run.json();
    let digest = stage(&result, "push:api")["outputs"]["digest"]
        .as_str()
        .expect("the push recorded its digest")
        .to_owned();
    assert!(digest.starts_with("sha256:"), "{result}");

    let requests = endpoint.requests();
    assert!(
        requests.refused == 0 && !requests.granted_audiences.is_empty(),
        "{requests:?}"
    );
    assert!(
        requests
            .granted_audiences
            .iter()
            .all(|audience| audience == "sts.amazonaws.com"),
        "{requests:?}"
    );
    let assumed = assumed_roles(&session_name);
    assert!(
        !assumed.is_empty(),
        "moto's STS assumed no role for {session_name}"
    );
    assert!(
        assumed.iter().all(|role| role["role_arn"] == ROLE_ARN),
        "{assumed:?}"
    );

    // Neither the job's tokens nor the role's credentials appear in anything shipit wrote.
    let output = written(&project, &run);
    let mut secrets = vec![endpoint.request_token.clone(), endpoint.jwt.clone()];
    for role in &assumed {
        for key in ["secret_access_key", "session_token"] {
            secrets.push(
                role[key]
                    .as_str()
                    .expect("moto records the keys")
                    .to_owned(),
            );
        }
    }
    for secret in &secrets {
        assert!(
            !output.contains(secret.as_str()),
            "a credential leaked: {run:?}"
        );
    }
}

#[test]
fn a_refused_token_request_fails_the_run_saying_which_step_failed_and_no_secret() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let name = unique_name("e2e-oidc-refused");
    let endpoint = runtime.block_on(OidcTokenEndpoint::start(&format!("repo:shop/{name}"), true));
    let session_name = format!("shipit-test-{name}");
    let project = github_job(&endpoint);
    ecr_pipeline(&project, &name, &session_name);

    let run = project.shipit(&["run"]);
    assert_eq!(run.code, 1, "{run:?}");
    // The push's error is the token request's own, not the SDK's wrapping of it.
    let failed = run
        .stderr
        .lines()
        .find(|line| line.contains("push:api: failed after"))
        .unwrap_or_else(|| panic!("the push failed: {run:?}"));
    let (_, message) = failed.split_once("s: ").expect("the failure has a message");
    assert!(
        message.starts_with(
            "failed to get the CI job's OIDC token from the GitHub Actions OIDC token endpoint: \
             the token request was refused (HTTP 403): the job needs `permissions: id-token: \
             write`"
        ),
        "{run:?}"
    );
    assert!(endpoint.requests().refused > 0);
    assert!(
        assumed_roles(&session_name).is_empty(),
        "no role was assumed without a token"
    );
    let output = written(&project, &run);
    assert!(
        !output.contains(&endpoint.request_token) && !output.contains(&endpoint.jwt),
        "a token leaked: {run:?}"
    );
}
