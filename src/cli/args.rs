//! The command line.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::plan::StageId;

#[derive(Debug, Parser)]
#[command(
    name = "shipit",
    version,
    about = "Build container images, push them to ECR or any OCI registry, deploy them to a Docker host, Amazon ECS or Kubernetes (EKS): one resumable pipeline.",
    after_help = "Exit codes: 0 ok, 1 a stage failed, 2 invalid input, 3 deploy rolled back, 4 deploy not healthy before its deadline, 130/143 interrupted."
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// The pipeline file.
    #[arg(
        short = 'f',
        long = "file",
        global = true,
        default_value = "shipit.yaml",
        env = "SHIPIT_FILE"
    )]
    pub file: PathBuf,
    /// Environment overrides to apply (a key of `environments:`).
    #[arg(long = "env", global = true, value_name = "NAME")]
    pub environment: Option<String>,
    /// What stdout carries: `json` prints the machine-readable result there.
    #[arg(long, global = true, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
    /// Also write the JSON result to this file.
    #[arg(long, global = true, value_name = "PATH")]
    pub result_file: Option<PathBuf>,
    /// Also write a JUnit XML report (one test case per stage) to this file, for Jenkins and
    /// other CI test-report views.
    #[arg(long, global = true, value_name = "PATH")]
    pub junit_file: Option<PathBuf>,
    /// Also write `KEY=VALUE` lines for later CI jobs to this file (GitLab's
    /// `artifacts:reports:dotenv`): SHIPIT_RUN_ID, SHIPIT_STATUS, SHIPIT_<IMAGE>_DIGEST,
    /// SHIPIT_<IMAGE>_REF and SHIPIT_<TARGET>_STATUS.
    #[arg(long, global = true, value_name = "PATH")]
    pub dotenv_file: Option<PathBuf>,
    /// Print only failures.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
    /// Print build logs, outputs and daemon details.
    #[arg(short, long, global = true)]
    pub verbose: bool,
    /// Plain lines instead of live progress bars.
    #[arg(long, global = true)]
    pub no_progress: bool,
    /// Where runs are journaled.
    #[arg(
        long,
        global = true,
        default_value = ".shipit",
        env = "SHIPIT_STATE_DIR",
        value_name = "DIR"
    )]
    pub state_dir: PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check the pipeline file without running anything.
    Validate,
    /// Show each stage, whether it will run or be skipped and why, and what it would change.
    Plan(SelectArgs),
    /// Run the pipeline: stages whose inputs are unchanged are skipped.
    Run(SelectArgs),
    /// Continue an interrupted or failed run from its first unfinished stage.
    Resume {
        /// The run to resume; the latest run when absent.
        run_id: Option<String>,
    },
    /// List recorded runs.
    Runs,
    /// Show one run's stages, outputs and errors.
    Show { run_id: String },
    /// Take docker deploy targets down: stop and remove every container shipit runs for them
    /// (all docker targets when none is named). Journaled as a run of its own.
    Down {
        /// Deploy targets to take down (names under `deploy:`).
        targets: Vec<String>,
        /// Say what would be removed, and remove nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Return a deploy target to the version an earlier successful run deployed (by default
    /// the one before the live version), gated like a deploy. Journaled as a run of its own.
    Rollback {
        /// The target: deploy:TARGET (or TARGET).
        target: String,
        /// The run whose version to return to (`shipit runs` lists them).
        #[arg(long, value_name = "RUN_ID")]
        to: Option<String>,
    },
    /// Let an ECS blue/green deploy that waits for its production traffic reroute go on.
    Approve {
        /// The target: deploy:TARGET (or TARGET).
        target: String,
    },
    /// Print the JSON Schema of the pipeline file (for editor completion).
    Schema,
    /// Serve webhooks (GitHub, GitLab, generic HMAC) and the runs API, queuing a run per push
    /// that the configuration accepts.
    Daemon(super::daemon::DaemonArgs),
}

#[derive(Debug, Args, Clone, Default)]
pub struct SelectArgs {
    /// Run only this stage (repeatable), e.g. --only build:web. Stages it needs are reused from
    /// earlier runs.
    #[arg(long, value_name = "STAGE")]
    pub only: Vec<StageId>,
    /// Run this stage and every stage after it, even if unchanged.
    #[arg(long, value_name = "STAGE", conflicts_with = "only")]
    pub from: Option<StageId>,
    /// Run every selected stage, even if unchanged.
    #[arg(long)]
    pub force: bool,
}
