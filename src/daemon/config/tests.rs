use std::path::Path;

use super::*;
use crate::pipeline::SourceFile;

const FULL: &str = r#"# every key the daemon reads
listen: 127.0.0.1:9090
state:
  sqlite: state/daemon.db
work_dir: work
concurrency: 4
shutdown_grace: 90s
max_body_bytes: 65536
sources:
  github:
    secret_env: GH_SECRET
  gitlab:
    secret_env: GL_SECRET
api:
  tokens:
    - sha256:9F86D081884C7D659A2FEAA0C55AD015A3BF4F1B2B0B822CD15D6C15B0F00A08
repositories:
  - name: acme/shop
    clone_url: https://github.com/acme/shop.git
    pipeline: ci/shipit.yaml
    branches: [main, "release/*"]
    tags: ["v*"]
    paths: ["services/**"]
    environments:
      main: production
      "release/*": staging
    credentials:
      token_env: GIT_TOKEN
    env:
      REGION: eu-west-1
      API_KEY: { from_env: SHOP_API_KEY }
"#;

fn env(name: &str) -> Option<String> {
    match name {
        "GH_SECRET" => Some("gh-secret".into()),
        "GL_SECRET" => Some("gl-secret".into()),
        "GIT_TOKEN" => Some("git-token".into()),
        "SHOP_API_KEY" => Some("api-key".into()),
        "EMPTY" => Some("  ".into()),
        _ => None,
    }
}

fn parse(text: &str) -> Result<DaemonConfig, DaemonConfigError> {
    from_source(
        &SourceFile {
            path: Path::new("conf/daemon.yaml").into(),
            text: text.into(),
        },
        &env,
    )
}

fn error(text: &str) -> String {
    match parse(text) {
        Ok(_) => panic!("expected an error for:\n{text}"),
        Err(err) => err.to_string(),
    }
}

#[test]
fn every_key_is_read_and_relative_paths_start_at_the_files_folder() {
    let config = parse(FULL).unwrap();
    assert_eq!(config.listen.to_string(), "127.0.0.1:9090");
    match &config.state {
        StateConfig::Sqlite { path } => assert_eq!(path, Path::new("conf/state/daemon.db")),
        other => panic!("{other:?}"),
    }
    assert_eq!(config.work_dir, Path::new("conf/work"));
    assert_eq!(config.concurrency, 4);
    assert_eq!(config.shutdown_grace.as_secs(), 90);
    assert_eq!(config.max_body_bytes, 65536);
    assert_eq!(
        config.sources.github.as_ref().unwrap().expose(),
        "gh-secret"
    );
    assert_eq!(
        config.sources.gitlab.as_ref().unwrap().expose(),
        "gl-secret"
    );
    assert!(config.sources.generic.is_none());
    assert_eq!(
        config.api_token_sha256,
        ["9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"]
    );
    let repo = &config.repositories[0];
    assert_eq!(repo.name, "acme/shop");
    assert_eq!(repo.pipeline, Path::new("ci/shipit.yaml"));
    assert_eq!(repo.branches, ["main", "release/*"]);
    assert_eq!(repo.tags, ["v*"]);
    assert_eq!(repo.paths, ["services/**"]);
    assert_eq!(
        repo.environments,
        [
            ("main".to_owned(), "production".to_owned()),
            ("release/*".to_owned(), "staging".to_owned())
        ]
    );
    match &repo.credentials {
        Some(GitCredentials::Token { username, token }) => {
            assert_eq!(username, "x-access-token");
            assert_eq!(token.expose(), "git-token");
        }
        other => panic!("{other:?}"),
    }
    let env: Vec<_> = repo
        .env
        .iter()
        .map(|(k, v)| (k.as_str(), v.expose()))
        .collect();
    assert_eq!(env, [("REGION", "eu-west-1"), ("API_KEY", "api-key")]);
}

#[test]
fn defaults_are_loopback_sqlite_and_one_mebibyte() {
    let config = parse("sources:\n  github: { secret_env: GH_SECRET }\n").unwrap();
    assert_eq!(config.listen.to_string(), "127.0.0.1:8080");
    match &config.state {
        StateConfig::Sqlite { path } => assert_eq!(path, Path::new("conf/.shipit/daemon.db")),
        other => panic!("{other:?}"),
    }
    assert_eq!(config.max_body_bytes, 1024 * 1024);
    assert!(config.repositories.is_empty());
}

#[test]
fn an_explicit_non_loopback_listen_address_is_accepted() {
    let config =
        parse("listen: 0.0.0.0:8080\nsources:\n  github: { secret_env: GH_SECRET }\n").unwrap();
    assert!(!config.listen.ip().is_loopback());
}

#[test]
fn an_unknown_key_is_reported_at_its_line_and_column() {
    let err = error("sources:\n  github:\n    secret_env: GH_SECRET\n    secrett: x\n");
    assert!(
        err.starts_with("conf/daemon.yaml:4:5: sources.github.secrett: unknown field `secrett`"),
        "{err}"
    );
}

#[test]
fn a_wrong_type_is_reported_at_the_value() {
    let err = error("concurrency: many\n");
    assert!(
        err.starts_with("conf/daemon.yaml:1:14: concurrency: invalid type"),
        "{err}"
    );
}

#[test]
fn a_missing_secret_refuses_the_configuration() {
    let err = error("sources:\n  github:\n    secret_env: NOT_SET\n");
    assert!(err.starts_with("conf/daemon.yaml:3:17: sources.github.secret_env: environment variable NOT_SET is not set"), "{err}");
}

#[test]
fn an_empty_secret_refuses_the_configuration() {
    let err = error("sources:\n  gitlab:\n    secret_env: EMPTY\n");
    assert!(err.contains("environment variable EMPTY is empty"), "{err}");
}

#[test]
fn an_empty_secret_file_refuses_the_configuration() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("secret"), "\n").unwrap();
    let source = SourceFile {
        path: dir.path().join("daemon.yaml"),
        text: "sources:\n  generic:\n    secret_file: secret\n".into(),
    };
    let err = from_source(&source, &env).unwrap_err().to_string();
    assert!(
        err.contains("sources.generic.secret_file:") && err.contains("is empty"),
        "{err}"
    );
}

#[test]
fn a_secret_file_is_read_without_its_trailing_newline() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("secret"), "s3cret\n").unwrap();
    let source = SourceFile {
        path: dir.path().join("daemon.yaml"),
        text: "sources:\n  generic:\n    secret_file: secret\n".into(),
    };
    let config = from_source(&source, &env).unwrap();
    assert_eq!(config.sources.generic.unwrap().expose(), "s3cret");
}

#[test]
fn a_source_needs_exactly_one_place_for_its_secret() {
    let err = error("sources:\n  github: {}\n");
    assert!(
        err.contains("needs `secret_env: NAME` or `secret_file: PATH`"),
        "{err}"
    );
    let err = error("sources:\n  github: { secret_env: GH_SECRET, secret_file: x }\n");
    assert!(err.contains("has both"), "{err}");
}

#[test]
fn an_inline_secret_is_an_unknown_key() {
    let err = error("sources:\n  github:\n    secret: hunter2\n");
    assert!(err.contains("unknown field `secret`"), "{err}");
}

#[test]
fn api_tokens_must_be_sha256_digests() {
    let err = error("api:\n  tokens:\n    - my-token\n");
    assert!(
        err.starts_with("conf/daemon.yaml:3:7: api.tokens[0]: is not `sha256:`"),
        "{err}"
    );
    assert!(err.contains("sha256sum"), "{err}");
}

#[test]
fn every_problem_is_listed_not_only_the_first() {
    let err = error(
        "max_body_bytes: 10\nsources:\n  github: { secret_env: NOT_SET }\nrepositories:\n  - name: a/b\n    clone_url: ''\n    branches: ['[']\n    pipeline: ../x.yaml\n",
    );
    assert!(err.contains("max_body_bytes:"), "{err}");
    assert!(err.contains("NOT_SET is not set"), "{err}");
    assert!(
        err.contains("repositories[0].clone_url: must not be empty"),
        "{err}"
    );
    assert!(
        err.contains("conf/daemon.yaml:7:16: repositories[0].branches[0]: `[` is not a valid glob"),
        "{err}"
    );
    assert!(err.contains("repositories[0].pipeline:"), "{err}");
    assert!(err.ends_with("5 problems found"), "{err}");
}

#[test]
fn a_repository_configured_twice_is_refused() {
    let err =
        error("repositories:\n  - { name: a/b, clone_url: x }\n  - { name: a/b, clone_url: y }\n");
    assert!(
        err.contains("repositories[1].name: repository `a/b` is configured twice"),
        "{err}"
    );
}

#[test]
fn postgres_reads_its_url_from_the_named_variable() {
    let err = error("state:\n  postgres: { url_env: DB_URL }\n");
    assert!(
        err.contains("state.postgres.url_env: environment variable DB_URL is not set"),
        "{err}"
    );
    let config = from_source(
        &SourceFile {
            path: Path::new("d.yaml").into(),
            text: "state:\n  postgres: { url_env: DB_URL }\n".into(),
        },
        &|name| (name == "DB_URL").then(|| "postgres://u:p@127.0.0.1/db".to_owned()),
    )
    .unwrap();
    match config.state {
        StateConfig::Postgres { url } => assert_eq!(url.expose(), "postgres://u:p@127.0.0.1/db"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn secrets_are_not_shown_by_debug() {
    let config = parse(FULL).unwrap();
    let shown = format!("{config:?}");
    for secret in ["gh-secret", "gl-secret", "git-token", "api-key"] {
        assert!(!shown.contains(secret), "{secret} in {shown}");
    }
}

#[test]
fn an_empty_file_says_what_it_needs() {
    let err = error("# nothing yet\n");
    assert!(err.contains("the daemon configuration is empty"), "{err}");
}

#[test]
fn credentials_that_do_not_fit_the_remote_are_refused_before_any_push() {
    let err = error(
        "repositories:\n  - name: a/token-over-ssh\n    clone_url: git@github.com:acme/shop.git\n    credentials: { token_env: GIT_TOKEN }\n  - name: a/token-in-clear\n    clone_url: http://git.example.com/shop.git\n    credentials: { token_env: GIT_TOKEN }\n  - name: a/key-over-https\n    clone_url: https://github.com/acme/shop.git\n    credentials: { ssh_key: /etc/hostname }\n",
    );
    assert!(
        err.contains("conf/daemon.yaml:4:31: repositories[0].credentials.token_env: a token is for https:// remotes, and `clone_url` is an ssh one"),
        "{err}"
    );
    assert!(
        err.contains("repositories[1].credentials.token_env: a token over http:// or git:// would travel in clear text"),
        "{err}"
    );
    assert!(
        err.contains("repositories[2].credentials.ssh_key: an SSH key is for ssh remotes, and `clone_url` is not one"),
        "{err}"
    );
    assert!(err.ends_with("3 problems found"), "{err}");
}

#[test]
fn a_known_hosts_file_is_read_at_start_and_its_bad_line_named() {
    let dir = tempfile::tempdir().unwrap();
    let known_hosts = dir.path().join("known_hosts");
    std::fs::write(&known_hosts, "# pinned\ngit.example.com ssh-ed25519\n").unwrap();
    let text = format!(
        "repositories:\n  - name: a/ssh\n    clone_url: ssh://git@git.example.com/shop.git\n    known_hosts: {kh}\n  - name: a/missing\n    clone_url: ssh://git@git.example.com/other.git\n    known_hosts: {dir}/nowhere\n  - name: a/https\n    clone_url: https://github.com/acme/shop.git\n    known_hosts: {kh}\n",
        kh = known_hosts.display(),
        dir = dir.path().display()
    );
    let err = error(&text);
    assert!(
        err.contains(&format!(
            "repositories[0].known_hosts: {}, line 2: expected `HOSTS KEY-TYPE BASE64-KEY`",
            known_hosts.display()
        )),
        "{err}"
    );
    assert!(
        err.contains("repositories[1].known_hosts: cannot read")
            && err.contains("ssh-keyscan HOST > FILE"),
        "{err}"
    );
    assert!(
        err.contains("repositories[2].known_hosts: is for ssh remotes, and `clone_url` is not one"),
        "{err}"
    );

    std::fs::write(
        &known_hosts,
        "git.example.com ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGQXxpdVlfZR9vVUsVhugioSsiw3aeU742f+DU0GfDVh\n",
    )
    .unwrap();
    let text = format!(
        "repositories:\n  - name: a/ssh\n    clone_url: ssh://git@git.example.com/shop.git\n    known_hosts: {}\n",
        known_hosts.display()
    );
    let config = parse(&text).unwrap();
    assert_eq!(
        config.repositories[0].known_hosts.as_deref(),
        Some(known_hosts.as_path())
    );
}
