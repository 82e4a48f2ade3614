//! A [`Review`] written for a pull-request page (Markdown, within a comment's size
//! limit) or for tools (JSON).

use serde_json::{Value, json};

use super::{AppReview, DiffGroup, Review};

/// GitHub refuses comments over 65,536 characters; the report stays under this,
/// leaving room for what a CI job adds around it.
pub const MARKDOWN_BUDGET: usize = 60_000;

/// Diffs longer than this many lines are shown collapsed.
const OPEN_DIFF_LINES: usize = 25;

/// Cluster names listed in a group's summary line before "…".
const NAMED_CLUSTERS: usize = 3;

/// The first line of every report: a CI job finds its earlier comment by it.
const MARKDOWN_MARKER: &str = "<!-- rollwave diff -->";

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// "on 3 clusters: a, b, c" or "on 187 clusters: a, b, c, …".
fn clusters_line(clusters: &[String]) -> String {
    let named: Vec<&str> = clusters
        .iter()
        .take(NAMED_CLUSTERS)
        .map(String::as_str)
        .collect();
    let more = if clusters.len() > NAMED_CLUSTERS {
        ", …"
    } else {
        ""
    };
    format!(
        "on {}: {}{more}",
        plural(clusters.len(), "cluster", "clusters"),
        named.join(", ")
    )
}

fn counts_line(g: &DiffGroup) -> String {
    let (added, removed, changed) = g.diff.counts();
    format!("{added} added, {removed} removed, {changed} changed")
}

/// A fenced block that no line of `text` can close.
fn fenced(text: &str, lang: &str) -> String {
    let mut fence = "```".to_string();
    while text.contains(&fence) {
        fence.push('`');
    }
    format!("{fence}{lang}\n{text}{fence}\n")
}

/// How to see a group's difference when the report leaves it out.
fn local_command(review: &Review, app: &str, cluster: &str) -> String {
    format!(
        "`rollwave diff --repo . --from {} --to {} --app {app} --cluster {cluster}`",
        review.from, review.to
    )
}

fn group_markdown(review: &Review, app: &AppReview, g: &DiffGroup, with_diff: bool) -> String {
    let mut out = format!(
        "<details><summary>{} ({})</summary>\n\n",
        clusters_line(&g.clusters),
        counts_line(g)
    );
    if g.clusters.len() > NAMED_CLUSTERS {
        out.push_str(&format!("All of them: {}\n\n", g.clusters.join(", ")));
    }
    let objects: Vec<String> = g
        .diff
        .objects
        .iter()
        .map(|(o, c)| {
            format!(
                "- `{o}`: {}",
                serde_json::to_value(c)
                    .unwrap_or_default()
                    .as_str()
                    .unwrap_or("")
            )
        })
        .collect();
    out.push_str(&objects.join("\n"));
    out.push_str("\n\n");
    if with_diff {
        out.push_str(&fenced(&g.diff.text, "diff"));
    } else {
        out.push_str(&format!(
            "The difference ({}) is left out to keep this comment within its size limit; see it \
             with {}.\n",
            plural(g.diff.text.lines().count(), "line", "lines"),
            local_command(review, &app.app, &g.clusters[0])
        ));
    }
    out.push_str("\n</details>\n\n");
    // Short differences are shown open.
    if with_diff && g.diff.text.lines().count() <= OPEN_DIFF_LINES {
        out = out.replacen("<details>", "<details open>", 1);
    }
    out
}

/// A "> [!CAUTION]" block listing `items`, or nothing.
fn caution(title: String, items: &[String]) -> String {
    if items.is_empty() {
        return String::new();
    }
    format!("> [!CAUTION]\n> {title}\n\n{}\n\n", items.join("\n"))
}

/// One line per app in the summary: where it changes, or that only its rollout does.
fn summary_line(a: &AppReview) -> Option<String> {
    let plan_changed = a.rollout.as_ref().is_some_and(|r| r.changed_from.is_some());
    if !a.groups.is_empty() {
        Some(format!(
            "- **{}**: changes {} ({}){}",
            a.app,
            plural(a.changed_clusters(), "cluster", "clusters"),
            plural(
                a.groups.len(),
                "distinct difference",
                "distinct differences"
            ),
            if plan_changed {
                "; its rollout plan changes too"
            } else {
                ""
            }
        ))
    } else if plan_changed {
        Some(format!(
            "- **{}**: no rendered object changes; its rollout plan changes",
            a.app
        ))
    } else {
        None
    }
}

/// The app's rollout: the waves its changed clusters are in, the policy, and the
/// plan before when the change alters it.
fn rollout_markdown(a: &AppReview) -> String {
    let Some(r) = &a.rollout else {
        return String::new();
    };
    let mut out = String::new();
    let waves = super::build::describe_waves(&r.waves);
    if !waves.is_empty() {
        out.push_str(&format!("Rolls out in {waves}: {}.\n\n", r.policy));
    }
    if let Some((waves_before, policy_before)) = &r.changed_from {
        out.push_str(&format!(
            "The rollout plan changes:\n- before: {waves_before}; {policy_before}\n- after: {}; {}\n\n",
            r.all_waves, r.policy
        ));
    }
    out
}

/// The review as a pull-request comment: render errors and tenancy violations first,
/// then per app its groups of clusters with identical differences, the rollout the
/// merge would start and how that rollout changed. Stays within [`MARKDOWN_BUDGET`] by
/// leaving out the largest differences, with a note on how to see them.
pub fn markdown(review: &Review) -> String {
    let mut head = format!(
        "{MARKDOWN_MARKER}\n### rollwave: what `{}` → `{}` changes\n\n",
        review.from, review.to
    );
    // Per app, the same message on many clusters is one line naming them.
    let listed = |of: fn(&AppReview) -> &Vec<(String, String)>| -> (usize, Vec<String>) {
        let mut count = 0;
        let mut lines = Vec::new();
        for a in &review.apps {
            let mut by_message: Vec<(&str, Vec<String>)> = Vec::new();
            for (c, message) in of(a) {
                count += 1;
                match by_message.iter_mut().find(|(m, _)| *m == message) {
                    Some((_, clusters)) => clusters.push(c.clone()),
                    None => by_message.push((message, vec![c.clone()])),
                }
            }
            lines.extend(by_message.into_iter().map(|(message, clusters)| {
                format!("- **{}** {}: {message}", a.app, clusters_line(&clusters))
            }));
        }
        (count, lines)
    };
    let (count, errors) = listed(|a| &a.errors);
    head.push_str(&caution(
        format!(
            "{} failed; the agents refuse this revision there.",
            plural(count, "rendering", "renderings")
        ),
        &errors,
    ));
    let (count, violations) = listed(|a| &a.violations);
    head.push_str(&caution(
        format!(
            "{} refused by the app's tenancy policy; the agents refuse this revision there.",
            plural(count, "object is", "objects are")
        ),
        &violations,
    ));
    let shown_apps: Vec<(&AppReview, String)> = review
        .apps
        .iter()
        .filter_map(|a| Some((a, summary_line(a)?)))
        .collect();
    if shown_apps.iter().all(|(a, _)| a.groups.is_empty()) {
        head.push_str("No rendered object changes on any cluster.\n\n");
    }
    if shown_apps.is_empty() {
        return head;
    }
    let summary: Vec<&str> = shown_apps.iter().map(|(_, l)| l.as_str()).collect();
    head.push_str(&summary.join("\n"));
    head.push_str("\n\n");
    let changed: Vec<&AppReview> = shown_apps.iter().map(|(a, _)| *a).collect();

    // Which groups show their diff: all, unless that passes the budget; then the
    // largest diffs are left out first.
    let mut shown: Vec<Vec<bool>> = changed.iter().map(|a| vec![true; a.groups.len()]).collect();
    let render = |shown: &[Vec<bool>]| -> String {
        let mut out = head.clone();
        for (a, shown) in changed.iter().zip(shown) {
            out.push_str(&format!("#### {}\n\n", a.app));
            out.push_str(&rollout_markdown(a));
            for (g, with_diff) in a.groups.iter().zip(shown) {
                out.push_str(&group_markdown(review, a, g, *with_diff));
            }
        }
        out
    };
    let mut text = render(&shown);
    let mut by_size: Vec<(usize, usize, usize)> = changed
        .iter()
        .enumerate()
        .flat_map(|(i, a)| {
            a.groups
                .iter()
                .enumerate()
                .map(move |(j, g)| (g.diff.text.len(), i, j))
        })
        .collect();
    by_size.sort_by(|a, b| b.cmp(a));
    for (_, i, j) in by_size {
        if text.len() <= MARKDOWN_BUDGET {
            break;
        }
        shown[i][j] = false;
        text = render(&shown);
    }
    if text.len() > MARKDOWN_BUDGET {
        // Even without diffs the lists are too long: cut at a line and say so.
        let cut = text[..MARKDOWN_BUDGET - 200]
            .rfind('\n')
            .unwrap_or(MARKDOWN_BUDGET - 200);
        text.truncate(cut);
        text.push_str(&format!(
            "\n\n…the rest is left out to keep this comment within its size limit; see all of \
             it with `rollwave diff --repo . --from {} --to {}`.\n",
            review.from, review.to
        ));
    }
    text
}

/// The review as JSON, for tools.
pub fn json(review: &Review) -> Value {
    let apps: Vec<Value> = review
        .apps
        .iter()
        .map(|a| {
            json!({
                "app": a.app,
                "errors": a.errors.iter().map(|(c, e)| json!({"cluster": c, "error": e})).collect::<Vec<_>>(),
                "violations": a.violations.iter().map(|(c, v)| json!({"cluster": c, "violation": v})).collect::<Vec<_>>(),
                "waves": a.changed_waves().iter().map(|(i, w)| json!({"wave": i, "clusters": w})).collect::<Vec<_>>(),
                "rollout": a.rollout.as_ref().map(|r| json!({
                    "waves": r.all_waves,
                    "policy": r.policy,
                    "before": r.changed_from.as_ref().map(|(w, p)| json!({"waves": w, "policy": p})),
                })),
                "groups": a.groups.iter().map(|g| {
                    let (added, removed, changed) = g.diff.counts();
                    json!({
                        "clusters": g.clusters,
                        "added": added,
                        "removed": removed,
                        "changed": changed,
                        "objects": g.diff.objects.iter().map(|(o, c)| json!({"object": o, "change": c})).collect::<Vec<_>>(),
                        "diff": g.diff.text,
                    })
                }).collect::<Vec<_>>(),
            })
        })
        .collect();
    json!({"from": review.from, "to": review.to, "apps": apps})
}

#[cfg(test)]
mod tests {
    use super::super::{RenderingDiff, diff_renderings};
    use super::*;
    use serde_json::json;

    fn review_with(groups: Vec<DiffGroup>) -> Review {
        Review {
            from: "main".into(),
            to: "HEAD".into(),
            apps: vec![AppReview {
                app: "web".into(),
                groups,
                errors: vec![],
                violations: vec![],
                rollout: Some(super::super::RolloutReview {
                    waves: vec![vec!["a".into()], vec![]],
                    all_waves: "wave 0 (1 cluster)".into(),
                    policy: "batches 1".into(),
                    changed_from: None,
                }),
            }],
        }
    }

    fn big_diff(lines: usize) -> RenderingDiff {
        let data = |v: &str| -> serde_json::Map<String, Value> {
            (0..lines)
                .map(|i| (format!("k{i}"), json!(format!("{v}{i}"))))
                .collect()
        };
        diff_renderings(
            &[
                json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": data("old")}),
            ],
            &[
                json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": data("new")}),
            ],
        )
    }

    #[test]
    fn a_report_over_the_budget_leaves_out_the_largest_diffs_first() {
        let clusters = |n: usize, p: &str| (0..n).map(|i| format!("{p}-{i}")).collect::<Vec<_>>();
        let groups = vec![
            DiffGroup {
                clusters: clusters(3, "big"),
                diff: big_diff(3000),
            },
            DiffGroup {
                clusters: clusters(1, "small"),
                diff: big_diff(5),
            },
        ];
        let text = markdown(&review_with(groups));
        assert!(text.len() <= MARKDOWN_BUDGET, "{}", text.len());
        assert!(text.starts_with(MARKDOWN_MARKER));
        assert!(text.contains("is left out to keep this comment within its size limit"));
        assert!(text.contains("--app web --cluster big-0"));
        assert!(text.contains("+  k4: new4"), "the small diff is shown");
        assert!(text.contains("Rolls out in wave 0 (1 cluster): batches 1."));
    }
}
