//! One function per subcommand: turn the arguments into a request for the application layer,
//! call it, render what comes back.

use super::args::{Cli, Command, GlobalArgs, OutputFormat, SelectArgs};
use super::printer::Printer;
use super::{render, result_files};
use crate::app::{self, AppError, EnvVars, ResumeOutcome, RunOutcome, RunRequest, Stop, Workspace};
use crate::exit;
use crate::journal::StopCause;
use crate::pipeline::{Pipeline, PipelineFile};
use crate::plan::{Selection, StageGraph};

pub(crate) async fn dispatch(cli: &Cli, printer: Printer) -> i32 {
    let global = &cli.global;
    let outcome = match &cli.command {
        Command::Validate => validate(global, printer),
        Command::Plan(select) => plan(global, select, printer).await,
        Command::Run(select) => run(global, select, printer).await,
        Command::Resume { run_id } => resume(global, run_id.as_deref(), printer).await,
        Command::Runs => runs(global, printer).await,
        Command::Show { run_id } => show(global, run_id, printer).await,
        Command::Down { targets, dry_run } => down(global, targets, *dry_run, printer).await,
        Command::Rollback { target, to } => rollback(global, target, to.as_deref(), printer).await,
        Command::Approve { target } => approve(global, target, printer).await,
        Command::Schema => schema(printer),
        Command::Daemon(args) => return super::daemon::daemon(args, printer).await,
    };
    outcome.unwrap_or_else(|err| {
        printer.error(&err, err.hint());
        err.exit_code()
    })
}

/// The process's environment, handed to the application layer (which never reads it itself).
fn process_env() -> EnvVars {
    std::env::vars().collect()
}

fn load(global: &GlobalArgs) -> Result<Pipeline, AppError> {
    app::load_pipeline(&global.file, global.environment.as_deref())
}

fn selection(select: &SelectArgs) -> Selection {
    Selection {
        only: select.only.clone(),
        from: select.from.clone(),
        force: select.force,
    }
}

fn validate(global: &GlobalArgs, printer: Printer) -> Result<i32, AppError> {
    let pipeline = load(global)?;
    let graph = StageGraph::from_pipeline(&pipeline);
    let workspace = Workspace::local(&global.state_dir);
    for target in app::unavailable_targets(&workspace.executors, &pipeline) {
        printer.warning(target);
    }
    printer.info(format!(
        "{}: pipeline {} is valid ({} images, {} deploy targets, {} stages)",
        global.file.display(),
        pipeline.file.name,
        pipeline.file.images.len(),
        pipeline.file.deploy.len(),
        graph.stages.len()
    ));
    Ok(exit::OK)
}

fn schema(printer: Printer) -> Result<i32, AppError> {
    let schema = schemars::schema_for!(PipelineFile);
    match serde_json::to_string_pretty(&schema) {
        Ok(text) => {
            printer.data(text);
            Ok(exit::OK)
        }
        Err(err) => {
            printer.error(format!("failed to render the schema: {err}"), None);
            Ok(exit::STAGE_FAILED)
        }
    }
}

async fn plan(global: &GlobalArgs, select: &SelectArgs, printer: Printer) -> Result<i32, AppError> {
    let pipeline = load(global)?;
    let workspace = Workspace::local(&global.state_dir);
    let report = app::plan(&workspace, &pipeline, selection(select), &process_env()).await?;
    match global.output {
        OutputFormat::Json => printer.data(render::plan_json(&report)),
        OutputFormat::Text => printer.data(render::plan_text(&report)),
    }
    Ok(if report.has_errors() {
        exit::STAGE_FAILED
    } else {
        exit::OK
    })
}

async fn run(global: &GlobalArgs, select: &SelectArgs, printer: Printer) -> Result<i32, AppError> {
    let pipeline = load(global)?;
    let workspace = Workspace::local(&global.state_dir);
    let request = RunRequest {
        pipeline,
        selection: selection(select),
        env: process_env(),
        run_id: None,
    };
    let stop = Stop::default();
    spawn_signal_handler(stop.clone(), printer);
    let reporter = crate::report::reporter_for(printer.mode());
    let outcome = app::run(&workspace, request, reporter.as_ref(), &stop).await?;
    Ok(emit_result(global, &outcome, printer))
}

async fn resume(
    global: &GlobalArgs,
    run_id: Option<&str>,
    printer: Printer,
) -> Result<i32, AppError> {
    let pipeline = load(global)?;
    let workspace = Workspace::local(&global.state_dir);
    let stop = Stop::default();
    spawn_signal_handler(stop.clone(), printer);
    let reporter = crate::report::reporter_for(printer.mode());
    let outcome = app::resume(
        &workspace,
        pipeline,
        run_id,
        process_env(),
        reporter.as_ref(),
        &stop,
    )
    .await?;
    match outcome {
        ResumeOutcome::AlreadySucceeded { run_id } => {
            printer.info(format!("run {run_id} already succeeded; nothing to resume"));
            Ok(exit::OK)
        }
        ResumeOutcome::Resumed(outcome) => Ok(emit_result(global, &outcome, printer)),
    }
}

async fn down(
    global: &GlobalArgs,
    targets: &[String],
    dry_run: bool,
    printer: Printer,
) -> Result<i32, AppError> {
    let pipeline = load(global)?;
    if dry_run {
        for (target, preview) in app::preview_down(&pipeline, targets).await? {
            printer.data(format!("down:{target}  {preview}"));
        }
        return Ok(exit::OK);
    }
    let workspace = Workspace::local(&global.state_dir);
    let stop = Stop::default();
    spawn_signal_handler(stop.clone(), printer);
    let reporter = crate::report::reporter_for(printer.mode());
    let outcome = app::down(
        &workspace,
        pipeline,
        targets,
        process_env(),
        reporter.as_ref(),
        &stop,
    )
    .await?;
    Ok(emit_result(global, &outcome, printer))
}

/// `deploy:web` or `web`: the target a rollback or an approval names.
fn target_name(text: &str) -> &str {
    text.strip_prefix("deploy:").unwrap_or(text)
}

async fn rollback(
    global: &GlobalArgs,
    target: &str,
    to: Option<&str>,
    printer: Printer,
) -> Result<i32, AppError> {
    let pipeline = load(global)?;
    let workspace = Workspace::local(&global.state_dir);
    let stop = Stop::default();
    spawn_signal_handler(stop.clone(), printer);
    let reporter = crate::report::reporter_for(printer.mode());
    let request = app::RollbackRequest {
        pipeline,
        target: target_name(target).to_owned(),
        to_run: to.map(str::to_owned),
        env: process_env(),
    };
    let outcome = app::rollback(&workspace, request, reporter.as_ref(), &stop).await?;
    Ok(emit_result(global, &outcome, printer))
}

async fn approve(global: &GlobalArgs, target: &str, printer: Printer) -> Result<i32, AppError> {
    let pipeline = load(global)?;
    let workspace = Workspace::local(&global.state_dir);
    let approved = app::approve(&workspace, &pipeline, target_name(target), &process_env()).await?;
    printer.info(format!(
        "approved: CodeDeploy deployment {} (run {}) reroutes production traffic now",
        approved.deployment_id, approved.run_id
    ));
    Ok(exit::OK)
}

/// Ctrl-C or SIGTERM asks the run to stop: stages stop cleanly and the journal says
/// interrupted, with the cause. A second signal exits at once (the journal still lets
/// `shipit resume` continue).
fn spawn_signal_handler(stop: Stop, printer: Printer) {
    tokio::spawn(async move {
        use tokio::signal::unix::{SignalKind, signal};
        let (Ok(mut interrupt), Ok(mut terminate)) = (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
        ) else {
            return;
        };
        for round in 0..2 {
            let cause = tokio::select! {
                _ = interrupt.recv() => StopCause::Interrupt,
                _ = terminate.recv() => StopCause::Terminate,
            };
            if round == 0 {
                printer.info(
                    "interrupted: stopping the running stages (press Ctrl-C again to exit at once)",
                );
                stop.request(cause);
            } else {
                std::process::exit(match cause {
                    StopCause::Interrupt => exit::INTERRUPTED_SIGINT,
                    StopCause::Terminate => exit::INTERRUPTED_SIGTERM,
                });
            }
        }
    });
}

/// Prints the JSON result when asked and writes the result files; returns the exit code.
fn emit_result(global: &GlobalArgs, outcome: &RunOutcome, printer: Printer) -> i32 {
    let code = outcome.exit_code;
    if let Some(err) = &outcome.journal_error {
        printer.error(
            format!("the run's journal could not be written: {err}"),
            Some("free space or fix the state directory, then `shipit resume` continues from what was journaled"),
        );
    }
    let json = match render::result_json(&outcome.record, code) {
        Ok(json) => json,
        Err(err) => {
            printer.error(format!("failed to render the result: {err}"), None);
            return code.max(exit::STAGE_FAILED);
        }
    };
    let files = result_files::files_for(
        global,
        printer.mode().ci,
        &process_env(),
        &outcome.record,
        &json,
    );
    if global.output == OutputFormat::Json {
        printer.data(json);
    }
    for warning in &files.warnings {
        printer.warning(warning);
    }
    for (path, text, append) in files.files {
        if let Err(err) = result_files::write_file(&path, &text, append) {
            printer.error(format!("failed to write {}: {err}", path.display()), None);
            return code.max(exit::STAGE_FAILED);
        }
    }
    code
}

async fn runs(global: &GlobalArgs, printer: Printer) -> Result<i32, AppError> {
    let workspace = Workspace::local(&global.state_dir);
    let listing = app::list_runs(&workspace).await?;
    if global.output == OutputFormat::Json {
        printer.data(render::runs_json(&listing));
        return Ok(exit::OK);
    }
    if listing.is_empty() {
        printer.info(format!(
            "no runs recorded in {}",
            global.state_dir.display()
        ));
    } else {
        printer.data(render::runs_text(&listing));
    }
    Ok(exit::OK)
}

async fn show(global: &GlobalArgs, run_id: &str, printer: Printer) -> Result<i32, AppError> {
    let workspace = Workspace::local(&global.state_dir);
    let (record, code) = app::show_run(&workspace, run_id).await?;
    if global.output == OutputFormat::Json {
        match render::result_json(&record, code) {
            Ok(json) => printer.data(json),
            Err(err) => {
                printer.error(err, None);
                return Ok(exit::STAGE_FAILED);
            }
        }
    } else {
        printer.data(render::show_text(&record, code));
    }
    Ok(exit::OK)
}
