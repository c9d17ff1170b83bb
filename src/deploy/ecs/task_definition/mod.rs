//! The task definition a deploy rolls out: built from the file or the live revision
//! (`document`), compared with the live one in a normal form (`normal_form`), shown as a diff
//! for the plan (`diff`), and registered or read as the JSON it is (`raw_calls`).

pub(crate) mod diff;
pub(crate) mod document;
pub(crate) mod normal_form;
pub(crate) mod raw_calls;

#[cfg(test)]
pub(crate) mod fixtures;
