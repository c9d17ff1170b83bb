//! The build context: which files of the context directory are sent to the daemon,
//! how they are streamed (a tar produced while walking) and how they are digested.
//!
//! [`BuildContext::open`] resolves the context directory and the Dockerfile the way
//! the docker CLI does and reads `.dockerignore`; [`walk`] is the one place that
//! decides which entries are in the context; the tar stream and the digest both
//! consume that walk. The digest leaves a manifest of what it covered (`manifest`),
//! which `changes` compares with the last successful build's.

mod changes;
pub(crate) mod digest;
pub(crate) mod dockerignore;
pub(crate) mod filesync;
pub(crate) mod manifest;
pub(crate) mod tar_stream;
pub(crate) mod walk;

use std::io;
use std::path::{Path, PathBuf};

use dockerignore::{IgnoreLine, PatternMatcher, is_excluded, parse_dockerignore};

pub use changes::{
    BuiltManifest, ContextChanges, ContextStateFiles, context_changes, record_built_manifest,
};
pub use digest::{ContextDigest, digest_context};
pub use dockerignore::PatternError;
pub use tar_stream::TarSummary;

/// The name the CLI gives the ignore file, at the context root.
pub(crate) const DOCKERIGNORE: &str = ".dockerignore";

/// A resolved build context: canonical root, Dockerfile location and ignore rules.
#[derive(Debug, Clone)]
pub struct BuildContext {
    root: PathBuf,
    dockerfile: DockerfileLocation,
    /// Raw `.dockerignore` bytes, when the file exists.
    dockerignore: Option<Vec<u8>>,
    ignore_lines: Vec<IgnoreLine>,
}

/// Where the Dockerfile lives relative to the context.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum DockerfileLocation {
    /// Inside the context, as a slash-separated relative path.
    InContext(String),
    /// Outside the context: the CLI then adds it to the tar under a generated name.
    Outside(PathBuf),
}

/// A problem with the build context, always naming the path involved.
#[derive(Debug, thiserror::Error)]
pub enum ContextError {
    #[error(
        "failed to open the build context {path}: it does not exist; check the image's context path"
    )]
    ContextDirMissing { path: PathBuf },
    #[error("failed to open the build context {path}: it is not a directory")]
    ContextNotADirectory { path: PathBuf },
    #[error("failed to open the build context {path}")]
    ContextDirUnreadable {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "failed to find the Dockerfile {path}: no such file; the dockerfile path is relative to the context directory"
    )]
    DockerfileMissing { path: PathBuf },
    #[error("failed to use the Dockerfile {path}: it is not a regular file")]
    DockerfileNotAFile { path: PathBuf },
    #[error("failed to read the Dockerfile {path}")]
    DockerfileUnreadable {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("failed to read {path}")]
    DockerignoreUnreadable {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("failed to parse {path} line {line}")]
    DockerignorePattern {
        path: PathBuf,
        line: usize,
        #[source]
        source: PatternError,
    },
    #[error(
        "failed to read {path} in the build context; fix its permissions or exclude it in .dockerignore"
    )]
    Unreadable {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "failed to read {path} in the build context: it changed size while being sent; retry once nothing writes to the context"
    )]
    ChangedWhileReading { path: PathBuf },
    #[error("failed to send the build context: the daemon stopped reading it")]
    ReceiverGone,
    #[error("failed to write the context stat cache {path}")]
    StatCacheWrite {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("failed to write the context manifest {path}")]
    ManifestWrite {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

impl ContextError {
    /// The file or directory the error is about.
    pub fn path(&self) -> Option<&Path> {
        match self {
            ContextError::ContextDirMissing { path }
            | ContextError::ContextNotADirectory { path }
            | ContextError::ContextDirUnreadable { path, .. }
            | ContextError::DockerfileMissing { path }
            | ContextError::DockerfileNotAFile { path }
            | ContextError::DockerfileUnreadable { path, .. }
            | ContextError::DockerignoreUnreadable { path, .. }
            | ContextError::DockerignorePattern { path, .. }
            | ContextError::Unreadable { path, .. }
            | ContextError::ChangedWhileReading { path }
            | ContextError::StatCacheWrite { path, .. }
            | ContextError::ManifestWrite { path, .. } => Some(path),
            ContextError::ReceiverGone => None,
        }
    }
}

impl BuildContext {
    /// Resolves the context directory and the Dockerfile like the docker CLI:
    /// symlinks in the context path are resolved, the Dockerfile path is relative to
    /// the context (`None` means `Dockerfile`, falling back to `dockerfile`), and
    /// `.dockerignore` is read and checked.
    pub fn open(context_dir: &Path, dockerfile: Option<&Path>) -> Result<Self, ContextError> {
        let root = std::fs::canonicalize(context_dir).map_err(|source| {
            if source.kind() == io::ErrorKind::NotFound {
                ContextError::ContextDirMissing {
                    path: context_dir.to_path_buf(),
                }
            } else {
                ContextError::ContextDirUnreadable {
                    path: context_dir.to_path_buf(),
                    source,
                }
            }
        })?;
        let meta =
            std::fs::metadata(&root).map_err(|source| ContextError::ContextDirUnreadable {
                path: context_dir.to_path_buf(),
                source,
            })?;
        if !meta.is_dir() {
            return Err(ContextError::ContextNotADirectory {
                path: context_dir.to_path_buf(),
            });
        }

        let given = match dockerfile {
            Some(path) => root.join(path),
            None => {
                let default = root.join("Dockerfile");
                let lower = root.join("dockerfile");
                if std::fs::symlink_metadata(&default).is_err()
                    && std::fs::symlink_metadata(&lower).is_ok()
                {
                    lower
                } else {
                    default
                }
            }
        };
        let resolved = std::fs::canonicalize(&given).map_err(|source| {
            if source.kind() == io::ErrorKind::NotFound {
                ContextError::DockerfileMissing {
                    path: given.clone(),
                }
            } else {
                ContextError::DockerfileUnreadable {
                    path: given.clone(),
                    source,
                }
            }
        })?;
        let dockerfile_meta =
            std::fs::metadata(&resolved).map_err(|source| ContextError::DockerfileUnreadable {
                path: given.clone(),
                source,
            })?;
        if !dockerfile_meta.is_file() {
            return Err(ContextError::DockerfileNotAFile { path: given });
        }
        let dockerfile = match resolved.strip_prefix(&root) {
            Ok(relative) => DockerfileLocation::InContext(slash_path(relative)),
            Err(_) => DockerfileLocation::Outside(resolved),
        };

        let ignore_path = root.join(DOCKERIGNORE);
        let dockerignore = match std::fs::read(&ignore_path) {
            Ok(bytes) => Some(bytes),
            Err(source) if source.kind() == io::ErrorKind::NotFound => None,
            Err(source) => {
                return Err(ContextError::DockerignoreUnreadable {
                    path: ignore_path,
                    source,
                });
            }
        };
        let ignore_lines = dockerignore
            .as_deref()
            .map(parse_dockerignore)
            .unwrap_or_default();
        for line in &ignore_lines {
            PatternMatcher::new(std::slice::from_ref(&line.pattern)).map_err(|source| {
                ContextError::DockerignorePattern {
                    path: ignore_path.clone(),
                    line: line.line,
                    source,
                }
            })?;
        }

        Ok(BuildContext {
            root,
            dockerfile,
            dockerignore,
            ignore_lines,
        })
    }

    /// The canonical context directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    pub(crate) fn dockerfile(&self) -> &DockerfileLocation {
        &self.dockerfile
    }

    /// Writes the context as the classic builder receives it (what `docker build`
    /// sends), e.g. to inspect or measure what a build uploads.
    pub fn write_tar<W: std::io::Write>(&self, out: W) -> Result<TarSummary, ContextError> {
        let name = tar_stream::dockerfile_name_in_tar(self);
        tar_stream::write_context_tar(self, &name, out)
    }

    /// The directory holding the Dockerfile and the Dockerfile's name in it: what
    /// the BuildKit session serves as `dockerfile` (the CLI's layout).
    pub(crate) fn dockerfile_dir_and_name(&self) -> (PathBuf, String) {
        let path = match &self.dockerfile {
            DockerfileLocation::InContext(relative) => self.root.join(relative),
            DockerfileLocation::Outside(path) => path.clone(),
        };
        let name = path
            .file_name()
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_else(|| "Dockerfile".to_string());
        let dir = path
            .parent()
            .map_or_else(|| self.root.clone(), Path::to_path_buf);
        (dir, name)
    }

    pub(crate) fn dockerignore_bytes(&self) -> Option<&[u8]> {
        self.dockerignore.as_deref()
    }

    /// The matcher deciding which entries the tar context holds, with the CLI's
    /// forced re-inclusions: the classic builder reads `.dockerignore` and the
    /// Dockerfile from the tar and removes them afterwards when they are excluded,
    /// so both are sent (the CLI's `TrimBuildFilesFromExcludes`).
    pub(crate) fn matcher(&self) -> PatternMatcher {
        let mut patterns: Vec<String> = self
            .ignore_lines
            .iter()
            .map(|line| line.pattern.clone())
            .collect();
        // Every line was validated in `open`, so compiling cannot fail here; an
        // empty matcher would be the safe fallback anyway.
        let base = PatternMatcher::new(&patterns).unwrap_or_default();
        if is_excluded(&base, DOCKERIGNORE) {
            patterns.push(format!("!{DOCKERIGNORE}"));
        }
        if let DockerfileLocation::InContext(relative) = &self.dockerfile
            && is_excluded(&base, relative)
        {
            patterns.push(format!("!{relative}"));
        }
        PatternMatcher::new(&patterns).unwrap_or_default()
    }
}

/// A relative path as the slash-separated string the daemon expects.
fn slash_path(relative: &Path) -> String {
    relative
        .components()
        .map(|component| component.as_os_str().to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join("/")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    #[test]
    fn a_missing_context_directory_is_named_in_the_error() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope");
        let err = BuildContext::open(&missing, None).unwrap_err();
        assert!(matches!(err, ContextError::ContextDirMissing { .. }));
        assert_eq!(err.path(), Some(missing.as_path()));
    }

    #[test]
    fn a_file_as_context_is_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        fs::write(&file, "x").unwrap();
        let err = BuildContext::open(&file, None).unwrap_err();
        assert!(matches!(err, ContextError::ContextNotADirectory { .. }));
    }

    #[test]
    fn a_missing_dockerfile_is_named_in_the_error() {
        let dir = tempfile::tempdir().unwrap();
        let err = BuildContext::open(dir.path(), None).unwrap_err();
        assert!(matches!(err, ContextError::DockerfileMissing { .. }));
        assert!(err.to_string().contains("Dockerfile"));
    }

    #[test]
    fn lowercase_dockerfile_is_the_fallback() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("dockerfile"), "FROM scratch\n").unwrap();
        let context = BuildContext::open(dir.path(), None).unwrap();
        assert_eq!(
            context.dockerfile(),
            &DockerfileLocation::InContext("dockerfile".to_string())
        );
    }

    #[test]
    fn a_dockerfile_in_a_subdirectory_is_relative_to_the_context() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("docker")).unwrap();
        fs::write(dir.path().join("docker/app.Dockerfile"), "FROM scratch\n").unwrap();
        let context =
            BuildContext::open(dir.path(), Some(Path::new("./docker/app.Dockerfile"))).unwrap();
        assert_eq!(
            context.dockerfile(),
            &DockerfileLocation::InContext("docker/app.Dockerfile".to_string())
        );
    }

    #[test]
    fn a_dockerfile_outside_the_context_is_allowed() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("ctx")).unwrap();
        fs::write(dir.path().join("Dockerfile"), "FROM scratch\n").unwrap();
        let context =
            BuildContext::open(&dir.path().join("ctx"), Some(Path::new("../Dockerfile"))).unwrap();
        assert!(matches!(
            context.dockerfile(),
            DockerfileLocation::Outside(_)
        ));
    }

    #[test]
    fn a_bad_dockerignore_pattern_reports_its_line() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("Dockerfile"), "FROM scratch\n").unwrap();
        fs::write(dir.path().join(".dockerignore"), "# c\nok\n[\n").unwrap();
        let err = BuildContext::open(dir.path(), None).unwrap_err();
        match err {
            ContextError::DockerignorePattern { line, .. } => assert_eq!(line, 3),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn excluded_dockerfile_and_dockerignore_are_forced_back_into_the_tar() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("Dockerfile"), "FROM scratch\n").unwrap();
        fs::write(dir.path().join(".dockerignore"), "*\n").unwrap();
        let context = BuildContext::open(dir.path(), None).unwrap();
        let classic = context.matcher();
        assert!(!classic.matches(b"Dockerfile"));
        assert!(!classic.matches(b".dockerignore"));
        assert!(classic.matches(b"other"));
    }

    #[test]
    fn the_dockerfile_directory_is_served_with_the_dockerfile_name() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("ctx/docker")).unwrap();
        fs::write(
            dir.path().join("ctx/docker/app.Dockerfile"),
            "FROM scratch\n",
        )
        .unwrap();
        fs::write(dir.path().join("Outside.Dockerfile"), "FROM scratch\n").unwrap();
        let ctx = dir.path().join("ctx");
        let inside = BuildContext::open(&ctx, Some(Path::new("docker/app.Dockerfile"))).unwrap();
        let (folder, name) = inside.dockerfile_dir_and_name();
        assert_eq!(folder, inside.root().join("docker"));
        assert_eq!(name, "app.Dockerfile");
        let outside = BuildContext::open(&ctx, Some(Path::new("../Outside.Dockerfile"))).unwrap();
        let (folder, name) = outside.dockerfile_dir_and_name();
        assert_eq!(folder, std::fs::canonicalize(dir.path()).unwrap());
        assert_eq!(name, "Outside.Dockerfile");
    }
}
