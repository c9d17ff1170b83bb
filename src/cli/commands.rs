//! One function per subcommand.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicI32, Ordering};

use tokio_util::sync::CancellationToken;

use super::args::{Cli, Command, GlobalArgs, OutputFormat, SelectArgs};
use super::{output_mode, print_error};
use crate::exit;
use crate::journal::{
    FsJournalStore, GitSnapshot, JournalStore, RunListing, RunRecord, RunStatus, StageRecord,
    new_run_id,
};
use crate::pipeline::interpolate::{Values, interpolate_str, interpolate_value};
use crate::pipeline::{Diagnostic, LoadError, Pipeline, PipelineFile};
use crate::plan::{Decision, Participation, Selection, StageGraph, StageId};
use crate::report::ci_files;
use crate::report::result::RunResult;
use crate::runner::{History, Runner, config_path};
use crate::stages::Executors;

pub async fn dispatch(cli: &Cli) -> i32 {
    let global = &cli.global;
    match &cli.command {
        Command::Validate => validate(global),
        Command::Plan(select) => plan(global, select).await.unwrap_or_else(|code| code),
        Command::Run(select) => run(global, select).await.unwrap_or_else(|code| code),
        Command::Resume { run_id } => resume(global, run_id.as_deref())
            .await
            .unwrap_or_else(|code| code),
        Command::Runs => runs(global),
        Command::Show { run_id } => show(global, run_id),
        Command::Schema => schema(),
    }
}

fn load(global: &GlobalArgs) -> Result<Pipeline, i32> {
    Pipeline::load(&global.file, global.environment.as_deref()).map_err(|err| {
        match &err {
            LoadError::Read(crate::pipeline::ReadError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                print_error(&format!(
                    "{err}\n  hint: pass the pipeline file with -f FILE, or create shipit.yaml (see pipelines/demo.yaml)"
                ));
            }
            _ => print_error(&err.to_string()),
        }
        exit::INVALID_INPUT
    })
}

/// Prints an invalid-input error and gives its exit code.
fn invalid(err: impl std::fmt::Display) -> i32 {
    print_error(&err.to_string());
    exit::INVALID_INPUT
}

fn validate(global: &GlobalArgs) -> i32 {
    match load(global) {
        Ok(pipeline) => {
            let graph = StageGraph::from_pipeline(&pipeline);
            if !global.quiet {
                eprintln!(
                    "{}: pipeline {} is valid ({} images, {} deploy targets, {} stages)",
                    global.file.display(),
                    pipeline.file.name,
                    pipeline.file.images.len(),
                    pipeline.file.deploy.len(),
                    graph.stages.len()
                );
            }
            exit::OK
        }
        Err(code) => code,
    }
}

fn schema() -> i32 {
    let schema = schemars::schema_for!(PipelineFile);
    match serde_json::to_string_pretty(&schema) {
        Ok(text) => {
            println!("{text}");
            exit::OK
        }
        Err(err) => {
            print_error(&format!("failed to render the schema: {err}"));
            exit::STAGE_FAILED
        }
    }
}

fn selection(select: &SelectArgs) -> Selection {
    Selection {
        only: select.only.clone(),
        from: select.from.clone(),
        force: select.force,
    }
}

/// env, git, run.id and the resolved vars. An unresolvable var is an invalid-input error
/// pointing at the var.
fn base_values(pipeline: &Pipeline, run_id: &str) -> Result<(Values, GitSnapshot), Diagnostic> {
    let mut values = Values {
        env: std::env::vars().collect(),
        run_id: Some(run_id.to_owned()),
        ..Values::default()
    };
    let git = crate::git::read(&pipeline.base_dir, &|name| std::env::var(name).ok());
    let snapshot = match &git {
        Ok(Some(info)) => {
            values.git = info.values();
            GitSnapshot {
                sha: Some(info.sha.clone()),
                branch: info.branch.clone(),
                dirty: info.dirty,
            }
        }
        Ok(None) => {
            values.git_unavailable = Some(format!(
                "{} is not inside a git repository with commits",
                pipeline.base_dir.display()
            ));
            GitSnapshot {
                sha: None,
                branch: None,
                dirty: false,
            }
        }
        Err(message) => {
            values.git_unavailable = Some(message.clone());
            GitSnapshot {
                sha: None,
                branch: None,
                dirty: false,
            }
        }
    };
    for (name, raw, path) in pipeline.vars_raw() {
        let value = interpolate_str(&raw, &values)
            .map_err(|message| pipeline.diagnostic_at(&path, message))?;
        values.vars.insert(name, value);
    }
    Ok((values, snapshot))
}

/// Resolves every stage's configuration before anything runs, with image outputs stubbed, so a
/// missing environment variable is reported up front rather than after a 10-minute build.
fn preflight(
    pipeline: &Pipeline,
    graph: &StageGraph,
    values: &Values,
) -> Result<(), Vec<Diagnostic>> {
    let mut values = values.clone();
    for name in pipeline.file.images.keys() {
        let stub: BTreeMap<String, String> = ["digest", "ref", "id"]
            .iter()
            .map(|k| (k.to_string(), "pending".to_owned()))
            .collect();
        values.images.insert(name.clone(), stub);
    }
    let problems: Vec<Diagnostic> = graph
        .stages
        .iter()
        .filter_map(|stage| {
            let path = config_path(&stage.id);
            let raw = pipeline.raw(&path)?;
            interpolate_value(raw, &values, &path)
                .err()
                .map(|(at, message)| pipeline.diagnostic_at(&at, message))
        })
        .collect();
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems)
    }
}

fn pipeline_digest(pipeline: &Pipeline) -> String {
    use sha2::{Digest, Sha256};
    let mut hasher = Sha256::new();
    hasher.update(pipeline.source.text.as_bytes());
    hasher.update([0]);
    hasher.update(pipeline.environment.as_deref().unwrap_or("").as_bytes());
    format!("sha256:{}", hex::encode(hasher.finalize()))
}

struct Prepared {
    pipeline: Pipeline,
    graph: StageGraph,
    store: FsJournalStore,
}

fn prepare_pipeline(global: &GlobalArgs) -> Result<Prepared, i32> {
    let pipeline = load(global)?;
    let graph = StageGraph::from_pipeline(&pipeline);
    let store = FsJournalStore::new(&global.state_dir);
    Ok(Prepared {
        pipeline,
        graph,
        store,
    })
}

fn participation(
    graph: &StageGraph,
    selection: &Selection,
) -> Result<BTreeMap<StageId, Participation>, i32> {
    graph
        .participation(selection)
        .map(|list| list.into_iter().collect())
        .map_err(invalid)
}

async fn plan(global: &GlobalArgs, select: &SelectArgs) -> Result<i32, i32> {
    let Prepared {
        pipeline,
        graph,
        store,
    } = prepare_pipeline(global)?;
    let selection = selection(select);
    let participation = participation(&graph, &selection)?;
    let run_id = "plan";
    let (values, git) = base_values(&pipeline, run_id).map_err(invalid)?;
    let executors = Executors::default_set(&global.state_dir);
    let reporter = crate::report::FanOut(Vec::new());
    let runner = Runner {
        pipeline: &pipeline,
        graph: &graph,
        store: &store,
        executors: &executors,
        reporter: &reporter,
        values,
        history: History::load(&store, &pipeline.file.name, run_id),
        participation,
        cancel: CancellationToken::new(),
    };
    // Simulate the run: a skipped stage contributes the outputs it reuses, so the stages after
    // it can be decided too; a stage that will run leaves its dependents undecided.
    let mut record = new_record(&pipeline, &graph, run_id, global, selection, git);
    let mut rows: Vec<(StageId, &'static str, String)> = Vec::new();
    for node in &graph.stages {
        if runner.participation.get(&node.id) == Some(&Participation::Excluded) {
            if let Some(stage) = record.stage_mut(&node.id) {
                let _ = stage.leave_out();
            }
            rows.push((
                node.id.clone(),
                "skip",
                crate::journal::record::NOT_SELECTED.to_owned(),
            ));
            continue;
        }
        let waiting_on: Vec<String> = node
            .needs
            .iter()
            .filter(|n| !record.stage(n).is_some_and(|s| s.status.is_success()))
            .map(|n| n.to_string())
            .collect();
        if !waiting_on.is_empty() {
            rows.push((
                node.id.clone(),
                "run",
                format!("decided once {} finishes", waiting_on.join(", ")),
            ));
            continue;
        }
        match runner.prepare(&node.id, &record).await {
            Ok(prepared) => match &prepared.decision {
                Decision::Skip {
                    reason,
                    reused_from,
                } => {
                    if let Some(stage) = record.stage_mut(&node.id) {
                        let _ = stage.skip(
                            Some(prepared.input_digest.clone()),
                            reason.clone(),
                            reused_from.clone(),
                            prepared.reused_outputs.clone(),
                        );
                    }
                    rows.push((node.id.clone(), "skip", reason.clone()));
                }
                Decision::Run { reason } => rows.push((node.id.clone(), "run", reason.clone())),
            },
            Err(failure) => rows.push((node.id.clone(), "error", failure.message)),
        }
    }
    match global.output {
        OutputFormat::Json => {
            let stages: Vec<_> = rows
                .iter()
                .map(|(id, action, reason)| serde_json::json!({"stage": id.to_string(), "action": action, "reason": reason}))
                .collect();
            println!(
                "{}",
                serde_json::json!({"pipeline": pipeline.file.name, "stages": stages})
            );
        }
        OutputFormat::Text => {
            println!("pipeline {} ({} stages)", pipeline.file.name, rows.len());
            let width = rows
                .iter()
                .map(|(id, _, _)| id.to_string().len())
                .max()
                .unwrap_or(0);
            for (id, action, reason) in &rows {
                println!("  {:<width$}  {:<5}  {reason}", id.to_string(), action);
            }
        }
    }
    if rows.iter().any(|(_, action, _)| *action == "error") {
        Ok(exit::STAGE_FAILED)
    } else {
        Ok(exit::OK)
    }
}

fn new_record(
    pipeline: &Pipeline,
    graph: &StageGraph,
    run_id: &str,
    global: &GlobalArgs,
    selection: Selection,
    git: GitSnapshot,
) -> RunRecord {
    RunRecord {
        format: crate::journal::record::JOURNAL_FORMAT,
        revision: 0,
        run_id: run_id.to_owned(),
        pipeline: pipeline.file.name.clone(),
        pipeline_file: global.file.display().to_string(),
        pipeline_digest: pipeline_digest(pipeline),
        environment: pipeline.environment.clone(),
        selection,
        git,
        status: RunStatus::Running,
        started_at: chrono::Utc::now(),
        finished_at: None,
        stages: graph
            .stages
            .iter()
            .map(|s| StageRecord::pending(s.id.clone()))
            .collect(),
    }
}

async fn run(global: &GlobalArgs, select: &SelectArgs) -> Result<i32, i32> {
    let Prepared {
        pipeline,
        graph,
        store,
    } = prepare_pipeline(global)?;
    let selection = selection(select);
    let participation = participation(&graph, &selection)?;
    let _lock = store.lock().map_err(invalid)?;
    let run_id = new_run_id(chrono::Utc::now());
    let (values, git) = base_values(&pipeline, &run_id).map_err(invalid)?;
    preflight(&pipeline, &graph, &values)
        .map_err(|problems| invalid(LoadError::Invalid(problems)))?;
    let record = new_record(&pipeline, &graph, &run_id, global, selection, git);
    let code = execute(
        global,
        &pipeline,
        &graph,
        &store,
        values,
        participation,
        record,
        false,
    )
    .await;
    Ok(code)
}

async fn resume(global: &GlobalArgs, run_id: Option<&str>) -> Result<i32, i32> {
    let Prepared {
        pipeline,
        graph,
        store,
    } = prepare_pipeline(global)?;
    let _lock = store.lock().map_err(invalid)?;
    let record = match run_id {
        Some(id) => store.load(id),
        None => latest_run(&store),
    };
    let mut record = record.map_err(invalid)?;
    if record.status == RunStatus::Succeeded {
        eprintln!("run {} already succeeded; nothing to resume", record.run_id);
        return Ok(exit::OK);
    }
    if record.pipeline_digest != pipeline_digest(&pipeline) || record.pipeline != pipeline.file.name
    {
        return Err(invalid(format!(
            "the pipeline file (or --env) differs from the one run {} started with\n  hint: start a new run with `shipit run`: it reuses every stage whose inputs are unchanged",
            record.run_id
        )));
    }
    let (values, git) = base_values(&pipeline, &record.run_id).map_err(invalid)?;
    if git.sha != record.git.sha {
        return Err(invalid(format!(
            "the checkout moved from {} to {} since run {} started\n  hint: start a new run with `shipit run`: it reuses every stage whose inputs are unchanged",
            record.git.sha.as_deref().unwrap_or("(no commit)"),
            git.sha.as_deref().unwrap_or("(no commit)"),
            record.run_id
        )));
    }
    let participation = participation(&graph, &record.selection)?;
    let now = chrono::Utc::now();
    for stage in &mut record.stages {
        stage.mark_abandoned(now);
        if stage.status == crate::journal::StageStatus::Blocked {
            stage.status = crate::journal::StageStatus::Pending;
        }
    }
    record.status = RunStatus::Running;
    record.finished_at = None;
    let code = execute(
        global,
        &pipeline,
        &graph,
        &store,
        values,
        participation,
        record,
        true,
    )
    .await;
    Ok(code)
}

fn latest_run(store: &FsJournalStore) -> Result<RunRecord, crate::journal::JournalError> {
    let listing = store.list()?;
    match listing.into_iter().last() {
        Some(RunListing::Readable(run)) => Ok(*run),
        Some(RunListing::Unreadable { error, .. }) => Err(error),
        None => Err(crate::journal::JournalError::NoRuns {
            dir: store.root().join("runs"),
        }),
    }
}

#[allow(clippy::too_many_arguments)]
async fn execute(
    global: &GlobalArgs,
    pipeline: &Pipeline,
    graph: &StageGraph,
    store: &FsJournalStore,
    values: Values,
    participation: BTreeMap<StageId, Participation>,
    record: RunRecord,
    resumed: bool,
) -> i32 {
    let cancel = CancellationToken::new();
    let signal_exit = Arc::new(AtomicI32::new(exit::INTERRUPTED_SIGINT));
    spawn_signal_handler(cancel.clone(), signal_exit.clone());
    let reporter = crate::report::reporter_for(output_mode(global));
    let executors = Executors::default_set(&global.state_dir);
    let runner = Runner {
        pipeline,
        graph,
        store,
        executors: &executors,
        reporter: reporter.as_ref(),
        values,
        history: History::load(store, &pipeline.file.name, &record.run_id),
        participation,
        cancel,
    };
    let record = runner.execute(record, resumed).await;
    let code = exit::for_run_status(record.status, signal_exit.load(Ordering::SeqCst));
    emit_result(global, &record, code)
}

/// Ctrl-C or SIGTERM cancels the run: stages stop cleanly and the journal says interrupted. A
/// second signal exits at once (the journal still lets `shipit resume` continue).
fn spawn_signal_handler(cancel: CancellationToken, signal_exit: Arc<AtomicI32>) {
    tokio::spawn(async move {
        use tokio::signal::unix::{SignalKind, signal};
        let (Ok(mut interrupt), Ok(mut terminate)) = (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
        ) else {
            return;
        };
        for round in 0..2 {
            let code = tokio::select! {
                _ = interrupt.recv() => exit::INTERRUPTED_SIGINT,
                _ = terminate.recv() => exit::INTERRUPTED_SIGTERM,
            };
            signal_exit.store(code, Ordering::SeqCst);
            if round == 0 {
                eprintln!(
                    "interrupted: stopping the running stages (press Ctrl-C again to exit at once)"
                );
                cancel.cancel();
            } else {
                std::process::exit(code);
            }
        }
    });
}

fn emit_result(global: &GlobalArgs, record: &RunRecord, code: i32) -> i32 {
    let result = RunResult::new(record, code);
    let json = match serde_json::to_string_pretty(&result) {
        Ok(json) => json,
        Err(err) => {
            print_error(&format!("failed to render the result: {err}"));
            return code.max(exit::STAGE_FAILED);
        }
    };
    if global.output == OutputFormat::Json {
        println!("{json}");
    }
    let mut files: Vec<(std::path::PathBuf, String, bool)> = Vec::new();
    if let Some(path) = &global.result_file {
        files.push((path.clone(), json, false));
    }
    if let Some(path) = &global.junit_file {
        files.push((path.clone(), ci_files::junit(record), false));
    }
    // GitHub Actions hands every step these two files to append to.
    if std::env::var_os("GITHUB_ACTIONS").is_some() {
        if let Some(path) = std::env::var_os("GITHUB_OUTPUT") {
            files.push((path.into(), ci_files::github_outputs(record), true));
        }
        if let Some(path) = std::env::var_os("GITHUB_STEP_SUMMARY") {
            files.push((path.into(), ci_files::github_summary(record), true));
        }
    }
    for (path, text, append) in files {
        if let Err(err) = write_file(&path, &text, append) {
            print_error(&format!("failed to write {}: {err}", path.display()));
            return code.max(exit::STAGE_FAILED);
        }
    }
    code
}

fn write_file(path: &Path, text: &str, append: bool) -> std::io::Result<()> {
    use std::io::Write;
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)?;
    }
    if append {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?
            .write_all(text.as_bytes())
    } else {
        std::fs::write(path, text)
    }
}

fn runs(global: &GlobalArgs) -> i32 {
    let store = FsJournalStore::new(&global.state_dir);
    let listing = match store.list() {
        Ok(l) => l,
        Err(err) => {
            print_error(&err.to_string());
            return exit::INVALID_INPUT;
        }
    };
    if global.output == OutputFormat::Json {
        let rows: Vec<_> = listing
            .iter()
            .map(|entry| match entry {
                RunListing::Readable(run) => serde_json::json!({
                    "run_id": run.run_id, "pipeline": run.pipeline, "status": run.status.as_str(),
                    "started_at": run.started_at, "finished_at": run.finished_at, "git_sha": run.git.sha,
                }),
                RunListing::Unreadable { run_id, error } => serde_json::json!({"run_id": run_id, "error": error.to_string()}),
            })
            .collect();
        println!("{}", serde_json::Value::Array(rows));
        return exit::OK;
    }
    if listing.is_empty() {
        eprintln!("no runs recorded in {}", store.root().display());
    }
    for entry in &listing {
        match entry {
            RunListing::Readable(run) => {
                let done = run.stages.iter().filter(|s| s.status.is_success()).count();
                println!(
                    "{}  {:<11}  {}  {}/{} stages done  {}",
                    run.run_id,
                    run.status.as_str(),
                    run.started_at.format("%Y-%m-%d %H:%M:%S"),
                    done,
                    run.stages.len(),
                    run.pipeline
                );
            }
            RunListing::Unreadable { run_id, error } => println!("{run_id}  unreadable   {error}"),
        }
    }
    exit::OK
}

fn show(global: &GlobalArgs, run_id: &str) -> i32 {
    let store = FsJournalStore::new(&global.state_dir);
    let record = match store.load(run_id) {
        Ok(r) => r,
        Err(err) => {
            print_error(&err.to_string());
            return exit::INVALID_INPUT;
        }
    };
    let code = exit::for_run_status(record.status, exit::INTERRUPTED_SIGINT);
    if global.output == OutputFormat::Json {
        return match serde_json::to_string_pretty(&RunResult::new(&record, code)) {
            Ok(json) => {
                println!("{json}");
                exit::OK
            }
            Err(err) => {
                print_error(&err.to_string());
                exit::STAGE_FAILED
            }
        };
    }
    println!(
        "run {} of pipeline {}: {}",
        record.run_id,
        record.pipeline,
        record.status.as_str()
    );
    println!("  started  {}", record.started_at.to_rfc3339());
    if let Some(finished) = record.finished_at {
        println!("  finished {}", finished.to_rfc3339());
    }
    if let Some(sha) = &record.git.sha {
        println!(
            "  git      {sha}{}",
            if record.git.dirty { " (dirty)" } else { "" }
        );
    }
    for stage in &record.stages {
        println!("  {}  {}", stage.stage, stage.status.as_str());
        if let Some(reason) = &stage.reason {
            println!("      why: {reason}");
        }
        if stage.attempts > 1 {
            println!("      attempts: {}", stage.attempts);
        }
        for (key, value) in &stage.outputs {
            let shown = value
                .as_str()
                .map(str::to_owned)
                .unwrap_or_else(|| value.to_string());
            println!("      {key}: {shown}");
        }
        if let Some(error) = &stage.error {
            println!(
                "      error: {}",
                error.message.replace('\n', "\n             ")
            );
            if let Some(hint) = &error.hint {
                println!("      hint: {hint}");
            }
        }
    }
    exit::OK
}
