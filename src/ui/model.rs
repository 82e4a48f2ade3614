//! The view model of the fleet web view and its JSON API (`/api/fleet`,
//! `/api/apps/<app>`): what each cluster of each wave runs, its phase, bake and
//! analysis, why a wave waits or halted, and where each recent release reached. Pure:
//! built from the plan inputs the caller read (repository, status refs, clock), so the
//! same inputs give the same view, and the planner's words are the view's words.
//!
//! The view carries only what the status refs and the repository say: release shas,
//! commit subjects, phases, the agents' status messages and metric values. No
//! rendered object, query or credential is ever part of it.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, SystemTime};

use serde::Serialize;

use crate::fleet::{Gate, OnFailure, RolloutSpec};
use crate::plan::{AppPlan, GateState, Reason, Release, describe_gate};
use crate::status::{AppStatus, ClusterStatus, Phase};

/// How many releases per app the release picker lists, newest first.
pub const PICKER_RELEASES: usize = 10;

/// Length of the short form of a sha, as `rollwave status` prints it.
pub const SHORT_SHA: usize = 8;

/// A commit named for people: its sha, short sha and subject.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReleaseRef {
    /// The full sha.
    pub sha: String,
    /// Its first [`SHORT_SHA`] characters.
    pub short: String,
    /// The first line of the commit message (empty when the commit is not in the
    /// repository's history, e.g. a status written from another branch).
    pub subject: String,
}

/// What the caller read from the repository for one app, besides the plan.
pub struct AppSource<'a> {
    /// The app's name.
    pub name: &'a str,
    /// Its rollout policy at the head.
    pub policy: &'a RolloutSpec,
    /// Its plan, as `rollwave plan` computes it.
    pub plan: &'a AppPlan,
    /// Its releases, newest first.
    pub releases: &'a [Release],
    /// The planner's gate per wave for the first [`PICKER_RELEASES`] releases, by sha
    /// ([`crate::plan::release_gates`]).
    pub gates: &'a HashMap<String, Vec<GateState>>,
}

/// What the caller read for the whole fleet.
pub struct FleetSource<'a> {
    /// The head commit of the tracked branch.
    pub head: &'a str,
    /// Position of every commit of the branch's first-parent history (larger: newer).
    pub order: &'a HashMap<String, usize>,
    /// Commit subjects by sha (at least those of the releases and of what clusters run).
    pub subjects: &'a HashMap<String, String>,
    /// Every cluster's status, from the status refs.
    pub statuses: &'a BTreeMap<String, ClusterStatus>,
    /// Why some status refs could not be read (`cluster: message`).
    pub unreadable: &'a [String],
    /// The fleet's `freeze`, if fleet.yaml has one.
    pub freeze: Option<&'a crate::fleet::Freeze>,
    /// The fleet's change windows.
    pub windows: &'a [std::sync::Arc<crate::fleet::windows::Window>],
    /// Every cluster's labels, from its file in the repository.
    pub labels: &'a BTreeMap<String, BTreeMap<String, String>>,
    /// The time the view describes.
    pub now: SystemTime,
}

/// What a cell shows as its colour: an app phase, or why there is none.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum CellState {
    /// Applied and healthy.
    Healthy,
    /// Left alone on purpose.
    Suspended,
    /// Being applied or waiting for workloads.
    Progressing,
    /// The analysis could not decide.
    Inconclusive,
    /// The last known-good rendering was re-applied.
    RolledBack,
    /// Failed its health rules, progress deadline or analysis.
    Degraded,
    /// Could not be rendered or applied.
    Error,
    /// The cluster's agent has not reported for three heartbeat intervals (or never).
    Unknown,
    /// The agent reports, but the app has not been applied there yet.
    NotDeployed,
}

impl From<Phase> for CellState {
    fn from(p: Phase) -> Self {
        match p {
            Phase::Healthy => CellState::Healthy,
            Phase::Suspended => CellState::Suspended,
            Phase::Progressing => CellState::Progressing,
            Phase::Inconclusive => CellState::Inconclusive,
            Phase::RolledBack => CellState::RolledBack,
            Phase::Degraded => CellState::Degraded,
            Phase::Error => CellState::Error,
        }
    }
}

/// The bake of the release a cluster runs (DESIGN §4.3).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BakeView {
    /// When the healthy stretch the bake counts from began (RFC 3339).
    pub since: String,
    /// When the bake time is over (RFC 3339).
    pub until: String,
    /// The bake time in seconds.
    pub seconds: u64,
    /// The bake time is over.
    pub done: bool,
    /// The policy has analysis and the cluster reported it complete for this stretch.
    pub verified: bool,
}

/// The last measurement of one analysis metric.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MetricView {
    /// The metric's name.
    pub name: String,
    /// The last value for people (`0.002`, `+Inf`), or what the query said instead.
    pub value: String,
    /// Measurements taken.
    pub measurements: u32,
    /// Measurements out of bounds.
    pub failures: u32,
    /// Query errors in a row.
    pub errors: u32,
}

/// One cluster of one wave.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CellView {
    /// The cluster.
    pub cluster: String,
    /// The colour.
    pub state: CellState,
    /// The release applied, when the app runs there.
    pub release: Option<ReleaseRef>,
    /// When the phase began (RFC 3339, seconds).
    pub since: Option<String>,
    /// The agent's message for the phase (why it is Degraded, RolledBack...).
    pub message: String,
    /// The release the planner says the cluster should run now, when it differs
    /// from the one applied.
    pub next: Option<ReleaseRef>,
    /// Why the planner chose the target (`rollout`, `current`, `rollback`...).
    pub reason: Reason,
    /// The bake of the applied release, when it is Healthy.
    pub bake: Option<BakeView>,
    /// The analysis in one line (`error-ratio=0.002 latency-p99=0.12`, or the
    /// verdict), when the app has analysis results there.
    pub analysis: Option<String>,
    /// The analysis per metric.
    pub metrics: Vec<MetricView>,
    /// The agent's last heartbeat (RFC 3339), when it ever reported.
    pub heartbeat: Option<String>,
}

/// Why a wave does not take the newest release yet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WaveGate {
    /// The release the wave waits for.
    pub release: ReleaseRef,
    /// The planner's gate state.
    pub gate: GateState,
    /// The planner's words for it, as `rollwave plan` prints them.
    pub reason: String,
    /// A failure or a silent cluster holds the wave (as opposed to a bake, an
    /// analysis, an approval or a time that will pass).
    pub halted: bool,
}

/// One wave of an app.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WaveView {
    /// Its index (0: the canary wave when the app has one).
    pub index: usize,
    /// Its clusters.
    pub clusters: Vec<CellView>,
    /// Why it waits or halted, if it does.
    pub gate: Option<WaveGate>,
}

/// Where a release stands on one cluster that has run it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Reach {
    /// The cluster runs it now (else it ran it before).
    pub current: bool,
    /// Its phase there (the last one, when it ran it before).
    pub phase: Phase,
}

/// A recent release of an app, for the release picker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReleaseView {
    /// The commit.
    #[serde(flatten)]
    pub release: ReleaseRef,
    /// Commit time (RFC 3339).
    pub time: String,
    /// The clusters that run it or ran it.
    pub clusters: BTreeMap<String, Reach>,
    /// How many clusters run it now.
    pub running: usize,
    /// The last wave with a cluster that runs or ran it.
    pub furthest_wave: Option<usize>,
    /// The planner's words for the gate of each wave, while some cluster has not
    /// reached the release (runs neither it nor a newer one).
    pub gates: Option<Vec<String>>,
}

/// The app's policy, spelled as in the repository.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PolicyView {
    /// Batch ratio, `1:2:7`.
    pub batches: String,
    /// Bake time, `10m`.
    pub bake: String,
    /// `health`, `manual` or `time`.
    pub gate: &'static str,
    /// `halt` or `rollback`.
    pub on_failure: &'static str,
    /// Names of the analysis metrics (empty without analysis).
    pub metrics: Vec<String>,
}

/// `/api/apps/<app>`: everything the page shows for one app.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AppView {
    /// The app.
    pub name: String,
    /// Its policy.
    pub policy: PolicyView,
    /// Its waves, wave 0 first.
    pub waves: Vec<WaveView>,
    /// Its recent releases, newest first (at most [`PICKER_RELEASES`]).
    pub releases: Vec<ReleaseView>,
}

/// The first wave that waits or halted, for the fleet overview.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Blocked {
    /// The wave.
    pub wave: usize,
    /// The planner's words.
    pub reason: String,
    /// See [`WaveGate::halted`].
    pub halted: bool,
}

/// One app in `/api/fleet`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AppSummary {
    /// The app.
    pub name: String,
    /// Number of waves.
    pub waves: usize,
    /// Number of targeted clusters.
    pub clusters: usize,
    /// Clusters per cell state (only states that occur).
    pub states: BTreeMap<String, usize>,
    /// Its newest release.
    pub newest: Option<ReleaseRef>,
    /// Clusters that run the newest release.
    pub on_newest: usize,
    /// The first wave that waits or halted.
    pub blocked: Option<Blocked>,
}

/// `/api/fleet`: the head and every app in short.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FleetView {
    /// The head of the tracked branch.
    pub head: ReleaseRef,
    /// Every app, in the repository's order.
    pub apps: Vec<AppSummary>,
    /// Status refs that could not be read (`cluster: message`).
    pub unreadable: Vec<String>,
    /// Why the last re-read of the repository failed, when it did: the view is then
    /// the last one read.
    pub error: Option<String>,
    /// The freeze holding now (the page's banner), if any.
    pub freeze: Option<FreezeBanner>,
    /// The fleet's change windows, described.
    pub windows: Vec<String>,
    /// The labels of the clusters that have some, by cluster: the page filters the
    /// waves by them (`region=eu`), and sending them once here rather than with
    /// every cell keeps an app's view of a thousand clusters small.
    pub labels: BTreeMap<String, BTreeMap<String, String>>,
}

/// What the page's banner says of a freeze (DESIGN §4.8).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FreezeBanner {
    /// Why, and who said so.
    pub reason: String,
    /// When it ends by itself (RFC 3339), if it does.
    pub until: Option<String>,
    /// Its scope for people ("every app and cluster", "apps: api; stages: prod").
    pub scope: String,
}

impl FreezeBanner {
    /// The banner of `freeze` if it holds at `now`.
    pub fn of(freeze: &crate::fleet::Freeze, now: SystemTime) -> Option<FreezeBanner> {
        if freeze.until.is_some_and(|u| now >= u) {
            return None;
        }
        let mut scope = Vec::new();
        if !freeze.apps.is_empty() {
            let apps: Vec<&str> = freeze.apps.iter().map(|a| a.value.as_str()).collect();
            scope.push(format!("apps: {}", apps.join(", ")));
        }
        if !freeze.stages.is_empty() {
            scope.push(format!("stages: {}", freeze.stages.join(", ")));
        }
        if !freeze.selector.is_empty() {
            let labels: Vec<String> = freeze
                .selector
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            scope.push(format!("clusters labelled {}", labels.join(", ")));
        }
        Some(FreezeBanner {
            reason: freeze.reason.clone(),
            until: freeze.until.map(fmt_time),
            scope: if scope.is_empty() {
                "every app and cluster".into()
            } else {
                scope.join("; ")
            },
        })
    }
}

/// RFC 3339 with seconds, clamped to what the format can say.
fn fmt_time(t: SystemTime) -> String {
    const LAST: Duration = Duration::from_secs(253_402_300_799);
    let since_epoch = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .min(LAST);
    humantime::format_rfc3339_seconds(SystemTime::UNIX_EPOCH + since_epoch).to_string()
}

/// A duration as the repository spells it (`10m`, `1h30m`, `45s`).
fn spell_duration(d: Duration) -> String {
    let s = d.as_secs();
    if s == 0 {
        return "0s".into();
    }
    let mut out = String::new();
    let (days, h, m, sec) = (s / 86_400, s % 86_400 / 3600, s % 3600 / 60, s % 60);
    for (n, unit) in [(days, "d"), (h, "h"), (m, "m"), (sec, "s")] {
        if n > 0 {
            out.push_str(&format!("{n}{unit}"));
        }
    }
    out
}

impl FleetSource<'_> {
    fn release_ref(&self, sha: &str) -> ReleaseRef {
        ReleaseRef {
            sha: sha.to_string(),
            short: sha[..sha.len().min(SHORT_SHA)].to_string(),
            subject: self.subjects.get(sha).cloned().unwrap_or_default(),
        }
    }

    fn fresh(&self, s: &ClusterStatus) -> bool {
        s.is_fresh(self.now)
    }

    fn order_of(&self, sha: &str) -> Option<usize> {
        self.order.get(sha).copied()
    }
}

/// The bake of the release `a` runs, by the planner's rule (DESIGN §4.3): from the
/// earliest Healthy interval at that release or a later one after which the app was
/// only Healthy or Progressing at such releases. None unless the app is Healthy.
fn bake_of(
    a: &AppStatus,
    order: &HashMap<String, usize>,
    policy: &RolloutSpec,
    now: SystemTime,
) -> Option<BakeView> {
    if a.phase != Phase::Healthy {
        return None;
    }
    let current = order.get(&a.release).copied();
    let at_or_after = |release: &str| match (order.get(release), current) {
        (Some(o), Some(c)) => *o >= c,
        (_, None) => release == a.release,
        (None, Some(_)) => false,
    };
    let mut intervals: Vec<(SystemTime, &str, Phase, bool)> = a
        .history
        .iter()
        .filter_map(|h| {
            let since = humantime::parse_rfc3339(&h.since).ok()?;
            Some((since, h.release.as_str(), h.phase, h.verified.is_some()))
        })
        .collect();
    intervals.push((
        humantime::parse_rfc3339(&a.since).ok()?,
        a.release.as_str(),
        a.phase,
        a.verified.is_some(),
    ));
    intervals.sort_by_key(|i| i.0);
    let start = (0..intervals.len()).find(|&idx| {
        intervals[idx].2 == Phase::Healthy
            && intervals[idx..]
                .iter()
                .all(|j| at_or_after(j.1) && matches!(j.2, Phase::Healthy | Phase::Progressing))
    })?;
    let since = intervals[start].0;
    let until = since.checked_add(policy.bake)?;
    Some(BakeView {
        since: fmt_time(since),
        until: fmt_time(until),
        seconds: policy.bake.as_secs(),
        done: now >= until,
        verified: policy.analysis.enabled() && intervals[start..].iter().any(|i| i.3),
    })
}

/// A gate that a failure or a silent cluster holds, rather than time.
fn halts(g: &GateState) -> bool {
    matches!(
        g,
        GateState::Degraded { .. } | GateState::Inconclusive { .. } | GateState::Unknown { .. }
    )
}

fn cell(src: &FleetSource<'_>, app: &AppSource<'_>, cluster: &str) -> CellView {
    let status = src.statuses.get(cluster);
    let fresh = status.is_some_and(|s| src.fresh(s));
    let a = status.and_then(|s| s.apps.get(app.name));
    let state = match (a, fresh) {
        (_, false) => CellState::Unknown,
        (Some(a), true) => a.phase.into(),
        (None, true) => CellState::NotDeployed,
    };
    let decision = app.plan.decisions.get(cluster);
    let next = decision
        .and_then(|d| d.target.as_deref())
        .filter(|t| a.is_none_or(|a| a.release != *t))
        .map(|t| src.release_ref(t));
    let analysis = a
        .map(crate::plan::analysis::cell)
        .filter(|c| c != "-" && !c.is_empty());
    let metrics = a
        .map(|a| {
            a.analysis
                .iter()
                .map(|(name, r)| MetricView {
                    name: name.clone(),
                    value: match r.value {
                        Some(v) => crate::plan::analysis::show_value(v),
                        None if r.note.is_empty() => "-".into(),
                        None => r.note.clone(),
                    },
                    measurements: r.measurements,
                    failures: r.failures,
                    errors: r.errors,
                })
                .collect()
        })
        .unwrap_or_default();
    CellView {
        cluster: cluster.to_string(),
        state,
        release: a.map(|a| src.release_ref(&a.release)),
        since: a.map(|a| match a.since.split_once('.') {
            Some((seconds, _)) => format!("{seconds}Z"),
            None => a.since.clone(),
        }),
        message: a.map(|a| a.message.clone()).unwrap_or_default(),
        next,
        reason: decision.map_or(Reason::Waiting, |d| d.reason),
        bake: a.and_then(|a| bake_of(a, src.order, app.policy, src.now)),
        analysis,
        metrics,
        heartbeat: status.map(|s| s.heartbeat.clone()),
    }
}

/// Whether `cluster` runs `release` or a newer one of the branch.
fn reached(src: &FleetSource<'_>, app: &str, cluster: &str, release: &str) -> bool {
    let Some(a) = src.statuses.get(cluster).and_then(|s| s.apps.get(app)) else {
        return false;
    };
    match (src.order_of(&a.release), src.order_of(release)) {
        (Some(runs), Some(r)) => runs >= r,
        _ => a.release == release,
    }
}

/// Why wave `w` does not run the app's newest release, if its gate is closed.
fn wave_gate(
    src: &FleetSource<'_>,
    app: &AppSource<'_>,
    w: usize,
    wave: &[String],
) -> Option<WaveGate> {
    let newest = app.releases.first()?;
    if wave.iter().all(|c| reached(src, app.name, c, &newest.sha)) {
        return None;
    }
    let gate = app.gates.get(&newest.sha)?.get(w)?;
    if *gate == GateState::Open {
        return None;
    }
    Some(WaveGate {
        release: src.release_ref(&newest.sha),
        gate: gate.clone(),
        reason: describe_gate(gate),
        halted: halts(gate),
    })
}

fn policy_view(p: &RolloutSpec) -> PolicyView {
    PolicyView {
        batches: p
            .batches
            .iter()
            .map(u64::to_string)
            .collect::<Vec<_>>()
            .join(":"),
        bake: spell_duration(p.bake),
        gate: match p.gate {
            Gate::Health => "health",
            Gate::Manual => "manual",
            Gate::Time => "time",
        },
        on_failure: match p.on_failure {
            OnFailure::Halt => "halt",
            OnFailure::Rollback => "rollback",
        },
        metrics: p.analysis.metrics.iter().map(|m| m.name.clone()).collect(),
    }
}

fn release_view(src: &FleetSource<'_>, app: &AppSource<'_>, r: &Release) -> ReleaseView {
    let mut clusters = BTreeMap::new();
    let mut furthest_wave = None;
    for (w, wave) in app.plan.waves.iter().enumerate() {
        for c in wave {
            let Some(a) = src.statuses.get(c).and_then(|s| s.apps.get(app.name)) else {
                continue;
            };
            let reach = if a.release == r.sha {
                Some(Reach {
                    current: true,
                    phase: a.phase,
                })
            } else {
                a.history
                    .iter()
                    .find(|h| h.release == r.sha)
                    .map(|h| Reach {
                        current: false,
                        phase: h.phase,
                    })
            };
            if let Some(reach) = reach {
                clusters.insert(c.clone(), reach);
                furthest_wave = Some(w);
            }
        }
    }
    let everywhere = app
        .plan
        .waves
        .iter()
        .flatten()
        .all(|c| reached(src, app.name, c, &r.sha));
    let gates = app
        .gates
        .get(&r.sha)
        .filter(|_| !everywhere)
        .map(|g| g.iter().map(describe_gate).collect());
    ReleaseView {
        release: src.release_ref(&r.sha),
        time: fmt_time(r.time),
        running: clusters.values().filter(|r| r.current).count(),
        clusters,
        furthest_wave,
        gates,
    }
}

/// The view of one app.
pub fn app_view(src: &FleetSource<'_>, app: &AppSource<'_>) -> AppView {
    let waves = app
        .plan
        .waves
        .iter()
        .enumerate()
        .map(|(w, wave)| WaveView {
            index: w,
            clusters: wave.iter().map(|c| cell(src, app, c)).collect(),
            gate: wave_gate(src, app, w, wave),
        })
        .collect();
    AppView {
        name: app.name.to_string(),
        policy: policy_view(app.policy),
        waves,
        releases: app
            .releases
            .iter()
            .take(PICKER_RELEASES)
            .map(|r| release_view(src, app, r))
            .collect(),
    }
}

/// The fleet overview, from the apps' views.
pub fn fleet_view(src: &FleetSource<'_>, apps: &[AppView]) -> FleetView {
    let apps = apps
        .iter()
        .map(|a| {
            let mut states = BTreeMap::new();
            for c in a.waves.iter().flat_map(|w| &w.clusters) {
                let name = serde_json::to_value(c.state)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default();
                *states.entry(name).or_insert(0) += 1;
            }
            let newest = a.releases.first().map(|r| r.release.clone());
            AppSummary {
                name: a.name.clone(),
                waves: a.waves.len(),
                clusters: a.waves.iter().map(|w| w.clusters.len()).sum(),
                states,
                on_newest: a.releases.first().map_or(0, |r| r.running),
                newest,
                blocked: a.waves.iter().find_map(|w| {
                    w.gate.as_ref().map(|g| Blocked {
                        wave: w.index,
                        reason: g.reason.clone(),
                        halted: g.halted,
                    })
                }),
            }
        })
        .collect();
    FleetView {
        head: src.release_ref(src.head),
        apps,
        unreadable: src.unreadable.to_vec(),
        error: None,
        freeze: src.freeze.and_then(|f| FreezeBanner::of(f, src.now)),
        windows: src.windows.iter().map(|w| w.describe()).collect(),
        labels: src
            .labels
            .iter()
            .filter(|(_, l)| !l.is_empty())
            .map(|(c, l)| (c.clone(), l.clone()))
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::Decision;
    use crate::status::HistoryEntry;

    const T0: u64 = 1_790_000_000;

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(T0 + secs)
    }

    fn app_status(release: &str, phase: Phase, since: u64) -> AppStatus {
        AppStatus {
            release: release.into(),
            hash: format!("h-{release}"),
            phase,
            since: fmt_time(at(since)),
            message: String::new(),
            known_good: vec![],
            poisoned: vec![],
            history: vec![],
            analysis: BTreeMap::new(),
            verified: None,
        }
    }

    fn entry(release: &str, phase: Phase, since: u64, until: u64) -> HistoryEntry {
        HistoryEntry {
            release: release.into(),
            hash: format!("h-{release}"),
            phase,
            since: fmt_time(at(since)),
            until: fmt_time(at(until)),
            verified: None,
        }
    }

    fn order() -> HashMap<String, usize> {
        [("a", 1), ("b", 2), ("c", 3)]
            .into_iter()
            .map(|(s, o)| (s.to_string(), o))
            .collect()
    }

    fn policy(bake: u64) -> RolloutSpec {
        RolloutSpec {
            bake: Duration::from_secs(bake),
            ..RolloutSpec::default()
        }
    }

    #[test]
    fn durations_are_spelled_as_the_repository_writes_them() {
        assert_eq!(spell_duration(Duration::from_secs(300)), "5m");
        assert_eq!(spell_duration(Duration::from_secs(90)), "1m30s");
        assert_eq!(spell_duration(Duration::from_secs(5400)), "1h30m");
        assert_eq!(spell_duration(Duration::from_secs(86_400)), "1d");
        assert_eq!(spell_duration(Duration::ZERO), "0s");
    }

    #[test]
    fn a_bake_counts_from_the_healthy_stretch_and_not_from_a_newer_release() {
        // Progressing at b, Healthy at b from 100, moved on to c at 200 (Healthy).
        let mut a = app_status("c", Phase::Healthy, 200);
        a.history = vec![
            entry("b", Phase::Healthy, 100, 200),
            entry("b", Phase::Progressing, 50, 100),
        ];
        let b = bake_of(&a, &order(), &policy(300), at(250)).unwrap();
        assert_eq!(
            b.since,
            fmt_time(at(200)),
            "older releases do not count for c"
        );
        assert_eq!(b.until, fmt_time(at(500)));
        assert!(!b.done);
        assert!(!b.verified);
        // At b itself the stretch started at 100.
        let mut a = app_status("b", Phase::Healthy, 100);
        a.history = vec![entry("b", Phase::Progressing, 50, 100)];
        let b = bake_of(&a, &order(), &policy(300), at(400)).unwrap();
        assert_eq!(b.since, fmt_time(at(100)));
        assert!(b.done);
    }

    #[test]
    fn a_degraded_report_restarts_the_bake_and_only_healthy_apps_bake() {
        let mut a = app_status("b", Phase::Healthy, 300);
        a.history = vec![
            entry("b", Phase::Degraded, 200, 300),
            entry("b", Phase::Healthy, 100, 200),
        ];
        let b = bake_of(&a, &order(), &policy(60), at(310)).unwrap();
        assert_eq!(b.since, fmt_time(at(300)));
        assert_eq!(
            bake_of(
                &app_status("b", Phase::Progressing, 0),
                &order(),
                &policy(60),
                at(10)
            ),
            None
        );
    }

    fn status(cluster: &str, app: AppStatus, heartbeat: u64) -> ClusterStatus {
        ClusterStatus {
            cluster: cluster.into(),
            agent: "test".into(),
            heartbeat: fmt_time(at(heartbeat)),
            interval: 60,
            apps: [("web".to_string(), app)].into_iter().collect(),
            notified: Default::default(),
        }
    }

    #[test]
    fn a_wave_short_of_the_newest_release_shows_its_gate_in_the_planners_words() {
        let waves = vec![vec!["c0".to_string()], vec!["c1".to_string()]];
        let mut canary = app_status("b", Phase::Degraded, 900);
        canary.message = "pods not ready".into();
        let statuses: BTreeMap<String, ClusterStatus> = [
            ("c0".to_string(), status("c0", canary, 1000)),
            (
                "c1".to_string(),
                status("c1", app_status("a", Phase::Healthy, 0), 1000),
            ),
        ]
        .into_iter()
        .collect();
        let releases = vec![
            Release {
                sha: "b".into(),
                time: at(800),
                hashes: BTreeMap::new(),
            },
            Release {
                sha: "a".into(),
                time: at(0),
                hashes: BTreeMap::new(),
            },
        ];
        let gates: HashMap<String, Vec<GateState>> = [
            (
                "b".to_string(),
                vec![
                    GateState::Open,
                    GateState::Degraded {
                        cluster: "c0".into(),
                    },
                ],
            ),
            ("a".to_string(), vec![GateState::Open, GateState::Open]),
        ]
        .into_iter()
        .collect();
        let decisions = ["c0", "c1"]
            .iter()
            .enumerate()
            .map(|(w, c)| {
                (
                    c.to_string(),
                    Decision {
                        wave: w,
                        target: Some(if w == 0 { "b" } else { "a" }.into()),
                        reason: Reason::Current,
                        rollback_to: None,
                    },
                )
            })
            .collect();
        let plan = AppPlan {
            waves: waves.clone(),
            decisions,
            pending: vec![],
        };
        let subjects: HashMap<String, String> = [("a", "initial"), ("b", "web 1.5.0")]
            .into_iter()
            .map(|(s, t)| (s.to_string(), t.to_string()))
            .collect();
        let order = order();
        let labels: BTreeMap<String, BTreeMap<String, String>> = [
            (
                "c0".to_string(),
                [("region".to_string(), "sh".to_string())].into(),
            ),
            ("c1".to_string(), BTreeMap::new()),
        ]
        .into();
        let src = FleetSource {
            head: "b",
            order: &order,
            subjects: &subjects,
            statuses: &statuses,
            unreadable: &[],
            freeze: None,
            windows: &[],
            labels: &labels,
            now: at(1010),
        };
        let policy = policy(60);
        let view = app_view(
            &src,
            &AppSource {
                name: "web",
                policy: &policy,
                plan: &plan,
                releases: &releases,
                gates: &gates,
            },
        );
        assert_eq!(
            view.waves[0].gate, None,
            "the canary runs the newest release"
        );
        let gate = view.waves[1].gate.as_ref().unwrap();
        assert_eq!(gate.reason, "blocked: c0 Degraded");
        assert!(gate.halted);
        assert_eq!(gate.release.subject, "web 1.5.0");
        let canary = &view.waves[0].clusters[0];
        assert_eq!(canary.state, CellState::Degraded);
        assert_eq!(canary.message, "pods not ready");
        assert_eq!(canary.next, None);
        let c1 = &view.waves[1].clusters[0];
        assert_eq!(c1.release.as_ref().unwrap().subject, "initial");
        assert!(c1.bake.as_ref().unwrap().done);
        assert_eq!(view.releases[0].running, 1);
        assert_eq!(view.releases[0].furthest_wave, Some(0));
        assert_eq!(
            view.releases[0].gates.as_deref(),
            Some(&["open".to_string(), "blocked: c0 Degraded".to_string()][..])
        );
        assert_eq!(view.releases[1].gates, None, "both clusters reached a");

        // A silent agent is Unknown, whatever it last said.
        let src = FleetSource {
            now: at(1000 + 181),
            ..src
        };
        let view = app_view(
            &src,
            &AppSource {
                name: "web",
                policy: &policy,
                plan: &plan,
                releases: &releases,
                gates: &gates,
            },
        );
        assert_eq!(view.waves[1].clusters[0].state, CellState::Unknown);
        let fleet = fleet_view(&src, &[view]);
        assert_eq!(fleet.apps[0].states["Unknown"], 2);
        assert_eq!(fleet.apps[0].blocked.as_ref().unwrap().wave, 1);
        assert_eq!(fleet.head.subject, "web 1.5.0");
        assert_eq!(
            serde_json::to_value(&fleet.labels).unwrap(),
            serde_json::json!({"c0": {"region": "sh"}}),
            "only clusters with labels are listed"
        );
    }
}
