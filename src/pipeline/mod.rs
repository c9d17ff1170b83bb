//! The pipeline file: reading it (`source`, `yaml`), its typed model (`model`), `${{ … }}`
//! expressions (`interpolate`) and the checks `shipit validate` runs before anything else
//! (`validate`).

pub mod aws_role;
pub mod interpolate;
pub mod model;
pub mod path;
pub mod source;
mod validate;
pub mod yaml;

use std::path::{Path, PathBuf};

pub use model::PipelineFile;
pub use path::DocPath;
pub use source::{Diagnostic, ReadError, SourceFile};
pub(crate) use validate::{push_problems, target_kind_problems};

/// A pipeline file that parsed and passed every check.
#[derive(Debug, Clone)]
pub struct Pipeline {
    pub source: SourceFile,
    pub document: yaml::Document,
    pub file: PipelineFile,
    /// The folder the pipeline file is in: relative paths in the file start here.
    pub base_dir: PathBuf,
    /// The environment chosen with `--env`, if any.
    pub environment: Option<String>,
}

/// Why a pipeline could not be loaded: the file could not be read, or it has problems (all of
/// them are listed, not only the first).
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(transparent)]
    Read(#[from] ReadError),
    #[error("{}", render_diagnostics(.0))]
    Invalid(Vec<Diagnostic>),
}

fn render_diagnostics(diagnostics: &[Diagnostic]) -> String {
    let mut text = diagnostics
        .iter()
        .map(|d| d.to_string())
        .collect::<Vec<_>>()
        .join("\n");
    if diagnostics.len() > 1 {
        text.push_str(&format!("\n{} problems found", diagnostics.len()));
    }
    text
}

impl Pipeline {
    /// Reads, parses and validates a pipeline file.
    pub fn load(path: &Path, environment: Option<&str>) -> Result<Pipeline, LoadError> {
        let source = SourceFile::read(path)?;
        Self::from_source(source, environment)
    }

    pub fn from_source(
        source: SourceFile,
        environment: Option<&str>,
    ) -> Result<Pipeline, LoadError> {
        let document = yaml::parse(&source).map_err(|d| LoadError::Invalid(vec![d]))?;
        let file =
            deserialize_at::<PipelineFile>(&source, &document, &document.value, &DocPath::root())
                .map_err(|d| LoadError::Invalid(vec![d]))?;
        let base_dir = source
            .path
            .parent()
            .map(|p| {
                if p.as_os_str().is_empty() {
                    Path::new(".")
                } else {
                    p
                }
            })
            .unwrap_or(Path::new("."))
            .to_path_buf();
        let pipeline = Pipeline {
            source,
            document,
            file,
            base_dir,
            environment: environment.map(str::to_owned),
        };
        let problems = validate::check(&pipeline);
        if problems.is_empty() {
            Ok(pipeline)
        } else {
            Err(LoadError::Invalid(problems))
        }
    }

    /// A diagnostic pointing at the value found at `path`.
    pub fn diagnostic_at(&self, path: &DocPath, message: impl Into<String>) -> Diagnostic {
        self.source
            .diagnostic(self.document.spans.value(path), message)
    }

    /// The raw (uninterpolated) value at `path`, e.g. `deploy.web` for a stage's config.
    pub fn raw(&self, path: &DocPath) -> Option<&serde_json::Value> {
        let mut value = &self.document.value;
        for segment in &path.0 {
            value = match segment {
                path::Segment::Key(k) => value.get(k)?,
                path::Segment::Index(i) => value.get(i)?,
            };
        }
        Some(value)
    }

    /// The variables in force: the file's `vars`, overridden by the chosen environment's.
    pub fn vars_raw(&self) -> Vec<(String, String, DocPath)> {
        let mut vars: Vec<(String, String, DocPath)> = self
            .file
            .vars
            .iter()
            .map(|(k, v)| {
                (
                    k.clone(),
                    v.clone(),
                    DocPath::root().key("vars").key(k.clone()),
                )
            })
            .collect();
        if let Some(env) = self
            .environment
            .as_ref()
            .and_then(|e| self.file.environments.get(e))
        {
            for (k, v) in &env.vars {
                let path = DocPath::root()
                    .key("environments")
                    .key(self.environment.clone().unwrap_or_default())
                    .key("vars")
                    .key(k.clone());
                match vars.iter_mut().find(|(name, _, _)| name == k) {
                    Some(entry) => *entry = (k.clone(), v.clone(), path),
                    None => vars.push((k.clone(), v.clone(), path)),
                }
            }
        }
        vars
    }

    pub fn resolve_path(&self, relative: &str) -> PathBuf {
        self.base_dir.join(relative)
    }
}

/// Deserializes `value` (found at `path` in the document) into `T`, pointing any error at the
/// offending key or value.
pub fn deserialize_at<T: serde::de::DeserializeOwned>(
    source: &SourceFile,
    document: &yaml::Document,
    value: &serde_json::Value,
    path: &DocPath,
) -> Result<T, Diagnostic> {
    serde_path_to_error::deserialize::<_, T>(value).map_err(|err| {
        let mut at = path.clone();
        at.0.extend(DocPath::from_serde(err.path()).0);
        let message = err.inner().to_string();
        // Point an unknown key's error at the key itself.
        if let Some(field) = message
            .strip_prefix("unknown field `")
            .and_then(|r| r.split('`').next())
            && at.0.last() != Some(&path::Segment::Key(field.to_owned()))
        {
            at = at.key(field);
        }
        let location =
            if message.starts_with("unknown field") || message.starts_with("unknown variant") {
                document.spans.key(&at)
            } else {
                document.spans.value(&at)
            };
        let message = if at.0.is_empty() {
            message
        } else {
            format!("{at}: {message}")
        };
        source.diagnostic(location, message)
    })
}
