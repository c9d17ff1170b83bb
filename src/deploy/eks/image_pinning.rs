//! Which image each container of the manifests runs: every container (or init container)
//! named in the deploy's images, in every pod template, gets the pushed digest.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use super::error::EksDeployError;

/// The pod spec inside an object of `kind`, where it has one.
pub(crate) fn pod_spec_mut<'a>(kind: &str, object: &'a mut Value) -> Option<&'a mut Value> {
    let path: &[&str] = match kind {
        "Pod" => &["spec"],
        "Deployment" | "StatefulSet" | "DaemonSet" | "ReplicaSet" | "Job" => {
            &["spec", "template", "spec"]
        }
        "CronJob" => &["spec", "jobTemplate", "spec", "template", "spec"],
        _ => return None,
    };
    path.iter()
        .try_fold(object, |value, key| value.get_mut(*key))
        .filter(|spec| spec.is_object())
}

/// Sets the image of every container named in `images` in every pod template of `objects`.
/// A name no pod template has is a mistake in the pipeline (a rename, a typo): refused,
/// naming the containers that exist.
pub(crate) fn pin_images(
    objects: &mut [Value],
    images: &BTreeMap<String, String>,
) -> Result<(), EksDeployError> {
    let mut found: BTreeSet<String> = BTreeSet::new();
    let mut pinned: BTreeSet<&str> = BTreeSet::new();
    for object in objects.iter_mut() {
        let kind = object
            .get("kind")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let Some(pod_spec) = pod_spec_mut(&kind, object) else {
            continue;
        };
        for list in ["initContainers", "containers"] {
            let Some(containers) = pod_spec.get_mut(list).and_then(Value::as_array_mut) else {
                continue;
            };
            for container in containers {
                let Some(name) = container.get("name").and_then(Value::as_str) else {
                    continue;
                };
                found.insert(name.to_owned());
                if let Some((name, image)) = images.get_key_value(name) {
                    container["image"] = Value::String(image.clone());
                    pinned.insert(name);
                }
            }
        }
    }
    let missing: Vec<&str> = images
        .keys()
        .map(String::as_str)
        .filter(|name| !pinned.contains(name))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let found = if found.is_empty() {
        "no pod template has any container".to_owned()
    } else {
        format!(
            "the manifests' containers are {}",
            found.into_iter().collect::<Vec<_>>().join(", ")
        )
    };
    Err(EksDeployError::config(format!(
        "no pod template in the manifests has a container named {}; {found}",
        missing.join(", ")
    ))
    .with_hint("set the target's `container` (and `containers`) to names the manifests use"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn images(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn deployment() -> Value {
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
            "spec": {"template": {"spec": {
                "initContainers": [{"name": "migrate", "image": "app:latest"}],
                "containers": [{"name": "web", "image": "app:latest"}, {"name": "proxy", "image": "envoy:1.30"}]}}}})
    }

    #[test]
    fn pins_named_containers_and_init_containers_and_leaves_the_others() {
        let mut objects = vec![deployment()];
        pin_images(
            &mut objects,
            &images(&[("web", "r/app@sha256:aa"), ("migrate", "r/app@sha256:aa")]),
        )
        .unwrap();
        let spec = &objects[0]["spec"]["template"]["spec"];
        assert_eq!(spec["containers"][0]["image"], "r/app@sha256:aa");
        assert_eq!(spec["initContainers"][0]["image"], "r/app@sha256:aa");
        assert_eq!(spec["containers"][1]["image"], "envoy:1.30");
    }

    #[test]
    fn pins_every_pod_template_kind_including_cronjobs_and_bare_pods() {
        let mut objects = vec![
            json!({"kind": "CronJob", "spec": {"jobTemplate": {"spec": {"template": {"spec": {"containers": [{"name": "web", "image": "x"}]}}}}}}),
            json!({"kind": "Pod", "spec": {"containers": [{"name": "web", "image": "x"}]}}),
            json!({"kind": "StatefulSet", "spec": {"template": {"spec": {"containers": [{"name": "web", "image": "x"}]}}}}),
        ];
        pin_images(&mut objects, &images(&[("web", "r@sha256:1")])).unwrap();
        assert_eq!(
            objects[0]["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["image"],
            "r@sha256:1"
        );
        assert_eq!(objects[1]["spec"]["containers"][0]["image"], "r@sha256:1");
        assert_eq!(
            objects[2]["spec"]["template"]["spec"]["containers"][0]["image"],
            "r@sha256:1"
        );
    }

    #[test]
    fn a_container_no_template_has_is_a_config_error_naming_those_found() {
        let mut objects = vec![deployment(), json!({"kind": "Service", "spec": {}})];
        let err = pin_images(&mut objects, &images(&[("api", "r@sha256:1")])).unwrap_err();
        assert_eq!(err.kind, crate::deploy::eks::EksErrorKind::Config);
        assert_eq!(
            err.message,
            "no pod template in the manifests has a container named api; the manifests' containers are migrate, proxy, web"
        );
    }

    #[test]
    fn malformed_templates_are_skipped_without_panicking() {
        let mut objects = vec![
            json!({"kind": "Deployment", "spec": {"template": "nonsense"}}),
            json!({"kind": "Deployment", "spec": {"template": {"spec": {"containers": [1, {"image": "x"}]}}}}),
            json!("not even an object"),
        ];
        let err = pin_images(&mut objects, &images(&[("web", "r@sha256:1")])).unwrap_err();
        assert!(err.message.contains("no pod template has any container"));
    }
}
