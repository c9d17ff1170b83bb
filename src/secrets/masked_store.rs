//! The journal sink's guard: a run store that writes every record masked. What is on disk (and
//! so `shipit show`, `shipit runs` and a resume) never holds a secret; records read back are
//! the masked ones.

use async_trait::async_trait;

use super::SecretSet;
use crate::journal::{JournalError, Lease, ListedRun, RunRecord, RunStore};

pub(crate) struct MaskedStore<'a> {
    inner: &'a dyn RunStore,
    secrets: &'a SecretSet,
}

impl<'a> MaskedStore<'a> {
    pub(crate) fn new(inner: &'a dyn RunStore, secrets: &'a SecretSet) -> Self {
        MaskedStore { inner, secrets }
    }
}

#[async_trait]
impl RunStore for MaskedStore<'_> {
    async fn create(&self, run: &mut RunRecord) -> Result<(), JournalError> {
        let mut masked = self.secrets.mask_record(run);
        self.inner.create(&mut masked).await?;
        run.revision = masked.revision;
        Ok(())
    }

    async fn save(&self, run: &mut RunRecord) -> Result<(), JournalError> {
        let mut masked = self.secrets.mask_record(run);
        self.inner.save(&mut masked).await?;
        run.revision = masked.revision;
        Ok(())
    }

    async fn load(&self, run_id: &str) -> Result<RunRecord, JournalError> {
        self.inner.load(run_id).await
    }

    async fn list(&self) -> Result<Vec<ListedRun>, JournalError> {
        self.inner.list().await
    }

    async fn runs_of(&self, pipeline: &str) -> Result<Vec<RunRecord>, JournalError> {
        self.inner.runs_of(pipeline).await
    }

    async fn lock_run(&self, run_id: &str) -> Result<Lease, JournalError> {
        self.inner.lock_run(run_id).await
    }

    async fn try_lock_target(
        &self,
        pipeline: &str,
        target: &str,
        run_id: &str,
    ) -> Result<Lease, JournalError> {
        self.inner.try_lock_target(pipeline, target, run_id).await
    }
}
