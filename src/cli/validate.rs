//! `rollwave validate --repo PATH`: every app for every cluster, every error listed.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;

use crate::fleet::{self, targets_cluster};
use crate::render::render;
use crate::tree::DirTree;

/// Renders everything; prints each failure and a summary; exit 1 if anything failed.
pub fn run(repo: &Path) -> anyhow::Result<ExitCode> {
    let tree = DirTree::open(repo)
        .with_context(|| format!("{}: cannot open repository", repo.display()))?;
    let fleet = fleet::load(&tree)?;
    let mut renders = 0usize;
    let mut errors = 0usize;
    for app in &fleet.apps {
        for cluster in fleet.clusters.iter().filter(|c| targets_cluster(app, c)) {
            renders += 1;
            if let Err(e) = render(&tree, &fleet, app, cluster) {
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
        fleet.apps.len(),
        fleet.clusters.len()
    );
    Ok(if errors == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
