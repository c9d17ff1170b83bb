mod aws_failure;
pub mod docker;
pub mod ecs;
pub mod eks;
