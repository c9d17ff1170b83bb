//! The executor for stage kinds whose implementation has not landed yet: it fails at run time
//! with a clear message, never silently succeeding.

use async_trait::async_trait;

use super::{Outputs, StageContext, StageExecutor, StageFailure, StageInput};

pub struct NotImplemented {
    pub what: &'static str,
}

impl NotImplemented {
    fn failure(&self, input: &StageInput<'_>) -> StageFailure {
        StageFailure::failed(format!(
            "{}: {} is not implemented yet in this version of shipit",
            input.id, self.what
        ))
        .with_hint("validate and plan work for this target; run the other stages with --only")
    }
}

#[async_trait]
impl StageExecutor for NotImplemented {
    async fn fingerprint(&self, _: &StageInput<'_>) -> Result<serde_json::Value, StageFailure> {
        Ok(serde_json::Value::Null)
    }

    async fn outputs_exist(&self, _: &StageInput<'_>, _: &Outputs) -> Result<bool, StageFailure> {
        Ok(false)
    }

    async fn run(&self, input: &StageInput<'_>, _: &StageContext<'_>) -> Result<(), StageFailure> {
        Err(self.failure(input))
    }
}
