//! `rollwave validate --repo PATH|URL [--rev REV]`: every app for every cluster, every
//! error listed.

use std::process::ExitCode;

use super::RepoArgs;

use crate::fleet::{self, targets_cluster};
use crate::render::render;

/// Renders everything; prints each failure and a summary; exit 1 if anything failed.
pub fn run(source: &RepoArgs) -> anyhow::Result<ExitCode> {
    let opened = super::repo::open(
        &source.repo,
        source.path.as_deref(),
        source.rev.as_deref(),
        &source.branch,
    )?;
    let tree = opened.tree.as_ref();
    let (fleet, broken) = fleet::load_apps_apart(tree)?;
    let mut renders = 0usize;
    let mut errors = broken.len();
    for b in &broken {
        eprintln!("error: app '{}': {}", b.name, b.error);
    }
    for app in &fleet.apps {
        for cluster in fleet.clusters.iter().filter(|c| targets_cluster(app, c)) {
            renders += 1;
            if let Err(e) = render(tree, &fleet, app, cluster) {
                errors += 1;
                eprintln!(
                    "error: app '{}' for cluster '{}': {e}",
                    app.name, cluster.name
                );
            }
        }
    }
    println!(
        "validated {} apps on {} clusters: {renders} renderings, {errors} errors",
        fleet.apps.len() + broken.len(),
        fleet.clusters.len()
    );
    Ok(if errors == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
