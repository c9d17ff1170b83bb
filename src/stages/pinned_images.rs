//! The digest-pinned image each container of a cluster deploy (ECS, EKS) runs: from the push
//! stages' outputs when the deploy runs, from the plan's values (known digests, or placeholders)
//! when it is only looked at.

use std::collections::BTreeMap;

use super::{ImageArtifact, Outputs, StageFailure};
use crate::pipeline::interpolate::Values;
use crate::plan::StageId;

/// Where a deploy's image references come from.
pub(super) enum ImageRefs<'a> {
    /// The outputs of the stages the deploy needs: a pushed image's `registry/repo@digest`.
    Pushed(&'a BTreeMap<StageId, Outputs>),
    /// A plan's values: the reference of an image a skipped push reuses, else a placeholder.
    Planned(&'a Values),
}

impl ImageRefs<'_> {
    fn reference(&self, image: &str) -> Option<String> {
        match self {
            ImageRefs::Pushed(upstream) => ImageArtifact::of_image(image, upstream)
                .filter(|artifact| artifact.reference.contains("@sha256:"))
                .map(|artifact| artifact.reference),
            ImageRefs::Planned(values) => values
                .images
                .get(image)
                .and_then(|fields| fields.get("ref"))
                .cloned(),
        }
    }
}

/// Container name → the reference it runs, for `containers` (container → image key).
pub(super) fn pinned_images(
    target: &str,
    containers: BTreeMap<&str, &str>,
    refs: &ImageRefs<'_>,
) -> Result<BTreeMap<String, String>, StageFailure> {
    containers
        .into_iter()
        .map(|(container, image)| {
            let reference = refs.reference(image).ok_or_else(|| {
                StageFailure::failed(format!(
                    "deploy:{target} has no pushed image `{image}` for container `{container}`: push:{image} recorded no digest"
                ))
            })?;
            Ok((container.to_owned(), reference))
        })
        .collect()
}
