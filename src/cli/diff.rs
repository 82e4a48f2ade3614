//! `rollwave diff --repo R --from REV --to REV [--cluster C] [--app A]`: the rendered
//! difference per app and cluster, then a summary of which apps change on how many
//! clusters in which waves. Stable order; colours only on a terminal.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::process::ExitCode;

use crate::fleet::{Fleet, targets_cluster};
use crate::plan::waves_for;
use crate::render::render;
use crate::source::GitTree;
use crate::source::repo::GitRepo;

fn rendered(tree: &GitTree, fleet: &Fleet, app: &str, cluster: &str) -> Result<String, String> {
    let (Some(a), Some(c)) = (fleet.app(app), fleet.cluster(cluster)) else {
        return Ok(String::new());
    };
    if !targets_cluster(a, c) {
        return Ok(String::new());
    }
    render(tree, fleet, a, c)
        .map(|r| crate::yaml::to_yaml_stream(&r.objects))
        .map_err(|e| e.to_string())
}

/// Prints the diff and the summary. Exit 0 whether or not anything changed; 1 on errors.
pub fn run(
    (repo, path): (&str, Option<&str>),
    from: &str,
    to: &str,
    cluster: Option<&str>,
    app: Option<&str>,
    branch: &str,
) -> anyhow::Result<ExitCode> {
    let g_from = GitRepo::open(repo, path, Some(from), branch)?;
    let g_to = GitRepo::open(repo, path, Some(to), branch)?;
    let (tree_a, fleet_a) = g_from.fleet(g_from.head)?;
    let (tree_b, fleet_b) = g_to.fleet(g_to.head)?;
    let color = std::io::stdout().is_terminal();
    let mut apps: Vec<String> = fleet_a
        .apps
        .iter()
        .chain(fleet_b.apps.iter())
        .map(|a| a.name.clone())
        .collect();
    apps.sort();
    apps.dedup();
    let mut clusters: Vec<String> = fleet_a
        .clusters
        .iter()
        .chain(fleet_b.clusters.iter())
        .map(|c| c.name.clone())
        .collect();
    clusters.sort();
    clusters.dedup();
    let mut out = String::new();
    let mut changed: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut errors = 0;
    for a in apps.iter().filter(|a| app.is_none_or(|x| x == *a)) {
        for c in clusters.iter().filter(|c| cluster.is_none_or(|x| x == *c)) {
            let (old, new) = (
                rendered(&tree_a, &fleet_a, a, c),
                rendered(&tree_b, &fleet_b, a, c),
            );
            let (old, new) = match (old, new) {
                (Ok(o), Ok(n)) => (o, n),
                (_, Err(e)) | (Err(e), _) => {
                    errors += 1;
                    out.push_str(&format!("error: app '{a}' for cluster '{c}': {e}\n"));
                    continue;
                }
            };
            if old == new {
                continue;
            }
            changed.entry(a.clone()).or_default().push(c.clone());
            let diff = similar::TextDiff::from_lines(&old, &new);
            let text = diff
                .unified_diff()
                .context_radius(3)
                .header(&format!("{a}/{c} @ {from}"), &format!("{a}/{c} @ {to}"))
                .to_string();
            for line in text.lines() {
                let painted = match (color, line.chars().next()) {
                    (true, Some('+')) if !line.starts_with("+++") => {
                        format!("\x1b[32m{line}\x1b[0m")
                    }
                    (true, Some('-')) if !line.starts_with("---") => {
                        format!("\x1b[31m{line}\x1b[0m")
                    }
                    (true, Some('@')) => format!("\x1b[36m{line}\x1b[0m"),
                    _ => line.to_string(),
                };
                out.push_str(&painted);
                out.push('\n');
            }
        }
    }
    out.push_str("\nsummary:\n");
    if changed.is_empty() {
        out.push_str("  no rendered changes\n");
    }
    for (a, cs) in &changed {
        let waves = fleet_b
            .app(a)
            .map(|x| waves_for(&fleet_b, x))
            .unwrap_or_default();
        let mut in_waves: Vec<usize> = cs
            .iter()
            .filter_map(|c| waves.iter().position(|w| w.contains(c)))
            .collect();
        in_waves.sort();
        in_waves.dedup();
        out.push_str(&format!(
            "  {a}: changes on {} cluster(s) in wave(s) {}\n",
            cs.len(),
            in_waves
                .iter()
                .map(usize::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    let _ = std::io::stdout().lock().write_all(out.as_bytes());
    Ok(if errors == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
