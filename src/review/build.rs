//! Builds a [`Review`] from the fleet at two revisions: every app rendered for every
//! cluster at both (through the trees' [`crate::tree::FileTree`], nothing else is
//! read), the differences grouped, the new revision checked against the apps' tenancy
//! policies, and the rollout it would start described, with what changed in that
//! rollout when `fleet.yaml` or `app.yaml` changed it.

use serde_json::Value;

use super::{AppReview, Review, RolloutReview, diff_renderings, group_by_difference};
use crate::fleet::tenancy::{check_objects, namespaced_offline};
use crate::fleet::{App, Fleet, Gate, OnFailure, targets_cluster};
use crate::plan::waves_for;
use crate::render::render;
use crate::tree::FileTree;

/// One side of the comparison: the revision as the user named it, its tree and fleet.
#[derive(Clone, Copy)]
pub struct Side<'a> {
    /// The revision as given (`main`, `HEAD`, a sha).
    pub rev: &'a str,
    /// Its files.
    pub tree: &'a dyn FileTree,
    /// Its fleet.
    pub fleet: &'a Fleet,
}

/// Which apps and clusters a review covers (`None`: all).
#[derive(Debug, Clone, Copy, Default)]
pub struct Scope<'a> {
    /// Only this app.
    pub app: Option<&'a str>,
    /// Only this cluster.
    pub cluster: Option<&'a str>,
}

/// An app's rendering for a cluster at one side: no objects where the app or cluster
/// does not exist or is not targeted there.
fn rendered(side: Side, app: &str, cluster: &str) -> Result<Vec<Value>, String> {
    let (Some(a), Some(c)) = (side.fleet.app(app), side.fleet.cluster(cluster)) else {
        return Ok(Vec::new());
    };
    if !targets_cluster(a, c) {
        return Ok(Vec::new());
    }
    render(side.tree, side.fleet, a, c)
        .map(|r| r.objects.into_vec())
        .map_err(|e| e.to_string())
}

/// Names in either fleet, sorted, once each.
fn names_in(a: &Fleet, b: &Fleet, of: impl Fn(&Fleet) -> Vec<String>) -> Vec<String> {
    let mut v = of(a);
    v.extend(of(b));
    v.sort();
    v.dedup();
    v
}

/// The rollout policy as a reviewer reads it: gate, bake, analysis, failure handling.
fn describe_rollout(app: &App) -> String {
    let r = &app.rollout;
    let gate = match r.gate {
        Gate::Health => format!(
            "each wave waits until the earlier waves are Healthy for {}",
            humantime::format_duration(r.bake)
        ),
        Gate::Time => format!(
            "each wave opens {} after the one before",
            humantime::format_duration(r.bake)
        ),
        Gate::Manual => format!(
            "each wave waits for an approval: an entry in `approvals/{}.yaml` with the \
             release's sha and `through-wave:` at least that wave",
            app.name
        ),
    };
    let analysis = if r.analysis.enabled() {
        let names: Vec<&str> = r.analysis.metrics.iter().map(|m| m.name.as_str()).collect();
        format!(
            "; analysis checks {} every {}",
            names.join(", "),
            humantime::format_duration(r.analysis.interval)
        )
    } else {
        String::new()
    };
    let on_failure = match r.on_failure {
        OnFailure::Halt => "a failure halts later waves",
        OnFailure::Rollback => "a failure halts later waves and rolls the cluster back",
    };
    let paused = match &r.paused {
        Some(reason) => format!("; paused ({reason}): no wave takes it until the app is resumed"),
        None => String::new(),
    };
    format!(
        "batches {}, {gate}{analysis}; {on_failure}{paused}",
        r.batches
            .iter()
            .map(u64::to_string)
            .collect::<Vec<_>>()
            .join(":")
    )
}

/// The waves as "wave 0 (1 cluster) → wave 1 (2 clusters)", empty waves left out.
pub fn describe_waves(waves: &[Vec<String>]) -> String {
    waves
        .iter()
        .enumerate()
        .filter(|(_, w)| !w.is_empty())
        .map(|(i, w)| {
            let n = w.len();
            format!("wave {i} ({n} cluster{})", if n == 1 { "" } else { "s" })
        })
        .collect::<Vec<_>>()
        .join(" → ")
}

/// The rollout the new revision would start for `app`, and what changed in it.
fn rollout_review(from: Side, to: Side, app: &str, changed: &[&String]) -> Option<RolloutReview> {
    let plan = |f: &Fleet| f.app(app).map(|a| (waves_for(f, a), describe_rollout(a)));
    let (all, policy) = plan(to.fleet)?;
    let changed_from = match plan(from.fleet) {
        Some((waves, policy_before)) if (&waves, &policy_before) != (&all, &policy) => {
            Some((describe_waves(&waves), policy_before))
        }
        _ => None,
    };
    Some(RolloutReview {
        waves: all
            .iter()
            .map(|w| w.iter().filter(|c| changed.contains(c)).cloned().collect())
            .collect(),
        all_waves: describe_waves(&all),
        policy,
        changed_from,
    })
}

/// Sees each (app, cluster, old rendering, new rendering) whose rendering differs.
type OnChange<'a> = dyn FnMut(&str, &str, &[Value], &[Value]) + 'a;

/// Compares the fleet at `from` and `to` within `scope`. `on_change` sees each app and
/// cluster whose rendering differs, with both renderings (the text format prints the
/// whole streams).
pub fn build(from: Side, to: Side, scope: Scope, on_change: &mut OnChange) -> Review {
    let apps = names_in(from.fleet, to.fleet, |f| {
        f.apps.iter().map(|a| a.name.clone()).collect()
    });
    let clusters = names_in(from.fleet, to.fleet, |f| {
        f.clusters.iter().map(|c| c.name.clone()).collect()
    });
    let mut review = Review {
        from: from.rev.to_string(),
        to: to.rev.to_string(),
        apps: Vec::new(),
    };
    for a in apps.iter().filter(|a| scope.app.is_none_or(|x| x == *a)) {
        let mut per_cluster = Vec::new();
        let mut errors = Vec::new();
        let mut violations = Vec::new();
        for c in clusters
            .iter()
            .filter(|c| scope.cluster.is_none_or(|x| x == *c))
        {
            let (old, new) = match (rendered(from, a, c), rendered(to, a, c)) {
                (Ok(o), Ok(n)) => (o, n),
                (_, Err(e)) | (Err(e), _) => {
                    errors.push((c.clone(), e));
                    continue;
                }
            };
            if let Some(app) = to.fleet.app(a)
                && let Some(policy) = &app.policy
            {
                let objects = crate::apply::prepare(&new);
                let scope = |o: &Value| namespaced_offline(o, &objects);
                for v in check_objects(policy, app.namespace.as_deref(), &objects, &scope) {
                    violations.push((c.clone(), v.to_string()));
                }
            }
            if old == new {
                continue;
            }
            on_change(a, c, &old, &new);
            per_cluster.push((c.clone(), diff_renderings(&old, &new)));
        }
        let groups = group_by_difference(per_cluster);
        let changed: Vec<&String> = groups.iter().flat_map(|g| &g.clusters).collect();
        let rollout = rollout_review(from, to, a, &changed);
        let plan_changed = rollout.as_ref().is_some_and(|r| r.changed_from.is_some());
        if groups.is_empty() && errors.is_empty() && violations.is_empty() && !plan_changed {
            continue;
        }
        review.apps.push(AppReview {
            app: a.clone(),
            groups,
            errors,
            violations,
            rollout,
        });
    }
    review
}
