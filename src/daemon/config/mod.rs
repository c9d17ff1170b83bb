//! The daemon's configuration file: what is written (`file`), how it is read and checked
//! (`load`), and what the rest of the daemon reads (`model`).

mod file;
mod load;
mod model;
mod secret_value;
#[cfg(test)]
mod tests;

pub use load::{DEFAULT_LISTEN, DEFAULT_MAX_BODY_BYTES, DaemonConfigError, from_source, load};
pub use model::*;
