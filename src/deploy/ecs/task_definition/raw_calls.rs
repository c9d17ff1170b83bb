//! RegisterTaskDefinition and DescribeTaskDefinition with the task definition as JSON. The SDK
//! still signs, resolves the endpoint, retries and parses errors; only the request body (on
//! registration) and the response body (on describe) are taken as they are, so a field the
//! SDK's model does not know yet is neither dropped on the way out nor on the way in.

use std::sync::{Arc, Mutex};

use aws_sdk_ecs::config::interceptors::{
    AfterDeserializationInterceptorContextRef, BeforeTransmitInterceptorContextMut,
};
use aws_sdk_ecs::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_ecs::types::TaskDefinitionField;
use aws_smithy_types::body::SdkBody;
use serde_json::Value;

use crate::deploy::ecs::api_error::{CallError, CallSite, call_error};
use crate::deploy::ecs::error::EcsDeployError;

use super::document::TaskDefinitionDocument;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A registered revision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Registered {
    pub(crate) arn: String,
}

/// Registers `request` (the register-task-definition input, tags included) as it is.
pub(crate) async fn register(
    ecs: &aws_sdk_ecs::Client,
    request: &Value,
    site: CallSite<'_>,
) -> Result<Registered, CallError> {
    let family = request
        .get("family")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let body = serde_json::to_vec(request).unwrap_or_default();
    let output = ecs
        .register_task_definition()
        // The SDK's own serialisation of these is replaced by `body` below.
        .family(family)
        .set_container_definitions(Some(Vec::new()))
        .customize()
        .interceptor(JsonRequestBody { body })
        .send()
        .await
        .map_err(|err| call_error(&err, "ecs:RegisterTaskDefinition", site))?;
    let arn = output
        .task_definition()
        .and_then(|definition| definition.task_definition_arn())
        .ok_or_else(|| CallError {
            error: EcsDeployError::remote(
                "ecs:RegisterTaskDefinition answered without a task definition ARN",
            ),
            throttled: false,
            code: None,
        })?;
    Ok(Registered {
        arn: arn.to_owned(),
    })
}

/// The revision `task_definition` (an ARN or `family:revision`) as the JSON ECS returns, tags
/// included.
pub(crate) async fn describe(
    ecs: &aws_sdk_ecs::Client,
    task_definition: &str,
    site: CallSite<'_>,
) -> Result<TaskDefinitionDocument, CallError> {
    let captured = JsonResponseBody::default();
    ecs.describe_task_definition()
        .task_definition(task_definition)
        .include(TaskDefinitionField::Tags)
        .customize()
        .interceptor(captured.clone())
        .send()
        .await
        .map_err(|err| call_error(&err, "ecs:DescribeTaskDefinition", site))?;
    let unreadable = |why: String| CallError {
        error: EcsDeployError::remote(format!(
            "ecs:DescribeTaskDefinition of {task_definition} answered {why}"
        )),
        throttled: false,
        code: None,
    };
    let bytes = captured
        .0
        .lock()
        .ok()
        .and_then(|mut body| body.take())
        .ok_or_else(|| unreadable("no body".to_owned()))?;
    let document: Value = serde_json::from_slice(&bytes)
        .map_err(|err| unreadable(format!("something that is not JSON ({err})")))?;
    TaskDefinitionDocument::from_json(&document, task_definition).map_err(|error| CallError {
        error,
        throttled: false,
        code: None,
    })
}

/// Puts the task definition's JSON in place of the SDK's serialisation, before signing.
#[derive(Debug)]
struct JsonRequestBody {
    body: Vec<u8>,
}

impl Intercept for JsonRequestBody {
    fn name(&self) -> &'static str {
        "shipit task definition request body"
    }

    fn modify_before_signing(
        &self,
        context: &mut BeforeTransmitInterceptorContextMut<'_>,
        _runtime_components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let request = context.request_mut();
        *request.body_mut() = SdkBody::from(self.body.clone());
        request
            .headers_mut()
            .insert("content-length", self.body.len().to_string());
        Ok(())
    }
}

/// Keeps the response body the SDK parsed.
#[derive(Debug, Default, Clone)]
struct JsonResponseBody(Arc<Mutex<Option<Vec<u8>>>>);

impl Intercept for JsonResponseBody {
    fn name(&self) -> &'static str {
        "shipit task definition response body"
    }

    fn read_after_deserialization(
        &self,
        context: &AfterDeserializationInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if let (Some(bytes), Ok(mut captured)) = (context.response().body().bytes(), self.0.lock())
        {
            *captured = Some(bytes.to_vec());
        }
        Ok(())
    }
}
