//! What an EKS deploy records: the checkpoint (journaled as soon as each part exists, so a
//! resumed run re-attaches to the rollout it started instead of applying again) and the
//! outcome (the JSON result's view of the target).

use serde::{Deserialize, Serialize};

/// A workload the deploy applied, and the generation its apply produced: the rollout a resume
/// re-attaches to.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppliedWorkload {
    /// `Deployment`, `StatefulSet` or `DaemonSet`.
    pub kind: String,
    pub namespace: String,
    pub name: String,
    pub generation: i64,
}

/// What a deploy has done so far.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EksCheckpoint {
    /// The digest of what was applied (the documents with the images pinned): the same input
    /// is never applied twice.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applied_digest: Option<String>,
    /// The workloads applied, with the generation to wait for.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub workloads: Vec<AppliedWorkload>,
    /// Blue/green: the slot (`blue` or `green`) this deploy rolls out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slot: Option<String>,
    /// Blue/green: the slot serving when the deploy started (none before the first switch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_slot: Option<String>,
    /// Blue/green: whether the Service selector was switched to `slot`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub switched: bool,
}

/// One workload's rollout, as it ended.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkloadOutcome {
    pub kind: String,
    pub namespace: String,
    pub name: String,
    pub generation: i64,
    /// The Deployment's revision (`deployment.kubernetes.io/revision`) after the rollout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
    /// The new ReplicaSet (Deployments), and the one it replaced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replica_set: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_replica_set: Option<String>,
    pub desired: i64,
    pub updated: i64,
    pub ready: i64,
    pub available: i64,
    /// Whether the rollout completed.
    pub complete: bool,
    /// The ControllerRevision a StatefulSet or DaemonSet completed at (what `shipit rollback`
    /// returns it to).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub controller_revision: Option<String>,
}

/// Where an EKS deploy ended: recorded on success and on failure.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EksDeployOutcome {
    /// The cluster (EKS name, or the kubeconfig context).
    pub cluster: String,
    pub namespace: String,
    /// `rolling` or `blue_green`.
    pub strategy: String,
    /// Every object applied, as `kind/namespace/name`, and which of them changed.
    #[serde(default)]
    pub applied: Vec<String>,
    #[serde(default)]
    pub unchanged: Vec<String>,
    #[serde(default)]
    pub workloads: Vec<WorkloadOutcome>,
    /// Container name → the image reference it runs.
    #[serde(default)]
    pub images: std::collections::BTreeMap<String, String>,
    /// Blue/green: the slot serving after the deploy (the Service selects it), and the one
    /// that served before (kept for `scale_down_delay`, so that a rollback is a selector flip).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slot: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_slot: Option<String>,
    /// Blue/green: whether `previous_slot` was scaled to zero (after `scale_down_delay`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub previous_slot_scaled_down: bool,
    /// Blue/green: what the smoke check saw, when it passed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub smoke_check: Option<String>,
    /// Whether the workloads were returned to their previous pod templates (or the Service to
    /// the previous slot).
    #[serde(default)]
    pub rolled_back: bool,
    /// Why the deploy failed, in full.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<String>,
    /// The last events of the workloads and their new pods, oldest first.
    #[serde(default)]
    pub last_events: Vec<String>,
}
