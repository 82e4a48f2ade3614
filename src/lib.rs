//! rollwave: a GitOps agent for fleets of Kubernetes clusters with gray-release rollouts.
//!
//! The modules follow the data flow of the design (DESIGN §1; a map is in
//! `docs/development.md`):
//!
//! - [`source`]: the Git source (mirror, fetch, trees, release history, status refs);
//!   [`tree`]: read-only file trees, the one way the model and the renderer see files.
//! - [`fleet`]: the repository model (fleet.yaml, clusters, apps; targeting, tenancy).
//! - [`render`]: templates, kustomize and Helm: `(tree, app, cluster) -> objects`.
//! - [`plan`]: waves, gates and the release every app should run on every cluster;
//!   [`prometheus`]: the analysis' queries.
//! - [`apply`]: the reconciler (dry run, server-side apply, inventory, prune, health).
//! - [`status`]: what an agent publishes for its cluster, in Git refs or the hub.
//! - [`agent`]: the loop that runs all of the above per cluster; [`metrics`]: its
//!   Prometheus metrics; [`contain`]: per-app work isolated on its own thread.
//! - [`ui`]: the web view; [`review`]: what a change does, for a pull request;
//!   [`cli`]: the command line.
//! - [`sim`]: simulated clusters (an API server real clients accept), for `rollwave
//!   sim`, `rollwave demo` and the tests: the workspace's `kube-sim` crate;
//!   [`demo`]: the demo's story; [`signals`]: stopping long-running commands.
//! - Shared leaves, from the workspace's `manifest` crate: [`yaml`] (bounded parsing),
//!   [`schema`] (scope of built-in kinds, merge keys), [`fieldset`] (server-side
//!   apply's field sets), [`labels`] (selector syntax), [`names`] (name syntax); and
//!   [`vocab`] (label and annotation names).

pub mod agent;
pub mod apply;
pub mod cli;
pub mod contain;
pub mod demo;
pub mod error_text;
pub mod fleet;
pub mod metrics;
pub mod plan;
pub mod prometheus;
pub mod render;
pub mod review;
pub mod signals;
pub mod source;
pub mod status;
pub mod tree;
pub mod ui;
pub mod vocab;

// Shared with the simulated API server: the leaves both read manifests with.
pub use manifest::{fieldset, labels, names, schema, yaml};

/// The simulated Kubernetes clusters of the `sim` and `demo` commands and the tests:
/// the `kube-sim` crate of this workspace.
pub use kube_sim as sim;
