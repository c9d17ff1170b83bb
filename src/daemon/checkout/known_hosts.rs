//! SSH host keys the daemon trusts, read from a file in OpenSSH's `known_hosts` format, and
//! the decision whether a remote's key is one of them. Pure: the file's text in, a verdict out.
//!
//! What OpenSSH writes and reads is understood: comma-separated host patterns with `*`, `?`
//! and `!` negation, `[host]:port` for a port other than 22, hashed names (`|1|salt|hash`,
//! from `ssh-keygen -H` or `HashKnownHosts yes`) and `@revoked` lines. `@cert-authority`
//! lines are read and skipped: libgit2 hands over the host's key, never a certificate.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, Mac};
use sha2::Digest as _;

#[derive(Debug, Default)]
pub(crate) struct KnownHosts {
    entries: Vec<Entry>,
}

#[derive(Debug)]
struct Entry {
    marker: Marker,
    hosts: Hosts,
    key: Vec<u8>,
}

#[derive(Debug, PartialEq)]
enum Marker {
    None,
    Revoked,
    CertAuthority,
}

#[derive(Debug)]
enum Hosts {
    Patterns(Vec<String>),
    Hashed { salt: Vec<u8>, hash: Vec<u8> },
}

/// A line of the file that is not a known_hosts entry.
#[derive(Debug, PartialEq, thiserror::Error)]
#[error("line {line}: {message}")]
pub(crate) struct KnownHostsError {
    pub line: usize,
    pub message: String,
}

/// What the file says of a remote's host key.
#[derive(Debug, PartialEq)]
pub(crate) enum HostKeyVerdict {
    /// A line for this host lists this key.
    Trusted,
    /// The key is on a `@revoked` line.
    Revoked,
    /// The file knows this host by other keys (of these types): the key changed, or someone
    /// is in the middle.
    Changed { known_types: Vec<String> },
    /// No line names this host.
    Unknown,
}

impl KnownHosts {
    pub(crate) fn parse(text: &str) -> Result<Self, KnownHostsError> {
        let mut entries = Vec::new();
        for (index, line) in text.lines().enumerate() {
            let error = |message: &str| KnownHostsError {
                line: index + 1,
                message: message.to_owned(),
            };
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let mut fields = line.split_whitespace();
            let mut first = fields.next().unwrap_or_default();
            let marker = match first {
                "@revoked" => Marker::Revoked,
                "@cert-authority" => Marker::CertAuthority,
                other if other.starts_with('@') => {
                    return Err(error(&format!("unknown marker `{other}`")));
                }
                _ => Marker::None,
            };
            if marker != Marker::None {
                first = fields.next().unwrap_or_default();
            }
            let (Some(key_type), Some(key)) = (fields.next(), fields.next()) else {
                return Err(error("expected `HOSTS KEY-TYPE BASE64-KEY`"));
            };
            let key = BASE64
                .decode(key)
                .map_err(|_| error("the key is not base64"))?;
            if key_type_of(&key) != Some(key_type) {
                return Err(error(&format!(
                    "the key is not a `{key_type}` key (is the line cut short?)"
                )));
            }
            let hosts =
                parse_hosts(first).ok_or_else(|| error("the hashed host name is malformed"))?;
            entries.push(Entry { marker, hosts, key });
        }
        Ok(KnownHosts { entries })
    }

    /// The verdict on `key` (the raw key blob the server sent) for `host` on `port`.
    pub(crate) fn verdict(&self, host: &str, port: u16, key: &[u8]) -> HostKeyVerdict {
        if self
            .entries
            .iter()
            .any(|e| e.marker == Marker::Revoked && e.key == key)
        {
            return HostKeyVerdict::Revoked;
        }
        let name = host_name(host, port);
        let mut known_types = Vec::new();
        for entry in self
            .entries
            .iter()
            .filter(|e| e.marker == Marker::None && e.hosts.matches(&name))
        {
            if entry.key == key {
                return HostKeyVerdict::Trusted;
            }
            let key_type = key_type_of(&entry.key).unwrap_or("?").to_owned();
            if !known_types.contains(&key_type) {
                known_types.push(key_type);
            }
        }
        if known_types.is_empty() {
            HostKeyVerdict::Unknown
        } else {
            HostKeyVerdict::Changed { known_types }
        }
    }
}

/// How known_hosts names a host: `host`, or `[host]:port` off port 22.
fn host_name(host: &str, port: u16) -> String {
    let host = host.to_ascii_lowercase();
    if port == 22 {
        host
    } else {
        format!("[{host}]:{port}")
    }
}

fn parse_hosts(field: &str) -> Option<Hosts> {
    match field.strip_prefix("|1|") {
        Some(hashed) => {
            let (salt, hash) = hashed.split_once('|')?;
            let (salt, hash) = (BASE64.decode(salt).ok()?, BASE64.decode(hash).ok()?);
            (hash.len() == 20).then_some(Hosts::Hashed { salt, hash })
        }
        None => Some(Hosts::Patterns(
            field.split(',').map(str::to_ascii_lowercase).collect(),
        )),
    }
}

impl Hosts {
    fn matches(&self, name: &str) -> bool {
        match self {
            Hosts::Hashed { salt, hash } => {
                let mut mac =
                    Hmac::<sha1::Sha1>::new_from_slice(salt).expect("HMAC takes any key length");
                mac.update(name.as_bytes());
                mac.verify_slice(hash).is_ok()
            }
            // As OpenSSH: a negated pattern that matches rules the line out whatever else does.
            Hosts::Patterns(patterns) => {
                let mut matched = false;
                for pattern in patterns {
                    match pattern.strip_prefix('!') {
                        Some(negated) if wildcard_match(negated, name) => return false,
                        Some(_) => {}
                        None => matched |= wildcard_match(pattern, name),
                    }
                }
                matched
            }
        }
    }
}

/// `*` (any run) and `?` (one character), the only wildcards of known_hosts patterns.
fn wildcard_match(pattern: &str, name: &str) -> bool {
    let (pattern, name) = (pattern.as_bytes(), name.as_bytes());
    let (mut p, mut n) = (0, 0);
    let mut backtrack: Option<(usize, usize)> = None;
    while n < name.len() {
        match pattern.get(p) {
            Some(b'*') => {
                backtrack = Some((p, n));
                p += 1;
            }
            Some(&c) if c == b'?' || c == name[n] => {
                p += 1;
                n += 1;
            }
            _ => match backtrack {
                Some((star, at)) => {
                    p = star + 1;
                    n = at + 1;
                    backtrack = Some((star, at + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

/// The type a key blob names in its first field (`ssh-ed25519`, `ssh-rsa`, ...).
pub(crate) fn key_type_of(key: &[u8]) -> Option<&str> {
    let len = u32::from_be_bytes(key.get(..4)?.try_into().ok()?) as usize;
    std::str::from_utf8(key.get(4..4 + len)?).ok()
}

/// `SHA256:<base64>`, the fingerprint `ssh-keygen -lf` and `ssh` print.
pub(crate) fn fingerprint(key: &[u8]) -> String {
    let digest = sha2::Sha256::digest(key);
    let encoded = base64::engine::general_purpose::STANDARD_NO_PAD.encode(digest);
    format!("SHA256:{encoded}")
}

#[cfg(test)]
mod tests {
    use super::*;

    // Two ed25519 host keys and an RSA one, as `ssh-keygen` writes them.
    const KEY_A: &str = "AAAAC3NzaC1lZDI1NTE5AAAAIGQXxpdVlfZR9vVUsVhugioSsiw3aeU742f+DU0GfDVh";
    const KEY_B: &str = "AAAAC3NzaC1lZDI1NTE5AAAAIAHHrndU52nZ+ySw9wa6uixKxslr0iOn1CxElRsI3JeI";
    const KEY_RSA: &str = "AAAAB3NzaC1yc2EAAAADAQABAAAAgQDQzdi3I3HNqENmfqohCAHAkdRD6+s7PHTWBTVyE/I5k0jHyUj8tUG57g/g6Lu8p2ZaLPzrZQxOJx975IcQoG9Ra+T4/2CqGkL+atZwuPyxVWhh6ODuLsU2EGIdzE55o/59WZzki5ZuquSmPoD3pzEzchBARCRp+XY3Vsd8NxsKSw==";

    fn blob(key: &str) -> Vec<u8> {
        BASE64.decode(key).unwrap()
    }

    use HostKeyVerdict::{Revoked, Trusted, Unknown};

    /// Checks `verdict` for each (host, port, key, expected).
    fn assert_verdicts(hosts: &KnownHosts, cases: &[(&str, u16, &str, HostKeyVerdict)]) {
        for (host, port, key, expected) in cases {
            assert_eq!(
                &hosts.verdict(host, *port, &blob(key)),
                expected,
                "{host}:{port}"
            );
        }
    }

    #[test]
    fn a_listed_key_is_trusted_for_its_host_and_port_only() {
        let hosts = KnownHosts::parse(&format!(
            "# the git host\ngit.example.com,10.0.0.7 ssh-ed25519 {KEY_A} comment\n[127.0.0.1]:2222 ssh-ed25519 {KEY_B}\n"
        ))
        .unwrap();
        assert_verdicts(
            &hosts,
            &[
                ("git.example.com", 22, KEY_A, Trusted),
                ("GIT.example.com", 22, KEY_A, Trusted),
                ("10.0.0.7", 22, KEY_A, Trusted),
                ("127.0.0.1", 2222, KEY_B, Trusted),
                // The port is part of the name: port 22 of that address is another host.
                ("127.0.0.1", 22, KEY_B, Unknown),
                ("other.example.com", 22, KEY_A, Unknown),
            ],
        );
    }

    #[test]
    fn another_key_for_a_known_host_is_a_changed_key_naming_the_known_types() {
        let hosts = KnownHosts::parse(&format!(
            "git.example.com ssh-ed25519 {KEY_A}\ngit.example.com ssh-rsa {KEY_RSA}\n"
        ))
        .unwrap();
        let changed = HostKeyVerdict::Changed {
            known_types: vec!["ssh-ed25519".into(), "ssh-rsa".into()],
        };
        assert_verdicts(&hosts, &[("git.example.com", 22, KEY_B, changed)]);
    }

    #[test]
    fn wildcards_and_negations_select_hosts_as_openssh_does() {
        let hosts = KnownHosts::parse(&format!(
            "*.example.com,!evil.example.com,git?.internal ssh-ed25519 {KEY_A}\n"
        ))
        .unwrap();
        assert_verdicts(
            &hosts,
            &[
                ("git.example.com", 22, KEY_A, Trusted),
                ("a.b.example.com", 22, KEY_A, Trusted),
                ("git1.internal", 22, KEY_A, Trusted),
                ("evil.example.com", 22, KEY_A, Unknown),
                ("git12.internal", 22, KEY_A, Unknown),
                ("example.com", 22, KEY_A, Unknown),
            ],
        );
    }

    #[test]
    fn hashed_names_match_the_host_they_were_made_from() {
        // `ssh-keygen -H` of "[127.0.0.1]:2222": HMAC-SHA1 of the name keyed by the salt.
        let salt = [7u8; 20];
        let mut mac = Hmac::<sha1::Sha1>::new_from_slice(&salt).unwrap();
        mac.update(b"[127.0.0.1]:2222");
        let hash = mac.finalize().into_bytes();
        let line = format!(
            "|1|{}|{} ssh-ed25519 {KEY_A}",
            BASE64.encode(salt),
            BASE64.encode(hash)
        );
        let hosts = KnownHosts::parse(&line).unwrap();
        assert_verdicts(
            &hosts,
            &[
                ("127.0.0.1", 2222, KEY_A, Trusted),
                ("127.0.0.1", 2223, KEY_A, Unknown),
            ],
        );
    }

    #[test]
    fn a_revoked_key_is_refused_even_where_a_line_trusts_it() {
        let hosts = KnownHosts::parse(&format!(
            "git.example.com ssh-ed25519 {KEY_A}\n@revoked * ssh-ed25519 {KEY_A}\n@cert-authority *.example.com ssh-ed25519 {KEY_B}\n"
        ))
        .unwrap();
        assert_verdicts(
            &hosts,
            &[
                ("git.example.com", 22, KEY_A, Revoked),
                // A CA line vouches for certificates, which libgit2 never hands over: not for
                // the key itself.
                ("ci.example.com", 22, KEY_B, Unknown),
            ],
        );
    }

    #[test]
    fn a_malformed_line_is_named_by_its_number() {
        for (text, message) in [
            (
                "git.example.com ssh-ed25519\n",
                "expected `HOSTS KEY-TYPE BASE64-KEY`",
            ),
            (
                "# c\nhost ssh-ed25519 not*base64\n",
                "the key is not base64",
            ),
            (
                &*format!("host ssh-rsa {KEY_A}\n"),
                "the key is not a `ssh-rsa` key (is the line cut short?)",
            ),
            (
                &*format!("@trusted host ssh-ed25519 {KEY_A}\n"),
                "unknown marker `@trusted`",
            ),
            (
                &*format!("|1|abc ssh-ed25519 {KEY_A}\n"),
                "the hashed host name is malformed",
            ),
        ] {
            let err = KnownHosts::parse(text).unwrap_err();
            assert_eq!(err.message, message, "{text}");
            assert_eq!(err.line, text.lines().count(), "{text}");
        }
    }

    #[test]
    fn fingerprints_are_printed_as_ssh_keygen_prints_them() {
        let key = blob(KEY_A);
        assert_eq!(key_type_of(&key), Some("ssh-ed25519"));
        // `ssh-keygen -lf` of that key.
        assert_eq!(
            fingerprint(&key),
            "SHA256:EMCmS8Q6sXkEkTMzAz8VUXoln7nSZkJsnrAmiyzym0s"
        );
    }
}
