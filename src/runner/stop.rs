//! Asking a running pipeline to stop, and remembering why: the run's journal records the cause
//! so that its exit code (130 for Ctrl-C, 143 for SIGTERM) is the same when `shipit show` reads
//! it later.
//!
//! A stop reaches three depths, each one including the shallower ones:
//!
//! - `request_drain`: no new stage starts; running stages finish (the daemon's shutdown, while
//!   its grace lasts).
//! - `request_sparing_deploys`: building and pushing stages stop too, but a deploy in flight
//!   finishes: a newer push or an API cancel must never leave a target half rolled out
//!   (GitLab's `resource_group`, Atlantis's locks keep the same rule).
//! - `request`: every running stage winds down, deploys included (Ctrl-C, SIGTERM of
//!   `shipit run`, the end of the daemon's shutdown grace); the journal lets a resume continue.

use std::sync::{Arc, Mutex};

use tokio_util::sync::CancellationToken;

use crate::journal::StopCause;
use crate::plan::StageKind;

#[derive(Clone)]
pub struct Stop {
    /// Cancelled by every request: no new stage starts. A child of `builds`.
    starting: CancellationToken,
    /// Cancelled unless deploys are spared: building and pushing stages stop. A child of `all`.
    builds: CancellationToken,
    /// Cancelled by `request` only: deploys in flight stop too.
    all: CancellationToken,
    cause: Arc<Mutex<Option<StopCause>>>,
}

impl Default for Stop {
    fn default() -> Self {
        let all = CancellationToken::new();
        let builds = all.child_token();
        let starting = builds.child_token();
        Stop {
            starting,
            builds,
            all,
            cause: Arc::default(),
        }
    }
}

impl Stop {
    /// Asks the run to stop: no new stage starts, running ones wind down. The first cause
    /// asked for is the one recorded.
    pub fn request(&self, cause: StopCause) {
        self.note(cause);
        self.all.cancel();
    }

    /// Asks the run to stop its unstarted and building stages; a deploy in flight finishes.
    pub fn request_sparing_deploys(&self, cause: StopCause) {
        self.note(cause);
        self.builds.cancel();
    }

    /// Asks the run to start no new stage; the running ones finish.
    pub fn request_drain(&self, cause: StopCause) {
        self.note(cause);
        self.starting.cancel();
    }

    fn note(&self, cause: StopCause) {
        self.cause
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_or_insert(cause);
    }

    /// Any stop was asked for: no new stage starts.
    pub fn is_requested(&self) -> bool {
        self.starting.is_cancelled()
    }

    /// Resolves once any stop is asked for.
    pub async fn requested(&self) {
        self.starting.cancelled().await
    }

    /// The token a running stage of `kind` watches: cancelled when a stop reaches it.
    pub fn token_for(&self, kind: StageKind) -> CancellationToken {
        match kind {
            StageKind::Build | StageKind::Push => self.builds.clone(),
            StageKind::Deploy | StageKind::Down | StageKind::Rollback => self.all.clone(),
        }
    }

    /// Whether a stop reaches a running stage of `kind`.
    pub fn stops(&self, kind: StageKind) -> bool {
        self.token_for(kind).is_cancelled()
    }

    pub fn cause(&self) -> Option<StopCause> {
        *self.cause.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KINDS: [StageKind; 5] = [
        StageKind::Build,
        StageKind::Push,
        StageKind::Deploy,
        StageKind::Down,
        StageKind::Rollback,
    ];

    fn stopped(stop: &Stop) -> Vec<StageKind> {
        KINDS.into_iter().filter(|k| stop.stops(*k)).collect()
    }

    #[test]
    fn a_full_stop_reaches_every_stage() {
        let stop = Stop::default();
        assert!(!stop.is_requested());
        assert!(stopped(&stop).is_empty());
        stop.request(StopCause::Interrupt);
        assert!(stop.is_requested());
        assert_eq!(stopped(&stop), KINDS);
    }

    #[test]
    fn a_stop_sparing_deploys_reaches_builds_and_pushes_only() {
        let stop = Stop::default();
        stop.request_sparing_deploys(StopCause::Terminate);
        assert!(stop.is_requested());
        assert_eq!(stopped(&stop), [StageKind::Build, StageKind::Push]);
        assert!(!stop.token_for(StageKind::Deploy).is_cancelled());
    }

    #[test]
    fn a_drain_stops_nothing_that_runs() {
        let stop = Stop::default();
        stop.request_drain(StopCause::Terminate);
        assert!(stop.is_requested());
        assert!(stopped(&stop).is_empty());
        // The end of the grace then stops everything.
        stop.request(StopCause::Terminate);
        assert_eq!(stopped(&stop), KINDS);
    }

    #[test]
    fn the_first_cause_asked_for_is_kept() {
        let stop = Stop::default();
        stop.request_drain(StopCause::Terminate);
        stop.request(StopCause::Interrupt);
        assert_eq!(stop.cause(), Some(StopCause::Terminate));
    }
}
