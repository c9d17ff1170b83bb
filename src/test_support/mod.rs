//! What several modules' tests share.

pub(crate) mod tmpfs;
