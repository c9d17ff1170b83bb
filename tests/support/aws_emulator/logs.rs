//! CloudWatch Logs' GetLogEvents over the streams failing tasks wrote.

use serde_json::{Value, json};

use super::wire::{AwsError, text, unknown_operation};
use super::world::World;

pub fn handle(world: &World, operation: &str, input: &Value) -> Result<Value, AwsError> {
    match operation {
        "GetLogEvents" => get_log_events(world, input),
        _ => Err(unknown_operation(operation)),
    }
}

/// Tokens are `f/<index>` and `b/<index>`: the position in the stream to read from.
fn token_index(token: Option<&str>) -> Option<usize> {
    token?.get(2..)?.parse().ok()
}

fn get_log_events(world: &World, input: &Value) -> Result<Value, AwsError> {
    let missing = || {
        AwsError::new(
            "ResourceNotFoundException",
            "The specified log stream does not exist.",
        )
    };
    let group = text(input, "logGroupName").ok_or_else(missing)?;
    let stream = text(input, "logStreamName").ok_or_else(missing)?;
    let events = world
        .logs
        .get(&(group.to_owned(), stream.to_owned()))
        .ok_or_else(missing)?;
    let limit = input["limit"]
        .as_u64()
        .map_or(10_000, |l| l as usize)
        .max(1);
    let from_head = input["startFromHead"].as_bool().unwrap_or(false);
    let (start, end) = match token_index(text(input, "nextToken")) {
        Some(index) => {
            let index = index.min(events.len());
            if text(input, "nextToken").is_some_and(|t| t.starts_with("b/")) {
                (index.saturating_sub(limit), index)
            } else {
                (index, (index + limit).min(events.len()))
            }
        }
        None if from_head => (0, limit.min(events.len())),
        None => (events.len().saturating_sub(limit), events.len()),
    };
    let page: Vec<Value> = events[start..end]
        .iter()
        .map(|e| json!({"timestamp": e.timestamp_ms, "message": e.message, "ingestionTime": e.timestamp_ms + 200}))
        .collect();
    Ok(json!({
        "events": page,
        "nextForwardToken": format!("f/{end:056}"),
        "nextBackwardToken": format!("b/{start:056}"),
    }))
}
