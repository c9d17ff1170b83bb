//! Files CI systems read after a run: GitHub's step outputs and job summary, a dotenv file for
//! GitLab's `artifacts:reports:dotenv` (and any shell), and JUnit XML for Jenkins (and every
//! other CI that shows test reports). Pure renderers over the run record.

use crate::journal::{RunRecord, StageRecord, StageStatus};
use crate::plan::StageKind;

fn seconds(record: &StageRecord) -> f64 {
    match (record.started_at, record.finished_at) {
        (Some(start), Some(end)) => (end - start).num_milliseconds() as f64 / 1000.0,
        _ => 0.0,
    }
}

/// What a run hands to the CI's later steps and jobs. GitHub's step outputs and the dotenv file
/// carry the same facts, so both are rendered from this one collection.
struct HandedOn<'a> {
    run_id: &'a str,
    status: &'static str,
    /// Each image a successful (or reused) push stage recorded, in the run's stage order.
    images: Vec<PushedImage<'a>>,
    /// Each deploy target with its stage's status, in the run's stage order.
    targets: Vec<(&'a str, &'static str)>,
}

struct PushedImage<'a> {
    name: &'a str,
    digest: Option<&'a str>,
    reference: Option<&'a str>,
}

impl<'a> HandedOn<'a> {
    fn of(run: &'a RunRecord) -> Self {
        let output = |stage: &'a StageRecord, key: &str| stage.outputs.get(key)?.as_str();
        let images = run
            .stages
            .iter()
            .filter(|s| s.stage.kind == StageKind::Push && s.status.is_success())
            .map(|s| PushedImage {
                name: &s.stage.name,
                digest: output(s, "digest"),
                reference: output(s, "ref"),
            })
            .collect();
        let targets = run
            .stages
            .iter()
            .filter(|s| s.stage.kind == StageKind::Deploy)
            .map(|s| (s.stage.name.as_str(), s.status.as_str()))
            .collect();
        HandedOn {
            run_id: &run.run_id,
            status: run.status.as_str(),
            images,
            targets,
        }
    }
}

/// `key=value` lines for `$GITHUB_OUTPUT`: the run; each pushed image's digest and ref and each
/// deploy target's status, so later steps can use `steps.<id>.outputs.web-digest`; and the same
/// three as JSON objects (`digests`, `refs`, `deploy-statuses`), because a composite action must
/// declare every output by name and cannot know the pipeline's image and target names.
pub fn github_outputs(run: &RunRecord) -> String {
    let handed = HandedOn::of(run);
    let mut out = format!("run-id={}\nstatus={}\n", handed.run_id, handed.status);
    let mut digests = serde_json::Map::new();
    let mut refs = serde_json::Map::new();
    let mut statuses = serde_json::Map::new();
    for image in &handed.images {
        if let Some(digest) = image.digest {
            out.push_str(&format!("{}-digest={digest}\n", image.name));
            digests.insert(image.name.to_owned(), digest.into());
        }
        if let Some(reference) = image.reference {
            out.push_str(&format!("{}-ref={reference}\n", image.name));
            refs.insert(image.name.to_owned(), reference.into());
        }
    }
    for (target, status) in &handed.targets {
        out.push_str(&format!("{target}-status={status}\n"));
        statuses.insert((*target).to_owned(), (*status).into());
    }
    for (key, map) in [
        ("digests", digests),
        ("refs", refs),
        ("deploy-statuses", statuses),
    ] {
        out.push_str(&format!("{key}={}\n", serde_json::Value::Object(map)));
    }
    out
}

/// The dotenv file (`--dotenv-file`), and the names it had to leave out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dotenv {
    pub text: String,
    pub clashes: Vec<DotenvClash>,
}

/// Two image or target names that become the same variable name (`web-app` and `web_app`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DotenvClash {
    pub variable: String,
    pub names: Vec<String>,
}

impl std::fmt::Display for DotenvClash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<String> = self.names.iter().map(|n| format!("`{n}`")).collect();
        let all = if names.len() == 2 { "both" } else { "all" };
        write!(
            f,
            "{} {all} become {}: the dotenv file leaves it out rather than pick one; rename one of them",
            names.join(" and "),
            self.variable
        )
    }
}

/// `SHIPIT_<NAME>_<SUFFIX>`: the name upper-cased, every character that is not an ASCII letter
/// or digit as `_`, since GitLab accepts only those and `_` in a dotenv key.
fn dotenv_key(name: &str, suffix: &str) -> String {
    let name: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect();
    format!("SHIPIT_{name}_{suffix}")
}

/// `KEY=VALUE` lines for GitLab's `artifacts:reports:dotenv`: `SHIPIT_RUN_ID`, `SHIPIT_STATUS`,
/// `SHIPIT_<IMAGE>_DIGEST`, `SHIPIT_<IMAGE>_REF` and `SHIPIT_<TARGET>_STATUS`. GitLab's parser
/// takes no blank lines, comments, quotes or multi-line values, and none of these values needs
/// them, so the file can also be sourced by a shell as it is.
pub fn dotenv(run: &RunRecord) -> Dotenv {
    let handed = HandedOn::of(run);
    // (variable, name it came from, value), in the run's order.
    let mut entries: Vec<(String, &str, &str)> = Vec::new();
    for image in &handed.images {
        if let Some(digest) = image.digest {
            entries.push((dotenv_key(image.name, "DIGEST"), image.name, digest));
        }
        if let Some(reference) = image.reference {
            entries.push((dotenv_key(image.name, "REF"), image.name, reference));
        }
    }
    for (target, status) in &handed.targets {
        entries.push((dotenv_key(target, "STATUS"), target, status));
    }
    let mut clashes: Vec<DotenvClash> = Vec::new();
    for (index, (variable, _, _)) in entries.iter().enumerate() {
        let same: Vec<&(String, &str, &str)> = entries
            .iter()
            .filter(|(other, _, _)| other == variable)
            .collect();
        let first = entries.iter().position(|(other, _, _)| other == variable) == Some(index);
        if same.len() > 1 && first {
            clashes.push(DotenvClash {
                variable: variable.clone(),
                names: same.iter().map(|(_, name, _)| (*name).to_owned()).collect(),
            });
        }
    }
    let mut text = format!(
        "SHIPIT_RUN_ID={}\nSHIPIT_STATUS={}\n",
        handed.run_id, handed.status
    );
    for (variable, _, value) in &entries {
        if !clashes.iter().any(|c| &c.variable == variable) {
            text.push_str(&format!("{variable}={value}\n"));
        }
    }
    Dotenv { text, clashes }
}

/// A Markdown table for `$GITHUB_STEP_SUMMARY`.
pub fn github_summary(run: &RunRecord) -> String {
    let mut out = format!(
        "### shipit run `{}` of `{}`: {}\n\n",
        run.run_id,
        run.pipeline,
        run.status.as_str()
    );
    out.push_str("| stage | status | time | details |\n|---|---|---|---|\n");
    for stage in &run.stages {
        let details = match (&stage.error, &stage.reason) {
            (Some(error), _) => error.message.lines().next().unwrap_or_default().to_owned(),
            (None, Some(reason)) => reason.clone(),
            (None, None) => String::new(),
        };
        out.push_str(&format!(
            "| `{}` | {} | {:.1}s | {} |\n",
            stage.stage,
            stage.status.as_str(),
            seconds(stage),
            details.replace('|', "\\|")
        ));
    }
    out
}

fn xml_escape(text: &str) -> String {
    text.chars()
        .filter(|c| !c.is_control() || matches!(c, '\n' | '\t'))
        .map(|c| match c {
            '&' => "&amp;".to_owned(),
            '<' => "&lt;".to_owned(),
            '>' => "&gt;".to_owned(),
            '"' => "&quot;".to_owned(),
            '\'' => "&apos;".to_owned(),
            c => c.to_string(),
        })
        .collect()
}

/// JUnit XML: one test case per stage; skipped stages are `<skipped>`, failed ones `<failure>`.
pub fn junit(run: &RunRecord) -> String {
    let failures = run
        .stages
        .iter()
        .filter(|s| s.status.is_failure() || s.status == StageStatus::Interrupted)
        .count();
    let skipped = run
        .stages
        .iter()
        .filter(|s| {
            matches!(
                s.status,
                StageStatus::Skipped | StageStatus::Blocked | StageStatus::Pending
            )
        })
        .count();
    let total: f64 = run.stages.iter().map(seconds).sum();
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    out.push_str(&format!(
        "<testsuites name=\"shipit\" tests=\"{}\" failures=\"{failures}\" time=\"{total:.3}\">\n  <testsuite name=\"{}\" tests=\"{}\" failures=\"{failures}\" skipped=\"{skipped}\" time=\"{total:.3}\" timestamp=\"{}\">\n",
        run.stages.len(),
        xml_escape(&run.pipeline),
        run.stages.len(),
        run.started_at.format("%Y-%m-%dT%H:%M:%S")
    ));
    for stage in &run.stages {
        out.push_str(&format!(
            "    <testcase classname=\"{}.{}\" name=\"{}\" time=\"{:.3}\"",
            xml_escape(&run.pipeline),
            stage.stage.kind.as_str(),
            xml_escape(&stage.stage.to_string()),
            seconds(stage)
        ));
        let reason = xml_escape(stage.reason.as_deref().unwrap_or_default());
        match stage.status {
            StageStatus::Succeeded => out.push_str("/>\n"),
            StageStatus::Skipped | StageStatus::Blocked | StageStatus::Pending => {
                out.push_str(&format!(
                    ">\n      <skipped message=\"{} ({reason})\"/>\n    </testcase>\n",
                    stage.status.as_str()
                ));
            }
            _ => {
                let message = stage
                    .error
                    .as_ref()
                    .map(|e| e.message.as_str())
                    .unwrap_or("");
                let first = xml_escape(message.lines().next().unwrap_or_default());
                out.push_str(&format!(
                    ">\n      <failure message=\"{first}\" type=\"{}\">{}</failure>\n    </testcase>\n",
                    stage.status.as_str(),
                    xml_escape(message)
                ));
            }
        }
    }
    out.push_str("  </testsuite>\n</testsuites>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::{RunStatus, StageError, StageRecord};
    use crate::plan::StageId;

    fn run() -> RunRecord {
        let t = |s: &str| {
            chrono::DateTime::parse_from_rfc3339(s)
                .unwrap()
                .with_timezone(&chrono::Utc)
        };
        let mut push = StageRecord::pending(StageId::push("web"));
        push.status = StageStatus::Succeeded;
        push.started_at = Some(t("2026-01-01T00:00:00Z"));
        push.finished_at = Some(t("2026-01-01T00:00:02.500Z"));
        push.outputs.insert("digest".into(), "sha256:ab".into());
        push.outputs.insert("ref".into(), "r/web@sha256:ab".into());
        let mut deploy = StageRecord::pending(StageId::deploy("web"));
        deploy.status = StageStatus::RolledBack;
        deploy.error = Some(StageError {
            message: "replica <1> failed & exited\nlogs".into(),
            hint: None,
        });
        let mut build = StageRecord::pending(StageId::build("web"));
        build.status = StageStatus::Skipped;
        build.reason = Some("unchanged since run r0".into());
        let mut run = RunRecord::for_test("r1", "shop", vec![build, push, deploy]);
        run.status = RunStatus::RolledBack;
        run
    }

    #[test]
    fn github_outputs_carry_the_run_pushed_digests_and_target_statuses() {
        assert_eq!(
            github_outputs(&run()),
            "run-id=r1\nstatus=rolled_back\nweb-digest=sha256:ab\nweb-ref=r/web@sha256:ab\n\
             web-status=rolled_back\n\
             digests={\"web\":\"sha256:ab\"}\nrefs={\"web\":\"r/web@sha256:ab\"}\n\
             deploy-statuses={\"web\":\"rolled_back\"}\n"
        );
    }

    #[test]
    fn github_outputs_name_every_deploy_target_whatever_its_status() {
        let mut record = run();
        let mut api = StageRecord::pending(StageId::deploy("api"));
        api.status = StageStatus::Blocked;
        record.stages.push(api);
        let mut failed_push = StageRecord::pending(StageId::push("api"));
        failed_push.status = StageStatus::Failed;
        failed_push
            .outputs
            .insert("digest".into(), "sha256:half".into());
        record.stages.push(failed_push);
        let outputs = github_outputs(&record);
        assert!(outputs.contains("\napi-status=blocked\n"), "{outputs}");
        assert!(
            outputs.contains("deploy-statuses={\"web\":\"rolled_back\",\"api\":\"blocked\"}\n"),
            "{outputs}"
        );
        assert!(
            !outputs.contains("sha256:half"),
            "a failed push hands on no digest: {outputs}"
        );
    }

    #[test]
    fn dotenv_names_are_upper_case_with_underscores() {
        let mut record = run();
        record.stages[1].stage = StageId::push("web-app.v2");
        record.stages[2].stage = StageId::deploy("edge.eu-1");
        let dotenv = dotenv(&record);
        assert_eq!(
            dotenv.text,
            "SHIPIT_RUN_ID=r1\nSHIPIT_STATUS=rolled_back\n\
             SHIPIT_WEB_APP_V2_DIGEST=sha256:ab\nSHIPIT_WEB_APP_V2_REF=r/web@sha256:ab\n\
             SHIPIT_EDGE_EU_1_STATUS=rolled_back\n"
        );
        assert!(dotenv.clashes.is_empty());
    }

    #[test]
    fn dotenv_lines_are_what_gitlab_accepts() {
        let text = dotenv(&run()).text;
        for line in text.lines() {
            let (key, value) = line.split_once('=').expect("KEY=VALUE");
            assert!(
                !key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
                "{line}"
            );
            assert!(
                !value.is_empty() && !value.contains(['"', '\'', '#', ' ']),
                "{line}"
            );
        }
        assert!(text.ends_with('\n') && !text.contains("\n\n"), "{text:?}");
    }

    #[test]
    fn names_that_become_one_dotenv_variable_are_left_out_and_reported() {
        let mut record = run();
        let mut other = StageRecord::pending(StageId::deploy("Web"));
        other.status = StageStatus::Succeeded;
        record.stages.push(other);
        let dotenv = dotenv(&record);
        assert!(
            !dotenv.text.contains("SHIPIT_WEB_STATUS"),
            "{}",
            dotenv.text
        );
        assert!(
            dotenv.text.contains("SHIPIT_WEB_DIGEST=sha256:ab\n"),
            "{}",
            dotenv.text
        );
        assert_eq!(
            dotenv.clashes,
            [DotenvClash {
                variable: "SHIPIT_WEB_STATUS".into(),
                names: vec!["web".into(), "Web".into()],
            }]
        );
        assert_eq!(
            dotenv.clashes[0].to_string(),
            "`web` and `Web` both become SHIPIT_WEB_STATUS: the dotenv file leaves it out rather than pick one; rename one of them"
        );
    }

    #[test]
    fn github_summary_is_a_table_row_per_stage() {
        let summary = github_summary(&run());
        assert!(
            summary.contains("| `push:web` | succeeded | 2.5s |"),
            "{summary}"
        );
        assert!(
            summary.contains("| `deploy:web` | rolled_back | 0.0s | replica <1> failed & exited |"),
            "{summary}"
        );
    }

    #[test]
    fn junit_marks_failures_and_skips_and_escapes_xml() {
        let xml = junit(&run());
        assert!(
            xml.contains("tests=\"3\" failures=\"1\" skipped=\"1\""),
            "{xml}"
        );
        assert!(
            xml.contains(
                "<failure message=\"replica &lt;1&gt; failed &amp; exited\" type=\"rolled_back\">"
            ),
            "{xml}"
        );
        assert!(
            xml.contains("<skipped message=\"skipped (unchanged since run r0)\"/>"),
            "{xml}"
        );
    }
}
