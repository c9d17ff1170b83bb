//! Files CI systems read after a run: GitHub's step outputs and job summary, and JUnit XML for
//! Jenkins (and every other CI that shows test reports). Pure renderers over the run record.

use crate::journal::{RunRecord, StageStatus};
use crate::plan::StageKind;

fn seconds(record: &crate::journal::StageRecord) -> f64 {
    match (record.started_at, record.finished_at) {
        (Some(start), Some(end)) => (end - start).num_milliseconds() as f64 / 1000.0,
        _ => 0.0,
    }
}

/// `key=value` lines for `$GITHUB_OUTPUT`: the run, and each pushed image's digest and ref, so
/// later steps can use `steps.<id>.outputs.web-digest`.
pub fn github_outputs(run: &RunRecord) -> String {
    let mut out = format!("run-id={}\nstatus={}\n", run.run_id, run.status.as_str());
    for stage in &run.stages {
        if stage.stage.kind != StageKind::Push || !stage.status.is_success() {
            continue;
        }
        for (key, field) in [("digest", "digest"), ("ref", "ref")] {
            if let Some(value) = stage.outputs.get(field).and_then(|v| v.as_str()) {
                out.push_str(&format!("{}-{key}={value}\n", stage.stage.name));
            }
        }
    }
    out
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
    use crate::journal::{GitSnapshot, RunStatus, StageError, StageRecord};
    use crate::plan::{Selection, StageId};

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
        RunRecord {
            format: 1,
            revision: 0,
            run_id: "r1".into(),
            pipeline: "shop".into(),
            pipeline_file: "shipit.yaml".into(),
            pipeline_digest: "d".into(),
            environment: None,
            selection: Selection::default(),
            git: GitSnapshot {
                sha: None,
                branch: None,
                dirty: false,
            },
            status: RunStatus::RolledBack,
            started_at: t("2026-01-01T00:00:00Z"),
            finished_at: None,
            stopped_by: None,
            stages: vec![build, push, deploy],
        }
    }

    #[test]
    fn github_outputs_carry_the_run_and_pushed_digests() {
        assert_eq!(
            github_outputs(&run()),
            "run-id=r1\nstatus=rolled_back\nweb-digest=sha256:ab\nweb-ref=r/web@sha256:ab\n"
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
