//! Chooses how output looks: a live terminal display, plain lines, or CI-flavoured plain lines,
//! with or without colour, from the command line and the environment.

/// Which CI system (if any) runs shipit: decides the flavour of plain output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CiSystem {
    GithubActions,
    Gitlab,
    /// Jenkins, Buildkite, CircleCI, Azure Pipelines or a generic `CI=true`.
    Other,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verbosity {
    Quiet,
    Normal,
    Verbose,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutputMode {
    /// Progress bars and spinners on the terminal (never in CI, even with a faked TTY).
    pub live: bool,
    pub color: bool,
    pub ci: Option<CiSystem>,
    pub verbosity: Verbosity,
}

impl OutputMode {
    /// Decides from the environment (read through `var`, so tests can pass their own).
    pub fn detect(
        var: &dyn Fn(&str) -> Option<String>,
        stderr_is_terminal: bool,
        no_progress: bool,
        verbosity: Verbosity,
    ) -> Self {
        let set = |name: &str| var(name).is_some_and(|v| !v.is_empty() && v != "0" && v != "false");
        let ci = if set("GITHUB_ACTIONS") {
            Some(CiSystem::GithubActions)
        } else if set("GITLAB_CI") {
            Some(CiSystem::Gitlab)
        } else if ["CI", "JENKINS_URL", "BUILDKITE", "CIRCLECI", "TF_BUILD"]
            .iter()
            .any(|v| set(v))
        {
            Some(CiSystem::Other)
        } else {
            None
        };
        // NO_COLOR wins; FORCE_COLOR / CLICOLOR_FORCE turn colour on without a terminal (CI logs
        // render ANSI); GitHub and GitLab logs render colour too.
        let color = if var("NO_COLOR").is_some_and(|v| !v.is_empty()) {
            false
        } else if set("FORCE_COLOR") || set("CLICOLOR_FORCE") {
            true
        } else {
            stderr_is_terminal || matches!(ci, Some(CiSystem::GithubActions | CiSystem::Gitlab))
        };
        let live =
            stderr_is_terminal && ci.is_none() && !no_progress && verbosity != Verbosity::Quiet;
        OutputMode {
            live,
            color,
            ci,
            verbosity,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn detect(vars: &[(&str, &str)], tty: bool) -> OutputMode {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        OutputMode::detect(
            &|name| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()),
            tty,
            false,
            Verbosity::Normal,
        )
    }

    #[test]
    fn a_terminal_outside_ci_gets_live_progress_and_colour() {
        let mode = detect(&[], true);
        assert!(mode.live && mode.color && mode.ci.is_none());
    }

    #[test]
    fn ci_never_gets_progress_bars_even_with_a_tty() {
        let mode = detect(&[("CI", "true")], true);
        assert!(!mode.live);
        assert_eq!(mode.ci, Some(CiSystem::Other));
        assert_eq!(
            detect(&[("GITHUB_ACTIONS", "true")], true).ci,
            Some(CiSystem::GithubActions)
        );
        assert_eq!(
            detect(&[("GITLAB_CI", "true")], false).ci,
            Some(CiSystem::Gitlab)
        );
        assert_eq!(
            detect(&[("JENKINS_URL", "http://j")], false).ci,
            Some(CiSystem::Other)
        );
    }

    #[test]
    fn no_color_wins_and_force_color_works_without_a_tty() {
        assert!(!detect(&[("NO_COLOR", "1"), ("FORCE_COLOR", "1")], true).color);
        assert!(detect(&[("FORCE_COLOR", "1")], false).color);
        assert!(!detect(&[], false).color);
    }
}
