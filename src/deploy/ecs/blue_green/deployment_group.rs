//! The CodeDeploy deployment group a blue/green deploy goes through, checked before anything
//! changes: it must exist, deploy this very service, and it tells whether production traffic
//! will wait for an approval.

use aws_sdk_codedeploy::types::{DeploymentGroupInfo, DeploymentReadyAction};

use super::super::{EcsClients, EcsDeployError, EcsDeploySpec};
use crate::deploy::aws_failure::AwsFailure;

/// What the deploy needs to know about its deployment group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DeploymentGroup {
    pub application: String,
    pub name: String,
    /// The minutes the group waits for the production traffic reroute to be approved (then it
    /// stops the deployment); None when it reroutes on its own.
    pub reroute_wait_minutes: Option<i32>,
}

/// Reads and checks the deployment group `spec` names (or the ECS console's default names).
pub(crate) async fn read_deployment_group(
    clients: &EcsClients,
    spec: &EcsDeploySpec,
) -> Result<DeploymentGroup, EcsDeployError> {
    let application = spec.config.codedeploy_application();
    let name = spec.config.codedeploy_deployment_group();
    let answer = clients
        .codedeploy
        .get_deployment_group()
        .application_name(&application)
        .deployment_group_name(&name)
        .send()
        .await;
    match answer {
        Ok(output) => match output.deployment_group_info() {
            Some(info) => check_deployment_group(info, spec, &application, &name),
            None => Err(missing(&application, &name)),
        },
        Err(err) => {
            let failure = AwsFailure::from_sdk("codedeploy:GetDeploymentGroup", &err);
            if failure.is("ApplicationDoesNotExistException")
                || failure.is("DeploymentGroupDoesNotExistException")
            {
                Err(missing(&application, &name))
            } else {
                Err(failure.into_error())
            }
        }
    }
}

/// The group must deploy `spec`'s cluster and service; a group of another service would roll
/// our task definition out there.
pub(crate) fn check_deployment_group(
    info: &DeploymentGroupInfo,
    spec: &EcsDeploySpec,
    application: &str,
    name: &str,
) -> Result<DeploymentGroup, EcsDeployError> {
    let cluster = last_segment(&spec.config.cluster);
    let service = last_segment(&spec.config.service);
    let services = info.ecs_services();
    let ours = services.iter().any(|s| {
        s.cluster_name().map(last_segment) == Some(cluster)
            && s.service_name().map(last_segment) == Some(service)
    });
    if !ours {
        let deploys: Vec<String> = services
            .iter()
            .map(|s| {
                format!(
                    "{}/{}",
                    s.cluster_name().unwrap_or("?"),
                    s.service_name().unwrap_or("?")
                )
            })
            .collect();
        let deploys = if deploys.is_empty() {
            "no ECS service".to_string()
        } else {
            deploys.join(", ")
        };
        return Err(EcsDeployError::config(format!(
            "the CodeDeploy deployment group `{name}` of application `{application}` deploys {deploys}, not the service {cluster}/{service}"
        ))
        .with_hint("set `codedeploy.application` and `codedeploy.deployment_group` to the group of this service"));
    }
    let ready = info
        .blue_green_deployment_configuration()
        .and_then(|config| config.deployment_ready_option());
    let reroute_wait_minutes = ready
        .filter(|option| option.action_on_timeout() == Some(&DeploymentReadyAction::StopDeployment))
        .map(|option| option.wait_time_in_minutes());
    Ok(DeploymentGroup {
        application: application.to_string(),
        name: name.to_string(),
        reroute_wait_minutes,
    })
}

fn missing(application: &str, name: &str) -> EcsDeployError {
    EcsDeployError::config(format!(
        "no CodeDeploy deployment group `{name}` in application `{application}`"
    ))
    .with_hint(
        "without `codedeploy.application` and `codedeploy.deployment_group`, shipit uses the names the ECS console gives: AppECS-<cluster>-<service> and DgpECS-<cluster>-<service>; name yours in the target",
    )
}

/// `web` of `arn:aws:ecs:…:service/main/web` (a name stays a name).
fn last_segment(name: &str) -> &str {
    name.rsplit('/').next().unwrap_or(name)
}

#[cfg(test)]
pub(crate) mod tests {
    use std::collections::BTreeMap;

    use aws_sdk_codedeploy::types::{
        BlueGreenDeploymentConfiguration, DeploymentReadyOption, EcsService,
    };

    use super::*;
    use crate::deploy::ecs::{EcsErrorKind, TaskDefinitionSource};
    use crate::pipeline::model::EcsTarget;

    /// A blue/green deploy of `main/web`, as the stage hands it over.
    pub(crate) fn spec() -> EcsDeploySpec {
        let config: EcsTarget = serde_json::from_value(serde_json::json!({
            "cluster": "main",
            "service": "web",
            "task_definition": "current",
            "strategy": "blue_green",
        }))
        .unwrap();
        EcsDeploySpec {
            pipeline: "shop".into(),
            target: "prod".into(),
            run_id: "r-20240101-1".into(),
            git_sha: None,
            config,
            task_definition: TaskDefinitionSource::Current,
            images: BTreeMap::new(),
        }
    }

    fn group(
        cluster: &str,
        service: &str,
        ready: Option<DeploymentReadyOption>,
    ) -> DeploymentGroupInfo {
        DeploymentGroupInfo::builder()
            .application_name("AppECS-main-web")
            .deployment_group_name("DgpECS-main-web")
            .ecs_services(
                EcsService::builder()
                    .cluster_name(cluster)
                    .service_name(service)
                    .build(),
            )
            .set_blue_green_deployment_configuration(ready.map(|ready| {
                BlueGreenDeploymentConfiguration::builder()
                    .deployment_ready_option(ready)
                    .build()
            }))
            .build()
    }

    #[test]
    fn a_group_of_this_service_that_reroutes_on_its_own_waits_for_nobody() {
        let ready = DeploymentReadyOption::builder()
            .action_on_timeout(DeploymentReadyAction::ContinueDeployment)
            .build();
        let checked = check_deployment_group(
            &group("main", "web", Some(ready)),
            &spec(),
            "AppECS-main-web",
            "DgpECS-main-web",
        )
        .unwrap();
        assert_eq!(checked.reroute_wait_minutes, None);
    }

    #[test]
    fn a_group_that_stops_on_timeout_waits_for_an_approval() {
        let ready = DeploymentReadyOption::builder()
            .action_on_timeout(DeploymentReadyAction::StopDeployment)
            .wait_time_in_minutes(30)
            .build();
        let checked =
            check_deployment_group(&group("main", "web", Some(ready)), &spec(), "a", "g").unwrap();
        assert_eq!(checked.reroute_wait_minutes, Some(30));
    }

    #[test]
    fn a_group_of_another_service_is_a_config_error_naming_what_it_deploys() {
        let err = check_deployment_group(
            &group("main", "api", None),
            &spec(),
            "AppECS-main-web",
            "DgpECS-main-web",
        )
        .unwrap_err();
        assert_eq!(err.kind, EcsErrorKind::Config);
        assert!(
            err.message
                .contains("deploys main/api, not the service main/web"),
            "{}",
            err.message
        );
    }

    #[test]
    fn service_and_cluster_arns_match_their_names() {
        let mut spec = spec();
        spec.config.cluster = "arn:aws:ecs:eu-west-1:123456789012:cluster/main".into();
        assert!(check_deployment_group(&group("main", "web", None), &spec, "a", "g").is_ok());
    }

    #[test]
    fn a_missing_group_names_both_names_and_the_default_rule() {
        let err = missing("AppECS-main-web", "DgpECS-main-web");
        assert_eq!(err.kind, EcsErrorKind::Config);
        assert!(
            err.message.contains("`DgpECS-main-web`") && err.message.contains("`AppECS-main-web`")
        );
        assert!(err.hint.unwrap().contains("AppECS-<cluster>-<service>"));
    }
}
