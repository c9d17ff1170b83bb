//! Builds whose base image lives in a private registry, through the real binary: the Docker
//! config's credentials must reach the daemon's pull, through the BuildKit session (its Auth
//! service) and through the classic builder's `X-Registry-Config`, as the Docker CLI sends them.
//! The registry is the test environment's basic-auth one, which is how ECR answers too; as an
//! ECR registry (`SHIPIT_ECR_REGISTRY_HOST`), its token comes from the AWS API emulator.

mod support;

use std::process::Command;

use support::{Project, docker, testenv, unique_name};

/// Copies busybox from the daemon into the private registry under a name only this test uses;
/// returns the reference.
fn private_base(name: &str) -> String {
    let host = testenv("SHIPIT_TEST_AUTH_REGISTRY");
    let user = testenv("SHIPIT_TEST_AUTH_REGISTRY_USER");
    let password = testenv("SHIPIT_TEST_AUTH_REGISTRY_PASSWORD");
    let reference = format!("{host}/shipit-test/{name}:base");
    let out = Command::new("skopeo")
        .args([
            "copy",
            "--quiet",
            "--src-daemon-host",
            &testenv("SHIPIT_TEST_DOCKER_HOST"),
            "--dest-tls-verify=false",
            "--dest-creds",
            &format!("{user}:{password}"),
            &format!("docker-daemon:{}", testenv("SHIPIT_TEST_BASE_IMAGE")),
            &format!("docker://{reference}"),
        ])
        .output()
        .expect("skopeo runs (scripts/testenv up installs it)");
    assert!(
        out.status.success(),
        "skopeo could not copy the base image: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    reference
}

/// A Docker config folder holding `auths` for the private registry, or none at all.
fn docker_config(with_credentials: bool) -> tempfile::TempDir {
    use base64::Engine;
    let dir = tempfile::tempdir().unwrap();
    let auths = if with_credentials {
        let auth = base64::engine::general_purpose::STANDARD.encode(format!(
            "{}:{}",
            testenv("SHIPIT_TEST_AUTH_REGISTRY_USER"),
            testenv("SHIPIT_TEST_AUTH_REGISTRY_PASSWORD")
        ));
        serde_json::json!({ testenv("SHIPIT_TEST_AUTH_REGISTRY"): { "auth": auth } })
    } else {
        serde_json::json!({})
    };
    std::fs::write(
        dir.path().join("config.json"),
        serde_json::json!({ "auths": auths }).to_string(),
    )
    .unwrap();
    dir
}

fn build_from_private_base(builder: &str) {
    let name = unique_name(&format!("e2e-private-{builder}"));
    let base = private_base(&name);
    let password = testenv("SHIPIT_TEST_AUTH_REGISTRY_PASSWORD");

    // Without credentials the daemon cannot pull the base: the build fails and says where.
    let anonymous = docker_config(false);
    let project = project_from(&name, builder, &base, &anonymous);
    let run = project.shipit(&["run", "--no-progress"]);
    assert_eq!(run.code, 1, "{run:?}");
    let output = format!("{}{}", run.stdout, run.stderr);
    assert!(
        output.contains(&testenv("SHIPIT_TEST_AUTH_REGISTRY")),
        "the failure names the registry: {run:?}"
    );

    // With them in the Docker config, it pulls and builds; the password is shown nowhere.
    let config = docker_config(true);
    let project = project_from(&name, builder, &base, &config);
    let run = project.shipit(&["run", "--no-progress", "-v"]);
    assert_eq!(run.code, 0, "{run:?}");
    let output = format!("{}{}", run.stdout, run.stderr);
    assert!(!output.contains(&password), "the password leaked: {run:?}");

    remove_images(&base, &name);
}

/// A pipeline `name` with one image built by `builder` `FROM base`, run with the Docker config
/// in `docker_config`.
fn project_from(
    name: &str,
    builder: &str,
    base: &str,
    docker_config: &tempfile::TempDir,
) -> Project {
    let project =
        Project::with_docker().env("DOCKER_CONFIG", docker_config.path().to_str().unwrap());
    project
        .file(
            "shipit.yaml",
            format!(
                "version: 1\nname: {name}\nimages:\n  app:\n    context: app\n    builder: {builder}\n"
            ),
        )
        .file("app/Dockerfile", format!("FROM {base}\nRUN echo {name} > /id.txt\n"))
        .commit();
    project
}

/// Removes the pulled base and the built image from the daemon by name, never by id: the
/// pulled base is busybox under another name, and removing its id would take the test
/// environment's base image with it. The registry copy is under a name no other test uses.
fn remove_images(base: &str, pipeline: &str) {
    let built = docker(&[
        "image",
        "ls",
        "--format",
        "{{.Repository}}:{{.Tag}}",
        &format!("{pipeline}-app"),
    ]);
    for reference in std::iter::once(base).chain(built.split_whitespace()) {
        docker(&["rmi", reference]);
    }
}

#[test]
fn a_buildkit_build_pulls_a_private_base_with_the_docker_config_credentials() {
    build_from_private_base("buildkit");
}

#[test]
fn a_classic_build_pulls_a_private_base_with_the_docker_config_credentials() {
    build_from_private_base("classic");
}

#[test]
fn a_buildkit_build_pulls_an_ecr_base_with_a_token_from_the_aws_credential_chain() {
    build_from_ecr_base("buildkit");
}

#[test]
fn a_classic_build_pulls_an_ecr_base_with_a_token_from_the_aws_credential_chain() {
    build_from_ecr_base("classic");
}

fn build_from_ecr_base(builder: &str) {
    let name = unique_name(&format!("e2e-private-ecr-{builder}"));
    let base = private_base(&name);
    let host = testenv("SHIPIT_TEST_AUTH_REGISTRY");
    // No Docker config entry: the registry is ECR, and the AWS credential chain (here the
    // emulator's test keys) gets the token, as `aws ecr get-login-password` would.
    let config = docker_config(false);
    let project = project_from(&name, builder, &base, &config)
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_REGION", &testenv("SHIPIT_TEST_AWS_REGION"))
        .env("AWS_ENDPOINT_URL", &testenv("SHIPIT_TEST_AWS_ENDPOINT_URL"))
        .env("SHIPIT_ECR_REGISTRY_HOST", &host);
    let run = project.shipit(&["run", "--no-progress", "-v"]);
    assert_eq!(run.code, 0, "{run:?}");
    let output = format!("{}{}", run.stdout, run.stderr);
    assert!(
        !output.contains(&testenv("SHIPIT_TEST_AUTH_REGISTRY_PASSWORD")),
        "the token leaked: {run:?}"
    );
    remove_images(&base, &name);
}
