//! What each stage kind records, as types. The journal keeps a stage's outputs as one JSON
//! object (so `shipit show`, the JSON result and journals of earlier versions read them as
//! they are); these types are the only code that knows its keys.

use std::collections::BTreeMap;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::Outputs;
use crate::plan::StageId;

/// A typed view of a stage's outputs.
pub trait StageOutputs: Serialize + DeserializeOwned {
    /// Reads the outputs back from the journal; `None` when they are not (all) there.
    fn from_outputs(outputs: &Outputs) -> Option<Self> {
        let object: serde_json::Map<String, Value> = outputs
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        serde_json::from_value(Value::Object(object)).ok()
    }

    /// The journal's form: one key per field.
    fn to_outputs(&self) -> Outputs {
        match serde_json::to_value(self) {
            Ok(Value::Object(object)) => object.into_iter().collect(),
            _ => Outputs::new(),
        }
    }
}

/// `build:<image>`: the image the daemon built.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BuiltImage {
    /// The daemon's image id (`sha256:…`, the config digest).
    pub image_id: String,
    /// The local tag, `<pipeline>-<image>:<input digest prefix>`.
    pub local_ref: String,
    #[serde(default)]
    pub size: Option<u64>,
    /// The layers' diff ids, bottom first.
    #[serde(default)]
    pub layers: Vec<String>,
    /// Which builder built it (`buildkit` or `classic`).
    #[serde(default)]
    pub builder: Option<String>,
}

impl StageOutputs for BuiltImage {}

/// `push:<image>`: the manifest the registry holds, pinned by digest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PushedImage {
    /// The manifest digest deploys pin.
    pub digest: String,
    /// `registry/repository@digest`.
    #[serde(rename = "ref")]
    pub reference: String,
    pub registry: String,
    pub repository: String,
    #[serde(default)]
    pub size: u64,
    /// Every reference the push wrote (the digest and each tag).
    #[serde(default)]
    pub refs: Vec<String>,
    /// The daemon's id of the image pushed: a deploy that runs it locally needs it, and a
    /// deploy's upstream holds the push stage, not the build.
    pub image_id: String,
}

impl StageOutputs for PushedImage {}

/// The marker a deploy records before it changes anything, so that a resumed run re-attaches
/// to the deploy it started rather than starting another.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeployAttempt {
    pub started: bool,
}

impl StageOutputs for DeployAttempt {}

/// `deploy:<target>` of a `docker:` target: the containers that run the new version.
impl StageOutputs for crate::deploy::docker::DockerDeployOutcome {}

/// `down:<target>` of a `docker:` target: the containers removed.
impl StageOutputs for crate::deploy::docker::TakeDownOutcome {}

/// `deploy:<target>` of an `ecs:` target, while it runs: what a resume re-attaches to.
impl StageOutputs for crate::deploy::ecs::EcsCheckpoint {}

/// `deploy:<target>` of an `ecs:` target: where the deploy ended (recorded on failure too).
impl StageOutputs for crate::deploy::ecs::EcsDeployOutcome {}

/// `deploy:<target>` of an `eks:` target, while it runs: what a resume re-attaches to.
impl StageOutputs for crate::deploy::eks::EksCheckpoint {}

/// `deploy:<target>` of an `eks:` target: where the deploy ended (recorded on failure too).
impl StageOutputs for crate::deploy::eks::EksDeployOutcome {}

/// The image a deploy runs and what `${{ images.NAME.id|digest|ref }}` resolve to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageArtifact {
    /// The daemon's image id.
    pub id: String,
    /// The registry's manifest digest when the image is pushed, else the image id.
    pub digest: String,
    /// `registry/repository@digest` when pushed, else the local tag.
    pub reference: String,
}

impl ImageArtifact {
    /// The one place that knows which stage's output wins: a pushed manifest's digest and
    /// reference win over the build's image id and local tag, because a cluster pulls from the
    /// registry. Without a push the build's own values stand.
    pub fn resolve(built: Option<&BuiltImage>, pushed: Option<&PushedImage>) -> Option<Self> {
        match (built, pushed) {
            (_, Some(pushed)) => Some(ImageArtifact {
                id: built.map_or_else(|| pushed.image_id.clone(), |b| b.image_id.clone()),
                digest: pushed.digest.clone(),
                reference: pushed.reference.clone(),
            }),
            (Some(built), None) => Some(ImageArtifact {
                id: built.image_id.clone(),
                digest: built.image_id.clone(),
                reference: built.local_ref.clone(),
            }),
            (None, None) => None,
        }
    }

    /// The artifact of image `name` from the outputs of finished stages (a deploy's upstream,
    /// or a run's successful stages).
    pub fn of_image(name: &str, outputs: &BTreeMap<StageId, Outputs>) -> Option<Self> {
        let built = outputs
            .get(&StageId::build(name))
            .and_then(BuiltImage::from_outputs);
        let pushed = outputs
            .get(&StageId::push(name))
            .and_then(PushedImage::from_outputs);
        Self::resolve(built.as_ref(), pushed.as_ref())
    }

    /// The values of `${{ images.NAME.* }}`.
    pub fn expression_values(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            ("id".to_owned(), self.id.clone()),
            ("digest".to_owned(), self.digest.clone()),
            ("ref".to_owned(), self.reference.clone()),
        ])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn built() -> BuiltImage {
        BuiltImage {
            image_id: "sha256:1d".into(),
            local_ref: "shop-web:abc".into(),
            size: Some(10),
            layers: vec!["sha256:l1".into()],
            builder: Some("buildkit".into()),
        }
    }

    fn pushed() -> PushedImage {
        PushedImage {
            digest: "sha256:d1".into(),
            reference: "reg/shop/web@sha256:d1".into(),
            registry: "reg".into(),
            repository: "shop/web".into(),
            size: 10,
            refs: vec!["reg/shop/web:latest".into()],
            image_id: "sha256:1d".into(),
        }
    }

    #[test]
    fn a_pushed_digest_and_reference_win_over_the_builds() {
        let artifact = ImageArtifact::resolve(Some(&built()), Some(&pushed())).unwrap();
        assert_eq!(artifact.id, "sha256:1d");
        assert_eq!(artifact.digest, "sha256:d1");
        assert_eq!(artifact.reference, "reg/shop/web@sha256:d1");
    }

    #[test]
    fn without_a_push_the_build_gives_id_digest_and_reference() {
        let artifact = ImageArtifact::resolve(Some(&built()), None).unwrap();
        assert_eq!(artifact.digest, "sha256:1d");
        assert_eq!(artifact.reference, "shop-web:abc");
        assert_eq!(ImageArtifact::resolve(None, None), None);
    }

    #[test]
    fn a_deploy_sees_the_image_id_through_the_push_stage_alone() {
        let upstream = BTreeMap::from([(StageId::push("web"), pushed().to_outputs())]);
        let artifact = ImageArtifact::of_image("web", &upstream).unwrap();
        assert_eq!(artifact.id, "sha256:1d");
        assert_eq!(artifact.digest, "sha256:d1");
    }

    #[test]
    fn outputs_keep_the_journal_keys_of_earlier_versions() {
        let outputs = pushed().to_outputs();
        assert_eq!(outputs["ref"], "reg/shop/web@sha256:d1");
        assert_eq!(outputs["digest"], "sha256:d1");
        assert_eq!(PushedImage::from_outputs(&outputs), Some(pushed()));
        let outputs = built().to_outputs();
        assert_eq!(
            outputs.keys().collect::<Vec<_>>(),
            ["builder", "image_id", "layers", "local_ref", "size"]
        );
        assert_eq!(BuiltImage::from_outputs(&Outputs::new()), None);
    }
}
