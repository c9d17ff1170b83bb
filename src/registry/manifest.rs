//! The manifest shipit writes: the pushed config and layers, in the format the push block asks
//! for, serialized the same way every time.

use serde::Serialize;

use super::push_config::{Compression, ManifestFormat};
use crate::docker::image_source::archive_layout::LayoutProblem;
use crate::docker::image_source::media_types::{
    DOCKER_CONFIG, DOCKER_MANIFEST, OCI_CONFIG, OCI_MANIFEST,
};

/// A blob as it goes into the pushed manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct BlobDescriptor {
    pub media_type: String,
    pub digest: String,
    pub size: u64,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ImageManifest<'a> {
    schema_version: u32,
    media_type: &'a str,
    config: &'a BlobDescriptor,
    layers: &'a [BlobDescriptor],
}

/// Media type of a compressed layer in the chosen manifest format.
pub(crate) fn layer_media_type(
    format: ManifestFormat,
    compression: Compression,
) -> Result<&'static str, LayoutProblem> {
    match (format, compression) {
        (ManifestFormat::Oci, Compression::Gzip) => {
            Ok("application/vnd.oci.image.layer.v1.tar+gzip")
        }
        (ManifestFormat::Oci, Compression::Zstd) => {
            Ok("application/vnd.oci.image.layer.v1.tar+zstd")
        }
        (ManifestFormat::Docker, Compression::Gzip) => {
            Ok("application/vnd.docker.image.rootfs.diff.tar.gzip")
        }
        (ManifestFormat::Docker, Compression::Zstd) => Err(LayoutProblem(
            "the image has a zstd-compressed layer, which the Docker v2 manifest cannot \
             describe; use format: oci"
                .into(),
        )),
    }
}

pub(crate) fn config_media_type(format: ManifestFormat) -> &'static str {
    match format {
        ManifestFormat::Oci => OCI_CONFIG,
        ManifestFormat::Docker => DOCKER_CONFIG,
    }
}

pub(crate) fn manifest_media_type(format: ManifestFormat) -> &'static str {
    match format {
        ManifestFormat::Oci => OCI_MANIFEST,
        ManifestFormat::Docker => DOCKER_MANIFEST,
    }
}

/// The manifest bytes shipit pushes. Serialized the same way every time, so the same image
/// always yields the same manifest digest and a rerun can find it in the registry.
pub(crate) fn build_manifest(
    format: ManifestFormat,
    config: &BlobDescriptor,
    layers: &[BlobDescriptor],
) -> Vec<u8> {
    let manifest = ImageManifest {
        schema_version: 2,
        media_type: manifest_media_type(format),
        config,
        layers,
    };
    // Serializing plain structs of strings and numbers cannot fail.
    serde_json::to_vec(&manifest).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::docker::image_source::digest::sha256_digest;

    fn digest_of(text: &str) -> String {
        sha256_digest(text.as_bytes())
    }

    #[test]
    fn manifests_are_stable_and_use_the_format_media_types() {
        let config = BlobDescriptor {
            media_type: config_media_type(ManifestFormat::Docker).into(),
            digest: digest_of("c"),
            size: 1,
        };
        let layer = BlobDescriptor {
            media_type: layer_media_type(ManifestFormat::Docker, Compression::Gzip)
                .unwrap()
                .into(),
            digest: digest_of("l"),
            size: 2,
        };
        let first = build_manifest(
            ManifestFormat::Docker,
            &config,
            std::slice::from_ref(&layer),
        );
        let again = build_manifest(
            ManifestFormat::Docker,
            &config,
            std::slice::from_ref(&layer),
        );
        assert_eq!(first, again);
        let value: serde_json::Value = serde_json::from_slice(&first).unwrap();
        assert_eq!(value["schemaVersion"], 2);
        assert_eq!(value["mediaType"], DOCKER_MANIFEST);
        assert_eq!(value["layers"][0]["size"], 2);
        assert!(layer_media_type(ManifestFormat::Docker, Compression::Zstd).is_err());
    }
}
