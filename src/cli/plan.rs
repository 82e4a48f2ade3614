//! `rollwave plan --repo R [--rev REV] [--at TIME] [-o json]`: per app, its waves, the
//! release every cluster should run now, and the gates of pending releases, from the
//! status refs.

use std::collections::BTreeMap;
use std::io::Write;
use std::process::ExitCode;
use std::time::SystemTime;

use anyhow::Context;
use serde_json::{Value, json};

use super::history::{GitRepo, app_history, history_order};
use super::{Format, RepoArgs};
use crate::plan::{PlanInput, describe_gate, plan_app};

fn short(sha: &str) -> &str {
    &sha[..sha.len().min(8)]
}

/// Computes and prints the plan.
pub fn run(source: &RepoArgs, at: Option<&str>, output: Format) -> anyhow::Result<ExitCode> {
    let now = match at {
        Some(t) => humantime::parse_rfc3339_weak(t)
            .with_context(|| format!("--at '{t}': expected a time like 2026-11-23T10:00:00Z"))?,
        None => SystemTime::now(),
    };
    let g = GitRepo::open(&source.repo, source.rev.as_deref(), &source.branch)?;
    let git = g.repository()?;
    let (history, order) = history_order(&git, g.head)?;
    let (head_tree, fleet) = g.fleet(g.head)?;
    let statuses = g.statuses()?;
    let mut apps = serde_json::Map::new();
    let mut text = String::new();
    for app in &fleet.apps {
        let h = app_history(&g, &git, &history, (&head_tree, &fleet), &app.name)?;
        let plan = plan_app(&PlanInput {
            app: &app.name,
            policy: &app.rollout,
            waves: &h.waves,
            releases: &h.releases,
            order: &order,
            statuses: &statuses,
            approvals: &h.approvals,
            now,
        });
        let targets: BTreeMap<&String, Option<&String>> = plan
            .decisions
            .iter()
            .map(|(c, d)| (c, d.target.as_ref()))
            .collect();
        text.push_str(&format!(
            "app {}  (batches {}, bake {}s, gate {:?}, onFailure {:?})\n",
            app.name,
            app.rollout
                .batches
                .iter()
                .map(u64::to_string)
                .collect::<Vec<_>>()
                .join(":"),
            app.rollout.bake.as_secs(),
            app.rollout.gate,
            app.rollout.on_failure
        ));
        if app.rollout.analysis.enabled() {
            let a = &app.rollout.analysis;
            text.push_str(&format!(
                "  analysis: {} every {}s after {}s (failureLimit {}, errorLimit {}, noData {:?})\n",
                a.metrics
                    .iter()
                    .map(|m| m.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                a.interval.as_secs(),
                a.initial_delay.as_secs(),
                a.failure_limit,
                a.error_limit,
                a.no_data
            ));
        }
        let mut analysis = serde_json::Map::new();
        for (w, wave) in plan.waves.iter().enumerate() {
            for c in wave {
                let d = &plan.decisions[c];
                text.push_str(&format!(
                    "  wave {w}  {c:<16} {:<9} {:?}\n",
                    d.target.as_deref().map(short).unwrap_or("-"),
                    d.reason
                ));
                if let Some(s) = statuses.get(c).and_then(|s| s.apps.get(&app.name))
                    && (!s.analysis.is_empty() || s.message.starts_with("analysis "))
                {
                    text.push_str(&format!(
                        "          {:<16} {:?} at {}: {}\n",
                        "",
                        s.phase,
                        short(&s.release),
                        crate::plan::analysis::cell(s)
                    ));
                    analysis.insert(
                        c.clone(),
                        json!({"release": s.release, "phase": s.phase, "verified": s.verified, "metrics": s.analysis}),
                    );
                }
            }
        }
        apps.insert(
            app.name.clone(),
            json!({"waves": plan.waves, "targets": targets, "decisions": plan.decisions, "pending": plan.pending, "analysis": analysis}),
        );
        for p in &plan.pending {
            text.push_str(&format!("  pending {}:\n", short(&p.release)));
            for (w, gate) in p.waves.iter().enumerate() {
                text.push_str(&format!("    wave {w}: {}\n", describe_gate(gate)));
            }
        }
    }
    let out = match output {
        Format::Json => {
            let v = json!({"head": g.head.to_string(), "at": humantime::format_rfc3339_seconds(now).to_string(), "apps": Value::Object(apps)});
            format!("{}\n", serde_json::to_string_pretty(&v)?)
        }
        Format::Yaml => text,
    };
    let _ = std::io::stdout().lock().write_all(out.as_bytes());
    Ok(ExitCode::SUCCESS)
}
