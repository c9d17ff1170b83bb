//! Events the simulated controllers and kubelet record about objects, aggregated by
//! (object, reason, message) with a count as the real event recorder does.

use serde_json::{Value, json};

use super::resources;
use super::world::{World, random_suffix, timestamp};

pub fn record(
    world: &mut World,
    about: &Value,
    kind: &str,
    reason: &str,
    message: &str,
    component: &str,
) {
    let Some(events) = resources::by_plural("", "v1", "events") else {
        return;
    };
    let uid = about["metadata"]["uid"].clone();
    let namespace = about["metadata"]["namespace"]
        .as_str()
        .unwrap_or("default")
        .to_string();
    let now = timestamp();
    let existing = world
        .objects
        .iter()
        .find(|((plural, ns, _), event)| {
            *plural == "events"
                && *ns == namespace
                && event["involvedObject"]["uid"] == uid
                && event["reason"] == reason
                && event["message"] == message
        })
        .map(|(_, event)| event.clone());
    if let Some(old) = existing {
        let mut event = old.clone();
        event["count"] = json!(old["count"].as_i64().unwrap_or(1) + 1);
        event["lastTimestamp"] = json!(now);
        world.replace(events, &old, event);
        return;
    }
    let name = format!(
        "{}.{}",
        about["metadata"]["name"].as_str().unwrap_or_default(),
        random_suffix(16)
    );
    let event = json!({
        "metadata": {"name": name, "namespace": namespace},
        "involvedObject": {
            "kind": about["kind"], "namespace": namespace, "name": about["metadata"]["name"],
            "uid": uid, "apiVersion": about["apiVersion"], "resourceVersion": about["metadata"]["resourceVersion"],
        },
        "reason": reason, "message": message, "type": kind, "count": 1,
        "source": {"component": component},
        "firstTimestamp": now, "lastTimestamp": now,
        "reportingComponent": component, "reportingInstance": "",
    });
    // The namespace exists: the object the event is about lives in it.
    let _ = world.create(events, event);
}
