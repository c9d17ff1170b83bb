//! What a verified delivery asks for, whichever source sent it.

/// A delivery after parsing: a push, a ping, or an event the daemon does not act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hook {
    Push(Push),
    /// GitHub's `ping` when a webhook is created: answered, recorded, nothing queued.
    Ping,
    /// An event shipit does not run pipelines for (`issues`, `Merge Request Hook`…): recorded
    /// as ignored so the sender sees it arrived.
    Unhandled,
}

/// A push of one ref, as the three sources describe it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Push {
    /// As the source names it: GitHub `repository.full_name`, GitLab
    /// `project.path_with_namespace`, the generic payload's `repository`.
    pub repository: String,
    /// `refs/heads/main`, `refs/tags/v1.2.0`.
    pub git_ref: String,
    pub before: Option<String>,
    /// The commit the ref now points at; all zeros when the ref was deleted.
    pub after: String,
    /// The head commit's message, for `[skip ci]`.
    pub head_message: Option<String>,
    /// Every file the pushed commits added, modified or removed; `None` when the payload cannot
    /// say (no commit list, or a list the sender truncated), and then no path filter applies.
    pub changed_paths: Option<Vec<String>>,
}

/// Git's null object id, which a push of a deleted ref carries as `after`.
pub fn is_null_sha(sha: &str) -> bool {
    !sha.is_empty() && sha.bytes().all(|b| b == b'0')
}

/// A commit id: 40 hex digits (SHA-1) or 64 (SHA-256 repositories).
pub fn is_commit_sha(sha: &str) -> bool {
    matches!(sha.len(), 40 | 64) && sha.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Why a verified body could not be read as the event it claims to be; a short reason the
/// sender may see (it is authenticated, and the reason names no secret).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct PayloadError(pub String);

impl PayloadError {
    pub fn new(message: impl Into<String>) -> Self {
        PayloadError(message.into())
    }

    /// From a JSON error, keeping where it happened (`line 1 column 18`) but not the content.
    pub fn json(err: &serde_json::Error) -> Self {
        let what = match err.classify() {
            serde_json::error::Category::Eof => "the JSON body ends early (truncated?)",
            serde_json::error::Category::Syntax => "the body is not valid JSON",
            serde_json::error::Category::Data => "the JSON body is not the expected payload",
            serde_json::error::Category::Io => "the body could not be read",
        };
        PayloadError(format!("{what}: {err}"))
    }
}

/// `delivery_id`s are logged and stored; anything that is not a short printable token (a GUID,
/// a UUID) is refused rather than written there.
pub fn check_delivery_id(id: &str) -> Result<(), PayloadError> {
    if id.is_empty() || id.len() > 128 || !id.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(PayloadError::new(
            "the delivery id must be 1 to 128 printable ASCII characters",
        ));
    }
    Ok(())
}
