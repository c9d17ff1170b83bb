//! One thing wrong with a block of the pipeline file, found by that block's own checks: every
//! kind of configuration (a deploy target's `docker:`, `ecs:` or `eks:` block, an image's
//! `push:` block) validates itself and returns *every* problem it finds, each at a field path
//! relative to the block, which `shipit validate` turns into `FILE:LINE:COL`.

use std::fmt;

use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConfigProblem {
    /// Relative to the block: `health.http.port`, `ports[1]`, `env.PORT`; empty for the block
    /// itself.
    pub path: String,
    pub message: String,
}

impl ConfigProblem {
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigProblem {
            path: path.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// A block of configuration that checks itself before anything runs.
pub trait ValidateConfig {
    /// Every problem, not only the first; empty when the block is valid.
    fn problems(&self) -> Vec<ConfigProblem>;
}
