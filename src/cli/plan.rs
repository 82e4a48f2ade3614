//! `rollwave plan --repo R [--rev REV] [--at TIME] [-o json]`: per app, its waves, the
//! release every cluster should run now, and the gates of pending releases, from the
//! status refs. `plan --from A [--to B]`: the releases merging A..B creates per app,
//! where their renderings change and how their rollout plans change.

use std::collections::BTreeMap;
use std::io::Write;
use std::process::ExitCode;
use std::time::SystemTime;

use anyhow::Context;
use serde_json::{Value, json};

use super::{PlanFormat, RepoArgs};
use crate::fleet::{Gate, NoData, OnFailure};
use crate::plan::history::{FleetAt, app_history, history_order, releases_created};
use crate::plan::{PlanInput, describe_gate, plan_app};
use crate::render::cache::RenderCache;
use crate::review::build::{Scope, Side, build};
use crate::source::repo::GitRepo;

fn short(sha: &str) -> &str {
    &sha[..sha.len().min(8)]
}

/// `gate` as fleet.yaml spells it.
fn gate_name(g: Gate) -> &'static str {
    match g {
        Gate::Health => "health",
        Gate::Manual => "manual",
        Gate::Time => "time",
    }
}

/// `onFailure` as fleet.yaml spells it.
fn on_failure_name(f: OnFailure) -> &'static str {
    match f {
        OnFailure::Halt => "halt",
        OnFailure::Rollback => "rollback",
    }
}

/// `analysis.noData` as fleet.yaml spells it.
fn no_data_name(n: NoData) -> &'static str {
    match n {
        NoData::Pass => "pass",
        NoData::Fail => "fail",
        NoData::Inconclusive => "inconclusive",
    }
}

/// A tenancy policy for people: its name and what it allows.
fn describe_policy(p: &crate::fleet::tenancy::Policy) -> String {
    use crate::fleet::tenancy::{NameSet, NamespaceRule};
    let set = |s: &NameSet| match s {
        NameSet::Any => "*".to_string(),
        NameSet::Only(n) if n.is_empty() => "none".to_string(),
        NameSet::Only(n) => n.join(", "),
    };
    let namespaces = p
        .namespaces
        .iter()
        .map(|n| match n {
            NamespaceRule::Own => "self".to_string(),
            NamespaceRule::Any => "*".to_string(),
            NamespaceRule::Named(n) => n.clone(),
        })
        .collect::<Vec<_>>()
        .join(", ");
    let mut out = format!(
        "{} (namespaces [{namespaces}], clusterScoped [{}]",
        p.name,
        set(&p.cluster_scoped)
    );
    if !p.deny.is_empty() {
        let deny: Vec<String> = p.deny.iter().map(ToString::to_string).collect();
        out.push_str(&format!(", deny [{}]", deny.join(", ")));
    }
    if let Some(sa) = &p.service_account {
        out.push_str(&format!(", as ServiceAccount {sa}"));
    }
    out.push(')');
    out
}

/// Computes and prints the plan.
pub fn run(
    source: &RepoArgs,
    at: Option<&str>,
    output: PlanFormat,
    hub: &super::HubArgs,
) -> anyhow::Result<ExitCode> {
    let now = match at {
        Some(t) => humantime::parse_rfc3339_weak(t)
            .with_context(|| format!("--at '{t}': expected a time like 2026-11-23T10:00:00Z"))?,
        None => SystemTime::now(),
    };
    let g = GitRepo::open(
        &source.repo,
        source.path.as_deref(),
        source.rev.as_deref(),
        &source.branch,
    )?;
    let git = g.repository()?;
    let (history, order) = history_order(&git, g.head)?;
    let (head_tree, fleet) = g.fleet(g.head)?;
    let statuses = super::statuses::fleet_statuses(&g, &fleet, hub)?;
    let mut apps = serde_json::Map::new();
    let mut text = String::new();
    let mut plans = std::collections::HashMap::new();
    text.push_str(&fleet_calendar(&fleet.settings, now));
    let renders = RenderCache::new(crate::render::cache::DEFAULT_MAX_BYTES);
    let at = FleetAt {
        commit: g.head,
        tree: &head_tree,
        fleet: &fleet,
    };
    for app in fleet.apps_in_dependency_order() {
        let h = app_history(&g, &git, &history, at, &app.name, &renders, None)?;
        let dependencies = crate::plan::readiness_of(
            app.depends_on.iter().map(|d| d.value.as_str()),
            &plans,
            &statuses,
        );
        let plan = plan_app(&PlanInput {
            app: &app.name,
            policy: &app.rollout,
            waves: &h.waves,
            releases: &h.releases,
            order: &order,
            statuses: &statuses,
            approvals: &h.approvals,
            dependencies: &dependencies,
            now,
        });
        let targets: BTreeMap<&String, Option<&String>> = plan
            .decisions
            .iter()
            .map(|(c, d)| (c, d.target.as_ref()))
            .collect();
        text.push_str(&format!(
            "app {}  (batches {}, bake {}, gate {}, onFailure {})\n",
            app.name,
            app.rollout
                .batches
                .iter()
                .map(u64::to_string)
                .collect::<Vec<_>>()
                .join(":"),
            humantime::format_duration(app.rollout.bake),
            gate_name(app.rollout.gate),
            on_failure_name(app.rollout.on_failure)
        ));
        if let Some(p) = &app.policy {
            text.push_str(&format!("  policy: {}\n", describe_policy(p)));
        }
        if !app.depends_on.is_empty() {
            let names: Vec<&str> = app.depends_on.iter().map(|d| d.value.as_str()).collect();
            text.push_str(&format!("  dependsOn: {}\n", names.join(", ")));
        }
        if app.rollout.analysis.enabled() {
            let a = &app.rollout.analysis;
            text.push_str(&format!(
                "  analysis: {} every {} after {} (failureLimit {}, errorLimit {}, noData {})\n",
                a.metrics
                    .iter()
                    .map(|m| m.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                humantime::format_duration(a.interval),
                humantime::format_duration(a.initial_delay),
                a.failure_limit,
                a.error_limit,
                no_data_name(a.no_data)
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
            json!({"policy": app.policy.as_ref().map(|p| p.name.clone()), "waves": plan.waves, "targets": targets, "decisions": plan.decisions, "pending": plan.pending, "analysis": analysis}),
        );
        for p in &plan.pending {
            text.push_str(&format!("  pending {}:\n", short(&p.release)));
            for (w, gate) in p.waves.iter().enumerate() {
                text.push_str(&format!("    wave {w}: {}\n", describe_gate(gate)));
            }
        }
        plans.insert(app.name.clone(), plan);
    }
    let out = match output {
        PlanFormat::Json => {
            let v = json!({"head": g.head.to_string(), "at": humantime::format_rfc3339_seconds(now).to_string(), "apps": Value::Object(apps)});
            format!("{}\n", serde_json::to_string_pretty(&v)?)
        }
        PlanFormat::Text => text,
    };
    let _ = std::io::stdout().lock().write_all(out.as_bytes());
    Ok(ExitCode::SUCCESS)
}

/// The fleet's freeze and change windows, as lines above the apps' plans: what holds
/// every wave before any app is read.
fn fleet_calendar(settings: &crate::fleet::FleetSettings, now: SystemTime) -> String {
    let mut out = String::new();
    if let Some(f) = settings
        .freeze
        .as_ref()
        .filter(|f| f.until.is_none_or(|u| now < u))
    {
        let until = f
            .until
            .map(|u| format!(" until {}", humantime::format_rfc3339_seconds(u)))
            .unwrap_or_default();
        out.push_str(&format!("FROZEN: {}{until}\n", f.reason));
    }
    for w in &settings.windows {
        out.push_str(&format!("window: {}\n", w.describe()));
    }
    out
}

/// The first line of a commit's message.
fn subject(repo: &git2::Repository, oid: git2::Oid) -> String {
    repo.find_commit(oid)
        .ok()
        .and_then(|c| c.summary().ok().flatten().map(str::to_string))
        .unwrap_or_default()
}

/// Prints, per app of the fleet at `to`, the releases the commits after `from` create,
/// on how many clusters the rendering changes and whether its rollout plan changes.
pub fn run_changes(
    source: &RepoArgs,
    (from, to): (&str, Option<&str>),
    output: PlanFormat,
) -> anyhow::Result<ExitCode> {
    let open = |rev: Option<&str>| {
        GitRepo::open(&source.repo, source.path.as_deref(), rev, &source.branch)
    };
    let g_to = open(to.or(source.rev.as_deref()))?;
    let g_from = open(Some(from))?;
    let git = g_to.repository()?;
    let (tree_b, fleet_b) = g_to.fleet(g_to.head)?;
    let (tree_a, fleet_a) = g_from.fleet(g_from.head)?;
    let to_name = to.or(source.rev.as_deref()).unwrap_or("HEAD");
    let review = build(
        Side {
            rev: from,
            tree: &tree_a,
            fleet: &fleet_a,
        },
        Side {
            rev: to_name,
            tree: &tree_b,
            fleet: &fleet_b,
        },
        Scope::default(),
        &mut |_, _, _, _| {},
    );
    let mut text = format!("releases of {from}..{to_name} per app\n");
    let mut apps = serde_json::Map::new();
    let renders = RenderCache::new(crate::render::cache::DEFAULT_MAX_BYTES);
    for app in &fleet_b.apps {
        let created = releases_created(
            &g_to,
            &git,
            (g_from.head, g_to.head),
            (&tree_b, &fleet_b),
            &app.name,
            &renders,
        )?;
        let reviewed = review.apps.iter().find(|a| a.app == app.name);
        let clusters = reviewed.map_or(0, |a| a.changed_clusters());
        let plan_before = reviewed
            .and_then(|a| a.rollout.as_ref())
            .and_then(|r| r.changed_from.as_ref());
        let releases: Vec<Value> = created
            .iter()
            .map(|oid| json!({"release": oid.to_string(), "subject": subject(&git, *oid)}))
            .collect();
        if created.is_empty() {
            text.push_str(&format!("app {}: no release\n", app.name));
        } else {
            let listed: Vec<String> = created
                .iter()
                .map(|oid| format!("{} {}", short(&oid.to_string()), subject(&git, *oid)))
                .collect();
            text.push_str(&format!(
                "app {}: {} release(s): {}\n",
                app.name,
                created.len(),
                listed.join("; ")
            ));
            text.push_str(&match clusters {
                0 => "  renders the same on every cluster\n".to_string(),
                n => format!(
                    "  renders differently on {n} of {} cluster(s)\n",
                    fleet_b
                        .clusters
                        .iter()
                        .filter(|c| crate::fleet::targets_cluster(app, c))
                        .count()
                ),
            });
        }
        if let (Some((waves, policy)), Some(r)) =
            (plan_before, reviewed.and_then(|a| a.rollout.as_ref()))
        {
            text.push_str(&format!(
                "  rollout plan changes from {waves}; {policy}\n  to {}; {}\n",
                r.all_waves, r.policy
            ));
        }
        apps.insert(
            app.name.clone(),
            json!({
                "releases": releases,
                "changedClusters": clusters,
                "rolloutChanges": plan_before.is_some(),
            }),
        );
    }
    let out = match output {
        PlanFormat::Json => {
            let v = json!({"from": g_from.head.to_string(), "to": g_to.head.to_string(), "apps": Value::Object(apps)});
            format!("{}\n", serde_json::to_string_pretty(&v)?)
        }
        PlanFormat::Text => text,
    };
    let _ = std::io::stdout().lock().write_all(out.as_bytes());
    Ok(ExitCode::SUCCESS)
}
