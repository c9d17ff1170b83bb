//! Group commit for `accept`, shared by both queues: deliveries that arrive while a write
//! transaction is being committed wait in an intake, and the next transaction takes all of
//! them, so that N concurrent webhooks cost one commit (one fsync, one lock of their key)
//! instead of N. Each caller still gets its own answer, and only once the transaction holding
//! its delivery committed.
//!
//! There is no writer task while nothing arrives: the accept that finds no writer running
//! starts one, and it stops when the intake is empty. A delivery never waits for a timer, only
//! for the transaction before its own.
//!
//! `Intake` is the bookkeeping (which caller starts the writer, what the next batch is) without
//! any I/O; a `BatchWriter` is one store's transaction for a batch.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use tokio::sync::oneshot;

use super::{Accepted, NewDelivery, NewRun, QueueError};

/// At most this many deliveries share a transaction: the write lock is held for the whole
/// batch, and a claim or heartbeat waiting for it should not wait for thousands of inserts.
pub(super) const MAX_BATCH: usize = 256;

/// One delivery to record, with the runs it queues.
#[derive(Debug, Clone)]
pub(super) struct Accepting {
    pub delivery: NewDelivery,
    pub runs: Vec<NewRun>,
}

/// One `accept` call waiting for its transaction.
struct Pending {
    item: Accepting,
    reply: oneshot::Sender<Result<Accepted, QueueError>>,
}

/// The deliveries waiting, and whether a writer is running to take them.
#[derive(Debug)]
pub(super) struct Intake<T> {
    waiting: VecDeque<T>,
    writing: bool,
}

impl<T> Default for Intake<T> {
    fn default() -> Self {
        Intake {
            waiting: VecDeque::new(),
            writing: false,
        }
    }
}

impl<T> Intake<T> {
    /// Adds one in arrival order; true when no writer is running and the caller must start one.
    pub fn push(&mut self, item: T) -> bool {
        self.waiting.push_back(item);
        !std::mem::replace(&mut self.writing, true)
    }

    /// The writer's next batch, oldest first and at most `max`; `None` when nothing waits, and
    /// then the writer is over (the next `push` starts another).
    pub fn next_batch(&mut self, max: usize) -> Option<Vec<T>> {
        if self.waiting.is_empty() {
            self.writing = false;
            return None;
        }
        let take = self.waiting.len().min(max);
        Some(self.waiting.drain(..take).collect())
    }

    /// A writer that died: what waited is handed back (to be answered with an error), and the
    /// next `push` starts a new writer instead of waiting for the dead one.
    pub fn abandon(&mut self) -> Vec<T> {
        self.writing = false;
        self.waiting.drain(..).collect()
    }
}

/// One store's transaction for a batch.
#[async_trait]
pub(super) trait BatchWriter: Send + Sync + 'static {
    /// Records `batch` in one transaction: an answer per delivery, in order, or the error that
    /// rolled all of it back (then nothing of it is written). Duplicates are told against the
    /// table and against earlier deliveries of the same batch alike; runs supersede in the
    /// batch's (arrival) order.
    async fn write(&self, batch: &[Accepting]) -> Result<Vec<Accepted>, QueueError>;
}

pub(super) struct GroupCommit<W> {
    intake: Mutex<Intake<Pending>>,
    writer: W,
    /// Write transactions committed with at least one delivery, for the tests' check that a
    /// batch is one transaction.
    commits: AtomicU64,
}

impl<W: BatchWriter> GroupCommit<W> {
    pub fn new(writer: W) -> Self {
        GroupCommit {
            intake: Mutex::new(Intake::default()),
            writer,
            commits: AtomicU64::new(0),
        }
    }

    #[cfg(test)]
    pub fn commits(&self) -> u64 {
        self.commits.load(Ordering::Relaxed)
    }

    /// Queues the delivery for the next transaction and waits for its answer.
    pub async fn accept(
        self: &Arc<Self>,
        delivery: NewDelivery,
        runs: Vec<NewRun>,
    ) -> Result<Accepted, QueueError> {
        let (reply, answer) = oneshot::channel();
        let item = Accepting { delivery, runs };
        let start = self
            .intake
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(Pending { item, reply });
        if start {
            // Detached: the writer finishes its batch even when this caller's request is
            // dropped, because other callers' deliveries are in it too.
            drop(tokio::spawn(self.clone().write_all()));
        }
        // The sender is dropped unanswered only when the writer died (a panic, the runtime
        // shutting down): nothing is acknowledged then.
        answer.await.unwrap_or_else(|_| {
            Err(QueueError::Database {
                action: "record a delivery",
                message: "the queue's writer stopped before it answered".to_owned(),
            })
        })
    }

    /// The writer: batches until the intake is empty.
    async fn write_all(self: Arc<Self>) {
        let guard = AbandonOnUnwind(&self.intake);
        loop {
            let batch = self
                .intake
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .next_batch(MAX_BATCH);
            let Some(batch) = batch else { break };
            self.write_batch(batch).await;
        }
        std::mem::forget(guard);
    }

    async fn write_batch(&self, batch: Vec<Pending>) {
        let (items, replies): (Vec<Accepting>, Vec<_>) =
            batch.into_iter().map(|p| (p.item, p.reply)).unzip();
        match self.writer.write(&items).await {
            Ok(answers) => {
                self.commits.fetch_add(1, Ordering::Relaxed);
                for (reply, answer) in replies.into_iter().zip(answers) {
                    // A caller that went away (its request dropped) needs no answer.
                    let _ = reply.send(Ok(answer));
                }
            }
            // The whole batch rolled back, so none of it is written. One delivery may be the
            // cause (a value the database refuses): each is tried again in its own
            // transaction, so the others are still recorded and only the failing ones fail.
            Err(err) if items.len() == 1 => {
                let _ = replies.into_iter().next().map(|reply| reply.send(Err(err)));
            }
            Err(_) => {
                for (item, reply) in items.into_iter().zip(replies) {
                    let answer = self.writer.write(std::slice::from_ref(&item)).await;
                    if answer.is_ok() {
                        self.commits.fetch_add(1, Ordering::Relaxed);
                    }
                    let _ = reply.send(answer.and_then(|mut answers| {
                        answers.pop().ok_or_else(|| QueueError::Database {
                            action: "record a delivery",
                            message: "the transaction gave no answer".to_owned(),
                        })
                    }));
                }
            }
        }
    }
}

/// Answers every waiting caller with an error if the writer panics (or its task is dropped
/// with the runtime), and lets the next accept start a new writer; without it they would wait
/// forever for a writer that is gone.
struct AbandonOnUnwind<'a>(&'a Mutex<Intake<Pending>>);

impl Drop for AbandonOnUnwind<'_> {
    fn drop(&mut self) {
        let abandoned = self
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .abandon();
        drop(abandoned);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_arrival_starts_the_writer_and_later_ones_join_its_batches() {
        let mut intake = Intake::default();
        assert!(intake.push(1));
        assert!(!intake.push(2));
        assert!(!intake.push(3));
        assert_eq!(intake.next_batch(10), Some(vec![1, 2, 3]));
        // Arrivals while the batch is written wait for the same writer's next batch.
        assert!(!intake.push(4));
        assert_eq!(intake.next_batch(10), Some(vec![4]));
        assert_eq!(intake.next_batch(10), None);
        // The writer has stopped: the next arrival starts another.
        assert!(intake.push(5));
    }

    #[test]
    fn a_batch_takes_the_oldest_and_at_most_the_limit() {
        let mut intake = Intake::default();
        for n in 0..5 {
            intake.push(n);
        }
        assert_eq!(intake.next_batch(2), Some(vec![0, 1]));
        assert_eq!(intake.next_batch(2), Some(vec![2, 3]));
        assert_eq!(intake.next_batch(2), Some(vec![4]));
        assert_eq!(intake.next_batch(2), None);
    }

    #[test]
    fn an_abandoned_intake_hands_back_what_waited_and_restarts_on_the_next_arrival() {
        let mut intake = Intake::default();
        intake.push(1);
        intake.push(2);
        assert_eq!(intake.abandon(), vec![1, 2]);
        assert!(intake.push(3));
    }
}
