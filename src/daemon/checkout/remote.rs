//! Which transport a clone URL names, as git reads it: the config checks that its credentials
//! fit the transport, and an SSH fetch needs the host and port its host key is known by.

/// The transport of a clone URL.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Transport {
    /// A local path or `file://` URL.
    Local,
    /// `https://`.
    Https,
    /// `http://` (and `git://`): nothing is encrypted, so no credential may be sent.
    Plain,
    /// `ssh://`, `git+ssh://`, `ssh+git://` or git's short form `[user@]host:path`.
    Ssh { host: String, port: u16 },
}

impl Transport {
    pub(crate) fn of(url: &str) -> Transport {
        let lower = url.to_ascii_lowercase();
        if lower.starts_with("https://") {
            return Transport::Https;
        }
        if lower.starts_with("http://") || lower.starts_with("git://") {
            return Transport::Plain;
        }
        for scheme in ["ssh://", "git+ssh://", "ssh+git://"] {
            if lower.starts_with(scheme) {
                return ssh_url(&url[scheme.len()..]);
            }
        }
        if !url.contains("://")
            && let Some(host) = scp_like_host(url)
        {
            return Transport::Ssh {
                host: host.to_ascii_lowercase(),
                port: 22,
            };
        }
        Transport::Local
    }
}

/// `[user@]host[:port]/path` after an ssh scheme; `[::1]` for an IPv6 host.
fn ssh_url(rest: &str) -> Transport {
    let authority = rest.split('/').next().unwrap_or_default();
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let (host, port) = match host_port.strip_prefix('[') {
        Some(bracketed) => match bracketed.split_once(']') {
            Some((host, after)) => (host, after.strip_prefix(':')),
            None => (bracketed, None),
        },
        None => match host_port.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (host_port, None),
        },
    };
    Transport::Ssh {
        host: host.to_ascii_lowercase(),
        port: port.and_then(|p| p.parse().ok()).unwrap_or(22),
    }
}

/// The host of `[user@]host:path`, git's short form of an ssh URL: a colon before any slash.
/// (`./a:b` and `/srv/a:b` are paths.)
fn scp_like_host(url: &str) -> Option<&str> {
    let colon = url.find(':')?;
    if url.find('/').is_some_and(|slash| slash < colon) {
        return None;
    }
    let user_host = &url[..colon];
    let host = user_host.rsplit_once('@').map_or(user_host, |(_, h)| h);
    (!host.is_empty()).then_some(host)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ssh(host: &str, port: u16) -> Transport {
        Transport::Ssh {
            host: host.into(),
            port,
        }
    }

    #[test]
    fn urls_are_read_as_git_reads_them() {
        for (url, transport) in [
            ("https://github.com/acme/shop.git", Transport::Https),
            ("HTTPS://git.example.com/shop", Transport::Https),
            ("http://git.example.com/shop", Transport::Plain),
            ("git://git.example.com/shop", Transport::Plain),
            ("ssh://git@github.com/acme/shop.git", ssh("github.com", 22)),
            (
                "ssh://git@127.0.0.1:2222/srv/shop.git",
                ssh("127.0.0.1", 2222),
            ),
            ("git+ssh://Git.Example.com/shop", ssh("git.example.com", 22)),
            ("ssh://git@[::1]:2200/shop", ssh("::1", 2200)),
            ("git@github.com:acme/shop.git", ssh("github.com", 22)),
            ("github.com:acme/shop.git", ssh("github.com", 22)),
            ("/srv/git/shop.git", Transport::Local),
            ("file:///srv/git/shop.git", Transport::Local),
            ("./shop", Transport::Local),
            ("/srv/a:b", Transport::Local),
        ] {
            assert_eq!(Transport::of(url), transport, "{url}");
        }
    }
}
