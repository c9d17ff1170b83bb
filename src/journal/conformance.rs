//! The behaviours every `RunStore` must show, one `async fn` each, and a macro that turns them
//! into one named `#[tokio::test]` per behaviour for a given store. A store's tests say
//!
//! ```ignore
//! mod conformance {
//!     crate::journal::conformance::run_store_conformance!(|| {
//!         let dir = tempfile::tempdir().unwrap();
//!         (Arc::new(FsRunStore::new(dir.path())) as Arc<dyn RunStore>, dir)
//!     });
//! }
//! ```
//!
//! where the closure returns a fresh, empty store and whatever must live as long as it.

use std::sync::Arc;

use chrono::{DateTime, Utc};

use super::error::JournalError;
use super::record::{GitSnapshot, RunRecord, RunStatus, StageRecord, StageStatus};
use super::run_store::RunStore;
use super::summary::{ListedRun, RunSummary};
use crate::plan::StageId;

/// Stamps out one `#[tokio::test]` per behaviour below for the store `$make_store()` returns
/// as `(Arc<dyn RunStore>, keep_alive)`.
macro_rules! run_store_conformance {
    ($make_store:expr) => {
        $crate::journal::conformance::run_store_conformance!(@each $make_store;
            create_then_load_round_trips,
            create_refuses_a_taken_id,
            save_bumps_the_revision,
            a_stale_save_is_a_conflict_and_writes_nothing,
            list_is_oldest_first_with_summaries_that_match_the_records,
            runs_of_filters_by_pipeline_newest_first,
            runs_of_orders_runs_of_one_second_by_their_start,
            lock_run_is_exclusive_and_released_on_drop,
            target_locks_are_exclusive_per_pipeline_and_target_and_name_the_holder,
            unknown_and_path_like_run_ids_are_refused,
            concurrent_saves_of_one_revision_let_exactly_one_win,
            concurrent_creates_of_one_id_let_exactly_one_win,
        );
    };
    (@each $make_store:expr; $($behaviour:ident),+ $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $behaviour() {
                let (store, _keep_alive) = ($make_store)();
                $crate::journal::conformance::$behaviour(store).await;
            }
        )+
    };
}
pub(crate) use run_store_conformance;

fn at(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .unwrap()
        .with_timezone(&Utc)
}

/// A run of `pipeline` with one build and one deploy stage, not yet created (revision 0).
pub(crate) fn record(run_id: &str, pipeline: &str) -> RunRecord {
    let mut run = RunRecord::for_test(
        run_id,
        pipeline,
        vec![
            StageRecord::pending(StageId::build("web")),
            StageRecord::pending(StageId::deploy("web")),
        ],
    );
    run.git = GitSnapshot {
        sha: Some("0123abcd".into()),
        branch: Some("main".into()),
        dirty: false,
    };
    run
}

/// Marks the build stage done with an output, as a runner would between two saves.
fn finish_build(run: &mut RunRecord, image_id: &str) {
    let build = &mut run.stages[0];
    build.status = StageStatus::Succeeded;
    build.input_digest = Some("inputs".into());
    build
        .outputs
        .insert("image_id".into(), serde_json::Value::from(image_id));
}

fn run_ids(listing: &[ListedRun]) -> Vec<&str> {
    listing.iter().map(ListedRun::run_id).collect()
}

pub(crate) async fn create_then_load_round_trips(store: Arc<dyn RunStore>) {
    let mut run = record("20260101-000000-00000000000000a1", "shop");
    // Whatever revision the caller's record had, a created run starts at 1.
    run.revision = 7;
    store.create(&mut run).await.unwrap();
    assert_eq!(run.revision, 1);
    assert_eq!(store.load(&run.run_id).await.unwrap(), run);
}

pub(crate) async fn create_refuses_a_taken_id(store: Arc<dyn RunStore>) {
    let mut first = record("20260101-000000-00000000000000a1", "shop");
    store.create(&mut first).await.unwrap();
    let mut second = record(&first.run_id, "blog");
    let err = store.create(&mut second).await.unwrap_err();
    assert!(
        matches!(&err, JournalError::RunExists { run_id } if *run_id == first.run_id),
        "{err}"
    );
    assert_eq!(
        second.revision, 0,
        "a refused create changed the caller's revision"
    );
    assert_eq!(store.load(&first.run_id).await.unwrap(), first);
}

pub(crate) async fn save_bumps_the_revision(store: Arc<dyn RunStore>) {
    let mut run = record("20260101-000000-00000000000000a1", "shop");
    store.create(&mut run).await.unwrap();
    finish_build(&mut run, "sha256:1");
    store.save(&mut run).await.unwrap();
    assert_eq!(run.revision, 2);
    assert_eq!(store.load(&run.run_id).await.unwrap(), run);
    run.status = RunStatus::Succeeded;
    store.save(&mut run).await.unwrap();
    assert_eq!(run.revision, 3);
    assert_eq!(store.load(&run.run_id).await.unwrap(), run);
}

pub(crate) async fn a_stale_save_is_a_conflict_and_writes_nothing(store: Arc<dyn RunStore>) {
    let mut created = record("20260101-000000-00000000000000a1", "shop");
    store.create(&mut created).await.unwrap();
    let mut first = store.load(&created.run_id).await.unwrap();
    let mut second = first.clone();
    finish_build(&mut first, "sha256:first");
    store.save(&mut first).await.unwrap();

    finish_build(&mut second, "sha256:second");
    let err = store.save(&mut second).await.unwrap_err();
    assert!(
        matches!(&err, JournalError::Conflict { run_id, read: 1, stored: 2 } if *run_id == created.run_id),
        "{err}"
    );
    assert_eq!(
        second.revision, 1,
        "a refused save changed the caller's revision"
    );
    assert_eq!(store.load(&created.run_id).await.unwrap(), first);
    let listing = store.list().await.unwrap();
    let [ListedRun::Readable(summary)] = listing.as_slice() else {
        panic!("{listing:?}");
    };
    assert_eq!(*summary, RunSummary::of(&first));
}

pub(crate) async fn list_is_oldest_first_with_summaries_that_match_the_records(
    store: Arc<dyn RunStore>,
) {
    assert!(store.list().await.unwrap().is_empty());
    let ids = [
        "20260103-000000-00000000000000c3",
        "20260101-000000-00000000000000a1",
        "20260102-000000-00000000000000b2",
    ];
    for (index, id) in ids.iter().enumerate() {
        let mut run = record(id, if index == 1 { "blog" } else { "shop" });
        run.git.sha = (index != 2).then(|| format!("sha{index}"));
        store.create(&mut run).await.unwrap();
    }
    // A save after the create must show in the listing: the summary is rewritten with it.
    let mut saved = store.load(ids[2]).await.unwrap();
    finish_build(&mut saved, "sha256:b2");
    saved.status = RunStatus::Failed;
    saved.finished_at = Some(at("2026-01-02T00:10:00Z"));
    store.save(&mut saved).await.unwrap();

    let listing = store.list().await.unwrap();
    let mut sorted = ids;
    sorted.sort();
    assert_eq!(run_ids(&listing), sorted);
    for listed in &listing {
        let ListedRun::Readable(summary) = listed else {
            panic!("{listed:?}");
        };
        let stored = store.load(&summary.run_id).await.unwrap();
        assert_eq!(*summary, RunSummary::of(&stored));
    }
    let ListedRun::Readable(summary) = &listing[1] else {
        unreachable!("checked above");
    };
    assert_eq!(
        (summary.revision, summary.stages_done, summary.status),
        (2, 1, RunStatus::Failed)
    );
}

pub(crate) async fn runs_of_filters_by_pipeline_newest_first(store: Arc<dyn RunStore>) {
    let ids = [
        ("20260102-000000-00000000000000b2", "shop"),
        ("20260101-000000-00000000000000a1", "shop"),
        ("20260101-120000-00000000000000a2", "blog"),
        ("20260103-000000-00000000000000c3", "shop"),
    ];
    for (id, pipeline) in ids {
        let mut run = record(id, pipeline);
        finish_build(&mut run, id);
        store.create(&mut run).await.unwrap();
    }
    let shop = store.runs_of("shop").await.unwrap();
    let shop_ids: Vec<&str> = shop.iter().map(|r| r.run_id.as_str()).collect();
    assert_eq!(
        shop_ids,
        [
            "20260103-000000-00000000000000c3",
            "20260102-000000-00000000000000b2",
            "20260101-000000-00000000000000a1"
        ]
    );
    // Whole records: the skip decision reads the stages' digests and outputs.
    for run in &shop {
        assert_eq!(*run, store.load(&run.run_id).await.unwrap());
        assert_eq!(run.stages[0].outputs["image_id"], run.run_id.as_str());
    }
    let blog = store.runs_of("blog").await.unwrap();
    assert_eq!(blog.len(), 1);
    assert_eq!(blog[0].run_id, "20260101-120000-00000000000000a2");
    assert!(store.runs_of("none").await.unwrap().is_empty());
}

/// Run ids start with the second a run started, then a random part: two runs of one second
/// (a deploy, then at once its rollback) are told apart by their start time, not their ids.
pub(crate) async fn runs_of_orders_runs_of_one_second_by_their_start(store: Arc<dyn RunStore>) {
    let started = |millis: i64| {
        chrono::DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
            .expect("a valid time")
            .with_timezone(&chrono::Utc)
            + chrono::Duration::milliseconds(millis)
    };
    for (id, millis) in [
        ("20260101-000000-ffffffffffffffff", 100),
        ("20260101-000000-0000000000000000", 900),
        ("20260101-000000-8888888888888888", 500),
    ] {
        let mut run = record(id, "shop");
        run.started_at = started(millis);
        store.create(&mut run).await.unwrap();
    }
    let ids: Vec<String> = store
        .runs_of("shop")
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.run_id)
        .collect();
    assert_eq!(
        ids,
        [
            "20260101-000000-0000000000000000",
            "20260101-000000-8888888888888888",
            "20260101-000000-ffffffffffffffff"
        ]
    );
}

pub(crate) async fn lock_run_is_exclusive_and_released_on_drop(store: Arc<dyn RunStore>) {
    let mut run = record("20260101-000000-00000000000000a1", "shop");
    let mut other = record("20260101-000000-00000000000000a2", "shop");
    store.create(&mut run).await.unwrap();
    store.create(&mut other).await.unwrap();

    let lease = store.lock_run(&run.run_id).await.unwrap();
    let err = store.lock_run(&run.run_id).await.unwrap_err();
    assert!(
        matches!(&err, JournalError::RunBusy { run_id, holder_pid: Some(pid) }
            if *run_id == run.run_id && *pid == std::process::id()),
        "{err}"
    );
    let _other_lease = store
        .lock_run(&other.run_id)
        .await
        .expect("a hold on one run kept another run from being held");
    // Holds do not stop saves: a save has its own revision check.
    store.save(&mut run).await.unwrap();
    drop(lease);
    let _again = store
        .lock_run(&run.run_id)
        .await
        .expect("a dropped lease did not release the run");
}

pub(crate) async fn target_locks_are_exclusive_per_pipeline_and_target_and_name_the_holder(
    store: Arc<dyn RunStore>,
) {
    let first = "20260101-000000-00000000000000a1";
    let second = "20260101-000000-00000000000000a2";
    let lease = store.try_lock_target("shop", "web", first).await.unwrap();
    let err = store
        .try_lock_target("shop", "web", second)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, JournalError::TargetBusy { pipeline, target, holder_run: Some(holder), holder_pid: Some(pid) }
            if pipeline == "shop" && target == "web" && holder == first && *pid == std::process::id()),
        "{err}"
    );
    // Other targets of the pipeline, and the same target name in another pipeline, are free;
    // names are taken literally, so none of these is (shop, web) in disguise.
    let mut others = Vec::new();
    for (pipeline, target) in [
        ("shop", "api"),
        ("blog", "web"),
        ("shop/web", ""),
        ("shop", "web/"),
        ("shop", "./web"),
        ("shop/..", "web"),
        ("a/b", "c"),
        ("a", "b/c"),
    ] {
        let held = store.try_lock_target(pipeline, target, second).await;
        others.push(held.unwrap_or_else(|e| panic!("({pipeline:?}, {target:?}): {e}")));
    }
    drop(lease);
    let _again = store
        .try_lock_target("shop", "web", second)
        .await
        .expect("a dropped lease did not release the target");
}

pub(crate) async fn unknown_and_path_like_run_ids_are_refused(store: Arc<dyn RunStore>) {
    let unknown = "20260101-000000-0123456789abcdef";
    let err = store.load(unknown).await.unwrap_err();
    assert!(matches!(err, JournalError::UnknownRun { .. }), "{err}");
    let err = store.lock_run(unknown).await.unwrap_err();
    assert!(matches!(err, JournalError::UnknownRun { .. }), "{err}");
    let mut never_created = record(unknown, "shop");
    let err = store.save(&mut never_created).await.unwrap_err();
    assert!(matches!(err, JournalError::UnknownRun { .. }), "{err}");

    for bad in [
        "",
        ".",
        "..",
        "../../etc",
        "a/b",
        "runs/../x",
        "/etc/passwd",
    ] {
        let invalid = |err: &JournalError| matches!(err, JournalError::InvalidRunId { run_id } if run_id == bad);
        let err = store.load(bad).await.unwrap_err();
        assert!(invalid(&err), "load {bad:?}: {err}");
        let err = store.lock_run(bad).await.unwrap_err();
        assert!(invalid(&err), "lock_run {bad:?}: {err}");
        let err = store.try_lock_target("shop", "web", bad).await.unwrap_err();
        assert!(invalid(&err), "try_lock_target {bad:?}: {err}");
        let mut run = record(bad, "shop");
        let err = store.create(&mut run).await.unwrap_err();
        assert!(invalid(&err), "create {bad:?}: {err}");
        let err = store.save(&mut run).await.unwrap_err();
        assert!(invalid(&err), "save {bad:?}: {err}");
    }
    // Nothing refused left a run behind.
    assert!(store.list().await.unwrap().is_empty());
    let err = store.load(unknown).await.unwrap_err();
    assert!(matches!(err, JournalError::UnknownRun { .. }), "{err}");
}

pub(crate) async fn concurrent_saves_of_one_revision_let_exactly_one_win(store: Arc<dyn RunStore>) {
    const WRITERS: usize = 8;
    const ROUNDS: u64 = 10;
    let mut run = record("20260101-000000-00000000000000a1", "shop");
    store.create(&mut run).await.unwrap();
    for round in 0..ROUNDS {
        let read = store.load(&run.run_id).await.unwrap();
        assert_eq!(read.revision, round + 1);
        let start = Arc::new(tokio::sync::Barrier::new(WRITERS));
        let writers: Vec<_> = (0..WRITERS)
            .map(|writer| {
                let (store, start) = (store.clone(), start.clone());
                let mut mine = read.clone();
                mine.pipeline_digest = format!("round {round} writer {writer}");
                tokio::spawn(async move {
                    start.wait().await;
                    let saved = store.save(&mut mine).await;
                    (saved, mine)
                })
            })
            .collect();
        let mut winners = Vec::new();
        for writer in writers {
            let (saved, mine) = writer.await.unwrap();
            match saved {
                Ok(()) => winners.push(mine),
                Err(JournalError::Conflict { read, stored, .. }) => {
                    assert_eq!((read, stored), (round + 1, round + 2));
                    assert_eq!(mine.revision, round + 1);
                }
                Err(other) => panic!("round {round}: {other}"),
            }
        }
        assert_eq!(
            winners.len(),
            1,
            "round {round}: {} saves won",
            winners.len()
        );
        let stored = store.load(&run.run_id).await.unwrap();
        assert_eq!(stored, winners[0]);
    }
}

pub(crate) async fn concurrent_creates_of_one_id_let_exactly_one_win(store: Arc<dyn RunStore>) {
    const CREATORS: usize = 8;
    let start = Arc::new(tokio::sync::Barrier::new(CREATORS));
    let creators: Vec<_> = (0..CREATORS)
        .map(|creator| {
            let (store, start) = (store.clone(), start.clone());
            let mut mine = record("20260101-000000-00000000000000a1", "shop");
            mine.pipeline_digest = format!("creator {creator}");
            tokio::spawn(async move {
                start.wait().await;
                let created = store.create(&mut mine).await;
                (created, mine)
            })
        })
        .collect();
    let mut winners = Vec::new();
    for creator in creators {
        match creator.await.unwrap() {
            (Ok(()), mine) => winners.push(mine),
            (Err(JournalError::RunExists { .. }), mine) => assert_eq!(mine.revision, 0),
            (Err(other), _) => panic!("{other}"),
        }
    }
    assert_eq!(winners.len(), 1, "{} creates won", winners.len());
    let stored = store.load(&winners[0].run_id).await.unwrap();
    assert_eq!(stored, winners[0]);
}
