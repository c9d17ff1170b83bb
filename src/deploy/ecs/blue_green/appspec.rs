//! The AppSpec a CodeDeploy ECS deployment runs: the task definition to roll out, and
//! everything the service runs with that a replacement task set must keep (the load balancer's
//! container and port, the platform version, the network configuration, the capacity
//! providers). A value named in the pipeline wins; otherwise the live one is copied, so the
//! green task set never silently loses a setting the blue one had. "Live" is the service's
//! PRIMARY task set (what the last CodeDeploy deployment set up), then the service itself (what
//! CreateService was given).

use aws_sdk_ecs::types::{
    CapacityProviderStrategyItem, LoadBalancer, NetworkConfiguration, Service, TaskSet,
};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use crate::pipeline::model::CodeDeployTarget;

use super::super::EcsDeployError;

/// The AppSpec content sent with `CreateDeployment`, and its sha256 (hex), which CodeDeploy
/// checks the content against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AppSpec {
    pub content: String,
    pub sha256: String,
}

/// The AppSpec rolling `task_definition_arn` out on `service`.
pub(crate) fn app_spec(
    task_definition_arn: &str,
    config: &CodeDeployTarget,
    service: &Service,
) -> Result<AppSpec, EcsDeployError> {
    let live = Live::of(service);
    let mut properties = Map::new();
    properties.insert("TaskDefinition".into(), json!(task_definition_arn));
    properties.insert(
        "LoadBalancerInfo".into(),
        load_balancer_info(config, service, &live)?,
    );
    if let Some(version) = config.platform_version.as_deref().or(live.platform_version) {
        properties.insert("PlatformVersion".into(), json!(version));
    }
    if let Some(network) = live.network.and_then(network_configuration) {
        properties.insert("NetworkConfiguration".into(), network);
    }
    if !live.capacity_providers.is_empty() {
        let strategy: Vec<Value> = live
            .capacity_providers
            .iter()
            .map(|item| {
                json!({
                    "Base": item.base(),
                    "CapacityProvider": item.capacity_provider(),
                    "Weight": item.weight(),
                })
            })
            .collect();
        properties.insert("CapacityProviderStrategy".into(), Value::Array(strategy));
    }

    let mut document = Map::new();
    document.insert("version".into(), json!(0.0));
    document.insert(
        "Resources".into(),
        json!([{ "TargetService": { "Type": "AWS::ECS::Service", "Properties": properties } }]),
    );
    let hooks: Vec<Value> = config
        .hooks
        .in_order()
        .into_iter()
        .map(|(hook, function)| json!({ hook: function }))
        .collect();
    if !hooks.is_empty() {
        document.insert("Hooks".into(), Value::Array(hooks));
    }

    let content = Value::Object(document).to_string();
    let sha256 = hex::encode(Sha256::digest(content.as_bytes()));
    Ok(AppSpec { content, sha256 })
}

/// The settings the service runs with now, each from its PRIMARY task set when that has it,
/// else from the service.
struct Live<'a> {
    load_balancers: &'a [LoadBalancer],
    platform_version: Option<&'a str>,
    network: Option<&'a NetworkConfiguration>,
    capacity_providers: &'a [CapacityProviderStrategyItem],
}

impl<'a> Live<'a> {
    fn of(service: &'a Service) -> Live<'a> {
        let primary: Option<&TaskSet> = service
            .task_sets()
            .iter()
            .find(|set| set.status() == Some("PRIMARY"));
        Live {
            load_balancers: primary
                .map(TaskSet::load_balancers)
                .filter(|lbs| !lbs.is_empty())
                .unwrap_or(service.load_balancers()),
            platform_version: primary
                .and_then(TaskSet::platform_version)
                .or(service.platform_version()),
            network: primary
                .and_then(TaskSet::network_configuration)
                .or(service.network_configuration()),
            capacity_providers: primary
                .map(TaskSet::capacity_provider_strategy)
                .filter(|items| !items.is_empty())
                .unwrap_or(service.capacity_provider_strategy()),
        }
    }
}

/// The container and port production traffic goes to: the configured ones, else the live load
/// balancer's. A port given without a name, or a name without a port, is completed from the
/// live load balancer only when it names the same container.
fn load_balancer_info(
    config: &CodeDeployTarget,
    service: &Service,
    live: &Live<'_>,
) -> Result<Value, EcsDeployError> {
    let live = live.load_balancers.first();
    let live_name = live.and_then(|lb| lb.container_name());
    let name = config.container_name.as_deref().or(live_name);
    let Some(name) = name else {
        return Err(EcsDeployError::config(format!(
            "the service `{}` has no load balancer and no container is configured for CodeDeploy's traffic",
            service.service_name().unwrap_or("?"),
        ))
        .with_hint(
            "a blue/green service needs a load balancer; or set `codedeploy.container_name` and `codedeploy.container_port`",
        ));
    };
    let live_port = live
        .filter(|lb| lb.container_name() == Some(name))
        .and_then(|lb| lb.container_port());
    let port = config.container_port.map(i32::from).or(live_port);
    let Some(port) = port else {
        return Err(EcsDeployError::config(format!(
            "no port is known for the container `{name}` that receives CodeDeploy's traffic"
        ))
        .with_hint("set `codedeploy.container_port`"));
    };
    Ok(json!({ "ContainerName": name, "ContainerPort": port }))
}

/// An awsvpc configuration, in the AppSpec's spelling.
fn network_configuration(network: &NetworkConfiguration) -> Option<Value> {
    let awsvpc = network.awsvpc_configuration()?;
    let mut vpc = Map::new();
    vpc.insert("Subnets".into(), json!(awsvpc.subnets()));
    if !awsvpc.security_groups().is_empty() {
        vpc.insert("SecurityGroups".into(), json!(awsvpc.security_groups()));
    }
    if let Some(assign) = awsvpc.assign_public_ip() {
        vpc.insert("AssignPublicIp".into(), json!(assign.as_str()));
    }
    Some(json!({ "AwsvpcConfiguration": vpc }))
}

#[cfg(test)]
mod tests {
    use aws_sdk_ecs::types::{
        AssignPublicIp, AwsVpcConfiguration, CapacityProviderStrategyItem, LoadBalancer,
        NetworkConfiguration,
    };

    use super::*;
    use crate::deploy::ecs::EcsErrorKind;
    use crate::pipeline::model::CodeDeployHooks;

    const ARN: &str = "arn:aws:ecs:eu-west-1:123456789012:task-definition/web:42";

    /// A Fargate service behind an ALB, as DescribeServices returns it.
    fn fargate_service() -> Service {
        Service::builder()
            .service_name("web")
            .platform_version("1.4.0")
            .load_balancers(
                LoadBalancer::builder()
                    .target_group_arn("arn:aws:elasticloadbalancing:eu-west-1:123456789012:targetgroup/web-blue/abc")
                    .container_name("app")
                    .container_port(8080)
                    .build(),
            )
            .network_configuration(
                NetworkConfiguration::builder()
                    .awsvpc_configuration(
                        AwsVpcConfiguration::builder()
                            .subnets("subnet-1")
                            .subnets("subnet-2")
                            .security_groups("sg-1")
                            .assign_public_ip(AssignPublicIp::Disabled)
                            .build()
                            .unwrap(),
                    )
                    .build(),
            )
            .capacity_provider_strategy(
                CapacityProviderStrategyItem::builder()
                    .capacity_provider("FARGATE_SPOT")
                    .base(1)
                    .weight(3)
                    .build()
                    .unwrap(),
            )
            .build()
    }

    fn parsed(spec: &AppSpec) -> Value {
        serde_json::from_str(&spec.content).unwrap()
    }

    #[test]
    fn everything_the_service_runs_with_is_carried_into_the_app_spec() {
        let spec = app_spec(ARN, &CodeDeployTarget::default(), &fargate_service()).unwrap();
        assert_eq!(
            parsed(&spec),
            json!({
                "version": 0.0,
                "Resources": [{"TargetService": {
                    "Type": "AWS::ECS::Service",
                    "Properties": {
                        "TaskDefinition": ARN,
                        "LoadBalancerInfo": {"ContainerName": "app", "ContainerPort": 8080},
                        "PlatformVersion": "1.4.0",
                        "NetworkConfiguration": {"AwsvpcConfiguration": {
                            "Subnets": ["subnet-1", "subnet-2"],
                            "SecurityGroups": ["sg-1"],
                            "AssignPublicIp": "DISABLED",
                        }},
                        "CapacityProviderStrategy": [
                            {"Base": 1, "CapacityProvider": "FARGATE_SPOT", "Weight": 3}
                        ],
                    },
                }}],
            })
        );
    }

    #[test]
    fn the_sha256_is_of_the_exact_content_sent() {
        let spec = app_spec(ARN, &CodeDeployTarget::default(), &fargate_service()).unwrap();
        assert_eq!(
            spec.sha256,
            hex::encode(Sha256::digest(spec.content.as_bytes()))
        );
        assert_eq!(spec.sha256.len(), 64);
    }

    #[test]
    fn configured_values_win_over_the_service_and_hooks_keep_codedeploy_order() {
        let config = CodeDeployTarget {
            container_name: Some("proxy".into()),
            container_port: Some(443),
            platform_version: Some("LATEST".into()),
            hooks: CodeDeployHooks {
                after_allow_test_traffic: Some("smoke-test".into()),
                before_install: Some("prepare".into()),
                ..CodeDeployHooks::default()
            },
            ..CodeDeployTarget::default()
        };
        let document = parsed(&app_spec(ARN, &config, &fargate_service()).unwrap());
        let properties = &document["Resources"][0]["TargetService"]["Properties"];
        assert_eq!(
            properties["LoadBalancerInfo"],
            json!({"ContainerName": "proxy", "ContainerPort": 443})
        );
        assert_eq!(properties["PlatformVersion"], "LATEST");
        assert_eq!(
            document["Hooks"],
            json!([{"BeforeInstall": "prepare"}, {"AfterAllowTestTraffic": "smoke-test"}])
        );
    }

    #[test]
    fn a_configured_port_completes_the_live_container_name() {
        let config = CodeDeployTarget {
            container_port: Some(9000),
            ..CodeDeployTarget::default()
        };
        let document = parsed(&app_spec(ARN, &config, &fargate_service()).unwrap());
        assert_eq!(
            document["Resources"][0]["TargetService"]["Properties"]["LoadBalancerInfo"],
            json!({"ContainerName": "app", "ContainerPort": 9000})
        );
    }

    #[test]
    fn an_ec2_service_without_awsvpc_or_capacity_providers_leaves_them_out() {
        let service = Service::builder()
            .service_name("web")
            .load_balancers(
                LoadBalancer::builder()
                    .container_name("app")
                    .container_port(80)
                    .build(),
            )
            .build();
        let document = parsed(&app_spec(ARN, &CodeDeployTarget::default(), &service).unwrap());
        let properties = document["Resources"][0]["TargetService"]["Properties"]
            .as_object()
            .unwrap();
        let keys: Vec<&str> = properties.keys().map(String::as_str).collect();
        assert_eq!(keys, ["TaskDefinition", "LoadBalancerInfo"]);
        assert!(document.get("Hooks").is_none());
    }

    #[test]
    fn the_primary_task_set_wins_over_what_the_service_was_created_with() {
        // After a CodeDeploy deployment the service's own fields still hold what CreateService
        // was given; the PRIMARY task set holds what runs now.
        let primary = TaskSet::builder()
            .status("PRIMARY")
            .platform_version("1.4.0")
            .load_balancers(
                LoadBalancer::builder()
                    .container_name("app")
                    .container_port(9090)
                    .build(),
            )
            .network_configuration(
                NetworkConfiguration::builder()
                    .awsvpc_configuration(
                        AwsVpcConfiguration::builder()
                            .subnets("subnet-new")
                            .build()
                            .unwrap(),
                    )
                    .build(),
            )
            .build();
        let active = TaskSet::builder()
            .status("ACTIVE")
            .platform_version("1.3.0")
            .build();
        let service = Service::builder()
            .service_name("web")
            .platform_version("LATEST")
            .load_balancers(
                LoadBalancer::builder()
                    .container_name("app")
                    .container_port(8080)
                    .build(),
            )
            .capacity_provider_strategy(
                CapacityProviderStrategyItem::builder()
                    .capacity_provider("FARGATE")
                    .weight(1)
                    .build()
                    .unwrap(),
            )
            .task_sets(active)
            .task_sets(primary)
            .build();
        let document = parsed(&app_spec(ARN, &CodeDeployTarget::default(), &service).unwrap());
        let properties = &document["Resources"][0]["TargetService"]["Properties"];
        assert_eq!(properties["PlatformVersion"], "1.4.0");
        assert_eq!(properties["LoadBalancerInfo"]["ContainerPort"], 9090);
        assert_eq!(
            properties["NetworkConfiguration"]["AwsvpcConfiguration"]["Subnets"],
            json!(["subnet-new"])
        );
        // What the primary task set does not say comes from the service.
        assert_eq!(
            properties["CapacityProviderStrategy"],
            json!([{"Base": 0, "CapacityProvider": "FARGATE", "Weight": 1}])
        );
    }

    #[test]
    fn no_load_balancer_and_no_configured_container_is_a_config_error() {
        let service = Service::builder().service_name("worker").build();
        let err = app_spec(ARN, &CodeDeployTarget::default(), &service).unwrap_err();
        assert_eq!(err.kind, EcsErrorKind::Config);
        assert!(
            err.message.contains("`worker` has no load balancer"),
            "{}",
            err.message
        );
    }

    #[test]
    fn a_configured_container_of_another_name_needs_its_own_port() {
        let config = CodeDeployTarget {
            container_name: Some("sidecar".into()),
            ..CodeDeployTarget::default()
        };
        let err = app_spec(ARN, &config, &fargate_service()).unwrap_err();
        assert_eq!(err.kind, EcsErrorKind::Config);
        assert!(err.message.contains("`sidecar`"), "{}", err.message);
    }
}
