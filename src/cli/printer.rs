//! The one place the CLI writes to stdout and stderr: data for scripts on stdout whatever the
//! verbosity; messages for people on stderr, quieted by `-q`; errors always, coloured only when
//! the output mode says so.

use std::fmt::Display;

use crate::report::{OutputMode, Verbosity};

#[derive(Debug, Clone, Copy)]
pub(crate) struct Printer {
    mode: OutputMode,
}

impl Printer {
    pub(crate) fn new(mode: OutputMode) -> Self {
        Printer { mode }
    }

    pub(crate) fn mode(&self) -> OutputMode {
        self.mode
    }

    /// Data a script could pipe (`plan`, `runs`, `show`, JSON results): stdout, always.
    pub(crate) fn data(&self, text: impl Display) {
        println!("{text}");
    }

    /// A message for people: stderr, unless `-q`.
    pub(crate) fn info(&self, text: impl Display) {
        if self.mode.verbosity != Verbosity::Quiet {
            eprintln!("{text}");
        }
    }

    /// `error: …`, then `  hint: …` when there is one. Shown even with `-q`.
    pub(crate) fn error(&self, message: impl Display, hint: Option<&str>) {
        let label = if self.mode.color {
            console::Style::new()
                .red()
                .bold()
                .force_styling(true)
                .apply_to("error:")
                .to_string()
        } else {
            "error:".to_owned()
        };
        match hint {
            Some(hint) => eprintln!("{label} {message}\n  hint: {hint}"),
            None => eprintln!("{label} {message}"),
        }
    }
}
