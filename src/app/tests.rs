//! The application layer driven directly, as the daemon will drive it: no CLI, no process
//! environment (every value comes in through the request), events collected in memory, and
//! stage executors that stand in for Docker so that the orchestration itself is what is tested.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use serde_json::{Value, json};

use super::*;
use crate::journal::{FsRunStore, RunStatus, StageStatus, StopCause};
use crate::pipeline::model::TargetKind;
use crate::plan::{Selection, StageId};
use crate::report::{Event, Reporter};
use crate::stages::{
    BuiltImage, Executors, Outputs, StageContext, StageExecutor, StageFailure, StageInput,
};
use crate::test_support::tmpfs::{Tmpfs, fill};

/// Something to do when an event arrives (fill the disk at a chosen moment).
type EventHook = Box<dyn Fn(&Event) + Send + Sync>;

/// Keeps every event; `on_event` may act on one.
#[derive(Default)]
struct Collected {
    events: Mutex<Vec<Event>>,
    on_event: Option<EventHook>,
}

impl Reporter for Collected {
    fn report(&self, event: &Event) {
        if let Some(hook) = &self.on_event {
            hook(event);
        }
        self.events.lock().unwrap().push(event.clone());
    }
}

impl Collected {
    fn events(&self) -> Vec<Event> {
        self.events.lock().unwrap().clone()
    }

    fn warnings(&self) -> Vec<String> {
        self.events()
            .into_iter()
            .filter_map(|e| match e {
                Event::Warning { message } => Some(message),
                _ => None,
            })
            .collect()
    }

    fn finished(&self, stage: &StageId) -> Option<(StageStatus, Option<String>)> {
        self.events().into_iter().find_map(|e| match e {
            Event::StageFinished {
                stage: s,
                status,
                error,
                ..
            } if &s == stage => Some((status, error)),
            _ => None,
        })
    }
}

/// Counts calls and how many run at once; each run takes `delay`.
#[derive(Default)]
struct Activity {
    calls: AtomicUsize,
    running: AtomicUsize,
    most_at_once: AtomicUsize,
}

impl Activity {
    async fn during(&self, delay: Duration) {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
        self.most_at_once.fetch_max(now, Ordering::SeqCst);
        tokio::time::sleep(delay).await;
        self.running.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A build that "builds" instantly or after `delay` and records an image.
struct FakeBuild {
    delay: Duration,
    activity: Arc<Activity>,
}

#[async_trait]
impl StageExecutor for FakeBuild {
    async fn fingerprint(&self, _: &StageInput<'_>) -> Result<Value, StageFailure> {
        Ok(json!("same context"))
    }

    async fn outputs_exist(&self, _: &StageInput<'_>, _: &Outputs) -> Result<bool, StageFailure> {
        Ok(true)
    }

    async fn run(
        &self,
        input: &StageInput<'_>,
        context: &StageContext<'_>,
    ) -> Result<(), StageFailure> {
        input.config.build()?;
        self.activity.during(self.delay).await;
        context
            .record(&BuiltImage {
                image_id: format!("sha256:{}", input.id.name),
                local_ref: format!("{}:{}", input.id.name, &context.input_digest[7..19]),
                size: Some(1),
                layers: vec![],
                builder: None,
            })
            .await
    }
}

/// A docker deploy that takes `delay` and keeps the environment its configuration resolved to.
struct FakeDeploy {
    delay: Duration,
    activity: Arc<Activity>,
    seen_env: Mutex<Vec<BTreeMap<String, String>>>,
}

#[async_trait]
impl StageExecutor for FakeDeploy {
    async fn fingerprint(&self, _: &StageInput<'_>) -> Result<Value, StageFailure> {
        Ok(Value::Null)
    }

    async fn outputs_exist(&self, _: &StageInput<'_>, _: &Outputs) -> Result<bool, StageFailure> {
        Ok(true)
    }

    async fn run(
        &self,
        input: &StageInput<'_>,
        context: &StageContext<'_>,
    ) -> Result<(), StageFailure> {
        let TargetKind::Docker(config) = &input.config.deploy()?.kind else {
            return Err(StageFailure::failed("not a docker target"));
        };
        self.seen_env.lock().unwrap().push(config.env.clone());
        // As the real deploys do: a cancelled deploy winds down at once.
        tokio::select! {
            () = self.activity.during(self.delay) => Ok(()),
            () = context.cancel.cancelled() => Err(StageFailure::interrupted()),
        }
    }
}

struct Fixture {
    dir: tempfile::TempDir,
    builds: Arc<Activity>,
    deploys: Arc<Activity>,
    deploy: Arc<FakeDeploy>,
    workspace: Workspace,
}

fn fixture(state_dir: Option<&Path>, build_delay: Duration, deploy_delay: Duration) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let builds = Arc::new(Activity::default());
    let deploys = Arc::new(Activity::default());
    let build = Arc::new(FakeBuild {
        delay: build_delay,
        activity: builds.clone(),
    });
    let deploy = Arc::new(FakeDeploy {
        delay: deploy_delay,
        activity: deploys.clone(),
        seen_env: Mutex::new(Vec::new()),
    });
    let state = state_dir.map_or_else(|| dir.path().join(".shipit"), Path::to_path_buf);
    let workspace = Workspace {
        store: Arc::new(FsRunStore::new(state)),
        executors: Executors {
            build: build.clone(),
            push: build,
            deploy_docker: deploy.clone(),
            take_down_docker: deploy.clone(),
            deploy_ecs: None,
            deploy_eks: None,
        },
    };
    Fixture {
        dir,
        builds,
        deploys,
        deploy,
        workspace,
    }
}

impl Fixture {
    /// Writes a pipeline `name` with image `web` and a docker target `web` whose environment
    /// comes from `${{ env.SHIPIT_APP_TEST_GREETING }}`, and loads it.
    fn pipeline(&self, name: &str) -> Pipeline {
        let file = self.dir.path().join(format!("{name}.yaml"));
        std::fs::create_dir_all(self.dir.path().join("web")).unwrap();
        std::fs::write(self.dir.path().join("web/Dockerfile"), "FROM scratch\n").unwrap();
        std::fs::write(
            &file,
            format!(
                "version: 1\nname: {name}\nimages:\n  web:\n    context: web\ndeploy:\n  web:\n    image: web\n    docker:\n      env: {{ GREETING: \"${{{{ env.SHIPIT_APP_TEST_GREETING }}}}\" }}\n"
            ),
        )
        .unwrap();
        load_pipeline(&file, None).unwrap()
    }

    fn request(&self, name: &str) -> RunRequest {
        RunRequest {
            pipeline: self.pipeline(name),
            selection: Selection::default(),
            env: EnvVars::from([(
                "SHIPIT_APP_TEST_GREETING".to_owned(),
                format!("hello from {name}"),
            )]),
            run_id: None,
        }
    }
}

#[tokio::test]
async fn a_run_driven_without_the_cli_takes_its_environment_from_the_request_and_reports_every_step()
 {
    assert!(
        std::env::var_os("SHIPIT_APP_TEST_GREETING").is_none(),
        "the test proves the value comes from the request, so the process must not have it"
    );
    let fixture = fixture(None, Duration::ZERO, Duration::ZERO);
    let events = Collected::default();
    let outcome = run(
        &fixture.workspace,
        fixture.request("shop"),
        &events,
        &Stop::default(),
    )
    .await
    .unwrap();

    assert_eq!(outcome.exit_code, 0);
    assert_eq!(outcome.record.status, RunStatus::Succeeded);
    assert!(outcome.journal_error.is_none());
    assert_eq!(
        *fixture.deploy.seen_env.lock().unwrap(),
        [BTreeMap::from([(
            "GREETING".to_owned(),
            "hello from shop".to_owned()
        )])]
    );
    let kinds: Vec<String> = events
        .events()
        .iter()
        .map(|e| match e {
            Event::RunStarted { .. } => "run started".to_owned(),
            Event::StageStarted { stage, .. } => format!("{stage} started"),
            Event::StageOutput { stage, key, .. } => format!("{stage} output {key}"),
            Event::StageFinished { stage, status, .. } => {
                format!("{stage} {}", status.as_str())
            }
            Event::RunFinished { status, .. } => format!("run {}", status.as_str()),
            other => format!("{other:?}"),
        })
        .filter(|line| !line.contains("output") || line.contains("image_id"))
        .collect();
    assert_eq!(
        kinds,
        [
            "run started",
            "build:web started",
            "build:web output image_id",
            "build:web succeeded",
            "deploy:web started",
            "deploy:web succeeded",
            "run succeeded"
        ]
    );
    // The journal says the same as the outcome.
    let stored = fixture
        .workspace
        .store
        .load(&outcome.record.run_id)
        .await
        .unwrap();
    assert_eq!(stored, outcome.record);
    assert_eq!(
        stored.stage(&StageId::build("web")).unwrap().outputs["image_id"],
        "sha256:web"
    );

    // A second run reuses the build and the deploy: unchanged, outputs still there.
    let again = run(
        &fixture.workspace,
        fixture.request("shop"),
        &Collected::default(),
        &Stop::default(),
    )
    .await
    .unwrap();
    assert_eq!(fixture.builds.calls.load(Ordering::SeqCst), 1);
    let build = again.record.stage(&StageId::build("web")).unwrap();
    assert_eq!(build.status, StageStatus::Skipped);
    assert_eq!(
        build.reused_from.as_deref(),
        Some(outcome.record.run_id.as_str())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_runs_of_one_target_deploy_one_after_the_other_and_the_second_says_whom_it_waits_for() {
    let fixture = fixture(None, Duration::ZERO, Duration::from_millis(400));
    let (first_events, second_events) = (Collected::default(), Collected::default());
    let mut second = fixture.request("shop");
    // Another deploy of the same target, with other inputs, so neither can reuse the other.
    second
        .env
        .insert("SHIPIT_APP_TEST_GREETING".into(), "another version".into());
    let stop = Stop::default();
    let (first, second) = tokio::join!(
        run(
            &fixture.workspace,
            fixture.request("shop"),
            &first_events,
            &stop
        ),
        run(&fixture.workspace, second, &second_events, &stop),
    );
    let (first, second) = (first.unwrap(), second.unwrap());
    assert_eq!((first.exit_code, second.exit_code), (0, 0));
    assert_eq!(fixture.deploys.calls.load(Ordering::SeqCst), 2);
    assert_eq!(
        fixture.deploys.most_at_once.load(Ordering::SeqCst),
        1,
        "the two deploys of target web overlapped"
    );
    let waits: Vec<String> = first_events
        .warnings()
        .into_iter()
        .chain(second_events.warnings())
        .collect();
    assert_eq!(waits.len(), 1, "{waits:?}");
    let holder = [&first, &second]
        .into_iter()
        .map(|o| o.record.run_id.clone())
        .find(|id| waits[0].contains(&format!("run {id} (pid {})", std::process::id())))
        .unwrap_or_else(|| panic!("the wait names neither run with this pid: {waits:?}"));
    assert!(
        waits[0].starts_with("deploy:web waits: run ")
            && waits[0].contains("is deploying target `web` of pipeline shop"),
        "{waits:?} (holder {holder})"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_of_two_pipelines_share_one_state_dir_and_build_at_the_same_time() {
    let fixture = fixture(None, Duration::from_millis(400), Duration::ZERO);
    let (events, stop) = (Collected::default(), Stop::default());
    let (shop, blog) = tokio::join!(
        run(&fixture.workspace, fixture.request("shop"), &events, &stop),
        run(&fixture.workspace, fixture.request("blog"), &events, &stop),
    );
    assert_eq!((shop.unwrap().exit_code, blog.unwrap().exit_code), (0, 0));
    assert_eq!(
        fixture.builds.most_at_once.load(Ordering::SeqCst),
        2,
        "the builds of two pipelines waited for each other"
    );
    let listed = list_runs(&fixture.workspace).await.unwrap();
    assert_eq!(listed.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stage_whose_running_record_cannot_be_written_never_starts_and_the_run_fails_naming_the_journal()
 {
    let tmpfs = Tmpfs::mount("256k");
    let fixture = fixture(Some(tmpfs.path()), Duration::ZERO, Duration::ZERO);
    let filler = tmpfs.path().join("filler");
    // The disk fills up the moment the build's success is journaled: the deploy's "running"
    // record is the first write that finds no room.
    let events = Collected {
        on_event: Some(Box::new(move |event| {
            if let Event::StageFinished {
                stage,
                status: StageStatus::Succeeded,
                ..
            } = event
                && stage == &StageId::build("web")
            {
                fill(&filler);
            }
        })),
        ..Collected::default()
    };
    let outcome = run(
        &fixture.workspace,
        fixture.request("shop"),
        &events,
        &Stop::default(),
    )
    .await
    .unwrap();

    assert_eq!(
        fixture.deploys.calls.load(Ordering::SeqCst),
        0,
        "the deploy ran without a journaled start"
    );
    let (status, error) = events.finished(&StageId::deploy("web")).unwrap();
    assert_eq!(status, StageStatus::Failed);
    let error = error.unwrap();
    let journal = tmpfs
        .path()
        .join("runs")
        .join(&outcome.record.run_id)
        .join("journal.json");
    assert!(
        error.contains(&journal.display().to_string()) && error.contains("No space left on device"),
        "{error}"
    );
    assert_eq!(outcome.exit_code, crate::exit::STAGE_FAILED);
    assert_eq!(outcome.record.status, RunStatus::Failed);
    let journal_error = outcome.journal_error.expect("the final save failed too");
    assert!(
        journal_error
            .to_string()
            .contains("No space left on device")
    );

    // What is on disk is the last record that could be written: the build done, the deploy
    // never started, so a resume deploys exactly once.
    std::fs::remove_file(tmpfs.path().join("filler")).unwrap();
    let stored = fixture
        .workspace
        .store
        .load(&outcome.record.run_id)
        .await
        .unwrap();
    assert_eq!(
        stored.stage(&StageId::build("web")).unwrap().status,
        StageStatus::Succeeded
    );
    assert_eq!(
        stored.stage(&StageId::deploy("web")).unwrap().status,
        StageStatus::Pending
    );
}

#[tokio::test]
async fn a_journal_that_cannot_be_created_is_a_failure_not_invalid_input() {
    let dir = tempfile::tempdir().unwrap();
    // The state dir is a file: nothing can be created under it.
    let state = dir.path().join("state");
    std::fs::write(&state, "not a folder").unwrap();
    let fixture = fixture(Some(&state), Duration::ZERO, Duration::ZERO);
    let err = run(
        &fixture.workspace,
        fixture.request("shop"),
        &Collected::default(),
        &Stop::default(),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, AppError::JournalIo(_)), "{err:?}");
    assert_eq!(err.exit_code(), crate::exit::STAGE_FAILED);
    assert!(err.to_string().contains("state"), "{err}");
    assert_eq!(fixture.builds.calls.load(Ordering::SeqCst), 0);
}

/// Runs `shop` and, once its deploy is running, stops it with `stop_it`.
async fn stop_during_the_deploy(stop_it: impl FnOnce(&Stop)) -> RunOutcome {
    let fixture = fixture(None, Duration::ZERO, Duration::from_millis(600));
    let (events, stop) = (Collected::default(), Stop::default());
    let request = fixture.request("shop");
    let run = run(&fixture.workspace, request, &events, &stop);
    let stopper = async {
        while fixture.deploys.running.load(Ordering::SeqCst) == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        stop_it(&stop);
    };
    let (outcome, ()) = tokio::join!(run, stopper);
    outcome.unwrap()
}

#[tokio::test]
async fn a_stop_sparing_deploys_lets_the_deploy_in_flight_finish() {
    let outcome =
        stop_during_the_deploy(|stop| stop.request_sparing_deploys(StopCause::Terminate)).await;
    let deploy = outcome.record.stage(&StageId::deploy("web")).unwrap();
    assert_eq!(deploy.status, StageStatus::Succeeded);
    assert_eq!(outcome.record.status, RunStatus::Succeeded);
}

#[tokio::test]
async fn a_full_stop_interrupts_the_deploy_in_flight() {
    let outcome = stop_during_the_deploy(|stop| stop.request(StopCause::Terminate)).await;
    let deploy = outcome.record.stage(&StageId::deploy("web")).unwrap();
    assert_eq!(deploy.status, StageStatus::Interrupted);
    assert_eq!(outcome.record.status, RunStatus::Interrupted);
}
