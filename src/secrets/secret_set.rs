//! The values one run must never show, and the one function that hides them: every occurrence
//! becomes `***`.

use std::borrow::Cow;
use std::sync::{Arc, Mutex};

use super::issued::{issued_count, issued_secrets};
use crate::journal::RunRecord;

/// What a secret is replaced with.
pub(crate) const MASK: &str = "***";

/// A run's secret values (environment variables the pipeline lists, build secrets, well-known
/// credential variables) together with every credential the process has obtained so far.
pub(crate) struct SecretSet {
    own: Vec<String>,
    known: Mutex<Known>,
}

/// The values to hide, longest first, as of `issued` noted credentials.
struct Known {
    issued: usize,
    values: Arc<Vec<String>>,
}

/// The shortest line of a multi-line secret that is hidden on its own. Shorter lines of a key
/// file (`{`, `}`, `  ],`) are punctuation that every JSON result and log holds too: hiding them
/// would garble all output and hide nothing.
const MIN_LINE_FORM: usize = 8;

/// A value and its lines: a multi-line secret (a key file) can be printed a line at a time.
fn forms(value: &str) -> Vec<String> {
    let mut forms = vec![value.to_owned(), value.trim().to_owned()];
    if value.trim().contains('\n') {
        forms.extend(
            value
                .lines()
                .map(|line| line.trim_end_matches('\r').to_owned())
                .filter(|line| line.trim().len() >= MIN_LINE_FORM),
        );
    }
    forms.retain(|form| !form.trim().is_empty());
    forms
}

impl SecretSet {
    pub(crate) fn new(values: impl IntoIterator<Item = String>) -> Self {
        let mut own: Vec<String> = values.into_iter().flat_map(|v| forms(&v)).collect();
        own.sort();
        own.dedup();
        SecretSet {
            own,
            known: Mutex::new(Known {
                // Never equal to a real count, so the first use gathers the noted credentials.
                issued: usize::MAX,
                values: Arc::default(),
            }),
        }
    }

    /// Every value to hide, longest first (so a secret that contains another is hidden whole).
    pub(crate) fn values(&self) -> Arc<Vec<String>> {
        let mut known = self.known.lock().unwrap_or_else(|e| e.into_inner());
        let issued = issued_count();
        if known.issued != issued {
            let mut values: Vec<String> = self.own.clone();
            values.extend(issued_secrets().iter().flat_map(|v| forms(v)));
            values.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
            values.dedup();
            *known = Known {
                issued,
                values: Arc::new(values),
            };
        }
        known.values.clone()
    }

    /// `text` with every secret replaced by `***`.
    pub(crate) fn mask<'a>(&self, text: &'a str) -> Cow<'a, str> {
        let mut masked = Cow::Borrowed(text);
        for secret in self.values().iter() {
            if masked.contains(secret.as_str()) {
                masked = Cow::Owned(masked.replace(secret.as_str(), MASK));
            }
        }
        masked
    }

    pub(crate) fn mask_string(&self, text: &str) -> String {
        self.mask(text).into_owned()
    }

    /// Every string inside `value`, masked in place.
    pub(crate) fn mask_json(&self, value: &mut serde_json::Value) {
        match value {
            serde_json::Value::String(text) => {
                if let Cow::Owned(masked) = self.mask(text) {
                    *text = masked;
                }
            }
            serde_json::Value::Array(items) => items.iter_mut().for_each(|v| self.mask_json(v)),
            serde_json::Value::Object(map) => map.values_mut().for_each(|v| self.mask_json(v)),
            _ => {}
        }
    }

    /// A run record as it may be written or shown: the text a stage's work puts in it (why it
    /// ran, its error and hint, its outputs) masked. The rest is shipit's own (ids, statuses,
    /// times, digests) and the pipeline's names.
    pub(crate) fn mask_record(&self, record: &RunRecord) -> RunRecord {
        let mut masked = record.clone();
        for stage in &mut masked.stages {
            if let Some(reason) = &mut stage.reason {
                *reason = self.mask_string(reason);
            }
            if let Some(error) = &mut stage.error {
                error.message = self.mask_string(&error.message);
                error.hint = error.hint.as_deref().map(|hint| self.mask_string(hint));
            }
            stage.outputs.values_mut().for_each(|v| self.mask_json(v));
        }
        masked
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::{RunStatus, StageError, StageRecord};
    use crate::plan::StageId;

    #[test]
    fn every_occurrence_is_masked_and_a_longer_secret_wins_over_one_inside_it() {
        let set = SecretSet::new(["abc".to_owned(), "xxabcxx".to_owned()]);
        assert_eq!(set.mask("abc and xxabcxx, abc"), "*** and ***, ***");
        assert!(matches!(set.mask("nothing here"), Cow::Borrowed(_)));
    }

    #[test]
    fn a_multi_line_secret_is_masked_whole_and_line_by_line_and_blanks_are_not_secrets() {
        let set = SecretSet::new([
            "-----BEGIN KEY-----\r\nAAAAline\r\n-----END KEY-----\n".to_owned(),
            "  ".to_owned(),
            String::new(),
        ]);
        assert_eq!(set.mask("got AAAAline here"), "got *** here");
        assert_eq!(set.mask("a  b"), "a  b");
        assert!(set.values().iter().all(|v| !v.trim().is_empty()));
    }

    #[test]
    fn credentials_noted_later_are_masked_by_a_set_made_earlier() {
        let set = SecretSet::new(["run-secret-1".to_owned()]);
        assert_eq!(
            set.mask("issued-later-5f1c run-secret-1"),
            "issued-later-5f1c ***"
        );
        super::super::issued::note_issued_secret("issued-later-5f1c");
        assert_eq!(set.mask("issued-later-5f1c run-secret-1"), "*** ***");
    }

    #[test]
    fn a_record_is_masked_in_reasons_errors_hints_and_outputs() {
        let set = SecretSet::new(["hunter2".to_owned()]);
        let mut stage = StageRecord::pending(StageId::build("web"));
        stage.reason = Some("arg hunter2 changed".into());
        stage.error = Some(StageError {
            message: "step echoed hunter2".into(),
            hint: Some("rotate hunter2".into()),
        });
        stage.outputs.insert(
            "nested".into(),
            serde_json::json!({"list": ["a hunter2 b", 3]}),
        );
        let mut record = RunRecord::for_test("r1", "p", vec![stage]);
        record.status = RunStatus::Failed;
        let masked = set.mask_record(&record);
        let text = serde_json::to_string(&masked).unwrap();
        assert!(!text.contains("hunter2"), "{text}");
        assert_eq!(masked.stages[0].reason.as_deref(), Some("arg *** changed"));
        assert_eq!(
            masked.stages[0].outputs["nested"],
            serde_json::json!({"list": ["a *** b", 3]})
        );
    }

    #[test]
    fn a_multi_line_secret_hides_its_lines_but_not_the_punctuation_every_output_has() {
        let key = "{\n  \"private_key\": \"s3cr3t-key-material\",\n}\n";
        let set = SecretSet::new([key.to_owned()]);
        assert_eq!(set.mask("{\"ok\": true}"), "{\"ok\": true}");
        assert_eq!(
            set.mask("echo   \"private_key\": \"s3cr3t-key-material\","),
            "echo ***"
        );
    }
}
