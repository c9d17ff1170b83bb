//! Go's lexical path rules, which the formats shipit reads were written with: `.dockerignore`
//! patterns (moby) and the file names of image archives and layer stores.

/// Lexical path cleaning with the rules of Go's `path/filepath.Clean` on Unix.
pub(crate) fn clean(path: &str) -> String {
    if path.is_empty() {
        return ".".to_string();
    }
    let rooted = path.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if parts.last().is_some_and(|last| *last != "..") {
                    parts.pop();
                } else if !rooted {
                    parts.push("..");
                }
            }
            other => parts.push(other),
        }
    }
    let joined = parts.join("/");
    match (rooted, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".to_string(),
        (false, false) => joined,
    }
}

/// `path` cleaned as if rooted (`/` + path, so `..` cannot climb above the top), then made
/// relative again: `""` for the top itself.
pub(crate) fn clean_within(path: &str) -> String {
    clean(&format!("/{path}"))
        .trim_start_matches('/')
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_follows_go() {
        for (input, expected) in [
            ("", "."),
            (".", "."),
            ("a/../..", ".."),
            ("../a/./b/", "../a/b"),
            ("/../a", "/a"),
            ("//a//b//", "/a/b"),
            ("a/b/../../..", ".."),
            ("!a/..", "."),
        ] {
            assert_eq!(clean(input), expected, "clean({input:?})");
        }
    }

    #[test]
    fn clean_within_never_climbs_out() {
        for (input, expected) in [
            ("", ""),
            ("a/./b//c/", "a/b/c"),
            ("../../etc/passwd", "etc/passwd"),
            ("a/../../b", "b"),
            ("/abs", "abs"),
        ] {
            assert_eq!(clean_within(input), expected, "clean_within({input:?})");
        }
    }
}
