//! rollwave: a GitOps agent for fleets of Kubernetes clusters with gray-release rollouts.
//!
//! The crate is organised after the data flow of the design: [`tree`] (files),
//! [`fleet`] (the repository model), [`render`] (templates and kustomize), and the CLI
//! in [`cli`]. Shared vocabulary lives in [`vocab`]. [`review`] turns two renderings
//! into what a reviewer reads (Secret values masked).

pub mod agent;
pub mod apply;
pub mod cli;
pub mod contain;
pub mod fieldset;
pub mod fleet;
pub mod labels;
pub mod metrics;
pub mod names;
pub mod plan;
pub mod prometheus;
pub mod render;
pub mod review;
pub mod schema;
pub mod sim;
pub mod source;
pub mod status;
pub mod tree;
pub mod ui;
pub mod vocab;
pub mod yaml;
