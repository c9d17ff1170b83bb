//! Paths into the pipeline document (`deploy.web.needs[0]`), shared by the YAML reader, which
//! records where each path was written, and by every later check, which reports against a path.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Segment {
    Key(String),
    Index(usize),
}

/// A path from the document root to one value. Displayed the way `serde_path_to_error` displays
/// its paths, so that both kinds of error point at the same place.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DocPath(pub Vec<Segment>);

impl DocPath {
    pub fn root() -> Self {
        DocPath(Vec::new())
    }

    pub fn key(&self, key: impl Into<String>) -> Self {
        let mut segments = self.0.clone();
        segments.push(Segment::Key(key.into()));
        DocPath(segments)
    }

    pub fn index(&self, index: usize) -> Self {
        let mut segments = self.0.clone();
        segments.push(Segment::Index(index));
        DocPath(segments)
    }

    pub fn parent(&self) -> Option<DocPath> {
        if self.0.is_empty() {
            return None;
        }
        Some(DocPath(self.0[..self.0.len() - 1].to_vec()))
    }

    /// Appends a path written relative to this one, as adapters report them
    /// (`health.http.port`, `ports[1]`).
    pub fn join_relative(&self, relative: &str) -> Self {
        let mut path = self.clone();
        for part in relative.split('.').filter(|p| !p.is_empty()) {
            let (key, mut rest) = match part.find('[') {
                Some(at) => (&part[..at], &part[at..]),
                None => (part, ""),
            };
            if !key.is_empty() {
                path = path.key(key);
            }
            while let Some(close) = rest.find(']') {
                match rest[1..close].parse::<usize>() {
                    Ok(index) => path = path.index(index),
                    Err(_) => path = path.key(&rest[1..close]),
                }
                rest = &rest[close + 1..];
            }
        }
        path
    }

    /// Converts the path a serde error was found at.
    pub fn from_serde(path: &serde_path_to_error::Path) -> Self {
        use serde_path_to_error::Segment as S;
        let segments = path
            .iter()
            .filter_map(|segment| match segment {
                S::Seq { index } => Some(Segment::Index(*index)),
                S::Map { key } => Some(Segment::Key(key.clone())),
                S::Enum { variant } => Some(Segment::Key(variant.clone())),
                S::Unknown => None,
            })
            .collect();
        DocPath(segments)
    }
}

impl fmt::Display for DocPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("(document root)");
        }
        for (i, segment) in self.0.iter().enumerate() {
            match segment {
                Segment::Key(key) if i == 0 => write!(f, "{key}")?,
                Segment::Key(key) => write!(f, ".{key}")?,
                Segment::Index(index) => write!(f, "[{index}]")?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths_join_with_keys_and_indexes() {
        let base = DocPath::root().key("deploy").key("web").key("docker");
        assert_eq!(
            base.join_relative("health.http.port").to_string(),
            "deploy.web.docker.health.http.port"
        );
        assert_eq!(
            base.join_relative("ports[1]").to_string(),
            "deploy.web.docker.ports[1]"
        );
        assert_eq!(base.join_relative("").to_string(), "deploy.web.docker");
    }
}
