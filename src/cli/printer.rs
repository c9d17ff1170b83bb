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

    /// `warning: …`: something the user should know that does not stop the command.
    pub(crate) fn warning(&self, message: impl Display) {
        if self.mode.verbosity == Verbosity::Quiet {
            return;
        }
        let label = self.label("warning:", console::Style::new().yellow());
        eprintln!("{label} {message}");
    }

    /// `error: …`, then `  hint: …` when there is one. Shown even with `-q`.
    pub(crate) fn error(&self, message: impl Display, hint: Option<&str>) {
        let label = self.label("error:", console::Style::new().red());
        match hint {
            Some(hint) => eprintln!("{label} {message}\n  hint: {hint}"),
            None => eprintln!("{label} {message}"),
        }
    }

    /// A bold, coloured label, or the bare word when colour is off.
    fn label(&self, text: &str, style: console::Style) -> String {
        if self.mode.color {
            style.bold().force_styling(true).apply_to(text).to_string()
        } else {
            text.to_owned()
        }
    }
}
