//! shipit's own image, built the way its users would get it: the repository's Dockerfile, built
//! and pushed by shipit itself through pipelines/shipit.yaml on the test environment's daemon,
//! whose base images `scripts/testenv up` made. Then the image is run (never on a bridge
//! network): it prints the crate's version, validates a pipeline file mounted into it, runs as a
//! non-root user with git and CA certificates, and drives the daemon through a mounted socket
//! once it is given the socket's group.
//!
//! One test, because everything hangs on one build. The first build on a machine compiles
//! shipit in release mode inside the daemon (about ten minutes on two busy cores); the daemon
//! keeps cargo's registry and target folder as cache mounts, so later builds take seconds, or a
//! minute or two after a change to src/.

mod support;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;

use support::scenario::Scenario;
use support::{Project, Run, docker, docker_cli_path, repo_root, stage, testenv};

/// The user the Dockerfile runs shipit as.
const IMAGE_USER: &str = "10001:10001";

#[test]
fn shipit_builds_its_own_image_which_runs_non_root_with_git_and_reaches_the_daemon() {
    let scenario = Scenario::new("shipit-image");
    let image = build_and_push_through_the_pipeline(&scenario);

    prints_the_crate_version(&image);
    carries_the_version_and_revision_labels(&image);
    runs_as_a_non_root_user_with_git_and_ca_certificates(&image);
    validates_a_mounted_pipeline_and_refuses_a_broken_one(&image);
    builds_through_the_mounted_socket_once_given_its_group(&image, &scenario);
}

/// `shipit run -f pipelines/shipit.yaml --env publish` from the repository, pushing to the test
/// registry under the scenario's name. Returns the built image under a name of the scenario's,
/// which the scenario removes when the test ends.
fn build_and_push_through_the_pipeline(scenario: &Scenario) -> String {
    let registry = testenv("SHIPIT_TEST_REGISTRY");
    let repository = format!("e2e/{}", scenario.name());
    // The harness's command, which clears the CI variables for a predictable output mode, run
    // in the repository; the state goes into the harness's project, leaving the repository as
    // it was.
    let harness = Project::new();
    let state = harness.path().join(".shipit");
    let run = command_output(
        harness
            .command(&["run", "-f", "pipelines/shipit.yaml", "--env", "publish"])
            .args(["--output", "json", "--no-progress", "--state-dir"])
            .arg(&state)
            .current_dir(repo_root())
            .env("DOCKER_HOST", testenv("SHIPIT_TEST_DOCKER_HOST"))
            .env("SHIPIT_IMAGE_REGISTRY", &registry)
            .env("SHIPIT_IMAGE_REPOSITORY", &repository),
    );
    // The JSON result comes even when the run fails, so an image that was built is handed to
    // the scenario, which removes it when the test ends, before anything is checked.
    let result = run.json();
    let built = &stage(&result, "build:shipit")["outputs"];
    let image = scenario.image("shipit");
    if let (Some(image_id), Some(local_ref)) =
        (built["image_id"].as_str(), built["local_ref"].as_str())
    {
        docker(&["tag", image_id, &image]);
        // Dropped, so that the builds of every other source do not pile up under the pipeline's
        // own name.
        docker(&["rmi", local_ref]);
    }
    assert_eq!(run.code, 0, "shipit's pipeline builds its image: {run:?}");

    // Both tags the pipeline names resolve, in the registry, to the digest shipit recorded.
    let pushed = &stage(&result, "push:shipit")["outputs"];
    let digest = pushed["digest"].as_str().expect("a pushed digest");
    for tag in [head_sha(&repo_root()), env!("CARGO_PKG_VERSION").to_owned()] {
        let reference = format!("docker://{registry}/{repository}:{tag}");
        let inspect = command_output(Command::new("skopeo").args([
            "inspect",
            "--tls-verify=false",
            "--format",
            "{{.Digest}}",
            &reference,
        ]));
        assert_eq!(inspect.code, 0, "skopeo inspects {reference}: {inspect:?}");
        assert_eq!(inspect.stdout.trim(), digest, "{reference}");
    }
    image
}

fn prints_the_crate_version(image: &str) {
    let run = docker_run(&[image, "--version"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(
        run.stdout,
        format!("shipit {}\n", env!("CARGO_PKG_VERSION")),
        "{run:?}"
    );
}

/// The version comes from the pipeline's `vars.version`, which must follow Cargo.toml; the
/// revision is the commit shipit built from.
fn carries_the_version_and_revision_labels(image: &str) {
    let label = |name: &str| {
        docker(&[
            "image",
            "inspect",
            "--format",
            &format!("{{{{index .Config.Labels \"org.opencontainers.image.{name}\"}}}}"),
            image,
        ])
        .trim()
        .to_owned()
    };
    assert_eq!(
        label("version"),
        env!("CARGO_PKG_VERSION"),
        "pipelines/shipit.yaml's vars.version must match Cargo.toml's version"
    );
    assert_eq!(label("revision"), head_sha(&repo_root()));
}

fn runs_as_a_non_root_user_with_git_and_ca_certificates(image: &str) {
    let configured = docker(&["image", "inspect", "--format", "{{.Config.User}}", image]);
    assert_eq!(configured.trim(), IMAGE_USER);
    let id = docker_run(&["--entrypoint", "id", image]);
    assert_eq!(id.code, 0, "{id:?}");
    assert!(
        id.stdout.starts_with("uid=10001(shipit) gid=10001(shipit)"),
        "{id:?}"
    );

    let git = docker_run(&["--entrypoint", "git", image, "--version"]);
    assert_eq!(git.code, 0, "{git:?}");
    assert!(git.stdout.starts_with("git version "), "{git:?}");

    // Debian's bundle of the public certificate authorities, well over a hundred of them.
    let bundle = docker_run(&[
        "--entrypoint",
        "cat",
        image,
        "/etc/ssl/certs/ca-certificates.crt",
    ]);
    assert_eq!(bundle.code, 0, "{bundle:?}");
    let certificates = bundle.stdout.matches("BEGIN CERTIFICATE").count();
    assert!(
        certificates > 100,
        "only {certificates} CA certificates in the bundle"
    );
}

fn validates_a_mounted_pipeline_and_refuses_a_broken_one(image: &str) {
    let project = readable_project();
    project
        .file(
            "shipit.yaml",
            "version: 1\nname: mounted\nimages:\n  app:\n    context: app\n",
        )
        .file("app/Dockerfile", "FROM busybox:latest\n")
        .file(
            "broken.yaml",
            "version: 1\nname: broken\nimages:\n  app:\n    context: app\n    colour: blue\n",
        );
    let workspace = format!("{}:/workspace:ro", project.path().display());

    // The image's working directory is /workspace, and shipit.yaml the default file.
    let valid = docker_run(&["-v", &workspace, image, "validate"]);
    assert_eq!(valid.code, 0, "{valid:?}");
    assert!(
        valid.stderr.contains("pipeline mounted is valid"),
        "{valid:?}"
    );

    let broken = docker_run(&["-v", &workspace, image, "validate", "-f", "broken.yaml"]);
    assert_eq!(broken.code, 2, "{broken:?}");
    assert!(
        broken.stderr.contains("broken.yaml:6:5") && broken.stderr.contains("colour"),
        "the problem is reported at its line and column: {broken:?}"
    );
}

/// The documented way to reach the host's daemon: its socket mounted at shipit's default path,
/// with the socket's group added. The checkout belongs to another user than the image's, as a
/// mounted checkout does, and shipit still reads its commit for the revision label.
fn builds_through_the_mounted_socket_once_given_its_group(image: &str, scenario: &Scenario) {
    let host = testenv("SHIPIT_TEST_DOCKER_HOST");
    let socket = host
        .strip_prefix("unix://")
        .expect("the test daemon listens on a unix socket");
    let socket_group = std::fs::metadata(socket)
        .expect("the daemon's socket exists")
        .gid()
        .to_string();
    let project = readable_project();
    project
        .file(
            "shipit.yaml",
            format!(
                "version: 1\nname: {}\nimages:\n  app:\n    context: app\n",
                scenario.name()
            ),
        )
        .file(
            "app/Dockerfile",
            "FROM busybox:latest\nRUN echo built > /built.txt\n",
        )
        .commit();
    let workspace = format!("{}:/workspace", project.path().display());
    let mounted_socket = format!("{socket}:/var/run/docker.sock");
    // The checkout is not the container user's to write, so the state goes to the container's
    // own /tmp.
    let run_args = ["run", "--state-dir", "/tmp/shipit", "--output", "json"];

    let refused = docker_run(
        &[
            ["-v", &mounted_socket, "-v", &workspace, image].as_slice(),
            &run_args,
        ]
        .concat(),
    );
    assert_eq!(refused.code, 1, "{refused:?}");
    assert!(
        refused.stderr.contains("Permission denied") && refused.stderr.contains("--group-add"),
        "without the socket's group, shipit says what to add: {refused:?}"
    );

    let built = docker_run(
        &[
            [
                "-v",
                &mounted_socket,
                "--group-add",
                &socket_group,
                "-v",
                &workspace,
                image,
            ]
            .as_slice(),
            &run_args,
        ]
        .concat(),
    );
    assert_eq!(built.code, 0, "{built:?}");
    let result = built.json();
    let local_ref = stage(&result, "build:app")["outputs"]["local_ref"]
        .as_str()
        .expect("a local ref")
        .to_owned();
    let revision = docker(&[
        "image",
        "inspect",
        "--format",
        "{{index .Config.Labels \"org.opencontainers.image.revision\"}}",
        &local_ref,
    ]);
    assert_eq!(
        revision.trim(),
        head_sha(project.path()),
        "shipit in the image read the commit of a checkout owned by another user"
    );
}

/// `docker run --rm --network none ARGS…` on the test environment's daemon.
fn docker_run(args: &[&str]) -> Run {
    let mut command = Command::new(docker_cli_path());
    command
        .args(["-H", &testenv("SHIPIT_TEST_DOCKER_HOST")])
        .args(["run", "--rm", "--network", "none"])
        .args(args);
    command_output(&mut command)
}

fn command_output(command: &mut Command) -> Run {
    let output = command
        .output()
        .unwrap_or_else(|err| panic!("failed to start {command:?}: {err}"));
    Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// A git project the image's user may read: a mounted checkout usually belongs to the host's
/// user, not to the container's, and a temporary folder is private to its owner.
fn readable_project() -> Project {
    let project = Project::new();
    std::fs::set_permissions(project.path(), std::fs::Permissions::from_mode(0o755))
        .expect("the project folder can be opened to everyone");
    project
}

fn head_sha(dir: &Path) -> String {
    let output = command_output(
        Command::new("git")
            .args(["rev-parse", "HEAD"])
            .current_dir(dir),
    );
    assert_eq!(output.code, 0, "{output:?}");
    output.stdout.trim().to_owned()
}
