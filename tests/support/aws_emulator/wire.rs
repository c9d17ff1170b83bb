//! The two wire protocols the emulated services speak: awsJson1_1 (ECS, CodeDeploy, CloudWatch
//! Logs: a JSON body, the operation in `X-Amz-Target`) and awsQuery (ELBv2: a form-encoded body
//! with `Action`, answered in XML).

use serde_json::{Map, Value};

use super::world::random_uuid;

pub const JSON_CONTENT_TYPE: &str = "application/x-amz-json-1.1";
pub const ELB_XML_NAMESPACE: &str = "http://elasticloadbalancing.amazonaws.com/doc/2015-12-01/";

/// An error as the service would send it: its code (the exception's name for JSON services,
/// the short code for the query protocol) and message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AwsError {
    pub status: u16,
    pub code: String,
    pub message: String,
}

impl AwsError {
    pub fn new(code: &str, message: impl Into<String>) -> AwsError {
        AwsError {
            status: 400,
            code: code.into(),
            message: message.into(),
        }
    }
}

/// A decoded request: which service and operation, and its input as JSON.
#[derive(Clone, Debug)]
pub struct Request {
    pub service: &'static str,
    pub operation: String,
    pub body: Value,
}

/// The response to write: status, content type and body.
#[derive(Clone, Debug)]
pub struct Response {
    pub status: u16,
    pub content_type: &'static str,
    pub body: String,
}

/// Reads the service and operation from the target header (JSON) or the `Action` field (query).
pub fn decode(target: Option<&str>, body: &[u8]) -> Result<Request, AwsError> {
    if let Some(target) = target {
        let (prefix, operation) = target
            .split_once('.')
            .ok_or_else(|| unknown_operation(target))?;
        let service = match prefix {
            "AmazonEC2ContainerServiceV20141113" => "ecs",
            "CodeDeploy_20141006" => "codedeploy",
            "Logs_20140328" => "logs",
            _ => return Err(unknown_operation(target)),
        };
        let body = if body.is_empty() {
            Value::Object(Map::new())
        } else {
            serde_json::from_slice(body).map_err(|err| {
                AwsError::new(
                    "SerializationException",
                    format!("invalid JSON body: {err}"),
                )
            })?
        };
        return Ok(Request {
            service,
            operation: operation.to_owned(),
            body,
        });
    }
    let fields: Map<String, Value> = form_urlencoded::parse(body)
        .map(|(k, v)| (k.into_owned(), Value::String(v.into_owned())))
        .collect();
    let operation = fields
        .get("Action")
        .and_then(Value::as_str)
        .ok_or_else(|| AwsError::new("MissingAction", "Missing Action"))?
        .to_owned();
    Ok(Request {
        service: "elasticloadbalancing",
        operation,
        body: Value::Object(fields),
    })
}

pub fn unknown_operation(operation: &str) -> AwsError {
    AwsError::new(
        "UnknownOperationException",
        format!("Unknown operation {operation}"),
    )
}

/// Encodes a successful answer in the service's protocol; `result` is JSON for JSON services and
/// the inner XML of `<{Operation}Result>` for the query protocol.
pub fn success(service: &str, operation: &str, result: Value) -> Response {
    if service == "elasticloadbalancing" {
        let inner = result.as_str().unwrap_or_default();
        return Response {
            status: 200,
            content_type: "text/xml",
            body: format!(
                "<{operation}Response xmlns=\"{ELB_XML_NAMESPACE}\"><{operation}Result>{inner}</{operation}Result>\
                 <ResponseMetadata><RequestId>{}</RequestId></ResponseMetadata></{operation}Response>",
                random_uuid()
            ),
        };
    }
    Response {
        status: 200,
        content_type: JSON_CONTENT_TYPE,
        body: result.to_string(),
    }
}

/// Encodes an error in the service's protocol.
pub fn failure(service: &str, error: &AwsError) -> Response {
    if service == "elasticloadbalancing" {
        return Response {
            status: error.status,
            content_type: "text/xml",
            body: format!(
                "<ErrorResponse xmlns=\"{ELB_XML_NAMESPACE}\"><Error><Type>Sender</Type><Code>{}</Code>\
                 <Message>{}</Message></Error><RequestId>{}</RequestId></ErrorResponse>",
                xml_escape(&error.code),
                xml_escape(&error.message),
                random_uuid()
            ),
        };
    }
    Response {
        status: error.status,
        content_type: JSON_CONTENT_TYPE,
        body: serde_json::json!({"__type": error.code, "message": error.message}).to_string(),
    }
}

pub fn xml_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&apos;")
}

/// A string field of a JSON input, if present.
pub fn text<'a>(input: &'a Value, field: &str) -> Option<&'a str> {
    input.get(field).and_then(Value::as_str)
}

/// A required string field, or the validation error the services send.
pub fn required<'a>(input: &'a Value, field: &str, code: &str) -> Result<&'a str, AwsError> {
    text(input, field).ok_or_else(|| AwsError::new(code, format!("{field} is required")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_query_request_is_read_from_its_form_fields() {
        let request = decode(
            None,
            b"Action=DescribeTargetHealth&Version=2015-12-01&TargetGroupArn=arn%3Aaws%3Atg",
        )
        .unwrap();
        assert_eq!(request.service, "elasticloadbalancing");
        assert_eq!(request.operation, "DescribeTargetHealth");
        assert_eq!(request.body["TargetGroupArn"], "arn:aws:tg");
    }
}
