//! Starting the CodeDeploy deployment, once: CreateDeployment, or adopting the deployment an
//! interrupted attempt of the same run created but could not journal. The deployment's
//! description names the run and the target, which is how a resume recognises its own.

use aws_sdk_codedeploy::types::{
    AppSpecContent, DeploymentStatus, RevisionLocation, RevisionLocationType,
};

use super::super::{EcsClients, EcsDeployError, EcsDeploySpec, EcsErrorKind};
use super::appspec::AppSpec;
use super::deployment_group::DeploymentGroup;
use super::snapshot::DeploymentView;
use crate::deploy::aws_failure::AwsFailure;

/// The deployments of a group that have not ended.
const UNFINISHED: [DeploymentStatus; 5] = [
    DeploymentStatus::Created,
    DeploymentStatus::Queued,
    DeploymentStatus::InProgress,
    DeploymentStatus::Ready,
    DeploymentStatus::Baking,
];

/// The description a deployment of this run and target carries.
pub(crate) fn description(spec: &EcsDeploySpec) -> String {
    format!(
        "shipit {} run {} deploy:{}",
        spec.pipeline, spec.run_id, spec.target
    )
}

/// Creates the deployment and returns its id. When the group is busy with a deployment of this
/// same run (created by an attempt that died before journaling it), that one is adopted.
pub(crate) async fn create_deployment(
    clients: &EcsClients,
    group: &DeploymentGroup,
    spec: &EcsDeploySpec,
    app_spec: &AppSpec,
) -> Result<String, EcsDeployError> {
    let revision = RevisionLocation::builder()
        .revision_type(RevisionLocationType::AppSpecContent)
        .app_spec_content(
            AppSpecContent::builder()
                .content(&app_spec.content)
                .sha256(&app_spec.sha256)
                .build(),
        )
        .build();
    let deployment_config = spec
        .config
        .codedeploy
        .as_ref()
        .and_then(|c| c.deployment_config.clone());
    let answer = clients
        .codedeploy
        .create_deployment()
        .application_name(&group.application)
        .deployment_group_name(&group.name)
        .revision(revision)
        .set_deployment_config_name(deployment_config)
        .description(description(spec))
        .send()
        .await;
    match answer {
        Ok(output) => output.deployment_id().map(str::to_string).ok_or_else(|| {
            EcsDeployError::remote("CreateDeployment answered without a deployment id")
        }),
        Err(err) => {
            let failure = AwsFailure::from_sdk("codedeploy:CreateDeployment", &err);
            if !failure.is("DeploymentLimitExceededException") {
                return Err(failure.into_error());
            }
            if let Some(ours) = find_own_deployment(clients, group, spec).await? {
                return Ok(ours);
            }
            Err(competing(group, &failure.message))
        }
    }
}

/// The unfinished deployment of the group that this run and target created, if any.
pub(crate) async fn find_own_deployment(
    clients: &EcsClients,
    group: &DeploymentGroup,
    spec: &EcsDeploySpec,
) -> Result<Option<String>, EcsDeployError> {
    let listed = clients
        .codedeploy
        .list_deployments()
        .application_name(&group.application)
        .deployment_group_name(&group.name)
        .set_include_only_statuses(Some(UNFINISHED.to_vec()))
        .send()
        .await
        .map_err(|err| AwsFailure::from_sdk("codedeploy:ListDeployments", &err).into_error())?;
    // A group runs one deployment at a time and queues few: the first page is all of them.
    let ids: Vec<String> = listed.deployments().iter().take(25).cloned().collect();
    if ids.is_empty() {
        return Ok(None);
    }
    let described = clients
        .codedeploy
        .batch_get_deployments()
        .set_deployment_ids(Some(ids))
        .send()
        .await
        .map_err(|err| AwsFailure::from_sdk("codedeploy:BatchGetDeployments", &err).into_error())?;
    let views: Vec<DeploymentView> = described
        .deployments_info()
        .iter()
        .map(DeploymentView::from_sdk)
        .collect();
    Ok(own_deployment(&views, &description(spec)).map(str::to_string))
}

/// The deployment whose description is exactly this run's.
pub(crate) fn own_deployment<'a>(
    deployments: &'a [DeploymentView],
    description: &str,
) -> Option<&'a str> {
    deployments
        .iter()
        .find(|d| d.description.as_deref() == Some(description))
        .map(|d| d.deployment_id.as_str())
}

/// The group is busy with someone else's deployment.
fn competing(group: &DeploymentGroup, message: &str) -> EcsDeployError {
    let other = deployment_id_in(message)
        .map(|id| format!("deployment {id}"))
        .unwrap_or_else(|| "another deployment".to_string());
    EcsDeployError::new(
        EcsErrorKind::CompetingDeploy,
        format!(
            "the CodeDeploy deployment group `{}` is busy with {other}, which this deploy did not start",
            group.name
        ),
    )
    .with_hint("wait for it to finish (or stop it), then run the deploy again")
}

/// The `d-…` id CodeDeploy quotes in a DeploymentLimitExceededException message; the last one,
/// since the group's name comes first and may itself start with `d-`.
pub(crate) fn deployment_id_in(message: &str) -> Option<&str> {
    message
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
        .rfind(|word| word.len() > 2 && word.starts_with("d-"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deploy::ecs::blue_green::deployment_group::tests::spec;

    #[test]
    fn the_description_names_pipeline_run_and_target() {
        assert_eq!(
            description(&spec()),
            "shipit shop run r-20240101-1 deploy:prod"
        );
    }

    #[test]
    fn only_a_deployment_of_this_run_and_target_is_adopted() {
        let view = |id: &str, description: &str| DeploymentView {
            deployment_id: id.into(),
            status: "InProgress".into(),
            description: Some(description.into()),
            ..DeploymentView::default()
        };
        let ours = description(&spec());
        let deployments = [
            view("d-OTHERRUN", "shipit shop run r-20231231-9 deploy:prod"),
            view("d-OTHERTGT", "shipit shop run r-20240101-1 deploy:staging"),
            view("d-OURS", &ours),
        ];
        assert_eq!(own_deployment(&deployments, &ours), Some("d-OURS"));
        assert_eq!(own_deployment(&deployments[..2], &ours), None);
    }

    #[test]
    fn a_competing_deployment_is_named() {
        let group = DeploymentGroup {
            application: "AppECS-main-web".into(),
            name: "DgpECS-main-web".into(),
            reroute_wait_minutes: None,
        };
        let err = competing(
            &group,
            "The Deployment Group 'DgpECS-main-web' already has an active Deployment 'd-4HX2KQ0CD'",
        );
        assert_eq!(err.kind, EcsErrorKind::CompetingDeploy);
        assert!(
            err.message.contains("busy with deployment d-4HX2KQ0CD"),
            "{}",
            err.message
        );
        assert!(
            competing(&group, "limit exceeded")
                .message
                .contains("another deployment")
        );
    }
}
