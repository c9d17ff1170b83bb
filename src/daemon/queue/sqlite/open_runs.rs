//! The queue's two decisions, over the runs still open (queued or running) as plain data:
//! which run a claim hands out, and which runs a newly queued one supersedes. The SQLite queue
//! loads the open runs inside its transaction and applies what these return.

use std::collections::HashMap;

use chrono::{DateTime, Utc};

use crate::daemon::queue::{QueueId, QueueState};

/// A queued or running run, as the decisions see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct OpenRun {
    pub id: QueueId,
    pub repository: String,
    pub git_ref: String,
    pub state: QueueState,
    pub lease_until: Option<DateTime<Utc>>,
}

impl OpenRun {
    fn same_key(&self, repository: &str, git_ref: &str) -> bool {
        self.repository == repository && self.git_ref == git_ref
    }

    /// A running run whose daemon stopped renewing its lease (it died, or lost the database).
    fn is_abandoned(&self, now: DateTime<Utc>) -> bool {
        self.state == QueueState::Running && self.lease_until.is_none_or(|until| until <= now)
    }
}

/// The run a claim at `now` hands out, if any.
///
/// An abandoned running run comes first, oldest first: its key is blocked until it ends, and
/// its deploy may be half done, so it is resumed before anything newer starts. Otherwise the
/// oldest queued run whose (repository, ref) has no running run at all, abandoned or not: two
/// runs of one branch never execute at once.
pub(crate) fn next_claim(open: &[OpenRun], now: DateTime<Utc>) -> Option<QueueId> {
    if let Some(abandoned) = open
        .iter()
        .filter(|run| run.is_abandoned(now))
        .min_by_key(|run| run.id)
    {
        return Some(abandoned.id);
    }
    open.iter()
        .filter(|run| run.state == QueueState::Queued)
        .filter(|queued| {
            !open.iter().any(|other| {
                other.state == QueueState::Running
                    && other.same_key(&queued.repository, &queued.git_ref)
            })
        })
        .min_by_key(|run| run.id)
        .map(|run| run.id)
}

/// What queuing a run for (`repository`, `git_ref`) does to the open runs of that key.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Supersession {
    /// Queued runs that never start: they end `Superseded`.
    pub superseded: Vec<QueueId>,
    /// Running runs asked to cancel; their worker stops their builds, never a deploy.
    pub cancel: Vec<QueueId>,
}

pub(crate) fn supersede(open: &[OpenRun], repository: &str, git_ref: &str) -> Supersession {
    let mut plan = Supersession::default();
    for run in open.iter().filter(|run| run.same_key(repository, git_ref)) {
        match run.state {
            QueueState::Queued => plan.superseded.push(run.id),
            QueueState::Running => plan.cancel.push(run.id),
            _ => {}
        }
    }
    plan
}

/// The open runs of the keys one write transaction queues runs for, kept up to date as it
/// queues them: a batch of deliveries reads each key's open runs once, and a run queued early
/// in the batch is superseded by a later one of its key exactly as if each had been its own
/// transaction, in arrival order.
#[derive(Debug, Default)]
pub(crate) struct OpenByKey {
    keys: HashMap<(String, String), Vec<OpenRun>>,
}

impl OpenByKey {
    pub fn is_loaded(&self, repository: &str, git_ref: &str) -> bool {
        self.keys
            .contains_key(&(repository.to_owned(), git_ref.to_owned()))
    }

    /// The key's open runs as read from the database, before anything is queued for it.
    pub fn load(&mut self, repository: &str, git_ref: &str, open: Vec<OpenRun>) {
        self.keys
            .insert((repository.to_owned(), git_ref.to_owned()), open);
    }

    /// Notes run `id` queued for its key (loaded before `id` was inserted) and says what it
    /// supersedes; the superseded runs are no longer open, the cancelled ones still run.
    pub fn queue(&mut self, repository: &str, git_ref: &str, id: QueueId) -> Supersession {
        let open = self
            .keys
            .entry((repository.to_owned(), git_ref.to_owned()))
            .or_default();
        let plan = supersede(open, repository, git_ref);
        open.retain(|run| !plan.superseded.contains(&run.id));
        open.push(OpenRun {
            id,
            repository: repository.to_owned(),
            git_ref: git_ref.to_owned(),
            state: QueueState::Queued,
            lease_until: None,
        });
        plan
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(second: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + second, 0).unwrap()
    }

    fn queued(id: QueueId, git_ref: &str) -> OpenRun {
        OpenRun {
            id,
            repository: "acme/shop".into(),
            git_ref: git_ref.into(),
            state: QueueState::Queued,
            lease_until: None,
        }
    }

    fn running(id: QueueId, git_ref: &str, lease_until: i64) -> OpenRun {
        OpenRun {
            state: QueueState::Running,
            lease_until: Some(at(lease_until)),
            ..queued(id, git_ref)
        }
    }

    #[test]
    fn the_oldest_queued_run_is_claimed_first() {
        let open = [queued(7, "refs/heads/b"), queued(3, "refs/heads/a")];
        assert_eq!(next_claim(&open, at(0)), Some(3));
    }

    #[test]
    fn a_queued_run_waits_while_its_branch_has_a_running_run() {
        let open = [
            running(1, "refs/heads/main", 60),
            queued(2, "refs/heads/main"),
        ];
        assert_eq!(next_claim(&open, at(0)), None);
        let open = [
            running(1, "refs/heads/main", 60),
            queued(2, "refs/heads/main"),
            queued(3, "refs/heads/dev"),
        ];
        assert_eq!(next_claim(&open, at(0)), Some(3));
    }

    #[test]
    fn the_same_branch_of_another_repository_is_another_key() {
        let mut other = queued(2, "refs/heads/main");
        other.repository = "acme/web".into();
        let open = [running(1, "refs/heads/main", 60), other];
        assert_eq!(next_claim(&open, at(0)), Some(2));
    }

    #[test]
    fn an_abandoned_run_is_reclaimed_before_older_queued_runs() {
        let open = [
            queued(1, "refs/heads/dev"),
            running(2, "refs/heads/main", 10),
        ];
        assert_eq!(next_claim(&open, at(9)), Some(1));
        assert_eq!(next_claim(&open, at(10)), Some(2));
    }

    #[test]
    fn a_running_run_without_a_lease_counts_as_abandoned() {
        let mut run = running(4, "refs/heads/main", 0);
        run.lease_until = None;
        assert_eq!(next_claim(&[run], at(0)), Some(4));
    }

    #[test]
    fn nothing_open_claims_nothing() {
        assert_eq!(next_claim(&[], at(0)), None);
    }

    #[test]
    fn queuing_supersedes_queued_runs_and_cancels_running_runs_of_its_key_only() {
        let open = [
            running(1, "refs/heads/main", 60),
            queued(2, "refs/heads/main"),
            queued(3, "refs/heads/dev"),
            queued(4, "refs/heads/main"),
        ];
        assert_eq!(
            supersede(&open, "acme/shop", "refs/heads/main"),
            Supersession {
                superseded: vec![2, 4],
                cancel: vec![1],
            }
        );
        assert_eq!(
            supersede(&open, "acme/web", "refs/heads/main"),
            Supersession::default()
        );
    }

    #[test]
    fn runs_queued_in_one_batch_supersede_each_other_in_arrival_order() {
        let mut open = OpenByKey::default();
        open.load(
            "acme/shop",
            "refs/heads/main",
            vec![
                running(1, "refs/heads/main", 60),
                queued(2, "refs/heads/main"),
            ],
        );
        open.load("acme/shop", "refs/heads/dev", vec![]);
        assert_eq!(
            open.queue("acme/shop", "refs/heads/main", 10),
            Supersession {
                superseded: vec![2],
                cancel: vec![1],
            }
        );
        assert_eq!(
            open.queue("acme/shop", "refs/heads/dev", 11),
            Supersession::default()
        );
        // The run queued first in the batch is now the one superseded; the running one is
        // asked again (it still runs until its worker sees the request).
        assert_eq!(
            open.queue("acme/shop", "refs/heads/main", 12),
            Supersession {
                superseded: vec![10],
                cancel: vec![1],
            }
        );
        assert_eq!(
            open.queue("acme/shop", "refs/heads/dev", 13),
            Supersession {
                superseded: vec![11],
                cancel: vec![],
            }
        );
        assert!(open.is_loaded("acme/shop", "refs/heads/main"));
        assert!(!open.is_loaded("acme/web", "refs/heads/main"));
    }
}
