//! The `shipit` command: parses arguments, runs one command, and maps its outcome to the
//! documented exit code. Messages go to stderr; stdout carries only data (plan, runs, JSON).

mod args;
mod commands;
mod daemon;
mod printer;
mod render;
mod result_files;

use std::io::IsTerminal;

use clap::Parser;

pub use args::{Cli, Command, GlobalArgs, OutputFormat, SelectArgs};

use crate::exit;
use crate::report::{OutputMode, Verbosity};

/// Runs shipit with the process's arguments; returns the exit code.
pub fn main() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => {
            let code = match err.kind() {
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => {
                    exit::OK
                }
                _ => exit::INVALID_INPUT,
            };
            let _ = err.print();
            return code;
        }
    };
    let printer = printer::Printer::new(output_mode(&cli.global));
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            printer.error(format!("failed to start the async runtime: {err}"), None);
            return exit::STAGE_FAILED;
        }
    };
    let code = runtime.block_on(commands::dispatch(&cli, printer));
    // Stages may leave blocking work (a hashing thread) behind after an interrupt; do not wait.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    code
}

pub(crate) fn output_mode(global: &GlobalArgs) -> OutputMode {
    let verbosity = if global.quiet {
        Verbosity::Quiet
    } else if global.verbose {
        Verbosity::Verbose
    } else {
        Verbosity::Normal
    };
    OutputMode::detect(
        &|name| std::env::var(name).ok(),
        std::io::stderr().is_terminal(),
        global.no_progress,
        verbosity,
    )
}
