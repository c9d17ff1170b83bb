//! The `eks:` deploy target: applies Kubernetes manifests with server-side apply (field manager
//! `shipit`), the target's containers pinned to the pushed digests, and gates every workload
//! applied on its rollout the way `kubectl rollout status` does, watching the new pods for
//! what fails a rollout early (crash loops, image pulls, readiness that never comes), rolling
//! back as `kubectl rollout undo` does.
//!
//! Files: `spec` (what a deploy is asked to do), `access` (reaching the cluster: EKS or a
//! kubeconfig), `outcome` (the checkpoint a resume re-attaches from, and the result),
//! `observer` (progress and checkpoints out of the deploy), `error`.

mod access;
mod error;
mod observer;
mod outcome;
mod spec;

pub use access::{ClusterAccess, EksCluster, connect, describe_eks_cluster};
pub use error::{EksDeployError, EksErrorKind};
pub use observer::EksObserver;
pub use outcome::{AppliedWorkload, EksCheckpoint, EksDeployOutcome, WorkloadOutcome};
pub use spec::{EksDeploySpec, ManifestDocument};
