//! The images the deploy tests run: the demo app (the real `pipelines/demo/web`) and a copy of
//! it whose `/cgi-bin/health` answers 500. Built once per test binary, under fixed names: every
//! build of them is the same image, so test runs side by side share them.

use std::os::unix::fs::PermissionsExt;

use shipit::docker::{BuildRequest, BuilderKind, DockerClient, build_image};
use tokio::sync::OnceCell;
use tokio_util::sync::CancellationToken;

use super::docker_build_support::{Recorder, context};
use super::scenario::{base_image, daemon, error_chain};

pub const WEB_IMAGE: &str = "shipit-test-deploy-docker-web:latest";
pub const BROKEN_IMAGE: &str = "shipit-test-deploy-docker-broken:latest";

/// The image id of one of the demo images; this test binary builds both first, once.
pub async fn demo_image_id(image: &str) -> String {
    static BUILT: OnceCell<()> = OnceCell::const_new();
    let client = daemon().await;
    BUILT.get_or_init(|| build_both(&client)).await;
    client
        .bollard()
        .inspect_image(image)
        .await
        .expect("the test image exists")
        .id
        .expect("the image has an id")
}

async fn build_both(client: &DockerClient) {
    let base = base_image();
    assert!(
        client.image_exists(&base).await.unwrap_or(false),
        "failed to find base image {base} on the Docker daemon; the test environment script \
         imports it (SHIPIT_TEST_BASE_IMAGE names another)"
    );
    let demo = super::repo_root().join("pipelines/demo/web");
    let read = |file: &str| {
        std::fs::read_to_string(demo.join(file))
            .unwrap_or_else(|error| panic!("failed to read the demo's {file}: {error}"))
    };
    let dockerfile = read("Dockerfile").replace("FROM busybox:latest", &format!("FROM {base}"));
    let web = context(&[
        ("Dockerfile", &dockerfile),
        ("serve.sh", &read("serve.sh")),
        ("www/index.html", &read("www/index.html")),
        ("www/health", &read("www/health")),
    ]);
    build(client, web.path(), WEB_IMAGE).await;

    let broken = context(&[
        (
            "Dockerfile",
            &format!("FROM {WEB_IMAGE}\nCOPY health /www/cgi-bin/health\n"),
        ),
        (
            "health",
            "#!/bin/sh\necho 'Status: 500 Internal Server Error'\necho 'Content-Type: text/plain'\necho\necho 'database unreachable'\n",
        ),
    ]);
    std::fs::set_permissions(
        broken.path().join("health"),
        std::fs::Permissions::from_mode(0o755),
    )
    .expect("chmod the health script");
    build(client, broken.path(), BROKEN_IMAGE).await;
}

async fn build(client: &DockerClient, dir: &std::path::Path, tag: &str) {
    let mut request = BuildRequest::new(dir);
    request.builder = BuilderKind::Classic;
    request.tags = vec![tag.to_owned()];
    build_image(
        client,
        &request,
        &Recorder::default(),
        CancellationToken::new(),
    )
    .await
    .unwrap_or_else(|error| panic!("failed to build test image {tag}: {}", error_chain(&error)));
}
