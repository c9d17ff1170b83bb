pub mod docker;
pub mod ecs;
