//! WATCH: a chunked stream of JSON lines `{type, object}`, replaying the history after the
//! requested resourceVersion (or every current object as ADDED), then following changes, with
//! BOOKMARKs when asked for and an end after `timeoutSeconds`.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures::SinkExt;
use futures::channel::mpsc;
use serde_json::{Value, json};

use super::rest::WatchRequest;
use super::world::World;

const BOOKMARK_EVERY: Duration = Duration::from_secs(1);

fn lock(world: &Mutex<World>) -> std::sync::MutexGuard<'_, World> {
    world
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn line(kind: &str, object: &Value) -> Bytes {
    let mut text = json!({"type": kind, "object": object}).to_string();
    text.push('\n');
    Bytes::from(text)
}

fn wanted(request: &WatchRequest, object: &Value) -> bool {
    request
        .namespace
        .as_deref()
        .is_none_or(|ns| object["metadata"]["namespace"].as_str() == Some(ns))
        && request.labels.matches(object)
        && request.fields.matches(object)
}

/// Streams the watch into `sender` until the timeout or the client hangs up.
pub async fn stream(
    world: Arc<Mutex<World>>,
    request: WatchRequest,
    mut sender: mpsc::Sender<Bytes>,
) {
    let (mut seen, mut changed, mut lines) = {
        let world = lock(&world);
        let mut lines = Vec::new();
        let seen = match request.since {
            Some(since) => since,
            None => {
                for ((plural, _, _), object) in &world.objects {
                    if *plural == request.plural && wanted(&request, object) {
                        lines.push(line("ADDED", object));
                    }
                }
                world.resource_version
            }
        };
        (seen, world.changed.subscribe(), lines)
    };
    let deadline = tokio::time::Instant::now() + request.timeout;
    let mut bookmarks = tokio::time::interval(BOOKMARK_EVERY);
    bookmarks.tick().await;
    loop {
        {
            let world = lock(&world);
            for change in world.changes_after(seen) {
                if change.plural == request.plural && wanted(&request, &change.object) {
                    lines.push(line(change.kind, &change.object));
                }
            }
            seen = world.resource_version;
        }
        for chunk in lines.drain(..) {
            if sender.send(chunk).await.is_err() {
                return;
            }
        }
        tokio::select! {
            _ = tokio::time::sleep_until(deadline) => return,
            result = changed.changed() => if result.is_err() { return },
            _ = bookmarks.tick() => {
                if request.bookmarks {
                    let kind = super::resources::RESOURCES.iter().find(|r| r.plural == request.plural);
                    let bookmark = json!({
                        "kind": kind.map(|r| r.kind), "apiVersion": kind.map(|r| r.api_version()),
                        "metadata": {"resourceVersion": seen.to_string()},
                    });
                    lines.push(line("BOOKMARK", &bookmark));
                }
            }
        }
    }
}
