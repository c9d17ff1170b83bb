//! The `eks:` deploy target: applies Kubernetes manifests with server-side apply (field manager
//! `shipit`), the target's containers pinned to the pushed digests, and gates every workload
//! applied on its rollout the way `kubectl rollout status` does, watching the new pods for
//! what fails a rollout early (crash loops, image pulls, readiness that never comes), rolling
//! back as `kubectl rollout undo` does.
//!
//! Files: `spec` (what a deploy is asked to do), `access` (reaching the cluster: EKS or a
//! kubeconfig), `outcome` (the checkpoint a resume re-attaches from, and the result),
//! `observer` (progress and checkpoints out of the deploy), `error`.
//! Pure: `manifest_parse` (YAML streams into documents), `image_pinning`, `manifests` (apply
//! order, namespaces, marks, digest), `object_diff` (dry run against live), `gate` (kubectl's
//! rollout status), `pods` (new-pod verdicts), `replica_sets` and `controller_revisions`
//! (revisions for undo), `rollback_choice` (which revision an undo returns to),
//! `stateful_set_pods` (the pods a StatefulSet rollback deletes),
//! `workload_verdict` (the one place that decides), `diagnosis` (the explanation),
//! `api_failure` (API refusals mapped to what to do), `blue_green_slots` (which slot serves,
//! which one a deploy goes to, the objects applied for it), `job_verdict` (a smoke-check Job's
//! end).
//! I/O: `cluster_apply` (discovery and server-side apply), `rollout_watch` (the watch),
//! `failure_read` (events and logs), `rollout` (deploy, undo, rollback, still deployed),
//! `blue_green` (the slot deploy, switch, scale-down and rollback), `smoke_check` (HTTP through
//! the service proxy, or a Job),
//! `preflight` (dry run and preview).

mod access;
mod api_failure;
mod blue_green;
mod blue_green_slots;
mod cluster_apply;
mod controller_revisions;
mod diagnosis;
mod error;
mod failure_read;
mod gate;
mod image_pinning;
mod job_verdict;
mod manifest_parse;
mod manifests;
mod object_diff;
mod observer;
mod outcome;
mod pods;
mod preflight;
mod replica_sets;
mod rollback_choice;
mod rollout;
mod rollout_watch;
mod smoke_check;
mod spec;
mod stateful_set_pods;
mod workload_verdict;

pub use access::{ClusterAccess, EksCluster, connect, describe_eks_cluster};
pub use error::{EksDeployError, EksErrorKind};
pub use manifest_parse::parse_manifest;
pub use observer::EksObserver;
pub use outcome::{AppliedWorkload, EksCheckpoint, EksDeployOutcome, WorkloadOutcome};
pub use preflight::{preflight, preview};
pub use rollout::{deploy, roll_back, still_deployed};
pub use spec::{EksDeploySpec, ManifestDocument};
