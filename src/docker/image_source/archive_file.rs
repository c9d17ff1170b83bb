//! An image archive file: the output of `docker save`, or an OCI image layout archive
//! (`skopeo copy … oci-archive:FILE`, `docker save` of Docker 25+).

use std::io::{self, Read};
use std::path::{Path, PathBuf};

use super::archive_layout::{
    ArchiveMetadata, ContentKind, EntryRole, LayoutProblem, MAX_METADATA_BYTES, entry_role,
    normalize_entry_path, read_source_image, resolve_link, sniff_content,
};

/// Bytes read from the file at a time.
const READ_BUFFER: usize = 256 * 1024;

/// What an archive file holds, known before its layers are read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ArchiveSummary {
    /// The image's layer diff ids, in order.
    pub diff_ids: Vec<String>,
    /// The file's size: about how many bytes a pass reads.
    pub size: u64,
}

/// Why an archive file could not be summarized.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ArchiveFileError {
    #[error("failed to read the image archive {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{0}")]
    Layout(#[from] LayoutProblem),
}

/// The platform to pick out of a multi-platform archive: this machine's, as Linux.
pub(crate) fn host_platform() -> String {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        other => other,
    };
    format!("linux/{arch}")
}

/// Opens the archive for a reading pass.
pub(crate) fn open_archive_file(path: &Path) -> io::Result<Box<dyn Read + Send>> {
    let file = std::fs::File::open(path)?;
    Ok(Box::new(io::BufReader::with_capacity(READ_BUFFER, file)))
}

/// Reads the archive's metadata (seeking past layer content) and the image it describes for
/// `platform`. Blocking.
pub(crate) fn summarize_archive(
    path: &Path,
    platform: &str,
) -> Result<ArchiveSummary, ArchiveFileError> {
    let io_error = |source| ArchiveFileError::Io {
        path: path.to_path_buf(),
        source,
    };
    let metadata = read_archive_metadata(path).map_err(io_error)?;
    let image = read_source_image(&metadata, platform)?;
    let size = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    Ok(ArchiveSummary {
        diff_ids: image.layers.into_iter().map(|l| l.diff_id).collect(),
        size,
    })
}

/// Reads only the metadata of an archive file, seeking past layer content.
fn read_archive_metadata(path: &Path) -> io::Result<ArchiveMetadata> {
    let file = std::fs::File::open(path)?;
    let mut archive = tar::Archive::new(file);
    let mut metadata = ArchiveMetadata::default();
    for entry in archive.entries_with_seek()? {
        let mut entry = entry?;
        let entry_path = normalize_entry_path(&String::from_utf8_lossy(&entry.path_bytes()));
        let entry_type = entry.header().entry_type();
        if entry_type.is_symlink() || entry_type.is_hard_link() {
            if let Some(target) = entry.link_name_bytes() {
                let target = String::from_utf8_lossy(&target).into_owned();
                let resolved = if entry_type.is_symlink() {
                    resolve_link(&entry_path, &target)
                } else {
                    normalize_entry_path(&target)
                };
                metadata.links.insert(entry_path, resolved);
            }
            continue;
        }
        let size = entry.header().size()?;
        if size > MAX_METADATA_BYTES {
            continue;
        }
        let keep = match entry_role(&entry_path) {
            EntryRole::Metadata => true,
            EntryRole::Blob { .. } => {
                let mut head = [0u8; 64];
                let n = entry.read(&mut head)?;
                if sniff_content(&head[..n]) == ContentKind::Json {
                    let mut bytes = head[..n].to_vec();
                    entry.read_to_end(&mut bytes)?;
                    metadata.files.insert(entry_path.clone(), bytes);
                }
                false
            }
            _ => false,
        };
        if keep {
            let mut bytes = Vec::with_capacity(size as usize);
            entry.read_to_end(&mut bytes)?;
            metadata.files.insert(entry_path, bytes);
        }
    }
    Ok(metadata)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::docker::image_source::archive_fixtures::{
        classic_archive, gzip, layer_tar, oci_archive,
    };
    use crate::docker::image_source::digest::sha256_digest;

    #[test]
    fn both_layouts_are_summarized_from_their_metadata() {
        let dir = tempfile::tempdir().unwrap();
        let layers = vec![layer_tar(1, 4000), layer_tar(2, 1000)];
        let (classic, _) = classic_archive(&layers, true);
        let path = dir.path().join("classic.tar");
        std::fs::write(&path, &classic).unwrap();
        let summary = summarize_archive(&path, "linux/amd64").unwrap();
        let first = sha256_digest(&layers[0]);
        assert_eq!(
            summary.diff_ids,
            vec![first.clone(), sha256_digest(&layers[1]), first]
        );
        assert_eq!(summary.size, classic.len() as u64);

        let inner = layer_tar(4, 2000);
        let (oci, _) = oci_archive(&layer_tar(3, 3000), &gzip(&inner), &sha256_digest(&inner));
        let path = dir.path().join("oci.tar");
        std::fs::write(&path, &oci).unwrap();
        let summary = summarize_archive(&path, "linux/amd64").unwrap();
        assert_eq!(summary.diff_ids.len(), 2);
        assert_eq!(summary.diff_ids[1], sha256_digest(&inner));
    }

    #[test]
    fn a_file_that_is_no_image_archive_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("empty.tar");
        std::fs::write(&path, tar::Builder::new(Vec::new()).into_inner().unwrap()).unwrap();
        let err = summarize_archive(&path, "linux/amd64").unwrap_err();
        assert!(matches!(err, ArchiveFileError::Layout(_)), "{err}");
        let err = summarize_archive(&dir.path().join("missing.tar"), "linux/amd64").unwrap_err();
        assert!(err.to_string().contains("missing.tar"), "{err}");
    }
}
