//! The push stage through the real binary: to a registry without auth, and through the ECR flow
//! (token from the AWS API emulator, registry host overridden to the local basic-auth registry),
//! and interrupted in mid-upload.

mod support;

use std::time::{Duration, Instant};

use support::fake_servers::fault_proxy::{Fault, FaultProxy, Rule};
use support::{Project, stage, testenv, unique_name};

/// The answer to a HEAD of a manifest: its status and `Docker-Content-Digest`; None when the
/// registry could not be asked.
fn head_manifest(
    registry: &str,
    repository: &str,
    reference: &str,
    auth: Option<(&str, &str)>,
) -> Option<(u16, Option<String>)> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(registry).ok()?;
    let mut request = format!(
        "HEAD /v2/{repository}/manifests/{reference} HTTP/1.0\r\nHost: {registry}\r\nAccept: application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json\r\n"
    );
    if let Some((user, password)) = auth {
        use base64::Engine;
        let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        request.push_str(&format!("Authorization: Basic {token}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let status = response.split_whitespace().nth(1)?.parse().ok()?;
    let digest = response
        .lines()
        .find_map(|line| {
            line.strip_prefix("Docker-Content-Digest: ")
                .or_else(|| line.strip_prefix("docker-content-digest: "))
        })
        .map(|d| d.trim().to_owned());
    Some((status, digest))
}

/// The digest the registry serves under `reference`, if any.
fn manifest_digest(
    registry: &str,
    repository: &str,
    reference: &str,
    auth: Option<(&str, &str)>,
) -> Option<String> {
    head_manifest(registry, repository, reference, auth)?.1
}

#[test]
fn an_image_is_pushed_every_tag_resolves_to_the_digest_and_a_rerun_skips_the_push() {
    let registry = testenv("SHIPIT_TEST_REGISTRY");
    let name = unique_name("e2e-push");
    let repository = format!("e2e/{name}");
    let project = Project::with_docker();
    project
        .file(
            "shipit.yaml",
            format!(
                "version: 1\nname: {name}\nimages:\n  web:\n    context: web\n    push:\n      registry: {registry}\n      repository: {repository}\n      tags: [latest, \"${{{{ git.short_sha }}}}\"]\n"
            ),
        )
        .file("web/Dockerfile", format!("FROM busybox:latest\nRUN echo {name} > /id.txt\n"))
        .commit();
    let run = project.shipit(&["run", "--output", "json"]);
    assert_eq!(run.code, 0, "{run:?}");
    let result = run.json();
    let push = stage(&result, "push:web");
    let digest = push["outputs"]["digest"].as_str().unwrap().to_owned();
    assert!(digest.starts_with("sha256:"), "{push}");
    assert_eq!(
        push["outputs"]["ref"],
        format!("{registry}/{repository}@{digest}")
    );
    assert_eq!(
        manifest_digest(&registry, &repository, "latest", None).as_deref(),
        Some(digest.as_str())
    );
    let short_sha = result["git"]["sha"].as_str().unwrap()[..7].to_owned();
    assert_eq!(
        manifest_digest(&registry, &repository, &short_sha, None).as_deref(),
        Some(digest.as_str())
    );

    let rerun = project.shipit(&["run", "--output", "json"]);
    assert_eq!(rerun.code, 0, "{rerun:?}");
    let rerun = rerun.json();
    assert_eq!(stage(&rerun, "push:web")["status"], "skipped");
    assert_eq!(
        stage(&rerun, "push:web")["outputs"]["digest"],
        digest.as_str()
    );
}

#[test]
fn registry_ecr_gets_a_token_from_the_aws_api_and_pushes_with_it() {
    let name = unique_name("e2e-ecr");
    let host = testenv("SHIPIT_TEST_AUTH_REGISTRY");
    let project = Project::with_docker()
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_EC2_METADATA_DISABLED", "true");
    project
        .file(
            "shipit.yaml",
            format!(
                "version: 1\nname: {name}\nimages:\n  api:\n    context: api\n    push:\n      registry: ecr\n      repository: e2e/{name}\n      tags: [v1]\n      ecr:\n        region: us-east-1\n        endpoint_url: \"${{{{ env.SHIPIT_TEST_AWS_ENDPOINT_URL }}}}\"\n        registry_host: \"${{{{ env.SHIPIT_TEST_AUTH_REGISTRY }}}}\"\n        create_repository: true\n"
            ),
        )
        .file("api/Dockerfile", format!("FROM busybox:latest\nRUN echo {name} > /id.txt\n"))
        .commit();
    let project = project
        .env(
            "SHIPIT_TEST_AWS_ENDPOINT_URL",
            &testenv("SHIPIT_TEST_AWS_ENDPOINT_URL"),
        )
        .env("SHIPIT_TEST_AUTH_REGISTRY", &host);
    let run = project.shipit(&["run", "--output", "json"]);
    assert_eq!(run.code, 0, "{run:?}");
    let result = run.json();
    let digest = stage(&result, "push:api")["outputs"]["digest"]
        .as_str()
        .unwrap()
        .to_owned();
    let auth = (
        testenv("SHIPIT_TEST_AUTH_REGISTRY_USER"),
        testenv("SHIPIT_TEST_AUTH_REGISTRY_PASSWORD"),
    );
    assert_eq!(
        manifest_digest(
            &host,
            &format!("e2e/{name}"),
            "v1",
            Some((&auth.0, &auth.1))
        )
        .as_deref(),
        Some(digest.as_str())
    );
    assert!(
        !run.stderr.contains(&auth.1),
        "the registry password never appears in the output"
    );
    let journal = std::fs::read_to_string(
        project
            .journal_dir()
            .join(result["run_id"].as_str().unwrap())
            .join("journal.json"),
    )
    .unwrap();
    assert!(!journal.contains(&auth.1), "nor in the journal");
}

#[test]
fn wrong_registry_credentials_fail_the_run_with_exit_1_naming_the_target_and_no_password() {
    use base64::Engine;
    let host = testenv("SHIPIT_TEST_AUTH_REGISTRY");
    let user = testenv("SHIPIT_TEST_AUTH_REGISTRY_USER");
    let name = unique_name("e2e-badauth");
    let repository = format!("e2e/{name}");
    let wrong = format!("wrong-{name}");
    let docker_config = tempfile::tempdir().unwrap();
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{wrong}"));
    std::fs::write(
        docker_config.path().join("config.json"),
        serde_json::json!({ "auths": { host.clone(): { "auth": auth } } }).to_string(),
    )
    .unwrap();
    let project = Project::with_docker().env(
        "DOCKER_CONFIG",
        docker_config.path().to_str().expect("a UTF-8 temp path"),
    );
    project
        .file(
            "shipit.yaml",
            format!(
                "version: 1\nname: {name}\nimages:\n  web:\n    context: web\n    push:\n      registry: {host}\n      repository: {repository}\n      tags: [v1]\n"
            ),
        )
        .file("web/Dockerfile", format!("FROM busybox:latest\nRUN echo {name} > /id.txt\n"))
        .commit();
    let run = project.shipit(&["run"]);
    assert_eq!(run.code, 1, "{run:?}");
    let output = format!("{}{}", run.stdout, run.stderr);
    assert!(
        output.contains("failed to authenticate")
            && output.contains("rejected the credentials from the Docker config")
            && output.contains(&host)
            && output.contains(&repository),
        "{run:?}"
    );
    for secret in [&wrong, &auth] {
        assert!(
            !output.contains(secret.as_str()),
            "a credential leaked: {run:?}"
        );
    }
    let run_id = project.run_ids().pop().expect("the run was journaled");
    let journal =
        std::fs::read_to_string(project.journal_dir().join(run_id).join("journal.json")).unwrap();
    assert!(!journal.contains(&wrong) && !journal.contains(&auth));
}

/// Ctrl-C while a layer is being uploaded (a proxy in front of the registry holds the first
/// blob upload unanswered): shipit stops the push, exits 130, journals the push interrupted
/// with no digest, and the registry holds no tag for it.
#[test]
fn a_push_interrupted_mid_upload_exits_130_and_is_journaled_interrupted_with_no_tag() {
    let registry = testenv("SHIPIT_TEST_REGISTRY");
    let runtime = tokio::runtime::Runtime::new().expect("a runtime for the proxy");
    let proxy = runtime.block_on(FaultProxy::start(
        &registry,
        vec![Rule {
            method: "PUT",
            path_contains: "/blobs/uploads/",
            fail_on: vec![1],
            fault: Fault::Hold,
        }],
    ));
    let name = unique_name("e2e-sigint");
    let repository = format!("e2e/{name}");
    let project = Project::with_docker();
    project
        .file(
            "shipit.yaml",
            format!(
                "version: 1\nname: {name}\nimages:\n  web:\n    context: web\n    push:\n      registry: {}\n      repository: {repository}\n      tags: [v1]\n",
                proxy.host()
            ),
        )
        .file("web/Dockerfile", format!("FROM busybox:latest\nRUN echo {name} > /id.txt\n"))
        .commit();
    let log = tempfile::NamedTempFile::new().unwrap();
    let mut child = project
        .command(&["run", "--no-progress"])
        .stdout(std::process::Stdio::null())
        .stderr(log.reopen().unwrap())
        .spawn()
        .expect("shipit starts");
    let output = || std::fs::read_to_string(log.path()).unwrap_or_default();

    runtime.block_on(
        proxy.wait_for("held blob upload", Duration::from_secs(180), |seen| {
            seen.injected
        }),
    );
    // SAFETY: kill(2) on the child's pid, which is still ours: it has not been waited for.
    let sent = unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) };
    assert_eq!(sent, 0, "SIGINT could not be sent");
    // Well within the runner's 30 s grace for a stage that ignores cancellation: the push
    // itself must stop, not the runner give up on it.
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("shipit still runs 20 s after Ctrl-C:\n{}", output());
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(status.code(), Some(130), "{}", output());

    let run_id = project.run_ids().pop().expect("the run was journaled");
    let journal = project.journal(&run_id);
    assert_eq!(
        stage(&journal, "build:web")["status"],
        "succeeded",
        "{journal}"
    );
    let push = stage(&journal, "push:web");
    assert_eq!(push["status"], "interrupted", "{journal}");
    assert!(push["outputs"]["digest"].is_null(), "{journal}");
    assert!(
        proxy
            .seen()
            .iter()
            .all(|seen| !seen.resource().contains("/manifests/")),
        "a manifest was sent: {:?}",
        proxy.seen()
    );
    let (status, _) = head_manifest(&registry, &repository, "v1", None)
        .expect("the registry answers a HEAD of the tag");
    assert_eq!(status, 404, "the interrupted push left tag v1 behind");
}
