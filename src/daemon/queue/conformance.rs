//! The behaviours every `Queue` must show (the contract in `mod.rs`), one `async fn` each, and
//! a macro that turns them into one named `#[tokio::test]` per behaviour for a given queue. A
//! queue's tests say
//!
//! ```ignore
//! mod conformance {
//!     crate::daemon::queue::conformance::queue_conformance!(|| async {
//!         let dir = tempfile::tempdir().unwrap();
//!         (Arc::new(SqliteQueue::new(dir.path().join("daemon.db"))) as Arc<dyn Queue>, dir)
//!     });
//! }
//! ```
//!
//! where the async closure returns a fresh, empty queue and whatever must live as long as it.
//! Leases are real time: the tests that let one expire use leases of a fraction of a second.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;

use super::{
    Accepted, Finished, HookSource, NewDelivery, NewRun, Queue, QueueError, QueueId, QueueState,
    Renewal, Trigger,
};

/// Stamps out one `#[tokio::test]` per behaviour below for the queue `$make_queue().await`
/// returns as `(Arc<dyn Queue>, keep_alive)`.
macro_rules! queue_conformance {
    ($make_queue:expr) => {
        $crate::daemon::queue::conformance::queue_conformance!(@each $make_queue;
            accept_records_the_runs_as_queued,
            a_redelivery_is_a_duplicate_and_queues_nothing,
            an_ignored_delivery_is_recorded_without_runs,
            a_newer_run_supersedes_the_queued_runs_of_its_key_only,
            a_newer_run_asks_the_running_run_of_its_key_to_cancel,
            claim_hands_out_the_oldest_queued_run,
            claim_passes_over_a_key_that_has_a_running_run,
            a_live_lease_is_not_claimed_again,
            an_expired_lease_is_claimed_again_keeping_its_run_id,
            heartbeat_renews_only_the_callers_leases,
            only_the_holder_can_finish_or_set_the_run_id,
            finish_frees_the_key_for_the_next_run,
            unknown_runs_are_reported_as_unknown,
            cancelling_a_queued_run_ends_it_at_once,
            cancelling_a_running_run_reaches_its_heartbeat,
            cancelling_a_finished_run_changes_nothing,
            list_is_newest_first_and_limited,
            count_by_state_names_every_state,
            log_lines_are_numbered_in_order_and_paged,
            concurrent_claims_hand_each_run_to_one_daemon,
            ping_answers_on_a_working_queue,
        );
    };
    (@each $make_queue:expr; $($behaviour:ident),+ $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $behaviour() {
                let (queue, _keep_alive) = ($make_queue)().await;
                $crate::daemon::queue::conformance::$behaviour(queue).await;
            }
        )+
    };
}
pub(crate) use queue_conformance;

const LEASE: Duration = Duration::from_secs(30);
/// Long enough for a claim to happen, short enough to wait out.
const SHORT_LEASE: Duration = Duration::from_millis(300);

pub(crate) fn sha(n: u8) -> String {
    format!("{n:02x}").repeat(20)
}

pub(crate) fn new_run(git_ref: &str, n: u8) -> NewRun {
    NewRun {
        repository: "acme/shop".into(),
        git_ref: git_ref.into(),
        sha: sha(n),
        pipeline_file: "shipit.yaml".into(),
        environment: Some("production".into()),
        trigger: Trigger::Webhook {
            delivery_id: format!("delivery-{n}"),
        },
    }
}

pub(crate) fn delivery(id: &str) -> NewDelivery {
    NewDelivery {
        source: HookSource::Github,
        delivery_id: id.into(),
        event: "push".into(),
        repository: Some("acme/shop".into()),
        git_ref: Some("refs/heads/main".into()),
        sha: Some(sha(1)),
        ignored_because: None,
        received_at: Utc::now(),
    }
}

fn recorded(accepted: Accepted) -> Vec<QueueId> {
    match accepted {
        Accepted::Recorded { runs } => runs,
        Accepted::Duplicate => panic!("the delivery was taken for a duplicate"),
    }
}

fn ended(state: QueueState, exit_code: i32) -> Finished {
    Finished {
        state,
        exit_code: Some(exit_code),
        message: None,
    }
}

pub(crate) async fn accept_records_the_runs_as_queued(queue: Arc<dyn Queue>) {
    let runs = vec![new_run("refs/heads/main", 1), new_run("refs/heads/dev", 2)];
    let ids = recorded(queue.accept(delivery("d1"), runs.clone()).await.unwrap());
    assert_eq!(ids.len(), 2);
    for (id, run) in ids.iter().zip(&runs) {
        let stored = queue.get(*id).await.unwrap();
        assert_eq!(stored.run, *run);
        assert_eq!(stored.state, QueueState::Queued);
        assert_eq!(
            (stored.run_id, stored.claimed_by, stored.lease_until),
            (None, None, None)
        );
        assert!(!stored.cancel_requested);
        assert_eq!((stored.started_at, stored.finished_at), (None, None));
    }
}

pub(crate) async fn a_redelivery_is_a_duplicate_and_queues_nothing(queue: Arc<dyn Queue>) {
    recorded(
        queue
            .accept(delivery("d1"), vec![new_run("refs/heads/main", 1)])
            .await
            .unwrap(),
    );
    let again = queue
        .accept(delivery("d1"), vec![new_run("refs/heads/main", 1)])
        .await
        .unwrap();
    assert_eq!(again, Accepted::Duplicate);
    assert_eq!(queue.list(10).await.unwrap().len(), 1);
}

pub(crate) async fn an_ignored_delivery_is_recorded_without_runs(queue: Arc<dyn Queue>) {
    let mut ignored = delivery("d1");
    ignored.ignored_because = Some("[skip ci]".into());
    assert!(recorded(queue.accept(ignored.clone(), vec![]).await.unwrap()).is_empty());
    assert_eq!(
        queue.accept(ignored, vec![]).await.unwrap(),
        Accepted::Duplicate
    );
    assert!(queue.list(10).await.unwrap().is_empty());
}

pub(crate) async fn a_newer_run_supersedes_the_queued_runs_of_its_key_only(queue: Arc<dyn Queue>) {
    let old = queue.enqueue(new_run("refs/heads/main", 1)).await.unwrap();
    let other = queue.enqueue(new_run("refs/heads/dev", 2)).await.unwrap();
    let new = recorded(
        queue
            .accept(delivery("d3"), vec![new_run("refs/heads/main", 3)])
            .await
            .unwrap(),
    )[0];
    let old = queue.get(old).await.unwrap();
    assert_eq!(old.state, QueueState::Superseded);
    assert!(old.finished_at.is_some());
    assert_eq!(
        old.message.as_deref(),
        Some(format!("superseded by run {new}").as_str())
    );
    assert_eq!(queue.get(other).await.unwrap().state, QueueState::Queued);
    assert_eq!(queue.get(new).await.unwrap().state, QueueState::Queued);
}

pub(crate) async fn a_newer_run_asks_the_running_run_of_its_key_to_cancel(queue: Arc<dyn Queue>) {
    let first = queue.enqueue(new_run("refs/heads/main", 1)).await.unwrap();
    let claimed = queue.claim("a", LEASE).await.unwrap().unwrap();
    assert_eq!(claimed.id, first);
    assert_eq!(
        queue.heartbeat("a", &[first], LEASE).await.unwrap(),
        Renewal::default()
    );
    let second = queue.enqueue(new_run("refs/heads/main", 2)).await.unwrap();
    let running = queue.get(first).await.unwrap();
    assert_eq!(running.state, QueueState::Running);
    assert!(running.cancel_requested);
    assert_eq!(
        queue.heartbeat("a", &[first], LEASE).await.unwrap().cancel,
        vec![first]
    );
    assert_eq!(queue.get(second).await.unwrap().state, QueueState::Queued);
}

pub(crate) async fn claim_hands_out_the_oldest_queued_run(queue: Arc<dyn Queue>) {
    assert!(queue.claim("a", LEASE).await.unwrap().is_none());
    let first = queue.enqueue(new_run("refs/heads/a", 1)).await.unwrap();
    let second = queue.enqueue(new_run("refs/heads/b", 2)).await.unwrap();
    let before = Utc::now();
    let claimed = queue.claim("a", LEASE).await.unwrap().unwrap();
    assert_eq!(claimed.id, first);
    assert_eq!(claimed.state, QueueState::Running);
    assert_eq!(claimed.claimed_by.as_deref(), Some("a"));
    let until = claimed.lease_until.unwrap();
    assert!(until >= before + chrono::Duration::seconds(29), "{until}");
    assert!(claimed.started_at.is_some());
    assert_eq!(queue.claim("b", LEASE).await.unwrap().unwrap().id, second);
    assert!(queue.claim("b", LEASE).await.unwrap().is_none());
}

pub(crate) async fn claim_passes_over_a_key_that_has_a_running_run(queue: Arc<dyn Queue>) {
    let first = queue.enqueue(new_run("refs/heads/main", 1)).await.unwrap();
    assert_eq!(queue.claim("a", LEASE).await.unwrap().unwrap().id, first);
    let waiting = queue.enqueue(new_run("refs/heads/main", 2)).await.unwrap();
    let other = queue.enqueue(new_run("refs/heads/dev", 3)).await.unwrap();
    assert_eq!(queue.claim("b", LEASE).await.unwrap().unwrap().id, other);
    assert!(queue.claim("b", LEASE).await.unwrap().is_none());
    assert_eq!(queue.get(waiting).await.unwrap().state, QueueState::Queued);
}

pub(crate) async fn a_live_lease_is_not_claimed_again(queue: Arc<dyn Queue>) {
    queue.enqueue(new_run("refs/heads/main", 1)).await.unwrap();
    queue.claim("a", LEASE).await.unwrap().unwrap();
    assert!(queue.claim("b", LEASE).await.unwrap().is_none());
}

pub(crate) async fn an_expired_lease_is_claimed_again_keeping_its_run_id(queue: Arc<dyn Queue>) {
    let id = queue.enqueue(new_run("refs/heads/main", 1)).await.unwrap();
    let first = queue.claim("a", SHORT_LEASE).await.unwrap().unwrap();
    queue
        .set_run_id("a", id, "20260101-000000-00000000000000a1")
        .await
        .unwrap();
    // A newer run of the key waits behind the abandoned one, which is resumed first.
    let newer = queue.enqueue(new_run("refs/heads/main", 2)).await.unwrap();
    tokio::time::sleep(SHORT_LEASE * 2).await;
    let again = queue.claim("b", LEASE).await.unwrap().unwrap();
    assert_eq!(again.id, id);
    assert_eq!(again.claimed_by.as_deref(), Some("b"));
    assert_eq!(
        again.run_id.as_deref(),
        Some("20260101-000000-00000000000000a1")
    );
    assert_eq!(again.started_at, first.started_at);
    // The newer run asked it to cancel; the new holder learns it.
    assert!(again.cancel_requested);
    assert!(queue.claim("c", LEASE).await.unwrap().is_none());
    assert_eq!(queue.get(newer).await.unwrap().state, QueueState::Queued);
    // The daemon that lost it can no longer finish it.
    let err = queue
        .finish("a", id, ended(QueueState::Failed, 1))
        .await
        .unwrap_err();
    assert!(
        matches!(err, QueueError::LeaseLost { id: lost } if lost == id),
        "{err}"
    );
}

pub(crate) async fn heartbeat_renews_only_the_callers_leases(queue: Arc<dyn Queue>) {
    let mine = queue.enqueue(new_run("refs/heads/a", 1)).await.unwrap();
    let theirs = queue.enqueue(new_run("refs/heads/b", 2)).await.unwrap();
    queue.claim("a", SHORT_LEASE).await.unwrap().unwrap();
    queue.claim("b", SHORT_LEASE).await.unwrap().unwrap();
    for _ in 0..4 {
        tokio::time::sleep(SHORT_LEASE / 3).await;
        // `theirs` is not `a`'s to renew: the heartbeat says `a` does not hold it.
        let renewal = queue
            .heartbeat("a", &[mine, theirs], SHORT_LEASE)
            .await
            .unwrap();
        assert_eq!(
            renewal,
            Renewal {
                cancel: vec![],
                lost: vec![theirs]
            }
        );
    }
    // `mine` was renewed past its first lease; `theirs` was not, and is up for grabs.
    let reclaimed = queue.claim("c", LEASE).await.unwrap().unwrap();
    assert_eq!(reclaimed.id, theirs);
    assert!(queue.claim("c", LEASE).await.unwrap().is_none());
    assert_eq!(
        queue.get(mine).await.unwrap().claimed_by.as_deref(),
        Some("a")
    );
}

pub(crate) async fn only_the_holder_can_finish_or_set_the_run_id(queue: Arc<dyn Queue>) {
    let id = queue.enqueue(new_run("refs/heads/main", 1)).await.unwrap();
    let err = queue
        .finish("a", id, ended(QueueState::Succeeded, 0))
        .await
        .unwrap_err();
    assert!(matches!(err, QueueError::LeaseLost { .. }), "{err}");
    queue.claim("a", LEASE).await.unwrap().unwrap();
    let err = queue
        .set_run_id("b", id, "20260101-000000-00000000000000a1")
        .await
        .unwrap_err();
    assert!(matches!(err, QueueError::LeaseLost { .. }), "{err}");
    let err = queue
        .finish("b", id, ended(QueueState::Succeeded, 0))
        .await
        .unwrap_err();
    assert!(matches!(err, QueueError::LeaseLost { .. }), "{err}");
    queue
        .set_run_id("a", id, "20260101-000000-00000000000000a1")
        .await
        .unwrap();
    queue
        .finish(
            "a",
            id,
            Finished {
                state: QueueState::Failed,
                exit_code: Some(1),
                message: Some("build:web failed".into()),
            },
        )
        .await
        .unwrap();
    let done = queue.get(id).await.unwrap();
    assert_eq!(done.state, QueueState::Failed);
    assert_eq!(done.exit_code, Some(1));
    assert_eq!(done.message.as_deref(), Some("build:web failed"));
    assert!(done.finished_at.is_some());
    assert_eq!(
        done.run_id.as_deref(),
        Some("20260101-000000-00000000000000a1")
    );
    // Finished once: a second finish by the same daemon holds nothing any more.
    let err = queue
        .finish("a", id, ended(QueueState::Succeeded, 0))
        .await
        .unwrap_err();
    assert!(matches!(err, QueueError::LeaseLost { .. }), "{err}");
    assert_eq!(queue.get(id).await.unwrap().state, QueueState::Failed);
}

pub(crate) async fn finish_frees_the_key_for_the_next_run(queue: Arc<dyn Queue>) {
    let first = queue.enqueue(new_run("refs/heads/main", 1)).await.unwrap();
    queue.claim("a", LEASE).await.unwrap().unwrap();
    let next = queue.enqueue(new_run("refs/heads/main", 2)).await.unwrap();
    assert!(queue.claim("a", LEASE).await.unwrap().is_none());
    queue
        .finish("a", first, ended(QueueState::Cancelled, 143))
        .await
        .unwrap();
    assert_eq!(queue.claim("a", LEASE).await.unwrap().unwrap().id, next);
}

pub(crate) async fn unknown_runs_are_reported_as_unknown(queue: Arc<dyn Queue>) {
    let unknown = |err: QueueError| matches!(err, QueueError::UnknownRun { id: 999 });
    assert!(unknown(queue.get(999).await.unwrap_err()));
    assert!(unknown(queue.request_cancel(999).await.unwrap_err()));
    assert!(unknown(
        queue
            .finish("a", 999, ended(QueueState::Failed, 1))
            .await
            .unwrap_err()
    ));
    assert!(unknown(
        queue
            .set_run_id("a", 999, "20260101-000000-00000000000000a1")
            .await
            .unwrap_err()
    ));
    assert!(unknown(
        queue.append_log(999, &["x".into()]).await.unwrap_err()
    ));
    assert!(unknown(queue.log_after(999, 0, 10).await.unwrap_err()));
    assert_eq!(
        queue.heartbeat("a", &[999], LEASE).await.unwrap().lost,
        vec![999]
    );
}

pub(crate) async fn cancelling_a_queued_run_ends_it_at_once(queue: Arc<dyn Queue>) {
    let id = queue.enqueue(new_run("refs/heads/main", 1)).await.unwrap();
    let cancelled = queue.request_cancel(id).await.unwrap();
    assert_eq!(cancelled.state, QueueState::Cancelled);
    assert!(cancelled.finished_at.is_some());
    assert!(queue.claim("a", LEASE).await.unwrap().is_none());
}

pub(crate) async fn cancelling_a_running_run_reaches_its_heartbeat(queue: Arc<dyn Queue>) {
    let id = queue.enqueue(new_run("refs/heads/main", 1)).await.unwrap();
    let other = queue.enqueue(new_run("refs/heads/dev", 2)).await.unwrap();
    queue.claim("a", LEASE).await.unwrap().unwrap();
    queue.claim("a", LEASE).await.unwrap().unwrap();
    let asked = queue.request_cancel(id).await.unwrap();
    assert_eq!(asked.state, QueueState::Running);
    assert!(asked.cancel_requested);
    assert_eq!(
        queue.heartbeat("a", &[id, other], LEASE).await.unwrap(),
        Renewal {
            cancel: vec![id],
            lost: vec![]
        }
    );
    // Another daemon's heartbeat does not learn of a run it does not hold.
    assert_eq!(
        queue.heartbeat("b", &[id], LEASE).await.unwrap(),
        Renewal {
            cancel: vec![],
            lost: vec![id]
        }
    );
    queue
        .finish("a", id, ended(QueueState::Cancelled, 143))
        .await
        .unwrap();
    assert_eq!(queue.get(id).await.unwrap().state, QueueState::Cancelled);
}

pub(crate) async fn cancelling_a_finished_run_changes_nothing(queue: Arc<dyn Queue>) {
    let id = queue.enqueue(new_run("refs/heads/main", 1)).await.unwrap();
    queue.claim("a", LEASE).await.unwrap().unwrap();
    queue
        .finish("a", id, ended(QueueState::Succeeded, 0))
        .await
        .unwrap();
    let after = queue.request_cancel(id).await.unwrap();
    assert_eq!(after.state, QueueState::Succeeded);
    assert!(!after.cancel_requested);
}

pub(crate) async fn list_is_newest_first_and_limited(queue: Arc<dyn Queue>) {
    let mut ids = Vec::new();
    for n in 1..=3 {
        ids.push(
            queue
                .enqueue(new_run(&format!("refs/heads/b{n}"), n))
                .await
                .unwrap(),
        );
    }
    let listed: Vec<QueueId> = queue
        .list(2)
        .await
        .unwrap()
        .iter()
        .map(|run| run.id)
        .collect();
    assert_eq!(listed, vec![ids[2], ids[1]]);
    assert_eq!(queue.list(10).await.unwrap().len(), 3);
}

pub(crate) async fn count_by_state_names_every_state(queue: Arc<dyn Queue>) {
    let zero = queue.count_by_state().await.unwrap();
    assert_eq!(zero.len(), 6, "{zero:?}");
    assert!(zero.iter().all(|(_, n)| *n == 0));
    queue.enqueue(new_run("refs/heads/main", 1)).await.unwrap();
    queue.enqueue(new_run("refs/heads/main", 2)).await.unwrap();
    queue.enqueue(new_run("refs/heads/dev", 3)).await.unwrap();
    queue.claim("a", LEASE).await.unwrap().unwrap();
    let counts = queue.count_by_state().await.unwrap();
    let count = |state| counts.iter().find(|(s, _)| *s == state).unwrap().1;
    assert_eq!(count(QueueState::Superseded), 1);
    assert_eq!(count(QueueState::Running), 1);
    assert_eq!(count(QueueState::Queued), 1);
    assert_eq!(count(QueueState::Succeeded), 0);
}

pub(crate) async fn log_lines_are_numbered_in_order_and_paged(queue: Arc<dyn Queue>) {
    let id = queue.enqueue(new_run("refs/heads/main", 1)).await.unwrap();
    let other = queue.enqueue(new_run("refs/heads/dev", 2)).await.unwrap();
    assert!(queue.log_after(id, 0, 10).await.unwrap().is_empty());
    queue
        .append_log(id, &["one".into(), "two".into()])
        .await
        .unwrap();
    queue
        .append_log(other, &["elsewhere".into()])
        .await
        .unwrap();
    queue.append_log(id, &["three".into()]).await.unwrap();
    queue.append_log(id, &[]).await.unwrap();
    assert_eq!(
        queue.log_after(id, 0, 10).await.unwrap(),
        vec![
            (1, "one".to_owned()),
            (2, "two".to_owned()),
            (3, "three".to_owned())
        ]
    );
    assert_eq!(
        queue.log_after(id, 1, 1).await.unwrap(),
        vec![(2, "two".to_owned())]
    );
    assert!(queue.log_after(id, 3, 10).await.unwrap().is_empty());
    assert_eq!(
        queue.log_after(other, 0, 10).await.unwrap(),
        vec![(1, "elsewhere".to_owned())]
    );
}

pub(crate) async fn concurrent_claims_hand_each_run_to_one_daemon(queue: Arc<dyn Queue>) {
    for n in 0..6 {
        queue
            .enqueue(new_run(&format!("refs/heads/b{n}"), n))
            .await
            .unwrap();
    }
    let claims = (0..12).map(|n| {
        let queue = queue.clone();
        tokio::spawn(async move { queue.claim(&format!("daemon-{n}"), LEASE).await })
    });
    let mut claimed: Vec<QueueId> = Vec::new();
    for claim in claims {
        if let Some(run) = claim.await.unwrap().unwrap() {
            claimed.push(run.id);
        }
    }
    claimed.sort_unstable();
    let before = claimed.len();
    claimed.dedup();
    assert_eq!((before, claimed.len()), (6, 6), "{claimed:?}");
}

pub(crate) async fn ping_answers_on_a_working_queue(queue: Arc<dyn Queue>) {
    queue.ping().await.unwrap();
}
