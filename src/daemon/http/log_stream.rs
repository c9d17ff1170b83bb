//! `GET /api/runs/{id}/log`: the run's log as server-sent events. The lines already stored come
//! first, then new ones as the queue shows them (polled, because the run may be executing in
//! another daemon sharing the database), and an `end` event once the run is over and every line
//! was sent. Each line's number is its event id, so a client that reconnects with
//! `Last-Event-ID` continues where it was.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::stream;

use super::api::queue_error;
use super::state::ServerState;
use crate::daemon::queue::{QueueId, QueueState};

/// Lines fetched per query; a long backlog arrives in pages.
const PAGE: usize = 500;

fn is_over(state: QueueState) -> bool {
    !matches!(state, QueueState::Queued | QueueState::Running)
}

struct Follow {
    state: Arc<ServerState>,
    id: QueueId,
    after: u64,
    pending: VecDeque<(u64, String)>,
    done: bool,
}

pub async fn follow(
    State(state): State<Arc<ServerState>>,
    Path(id): Path<QueueId>,
    headers: HeaderMap,
) -> Response {
    if let Err(err) = state.queue.get(id).await {
        return queue_error(err);
    }
    let after = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    let start = Follow {
        state,
        id,
        after,
        pending: VecDeque::new(),
        done: false,
    };
    let events = stream::unfold(start, |mut follow| async move {
        loop {
            if let Some((number, line)) = follow.pending.pop_front() {
                let event = Event::default().id(number.to_string()).data(line);
                return Some((Ok::<_, Infallible>(event), follow));
            }
            if follow.done || follow.state.shutdown.is_cancelled() {
                return None;
            }
            match next_page(&follow).await {
                Ok(Page::Lines(lines)) => {
                    follow.after = lines.last().map_or(follow.after, |(n, _)| *n);
                    follow.pending.extend(lines);
                }
                Ok(Page::Over(state)) => {
                    follow.done = true;
                    let state = serde_json::to_value(state).unwrap_or_default();
                    let event = Event::default()
                        .event("end")
                        .data(state.as_str().unwrap_or_default());
                    return Some((Ok(event), follow));
                }
                Ok(Page::Nothing) => {
                    tokio::select! {
                        () = tokio::time::sleep(follow.state.log_poll) => {}
                        () = follow.state.shutdown.cancelled() => return None,
                    }
                }
                Err(message) => {
                    follow.done = true;
                    let event = Event::default().event("error").data(message);
                    return Some((Ok(event), follow));
                }
            }
        }
    });
    Sse::new(events)
        .keep_alive(KeepAlive::default())
        .into_response()
}

enum Page {
    Lines(Vec<(u64, String)>),
    /// No more lines, and the run is over: its final state.
    Over(QueueState),
    Nothing,
}

async fn next_page(follow: &Follow) -> Result<Page, String> {
    let queue = &follow.state.queue;
    let failed = |err: crate::daemon::queue::QueueError| {
        tracing::warn!(run = follow.id, error = %err, "failed to read a run's log");
        "failed to read the log; reconnect to continue".to_owned()
    };
    let lines = queue
        .log_after(follow.id, follow.after, PAGE)
        .await
        .map_err(failed)?;
    if !lines.is_empty() {
        return Ok(Page::Lines(lines));
    }
    let run = queue.get(follow.id).await.map_err(failed)?;
    if !is_over(run.state) {
        return Ok(Page::Nothing);
    }
    // Lines appended between the read above and the run ending are read once more, so the
    // stream never ends before the last line.
    let lines = queue
        .log_after(follow.id, follow.after, PAGE)
        .await
        .map_err(failed)?;
    Ok(if lines.is_empty() {
        Page::Over(run.state)
    } else {
        Page::Lines(lines)
    })
}
