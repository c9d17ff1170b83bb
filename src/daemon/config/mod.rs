//! The daemon's configuration file.

mod model;
mod secret_value;

pub use model::*;
