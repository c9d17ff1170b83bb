//! What an image archive holds, read from its metadata files.
//!
//! Two layouts reach shipit. The classic `docker save` layout (Docker ≤ 24): `manifest.json`
//! names `<config hex>.json` and one `<dir>/layer.tar` per layer, uncompressed; a layer that two
//! directories share is a symlink. The OCI image layout (Docker 25+, the containerd image store,
//! `skopeo copy … oci-archive:`): `index.json` points at manifests under `blobs/sha256/`, whose
//! layers may be uncompressed tars or already compressed. Everything here is pure: the archive
//! reader (`archive_scan`) collects the small files, this module decides what they mean.

use std::collections::HashMap;

use serde::Deserialize;

use super::digest::{sha256_digest, sha256_hex};
use super::media_types::{DOCKER_MANIFEST_LIST, OCI_INDEX};

/// Files larger than this are never metadata; refusing them keeps memory bounded even when an
/// archive is malformed.
pub(crate) const MAX_METADATA_BYTES: u64 = 16 * 1024 * 1024;

/// Where an entry of the archive sits in the layout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum EntryRole {
    /// A classic layout layer, `<dir>/layer.tar`.
    ClassicLayer { dir: String },
    /// An OCI layout blob, `blobs/sha256/<hex>`: a layer, config, manifest or index.
    Blob { digest: String },
    /// A metadata file shipit reads: `manifest.json`, `index.json`, a classic config.
    Metadata,
    /// Anything else (`repositories`, `<dir>/json`, `oci-layout`, directories).
    Ignored,
}

/// Decides an entry's role from its path alone.
pub(crate) fn entry_role(path: &str) -> EntryRole {
    if let Some(hex) = path.strip_prefix("blobs/sha256/") {
        let digest = format!("sha256:{hex}");
        if sha256_hex(&digest).is_some() {
            return EntryRole::Blob { digest };
        }
        return EntryRole::Ignored;
    }
    if let Some(dir) = path.strip_suffix("/layer.tar")
        && !dir.is_empty()
        && !dir.contains('/')
    {
        return EntryRole::ClassicLayer {
            dir: dir.to_string(),
        };
    }
    if path == "manifest.json" || path == "index.json" {
        return EntryRole::Metadata;
    }
    if let Some(hex) = path.strip_suffix(".json")
        && !hex.contains('/')
        && sha256_hex(&format!("sha256:{hex}")).is_some()
    {
        return EntryRole::Metadata;
    }
    EntryRole::Ignored
}

/// Archive paths as tar writers spell them differ (`./manifest.json`); compare them bare.
pub(crate) fn normalize_entry_path(path: &str) -> String {
    crate::go_path::clean_within(path)
}

/// Where a symlink entry at `link` pointing to `target` leads, as an archive path.
pub(crate) fn resolve_link(link: &str, target: &str) -> String {
    if let Some(absolute) = target.strip_prefix('/') {
        return normalize_entry_path(absolute);
    }
    let parent = link.rsplit_once('/').map(|(dir, _)| dir).unwrap_or("");
    normalize_entry_path(&format!("{parent}/{target}"))
}

/// What the content of a blob starts with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ContentKind {
    Gzip,
    Zstd,
    Json,
    /// Anything else is taken for an uncompressed tar (an empty layer is 1024 zero bytes and
    /// has no magic at all).
    Tar,
    /// bzip2 or xz: legal in old Docker layers, not something a registry client should ship.
    UnsupportedCompression,
}

/// Sniffs a blob from its first bytes.
pub(crate) fn sniff_content(head: &[u8]) -> ContentKind {
    if head.starts_with(&[0x1f, 0x8b]) {
        return ContentKind::Gzip;
    }
    if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        return ContentKind::Zstd;
    }
    if head.starts_with(b"BZh") || head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0x00]) {
        return ContentKind::UnsupportedCompression;
    }
    match head.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'{') => ContentKind::Json,
        _ => ContentKind::Tar,
    }
}

/// The image an archive holds: its config and its layers in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SourceImage {
    pub config: Vec<u8>,
    pub config_digest: String,
    pub layers: Vec<SourceLayer>,
}

/// One layer as the archive describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SourceLayer {
    /// Archive path of the layer's content, symlinks resolved.
    pub entry: String,
    /// The uncompressed digest, from the config's `rootfs.diff_ids`.
    pub diff_id: String,
    /// OCI layout: the descriptor's digest and media type (the blob as stored).
    pub stored_digest: Option<String>,
    pub stored_media_type: Option<String>,
}

/// A problem with an archive's metadata.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub(crate) struct LayoutProblem(pub String);

fn problem(text: impl Into<String>) -> LayoutProblem {
    LayoutProblem(text.into())
}

#[derive(Deserialize)]
struct ClassicManifestEntry {
    #[serde(rename = "Config")]
    config: String,
    #[serde(rename = "Layers", default)]
    layers: Vec<String>,
}

#[derive(Deserialize)]
struct ImageConfigRootfs {
    rootfs: Rootfs,
    #[serde(default)]
    os: Option<String>,
    #[serde(default)]
    architecture: Option<String>,
}

#[derive(Deserialize)]
struct Rootfs {
    #[serde(default)]
    diff_ids: Vec<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Descriptor {
    #[serde(default)]
    media_type: Option<String>,
    digest: String,
    #[serde(default)]
    size: Option<u64>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ManifestOrIndex {
    #[serde(default)]
    media_type: Option<String>,
    #[serde(default)]
    config: Option<Descriptor>,
    #[serde(default)]
    layers: Vec<Descriptor>,
    #[serde(default)]
    manifests: Vec<Descriptor>,
}

/// The small files the archive reader kept, by normalized path, plus its symlinks.
#[derive(Debug, Default, Clone)]
pub(crate) struct ArchiveMetadata {
    pub files: HashMap<String, Vec<u8>>,
    pub links: HashMap<String, String>,
}

impl ArchiveMetadata {
    /// Follows symlinks (at most a few hops, so a loop cannot hang).
    pub(crate) fn resolve(&self, path: &str) -> String {
        let mut current = normalize_entry_path(path);
        for _ in 0..8 {
            match self.links.get(&current) {
                Some(target) => current = target.clone(),
                None => break,
            }
        }
        current
    }

    fn file(&self, path: &str) -> Option<&Vec<u8>> {
        self.files.get(&self.resolve(path))
    }
}

/// Reads the image out of the archive's metadata, preferring the OCI layout when both are
/// present (Docker 25+ writes both; only the OCI one carries media types). `platform` is the
/// `os/architecture` to prefer when an index lists several images.
pub(crate) fn read_source_image(
    metadata: &ArchiveMetadata,
    platform: &str,
) -> Result<SourceImage, LayoutProblem> {
    if metadata.file("index.json").is_some() {
        return read_oci_layout(metadata, platform);
    }
    if metadata.file("manifest.json").is_some() {
        return read_classic_layout(metadata);
    }
    Err(problem(
        "the archive has neither index.json (OCI layout) nor manifest.json (docker save \
         layout); is it an image archive?",
    ))
}

fn read_classic_layout(metadata: &ArchiveMetadata) -> Result<SourceImage, LayoutProblem> {
    let bytes = metadata
        .file("manifest.json")
        .ok_or_else(|| problem("no manifest.json"))?;
    let entries: Vec<ClassicManifestEntry> = serde_json::from_slice(bytes).map_err(|err| {
        problem(format!(
            "manifest.json is not a docker save manifest: {err}"
        ))
    })?;
    let entry = match entries.as_slice() {
        [single] => single,
        [] => return Err(problem("manifest.json lists no image")),
        _ => {
            return Err(problem(format!(
                "manifest.json lists {} images; export one image at a time",
                entries.len()
            )));
        }
    };
    let config_path = normalize_entry_path(&entry.config);
    let config = metadata
        .file(&config_path)
        .ok_or_else(|| {
            problem(format!(
                "the config {config_path} is missing from the archive"
            ))
        })?
        .clone();
    let config_digest = sha256_digest(&config);
    // The config file is named after its digest, which is also the image id: check it.
    if let Some(named) = config_path
        .strip_suffix(".json")
        .map(|hex| format!("sha256:{}", hex.rsplit('/').next().unwrap_or(hex)))
        .filter(|named| sha256_hex(named).is_some())
        && named != config_digest
    {
        return Err(problem(format!(
            "the config {config_path} does not match its name (digest {config_digest})"
        )));
    }
    let diff_ids = read_diff_ids(&config)?;
    if diff_ids.len() != entry.layers.len() {
        return Err(problem(format!(
            "manifest.json lists {} layers but the config has {} diff ids",
            entry.layers.len(),
            diff_ids.len()
        )));
    }
    let layers = entry
        .layers
        .iter()
        .zip(diff_ids)
        .map(|(path, diff_id)| SourceLayer {
            entry: metadata.resolve(path),
            diff_id,
            stored_digest: None,
            stored_media_type: None,
        })
        .collect();
    Ok(SourceImage {
        config,
        config_digest,
        layers,
    })
}

fn read_diff_ids(config: &[u8]) -> Result<Vec<String>, LayoutProblem> {
    let parsed: ImageConfigRootfs = serde_json::from_slice(config)
        .map_err(|err| problem(format!("the image config has no rootfs.diff_ids: {err}")))?;
    for diff_id in &parsed.rootfs.diff_ids {
        if sha256_hex(diff_id).is_none() {
            return Err(problem(format!(
                "the image config lists a diff id that is not a sha256 digest: {diff_id}"
            )));
        }
    }
    Ok(parsed.rootfs.diff_ids)
}

fn blob_path(digest: &str) -> Result<String, LayoutProblem> {
    let hex = sha256_hex(digest)
        .ok_or_else(|| problem(format!("unsupported digest {digest:?} (only sha256)")))?;
    Ok(format!("blobs/sha256/{hex}"))
}

fn read_oci_layout(
    metadata: &ArchiveMetadata,
    platform: &str,
) -> Result<SourceImage, LayoutProblem> {
    let index_bytes = metadata
        .file("index.json")
        .ok_or_else(|| problem("no index.json"))?;
    let index: ManifestOrIndex = serde_json::from_slice(index_bytes)
        .map_err(|err| problem(format!("index.json is not an OCI index: {err}")))?;

    // Walk nested indexes down to image manifests whose blobs are in the archive; the
    // containerd store exports a multi-platform index with only the local platform present.
    let mut candidates: Vec<(String, ManifestOrIndex)> = Vec::new();
    let mut pending: Vec<Descriptor> = index.manifests;
    let mut visited = 0;
    while let Some(descriptor) = pending.pop() {
        visited += 1;
        if visited > 256 {
            return Err(problem("index.json nests more than 256 manifests"));
        }
        let path = blob_path(&descriptor.digest)?;
        let Some(bytes) = metadata.file(&path) else {
            continue;
        };
        let parsed: ManifestOrIndex = serde_json::from_slice(bytes)
            .map_err(|err| problem(format!("{path} is not a manifest or index: {err}")))?;
        let media_type = parsed
            .media_type
            .clone()
            .or(descriptor.media_type.clone())
            .unwrap_or_default();
        let is_index = media_type == OCI_INDEX
            || media_type == DOCKER_MANIFEST_LIST
            || (parsed.config.is_none() && !parsed.manifests.is_empty());
        if is_index {
            pending.extend(parsed.manifests);
        } else if parsed.config.is_some() {
            candidates.push((path, parsed));
        }
    }

    let mut complete: Vec<(String, ManifestOrIndex, bool)> = Vec::new();
    for (path, manifest) in candidates {
        let Some(config_descriptor) = &manifest.config else {
            continue;
        };
        let Some(config) = metadata.file(&blob_path(&config_descriptor.digest)?) else {
            continue;
        };
        let matches_platform = serde_json::from_slice::<ImageConfigRootfs>(config)
            .ok()
            .map(|c| {
                format!(
                    "{}/{}",
                    c.os.unwrap_or_default(),
                    c.architecture.unwrap_or_default()
                ) == platform
            })
            .unwrap_or(false);
        complete.push((path, manifest, matches_platform));
    }
    if complete.is_empty() {
        return Err(problem(
            "index.json points at no image manifest whose config is in the archive",
        ));
    }
    let chosen = complete
        .iter()
        .position(|(_, _, matches)| *matches)
        .unwrap_or(0);
    let (manifest_path, manifest, _) = complete.swap_remove(chosen);
    let config_descriptor = manifest
        .config
        .ok_or_else(|| problem(format!("{manifest_path} has no config")))?;
    let config = metadata
        .file(&blob_path(&config_descriptor.digest)?)
        .ok_or_else(|| problem("the config blob is missing"))?
        .clone();
    let config_digest = sha256_digest(&config);
    if config_digest != config_descriptor.digest {
        return Err(problem(format!(
            "the config blob {} does not match its digest (content is {config_digest})",
            config_descriptor.digest
        )));
    }
    if let Some(size) = config_descriptor.size
        && size != config.len() as u64
    {
        return Err(problem(format!(
            "the config blob is {} bytes, its descriptor says {size}",
            config.len()
        )));
    }
    let diff_ids = read_diff_ids(&config)?;
    if diff_ids.len() != manifest.layers.len() {
        return Err(problem(format!(
            "{manifest_path} lists {} layers but the config has {} diff ids",
            manifest.layers.len(),
            diff_ids.len()
        )));
    }
    let mut layers = Vec::with_capacity(diff_ids.len());
    for (descriptor, diff_id) in manifest.layers.into_iter().zip(diff_ids) {
        layers.push(SourceLayer {
            entry: metadata.resolve(&blob_path(&descriptor.digest)?),
            diff_id,
            stored_digest: Some(descriptor.digest),
            stored_media_type: descriptor.media_type,
        });
    }
    Ok(SourceImage {
        config,
        config_digest,
        layers,
    })
}

/// The image of a classic export read only part way: its config (named after the image id,
/// which it must hash to) gives the layers in order. Each layer's entry is `diff:<diff id>`,
/// a key the caller fills with what it knows of that layer.
pub(crate) fn source_image_from_config(
    config: Vec<u8>,
    image_id: &str,
) -> Result<SourceImage, LayoutProblem> {
    let config_digest = sha256_digest(&config);
    if config_digest != image_id {
        return Err(problem(format!(
            "the exported config hashes to {config_digest}, not to the image id {image_id}"
        )));
    }
    let layers = read_diff_ids(&config)?
        .into_iter()
        .map(|diff_id| SourceLayer {
            entry: format!("diff:{diff_id}"),
            diff_id,
            stored_digest: None,
            stored_media_type: None,
        })
        .collect();
    Ok(SourceImage {
        config,
        config_digest,
        layers,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::docker::image_source::media_types::{OCI_CONFIG, OCI_MANIFEST};

    fn digest_of(text: &str) -> String {
        sha256_digest(text.as_bytes())
    }

    fn config_json(diff_ids: &[&str]) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({
            "architecture": "amd64", "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
        }))
        .unwrap()
    }

    fn classic_metadata() -> (ArchiveMetadata, String, [String; 2]) {
        let d1 = digest_of("layer one");
        let d2 = digest_of("layer two");
        let config = config_json(&[&d1, &d2, &d1]);
        let config_digest = sha256_digest(&config);
        let config_name = format!("{}.json", sha256_hex(&config_digest).unwrap());
        let mut metadata = ArchiveMetadata::default();
        metadata.files.insert(config_name.clone(), config);
        metadata.files.insert(
            "manifest.json".into(),
            serde_json::to_vec(&serde_json::json!([{
                "Config": config_name, "RepoTags": ["app:1"],
                "Layers": ["aaa/layer.tar", "bbb/layer.tar", "ccc/layer.tar"]
            }]))
            .unwrap(),
        );
        metadata.links.insert(
            "ccc/layer.tar".into(),
            resolve_link("ccc/layer.tar", "../aaa/layer.tar"),
        );
        (metadata, config_digest, [d1, d2])
    }

    #[test]
    fn classic_layout_maps_layers_to_diff_ids_and_follows_symlinks() {
        let (metadata, config_digest, [d1, d2]) = classic_metadata();
        let image = read_source_image(&metadata, "linux/amd64").unwrap();
        assert_eq!(image.config_digest, config_digest);
        let layers: Vec<(&str, &str)> = image
            .layers
            .iter()
            .map(|l| (l.entry.as_str(), l.diff_id.as_str()))
            .collect();
        assert_eq!(
            layers,
            vec![
                ("aaa/layer.tar", d1.as_str()),
                ("bbb/layer.tar", d2.as_str()),
                ("aaa/layer.tar", d1.as_str())
            ]
        );
    }

    #[test]
    fn classic_layout_rejects_a_config_that_does_not_match_its_name() {
        let (mut metadata, config_digest, _) = classic_metadata();
        let name = format!("{}.json", sha256_hex(&config_digest).unwrap());
        metadata.files.insert(name, config_json(&[]));
        let err = read_source_image(&metadata, "linux/amd64").unwrap_err();
        assert!(err.0.contains("does not match its name"), "{err}");
    }

    #[test]
    fn classic_layout_rejects_a_layer_count_mismatch() {
        let (mut metadata, _, [d1, _]) = classic_metadata();
        let config = config_json(&[&d1]);
        let name = format!("{}.json", sha256_hex(&sha256_digest(&config)).unwrap());
        metadata.files.insert(name.clone(), config);
        metadata.files.insert(
            "manifest.json".into(),
            serde_json::to_vec(
                &serde_json::json!([{"Config": name, "Layers": ["a/layer.tar", "b/layer.tar"]}]),
            )
            .unwrap(),
        );
        let err = read_source_image(&metadata, "linux/amd64").unwrap_err();
        assert!(err.0.contains("2 layers but the config has 1"), "{err}");
    }

    /// A containerd-store style export: a two-platform index of which only amd64 is present,
    /// and Docker 25's extra manifest.json beside it.
    fn oci_metadata() -> (ArchiveMetadata, String, String) {
        let diff = digest_of("plain tar");
        let config = config_json(&[&diff, &diff]);
        let config_digest = sha256_digest(&config);
        let compressed = digest_of("gzipped");
        let manifest = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": config_digest, "size": config.len()},
            "layers": [
                {"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": diff, "size": 9},
                {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": compressed, "size": 7},
            ]
        }))
        .unwrap();
        let manifest_digest = sha256_digest(&manifest);
        let inner_index = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2, "mediaType": OCI_INDEX,
            "manifests": [
                {"mediaType": OCI_MANIFEST, "digest": digest_of("arm64 manifest"), "size": 1,
                 "platform": {"os": "linux", "architecture": "arm64"}},
                {"mediaType": OCI_MANIFEST, "digest": manifest_digest, "size": manifest.len(),
                 "platform": {"os": "linux", "architecture": "amd64"}},
            ]
        }))
        .unwrap();
        let inner_digest = sha256_digest(&inner_index);
        let index = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "manifests": [{"mediaType": OCI_INDEX, "digest": inner_digest, "size": inner_index.len()}]
        }))
        .unwrap();
        let mut metadata = ArchiveMetadata::default();
        let blob = |d: &str| format!("blobs/sha256/{}", sha256_hex(d).unwrap());
        metadata.files.insert("index.json".into(), index);
        metadata
            .files
            .insert("manifest.json".into(), b"[]".to_vec());
        metadata.files.insert(blob(&inner_digest), inner_index);
        metadata.files.insert(blob(&manifest_digest), manifest);
        metadata.files.insert(blob(&config_digest), config);
        (metadata, diff, compressed)
    }

    #[test]
    fn oci_layout_walks_nested_indexes_to_the_present_manifest() {
        let (metadata, diff, compressed) = oci_metadata();
        let image = read_source_image(&metadata, "linux/amd64").unwrap();
        assert_eq!(image.layers.len(), 2);
        assert_eq!(
            image.layers[0].stored_digest.as_deref(),
            Some(diff.as_str())
        );
        assert_eq!(
            image.layers[1].stored_media_type.as_deref(),
            Some("application/vnd.oci.image.layer.v1.tar+gzip")
        );
        assert_eq!(
            image.layers[1].entry,
            format!("blobs/sha256/{}", sha256_hex(&compressed).unwrap())
        );
    }

    #[test]
    fn oci_layout_verifies_the_config_digest() {
        let (mut metadata, _, _) = oci_metadata();
        let config_path = metadata
            .files
            .iter()
            .find(|(_, v)| v.starts_with(b"{\"architecture\""))
            .map(|(k, _)| k.clone())
            .unwrap();
        metadata.files.insert(config_path, config_json(&[]));
        let err = read_source_image(&metadata, "linux/amd64").unwrap_err();
        assert!(err.0.contains("does not match its digest"), "{err}");
    }

    #[test]
    fn a_partly_read_export_takes_its_layers_from_the_config() {
        let d1 = digest_of("one");
        let config = config_json(&[&d1]);
        let id = sha256_digest(&config);
        let image = source_image_from_config(config.clone(), &id).unwrap();
        assert_eq!(image.layers[0].entry, format!("diff:{d1}"));
        assert!(source_image_from_config(config, &digest_of("other")).is_err());
    }

    #[test]
    fn an_archive_without_metadata_is_not_an_image() {
        let err = read_source_image(&ArchiveMetadata::default(), "linux/amd64").unwrap_err();
        assert!(err.0.contains("neither index.json"), "{err}");
    }

    #[test]
    fn entry_roles_come_from_paths() {
        let hex = "a".repeat(64);
        assert_eq!(
            entry_role(&format!("blobs/sha256/{hex}")),
            EntryRole::Blob {
                digest: format!("sha256:{hex}")
            }
        );
        assert_eq!(
            entry_role("0123/layer.tar"),
            EntryRole::ClassicLayer { dir: "0123".into() }
        );
        assert_eq!(entry_role("manifest.json"), EntryRole::Metadata);
        assert_eq!(entry_role(&format!("{hex}.json")), EntryRole::Metadata);
        assert_eq!(entry_role("0123/json"), EntryRole::Ignored);
        assert_eq!(entry_role("repositories"), EntryRole::Ignored);
        assert_eq!(entry_role("blobs/sha256/short"), EntryRole::Ignored);
    }

    #[test]
    fn paths_and_links_normalize() {
        assert_eq!(normalize_entry_path("./manifest.json"), "manifest.json");
        assert_eq!(normalize_entry_path("a//b/./c"), "a/b/c");
        assert_eq!(resolve_link("b/layer.tar", "../a/layer.tar"), "a/layer.tar");
        assert_eq!(resolve_link("b/layer.tar", "/a/layer.tar"), "a/layer.tar");
    }

    #[test]
    fn sniffing_tells_compressed_json_and_tar_apart() {
        assert_eq!(sniff_content(&[0x1f, 0x8b, 8, 0]), ContentKind::Gzip);
        assert_eq!(sniff_content(&[0x28, 0xb5, 0x2f, 0xfd]), ContentKind::Zstd);
        assert_eq!(sniff_content(b"  {\"a\":1}"), ContentKind::Json);
        assert_eq!(sniff_content(&[0u8; 1024]), ContentKind::Tar);
        assert_eq!(
            sniff_content(b"BZh91AY"),
            ContentKind::UnsupportedCompression
        );
    }
}
