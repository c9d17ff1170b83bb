//! The defaults the API server fills into an object it stores, so what kubectl and kube-rs
//! read back (and what `kubectl diff` compares) looks like a real cluster's.

use serde_json::{Value, json};

use super::resources::ResourceType;

pub fn apply(resource: &ResourceType, object: &mut Value) {
    match resource.kind {
        "Deployment" => deployment(object),
        "ReplicaSet" => {
            default(&mut object["spec"], "replicas", json!(1));
            pod_spec(&mut object["spec"]["template"]["spec"]);
        }
        "StatefulSet" => {
            let spec = &mut object["spec"];
            default(spec, "replicas", json!(1));
            default(spec, "podManagementPolicy", json!("OrderedReady"));
            default(spec, "revisionHistoryLimit", json!(10));
            default(
                spec,
                "updateStrategy",
                json!({"type": "RollingUpdate", "rollingUpdate": {"partition": 0}}),
            );
            pod_spec(&mut spec["template"]["spec"]);
        }
        "DaemonSet" => {
            let spec = &mut object["spec"];
            default(spec, "revisionHistoryLimit", json!(10));
            default(
                spec,
                "updateStrategy",
                json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}}),
            );
            pod_spec(&mut spec["template"]["spec"]);
        }
        "Pod" => pod_spec(&mut object["spec"]),
        "Job" => {
            for (field, value) in [("backoffLimit", 6), ("completions", 1), ("parallelism", 1)] {
                default(&mut object["spec"], field, json!(value));
            }
            pod_spec(&mut object["spec"]["template"]["spec"]);
        }
        "Service" => service(object),
        "Namespace" => {
            let name = object["metadata"]["name"].clone();
            default(&mut object["metadata"], "labels", json!({}));
            object["metadata"]["labels"]["kubernetes.io/metadata.name"] = name;
            default(&mut object["spec"], "finalizers", json!(["kubernetes"]));
            default(&mut object["status"], "phase", json!("Active"));
        }
        _ => {}
    }
}

fn default(parent: &mut Value, field: &str, value: Value) {
    if !parent.is_object() {
        *parent = json!({});
    }
    if parent.get(field).is_none_or(Value::is_null) {
        parent[field] = value;
    }
}

fn deployment(object: &mut Value) {
    let spec = &mut object["spec"];
    default(spec, "replicas", json!(1));
    default(spec, "revisionHistoryLimit", json!(10));
    default(spec, "progressDeadlineSeconds", json!(600));
    default(spec, "strategy", json!({}));
    default(&mut spec["strategy"], "type", json!("RollingUpdate"));
    if spec["strategy"]["type"] == "RollingUpdate" {
        default(&mut spec["strategy"], "rollingUpdate", json!({}));
        default(
            &mut spec["strategy"]["rollingUpdate"],
            "maxSurge",
            json!("25%"),
        );
        default(
            &mut spec["strategy"]["rollingUpdate"],
            "maxUnavailable",
            json!("25%"),
        );
    }
    default(&mut spec["template"], "metadata", json!({}));
    pod_spec(&mut spec["template"]["spec"]);
}

fn pod_spec(spec: &mut Value) {
    default(spec, "restartPolicy", json!("Always"));
    default(spec, "terminationGracePeriodSeconds", json!(30));
    default(spec, "dnsPolicy", json!("ClusterFirst"));
    default(spec, "securityContext", json!({}));
    default(spec, "schedulerName", json!("default-scheduler"));
    for list in ["initContainers", "containers"] {
        let Some(containers) = spec.get_mut(list).and_then(Value::as_array_mut) else {
            continue;
        };
        for container in containers {
            let image = container["image"].as_str().unwrap_or_default();
            let tag = image.rsplit('/').next().unwrap_or_default();
            let pull = if !tag.contains(':') || tag.ends_with(":latest") {
                "Always"
            } else {
                "IfNotPresent"
            };
            default(container, "imagePullPolicy", json!(pull));
            default(container, "resources", json!({}));
            default(
                container,
                "terminationMessagePath",
                json!("/dev/termination-log"),
            );
            default(container, "terminationMessagePolicy", json!("File"));
            for port in container
                .get_mut("ports")
                .and_then(Value::as_array_mut)
                .into_iter()
                .flatten()
            {
                default(port, "protocol", json!("TCP"));
            }
        }
    }
}

fn service(object: &mut Value) {
    let spec = &mut object["spec"];
    default(spec, "type", json!("ClusterIP"));
    default(spec, "sessionAffinity", json!("None"));
    let octets: [u8; 2] = rand::random();
    let ip = format!("10.96.{}.{}", octets[0], octets[1].max(1));
    default(spec, "clusterIP", json!(ip));
    let cluster_ip = spec["clusterIP"].clone();
    default(spec, "clusterIPs", json!([cluster_ip]));
    default(spec, "ipFamilies", json!(["IPv4"]));
    default(spec, "ipFamilyPolicy", json!("SingleStack"));
    default(spec, "internalTrafficPolicy", json!("Cluster"));
    for port in spec
        .get_mut("ports")
        .and_then(Value::as_array_mut)
        .into_iter()
        .flatten()
    {
        default(port, "protocol", json!("TCP"));
        let number = port["port"].clone();
        default(port, "targetPort", number);
    }
    default(&mut object["status"], "loadBalancer", json!({}));
}
