//! Amazon EKS, as much as shipit reads of it: `DescribeCluster` of the clusters a test seeds.
//! EKS speaks awsRestJson1: the operation is the method and path (`GET /clusters/{name}`), not
//! a target header, so it is routed before the JSON and query protocols are decoded.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};

use super::wire::{AwsError, Request, text, unknown_operation};
use super::world::{World, epoch};
use super::{ACCOUNT, AwsEmulator, REGION};

/// A cluster as a test seeds it.
#[derive(Clone, Debug)]
pub struct EksCluster {
    pub name: String,
    /// The API server's URL, as DescribeCluster reports it.
    pub endpoint: String,
    /// The CA's certificate (PEM); DescribeCluster sends it in base64.
    pub ca_pem: String,
    /// `ACTIVE` unless the test says otherwise.
    pub status: String,
    pub created_at: chrono::DateTime<chrono::Utc>,
}

pub fn cluster_arn(name: &str) -> String {
    format!("arn:aws:eks:{REGION}:{ACCOUNT}:cluster/{name}")
}

/// The EKS operation a REST request names, if any.
pub fn route(method: &http::Method, path: &str) -> Option<Request> {
    let name = path.strip_prefix("/clusters/")?;
    if method != http::Method::GET || name.is_empty() || name.contains('/') {
        return None;
    }
    Some(Request {
        service: "eks",
        operation: "DescribeCluster".into(),
        body: json!({ "name": name }),
    })
}

pub fn handle(world: &World, operation: &str, input: &Value) -> Result<Value, AwsError> {
    match operation {
        "DescribeCluster" => describe_cluster(world, input),
        _ => Err(unknown_operation(operation)),
    }
}

fn describe_cluster(world: &World, input: &Value) -> Result<Value, AwsError> {
    let name = text(input, "name").unwrap_or_default();
    let cluster = world.eks_clusters.get(name).ok_or_else(|| AwsError {
        status: 404,
        code: "ResourceNotFoundException".into(),
        message: format!("No cluster found for name: {name}."),
    })?;
    Ok(json!({
        "cluster": {
            "name": cluster.name,
            "arn": cluster_arn(&cluster.name),
            "createdAt": epoch(cluster.created_at),
            "version": "1.33",
            "endpoint": cluster.endpoint,
            "roleArn": format!("arn:aws:iam::{ACCOUNT}:role/eks-cluster"),
            "status": cluster.status,
            "certificateAuthority": { "data": STANDARD.encode(&cluster.ca_pem) },
            "platformVersion": "eks.1",
            "tags": {},
        }
    }))
}

impl AwsEmulator {
    /// An ACTIVE EKS cluster whose API server is at `endpoint`, its certificate signed by the
    /// CA `ca_pem`.
    pub fn seed_eks_cluster(&self, name: &str, endpoint: &str, ca_pem: &str) {
        self.lock().eks_clusters.insert(
            name.to_owned(),
            EksCluster {
                name: name.to_owned(),
                endpoint: endpoint.to_owned(),
                ca_pem: ca_pem.to_owned(),
                status: "ACTIVE".into(),
                created_at: chrono::Utc::now(),
            },
        );
    }

    /// DescribeCluster reports the seeded cluster in `status` (`CREATING`, `FAILED`, …).
    pub fn set_eks_cluster_status(&self, name: &str, status: &str) {
        if let Some(cluster) = self.lock().eks_clusters.get_mut(name) {
            cluster.status = status.to_owned();
        }
    }
}
