//! shipit's ECS requests and its reading of the answers, against moto: a model of the ECS API
//! nobody here wrote. moto's deployments never progress, so this covers what needs no rollout:
//! preflight, the plan, and registering a task definition with the fields that matter (roles,
//! secrets, awslogs) exactly as the file has them.

mod support;

use std::collections::BTreeMap;

use aws_credential_types::Credentials;
use serde_json::{Value, json};
use shipit::deploy::ecs::{
    EcsCheckpoint, EcsClients, EcsDeploySpec, EcsObserver, TaskDefinitionSource,
};
use support::{testenv, unique_name};
use tokio_util::sync::CancellationToken;

const DIGEST: &str = "123456789012.dkr.ecr.us-east-1.amazonaws.com/web@sha256:1111111111111111111111111111111111111111111111111111111111111111";

async fn sdk_config() -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new(testenv("SHIPIT_TEST_AWS_REGION")))
        .endpoint_url(testenv("SHIPIT_TEST_AWS_ENDPOINT_URL"))
        .credentials_provider(Credentials::for_tests())
        .load()
        .await
}

async fn clients() -> EcsClients {
    let config = sdk_config().await;
    EcsClients {
        ecs: aws_sdk_ecs::Client::new(&config),
        codedeploy: aws_sdk_codedeploy::Client::new(&config),
        logs: aws_sdk_cloudwatchlogs::Client::new(&config),
        elb: aws_sdk_elasticloadbalancingv2::Client::new(&config),
        region: testenv("SHIPIT_TEST_AWS_REGION"),
    }
}

fn task_definition(family: &str) -> Value {
    json!({
        "family": family,
        "taskRoleArn": "arn:aws:iam::123456789012:role/web-task",
        "executionRoleArn": "arn:aws:iam::123456789012:role/web-exec",
        "networkMode": "bridge",
        "containerDefinitions": [{
            "name": "web",
            "image": "web:latest",
            "memory": 256,
            "essential": true,
            "portMappings": [{"containerPort": 8080, "hostPort": 0, "protocol": "tcp"}],
            "environment": [{"name": "LOG_LEVEL", "value": "info"}],
            "secrets": [
                {"name": "API_KEY", "valueFrom": "arn:aws:ssm:us-east-1:123456789012:parameter/web/api-key"},
                {"name": "DB", "valueFrom": "arn:aws:secretsmanager:us-east-1:123456789012:secret:web/db-AbCdEf"}
            ],
            "logConfiguration": {
                "logDriver": "awslogs",
                "options": {"awslogs-group": "/ecs/web", "awslogs-region": "us-east-1", "awslogs-stream-prefix": "ecs"}
            }
        }]
    })
}

/// A cluster and a service on a first revision, made through the SDK as another tool would.
async fn service_on_moto(clients: &EcsClients, name: &str) -> String {
    let ecs = &clients.ecs;
    ecs.create_cluster()
        .cluster_name(name)
        .send()
        .await
        .expect("create cluster");
    let first = ecs
        .register_task_definition()
        .family(name)
        .container_definitions(
            aws_sdk_ecs::types::ContainerDefinition::builder()
                .name("web")
                .image("web:1")
                .memory(256)
                .build(),
        )
        .send()
        .await
        .expect("register the first revision");
    let arn = first
        .task_definition()
        .and_then(|t| t.task_definition_arn())
        .unwrap()
        .to_owned();
    ecs.create_service()
        .cluster(name)
        .service_name(name)
        .task_definition(&arn)
        .desired_count(1)
        .send()
        .await
        .expect("create service");
    arn
}

fn spec(name: &str, document: Value) -> EcsDeploySpec {
    let config = serde_json::from_value(json!({
        "cluster": name, "service": name, "task_definition": "taskdef.json", "container": "web"
    }))
    .unwrap();
    EcsDeploySpec {
        pipeline: "moto".to_owned(),
        target: "web".to_owned(),
        run_id: "run-1".to_owned(),
        git_sha: Some("abc123".to_owned()),
        config,
        task_definition: TaskDefinitionSource::File {
            path: "taskdef.json".to_owned(),
            document,
        },
        images: BTreeMap::from([("web".to_owned(), DIGEST.to_owned())]),
    }
}

#[derive(Default)]
struct Recorder {
    checkpoints: std::sync::Mutex<Vec<EcsCheckpoint>>,
}

#[async_trait::async_trait]
impl EcsObserver for Recorder {
    fn on_progress(&self, _line: &str) {}
    async fn on_checkpoint(&self, checkpoint: &EcsCheckpoint) -> Result<(), String> {
        self.checkpoints.lock().unwrap().push(checkpoint.clone());
        Ok(())
    }
}

#[tokio::test]
async fn preflight_preview_and_registration_speak_moto_s_ecs() {
    let clients = clients().await;
    let name = unique_name("ecs-moto");
    let first = service_on_moto(&clients, &name).await;
    let file = task_definition(&name);
    let spec = spec(&name, file.clone());

    shipit::deploy::ecs::preflight(&clients, &spec)
        .await
        .expect("preflight");
    let plan = shipit::deploy::ecs::preview(&clients, &spec)
        .await
        .expect("preview");
    let plan_text = plan.join("\n");
    assert!(
        plan_text.contains(&format!(
            "containerDefinitions[web].image: web:1 → {DIGEST}"
        )),
        "{plan_text}"
    );
    assert!(
        !plan_text.contains("info"),
        "an environment value was shown:\n{plan_text}"
    );

    // moto's deployments never finish: cancel at once; registration and the update happened.
    let recorder = Recorder::default();
    let cancel = CancellationToken::new();
    cancel.cancel();
    let result = shipit::deploy::ecs::deploy(&clients, &spec, None, &recorder, cancel).await;
    let checkpoints = recorder.checkpoints.lock().unwrap().clone();
    let registered = checkpoints[0]
        .task_definition_arn
        .clone()
        .expect("a registered revision");
    assert_ne!(registered, first);
    assert_eq!(
        checkpoints[0].previous_task_definition_arn.as_deref(),
        Some(first.as_str())
    );
    match result {
        Ok(outcome) => assert!(outcome.registered, "{outcome:?}"),
        Err(err) => assert_eq!(
            err.kind,
            shipit::deploy::ecs::EcsErrorKind::Cancelled,
            "{err:?}"
        ),
    }
    assert!(
        checkpoints.iter().any(|c| c.deployment_id.is_some()),
        "the deployment was journaled: {checkpoints:?}"
    );

    let stored = clients
        .ecs
        .describe_task_definition()
        .task_definition(&registered)
        .include(aws_sdk_ecs::types::TaskDefinitionField::Tags)
        .send()
        .await
        .unwrap();
    let definition = stored.task_definition().unwrap();
    assert_eq!(
        definition.task_role_arn(),
        Some("arn:aws:iam::123456789012:role/web-task")
    );
    assert_eq!(
        definition.execution_role_arn(),
        Some("arn:aws:iam::123456789012:role/web-exec")
    );
    let web = &definition.container_definitions()[0];
    assert_eq!(web.image(), Some(DIGEST));
    let secrets: Vec<_> = web
        .secrets()
        .iter()
        .map(|s| (s.name(), s.value_from()))
        .collect();
    assert_eq!(
        secrets,
        [
            (
                "API_KEY",
                "arn:aws:ssm:us-east-1:123456789012:parameter/web/api-key"
            ),
            (
                "DB",
                "arn:aws:secretsmanager:us-east-1:123456789012:secret:web/db-AbCdEf"
            )
        ]
    );
    let logging = web.log_configuration().unwrap();
    assert_eq!(logging.log_driver().as_str(), "awslogs");
    assert_eq!(
        logging
            .options()
            .unwrap()
            .get("awslogs-group")
            .map(String::as_str),
        Some("/ecs/web")
    );
    let tags: Vec<_> = stored
        .tags()
        .iter()
        .map(|t| (t.key().unwrap_or(""), t.value().unwrap_or("")))
        .collect();
    assert!(tags.contains(&("shipit:run-id", "run-1")), "{tags:?}");

    // The service now runs the registered revision: the same file plans as unchanged.
    let again = shipit::deploy::ecs::preview(&clients, &spec)
        .await
        .expect("second preview");
    let revision = registered.rsplit('/').next().unwrap();
    assert_eq!(
        again[0],
        format!("task definition: unchanged ({revision})"),
        "{again:?}"
    );
}

#[tokio::test]
async fn a_missing_service_and_a_missing_container_are_config_errors() {
    let clients = clients().await;
    let name = unique_name("ecs-moto-missing");
    service_on_moto(&clients, &name).await;
    let mut absent = spec(&name, task_definition(&name));
    absent.config.service = "nope".to_owned();
    let err = shipit::deploy::ecs::preflight(&clients, &absent)
        .await
        .unwrap_err();
    assert_eq!(
        err.kind,
        shipit::deploy::ecs::EcsErrorKind::Config,
        "{err:?}"
    );
    assert!(err.message.contains("`nope`"), "{}", err.message);

    let mut other_container = spec(&name, task_definition(&name));
    other_container.images = BTreeMap::from([("api".to_owned(), DIGEST.to_owned())]);
    let err = shipit::deploy::ecs::preflight(&clients, &other_container)
        .await
        .unwrap_err();
    assert_eq!(
        err.message,
        "taskdef.json has no container `api`; it has `web`"
    );
}
