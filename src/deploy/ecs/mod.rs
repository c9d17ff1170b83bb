//! The `ecs:` deploy target: registers a task definition revision whose containers run the
//! pushed digests, rolls it out (the ECS rolling controller, or a CodeDeploy blue/green
//! deployment) and gates on the deployment *this* deploy created: a rollback, a competing
//! deploy or a stall is never reported as success.
//!
//! Files: `spec` (what a deploy is asked to do), `clients` (the AWS clients, from the one
//! shared AWS configuration), `pace` (when to ask AWS again while waiting), `outcome` (what a
//! deploy records: the checkpoint a resume re-attaches from, and the result), `observer` (how
//! progress and checkpoints leave the deploy), `error`, and `blue_green` (CodeDeploy).
//! `deploy` holds the entry points; `task_definition` builds, compares, diffs and registers the
//! revision; `service_changes` says which service settings change; `snapshot` and `ecs_calls`
//! are what is read of AWS; `api_error` turns AWS failures into advice; `rolling` is the ECS
//! controller's strategy (the loop, the gate, the failure explanation).

mod api_error;
mod blue_green;
mod clients;
mod deploy;
mod ecs_calls;
mod error;
mod observer;
mod outcome;
mod pace;
mod rolling;
mod service_changes;
mod snapshot;
mod spec;
mod task_definition;

pub use blue_green::approve_reroute;
pub use clients::EcsClients;
pub use deploy::{deploy, preflight, preview, roll_back, still_deployed};
pub use error::{EcsDeployError, EcsErrorKind};
pub use observer::EcsObserver;
pub use outcome::{EcsCheckpoint, EcsDeployOutcome};
pub use pace::PollPace;
pub use spec::{EcsDeploySpec, TaskDefinitionSource};
