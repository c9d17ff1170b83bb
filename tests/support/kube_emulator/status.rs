//! The `Status` objects the API server answers failures with.

use serde_json::{Value, json};

/// A failed request: its HTTP code and the `Status` body.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub code: u16,
    pub body: Value,
}

impl ApiError {
    pub fn new(code: u16, reason: &str, message: String, details: Value) -> ApiError {
        let mut body = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": message,
            "reason": reason,
            "code": code,
        });
        if !details.is_null() {
            body["details"] = details;
        }
        ApiError { code, body }
    }

    /// `<plural>.<group> "<name>"`, the way the server names an object in messages.
    fn qualified(plural: &str, group: &str) -> String {
        if group.is_empty() {
            plural.to_string()
        } else {
            format!("{plural}.{group}")
        }
    }

    pub fn not_found(plural: &str, group: &str, name: &str) -> ApiError {
        ApiError::new(
            404,
            "NotFound",
            format!("{} \"{name}\" not found", Self::qualified(plural, group)),
            json!({"name": name, "group": group, "kind": plural}),
        )
    }

    pub fn already_exists(plural: &str, group: &str, name: &str) -> ApiError {
        ApiError::new(
            409,
            "AlreadyExists",
            format!(
                "{} \"{name}\" already exists",
                Self::qualified(plural, group)
            ),
            json!({"name": name, "group": group, "kind": plural}),
        )
    }

    pub fn conflict(plural: &str, group: &str, name: &str, why: &str) -> ApiError {
        ApiError::new(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {} \"{name}\": {why}",
                Self::qualified(plural, group)
            ),
            json!({"name": name, "group": group, "kind": plural}),
        )
    }

    pub fn invalid(kind: &str, group: &str, name: &str, field: &str, why: &str) -> ApiError {
        ApiError::new(
            422,
            "Invalid",
            format!(
                "{} \"{name}\" is invalid: {field}: {why}",
                Self::qualified(kind, group)
            ),
            json!({"name": name, "group": group, "kind": kind,
                   "causes": [{"reason": "FieldValueInvalid", "message": why, "field": field}]}),
        )
    }

    pub fn bad_request(message: String) -> ApiError {
        ApiError::new(400, "BadRequest", message, Value::Null)
    }

    pub fn unsupported_media_type(content_type: &str) -> ApiError {
        ApiError::new(
            415,
            "UnsupportedMediaType",
            format!(
                "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml (got {content_type:?})"
            ),
            Value::Null,
        )
    }

    pub fn method_not_allowed() -> ApiError {
        ApiError::new(
            405,
            "MethodNotAllowed",
            "the server does not allow this method on the requested resource".into(),
            Value::Null,
        )
    }

    pub fn unauthorized() -> ApiError {
        ApiError::new(401, "Unauthorized", "Unauthorized".into(), Value::Null)
    }

    /// 403 with the real message, e.g. `deployments.apps "web" is forbidden: User "ci" cannot
    /// patch resource "deployments" in API group "apps" in the namespace "shop"`.
    pub fn forbidden(
        user: &str,
        verb: &str,
        plural: &str,
        group: &str,
        namespace: &str,
        name: &str,
    ) -> ApiError {
        let subject = if name.is_empty() {
            Self::qualified(plural, group)
        } else {
            format!("{} \"{name}\"", Self::qualified(plural, group))
        };
        let scope = if namespace.is_empty() {
            "at the cluster scope".to_string()
        } else {
            format!("in the namespace \"{namespace}\"")
        };
        ApiError::new(
            403,
            "Forbidden",
            format!(
                "{subject} is forbidden: User \"{user}\" cannot {verb} resource \"{plural}\" in API group \"{group}\" {scope}"
            ),
            json!({"name": name, "group": group, "kind": plural}),
        )
    }

    /// The server-side apply conflict, worded as the API server words it; each manager comes
    /// as the server prints it (`"kubectl"`, `"kubectl-rollout" using apps/v1`).
    pub fn apply_conflicts(conflicts: &[(String, String)]) -> ApiError {
        let causes: Vec<Value> = conflicts
            .iter()
            .map(|(manager, path)| {
                json!({"reason": "FieldManagerConflict", "message": format!("conflict with {manager}"), "field": path})
            })
            .collect();
        let message = if let [(manager, path)] = conflicts {
            format!("Apply failed with 1 conflict: conflict with {manager}: {path}")
        } else {
            let mut managers: Vec<&String> = conflicts.iter().map(|(m, _)| m).collect();
            managers.sort();
            managers.dedup();
            let mut lines = Vec::new();
            for manager in managers {
                lines.push(format!("conflicts with {manager}:"));
                for (_, path) in conflicts.iter().filter(|(m, _)| m == manager) {
                    lines.push(format!("- {path}"));
                }
            }
            format!(
                "Apply failed with {} conflicts: {}",
                conflicts.len(),
                lines.join("\n")
            )
        };
        ApiError::new(409, "Conflict", message, json!({"causes": causes}))
    }
}
