//! The reporter of a daemon run: the same lines `shipit run` prints in CI (the plain renderer),
//! masked, appended to the run's log in the queue in batches, so that any daemon can serve
//! them. It also notes the run's journal id in the queue as soon as the run has one.

use std::io::Write;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::sync::mpsc;

use super::patient_store::Patience;
use crate::daemon::queue::{Queue, QueueError, QueueId};
use crate::report::plain::PlainReporter;
use crate::report::{Event, Reporter, Verbosity};

/// Lines written at most this long before they reach the queue.
const FLUSH_EVERY: Duration = Duration::from_millis(500);
/// Lines sent in one append at most.
const BATCH: usize = 200;

enum Item {
    Line(String),
    RunId(String),
}

/// Values replaced by `***` in every line: the repository's configured env values and the
/// secrets the run registers.
type Masks = Arc<RwLock<Vec<String>>>;

pub(crate) struct QueueLog {
    plain: PlainReporter,
    masks: Masks,
    sender: mpsc::UnboundedSender<Item>,
}

/// Delivers what a `QueueLog` sends until the log is dropped, then returns.
pub(crate) struct LogWriter {
    task: tokio::task::JoinHandle<()>,
}

impl LogWriter {
    /// Waits until every line was appended (or could not be).
    pub(crate) async fn finished(self) {
        let _ = self.task.await;
    }
}

impl QueueLog {
    /// Lines go to `queue` in the background; while its database is unreachable they wait
    /// (in memory) for it with `patience`, so that an outage loses none.
    pub(crate) fn start(
        queue: Arc<dyn Queue>,
        daemon: String,
        id: QueueId,
        masks: Vec<String>,
        patience: Patience,
    ) -> (Self, LogWriter) {
        let masks: Masks = Arc::new(RwLock::new(
            masks.into_iter().filter(|m| !m.is_empty()).collect(),
        ));
        let (sender, receiver) = mpsc::unbounded_channel();
        let lines = LineSink {
            pending: Vec::new(),
            masks: masks.clone(),
            sender: sender.clone(),
        };
        let plain = PlainReporter::new(
            Box::new(lines),
            None,
            Verbosity::Normal,
            false,
            PlainReporter::wall_clock(),
        );
        let task = tokio::spawn(deliver(queue, daemon, id, receiver, patience));
        (
            QueueLog {
                plain,
                masks,
                sender,
            },
            LogWriter { task },
        )
    }

    /// A line of the daemon's own (why a run was refused).
    pub(crate) fn line(&self, text: &str) {
        let _ = self.sender.send(Item::Line(mask(text, &self.masks)));
    }
}

impl Reporter for QueueLog {
    fn report(&self, event: &Event) {
        if let Event::RunStarted { run_id, .. } = event {
            let _ = self.sender.send(Item::RunId(run_id.clone()));
        }
        self.plain.report(event);
    }

    fn register_secret(&self, value: &str) {
        if !value.is_empty() {
            self.masks
                .write()
                .unwrap_or_else(|e| e.into_inner())
                .push(value.to_owned());
        }
    }
}

fn mask(line: &str, masks: &Masks) -> String {
    let masks = masks.read().unwrap_or_else(|e| e.into_inner());
    // Longest first, so that a secret containing another is masked whole.
    let mut sorted: Vec<&String> = masks.iter().collect();
    sorted.sort_by_key(|m| std::cmp::Reverse(m.len()));
    sorted.into_iter().fold(line.to_owned(), |line, secret| {
        line.replace(secret.as_str(), "***")
    })
}

/// The plain renderer's output, cut into lines.
struct LineSink {
    pending: Vec<u8>,
    masks: Masks,
    sender: mpsc::UnboundedSender<Item>,
}

impl Write for LineSink {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.pending.extend_from_slice(bytes);
        while let Some(end) = self.pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.pending.drain(..=end).collect();
            let text = String::from_utf8_lossy(&line[..end]);
            let _ = self.sender.send(Item::Line(mask(&text, &self.masks)));
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

async fn deliver(
    queue: Arc<dyn Queue>,
    daemon: String,
    id: QueueId,
    mut receiver: mpsc::UnboundedReceiver<Item>,
    patience: Patience,
) {
    let mut items = Vec::new();
    loop {
        if receiver.recv_many(&mut items, BATCH).await == 0 {
            return;
        }
        let mut lines = Vec::new();
        for item in items.drain(..) {
            match item {
                Item::Line(line) => lines.push(line),
                Item::RunId(run_id) => {
                    let noted = patience
                        .call(
                            "note the journal run id",
                            QueueError::is_unavailable,
                            || queue.set_run_id(&daemon, id, &run_id),
                        )
                        .await;
                    if let Err(err) = noted {
                        tracing::warn!(run = id, error = %err, "failed to note the journal run id");
                    }
                }
            }
        }
        // Lines that reached a database whose answer was lost are appended again: an outage
        // may repeat a few lines, never drop them.
        if !lines.is_empty()
            && let Err(err) = patience
                .call("append the run's log", QueueError::is_unavailable, || {
                    queue.append_log(id, &lines)
                })
                .await
        {
            tracing::warn!(run = id, lines = lines.len(), error = %err, "failed to append log lines");
        }
        // Gather the next lines for a moment instead of one append per line.
        if !receiver.is_closed() {
            tokio::time::sleep(FLUSH_EVERY).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::daemon::queue::SqliteQueue;
    use crate::daemon::queue::conformance::new_run;

    #[tokio::test]
    async fn configured_and_registered_secrets_never_reach_the_queue() {
        let dir = tempfile::tempdir().unwrap();
        let queue: Arc<dyn Queue> = Arc::new(SqliteQueue::new(dir.path().join("daemon.db")));
        let id = queue.enqueue(new_run("refs/heads/main", 1)).await.unwrap();
        let patience = Patience::new(tokio_util::sync::CancellationToken::new());
        let (log, writer) = QueueLog::start(
            queue.clone(),
            "a".into(),
            id,
            vec!["t0ken".into()],
            patience,
        );
        log.register_secret("hunter2");
        log.report(&Event::Warning {
            message: "pushing with t0ken and hunter2".into(),
        });
        log.line("error: t0ken refused");
        drop(log);
        writer.finished().await;
        let lines: Vec<String> = queue
            .log_after(id, 0, 100)
            .await
            .unwrap()
            .into_iter()
            .map(|(_, line)| line)
            .collect();
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert!(lines[0].ends_with("pushing with *** and ***"), "{lines:?}");
        assert_eq!(lines[1], "error: *** refused");
    }
}
