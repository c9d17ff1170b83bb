//! What a reading pass hands on while it runs (blobs, to a `BlobSink`) and what it reports when
//! it ends (what became of each layer, or why it stopped).

use std::collections::HashMap;
use std::io;

use super::layer_packer::{SpooledBlob, is_cancelled};
use super::push_config::Compression;
use super::push_error::PushError;
use crate::docker::image_source::archive_layout::{ArchiveMetadata, LayoutProblem};
use crate::docker::image_source::archive_scan::ArchiveError;

/// Where a pass sends blobs, and how it asks what the registry has. Both calls block the
/// reading thread, which is what keeps spool files from piling up when uploads are slower than
/// compression.
pub(crate) trait BlobSink: Sync {
    /// Whether the target repository already holds this blob.
    fn has_blob(&self, digest: &str) -> Result<bool, PushError>;
    /// Takes ownership of a spool file to upload (and delete).
    fn submit(&self, blob: SpooledBlob) -> Result<(), PushError>;
}

/// What became of one layer entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum LayerOutcome {
    /// Compressed by shipit and handed to the uploader.
    Packed {
        diff_id: String,
        uncompressed_size: u64,
        digest: String,
        size: u64,
    },
    /// Predicted to be a layer the registry has, and the hash proved it.
    Verified {
        diff_id: String,
        uncompressed_size: u64,
    },
    /// Predicted to be a layer the registry has, but it is another one: it needs a second
    /// pass to be packed.
    Mispredicted {
        diff_id: String,
        uncompressed_size: u64,
    },
    /// Stored compressed in the archive and pushed as it is (or already in the registry).
    Stored {
        digest: String,
        size: u64,
        compression: Compression,
    },
    /// Not read: a second pass needs only other entries.
    Skipped,
}

/// Everything one pass learned.
#[derive(Debug, Default)]
pub(crate) struct ScanResult {
    pub metadata: ArchiveMetadata,
    /// By archive path, or `diff:<diff id>` for layers known only by their diff id.
    pub layers: HashMap<String, LayerOutcome>,
    /// The reader stopped before the end of the export.
    pub stopped_early: bool,
}

/// Why a pass stopped.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ScanError {
    #[error("failed to read {}: {source}", entry.as_deref().unwrap_or("the archive"))]
    Io {
        entry: Option<String>,
        #[source]
        source: io::Error,
    },
    #[error("{0}")]
    Layout(#[from] LayoutProblem),
    #[error("the push was cancelled")]
    Cancelled,
    #[error(transparent)]
    Sink(#[from] PushError),
}

impl ScanError {
    /// A failure reading (or packing) `entry`: a cancellation when the packer stopped for one.
    pub(crate) fn reading(entry: impl Into<String>, source: io::Error) -> Self {
        if is_cancelled(&source) {
            ScanError::Cancelled
        } else {
            ScanError::Io {
                entry: Some(entry.into()),
                source,
            }
        }
    }
}

impl From<ArchiveError> for ScanError {
    fn from(err: ArchiveError) -> Self {
        match err {
            ArchiveError::Io { entry, source } => ScanError::Io { entry, source },
            ArchiveError::Layout(problem) => ScanError::Layout(problem),
            ArchiveError::Cancelled => ScanError::Cancelled,
        }
    }
}
