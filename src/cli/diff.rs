//! `rollwave diff --repo R --from REV --to REV [--cluster C] [--app A] [--format F]`:
//! what a change does to each app's renderings. `text` (the default): the rendered
//! difference per app and cluster, then a summary of which apps change on how many
//! clusters in which waves; stable order, colours only on a terminal. `markdown`: a
//! pull-request comment (see [`crate::review::report::markdown`]). `json`: the same for
//! tools. Secret values are masked in every format.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;

use serde_json::Value;

use crate::fleet::{Fleet, targets_cluster};
use crate::plan::waves_for;
use crate::render::render;
use crate::review::{self, AppReview, Review};
use crate::source::GitTree;
use crate::source::repo::GitRepo;

/// How `diff` writes what it found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DiffFormat {
    /// A unified diff per app and cluster, and a summary.
    Text,
    /// A pull-request comment: clusters grouped by identical difference.
    Markdown,
    /// The grouped differences for tools.
    Json,
}

fn rendered(tree: &GitTree, fleet: &Fleet, app: &str, cluster: &str) -> Result<Vec<Value>, String> {
    let (Some(a), Some(c)) = (fleet.app(app), fleet.cluster(cluster)) else {
        return Ok(Vec::new());
    };
    if !targets_cluster(a, c) {
        return Ok(Vec::new());
    }
    render(tree, fleet, a, c)
        .map(|r| r.objects)
        .map_err(|e| e.to_string())
}

fn painted(text: &str, color: bool) -> String {
    let mut out = String::new();
    for line in text.lines() {
        let line = match (color, line.chars().next()) {
            (true, Some('+')) if !line.starts_with("+++") => format!("\x1b[32m{line}\x1b[0m"),
            (true, Some('-')) if !line.starts_with("---") => format!("\x1b[31m{line}\x1b[0m"),
            (true, Some('@')) => format!("\x1b[36m{line}\x1b[0m"),
            _ => line.to_string(),
        };
        out.push_str(&line);
        out.push('\n');
    }
    out
}

/// The text format's closing summary: per changed app, on how many clusters in which
/// waves.
fn summary(review: &Review) -> String {
    let mut out = String::from("\nsummary:\n");
    let changed: Vec<&AppReview> = review
        .apps
        .iter()
        .filter(|a| !a.groups.is_empty())
        .collect();
    if changed.is_empty() {
        out.push_str("  no rendered changes\n");
    }
    for a in changed {
        let clusters: usize = a.groups.iter().map(|g| g.clusters.len()).sum();
        let waves: Vec<String> = a
            .waves
            .iter()
            .enumerate()
            .filter(|(_, w)| !w.is_empty())
            .map(|(i, _)| i.to_string())
            .collect();
        out.push_str(&format!(
            "  {}: changes on {clusters} cluster(s) in wave(s) {}\n",
            a.app,
            waves.join(", ")
        ));
    }
    out
}

/// Prints what changes. Exit 0 whether or not anything changed; 1 when a rendering
/// failed.
pub fn run(
    (repo, path): (&str, Option<&str>),
    (from, to): (&str, &str),
    cluster: Option<&str>,
    app: Option<&str>,
    branch: &str,
    format: DiffFormat,
) -> anyhow::Result<ExitCode> {
    let g_from = GitRepo::open(repo, path, Some(from), branch)?;
    let g_to = GitRepo::open(repo, path, Some(to), branch)?;
    let (tree_a, fleet_a) = g_from.fleet(g_from.head)?;
    let (tree_b, fleet_b) = g_to.fleet(g_to.head)?;
    let color = format == DiffFormat::Text && std::io::stdout().is_terminal();
    let names = |f: &Fleet, g: &Fleet, of_apps: bool| {
        let mut v: Vec<String> = if of_apps {
            f.apps
                .iter()
                .chain(g.apps.iter())
                .map(|a| a.name.clone())
                .collect()
        } else {
            f.clusters
                .iter()
                .chain(g.clusters.iter())
                .map(|c| c.name.clone())
                .collect()
        };
        v.sort();
        v.dedup();
        v
    };
    let (apps, clusters) = (
        names(&fleet_a, &fleet_b, true),
        names(&fleet_a, &fleet_b, false),
    );
    let mut text = String::new();
    let mut review = Review {
        from: from.to_string(),
        to: to.to_string(),
        apps: Vec::new(),
    };
    for a in apps.iter().filter(|a| app.is_none_or(|x| x == *a)) {
        let mut per_cluster = Vec::new();
        let mut errors = Vec::new();
        for c in clusters.iter().filter(|c| cluster.is_none_or(|x| x == *c)) {
            let (old, new) = match (
                rendered(&tree_a, &fleet_a, a, c),
                rendered(&tree_b, &fleet_b, a, c),
            ) {
                (Ok(o), Ok(n)) => (o, n),
                (_, Err(e)) | (Err(e), _) => {
                    text.push_str(&format!("error: app '{a}' for cluster '{c}': {e}\n"));
                    errors.push((c.clone(), e));
                    continue;
                }
            };
            if old == new {
                continue;
            }
            if format == DiffFormat::Text {
                let (old_m, new_m) = review::masked_renderings(&old, &new);
                let (old_y, new_y) = (
                    crate::yaml::to_yaml_stream(&old_m),
                    crate::yaml::to_yaml_stream(&new_m),
                );
                let diff = similar::TextDiff::from_lines(&old_y, &new_y)
                    .unified_diff()
                    .context_radius(3)
                    .header(&format!("{a}/{c} @ {from}"), &format!("{a}/{c} @ {to}"))
                    .to_string();
                text.push_str(&painted(&diff, color));
            }
            per_cluster.push((c.clone(), review::diff_renderings(&old, &new)));
        }
        let groups = review::group_by_difference(per_cluster);
        if groups.is_empty() && errors.is_empty() {
            continue;
        }
        let changed: Vec<&String> = groups.iter().flat_map(|g| &g.clusters).collect();
        let waves = fleet_b
            .app(a)
            .map(|x| waves_for(&fleet_b, x))
            .unwrap_or_default()
            .into_iter()
            .map(|w| w.into_iter().filter(|c| changed.contains(&c)).collect())
            .collect();
        review.apps.push(AppReview {
            app: a.clone(),
            groups,
            errors,
            waves,
        });
    }
    let out = match format {
        DiffFormat::Text => text + &summary(&review),
        DiffFormat::Markdown => review::report::markdown(&review),
        DiffFormat::Json => {
            serde_json::to_string_pretty(&review::report::json(&review)).unwrap_or_default() + "\n"
        }
    };
    let _ = std::io::stdout().lock().write_all(out.as_bytes());
    let failed = review.apps.iter().any(|a| !a.errors.is_empty());
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
