//! The task definition a deploy registers, built from the file (either shape) or the live one:
//! the read-only fields dropped, each named container's image replaced by its pushed digest,
//! every other field kept exactly as written, including fields newer than the SDK knows. It
//! stays JSON all the way to the request body, so nothing is lost in a conversion.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use crate::deploy::ecs::error::EcsDeployError;

/// Fields `describe-task-definition` returns that `register-task-definition` refuses.
const READ_ONLY_FIELDS: &[&str] = &[
    "taskDefinitionArn",
    "revision",
    "status",
    "requiresAttributes",
    "compatibilities",
    "registeredAt",
    "registeredBy",
    "deregisteredAt",
];

/// A task definition in the `register-task-definition` input shape, without its tags (which are
/// sent along but never compared).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct TaskDefinitionDocument {
    pub(crate) family: String,
    pub(crate) body: Map<String, Value>,
    /// The tags the file or the live revision carries, in order.
    pub(crate) tags: Vec<(String, String)>,
}

impl TaskDefinitionDocument {
    /// Reads either shape: the register input, or the describe output
    /// (`{"taskDefinition": {…}, "tags": […]}`). `source` names the document in messages.
    pub(crate) fn from_json(document: &Value, source: &str) -> Result<Self, EcsDeployError> {
        let Some(outer) = document.as_object() else {
            return Err(EcsDeployError::config(format!(
                "{source} is not a JSON object; a task definition is the register-task-definition input or the describe-task-definition output"
            )));
        };
        let (inner, outer_tags) = match outer.get("taskDefinition") {
            Some(Value::Object(inner)) => (inner, outer.get("tags")),
            Some(_) => {
                return Err(EcsDeployError::config(format!(
                    "{source}: `taskDefinition` must be an object"
                )));
            }
            None => (outer, None),
        };
        let mut body = inner.clone();
        for field in READ_ONLY_FIELDS {
            body.remove(*field);
        }
        let inner_tags = body.remove("tags");
        let tags = read_tags(outer_tags.or(inner_tags.as_ref()), source)?;
        let family = match body.get("family") {
            Some(Value::String(family)) if !family.trim().is_empty() => family.clone(),
            _ => {
                return Err(EcsDeployError::config(format!(
                    "{source} has no `family`; every task definition names its family"
                )));
            }
        };
        match body.get("containerDefinitions") {
            Some(Value::Array(containers)) if !containers.is_empty() => {}
            _ => {
                return Err(EcsDeployError::config(format!(
                    "{source} has no `containerDefinitions`"
                )));
            }
        }
        Ok(TaskDefinitionDocument { family, body, tags })
    }

    /// The names of the containers, in the file's order.
    pub(crate) fn container_names(&self) -> Vec<String> {
        containers(&self.body)
            .filter_map(|container| container.get("name").and_then(Value::as_str))
            .map(str::to_owned)
            .collect()
    }

    /// Sets the image of each container `images` names (container → digest reference). Fails,
    /// naming `source` and the containers it has, when one of them is missing; nothing is
    /// changed then.
    pub(crate) fn pin_images(
        &mut self,
        images: &BTreeMap<String, String>,
        source: &str,
    ) -> Result<(), EcsDeployError> {
        let have = self.container_names();
        let missing: Vec<&str> = images
            .keys()
            .filter(|name| !have.contains(name))
            .map(String::as_str)
            .collect();
        if !missing.is_empty() {
            return Err(EcsDeployError::config(format!(
                "{source} has no container {}; it has {}",
                quoted_list(&missing),
                quoted_list(&have.iter().map(String::as_str).collect::<Vec<_>>()),
            ))
            .with_hint("name a container of the task definition in `container` / `containers`"));
        }
        if let Some(Value::Array(containers)) = self.body.get_mut("containerDefinitions") {
            for container in containers.iter_mut().filter_map(Value::as_object_mut) {
                let name = container.get("name").and_then(Value::as_str);
                if let Some(image) = name.and_then(|name| images.get(name)) {
                    container.insert("image".to_owned(), Value::String(image.clone()));
                }
            }
        }
        Ok(())
    }

    /// The `register-task-definition` request body: the document with `extra_tags` added to
    /// its own (a tag of the same key is replaced).
    pub(crate) fn register_request(&self, extra_tags: &[(String, String)]) -> Value {
        let mut tags: Vec<(String, String)> = self
            .tags
            .iter()
            .filter(|(key, _)| !extra_tags.iter().any(|(extra, _)| extra == key))
            .cloned()
            .collect();
        tags.extend(extra_tags.iter().cloned());
        let mut body = self.body.clone();
        if !tags.is_empty() {
            let tags = tags
                .into_iter()
                .map(|(key, value)| serde_json::json!({"key": key, "value": value}))
                .collect();
            body.insert("tags".to_owned(), Value::Array(tags));
        }
        Value::Object(body)
    }
}

/// The tags shipit puts on a revision it registers, so one can tell which run made it.
pub(crate) fn shipit_tags(
    pipeline: &str,
    run_id: &str,
    git_sha: Option<&str>,
) -> Vec<(String, String)> {
    let mut tags = vec![
        ("shipit:pipeline".to_owned(), pipeline.to_owned()),
        ("shipit:run-id".to_owned(), run_id.to_owned()),
    ];
    if let Some(sha) = git_sha {
        tags.push(("shipit:git-sha".to_owned(), sha.to_owned()));
    }
    tags
}

fn containers(body: &Map<String, Value>) -> impl Iterator<Item = &Map<String, Value>> {
    body.get("containerDefinitions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_object)
}

fn read_tags(tags: Option<&Value>, source: &str) -> Result<Vec<(String, String)>, EcsDeployError> {
    let Some(tags) = tags else {
        return Ok(Vec::new());
    };
    let bad =
        || EcsDeployError::config(format!("{source}: `tags` must be a list of {{key, value}}"));
    tags.as_array()
        .ok_or_else(bad)?
        .iter()
        .map(|tag| {
            let key = tag.get("key").and_then(Value::as_str).ok_or_else(bad)?;
            let value = tag.get("value").and_then(Value::as_str).unwrap_or_default();
            Ok((key.to_owned(), value.to_owned()))
        })
        .collect()
}

fn quoted_list(names: &[&str]) -> String {
    if names.is_empty() {
        return "none".to_owned();
    }
    names
        .iter()
        .map(|name| format!("`{name}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::deploy::ecs::task_definition::fixtures;

    fn images(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(c, i)| (c.to_string(), i.to_string()))
            .collect()
    }

    #[test]
    fn every_field_of_a_full_task_definition_reaches_the_request_except_the_pinned_image() {
        let file = fixtures::full_register_input();
        let mut document = TaskDefinitionDocument::from_json(&file, "taskdef.json").unwrap();
        document
            .pin_images(&images(&[("web", fixtures::WEB_DIGEST)]), "taskdef.json")
            .unwrap();
        let request = document.register_request(&[]);
        let mut expected = file.clone();
        expected["containerDefinitions"][0]["image"] = json!(fixtures::WEB_DIGEST);
        assert_eq!(request, expected);
        // The fields the SDK's model would have to know, spelled out, so losing one fails here
        // by name.
        for pointer in [
            "/taskRoleArn",
            "/executionRoleArn",
            "/runtimePlatform/cpuArchitecture",
            "/ephemeralStorage/sizeInGiB",
            "/proxyConfiguration/properties/0/name",
            "/placementConstraints/0/expression",
            "/volumes/0/efsVolumeConfiguration/authorizationConfig/accessPointId",
            "/containerDefinitions/0/secrets/0/valueFrom",
            "/containerDefinitions/0/secrets/1/valueFrom",
            "/containerDefinitions/0/logConfiguration/options/awslogs-group",
            "/containerDefinitions/0/ulimits/0/softLimit",
            "/containerDefinitions/0/healthCheck/command/1",
            "/containerDefinitions/0/dependsOn/0/condition",
            "/containerDefinitions/0/aNewerField",
        ] {
            assert!(request.pointer(pointer).is_some(), "{pointer} was lost");
        }
    }

    #[test]
    fn the_describe_output_shape_drops_read_only_fields_and_keeps_its_tags() {
        let described = fixtures::described(&fixtures::full_register_input(), 7);
        let document = TaskDefinitionDocument::from_json(&described, "live").unwrap();
        for field in READ_ONLY_FIELDS {
            assert!(!document.body.contains_key(*field), "{field} kept");
        }
        assert_eq!(document.family, "web");
        assert_eq!(document.tags, [("team".to_owned(), "payments".to_owned())]);
        let request = document.register_request(&shipit_tags("p", "r1", Some("abc")));
        assert_eq!(
            request["tags"],
            json!([
                {"key": "team", "value": "payments"},
                {"key": "shipit:pipeline", "value": "p"},
                {"key": "shipit:run-id", "value": "r1"},
                {"key": "shipit:git-sha", "value": "abc"},
            ])
        );
    }

    #[test]
    fn a_new_run_replaces_the_tags_of_the_run_before_instead_of_doubling_them() {
        let mut file = fixtures::full_register_input();
        file["tags"] = json!([{"key": "shipit:run-id", "value": "old"}]);
        let document = TaskDefinitionDocument::from_json(&file, "f").unwrap();
        let request = document.register_request(&shipit_tags("p", "new", None));
        assert_eq!(
            request["tags"],
            json!([{"key": "shipit:pipeline", "value": "p"}, {"key": "shipit:run-id", "value": "new"}])
        );
    }

    #[test]
    fn a_missing_container_names_the_file_and_the_containers_it_has() {
        let mut document =
            TaskDefinitionDocument::from_json(&fixtures::full_register_input(), "deploy/web.json")
                .unwrap();
        let before = document.clone();
        let err = document
            .pin_images(
                &images(&[("api", "x@sha256:1"), ("web", "y@sha256:2")]),
                "deploy/web.json",
            )
            .unwrap_err();
        assert_eq!(err.kind, crate::deploy::ecs::EcsErrorKind::Config);
        assert_eq!(
            err.message,
            "deploy/web.json has no container `api`; it has `web`, `envoy`"
        );
        assert_eq!(document, before, "a failed pin changes nothing");
    }

    #[test]
    fn documents_that_are_not_task_definitions_are_config_errors_not_panics() {
        for (document, says) in [
            (json!([1, 2]), "not a JSON object"),
            (json!({"taskDefinition": "x"}), "must be an object"),
            (
                json!({"containerDefinitions": [{"name": "a"}]}),
                "no `family`",
            ),
            (json!({"family": "f"}), "no `containerDefinitions`"),
            (
                json!({"family": "f", "containerDefinitions": [{}], "tags": 3}),
                "`tags`",
            ),
        ] {
            let err = TaskDefinitionDocument::from_json(&document, "f.json").unwrap_err();
            assert!(err.message.contains(says), "{}", err.message);
        }
    }
}
