//! `shipit daemon --config FILE`: read the daemon's configuration, then serve webhooks and the
//! API until SIGTERM or SIGINT; `--check` only validates the file.

use std::path::PathBuf;

use clap::{Args, ValueEnum};
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

use super::printer::Printer;
use crate::daemon::config::{self, DaemonConfig};
use crate::daemon::start;
use crate::exit;

#[derive(Debug, Args)]
pub struct DaemonArgs {
    /// The daemon's configuration file (YAML).
    #[arg(
        long,
        value_name = "FILE",
        default_value = "shipit-daemon.yaml",
        env = "SHIPIT_DAEMON_CONFIG"
    )]
    pub config: PathBuf,
    /// Validate the configuration (secrets included) and exit: 0 when it is usable, 2 when not.
    #[arg(long)]
    pub check: bool,
    /// How the daemon writes its logs to stderr; RUST_LOG filters them (default `info`).
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

pub(crate) async fn daemon(args: &DaemonArgs, printer: Printer) -> i32 {
    let config = match config::load(&args.config, &|name| std::env::var(name).ok()) {
        Ok(config) => config,
        Err(err) => {
            printer.error(&err, None);
            return exit::INVALID_INPUT;
        }
    };
    if args.check {
        printer.info(summary(&args.config, &config));
        return exit::OK;
    }
    init_logs(args.log_format, printer.mode().color);
    let shutdown = CancellationToken::new();
    spawn_signal_handler(shutdown.clone());
    match start::run(config, shutdown).await {
        Ok(()) => exit::OK,
        Err(err) => {
            tracing::error!(error = %err, "the daemon stopped");
            printer.error(&err, None);
            exit::STAGE_FAILED
        }
    }
}

fn summary(path: &std::path::Path, config: &DaemonConfig) -> String {
    let sources: Vec<&str> = [
        ("github", config.sources.github.is_some()),
        ("gitlab", config.sources.gitlab.is_some()),
        ("generic", config.sources.generic.is_some()),
    ]
    .into_iter()
    .filter_map(|(name, on)| on.then_some(name))
    .collect();
    format!(
        "{}: the daemon configuration is valid (listen {}, sources: {}, {} repositories, {} API tokens)",
        path.display(),
        config.listen,
        if sources.is_empty() {
            "none".to_owned()
        } else {
            sources.join(", ")
        },
        config.repositories.len(),
        config.api_token_sha256.len()
    )
}

fn init_logs(format: LogFormat, color: bool) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // A second initialisation (tests in one process) keeps the first subscriber.
    let _ = match format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.with_ansi(color).try_init(),
    };
}

/// SIGTERM (systemd, Kubernetes, docker stop) and SIGINT (Ctrl-C) both stop the daemon
/// gracefully: no new connections, requests in flight answered.
fn spawn_signal_handler(shutdown: CancellationToken) {
    tokio::spawn(async move {
        let terminate = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut signal) => {
                    signal.recv().await;
                }
                Err(err) => {
                    tracing::warn!(error = %err, "failed to listen for SIGTERM");
                    std::future::pending::<()>().await;
                }
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: shutting down"),
            () = terminate => tracing::info!("SIGTERM: shutting down"),
        }
        shutdown.cancel();
    });
}
