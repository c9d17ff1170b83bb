//! Whether a push has every layer its manifest needs: what the reading passes produced,
//! matched against the layers the image declares, in order.

use std::collections::{HashMap, HashSet};

use super::layer_cache::CachedLayer;
use super::manifest::{BlobDescriptor, layer_media_type};
use super::pass_result::LayerOutcome;
use super::push_config::{Compression, ManifestFormat};
use crate::docker::image_source::archive_layout::{LayoutProblem, SourceImage};

/// A layer as it goes into the manifest, with what the cache should remember about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AssembledLayer {
    pub descriptor: BlobDescriptor,
    pub diff_id: String,
    pub compression: Compression,
    pub uncompressed_size: Option<u64>,
}

/// The manifest's layers, or the entries a second pass must pack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Assembly {
    Complete(Vec<AssembledLayer>),
    NeedsPass(HashSet<String>),
}

/// Matches what the passes produced against the layers the image declares. Pure: the only
/// place that decides whether the push has every layer it needs.
pub(crate) fn assemble_layers(
    image: &SourceImage,
    outcomes: &HashMap<String, LayerOutcome>,
    present: &HashMap<String, CachedLayer>,
    format: ManifestFormat,
    compression: Compression,
) -> Result<Assembly, LayoutProblem> {
    let mut layers = Vec::with_capacity(image.layers.len());
    let mut missing = HashSet::new();
    let check_diff = |actual: &str, expected: &str, entry: &str| {
        if actual == expected {
            Ok(())
        } else {
            Err(LayoutProblem(format!(
                "layer {entry} hashes to {actual} but the image config says {expected}"
            )))
        }
    };
    let from_cache =
        |cached: &CachedLayer, diff_id: &str| -> Result<AssembledLayer, LayoutProblem> {
            Ok(AssembledLayer {
                descriptor: BlobDescriptor {
                    media_type: layer_media_type(format, cached.compression)?.to_string(),
                    digest: cached.digest.clone(),
                    size: cached.size,
                },
                diff_id: diff_id.to_string(),
                compression: cached.compression,
                uncompressed_size: cached.uncompressed_size,
            })
        };
    for (index, layer) in image.layers.iter().enumerate() {
        let entry = &layer.entry;
        let outcome = outcomes.get(entry).ok_or_else(|| {
            LayoutProblem(format!(
                "layer {} ({entry}) is not in the archive",
                index + 1
            ))
        })?;
        match outcome {
            LayerOutcome::Packed {
                diff_id,
                uncompressed_size,
                digest,
                size,
            } => {
                check_diff(diff_id, &layer.diff_id, entry)?;
                layers.push(AssembledLayer {
                    descriptor: BlobDescriptor {
                        media_type: layer_media_type(format, compression)?.to_string(),
                        digest: digest.clone(),
                        size: *size,
                    },
                    diff_id: diff_id.clone(),
                    compression,
                    uncompressed_size: Some(*uncompressed_size),
                });
            }
            LayerOutcome::Verified { diff_id, .. } => {
                check_diff(diff_id, &layer.diff_id, entry)?;
                let cached = present.get(diff_id).ok_or_else(|| {
                    LayoutProblem(format!("layer {diff_id} was verified but is not known"))
                })?;
                layers.push(from_cache(cached, diff_id)?);
            }
            LayerOutcome::Mispredicted { diff_id, .. } => {
                check_diff(diff_id, &layer.diff_id, entry)?;
                match present.get(diff_id) {
                    Some(cached) => layers.push(from_cache(cached, diff_id)?),
                    None => {
                        missing.insert(entry.clone());
                    }
                }
            }
            LayerOutcome::Stored {
                digest,
                size,
                compression: stored,
            } => {
                if let Some(expected) = &layer.stored_digest
                    && expected != digest
                {
                    return Err(LayoutProblem(format!(
                        "layer {entry} is {digest}, its manifest says {expected}"
                    )));
                }
                layers.push(AssembledLayer {
                    descriptor: BlobDescriptor {
                        media_type: layer_media_type(format, *stored)?.to_string(),
                        digest: digest.clone(),
                        size: *size,
                    },
                    diff_id: layer.diff_id.clone(),
                    compression: *stored,
                    uncompressed_size: None,
                });
            }
            LayerOutcome::Skipped => {
                missing.insert(entry.clone());
            }
        }
    }
    if missing.is_empty() {
        Ok(Assembly::Complete(layers))
    } else {
        Ok(Assembly::NeedsPass(missing))
    }
}

/// Layers already in the registry, as outcomes keyed by diff id like the packed ones.
pub(crate) fn add_present_layers(
    outcomes: &mut HashMap<String, LayerOutcome>,
    present: &HashMap<String, CachedLayer>,
) {
    for (diff_id, cached) in present {
        outcomes
            .entry(format!("diff:{diff_id}"))
            .or_insert_with(|| LayerOutcome::Verified {
                diff_id: diff_id.clone(),
                uncompressed_size: cached.uncompressed_size.unwrap_or(0),
            });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::docker::image_source::archive_layout::SourceLayer;
    use crate::docker::image_source::digest::sha256_digest;

    fn image(layers: &[(&str, &str, Option<&str>)]) -> SourceImage {
        SourceImage {
            config: b"{}".to_vec(),
            config_digest: sha256_digest(b"{}"),
            layers: layers
                .iter()
                .map(|(entry, diff_id, stored)| SourceLayer {
                    entry: entry.to_string(),
                    diff_id: diff_id.to_string(),
                    stored_digest: stored.map(str::to_string),
                    stored_media_type: None,
                })
                .collect(),
        }
    }

    fn cached(digest: &str) -> CachedLayer {
        CachedLayer {
            digest: digest.into(),
            size: 5,
            compression: Compression::Gzip,
            uncompressed_size: Some(9),
            repositories: vec![],
            last_used: 0,
        }
    }

    fn assemble(
        image: &SourceImage,
        outcomes: &[(&str, LayerOutcome)],
        present: &[(&str, &str)],
    ) -> Result<Assembly, LayoutProblem> {
        let outcomes = outcomes
            .iter()
            .map(|(entry, outcome)| (entry.to_string(), outcome.clone()))
            .collect();
        let present = present
            .iter()
            .map(|(diff_id, digest)| (diff_id.to_string(), cached(digest)))
            .collect();
        assemble_layers(
            image,
            &outcomes,
            &present,
            ManifestFormat::Oci,
            Compression::Gzip,
        )
    }

    #[test]
    fn packed_verified_and_stored_layers_keep_their_order() {
        let image = image(&[
            ("a/layer.tar", "sha256:d1", None),
            ("b/layer.tar", "sha256:d2", None),
            ("blobs/sha256/c", "sha256:d3", Some("sha256:c3")),
        ]);
        let assembly = assemble(
            &image,
            &[
                (
                    "a/layer.tar",
                    LayerOutcome::Packed {
                        diff_id: "sha256:d1".into(),
                        uncompressed_size: 10,
                        digest: "sha256:c1".into(),
                        size: 4,
                    },
                ),
                (
                    "b/layer.tar",
                    LayerOutcome::Verified {
                        diff_id: "sha256:d2".into(),
                        uncompressed_size: 9,
                    },
                ),
                (
                    "blobs/sha256/c",
                    LayerOutcome::Stored {
                        digest: "sha256:c3".into(),
                        size: 7,
                        compression: Compression::Zstd,
                    },
                ),
            ],
            &[("sha256:d2", "sha256:c2")],
        )
        .unwrap();
        let Assembly::Complete(layers) = assembly else {
            panic!("expected a complete assembly");
        };
        let digests: Vec<&str> = layers
            .iter()
            .map(|l| l.descriptor.digest.as_str())
            .collect();
        assert_eq!(digests, vec!["sha256:c1", "sha256:c2", "sha256:c3"]);
        assert_eq!(
            layers[2].descriptor.media_type,
            "application/vnd.oci.image.layer.v1.tar+zstd"
        );
    }

    #[test]
    fn a_layer_that_hashes_to_another_diff_id_is_refused() {
        let image = image(&[("a/layer.tar", "sha256:d1", None)]);
        let err = assemble(
            &image,
            &[(
                "a/layer.tar",
                LayerOutcome::Packed {
                    diff_id: "sha256:other".into(),
                    uncompressed_size: 1,
                    digest: "sha256:c".into(),
                    size: 1,
                },
            )],
            &[],
        )
        .unwrap_err();
        assert!(err.0.contains("the image config says sha256:d1"), "{err}");
    }

    #[test]
    fn a_wrong_guess_uses_the_cache_when_it_can_and_asks_for_a_pass_otherwise() {
        let image = image(&[
            ("a/layer.tar", "sha256:d1", None),
            ("b/layer.tar", "sha256:d2", None),
        ]);
        let wrong = |diff: &str| LayerOutcome::Mispredicted {
            diff_id: diff.into(),
            uncompressed_size: 1,
        };
        let assembly = assemble(
            &image,
            &[
                ("a/layer.tar", wrong("sha256:d1")),
                ("b/layer.tar", wrong("sha256:d2")),
            ],
            &[("sha256:d1", "sha256:c1")],
        )
        .unwrap();
        assert_eq!(
            assembly,
            Assembly::NeedsPass(HashSet::from(["b/layer.tar".to_string()]))
        );
    }

    #[test]
    fn missing_entries_and_mismatched_stored_digests_are_refused() {
        let image1 = image(&[("a/layer.tar", "sha256:d1", None)]);
        assert!(
            assemble(&image1, &[], &[])
                .unwrap_err()
                .0
                .contains("not in the archive")
        );
        let image2 = image(&[("blobs/sha256/c", "sha256:d1", Some("sha256:expected"))]);
        let err = assemble(
            &image2,
            &[(
                "blobs/sha256/c",
                LayerOutcome::Stored {
                    digest: "sha256:actual".into(),
                    size: 1,
                    compression: Compression::Gzip,
                },
            )],
            &[],
        )
        .unwrap_err();
        assert!(err.0.contains("its manifest says sha256:expected"), "{err}");
    }
}
