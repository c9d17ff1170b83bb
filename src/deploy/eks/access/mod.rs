//! Reaching the cluster an `eks:` target deploys to. With `cluster`, EKS says where it is
//! (`DescribeCluster`: endpoint and CA) and shipit makes the bearer token itself from the run's
//! AWS credentials, as `aws eks get-token` does, renewing it while the deploy runs; without, a
//! kubeconfig and its context say everything.
//!
//! Files: `eks_cluster` (DescribeCluster), `sts_presign` (the token), `token_source` (its
//! renewal), `eks_client` (the kube client of an EKS cluster), `kubeconfig`.

mod eks_client;
mod eks_cluster;
mod kubeconfig;
mod sts_presign;
mod token_source;

use std::path::Path;
use std::sync::Arc;

use crate::credentials::aws::AwsIdentity;
use crate::deploy::eks::EksDeployError;
use crate::pipeline::model::EksTarget;

pub use eks_cluster::{EksCluster, describe_eks_cluster};

use eks_cluster::EksApi;
use token_source::EksTokenSource;

/// A kube client for the target, and a name for the cluster (EKS name or kubeconfig context)
/// for messages and results.
pub struct ClusterAccess {
    pub client: kube::Client,
    pub cluster: String,
    /// Where manifests that name no namespace go: the target's `namespace`.
    pub default_namespace: String,
}

impl std::fmt::Debug for ClusterAccess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterAccess")
            .field("cluster", &self.cluster)
            .field("default_namespace", &self.default_namespace)
            .finish_non_exhaustive()
    }
}

/// A client of the target's cluster. For EKS, the cluster is described and a first token made
/// now, so that a missing cluster or missing credentials fail here rather than at the first
/// request; nothing is sent to the cluster itself.
pub async fn connect(
    target: &EksTarget,
    base_dir: &Path,
    identity: &AwsIdentity,
) -> Result<ClusterAccess, EksDeployError> {
    let Some(name) = target.cluster.as_deref() else {
        return kubeconfig::kubeconfig_access(target, base_dir).await;
    };
    let api = EksApi::new(target, identity).await?;
    let cluster = api.describe(name).await?;
    let credentials = api.credentials.clone().ok_or_else(|| {
        EksDeployError::config(format!(
            "no AWS credentials to sign the token of the EKS cluster `{name}`"
        ))
        .with_hint("set `aws.role_arn` in the pipeline, AWS_PROFILE, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY")
    })?;
    let tokens = Arc::new(EksTokenSource::new(name, &api.region, credentials));
    tokens
        .authorization()
        .await
        .map_err(|err| EksDeployError::config(err.to_string()))?;
    let client = eks_client::eks_client(&cluster, &target.namespace, tokens)?;
    Ok(ClusterAccess {
        client,
        cluster: name.to_owned(),
        default_namespace: target.namespace.clone(),
    })
}
