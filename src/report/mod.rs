//! Output: typed events (`event`), the choice of how to show them (`mode`), the renderers
//! (`terminal` for people, `plain` for logs and CI) and the JSON result (`result`).

pub mod ci_files;
pub mod event;
pub mod mode;
pub mod plain;
pub mod result;
pub mod terminal;

pub use event::{Event, FanOut, Reporter};
pub use mode::{CiSystem, OutputMode, Verbosity};

/// The renderer for this output mode, writing to stderr (stdout carries only data).
pub fn reporter_for(mode: OutputMode) -> Box<dyn Reporter> {
    if mode.live {
        Box::new(terminal::TerminalReporter::new(mode.verbosity, mode.color))
    } else {
        Box::new(plain::PlainReporter::new(
            Box::new(std::io::stderr()),
            mode.ci,
            mode.verbosity,
            mode.color,
            plain::PlainReporter::wall_clock(),
        ))
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod ci_golden;
