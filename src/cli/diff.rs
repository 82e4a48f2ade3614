//! `rollwave diff --repo R --from REV --to REV [--cluster C] [--app A] [--format F]`:
//! what a change does to each app's renderings. `text` (the default): the rendered
//! difference per app and cluster, then a summary of which apps change on how many
//! clusters in which waves; stable order, colours only on a terminal. `markdown`: a
//! pull-request comment (see [`crate::review::report::markdown`]). `json`: the same for
//! tools. Secret values are masked in every format.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;

use crate::review::build::{Scope, Side, build};
use crate::review::{self, Review};
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

/// The text format's closing summary: per app, its errors and tenancy violations, on
/// how many clusters it changes in which waves, and a changed rollout plan.
fn summary(review: &Review) -> String {
    let mut out = String::from("\nsummary:\n");
    if review.apps.iter().all(|a| a.groups.is_empty()) {
        out.push_str("  no rendered changes\n");
    }
    for a in &review.apps {
        for (c, e) in &a.errors {
            out.push_str(&format!(
                "  error: app '{}' for cluster '{c}': {e}\n",
                a.app
            ));
        }
        for (c, v) in &a.violations {
            out.push_str(&format!(
                "  error: app '{}' for cluster '{c}': tenancy: {v}\n",
                a.app
            ));
        }
        if !a.groups.is_empty() {
            let waves: Vec<String> = a
                .changed_waves()
                .iter()
                .map(|(i, _)| i.to_string())
                .collect();
            out.push_str(&format!(
                "  {}: changes on {} cluster(s) in wave(s) {}\n",
                a.app,
                a.changed_clusters(),
                waves.join(", ")
            ));
        }
        if let Some(r) = &a.rollout
            && let Some((waves, policy)) = &r.changed_from
        {
            out.push_str(&format!(
                "  {}: the rollout plan changes from {waves}; {policy}\n    to {}; {}\n",
                a.app, r.all_waves, r.policy
            ));
        }
    }
    out
}

/// Prints what changes. Exit 0 whether or not anything changed; 1 when a rendering
/// failed or a tenancy policy refuses an object of the new revision.
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
    let mut text = String::new();
    let review = build(
        Side {
            rev: from,
            tree: &tree_a,
            fleet: &fleet_a,
        },
        Side {
            rev: to,
            tree: &tree_b,
            fleet: &fleet_b,
        },
        Scope { app, cluster },
        &mut |a, c, old, new| {
            if format != DiffFormat::Text {
                return;
            }
            let (old_m, new_m) = review::masked_renderings(old, new);
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
        },
    );
    let out = match format {
        DiffFormat::Text => text + &summary(&review),
        DiffFormat::Markdown => review::report::markdown(&review),
        DiffFormat::Json => {
            serde_json::to_string_pretty(&review::report::json(&review)).unwrap_or_default() + "\n"
        }
    };
    let _ = std::io::stdout().lock().write_all(out.as_bytes());
    let failed = review
        .apps
        .iter()
        .any(|a| !a.errors.is_empty() || !a.violations.is_empty());
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
