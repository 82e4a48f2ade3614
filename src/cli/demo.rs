//! `rollwave demo`: its flags; the story itself is [`crate::demo::story`].

use std::process::ExitCode;

use crate::demo::story::{DemoOptions, run as tell};

/// Flags of `rollwave demo`.
#[derive(Debug, Clone, clap::Args)]
pub struct DemoArgs {
    /// Divide the demo's bake time (4 s) by this (its 20 s progress deadline stays, so
    /// that a busy machine's slow but healthy rollout is not taken for a failed one).
    #[arg(long, default_value_t = 1.0)]
    pub speed: f64,
    /// Leave the clusters and agents running at the end and print the kubeconfig.
    #[arg(long)]
    pub keep: bool,
    /// When `helm` is not on PATH and the repository's pinned helm is not built yet,
    /// build it first (`tests/helm/build`; needs Go) so the Helm app is in the story.
    #[arg(long)]
    pub build_helm: bool,
}

/// Runs the demo; exits 0 only if every expectation held.
pub fn run(args: &DemoArgs) -> anyhow::Result<ExitCode> {
    tell(&DemoOptions {
        speed: args.speed,
        keep: args.keep,
        build_helm: args.build_helm,
    })
    .map_err(anyhow::Error::from)
}
