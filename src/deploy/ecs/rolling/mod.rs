//! The rolling strategy: ECS's own controller replaces the tasks; shipit updates the service
//! (`rollout`), decides from our deployment whether it finished and how (`gate`), and explains
//! a failure from the evidence AWS holds (`diagnosis`).

pub(crate) mod diagnosis;
pub(crate) mod gate;
pub(crate) mod rollout;
