//! Asking a running pipeline to stop, and remembering why: the run's journal records the cause
//! so that its exit code (130 for Ctrl-C, 143 for SIGTERM) is the same when `shipit show` reads
//! it later.

use std::sync::{Arc, Mutex};

use tokio_util::sync::CancellationToken;

use crate::journal::StopCause;

#[derive(Clone, Default)]
pub struct Stop {
    token: CancellationToken,
    cause: Arc<Mutex<Option<StopCause>>>,
}

impl Stop {
    /// Asks the run to stop: no new stage starts, running ones wind down. The first cause
    /// asked for is the one recorded.
    pub fn request(&self, cause: StopCause) {
        self.cause
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_or_insert(cause);
        self.token.cancel();
    }

    pub fn is_requested(&self) -> bool {
        self.token.is_cancelled()
    }

    /// Resolves once a stop is asked for.
    pub async fn requested(&self) {
        self.token.cancelled().await
    }

    pub fn token(&self) -> CancellationToken {
        self.token.clone()
    }

    pub fn cause(&self) -> Option<StopCause> {
        *self.cause.lock().unwrap_or_else(|e| e.into_inner())
    }
}
