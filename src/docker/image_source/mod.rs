//! Reading an image out of the daemon, for a push: what the daemon says about it
//! (`daemon_image`), its layers straight from the daemon's layer store when that is on this
//! machine and readable (`layer_store`), or else the Engine API's export (`export_stream`),
//! read in one streaming pass (`archive_scan`) that hands each layer to whoever takes it.
//! Image archive files (`archive_file`) are read the same way. `archive_layout` says what an
//! archive's metadata means; `digest` and `media_types` are the image spec's names.
//!
//! Nothing here compresses or uploads: the registry adapter takes the layers from here.

pub(crate) mod archive_file;
#[cfg(test)]
pub(crate) mod archive_fixtures;
pub(crate) mod archive_layout;
pub(crate) mod archive_scan;
pub(crate) mod daemon_image;
pub(crate) mod digest;
pub(crate) mod export_stream;
pub(crate) mod layer_store;
pub(crate) mod media_types;
