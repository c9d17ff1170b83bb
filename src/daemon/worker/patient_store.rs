//! Waiting out an unreachable database. The journal store as a daemon run sees it: a call that fails because the database cannot be
//! reached (PostgreSQL restarting, a network cut) is tried again until the database answers, so
//! a run waits an outage out instead of failing with it. It gives up only when the daemon's
//! shutdown grace is over, and then the run stays resumable from what its journal last holds.
//!
//! A write whose answer was lost may have been committed: its retry then finds the record
//! already written (`Conflict` for a save, `RunExists` for a create). The stored record is read
//! back, and if it is the one this call wrote, the write is taken as done.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio_util::sync::CancellationToken;

use crate::journal::{JournalError, Lease, ListedRun, RunRecord, RunStore};

/// The first wait before a retry; it doubles up to `MAX_WAIT`.
const FIRST_WAIT: Duration = Duration::from_millis(250);
const MAX_WAIT: Duration = Duration::from_secs(5);

/// How long to wait between tries while something is unreachable, and when to stop trying.
#[derive(Clone)]
pub(crate) struct Patience {
    /// Cancelled when waiting must end (the shutdown grace is over).
    give_up: CancellationToken,
    first_wait: Duration,
}

impl Patience {
    pub(crate) fn new(give_up: CancellationToken) -> Self {
        Patience {
            give_up,
            first_wait: FIRST_WAIT,
        }
    }

    /// `call` until it gives anything but an error `unavailable` accepts, or until `give_up`.
    /// The first failure of a call and its recovery are logged, not every retry.
    pub(crate) async fn call<T, E, F, Fut>(
        &self,
        action: &str,
        unavailable: impl Fn(&E) -> bool,
        mut call: F,
    ) -> Result<T, E>
    where
        E: std::fmt::Display,
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let mut wait = self.first_wait;
        let mut waited = false;
        loop {
            match call().await {
                Err(err) if unavailable(&err) && !self.give_up.is_cancelled() => {
                    if !waited {
                        tracing::warn!(action, error = %err, "the database is unreachable; the run waits for it");
                        waited = true;
                    }
                    tokio::select! {
                        () = self.give_up.cancelled() => return Err(err),
                        () = tokio::time::sleep(wait) => {}
                    }
                    wait = (wait * 2).min(MAX_WAIT);
                }
                Err(err) => return Err(err),
                Ok(value) => {
                    if waited {
                        tracing::info!(action, "the database answers again; the run goes on");
                    }
                    return Ok(value);
                }
            }
        }
    }
}

pub(crate) struct PatientStore {
    inner: Arc<dyn RunStore>,
    patience: Patience,
}

impl PatientStore {
    pub(crate) fn new(inner: Arc<dyn RunStore>, patience: Patience) -> Self {
        PatientStore { inner, patience }
    }

    async fn patiently<T, F, Fut>(&self, action: &str, call: F) -> Result<T, JournalError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, JournalError>>,
    {
        self.patience
            .call(action, JournalError::is_unavailable, call)
            .await
    }

    /// Whether the stored record of `written` is `written` itself: the write whose answer was
    /// lost did happen.
    async fn stored_is(&self, written: &RunRecord) -> bool {
        match self
            .patiently("read back a run", || self.inner.load(&written.run_id))
            .await
        {
            Ok(stored) => same_record(&stored, written),
            Err(_) => false,
        }
    }
}

/// Equal but for the revision, which the store sets.
fn same_record(stored: &RunRecord, written: &RunRecord) -> bool {
    let json = |record: &RunRecord| {
        let mut record = record.clone();
        record.revision = 0;
        serde_json::to_value(record).ok()
    };
    json(stored).is_some() && json(stored) == json(written)
}

/// The two writes of the store.
#[derive(Clone, Copy)]
enum Write {
    Create,
    Save,
}

impl PatientStore {
    /// `write` of `run`, tried until the database answers. A retry that finds the record
    /// already written (`RunExists`, `Conflict`) met the try whose answer was lost, if what is
    /// stored is what this call wrote: then it is done.
    async fn write(&self, write: Write, run: &mut RunRecord) -> Result<(), JournalError> {
        let action = match write {
            Write::Create => "record a new run",
            Write::Save => "save a run",
        };
        let mut attempts = 0;
        let result = self
            .patiently(action, || {
                attempts += 1;
                let mut copy = run.clone();
                async move {
                    match write {
                        Write::Create => self.inner.create(&mut copy).await,
                        Write::Save => self.inner.save(&mut copy).await,
                    }
                    .map(|()| copy)
                }
            })
            .await;
        match result {
            Ok(written) => {
                *run = written;
                Ok(())
            }
            Err(err @ (JournalError::RunExists { .. } | JournalError::Conflict { .. }))
                if attempts > 1 =>
            {
                if !self.stored_is(run).await {
                    return Err(err);
                }
                run.revision = match write {
                    Write::Create => 1,
                    Write::Save => run.revision + 1,
                };
                Ok(())
            }
            Err(err) => Err(err),
        }
    }
}

#[async_trait]
impl RunStore for PatientStore {
    async fn create(&self, run: &mut RunRecord) -> Result<(), JournalError> {
        self.write(Write::Create, run).await
    }

    async fn save(&self, run: &mut RunRecord) -> Result<(), JournalError> {
        self.write(Write::Save, run).await
    }

    async fn load(&self, run_id: &str) -> Result<RunRecord, JournalError> {
        self.patiently("read a run", || self.inner.load(run_id))
            .await
    }

    async fn list(&self) -> Result<Vec<ListedRun>, JournalError> {
        self.patiently("list the runs", || self.inner.list()).await
    }

    async fn runs_of(&self, pipeline: &str) -> Result<Vec<RunRecord>, JournalError> {
        self.patiently("read the earlier runs", || self.inner.runs_of(pipeline))
            .await
    }

    async fn lock_run(&self, run_id: &str) -> Result<Lease, JournalError> {
        self.patiently("hold a run", || self.inner.lock_run(run_id))
            .await
    }

    async fn try_lock_target(
        &self,
        pipeline: &str,
        target: &str,
        run_id: &str,
    ) -> Result<Lease, JournalError> {
        self.patiently("hold a deploy target", || {
            self.inner.try_lock_target(pipeline, target, run_id)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::journal::StageRecord;
    use crate::plan::StageId;

    /// What the scripted store does on its next calls.
    #[derive(Clone, Copy, Debug)]
    enum Next {
        /// The database is away.
        Unavailable,
        /// The write commits, and its answer is lost with the connection.
        CommitThenUnavailable,
        /// A real answer.
        Answer,
    }

    /// A store whose next calls fail as scripted, over an in-memory record.
    struct Scripted {
        script: Mutex<Vec<Next>>,
        stored: Mutex<Option<RunRecord>>,
        calls: Mutex<u32>,
    }

    fn unavailable() -> JournalError {
        JournalError::Postgres {
            action: "save a run",
            database: "postgres://shipit@127.0.0.1:5432/shipit".into(),
            source: Box::new(crate::journal::postgres_store::PostgresError::Timeout(
                Duration::from_secs(30),
            )),
        }
    }

    impl Scripted {
        fn new(script: &[Next]) -> Arc<Self> {
            Arc::new(Scripted {
                script: Mutex::new(script.iter().rev().copied().collect()),
                stored: Mutex::new(None),
                calls: Mutex::new(0),
            })
        }

        fn next(&self) -> Next {
            *self.calls.lock().unwrap() += 1;
            self.script.lock().unwrap().pop().unwrap_or(Next::Answer)
        }

        /// Writes `run` over revision `expect` as the script says.
        fn write(&self, run: &mut RunRecord, expect: u64) -> Result<(), JournalError> {
            let next = self.next();
            if let Next::Unavailable = next {
                return Err(unavailable());
            }
            let mut stored = self.stored.lock().unwrap();
            let current = stored.as_ref().map_or(0, |r| r.revision);
            if current != expect {
                return Err(if expect == 0 {
                    JournalError::RunExists {
                        run_id: run.run_id.clone(),
                    }
                } else {
                    JournalError::Conflict {
                        run_id: run.run_id.clone(),
                        read: expect,
                        stored: current,
                    }
                });
            }
            let mut written = run.clone();
            written.revision = expect + 1;
            *stored = Some(written);
            match next {
                Next::CommitThenUnavailable => Err(unavailable()),
                _ => {
                    run.revision = expect + 1;
                    Ok(())
                }
            }
        }
    }

    #[async_trait]
    impl RunStore for Scripted {
        async fn create(&self, run: &mut RunRecord) -> Result<(), JournalError> {
            self.write(run, 0)
        }
        async fn save(&self, run: &mut RunRecord) -> Result<(), JournalError> {
            let expect = run.revision;
            self.write(run, expect)
        }
        async fn load(&self, _: &str) -> Result<RunRecord, JournalError> {
            Ok(self.stored.lock().unwrap().clone().unwrap())
        }
        async fn list(&self) -> Result<Vec<ListedRun>, JournalError> {
            Ok(vec![])
        }
        async fn runs_of(&self, _: &str) -> Result<Vec<RunRecord>, JournalError> {
            Ok(vec![])
        }
        async fn lock_run(&self, _: &str) -> Result<Lease, JournalError> {
            Ok(Lease::new(()))
        }
        async fn try_lock_target(&self, _: &str, _: &str, _: &str) -> Result<Lease, JournalError> {
            Ok(Lease::new(()))
        }
    }

    fn patient(inner: Arc<Scripted>, give_up: &CancellationToken) -> PatientStore {
        let patience = Patience {
            give_up: give_up.clone(),
            first_wait: Duration::from_millis(1),
        };
        PatientStore::new(inner, patience)
    }

    fn record() -> RunRecord {
        RunRecord::for_test(
            "20261201T090000Z-a1b2",
            "shop",
            vec![StageRecord::pending(StageId::build("web"))],
        )
    }

    #[tokio::test]
    async fn a_save_waits_while_the_database_is_away_then_goes_through() {
        let inner = Scripted::new(&[
            Next::Answer,
            Next::Unavailable,
            Next::Unavailable,
            Next::Unavailable,
        ]);
        let store = patient(inner.clone(), &CancellationToken::new());
        let mut run = record();
        store.create(&mut run).await.unwrap();
        run.stages[0].reason = Some("changed".into());
        store.save(&mut run).await.unwrap();
        assert_eq!(run.revision, 2);
        assert_eq!(*inner.calls.lock().unwrap(), 5);
        let stored = inner.stored.lock().unwrap().clone().unwrap();
        assert_eq!(stored.stages[0].reason.as_deref(), Some("changed"));
    }

    #[tokio::test]
    async fn a_save_whose_answer_was_lost_after_it_committed_is_taken_as_done() {
        let inner = Scripted::new(&[Next::Answer, Next::CommitThenUnavailable]);
        let store = patient(inner.clone(), &CancellationToken::new());
        let mut run = record();
        store.create(&mut run).await.unwrap();
        run.stages[0].reason = Some("changed".into());
        // The retry meets its own committed write: a conflict, read back and recognised.
        store.save(&mut run).await.unwrap();
        assert_eq!(run.revision, 2);
        // The next save goes on from there.
        run.stages[0].reason = Some("again".into());
        store.save(&mut run).await.unwrap();
        assert_eq!(run.revision, 3);
    }

    #[tokio::test]
    async fn a_create_whose_answer_was_lost_after_it_committed_is_taken_as_done() {
        let inner = Scripted::new(&[Next::CommitThenUnavailable]);
        let store = patient(inner.clone(), &CancellationToken::new());
        let mut run = record();
        store.create(&mut run).await.unwrap();
        assert_eq!(run.revision, 1);
        store.save(&mut run).await.unwrap();
        assert_eq!(run.revision, 2);
    }

    #[tokio::test]
    async fn a_conflict_with_another_writer_is_still_a_conflict() {
        let inner = Scripted::new(&[Next::Answer, Next::Unavailable]);
        let store = patient(inner.clone(), &CancellationToken::new());
        let mut run = record();
        store.create(&mut run).await.unwrap();
        // Someone else wrote revision 2 meanwhile.
        let mut other = run.clone();
        other.stages[0].reason = Some("theirs".into());
        inner.stored.lock().unwrap().replace(RunRecord {
            revision: 2,
            ..other
        });
        run.stages[0].reason = Some("ours".into());
        let err = store.save(&mut run).await.unwrap_err();
        assert!(matches!(err, JournalError::Conflict { .. }), "{err}");
        assert_eq!(run.revision, 1);
    }

    #[tokio::test]
    async fn waiting_ends_with_the_error_once_the_daemon_gives_up() {
        let inner = Scripted::new(&[Next::Answer]);
        let give_up = CancellationToken::new();
        let store = patient(inner.clone(), &give_up);
        let mut run = record();
        store.create(&mut run).await.unwrap();
        inner
            .script
            .lock()
            .unwrap()
            .extend(std::iter::repeat_n(Next::Unavailable, 10_000));
        let canceller = give_up.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            canceller.cancel();
        });
        let err = store.save(&mut run).await.unwrap_err();
        assert!(err.is_unavailable(), "{err}");
    }

    #[test]
    fn only_an_unreachable_database_is_waited_for() {
        assert!(unavailable().is_unavailable());
        let refused = JournalError::RunExists { run_id: "x".into() };
        assert!(!refused.is_unavailable());
    }
}
