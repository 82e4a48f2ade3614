//! Gates and targets (DESIGN §4.3-4.5): which release each cluster of an app should run
//! now, decided from the waves, the app's releases (with each cluster's rendered hash),
//! peers' statuses and the clock, which is an argument. Pure: no I/O.
//!
//! Bake semantics, where the design leaves room: a cluster has completed its bake of
//! release C when it became Healthy at C or a later release at least `bake` ago and
//! has been only Healthy or Progressing, at C or later releases, ever since. Moving on
//! to newer releases therefore does not restart the clock (no starvation under a
//! stream of commits), while any Degraded report at C or later closes the gate.
//!
//! With analysis (DESIGN §4.7, [`super::analysis`]) the bake also needs the cluster's
//! word that the analysis of C or a later release completed in that healthy stretch
//! (`verified` in its status); an Inconclusive report closes the gate like Degraded
//! but an approval entry for the release through the wave opens it.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, SystemTime};

use serde::Serialize;

use crate::fleet::windows::WindowsAt;
use crate::fleet::{Gate, OnFailure, RolloutSpec};
use crate::status::{AppStatus, ClusterStatus, Phase};

/// A release of the app.
#[derive(Debug, Clone)]
pub struct Release {
    /// Full commit sha.
    pub sha: String,
    /// Commit time (for `gate: time`).
    pub time: SystemTime,
    /// Content hash of the rendering for each targeted cluster; a rendering that fails
    /// has [`unrenderable_hash`], so the cluster takes the release when its gates open
    /// and reports the error (the canary first), and later waves never take it.
    pub hashes: BTreeMap<String, String>,
}

/// The stand-in content hash of a release that does not render for a cluster: unique
/// to the commit, so it is never a no-op, never known good and never shared with
/// another release.
pub fn unrenderable_hash(sha: &str) -> String {
    format!("unrenderable:{sha}")
}

/// An entry of `approvals/<app>.yaml`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Approval {
    /// The approved release (full sha or a prefix of at least 7 characters).
    pub release: String,
    /// Waves up to and including this one may take it.
    #[serde(rename = "through-wave")]
    pub through_wave: usize,
}

/// Everything the decision needs.
pub struct PlanInput<'a> {
    /// The app.
    pub app: &'a str,
    /// Its policy.
    pub policy: &'a RolloutSpec,
    /// Its waves.
    pub waves: &'a [Vec<String>],
    /// Its releases, newest first.
    pub releases: &'a [Release],
    /// Position of every commit of the branch's first-parent history (larger: newer).
    pub order: &'a HashMap<String, usize>,
    /// Peers' statuses by cluster.
    pub statuses: &'a BTreeMap<String, ClusterStatus>,
    /// Approvals for `gate: manual`.
    pub approvals: &'a [Approval],
    /// The readiness of each app this one depends on (`dependsOn`, DESIGN §4.9),
    /// from [`dependency_readiness`]; empty without dependencies.
    pub dependencies: &'a [DependencyReadiness],
    /// The time of the decision.
    pub now: SystemTime,
}

/// Where an app that others depend on is ready (DESIGN §4.9): Healthy at the release
/// its planner wants there. Clusters it does not target are not held by it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DependencyReadiness {
    /// The app depended on.
    pub app: String,
    /// Its clusters where it is not ready yet, with what it is doing there.
    pub not_ready: BTreeMap<String, String>,
    /// Why it holds every cluster, when it has no plan (its app.yaml is broken).
    pub everywhere: Option<String>,
}

impl DependencyReadiness {
    /// Whether it holds `cluster`.
    pub fn holds(&self, cluster: &str) -> bool {
        self.everywhere.is_some() || self.not_ready.contains_key(cluster)
    }

    /// What it is doing on `cluster`, when it holds it.
    pub fn why(&self, cluster: &str) -> Option<&str> {
        self.not_ready
            .get(cluster)
            .or(self.everywhere.as_ref())
            .map(String::as_str)
    }
}

/// The readiness of each of `depends_on`, from the plans of the apps planned so far
/// (a pass plans apps in dependency order): a dependency without a plan holds
/// every cluster.
pub fn readiness_of<'n>(
    depends_on: impl IntoIterator<Item = &'n str>,
    plans: &HashMap<String, AppPlan>,
    statuses: &BTreeMap<String, ClusterStatus>,
) -> Vec<DependencyReadiness> {
    depends_on
        .into_iter()
        .map(|dep| match plans.get(dep) {
            Some(plan) => dependency_readiness(dep, plan, statuses),
            None => DependencyReadiness {
                app: dep.to_string(),
                not_ready: BTreeMap::new(),
                everywhere: Some("has no plan (see its own status)".into()),
            },
        })
        .collect()
}

/// Where `app`, planned as `plan`, is ready for the apps that depend on it: on each
/// cluster it targets, its status there (in `statuses`) is Healthy at the release its
/// plan wants for that cluster.
pub fn dependency_readiness(
    app: &str,
    plan: &AppPlan,
    statuses: &BTreeMap<String, ClusterStatus>,
) -> DependencyReadiness {
    let not_ready = plan
        .decisions
        .iter()
        .filter_map(|(cluster, d)| {
            let status = statuses.get(cluster).and_then(|s| s.apps.get(app));
            Some((cluster.clone(), not_ready_because(d, status)?))
        })
        .collect();
    DependencyReadiness {
        app: app.to_string(),
        not_ready,
        everywhere: None,
    }
}

impl DependencyReadiness {
    /// Updates `cluster` with the dependency's status there as a pass just wrote it,
    /// so an app applied earlier in the same pass counts at once.
    pub fn update(&mut self, plan: &AppPlan, cluster: &str, status: Option<&AppStatus>) {
        let Some(d) = plan.decisions.get(cluster) else {
            return;
        };
        match not_ready_because(d, status) {
            Some(why) => self.not_ready.insert(cluster.to_string(), why),
            None => self.not_ready.remove(cluster),
        };
    }
}

/// Why an app with decision `d` and `status` on a cluster is not ready there for the
/// apps that depend on it, or `None` when it is Healthy at the planned release.
fn not_ready_because(d: &Decision, status: Option<&AppStatus>) -> Option<String> {
    match (&d.target, status) {
        (None, _) => Some("runs no release yet".to_string()),
        (Some(_), None) => Some("has no status yet".to_string()),
        (Some(t), Some(s)) if &s.release != t => Some(format!(
            "is {:?} at {}, the plan wants {}",
            s.phase,
            short(&s.release),
            short(t)
        )),
        (Some(_), Some(s)) if s.phase != Phase::Healthy || d.reason == Reason::Rollback => {
            Some(format!("is {:?}", s.phase))
        }
        _ => None,
    }
}

/// The first 7 characters of a sha, for messages.
fn short(sha: &str) -> &str {
    sha.get(..7).unwrap_or(sha)
}

/// Whether a wave may take a release, and if not, why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "camelCase")]
pub enum GateState {
    /// Open.
    Open,
    /// A cluster of an earlier wave has not finished its bake.
    WaitingForBake {
        /// The cluster.
        cluster: String,
        /// When its bake completes, if it is Healthy now (RFC 3339).
        until: Option<String>,
    },
    /// A cluster of an earlier wave reported the app Degraded at this release or later.
    Degraded {
        /// The cluster.
        cluster: String,
    },
    /// A cluster of an earlier wave finished its bake time, but not the analysis of the
    /// release (DESIGN §4.7).
    WaitingForAnalysis {
        /// The cluster.
        cluster: String,
        /// Its measurements so far, per metric.
        measurements: String,
    },
    /// A cluster of an earlier wave reported the analysis Inconclusive at this release
    /// or later; an approval entry for this release through this wave opens it.
    Inconclusive {
        /// The cluster.
        cluster: String,
        /// Why (the cluster's status message).
        message: String,
    },
    /// A cluster of an earlier wave has no recent status.
    Unknown {
        /// The cluster.
        cluster: String,
    },
    /// Waiting for an approval in `approvals/<app>.yaml`.
    WaitingForApproval,
    /// `gate: time`: opens at this time (RFC 3339).
    WaitingUntil {
        /// The time.
        until: String,
    },
    /// The app is paused (`paused: true` in its app.yaml): no wave takes a new
    /// release until it is resumed; reverts still go through.
    Paused {
        /// Its `pauseReason`.
        reason: String,
    },
    /// A `freeze` in fleet.yaml holds every cluster of the wave: no new release until
    /// it is lifted or ends; reverts still go through.
    Frozen {
        /// Why, and who said so.
        reason: String,
        /// When it ends by itself (RFC 3339), if it does.
        until: Option<String>,
    },
    /// Change windows hold every cluster of the wave (DESIGN §4.8): outside an allow
    /// window or inside a deny window.
    OutsideWindow {
        /// Which window, for people.
        window: String,
        /// When the first of the wave's clusters may take it (RFC 3339), if within the
        /// search.
        opens: Option<String>,
    },
    /// An app this one depends on is not yet Healthy, at the release wanted for it, on
    /// any cluster of the wave (DESIGN §4.9).
    WaitingForDependency {
        /// The app waited for.
        app: String,
        /// A cluster it holds, and what it does there.
        cluster: String,
        /// What the dependency is doing there.
        detail: String,
    },
}

/// Describes a gate for people, in the words `rollwave plan` and the web view use:
/// why a wave waits or halted, and what opens it.
pub fn describe_gate(g: &GateState) -> String {
    match g {
        GateState::Open => "open".into(),
        GateState::WaitingForBake {
            cluster,
            until: Some(u),
        } => format!("waiting for bake of {cluster} until {u}"),
        GateState::WaitingForBake {
            cluster,
            until: None,
        } => format!("waiting for {cluster} to become Healthy"),
        GateState::Degraded { cluster } => format!("blocked: {cluster} Degraded"),
        GateState::WaitingForAnalysis {
            cluster,
            measurements,
        } => format!("waiting for the analysis of {cluster}: {measurements}"),
        GateState::Inconclusive { cluster, message } if message.is_empty() => {
            format!("blocked: {cluster} Inconclusive; an approval entry for the release opens it")
        }
        GateState::Inconclusive { cluster, message } => format!(
            "blocked: {cluster} Inconclusive ({message}); an approval entry for the release opens it"
        ),
        GateState::Unknown { cluster } => format!("blocked: {cluster} Unknown (no recent status)"),
        GateState::WaitingForApproval => "waiting for approval".into(),
        GateState::WaitingUntil { until } => format!("opens at {until}"),
        GateState::Frozen {
            reason,
            until: Some(u),
        } => format!("frozen: {reason}; until {u}, or `rollwave unfreeze`"),
        GateState::Frozen {
            reason,
            until: None,
        } => format!("frozen: {reason}; `rollwave unfreeze` (a reviewed commit) lifts it"),
        GateState::Paused { reason } => {
            format!("paused: {reason}; `rollwave resume` (a reviewed commit) lets it go on")
        }
        GateState::OutsideWindow {
            window,
            opens: Some(o),
        } => format!("outside window: {window}; opens at {o}"),
        GateState::OutsideWindow {
            window,
            opens: None,
        } => format!("outside window: {window}; no opening in the coming year"),
        GateState::WaitingForDependency {
            app,
            cluster,
            detail,
        } => format!("waiting for dependency {app}: on {cluster} it {detail}"),
    }
}

/// Why a cluster gets its target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Reason {
    /// The gates up to its wave are open for this release.
    Rollout,
    /// The release renders what the cluster runs now.
    NoOp,
    /// The release renders a state the cluster ran Healthy before (a revert).
    Revert,
    /// Nothing newer may be applied; keep the current release.
    Current,
    /// Degraded with `onFailure: rollback`: re-apply the last known-good rendering.
    Rollback,
    /// Nothing may be applied yet and nothing runs.
    Waiting,
}

/// The decision for one cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Decision {
    /// The wave of the cluster.
    pub wave: usize,
    /// The release to run (full sha), if any.
    pub target: Option<String>,
    /// Why.
    pub reason: Reason,
    /// For [`Reason::Rollback`]: the release whose rendering is the last known good.
    pub rollback_to: Option<String>,
}

/// The gates of one pending release, per wave (index 0: wave 0).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReleaseGates {
    /// The release.
    pub release: String,
    /// Gate state per wave.
    pub waves: Vec<GateState>,
}

/// The plan for one app.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AppPlan {
    /// Waves of cluster names.
    pub waves: Vec<Vec<String>>,
    /// Decision per cluster.
    pub decisions: BTreeMap<String, Decision>,
    /// Gates of the releases newer than what some cluster runs, newest first.
    pub pending: Vec<ReleaseGates>,
}

/// RFC 3339, clamped to what the format can say (1970 to 9999): times derived from
/// peers' statuses can lie anywhere, and formatting one out of range must not panic.
fn fmt_time(t: SystemTime) -> String {
    const LAST: Duration = Duration::from_secs(253_402_300_799); // 9999-12-31T23:59:59Z
    let since_epoch = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .min(LAST);
    humantime::format_rfc3339_seconds(SystemTime::UNIX_EPOCH + since_epoch).to_string()
}

/// One (release, phase) interval of an app on a cluster.
struct Interval {
    order: Option<usize>,
    phase: Phase,
    since: SystemTime,
    /// The analysis of the release completed in this interval.
    verified: bool,
}

/// Per-cluster facts parsed once per plan.
struct Prepared<'w> {
    intervals: HashMap<String, Vec<Interval>>,
    fresh: HashMap<String, bool>,
    /// The app's change windows evaluated at the time of the plan.
    windows: WindowsAt<'w>,
}

impl<'a> PlanInput<'a> {
    fn order_of(&self, sha: &str) -> Option<usize> {
        self.order.get(sha).copied()
    }

    fn prepare(&self) -> Prepared<'a> {
        let clusters = self.waves.iter().flatten();
        let mut intervals = HashMap::new();
        let mut fresh = HashMap::new();
        for c in clusters {
            intervals.insert(c.clone(), self.intervals(c));
            fresh.insert(c.clone(), self.is_fresh(c));
        }
        Prepared {
            intervals,
            fresh,
            windows: self.policy.windows.at(self.now),
        }
    }

    /// Intervals of the app on `cluster`, oldest first.
    fn intervals(&self, cluster: &str) -> Vec<Interval> {
        let Some(a) = self
            .statuses
            .get(cluster)
            .and_then(|s| s.apps.get(self.app))
        else {
            return Vec::new();
        };
        let mut out: Vec<Interval> = a
            .history
            .iter()
            .filter_map(|h| {
                Some(Interval {
                    order: self.order_of(&h.release),
                    phase: h.phase,
                    since: humantime::parse_rfc3339(&h.since).ok()?,
                    verified: h.verified.is_some(),
                })
            })
            .collect();
        if let Ok(since) = humantime::parse_rfc3339(&a.since) {
            out.push(Interval {
                order: self.order_of(&a.release),
                phase: a.phase,
                since,
                verified: a.verified.is_some(),
            });
        }
        out.sort_by_key(|i| i.since);
        out
    }

    fn is_fresh(&self, cluster: &str) -> bool {
        self.statuses
            .get(cluster)
            .is_some_and(|s| s.is_fresh(self.now))
    }

    /// The state of one earlier-wave cluster with respect to release order `c`.
    fn cluster_gate(&self, prep: &Prepared, cluster: &str, c: usize) -> GateState {
        if !prep.fresh.get(cluster).copied().unwrap_or(false) {
            return GateState::Unknown {
                cluster: cluster.into(),
            };
        }
        let empty = Vec::new();
        let intervals = prep.intervals.get(cluster).unwrap_or(&empty);
        let at_or_after = |i: &Interval| i.order.is_some_and(|o| o >= c);
        if intervals
            .iter()
            .any(|i| at_or_after(i) && matches!(i.phase, Phase::Degraded | Phase::RolledBack))
        {
            return GateState::Degraded {
                cluster: cluster.into(),
            };
        }
        if intervals
            .iter()
            .any(|i| at_or_after(i) && i.phase == Phase::Inconclusive)
        {
            let message = self
                .statuses
                .get(cluster)
                .and_then(|s| s.apps.get(self.app))
                .filter(|a| a.phase == Phase::Inconclusive)
                .map(|a| a.message.clone())
                .unwrap_or_default();
            return GateState::Inconclusive {
                cluster: cluster.into(),
                message,
            };
        }
        // Earliest Healthy at >= C from which everything after stayed Healthy/Progressing at >= C.
        let mut bake_since = None;
        let mut verified = false;
        for (idx, i) in intervals.iter().enumerate() {
            if at_or_after(i) && i.phase == Phase::Healthy {
                let clean = intervals[idx..].iter().all(|j| {
                    at_or_after(j) && matches!(j.phase, Phase::Healthy | Phase::Progressing)
                });
                if clean {
                    bake_since = Some(i.since);
                    verified = intervals[idx..].iter().any(|j| j.verified);
                    break;
                }
            }
        }
        match bake_since {
            // Times come from peers' statuses: an absurd one must not overflow.
            Some(since) => {
                let Some(until) = since.checked_add(self.policy.bake) else {
                    return GateState::WaitingForBake {
                        cluster: cluster.into(),
                        until: None,
                    };
                };
                if self.now >= until && self.policy.analysis.enabled() && !verified {
                    let results = self
                        .statuses
                        .get(cluster)
                        .and_then(|s| s.apps.get(self.app))
                        .map(|a| a.analysis.clone())
                        .unwrap_or_default();
                    GateState::WaitingForAnalysis {
                        cluster: cluster.into(),
                        measurements: super::analysis::summary(&self.policy.analysis, &results),
                    }
                } else if self.now >= until {
                    GateState::Open
                } else {
                    GateState::WaitingForBake {
                        cluster: cluster.into(),
                        until: Some(fmt_time(until)),
                    }
                }
            }
            None => GateState::WaitingForBake {
                cluster: cluster.into(),
                until: None,
            },
        }
    }

    /// The gate of every wave for `release` (index `w`: may wave `w` take it). The gate
    /// of wave `w` looks at the clusters of waves `0..w`, computed cumulatively.
    fn gates(&self, prep: &Prepared, release: &Release) -> Vec<GateState> {
        let mut out = self.gates_before_freeze(prep, release);
        if let Some(f) = &self.policy.freeze {
            for (w, gate) in out.iter_mut().enumerate() {
                let wave = self.waves.get(w).map(Vec::as_slice).unwrap_or(&[]);
                if !matches!(gate, GateState::Paused { .. })
                    && !wave.is_empty()
                    && wave.iter().all(|c| f.holds(c, self.now))
                {
                    *gate = GateState::Frozen {
                        reason: f.reason.clone(),
                        until: f
                            .until
                            .map(|u| humantime::format_rfc3339_seconds(u).to_string()),
                    };
                }
            }
        }
        let order = self.order_of(&release.sha);
        for (w, gate) in out.iter_mut().enumerate() {
            let wave = self.waves.get(w).map(Vec::as_slice).unwrap_or(&[]);
            let may_wait = matches!(
                gate,
                GateState::Open
                    | GateState::WaitingForBake { .. }
                    | GateState::WaitingForAnalysis { .. }
                    | GateState::WaitingForApproval
                    | GateState::WaitingUntil { .. }
            );
            if !may_wait || wave.is_empty() || order.is_some_and(|o| self.wave_started(w, o)) {
                continue;
            }
            if let Some(held) = self.windows_hold_wave(prep, wave) {
                *gate = held;
            } else if *gate == GateState::Open
                && let Some(held) = self.dependencies_hold_wave(wave)
            {
                *gate = held;
            }
        }
        out
    }

    /// Whether a cluster of wave `w` runs release order `c` or later already: the
    /// wave is applying it, and a window that closes meanwhile lets it finish.
    fn wave_started(&self, w: usize, c: usize) -> bool {
        self.waves.get(w).is_some_and(|wave| {
            wave.iter().any(|cluster| {
                self.statuses
                    .get(cluster)
                    .and_then(|s| s.apps.get(self.app))
                    .and_then(|a| self.order_of(&a.release))
                    .is_some_and(|o| o >= c)
            })
        })
    }

    /// [`GateState::OutsideWindow`] when change windows hold every cluster of `wave`,
    /// with the earliest opening among them.
    fn windows_hold_wave(&self, prep: &Prepared, wave: &[String]) -> Option<GateState> {
        if self.policy.windows.is_empty() {
            return None;
        }
        let mut first = None;
        for cluster in wave {
            first = first.or(Some(prep.windows.closed(cluster)?));
        }
        let opens = prep.windows.earliest_opening(wave).map(fmt_time);
        Some(GateState::OutsideWindow {
            window: first?.why,
            opens,
        })
    }

    /// [`GateState::WaitingForDependency`] when a dependency holds every cluster of
    /// `wave`, naming the first.
    fn dependencies_hold_wave(&self, wave: &[String]) -> Option<GateState> {
        let mut first = None;
        for cluster in wave {
            let dep = self.dependencies.iter().find(|d| d.holds(cluster))?;
            first.get_or_insert((dep, cluster));
        }
        let (dep, cluster) = first?;
        Some(GateState::WaitingForDependency {
            app: dep.app.clone(),
            cluster: cluster.clone(),
            detail: dep.why(cluster).unwrap_or_default().to_string(),
        })
    }

    /// Whether `cluster` (of wave `w`) may not take release order `c` now although
    /// its wave's gate is open: a freeze, a change window (unless its wave already
    /// applies the release) or a dependency holds it.
    fn cluster_held(&self, prep: &Prepared, cluster: &str, w: usize, c: Option<usize>) -> bool {
        self.policy
            .freeze
            .as_ref()
            .is_some_and(|f| f.holds(cluster, self.now))
            || (prep.windows.closed(cluster).is_some()
                && !c.is_some_and(|c| self.wave_started(w, c)))
            || self.dependencies.iter().any(|d| d.holds(cluster))
    }

    /// Whether a change window with `blockReverts: true` holds `cluster` now.
    fn reverts_blocked(&self, prep: &Prepared, cluster: &str) -> bool {
        prep.windows
            .closed(cluster)
            .is_some_and(|c| c.blocks_reverts)
    }

    /// [`PlanInput::gates`] without the fleet's freeze.
    fn gates_before_freeze(&self, prep: &Prepared, release: &Release) -> Vec<GateState> {
        if let Some(reason) = &self.policy.paused {
            return vec![
                GateState::Paused {
                    reason: reason.clone()
                };
                self.waves.len().max(1)
            ];
        }
        let rank = |g: &GateState| match g {
            GateState::Degraded { .. } => 3,
            GateState::Unknown { .. } => 2,
            GateState::WaitingForBake { .. } | GateState::WaitingForAnalysis { .. } => 1,
            _ => 0,
        };
        let mut out = vec![GateState::Open];
        let Some(c) = self.order_of(&release.sha) else {
            out.resize(
                self.waves.len().max(1),
                GateState::Unknown {
                    cluster: String::new(),
                },
            );
            return out;
        };
        let mut worst = GateState::Open;
        let mut degraded: Option<GateState> = None;
        // Inconclusive is kept apart: an approval for this release through wave `w`
        // overrides it for that wave, a person having decided.
        let mut inconclusive: Option<GateState> = None;
        for w in 1..self.waves.len() {
            for cluster in &self.waves[w - 1] {
                let g = self.cluster_gate(prep, cluster, c);
                if let GateState::Inconclusive { .. } = g {
                    inconclusive.get_or_insert(g);
                    continue;
                }
                if degraded.is_none() && matches!(g, GateState::Degraded { .. }) {
                    degraded = Some(g.clone());
                }
                if rank(&g) > rank(&worst) {
                    worst = g;
                }
            }
            let held = inconclusive
                .as_ref()
                .filter(|_| degraded.is_none() && !self.approved(release, w));
            out.push(match held {
                Some(i) if self.policy.gate != Gate::Time => i.clone(),
                _ => self.gate_for(release, w, &worst, degraded.as_ref()),
            });
        }
        out
    }

    /// Whether `approvals/<app>.yaml` lets wave `w` take `release`.
    fn approved(&self, release: &Release, w: usize) -> bool {
        self.approvals.iter().any(|a| {
            a.release.len() >= 7 && release.sha.starts_with(&a.release) && a.through_wave >= w
        })
    }

    /// The gate of wave `w` given the worst health state and the first Degraded
    /// report among the earlier waves' clusters.
    fn gate_for(
        &self,
        release: &Release,
        w: usize,
        worst: &GateState,
        degraded: Option<&GateState>,
    ) -> GateState {
        match self.policy.gate {
            Gate::Health => worst.clone(),
            Gate::Manual => {
                if let Some(d) = degraded {
                    return d.clone();
                }
                if self.approved(release, w) {
                    GateState::Open
                } else {
                    GateState::WaitingForApproval
                }
            }
            Gate::Time => {
                let opens = u32::try_from(w)
                    .ok()
                    .and_then(|w| self.policy.bake.checked_mul(w))
                    .and_then(|wait| release.time.checked_add(wait));
                let Some(opens) = opens else {
                    return GateState::WaitingUntil {
                        until: "never (bake times wave number overflows)".into(),
                    };
                };
                if self.now >= opens {
                    GateState::Open
                } else {
                    GateState::WaitingUntil {
                        until: fmt_time(opens),
                    }
                }
            }
        }
    }

    /// Content hashes reported Degraded somewhere and not reported Healthy since.
    fn poisoned(&self) -> BTreeSet<String> {
        let mut poisoned = BTreeSet::new();
        for s in self.statuses.values() {
            if let Some(a) = s.apps.get(self.app) {
                poisoned.extend(a.poisoned.iter().cloned());
            }
        }
        for s in self.statuses.values() {
            // Under analysis, Healthy is a healthy report only once the analysis passed.
            if let Some(a) = s.apps.get(self.app)
                && a.phase == Phase::Healthy
                && (!self.policy.analysis.enabled() || a.verified.is_some())
            {
                poisoned.remove(&a.hash);
            }
        }
        poisoned
    }
}

/// The gate of every wave for any `release` of the app (index `w`: may wave `w` take
/// it), as [`plan_app`] computes them for pending releases. For views that ask why a
/// wave has not reached a release even when no cluster runs an older one yet (a new
/// app's first release).
pub fn release_gates(input: &PlanInput<'_>, release: &Release) -> Vec<GateState> {
    input.gates(&input.prepare(), release)
}

/// Decides the target of every cluster of the app and the gates of pending releases.
pub fn plan_app(input: &PlanInput<'_>) -> AppPlan {
    let poisoned = input.poisoned();
    let prep = input.prepare();
    let mut gate_cache: Vec<Option<Vec<GateState>>> = vec![None; input.releases.len()];
    let mut gates_of = |ri: usize| -> Vec<GateState> {
        gate_cache[ri]
            .get_or_insert_with(|| input.gates(&prep, &input.releases[ri]))
            .clone()
    };
    let mut decisions = BTreeMap::new();
    let mut oldest_current: Option<usize> = None;
    for (w, wave) in input.waves.iter().enumerate() {
        for cluster in wave {
            let status = input
                .statuses
                .get(cluster)
                .and_then(|s| s.apps.get(input.app));
            let current = status.map(|s| s.release.clone());
            let current_order = current.as_deref().and_then(|c| input.order_of(c));
            oldest_current = match (oldest_current, current_order) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (None, b) => b,
                (a, None) => a,
            };
            let current_hash = status.map(|s| s.hash.as_str());
            let known_good: &[String] = status.map(|s| s.known_good.as_slice()).unwrap_or(&[]);
            // A release this cluster reported Degraded is not taken again (after a
            // rollback the repository still says it; DESIGN §4.5).
            let failed_here: BTreeSet<&str> = status
                .into_iter()
                .flat_map(|s| {
                    s.history
                        .iter()
                        .map(|h| (h.release.as_str(), h.phase))
                        .chain([(s.release.as_str(), s.phase)])
                })
                .filter(|(_, p)| *p == Phase::Degraded)
                .map(|(r, _)| r)
                .collect();
            let mut decision = None;
            for (ri, release) in input.releases.iter().enumerate() {
                let order = input.order_of(&release.sha);
                if current_order.is_some() && order <= current_order {
                    break; // never move backwards through the gates
                }
                let Some(hash) = release.hashes.get(cluster) else {
                    continue;
                };
                let reason = if Some(hash.as_str()) == current_hash {
                    Some(Reason::NoOp)
                } else if known_good.contains(hash) {
                    (!input.reverts_blocked(&prep, cluster)).then_some(Reason::Revert)
                } else if (w > 0 && poisoned.contains(hash))
                    || failed_here.contains(release.sha.as_str())
                {
                    None
                } else if gates_of(ri).get(w) == Some(&GateState::Open)
                    && !input.cluster_held(&prep, cluster, w, order)
                {
                    Some(Reason::Rollout)
                } else {
                    None
                };
                if let Some(reason) = reason {
                    decision = Some(Decision {
                        wave: w,
                        target: Some(release.sha.clone()),
                        reason,
                        rollback_to: None,
                    });
                    break;
                }
            }
            let decision = decision.unwrap_or_else(|| {
                let degraded = status.is_some_and(|s| s.phase == Phase::Degraded);
                // Rolled back already (or on the way): keep saying so until a newer
                // release arrives, so the rendering re-applied is reported RolledBack
                // and not taken for a fresh release of its own.
                let rolled_back = status.is_some_and(|s| {
                    matches!(s.phase, Phase::Progressing | Phase::RolledBack)
                        && failed_here
                            .iter()
                            .any(|r| input.order_of(r) > current_order)
                });
                if rolled_back && input.policy.on_failure == OnFailure::Rollback {
                    return Decision {
                        wave: w,
                        target: current.clone(),
                        reason: Reason::Rollback,
                        rollback_to: current.clone(),
                    };
                }
                // A window with `blockReverts` holds a rollback not yet begun; one
                // under way (above) is kept, as re-applying the failed release would
                // be a new change.
                if degraded
                    && input.policy.on_failure == OnFailure::Rollback
                    && !input.reverts_blocked(&prep, cluster)
                {
                    let good = input.releases.iter().find(|r| {
                        r.hashes
                            .get(cluster)
                            .is_some_and(|h| known_good.contains(h))
                            && input.order_of(&r.sha) < current_order
                    });
                    if let Some(good) = good {
                        return Decision {
                            wave: w,
                            target: current.clone(),
                            reason: Reason::Rollback,
                            rollback_to: Some(good.sha.clone()),
                        };
                    }
                }
                match &current {
                    Some(c) => Decision {
                        wave: w,
                        target: Some(c.clone()),
                        reason: Reason::Current,
                        rollback_to: None,
                    },
                    None => Decision {
                        wave: w,
                        target: None,
                        reason: Reason::Waiting,
                        rollback_to: None,
                    },
                }
            });
            decisions.insert(cluster.clone(), decision);
        }
    }
    let pending = input
        .releases
        .iter()
        .filter(|r| oldest_current.is_none_or(|o| input.order_of(&r.sha).is_some_and(|x| x > o)))
        .enumerate()
        .map(|(ri, r)| ReleaseGates {
            release: r.sha.clone(),
            waves: gates_of(ri),
        })
        .collect();
    AppPlan {
        waves: input.waves.to_vec(),
        decisions,
        pending,
    }
}
