//! Renders every app of a fleet repository for one cluster with the library API and
//! prints each app's content hash: the same values `rollwave render -o json` reports
//! and an agent publishes in its status.
//!
//! `cargo run --example render_cluster -- fleet-example-repo prod-bj-1`

use rollwave::fleet::{self, targets_cluster};
use rollwave::render::render;
use rollwave::tree::DirTree;

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let repo = args.next().unwrap_or_else(|| "fleet-example-repo".into());
    let cluster = args.next().unwrap_or_else(|| "prod-bj-1".into());
    let tree = DirTree::open(&repo)?;
    let fleet = fleet::load(&tree)?;
    let Some(c) = fleet.cluster(&cluster) else {
        anyhow::bail!("cluster '{cluster}' is not in {repo}/clusters/");
    };
    for app in fleet.apps.iter().filter(|a| targets_cluster(a, c)) {
        let r = render(&tree, &fleet, app, c)?;
        println!(
            "{:<10} {:<32} {} objects  {}",
            app.name,
            r.root,
            r.objects.len(),
            r.content_hash
        );
    }
    Ok(())
}
