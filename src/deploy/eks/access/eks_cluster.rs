//! What EKS says of a cluster shipit deploys to: its API endpoint and the CA that signed the
//! endpoint's certificate (`DescribeCluster`), read through the run's shared AWS configuration.

use aws_credential_types::provider::SharedCredentialsProvider;
use aws_sdk_eks::error::SdkError;
use aws_sdk_eks::operation::describe_cluster::DescribeClusterError;
use aws_sdk_eks::types::ClusterStatus;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use crate::credentials::aws::{AwsIdentity, AwsSettings, load_aws_config};
use crate::deploy::aws_failure::AwsFailure;
use crate::deploy::eks::EksDeployError;
use crate::pipeline::model::EksTarget;

/// An EKS cluster as `DescribeCluster` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EksCluster {
    pub name: String,
    pub region: String,
    /// The API server's URL (`https://….eks.amazonaws.com`).
    pub endpoint: String,
    /// The cluster's CA, decoded from `certificateAuthority.data` (PEM, as EKS has it).
    pub certificate_authority: Vec<u8>,
}

/// The EKS API of the target's region and endpoint, and the credentials its calls (and the
/// cluster tokens) are signed with.
pub(crate) struct EksApi {
    client: aws_sdk_eks::Client,
    pub region: String,
    pub credentials: Option<SharedCredentialsProvider>,
}

impl EksApi {
    pub(crate) async fn new(
        target: &EksTarget,
        identity: &AwsIdentity,
    ) -> Result<EksApi, EksDeployError> {
        let settings = AwsSettings {
            region: target.region.as_deref(),
            endpoint_url: target.endpoint_url.as_deref(),
            region_setting: "`eks.region` in the deploy target, or the `aws:` block's region",
        };
        let config = load_aws_config(settings, identity)
            .await
            .map_err(|err| EksDeployError::config(err.to_string()))?;
        Ok(EksApi {
            client: aws_sdk_eks::Client::new(&config.sdk),
            credentials: config.sdk.credentials_provider(),
            region: config.region,
        })
    }

    /// The cluster's endpoint and CA; a cluster that cannot serve a deploy (being created,
    /// deleted, failed) is a configuration error saying so.
    pub(crate) async fn describe(&self, name: &str) -> Result<EksCluster, EksDeployError> {
        let output = self
            .client
            .describe_cluster()
            .name(name)
            .send()
            .await
            .map_err(|err| self.describe_failure(name, &err))?;
        let cluster = output.cluster.ok_or_else(|| {
            EksDeployError::remote(format!(
                "eks:DescribeCluster answered without the cluster `{name}`"
            ))
        })?;
        let status = cluster.status.clone();
        // UPDATING (a version upgrade, a configuration change) keeps the API server serving.
        if !matches!(
            status,
            Some(ClusterStatus::Active | ClusterStatus::Updating)
        ) {
            let status = status
                .as_ref()
                .map_or("without a status", ClusterStatus::as_str);
            return Err(EksDeployError::config(format!(
                "the EKS cluster `{name}` in {} is {status}, not ACTIVE",
                self.region
            ))
            .with_hint("deploy once the cluster is ACTIVE (`aws eks describe-cluster`)"));
        }
        let endpoint = cluster.endpoint.filter(|e| !e.is_empty()).ok_or_else(|| {
            EksDeployError::remote(format!("the EKS cluster `{name}` has no API endpoint yet"))
        })?;
        let data = cluster
            .certificate_authority
            .and_then(|ca| ca.data)
            .ok_or_else(|| {
                EksDeployError::remote(format!(
                    "the EKS cluster `{name}` has no certificate authority yet"
                ))
            })?;
        let certificate_authority = STANDARD.decode(data.trim()).map_err(|err| {
            EksDeployError::remote(format!(
                "the certificate authority of the EKS cluster `{name}` is not base64: {err}"
            ))
        })?;
        Ok(EksCluster {
            name: name.to_owned(),
            region: self.region.clone(),
            endpoint,
            certificate_authority,
        })
    }

    fn describe_failure<R: std::fmt::Debug>(
        &self,
        name: &str,
        err: &SdkError<DescribeClusterError, R>,
    ) -> EksDeployError {
        let region = &self.region;
        if let Some(DescribeClusterError::ResourceNotFoundException(_)) = err.as_service_error() {
            return EksDeployError::config(format!(
                "there is no EKS cluster `{name}` in {region}"
            ))
            .with_hint(format!(
                "check `eks.cluster` and `eks.region` (`aws eks list-clusters --region {region}`)"
            ));
        }
        AwsFailure::from_sdk("eks:DescribeCluster", err)
            .explain()
            .into()
    }
}

/// `DescribeCluster` of the target's `cluster`: its endpoint and CA.
pub async fn describe_eks_cluster(
    target: &EksTarget,
    identity: &AwsIdentity,
) -> Result<EksCluster, EksDeployError> {
    let name = target.cluster.as_deref().ok_or_else(|| {
        EksDeployError::config("the deploy target names no EKS cluster (`eks.cluster`)")
    })?;
    EksApi::new(target, identity).await?.describe(name).await
}
