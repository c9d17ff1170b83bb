//! Task definitions in the shapes ECS really uses, for the tests of this module.

use serde_json::{Value, json};

pub(crate) const WEB_DIGEST: &str = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/web@sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

/// A Fargate task definition using most of what ECS offers, as a user writes it.
pub(crate) fn full_register_input() -> Value {
    json!({
        "family": "web",
        "taskRoleArn": "arn:aws:iam::123456789012:role/web-task",
        "executionRoleArn": "arn:aws:iam::123456789012:role/web-exec",
        "networkMode": "awsvpc",
        "requiresCompatibilities": ["FARGATE"],
        "cpu": "512",
        "memory": "1024",
        "runtimePlatform": {"cpuArchitecture": "ARM64", "operatingSystemFamily": "LINUX"},
        "ephemeralStorage": {"sizeInGiB": 30},
        "proxyConfiguration": {
            "type": "APPMESH",
            "containerName": "envoy",
            "properties": [{"name": "IgnoredUID", "value": "1337"}]
        },
        "placementConstraints": [{"type": "memberOf", "expression": "attribute:ecs.os-type == linux"}],
        "volumes": [{
            "name": "shared",
            "efsVolumeConfiguration": {
                "fileSystemId": "fs-0123",
                "transitEncryption": "ENABLED",
                "authorizationConfig": {"accessPointId": "fsap-0123", "iam": "ENABLED"}
            }
        }],
        "containerDefinitions": [
            {
                "name": "web",
                "image": "web:latest",
                "portMappings": [{"containerPort": 8080}],
                "environment": [
                    {"name": "LOG_LEVEL", "value": "info"},
                    {"name": "DATABASE_PASSWORD", "value": "hunter2"}
                ],
                "secrets": [
                    {"name": "API_KEY", "valueFrom": "arn:aws:ssm:eu-west-1:123456789012:parameter/web/api-key"},
                    {"name": "DB", "valueFrom": "arn:aws:secretsmanager:eu-west-1:123456789012:secret:web/db-AbCdEf"}
                ],
                "logConfiguration": {
                    "logDriver": "awslogs",
                    "options": {
                        "awslogs-group": "/ecs/web",
                        "awslogs-region": "eu-west-1",
                        "awslogs-stream-prefix": "ecs"
                    }
                },
                "mountPoints": [{"sourceVolume": "shared", "containerPath": "/data", "readOnly": false}],
                "ulimits": [{"name": "nofile", "softLimit": 65536, "hardLimit": 65536}],
                "healthCheck": {
                    "command": ["CMD-SHELL", "wget -qO- localhost:8080/health || exit 1"],
                    "interval": 10, "timeout": 5, "retries": 3, "startPeriod": 20
                },
                "dependsOn": [{"containerName": "envoy", "condition": "HEALTHY"}],
                "aNewerField": {"the SDK": "does not know it yet"}
            },
            {
                "name": "envoy",
                "image": "public.ecr.aws/appmesh/aws-appmesh-envoy:v1.29",
                "essential": true,
                "user": "1337"
            }
        ]
    })
}

/// What `describe-task-definition --include TAGS` returns for `input` registered as
/// `revision`: the read-only fields, and every default ECS fills in.
pub(crate) fn described(input: &Value, revision: u32) -> Value {
    let mut definition = input.clone();
    let family = definition["family"].as_str().unwrap_or("web").to_owned();
    let awsvpc = definition["networkMode"] == "awsvpc";
    if let Some(containers) = definition["containerDefinitions"].as_array_mut() {
        for container in containers {
            let container = container.as_object_mut().unwrap();
            container.entry("cpu").or_insert(json!(0));
            container.entry("essential").or_insert(json!(true));
            for empty in [
                "mountPoints",
                "volumesFrom",
                "environment",
                "systemControls",
                "portMappings",
            ] {
                container.entry(empty).or_insert(json!([]));
            }
            if let Some(ports) = container
                .get_mut("portMappings")
                .and_then(Value::as_array_mut)
            {
                for port in ports {
                    let port = port.as_object_mut().unwrap();
                    port.entry("protocol").or_insert(json!("tcp"));
                    if awsvpc {
                        let container_port = port["containerPort"].clone();
                        port.entry("hostPort").or_insert(container_port);
                    }
                }
            }
        }
    }
    let definition_object = definition.as_object_mut().unwrap();
    definition_object.insert(
        "taskDefinitionArn".into(),
        json!(format!(
            "arn:aws:ecs:eu-west-1:123456789012:task-definition/{family}:{revision}"
        )),
    );
    definition_object.insert("revision".into(), json!(revision));
    definition_object.insert("status".into(), json!("ACTIVE"));
    definition_object.insert(
        "requiresAttributes".into(),
        json!([{"name": "ecs.capability.secrets.ssm.environment-variables"}]),
    );
    definition_object.insert("compatibilities".into(), json!(["EC2", "FARGATE"]));
    definition_object.insert("registeredAt".into(), json!(1_700_000_000.5));
    definition_object.insert(
        "registeredBy".into(),
        json!("arn:aws:sts::123456789012:assumed-role/ci/run"),
    );
    definition_object.entry("volumes").or_insert(json!([]));
    definition_object
        .entry("placementConstraints")
        .or_insert(json!([]));
    json!({"taskDefinition": definition, "tags": [{"key": "team", "value": "payments"}]})
}
