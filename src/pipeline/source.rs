//! The pipeline file as text, and diagnostics that point into it as `FILE:LINE:COL: message`
//! followed by the offending line, the way compilers do.

use std::fmt;
use std::path::{Path, PathBuf};

/// Pipeline files are hand-written configuration; anything this large is a mistake (a binary or
/// a generated dump passed to `-f`), and refusing it early keeps parsing bounded.
pub const MAX_PIPELINE_FILE_BYTES: u64 = 1024 * 1024;

/// A 1-based line and column (in characters).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Location {
    pub line: usize,
    pub col: usize,
}

#[derive(Debug, Clone)]
pub struct SourceFile {
    pub path: PathBuf,
    pub text: String,
}

/// One problem found in the pipeline file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub file: PathBuf,
    pub location: Option<Location>,
    pub message: String,
    /// The source line the location points into, shown under the message.
    pub line_text: Option<String>,
    pub hint: Option<String>,
}

impl Diagnostic {
    pub fn new(file: &Path, location: Option<Location>, message: impl Into<String>) -> Self {
        Diagnostic {
            file: file.to_path_buf(),
            location,
            message: message.into(),
            line_text: None,
            hint: None,
        }
    }

    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.location {
            Some(at) => write!(
                f,
                "{}:{}:{}: {}",
                self.file.display(),
                at.line,
                at.col,
                self.message
            )?,
            None => write!(f, "{}: {}", self.file.display(), self.message)?,
        }
        if let (Some(at), Some(line)) = (self.location, &self.line_text) {
            let gutter = at.line.to_string();
            write!(f, "\n{gutter} | {line}")?;
            let pad: String = line
                .chars()
                .take(at.col.saturating_sub(1))
                .map(|c| if c == '\t' { '\t' } else { ' ' })
                .collect();
            write!(f, "\n{} | {pad}^", " ".repeat(gutter.len()))?;
        }
        if let Some(hint) = &self.hint {
            write!(f, "\n  hint: {hint}")?;
        }
        Ok(())
    }
}

/// Why a pipeline file could not be read as text.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("{path}: failed to read the pipeline file: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{path}: is a directory, not a pipeline file\n  hint: pass the YAML file itself, e.g. -f {path}/shipit.yaml"
    )]
    IsDirectory { path: PathBuf },
    #[error(
        "{path}: the pipeline file is {size} bytes, over the {limit} byte limit\n  hint: is this the right file? pipeline files are small YAML documents"
    )]
    TooLarge {
        path: PathBuf,
        size: u64,
        limit: u64,
    },
    #[error(
        "{path}:{line}:{col}: the pipeline file is not valid UTF-8\n  hint: save the file as UTF-8"
    )]
    NotUtf8 {
        path: PathBuf,
        line: usize,
        col: usize,
    },
}

impl SourceFile {
    pub fn read(path: &Path) -> Result<SourceFile, ReadError> {
        let io = |source| ReadError::Io {
            path: path.to_path_buf(),
            source,
        };
        let meta = std::fs::metadata(path).map_err(io)?;
        if meta.is_dir() {
            return Err(ReadError::IsDirectory {
                path: path.to_path_buf(),
            });
        }
        if meta.len() > MAX_PIPELINE_FILE_BYTES {
            return Err(ReadError::TooLarge {
                path: path.to_path_buf(),
                size: meta.len(),
                limit: MAX_PIPELINE_FILE_BYTES,
            });
        }
        let bytes = std::fs::read(path).map_err(io)?;
        Self::from_bytes(path, bytes)
    }

    pub fn from_bytes(path: &Path, bytes: Vec<u8>) -> Result<SourceFile, ReadError> {
        match String::from_utf8(bytes) {
            Ok(text) => Ok(SourceFile {
                path: path.to_path_buf(),
                text,
            }),
            Err(err) => {
                let valid = &err.as_bytes()[..err.utf8_error().valid_up_to()];
                // `valid` is valid UTF-8 by construction.
                let valid = std::str::from_utf8(valid).unwrap_or_default();
                let line = valid.matches('\n').count() + 1;
                let col = valid.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
                Err(ReadError::NotUtf8 {
                    path: path.to_path_buf(),
                    line,
                    col,
                })
            }
        }
    }

    pub fn line_text(&self, line: usize) -> Option<&str> {
        self.text.lines().nth(line.checked_sub(1)?)
    }

    /// A diagnostic at `location`, carrying the source line it points into.
    pub fn diagnostic(&self, location: Option<Location>, message: impl Into<String>) -> Diagnostic {
        let mut diagnostic = Diagnostic::new(&self.path, location, message);
        diagnostic.line_text = location
            .and_then(|at| self.line_text(at.line))
            .map(str::to_owned);
        diagnostic
    }
}
