//! No secret in anything shipit writes, under each CI's environment: GitHub Actions, GitLab,
//! Jenkins and none. Each test runs two full pipelines through the real binary with known
//! secret values (environment variables the pipeline lists under `secrets:`, build secrets from
//! the environment and from a file, AWS keys, the registry password an ECR token carries, and
//! under GitHub and GitLab the OIDC token and the role credentials it buys): one that builds
//! and pushes, and one whose build step echoes the secrets and fails (so they reach its log and
//! its error), beside a build whose error names a path made from a secret; and a third that is
//! refused before it starts because a secret is not the role ARN it stands for. Then every byte
//! shipit wrote (stdout, stderr, the JSON result, JUnit, GitHub's step outputs and summary,
//! the whole state folder with the journal) is searched for every secret: none may appear,
//! except on the `::add-mask::` lines that exist to name them to GitHub.

mod support;

use std::path::Path;

use support::fake_servers::oidc_token::OidcTokenEndpoint;
use support::{Project, Run, testenv, unique_name};

/// The role the GitHub and GitLab jobs assume: in moto's default account, whose ECR token the
/// test environment's auth registry accepts.
const ROLE_ARN: &str = "arn:aws:iam::123456789012:role/shipit-leak-test";

#[derive(Debug, Clone, Copy, PartialEq)]
enum Ci {
    GithubActions,
    Gitlab,
    Jenkins,
    None,
}

fn secret(label: &str) -> String {
    format!("{label}-{:032x}", rand::random::<u128>())
}

/// The secrets a test knows from the start.
struct Known {
    deploy_key: String,
    npm_token: String,
    certificate: String,
    aws_secret_key: String,
    aws_session_token: String,
    gitlab_id_token: String,
}

impl Known {
    fn new() -> Self {
        Known {
            deploy_key: secret("deploy"),
            npm_token: secret("npm"),
            certificate: format!(
                "-----BEGIN KEY-----\n{}\n{}\n-----END KEY-----\n",
                secret("certline1"),
                secret("certline2")
            ),
            aws_secret_key: secret("awssecret"),
            aws_session_token: secret("awssession"),
            gitlab_id_token: format!("eyJ{}.eyJ{}.{}", secret("h"), secret("p"), secret("s")),
        }
    }

    /// Every value the job under `ci` is given, and each line of the multi-line one.
    fn values(&self, ci: Ci) -> Vec<String> {
        let mut values = vec![
            self.deploy_key.clone(),
            self.npm_token.clone(),
            self.aws_secret_key.clone(),
            self.aws_session_token.clone(),
        ];
        if ci == Ci::Gitlab {
            values.push(self.gitlab_id_token.clone());
        }
        values.extend(
            self.certificate
                .lines()
                .filter(|line| !line.starts_with("-----"))
                .map(str::to_owned),
        );
        values
    }
}

/// The roles moto's STS handed out to sessions named `session_name`.
fn assumed_roles(session_name: &str) -> Vec<serde_json::Value> {
    use std::io::{Read, Write};
    let endpoint = testenv("SHIPIT_TEST_AWS_ENDPOINT_URL");
    let host = endpoint.trim_start_matches("http://").trim_end_matches('/');
    let mut stream = std::net::TcpStream::connect(host).expect("moto answers");
    write!(
        stream,
        "GET /moto-api/data.json HTTP/1.0\r\nHost: {host}\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (_, body) = response.split_once("\r\n\r\n").expect("an HTTP answer");
    let data: serde_json::Value = serde_json::from_str(body).expect("moto's model data");
    data["sts"]["AssumedRole"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|role| role["session_name"] == session_name)
        .cloned()
        .collect()
}

/// Both pipelines, their inputs, and the job's environment.
/// The Docker config is an empty folder: the registry password reaches shipit only as the
/// ECR token.
fn project(ci: Ci, known: &Known, name: &str, session_name: &str, docker_config: &Path) -> Project {
    let moto = testenv("SHIPIT_TEST_AWS_ENDPOINT_URL");
    let registry = testenv("SHIPIT_TEST_AUTH_REGISTRY");
    let mut project = Project::with_docker()
        .without_env("AWS_PROFILE")
        .env("DEPLOY_KEY", &known.deploy_key)
        .env("NPM_TOKEN", &known.npm_token)
        .env("AWS_ACCESS_KEY_ID", "AKIAIOSFODNN7EXAMPLE")
        .env("AWS_SECRET_ACCESS_KEY", &known.aws_secret_key)
        .env("AWS_SESSION_TOKEN", &known.aws_session_token)
        .env("AWS_ENDPOINT_URL_STS", &moto)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .env("DOCKER_CONFIG", docker_config.to_str().unwrap())
        .env("MOTO", &moto)
        .env("REGISTRY", &registry);
    project = match ci {
        Ci::GithubActions => project
            .env("CI", "true")
            .env("GITHUB_ACTIONS", "true")
            .env("GITHUB_OUTPUT", "out/github-output")
            .env("GITHUB_STEP_SUMMARY", "out/github-summary.md"),
        Ci::Gitlab => project
            .env("CI", "true")
            .env("GITLAB_CI", "true")
            .env("AWS_ID_TOKEN", &known.gitlab_id_token),
        Ci::Jenkins => project
            .env("JENKINS_URL", "http://jenkins.invalid/")
            .env("BUILD_NUMBER", "7"),
        Ci::None => project,
    };
    let aws = format!(
        "aws:\n  role_arn: {ROLE_ARN}\n  session_name: {session_name}\n  region: us-east-1\n"
    );
    let secrets_block =
        "    secrets:\n      npm: { env: NPM_TOKEN }\n      cert: { file: cert.pem }\n";
    project
        .file("cert.pem", &known.certificate)
        .file(
            "success.yaml",
            format!(
                "version: 1\nname: {name}-ok\nsecrets: [DEPLOY_KEY]\n{aws}images:\n  web:\n    context: web\n{secrets_block}    push:\n      registry: ecr\n      repository: e2e/{name}\n      tags: [v1]\n      ecr:\n        region: us-east-1\n        endpoint_url: \"${{{{ env.MOTO }}}}\"\n        registry_host: \"${{{{ env.REGISTRY }}}}\"\n        create_repository: true\n"
            ),
        )
        .file(
            "web/Dockerfile",
            format!(
                "FROM busybox:latest\nRUN --mount=type=secret,id=npm --mount=type=secret,id=cert test -s /run/secrets/npm && test -s /run/secrets/cert && echo {name} > /id.txt\n"
            ),
        )
        .file(
            "failure.yaml",
            format!(
                "version: 1\nname: {name}-bad\nsecrets: [DEPLOY_KEY]\n{aws}images:\n  echo:\n    context: echo\n    args:\n      DEPLOY: \"${{{{ env.DEPLOY_KEY }}}}\"\n      AWS_KEY: \"${{{{ env.AWS_SECRET_ACCESS_KEY }}}}\"\n{secrets_block}  missing:\n    context: echo\n    dockerfile: \"${{{{ env.DEPLOY_KEY }}}}.Dockerfile\"\n"
            ),
        )
        .file(
            "invalid.yaml",
            format!(
                "version: 1\nname: {name}-invalid\nsecrets: [DEPLOY_KEY]\naws:\n  role_arn: \"${{{{ env.DEPLOY_KEY }}}}\"\nimages:\n  web:\n    context: web\n"
            ),
        )
        .file(
            "echo/Dockerfile",
            "FROM busybox:latest\nARG DEPLOY\nARG AWS_KEY\nRUN --mount=type=secret,id=npm --mount=type=secret,id=cert sh -c 'echo \"deploy=$DEPLOY\"; echo \"aws=$AWS_KEY\"; echo \"npm=$(cat /run/secrets/npm)\"; cat /run/secrets/cert; exit 3'\n",
        )
        .commit();
    project
}

/// Every file under `dir`, with its content.
fn files_under(dir: &Path, found: &mut Vec<(String, Vec<u8>)>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            files_under(&path, found);
        } else if let Ok(bytes) = std::fs::read(&path) {
            found.push((path.display().to_string(), bytes));
        }
    }
}

/// Everything shipit wrote: both runs' streams, and every file under the state and output
/// folders. The `::add-mask::` lines are set aside: they name the secrets on purpose.
fn written(project: &Project, runs: &[&Run]) -> (Vec<(String, Vec<u8>)>, Vec<String>) {
    let mut written = Vec::new();
    let mut masks = Vec::new();
    for (index, run) in runs.iter().enumerate() {
        for (stream, text) in [("stdout", &run.stdout), ("stderr", &run.stderr)] {
            let mut kept = String::new();
            for line in text.lines() {
                match line.strip_prefix("::add-mask::") {
                    Some(value) => masks.push(value.to_owned()),
                    None => {
                        kept.push_str(line);
                        kept.push('\n');
                    }
                }
            }
            written.push((format!("run {index} {stream}"), kept.into_bytes()));
        }
    }
    files_under(&project.path().join(".shipit"), &mut written);
    files_under(&project.path().join("out"), &mut written);
    (written, masks)
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle.as_bytes())
}

fn leaks_nothing_under(ci: Ci) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let name = unique_name("e2e-leak");
    let session_name = format!("shipit-leak-{name}");
    let known = Known::new();
    let endpoint = runtime.block_on(OidcTokenEndpoint::start(
        &format!("repo:shop/{name}"),
        false,
    ));
    let docker_config = tempfile::tempdir().unwrap();
    let mut project = project(ci, &known, &name, &session_name, docker_config.path());
    if ci == Ci::GithubActions {
        project = project
            .env("ACTIONS_ID_TOKEN_REQUEST_URL", &endpoint.request_url())
            .env("ACTIONS_ID_TOKEN_REQUEST_TOKEN", &endpoint.request_token);
    }
    let reports = |prefix: &str| {
        [
            "--output".to_owned(),
            "json".to_owned(),
            "-v".to_owned(),
            "--result-file".to_owned(),
            format!("out/{prefix}-result.json"),
            "--junit-file".to_owned(),
            format!("out/{prefix}-junit.xml"),
        ]
    };
    let command = |file: &str, prefix: &str| {
        let mut args = vec!["run".to_owned(), "-f".to_owned(), file.to_owned()];
        args.extend(reports(prefix));
        args
    };
    let args = command("success.yaml", "success");
    let success = project.shipit(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(success.code, 0, "{success:?}");
    let args = command("failure.yaml", "failure");
    let failure = project.shipit(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(failure.code, 1, "{failure:?}");
    let args = command("invalid.yaml", "invalid");
    let refused = project.shipit(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(refused.code, 2, "{refused:?}");
    assert!(
        refused
            .stderr
            .contains("aws.role_arn: `***` is not an IAM role ARN"),
        "{refused:?}"
    );

    let mut secrets = known.values(ci);
    secrets.push(testenv("SHIPIT_TEST_AUTH_REGISTRY_PASSWORD"));
    if ci == Ci::GithubActions {
        secrets.push(endpoint.request_token.clone());
        secrets.push(endpoint.jwt.clone());
    }
    let assumed = assumed_roles(&session_name);
    if matches!(ci, Ci::GithubActions | Ci::Gitlab) {
        assert!(!assumed.is_empty(), "the job assumed no role");
    } else {
        assert!(assumed.is_empty(), "no role without a token: {assumed:?}");
    }
    for role in &assumed {
        for key in ["secret_access_key", "session_token"] {
            secrets.push(role[key].as_str().unwrap().to_owned());
        }
    }

    let (written, masks) = written(&project, &[&success, &failure, &refused]);
    for (source, bytes) in &written {
        for secret in &secrets {
            assert!(
                !contains(bytes, secret),
                "{ci:?}: {source} holds a secret:\n{}",
                String::from_utf8_lossy(bytes)
            );
        }
    }

    // The runs did show what the secrets were masked in: the echoing step's log and its error,
    // the path made from a secret.
    let failure_result = std::fs::read_to_string(project.path().join("out/failure-result.json"))
        .expect("the failed run's result file");
    for shown in ["deploy=***", "aws=***", ".Dockerfile"] {
        assert!(failure_result.contains(shown), "{ci:?}: {failure_result}");
    }
    if ci != Ci::GithubActions && ci != Ci::Gitlab {
        // Logs stream as they come; under GitHub and GitLab they are grouped.
        assert!(failure.stderr.contains("deploy=***"), "{failure:?}");
    }
    let junit = std::fs::read_to_string(project.path().join("out/failure-junit.xml")).unwrap();
    assert!(junit.contains("deploy=***"), "{ci:?}: {junit}");

    if ci == Ci::GithubActions {
        // Named to GitHub before anything else was printed, in every run.
        for run in [&success, &failure, &refused] {
            let first = run.stderr.lines().next().unwrap_or_default();
            assert!(first.starts_with("::add-mask::"), "{run:?}");
        }
        for secret in &secrets {
            assert!(
                masks.contains(secret),
                "{secret} was never named with ::add-mask::"
            );
        }
        let summary =
            std::fs::read_to_string(project.path().join("out/github-summary.md")).unwrap();
        assert!(summary.contains("| `build:echo` | failed"), "{summary}");
    } else {
        assert!(masks.is_empty(), "{ci:?} is not GitHub: {masks:?}");
    }
}

#[test]
fn no_secret_leaks_under_github_actions() {
    leaks_nothing_under(Ci::GithubActions);
}

#[test]
fn no_secret_leaks_under_gitlab() {
    leaks_nothing_under(Ci::Gitlab);
}

#[test]
fn no_secret_leaks_under_jenkins() {
    leaks_nothing_under(Ci::Jenkins);
}

#[test]
fn no_secret_leaks_outside_ci() {
    leaks_nothing_under(Ci::None);
}
