//! `rollwave validate --repo PATH|URL [--rev REV]`: every app for every cluster, every
//! error listed, tenancy policy violations included (so a pull request shows them in
//! CI before the agents refuse them).

use std::process::ExitCode;

use super::RepoArgs;

use crate::fleet::tenancy::{check_objects, namespaced_offline};
use crate::fleet::{self, targets_cluster};
use crate::render::render;

/// Renders everything; prints each failure and a summary; exit 1 if anything failed.
pub fn run(source: &RepoArgs) -> anyhow::Result<ExitCode> {
    let opened = source.open_tree()?;
    let tree = opened.tree.as_ref();
    let (fleet, broken) = fleet::load_apps_apart(tree)?;
    let mut renders = 0usize;
    let mut errors = broken.len();
    for b in &broken {
        eprintln!("error: app '{}': {}", b.name, b.error);
    }
    if fleet.settings.tenancy.is_none() {
        eprintln!(
            "note: fleet.yaml has no tenancy: every app may change anything the agent's identity may, on every cluster (see tenancy in docs/guide/multi-team-fleets.md)"
        );
    }
    for app in fleet.apps.iter().filter(|a| a.owners.is_empty()) {
        eprintln!(
            "warning: app '{}' has no owners: add `owners: [\"@org/team\"]` to apps/{}/app.yaml so that `rollwave codeowners` asks its team to review it{}",
            app.name,
            app.name,
            if fleet.settings.owners.is_empty() {
                ""
            } else {
                " (until then fleet.yaml's owners review it)"
            }
        );
    }
    for app in &fleet.apps {
        for cluster in fleet.clusters.iter().filter(|c| targets_cluster(app, c)) {
            renders += 1;
            let rendered = match render(tree, &fleet, app, cluster) {
                Ok(r) => r,
                Err(e) => {
                    errors += 1;
                    eprintln!(
                        "error: app '{}' for cluster '{}': {e}",
                        app.name, cluster.name
                    );
                    continue;
                }
            };
            let Some(policy) = &app.policy else { continue };
            let objects = crate::apply::prepare(&rendered.objects);
            let scope = |o: &serde_json::Value| namespaced_offline(o, &objects);
            for v in check_objects(policy, app.namespace.as_deref(), &objects, &scope) {
                errors += 1;
                eprintln!(
                    "error: app '{}' for cluster '{}': apps/{}: {v}",
                    app.name, cluster.name, app.name
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
