//! What an API refusal means for the person deploying: a conflict names the fields and the
//! other field manager, a 403 names the verb, resource and namespace the credentials lack, a
//! missing namespace is the pipeline's mistake. The server's own message is kept: it already
//! names the field, the manager and the RBAC rule.

use kube::core::Status;

use super::error::EksDeployError;

/// The error for `status`, returned by the API while doing `what` (`apply Deployment/shop/web`).
pub(crate) fn api_failure(what: &str, status: &Status) -> EksDeployError {
    let message = format!("{what}: {}", status.message.trim());
    let details_kind = status
        .details
        .as_ref()
        .map(|d| d.kind.as_str())
        .unwrap_or_default();
    match status.code {
        409 if status.reason == "Conflict" || message.contains("conflict") => {
            let fields: Vec<&str> = status
                .details
                .iter()
                .flat_map(|d| d.causes.iter())
                .map(|cause| cause.field.as_str())
                .filter(|field| !field.is_empty())
                .collect();
            let fields = if fields.is_empty() {
                String::new()
            } else {
                format!(" (fields {})", fields.join(", "))
            };
            EksDeployError::remote(format!("{message}{fields}")).with_hint(
                "another field manager owns these fields (kubectl, a controller, another tool); \
                 stop managing them there, or set `force_conflicts: true` to take them over",
            )
        }
        403 => EksDeployError::remote(message).with_hint(
            "the cluster's RBAC does not allow this: grant the verb on the resource in that namespace \
             to the identity shipit uses (an EKS access entry or a RoleBinding)",
        ),
        401 => EksDeployError::remote(message).with_hint(
            "the cluster did not accept the credentials: check the AWS identity (an EKS access entry) or the kubeconfig",
        ),
        404 if details_kind == "namespaces" => EksDeployError::config(message).with_hint(
            "create the namespace first: add a `kind: Namespace` manifest, or set the target's `namespace`",
        ),
        400 | 422 => EksDeployError::config(message)
            .with_hint("the API server refused the manifest as written; fix the field it names"),
        _ => EksDeployError::remote(message),
    }
}

/// The error for any failure of a kube call.
pub(crate) fn kube_failure(what: &str, error: &kube::Error) -> EksDeployError {
    match error {
        kube::Error::Api(status) => api_failure(what, status),
        other => EksDeployError::remote(format!("{what}: {other}"))
            .with_hint("is the cluster reachable from here (endpoint, network, credentials)?"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deploy::eks::EksErrorKind;

    fn status(json: serde_json::Value) -> Status {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn a_conflict_names_the_fields_and_manager_and_hints_force_conflicts() {
        let conflict = status(
            serde_json::json!({"kind": "Status", "status": "Failure", "code": 409, "reason": "Conflict",
            "message": "Apply failed with 1 conflict: conflict with \"kubectl-edit\" using apps/v1: .spec.replicas",
            "details": {"name": "web", "group": "apps", "kind": "deployments",
                "causes": [{"reason": "FieldManagerConflict", "message": "conflict with \"kubectl-edit\" using apps/v1", "field": ".spec.replicas"}]}}),
        );
        let err = api_failure("apply Deployment/shop/web", &conflict);
        assert_eq!(err.kind, EksErrorKind::Remote);
        assert_eq!(
            err.message,
            "apply Deployment/shop/web: Apply failed with 1 conflict: conflict with \"kubectl-edit\" using apps/v1: .spec.replicas (fields .spec.replicas)"
        );
        assert!(err.hint.unwrap().contains("force_conflicts: true"));
    }

    #[test]
    fn forbidden_keeps_the_servers_rbac_sentence_and_hints_rbac() {
        let forbidden = status(serde_json::json!({"code": 403, "reason": "Forbidden",
            "message": "deployments.apps \"web\" is forbidden: User \"ci\" cannot patch resource \"deployments\" in API group \"apps\" in the namespace \"shop\""}));
        let err = api_failure("apply Deployment/shop/web", &forbidden);
        assert_eq!(err.kind, EksErrorKind::Remote);
        assert!(err.message.contains(
            "cannot patch resource \"deployments\" in API group \"apps\" in the namespace \"shop\""
        ));
        assert!(err.hint.unwrap().contains("RBAC"));
    }

    #[test]
    fn a_missing_namespace_is_the_pipelines_mistake() {
        let missing = status(serde_json::json!({"code": 404, "reason": "NotFound",
            "message": "namespaces \"shop\" not found", "details": {"name": "shop", "kind": "namespaces"}}));
        let err = api_failure("apply ConfigMap/shop/app", &missing);
        assert_eq!(err.kind, EksErrorKind::Config);
        assert!(err.hint.unwrap().contains("kind: Namespace"));
    }
}
