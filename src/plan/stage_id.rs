//! Stage identities: `build:<image>`, `push:<image>`, `deploy:<target>`, and `down:<target>`
//! (taking a target down, an action of its own: `shipit down`), and `rollback:<target>`
//! (returning it to an earlier run's version: `shipit rollback`).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StageKind {
    Build,
    Push,
    Deploy,
    /// Removes what a deploy started (`shipit down`); never part of a pipeline's graph.
    Down,
    /// Returns a target to what an earlier run deployed (`shipit rollback`); never part of a
    /// pipeline's graph.
    Rollback,
}

impl StageKind {
    pub fn as_str(self) -> &'static str {
        match self {
            StageKind::Build => "build",
            StageKind::Push => "push",
            StageKind::Deploy => "deploy",
            StageKind::Down => "down",
            StageKind::Rollback => "rollback",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StageId {
    pub kind: StageKind,
    pub name: String,
}

impl StageId {
    pub fn build(name: &str) -> Self {
        StageId {
            kind: StageKind::Build,
            name: name.to_owned(),
        }
    }
    pub fn push(name: &str) -> Self {
        StageId {
            kind: StageKind::Push,
            name: name.to_owned(),
        }
    }
    pub fn deploy(name: &str) -> Self {
        StageId {
            kind: StageKind::Deploy,
            name: name.to_owned(),
        }
    }
    pub fn down(name: &str) -> Self {
        StageId {
            kind: StageKind::Down,
            name: name.to_owned(),
        }
    }
    pub fn rollback(name: &str) -> Self {
        StageId {
            kind: StageKind::Rollback,
            name: name.to_owned(),
        }
    }
}

impl fmt::Display for StageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.kind.as_str(), self.name)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a stage name; stages are written build:IMAGE, push:IMAGE or deploy:TARGET")]
pub struct StageIdError(pub String);

impl FromStr for StageId {
    type Err = StageIdError;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (kind, name) = text
            .split_once(':')
            .ok_or_else(|| StageIdError(text.to_owned()))?;
        let kind = match kind {
            "build" => StageKind::Build,
            "push" => StageKind::Push,
            "deploy" => StageKind::Deploy,
            "down" => StageKind::Down,
            "rollback" => StageKind::Rollback,
            _ => return Err(StageIdError(text.to_owned())),
        };
        if name.is_empty() {
            return Err(StageIdError(text.to_owned()));
        }
        Ok(StageId {
            kind,
            name: name.to_owned(),
        })
    }
}

impl Serialize for StageId {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for StageId {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}
