//! Blue/green with plain Deployments, decided on plain data: which slot serves (the Service's
//! live selector says), which one a deploy goes to, and the objects applied for it: the
//! user's Deployment copied as `<name>-<slot>` with the slot label on its selector and pods,
//! the Service kept on the serving slot until the switch, and the preview Service on the new
//! slot.

use std::fmt;

use serde_json::{Map, Value, json};

use super::error::EksDeployError;
use super::manifests::{ObjectKey, PreparedObject};
use crate::pipeline::model::EksBlueGreen;

/// The label that tells the two slots' pods apart; the Service selects one value of it.
pub(crate) const SLOT_LABEL: &str = "shipit.dev/slot";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Slot {
    Blue,
    Green,
}

impl Slot {
    pub(crate) fn other(self) -> Slot {
        match self {
            Slot::Blue => Slot::Green,
            Slot::Green => Slot::Blue,
        }
    }

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Slot::Blue => "blue",
            Slot::Green => "green",
        }
    }

    pub(crate) fn parse(text: &str) -> Option<Slot> {
        match text {
            "blue" => Some(Slot::Blue),
            "green" => Some(Slot::Green),
            _ => None,
        }
    }

    /// The slot's Deployment: `web-blue`.
    pub(crate) fn deployment(self, base: &str) -> String {
        format!("{base}-{}", self.as_str())
    }
}

impl fmt::Display for Slot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a deploy goes: the slot it rolls out, and the one serving until the switch (none on
/// the first blue/green deploy, or when the Service selects no slot yet).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SlotChoice {
    pub(crate) new: Slot,
    pub(crate) serving: Option<Slot>,
}

/// The slot the live Service selects, if it selects one.
pub(crate) fn serving_slot(live_service: Option<&Value>) -> Option<Slot> {
    live_service?
        .pointer("/spec/selector")?
        .get(SLOT_LABEL)?
        .as_str()
        .and_then(Slot::parse)
}

/// The deploy goes to the slot that does not serve; blue first.
pub(crate) fn choose_slot(live_service: Option<&Value>) -> SlotChoice {
    let serving = serving_slot(live_service);
    SlotChoice {
        new: serving.map(Slot::other).unwrap_or(Slot::Blue),
        serving,
    }
}

fn find<'a>(prepared: &'a [PreparedObject], kind: &str, name: &str) -> Option<&'a PreparedObject> {
    prepared
        .iter()
        .find(|p| p.key.kind == kind && p.key.name == name)
}

/// The user's Service of the manifests, which the switch repoints.
pub(crate) fn service<'a>(
    prepared: &'a [PreparedObject],
    config: &EksBlueGreen,
) -> Result<&'a PreparedObject, EksDeployError> {
    find(prepared, "Service", &config.service).ok_or_else(|| {
        EksDeployError::config(format!(
            "blue_green.service: the manifests have no Service named `{}`",
            config.service
        ))
        .with_hint("add the Service to the manifests: shipit owns its selector")
    })
}

fn insert_label(object: &mut Value, pointer: &str, slot: Slot) {
    let Some(map) = object.pointer_mut(pointer) else {
        return;
    };
    if !map.is_object() {
        *map = Value::Object(Map::new());
    }
    if let Some(map) = map.as_object_mut() {
        map.insert(SLOT_LABEL.into(), json!(slot.as_str()));
    }
}

/// The slot's copy of the user's Deployment: renamed, the slot label on its selector and its
/// pod template, so the two slots' ReplicaSets and pods never mix.
pub(crate) fn slot_deployment(deployment: &PreparedObject, slot: Slot) -> PreparedObject {
    let mut object = deployment.object.clone();
    let name = slot.deployment(&deployment.key.name);
    object["metadata"]["name"] = json!(name);
    if object.pointer("/metadata/labels").is_none() {
        object["metadata"]["labels"] = json!({});
    }
    insert_label(&mut object, "/metadata/labels", slot);
    if object.pointer("/spec/selector/matchLabels").is_none() {
        object["spec"]["selector"]["matchLabels"] = json!({});
    }
    insert_label(&mut object, "/spec/selector/matchLabels", slot);
    if object.pointer("/spec/template/metadata/labels").is_none() {
        object["spec"]["template"]["metadata"]["labels"] = json!({});
    }
    insert_label(&mut object, "/spec/template/metadata/labels", slot);
    PreparedObject {
        key: ObjectKey {
            name,
            ..deployment.key.clone()
        },
        source: deployment.source.clone(),
        object,
    }
}

/// Whether `object` is one of the slot Deployments. They are shipit's own objects: their
/// `replicas`, which a scale-down patches, is taken back by the next apply with force.
pub(crate) fn is_slot_deployment(object: &PreparedObject, config: &EksBlueGreen) -> bool {
    object.key.kind == "Deployment"
        && [Slot::Blue, Slot::Green]
            .iter()
            .any(|slot| object.key.name == slot.deployment(&config.deployment))
}

/// The Service selecting `slot` (or, with `None`, as the manifests select).
pub(crate) fn service_on(service: &PreparedObject, slot: Option<Slot>) -> PreparedObject {
    let mut service = service.clone();
    if let Some(slot) = slot {
        if service.object.pointer("/spec/selector").is_none() {
            service.object["spec"]["selector"] = json!({});
        }
        insert_label(&mut service.object, "/spec/selector", slot);
    }
    service
}

/// The objects a blue/green deploy applies: the manifests with the user's Deployment replaced
/// by the new slot's copy, the Service still on the serving slot, and the preview Service
/// (the manifests' own, or a copy of the Service) on the new slot.
pub(crate) fn slot_objects(
    prepared: &[PreparedObject],
    config: &EksBlueGreen,
    choice: SlotChoice,
) -> Result<Vec<PreparedObject>, EksDeployError> {
    let Some(deployment) = find(prepared, "Deployment", &config.deployment) else {
        return Err(EksDeployError::config(format!(
            "blue_green.deployment: the manifests have no Deployment named `{}`",
            config.deployment
        ))
        .with_hint("name the Deployment that runs as the two slots"));
    };
    let service = service(prepared, config)?;
    let preview = config.preview_service.as_deref().map(|name| {
        let base = find(prepared, "Service", name).unwrap_or(service);
        let mut preview = service_on(base, Some(choice.new));
        preview.key.name = name.to_owned();
        preview.object["metadata"]["name"] = json!(name);
        preview
    });
    let mut objects = Vec::with_capacity(prepared.len() + 1);
    for object in prepared {
        if std::ptr::eq(object, deployment) {
            objects.push(slot_deployment(object, choice.new));
        } else if std::ptr::eq(object, service) {
            objects.push(service_on(object, choice.serving));
            // A preview Service the manifests do not hold is added right after the Service.
            if let Some(preview) = preview.as_ref().filter(|p| {
                p.key.name != service.key.name && find(prepared, "Service", &p.key.name).is_none()
            }) {
                objects.push(preview.clone());
            }
        } else if object.key.kind == "Service"
            && Some(object.key.name.as_str()) == config.preview_service.as_deref()
        {
            if let Some(preview) = &preview {
                objects.push(preview.clone());
            }
        } else {
            objects.push(object.clone());
        }
    }
    Ok(objects)
}

/// The first port of a Service object, for the smoke check's request when none is named.
pub(crate) fn first_port(service: &Value) -> Option<u16> {
    service
        .pointer("/spec/ports/0/port")
        .and_then(Value::as_u64)
        .and_then(|port| u16::try_from(port).ok())
}

/// What a rollback does to the slot it returns to before the Service flips to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SlotReturn {
    /// It still runs the earlier images with every replica ready: only the selector flips.
    Flip,
    /// It holds the earlier images but was scaled down (or is not ready): scale up, gate.
    ScaleUp,
    /// It was redeployed since, or is gone: apply it with the earlier images, gate.
    Reapply,
}

/// `live` is the slot's Deployment; `images` what the earlier run deployed.
pub(crate) fn slot_return(
    live: Option<&Value>,
    images: &std::collections::BTreeMap<String, String>,
) -> SlotReturn {
    let Some(live) = live else {
        return SlotReturn::Reapply;
    };
    let running = template_images(live);
    if !images
        .iter()
        .all(|(container, image)| running.get(container) == Some(image))
    {
        return SlotReturn::Reapply;
    }
    let at = |pointer: &str| live.pointer(pointer).and_then(Value::as_i64).unwrap_or(0);
    let observed = at("/status/observedGeneration") >= at("/metadata/generation");
    if observed && at("/spec/replicas") > 0 && at("/status/readyReplicas") >= at("/spec/replicas") {
        SlotReturn::Flip
    } else {
        SlotReturn::ScaleUp
    }
}

/// The container images a Deployment's pod template runs, by container name.
fn template_images(deployment: &Value) -> std::collections::BTreeMap<String, String> {
    deployment
        .pointer("/spec/template/spec/containers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|c| {
            Some((
                c["name"].as_str()?.to_owned(),
                c["image"].as_str()?.to_owned(),
            ))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deploy::eks::manifests::tests::{spec_with, web_deployment};
    use crate::deploy::eks::manifests::{builtin_scope, prepare};

    fn config(preview: Option<&str>) -> EksBlueGreen {
        serde_json::from_value(json!({
            "deployment": "web", "service": "web", "preview_service": preview
        }))
        .unwrap()
    }

    fn service_manifest(name: &str) -> Value {
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
            "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]}})
    }

    fn prepared() -> Vec<PreparedObject> {
        let spec = spec_with(vec![web_deployment(), service_manifest("web")]);
        prepare(&spec, &|_, kind| builtin_scope(kind)).unwrap()
    }

    fn live_service(slot: Option<&str>) -> Value {
        let mut selector = json!({"app": "web"});
        if let Some(slot) = slot {
            selector[SLOT_LABEL] = json!(slot);
        }
        json!({"spec": {"selector": selector}})
    }

    #[test]
    fn the_first_deploy_goes_to_blue_and_then_the_slots_alternate() {
        assert_eq!(
            choose_slot(None),
            SlotChoice {
                new: Slot::Blue,
                serving: None
            }
        );
        assert_eq!(
            choose_slot(Some(&live_service(None))),
            SlotChoice {
                new: Slot::Blue,
                serving: None
            }
        );
        assert_eq!(
            choose_slot(Some(&live_service(Some("blue")))),
            SlotChoice {
                new: Slot::Green,
                serving: Some(Slot::Blue)
            }
        );
        assert_eq!(
            choose_slot(Some(&live_service(Some("green")))),
            SlotChoice {
                new: Slot::Blue,
                serving: Some(Slot::Green)
            }
        );
        // A value shipit did not write counts as no slot.
        assert_eq!(
            choose_slot(Some(&live_service(Some("purple")))).serving,
            None
        );
    }

    #[test]
    fn the_new_slot_is_a_labelled_copy_and_the_service_stays_on_the_serving_slot() {
        let choice = SlotChoice {
            new: Slot::Green,
            serving: Some(Slot::Blue),
        };
        let objects = slot_objects(&prepared(), &config(None), choice).unwrap();
        let keys: Vec<String> = objects.iter().map(|o| o.key.to_string()).collect();
        assert_eq!(keys, ["Service/shop/web", "Deployment/shop/web-green"]);
        let deployment = &objects[1].object;
        assert_eq!(deployment["metadata"]["name"], "web-green");
        assert_eq!(
            deployment["spec"]["selector"]["matchLabels"],
            json!({"app": "web", SLOT_LABEL: "green"})
        );
        assert_eq!(
            deployment["spec"]["template"]["metadata"]["labels"],
            json!({"app": "web", SLOT_LABEL: "green"})
        );
        assert_eq!(
            objects[0].object["spec"]["selector"],
            json!({"app": "web", SLOT_LABEL: "blue"})
        );
    }

    #[test]
    fn before_any_slot_serves_the_service_keeps_the_manifests_selector() {
        let choice = choose_slot(None);
        let objects = slot_objects(&prepared(), &config(None), choice).unwrap();
        assert_eq!(objects[0].object["spec"]["selector"], json!({"app": "web"}));
    }

    #[test]
    fn the_preview_service_is_made_from_the_service_and_selects_the_new_slot() {
        let choice = SlotChoice {
            new: Slot::Blue,
            serving: Some(Slot::Green),
        };
        let objects = slot_objects(&prepared(), &config(Some("web-preview")), choice).unwrap();
        let preview = objects
            .iter()
            .find(|o| o.key.name == "web-preview")
            .expect("a preview Service");
        assert_eq!(preview.key.kind, "Service");
        assert_eq!(preview.object["metadata"]["name"], "web-preview");
        assert_eq!(
            preview.object["spec"]["selector"],
            json!({"app": "web", SLOT_LABEL: "blue"})
        );
        assert_eq!(first_port(&preview.object), Some(80));
    }

    #[test]
    fn a_missing_deployment_or_service_is_a_configuration_error_naming_it() {
        let spec = spec_with(vec![web_deployment()]);
        let prepared = prepare(&spec, &|_, kind| builtin_scope(kind)).unwrap();
        let error = slot_objects(&prepared, &config(None), choose_slot(None)).unwrap_err();
        assert!(
            error.message.contains("no Service named `web`"),
            "{error:?}"
        );
        let mut other = config(None);
        other.deployment = "api".into();
        let error = slot_objects(&self::prepared(), &other, choose_slot(None)).unwrap_err();
        assert!(
            error.message.contains("no Deployment named `api`"),
            "{error:?}"
        );
    }

    #[test]
    fn a_rollback_flips_only_to_a_slot_that_still_runs_the_earlier_images_ready() {
        let images: std::collections::BTreeMap<String, String> =
            [("web".to_string(), "r/app@sha256:aa".to_string())].into();
        let slot = |image: &str, replicas: i64, ready: i64| {
            json!({"metadata": {"generation": 3},
                "spec": {"replicas": replicas, "template": {"spec": {"containers": [{"name": "web", "image": image}]}}},
                "status": {"observedGeneration": 3, "readyReplicas": ready}})
        };
        assert_eq!(
            slot_return(Some(&slot("r/app@sha256:aa", 2, 2)), &images),
            SlotReturn::Flip
        );
        assert_eq!(
            slot_return(Some(&slot("r/app@sha256:aa", 0, 0)), &images),
            SlotReturn::ScaleUp
        );
        assert_eq!(
            slot_return(Some(&slot("r/app@sha256:aa", 2, 1)), &images),
            SlotReturn::ScaleUp
        );
        assert_eq!(
            slot_return(Some(&slot("r/app@sha256:bb", 2, 2)), &images),
            SlotReturn::Reapply
        );
        assert_eq!(slot_return(None, &images), SlotReturn::Reapply);
    }
}
