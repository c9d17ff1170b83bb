//! The Docker adapter: connecting to the daemon, the build context, image builds.

pub mod connect;
pub mod context;
