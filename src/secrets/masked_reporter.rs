//! The report fan-out's guard: every event is masked before any renderer sees it, and every
//! secret is named to the renderers (`::add-mask::` under GitHub Actions) before the first
//! event that could carry it.

use std::collections::HashSet;
use std::sync::Mutex;

use super::SecretSet;
use crate::report::{Event, Reporter};

pub(crate) struct MaskedReporter<'a> {
    inner: &'a dyn Reporter,
    secrets: &'a SecretSet,
    /// The values already named to `inner`.
    announced: Mutex<HashSet<String>>,
}

impl<'a> MaskedReporter<'a> {
    /// Names the secrets known now to `inner` at once, so they come before any other output.
    pub(crate) fn new(inner: &'a dyn Reporter, secrets: &'a SecretSet) -> Self {
        let reporter = MaskedReporter {
            inner,
            secrets,
            announced: Mutex::new(HashSet::new()),
        };
        reporter.announce();
        reporter
    }

    /// Names the secrets `inner` has not heard of yet (credentials obtained since the last
    /// event). The set only grows, so equal sizes mean nothing new.
    fn announce(&self) {
        let values = self.secrets.values();
        let mut announced = self.announced.lock().unwrap_or_else(|e| e.into_inner());
        if announced.len() == values.len() {
            return;
        }
        for value in values.iter() {
            if announced.insert(value.clone()) {
                self.inner.register_secret(value);
            }
        }
    }
}

impl Reporter for MaskedReporter<'_> {
    fn report(&self, event: &Event) {
        self.announce();
        self.inner.report(&mask_event(self.secrets, event));
    }

    fn register_secret(&self, value: &str) {
        self.inner.register_secret(value);
    }
}

/// `event` with every text it carries masked; stage ids and statuses are shipit's own.
fn mask_event(secrets: &SecretSet, event: &Event) -> Event {
    let mask = |text: &String| secrets.mask_string(text);
    match event {
        Event::RunStarted {
            run_id,
            pipeline,
            resumed,
            stages,
        } => Event::RunStarted {
            run_id: run_id.clone(),
            pipeline: mask(pipeline),
            resumed: *resumed,
            stages: stages.clone(),
        },
        Event::StageSkipped { stage, reason } => Event::StageSkipped {
            stage: stage.clone(),
            reason: mask(reason),
        },
        Event::StageStarted {
            stage,
            attempt,
            reason,
        } => Event::StageStarted {
            stage: stage.clone(),
            attempt: *attempt,
            reason: mask(reason),
        },
        Event::StageProgress { stage, message } => Event::StageProgress {
            stage: stage.clone(),
            message: mask(message),
        },
        Event::StageChange { stage, message } => Event::StageChange {
            stage: stage.clone(),
            message: mask(message),
        },
        Event::StageLog { stage, line } => Event::StageLog {
            stage: stage.clone(),
            line: mask(line),
        },
        Event::StageOutput { stage, key, value } => Event::StageOutput {
            stage: stage.clone(),
            key: mask(key),
            value: mask(value),
        },
        Event::StageFinished {
            stage,
            status,
            elapsed,
            error,
            hint,
        } => Event::StageFinished {
            stage: stage.clone(),
            status: *status,
            elapsed: *elapsed,
            error: error.as_ref().map(mask),
            hint: hint.as_ref().map(mask),
        },
        Event::RunFinished {
            run_id,
            status,
            elapsed,
        } => Event::RunFinished {
            run_id: run_id.clone(),
            status: *status,
            elapsed: *elapsed,
        },
        Event::Warning { message } => Event::Warning {
            message: mask(message),
        },
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::journal::StageStatus;
    use crate::plan::StageId;

    /// Everything a renderer is told, in order.
    #[derive(Default)]
    struct Heard(Mutex<Vec<String>>);

    impl Reporter for Heard {
        fn report(&self, event: &Event) {
            self.0.lock().unwrap().push(format!("{event:?}"));
        }

        fn register_secret(&self, value: &str) {
            self.0.lock().unwrap().push(format!("secret {value}"));
        }
    }

    #[test]
    fn secrets_are_named_first_and_never_reach_a_renderer_in_an_event() {
        let heard = Heard::default();
        let secrets = SecretSet::new(["s3cret-token".to_owned()]);
        let reporter = MaskedReporter::new(&heard, &secrets);
        let stage = StageId::build("web");
        let events = [
            Event::StageLog {
                stage: stage.clone(),
                line: "echo s3cret-token".into(),
            },
            Event::StageProgress {
                stage: stage.clone(),
                message: "using s3cret-token".into(),
            },
            Event::StageOutput {
                stage: stage.clone(),
                key: "k".into(),
                value: "v s3cret-token".into(),
            },
            Event::StageFinished {
                stage: stage.clone(),
                status: StageStatus::Failed,
                elapsed: Duration::ZERO,
                error: Some("failed: s3cret-token".into()),
                hint: Some("rotate s3cret-token".into()),
            },
            Event::Warning {
                message: "s3cret-token".into(),
            },
        ];
        for event in &events {
            reporter.report(event);
        }
        let heard = heard.0.into_inner().unwrap();
        // Credentials other tests of this process noted are named too: the list is the
        // process's.
        let named = heard
            .iter()
            .take_while(|line| line.starts_with("secret "))
            .count();
        assert!(
            heard[..named].contains(&"secret s3cret-token".to_owned()),
            "{heard:#?}"
        );
        assert_eq!(heard.len() - named, events.len(), "{heard:#?}");
        for line in &heard[named..] {
            assert!(!line.contains("s3cret-token"), "{line}");
            assert!(line.contains("***"), "{line}");
        }
    }

    #[test]
    fn a_credential_obtained_mid_run_is_named_before_the_next_event() {
        let heard = Heard::default();
        let secrets = SecretSet::new(Vec::new());
        let reporter = MaskedReporter::new(&heard, &secrets);
        super::super::note_issued_secret("mid-run-ecr-password-9d2e");
        reporter.report(&Event::Warning {
            message: "mid-run-ecr-password-9d2e".into(),
        });
        let heard = heard.0.into_inner().unwrap();
        let named = heard
            .iter()
            .position(|l| l == "secret mid-run-ecr-password-9d2e")
            .expect("the credential was named");
        assert!(heard[named + 1..].iter().all(|l| !l.contains("9d2e")));
        assert!(heard.last().unwrap().contains("***"), "{heard:#?}");
    }
}
