//! What an EKS deploy is asked to do, resolved: the target's configuration with every
//! expression replaced, the manifest documents it applies, and the image each container runs.

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::pipeline::model::EksTarget;

#[derive(Debug, Clone)]
pub struct EksDeploySpec {
    /// The pipeline's name (labels, annotations).
    pub pipeline: String,
    /// The deploy target's name.
    pub target: String,
    /// The run deploying.
    pub run_id: String,
    /// The commit deployed, when the pipeline lives in a git repository.
    pub git_sha: Option<String>,
    pub config: EksTarget,
    /// The folder relative paths of the configuration (`kubeconfig`) start from.
    pub base_dir: PathBuf,
    /// Every document of the manifests, in file order, parsed and with the `${{ … }}` in its
    /// string values resolved (after parsing, so a value can never break the YAML).
    pub documents: Vec<ManifestDocument>,
    /// Container name → the digest-pinned reference it runs (`registry/repo@sha256:…`).
    pub images: BTreeMap<String, String>,
    /// Blue/green: the Job of `smoke_check.job`, read and resolved like the manifests.
    pub smoke_job: Option<ManifestDocument>,
}

/// One document of a manifest file.
#[derive(Debug, Clone, PartialEq)]
pub struct ManifestDocument {
    /// Where it comes from, for messages: `k8s/web.yaml` and its index in the file (from 1).
    pub file: String,
    pub index: usize,
    /// The object, as JSON.
    pub object: serde_json::Value,
}
