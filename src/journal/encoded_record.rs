//! A record serialised at the revision it is about to be stored at, with its summary: what
//! every store writes on `create` and `save`, in the one serde shape all stores share.

use super::error::JournalError;
use super::record::RunRecord;
use super::summary::RunSummary;

pub(crate) struct EncodedRecord {
    /// The record's JSON, as the file store has always written it.
    pub journal: String,
    pub summary: RunSummary,
}

impl EncodedRecord {
    /// `run` as it reads at `revision`; `run` itself is left as it was.
    pub fn at(run: &mut RunRecord, revision: u64) -> Result<Self, JournalError> {
        let read = std::mem::replace(&mut run.revision, revision);
        let journal = serde_json::to_string_pretty(run);
        let summary = RunSummary::of(run);
        run.revision = read;
        Ok(EncodedRecord {
            journal: journal?,
            summary,
        })
    }
}
