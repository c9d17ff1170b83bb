//! Fetches over the network from real servers on 127.0.0.1: git's `git http-backend` behind
//! TLS and Basic auth, and OpenSSH's sshd. The credentials and the host key check are the
//! daemon's own code paths; the servers are nobody's here.

use std::path::{Path, PathBuf};

use git2::Repository;

use super::tests::{commit, repository};
use super::*;
use crate::daemon::config::{GitCredentials, Secret};

#[path = "../../../tests/support/git_servers.rs"]
mod git_servers;

use git_servers::{GitHttpsServer, Sshd};

const TOKEN: &str = "glpat-remote-test-7f3a9c";

/// `<dir>/srv/shop.git`, a bare clone of a fresh repository with one commit on main; its SHA.
fn served_repository(dir: &Path) -> (std::path::PathBuf, String) {
    let origin = dir.join("origin");
    let sha = commit(&origin, "main", &[("app.txt", "over the network")]);
    let bare = dir.join("srv").join("shop.git");
    Repository::init_bare(&bare).unwrap();
    let source = Repository::open(&origin).unwrap();
    let mut remote = source.remote_anonymous(bare.to_str().unwrap()).unwrap();
    remote
        .push(&["refs/heads/main:refs/heads/main"], None)
        .unwrap();
    (bare, sha)
}

/// Makes this process's libgit2 trust `ca_file` besides the system's CAs. It is process-wide
/// and only adds, so tests that run side by side each add their own CA. (The daemon itself
/// reads `SSL_CERT_FILE`, which the end-to-end test sets.)
fn trust(ca_file: &Path) {
    // SAFETY: git2 initialises libgit2 before setting the option; the call only adds the
    // file's certificates to libgit2's one OpenSSL context.
    unsafe { git2::opts::set_ssl_cert_file(ca_file) }.expect("libgit2 takes the CA file");
}

fn token(value: &str) -> Option<GitCredentials> {
    Some(GitCredentials::Token {
        username: "x-access-token".into(),
        token: Secret::new(value),
    })
}

/// Run 1's checkout of main at `sha` under `dir`: its workspace, or the error's message.
async fn fetch(dir: &Path, repo: &RepositoryConfig, sha: &str) -> Result<PathBuf, String> {
    Checkouts::new(dir.join("work"))
        .prepare(repo, "refs/heads/main", sha, 1)
        .await
        .map_err(|e| e.to_string())
}

/// The served repository behind the HTTPS server, which asks for `TOKEN`, configured with
/// `credentials`; its CA trusted by libgit2 or not.
struct OverHttps {
    dir: tempfile::TempDir,
    server: GitHttpsServer,
    sha: String,
    repo: RepositoryConfig,
}

impl OverHttps {
    fn start(credentials: Option<GitCredentials>, trusted: bool) -> OverHttps {
        let dir = tempfile::tempdir().unwrap();
        let (_, sha) = served_repository(dir.path());
        let server =
            GitHttpsServer::start(&dir.path().join("srv"), "x-access-token", TOKEN, dir.path());
        if trusted {
            trust(&server.ca_file);
        }
        let mut repo = repository("acme/shop", Path::new("/unused"));
        repo.clone_url = server.url("shop.git");
        repo.credentials = credentials;
        OverHttps {
            dir,
            server,
            sha,
            repo,
        }
    }

    async fn fetch(&self) -> Result<PathBuf, String> {
        fetch(self.dir.path(), &self.repo, &self.sha).await
    }
}

#[tokio::test]
async fn an_https_remote_is_fetched_with_the_token_it_asks_for() {
    let https = OverHttps::start(token(TOKEN), true);

    let workspace = https.fetch().await.unwrap();

    assert_eq!(
        std::fs::read_to_string(workspace.join("app.txt")).unwrap(),
        "over the network"
    );
    let seen = https.server.requests();
    // libgit2 asks anonymously first, is told 401, then answers the challenge with the token.
    assert!(!seen[0].authorized, "{seen:?}");
    assert!(
        seen.iter()
            .any(|s| s.authorized && s.path.ends_with("/git-upload-pack")),
        "{seen:?}"
    );
}

#[tokio::test]
async fn a_refused_token_fails_the_fetch_without_the_token_in_the_message() {
    let https = OverHttps::start(token("glpat-expired-0000"), true);

    let err = https.fetch().await.unwrap_err();

    assert_eq!(
        err,
        "failed to fetch refs/heads/main of acme/shop: the configured credentials were refused"
    );
    // Offered once, not in a loop until the server gives up.
    let tries = https.server.requests().len();
    assert!(tries <= 3, "{tries} requests");
}

#[tokio::test]
async fn an_https_remote_asking_for_credentials_none_are_configured_for_says_so() {
    let https = OverHttps::start(None, true);

    let err = https.fetch().await.unwrap_err();

    assert!(
        err.ends_with("the remote asks for credentials the daemon's configuration does not give"),
        "{err}"
    );
}

#[tokio::test]
async fn an_https_server_whose_certificate_no_trusted_ca_signed_is_refused() {
    let https = OverHttps::start(token(TOKEN), false);

    let err = https.fetch().await.unwrap_err();

    assert_eq!(
        err,
        "failed to fetch refs/heads/main of acme/shop: the SSL certificate is invalid; the server's certificate is not signed by a CA this machine trusts (a private CA goes in the file SSL_CERT_FILE names, in the daemon's environment)"
    );
    assert!(
        https.server.requests().is_empty(),
        "the token went to an untrusted server"
    );
}

/// A repository served over SSH by `sshd`, with the key sshd accepts and `known_hosts`.
fn over_ssh(sshd: &Sshd, bare: &Path, known_hosts: &Path) -> RepositoryConfig {
    let mut repo = repository("acme/shop", Path::new("/unused"));
    repo.clone_url = sshd.url(bare);
    repo.credentials = Some(GitCredentials::SshKey {
        username: sshd.user.clone(),
        private_key: sshd.client_key.clone(),
        passphrase: None,
    });
    repo.known_hosts = Some(known_hosts.to_path_buf());
    repo
}

#[tokio::test]
async fn an_ssh_remote_is_fetched_with_the_key_once_its_host_key_is_known() {
    let dir = tempfile::tempdir().unwrap();
    let (bare, sha) = served_repository(dir.path());
    let sshd = Sshd::start(&dir.path().join("sshd"));
    let known_hosts = dir.path().join("known_hosts");
    std::fs::write(&known_hosts, format!("{}\n", sshd.known_hosts_line)).unwrap();

    let repo = over_ssh(&sshd, &bare, &known_hosts);
    let workspace = fetch(dir.path(), &repo, &sha).await.unwrap();

    assert_eq!(
        std::fs::read_to_string(workspace.join("app.txt")).unwrap(),
        "over the network"
    );
}

#[tokio::test]
async fn an_ssh_host_missing_from_known_hosts_is_refused_with_its_fingerprint() {
    let dir = tempfile::tempdir().unwrap();
    let (bare, sha) = served_repository(dir.path());
    let sshd = Sshd::start(&dir.path().join("sshd"));
    let known_hosts = dir.path().join("known_hosts");
    // Only another host is known.
    let other = sshd
        .known_hosts_line
        .replacen("[127.0.0.1]", "git.example.com", 1);
    let other = other.replacen(&format!(":{}", sshd.port), "", 1);
    std::fs::write(&known_hosts, format!("{other}\n")).unwrap();

    let repo = over_ssh(&sshd, &bare, &known_hosts);
    let err = fetch(dir.path(), &repo, &sha).await.unwrap_err();

    let port = sshd.port;
    assert!(
        err.contains(&format!(
            "the SSH host key of 127.0.0.1:{port} (ssh-ed25519 SHA256:"
        )) && err.contains(&format!(
            "is not in {}; check that fingerprint with the host's owner, then add the host's line (`ssh-keyscan -p {port} 127.0.0.1`)",
            known_hosts.display()
        )),
        "{err}"
    );
}

#[tokio::test]
async fn a_changed_ssh_host_key_is_refused_as_a_possible_man_in_the_middle() {
    let dir = tempfile::tempdir().unwrap();
    let (bare, sha) = served_repository(dir.path());
    let sshd = Sshd::start(&dir.path().join("sshd"));
    // The file knows this host and port by another key.
    let other_key = dir.path().join("other_host_key");
    git_servers::keygen(&other_key);
    let other = std::fs::read_to_string(other_key.with_extension("pub")).unwrap();
    let other: Vec<&str> = other.split_whitespace().take(2).collect();
    let known_hosts = dir.path().join("known_hosts");
    std::fs::write(
        &known_hosts,
        format!("[127.0.0.1]:{} {}\n", sshd.port, other.join(" ")),
    )
    .unwrap();

    let repo = over_ssh(&sshd, &bare, &known_hosts);
    let err = fetch(dir.path(), &repo, &sha).await.unwrap_err();

    assert!(
        err.contains(&format!(
            "the SSH host key of 127.0.0.1:{} changed",
            sshd.port
        )) && err.contains("knows it by another ssh-ed25519 key")
            && err.contains("someone may be in the middle"),
        "{err}"
    );
}

#[tokio::test]
async fn an_ssh_key_the_server_does_not_accept_is_reported_as_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (bare, sha) = served_repository(dir.path());
    let sshd = Sshd::start(&dir.path().join("sshd"));
    let known_hosts = dir.path().join("known_hosts");
    std::fs::write(&known_hosts, format!("{}\n", sshd.known_hosts_line)).unwrap();
    let stranger = dir.path().join("stranger_key");
    git_servers::keygen(&stranger);
    let mut repo = over_ssh(&sshd, &bare, &known_hosts);
    repo.credentials = Some(GitCredentials::SshKey {
        username: sshd.user.clone(),
        private_key: stranger,
        passphrase: None,
    });

    let err = fetch(dir.path(), &repo, &sha).await.unwrap_err();

    assert_eq!(
        err,
        "failed to fetch refs/heads/main of acme/shop: the configured credentials were refused"
    );
}
