//! shipit: a CI/CD pipeline runner. It reads a declarative pipeline file, builds container images
//! through the Docker daemon, pushes them to ECR or any OCI registry, and deploys them to a
//! Docker host (ECS and EKS deploys are accepted by the file format and coming), with stages
//! that resume where they stopped.
//!
//! The folders follow the pipeline: `pipeline` (the file), `plan` (what runs and why), `runner`
//! (running it), `journal` (what happened), `stages` (what each stage does), the adapters
//! (`git`, `docker`, `registry`, and the `credentials` both of the last two use), the deploy
//! targets (`deploy`), `report` (output), `secrets` (what must never appear in it), `app` (the
//! commands as library calls: a typed request in, events out, an outcome back) and `cli` (the
//! command line over `app`).

pub mod app;
pub mod cli;
pub mod config_problem;
mod credentials;
pub mod daemon;
pub mod deploy;
pub mod docker;
pub mod duration;
mod error_summary;
pub mod exit;
pub mod git;
mod go_path;
pub mod journal;
pub mod pipeline;
pub mod plan;
pub mod registry;
pub mod report;
pub mod runner;
mod secrets;
pub mod stages;
#[cfg(test)]
mod test_support;
