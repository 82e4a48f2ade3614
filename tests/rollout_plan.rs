//! The rollout planner as a simulation of time: releases move wave by wave as statuses
//! turn Healthy and bakes complete; a Degraded canary halts; stale statuses block;
//! approvals and time gates open waves; reverts skip the gates; streams of commits do
//! not starve later waves; poisoned renderings stop at wave 0.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, SystemTime};

use rollwave::fleet::{Gate, OnFailure, RolloutSpec};
use rollwave::plan::{
    Approval, DependencyReadiness, GateState, PlanInput, Reason, Release, dependency_readiness,
    plan_app,
};
use rollwave::status::{AppStatus, ClusterStatus, HistoryEntry, Phase};

const MIN: Duration = Duration::from_secs(60);

fn t(minutes: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000) + MIN * minutes as u32
}

fn ts(time: SystemTime) -> String {
    humantime::format_rfc3339_seconds(time).to_string()
}

/// A fleet of 1 canary + 10 clusters at 1:2:7, with a status per cluster.
struct Sim {
    waves: Vec<Vec<String>>,
    statuses: BTreeMap<String, ClusterStatus>,
    releases: Vec<Release>, // newest first
    order: HashMap<String, usize>,
    policy: RolloutSpec,
    approvals: Vec<Approval>,
    dependencies: Vec<DependencyReadiness>,
}

impl Sim {
    fn new(policy: RolloutSpec) -> Sim {
        let waves = vec![
            vec!["canary".to_string()],
            vec!["p1".to_string()],
            vec!["p2".to_string(), "p3".to_string()],
            (4..=10).map(|i| format!("p{i}")).collect(),
        ];
        let mut sim = Sim {
            waves,
            statuses: BTreeMap::new(),
            releases: vec![],
            order: HashMap::new(),
            policy,
            approvals: vec![],
            dependencies: vec![],
        };
        sim.release("r0", "h0", t(0));
        for c in sim.clusters() {
            sim.report(&c, "r0", Phase::Healthy, t(0));
        }
        sim
    }

    fn clusters(&self) -> Vec<String> {
        self.waves.iter().flatten().cloned().collect()
    }

    /// A new commit `sha` rendering `hash` on every cluster.
    fn release(&mut self, sha: &str, hash: &str, time: SystemTime) {
        self.order.insert(sha.to_string(), self.order.len());
        let hashes = self
            .clusters()
            .into_iter()
            .map(|c| (c, hash.to_string()))
            .collect();
        self.releases.insert(
            0,
            Release {
                sha: sha.into(),
                time,
                hashes,
            },
        );
    }

    fn hash_of(&self, sha: &str) -> String {
        self.releases
            .iter()
            .find(|r| r.sha == sha)
            .unwrap()
            .hashes
            .values()
            .next()
            .unwrap()
            .clone()
    }

    /// The agent of `cluster` reports `phase` at `release` from `at`; heartbeats refresh.
    fn report(&mut self, cluster: &str, release: &str, phase: Phase, at: SystemTime) {
        let hash = self.hash_of(release);
        let s = self
            .statuses
            .entry(cluster.to_string())
            .or_insert_with(|| ClusterStatus {
                notified: Default::default(),
                cluster: cluster.into(),
                agent: "test".into(),
                heartbeat: ts(at),
                interval: 60,
                apps: BTreeMap::new(),
            });
        s.heartbeat = ts(at);
        let new = AppStatus {
            release: release.into(),
            hash: hash.clone(),
            phase,
            since: ts(at),
            message: String::new(),
            known_good: vec![],
            poisoned: vec![],
            history: vec![],
            analysis: Default::default(),
            verified: None,
        };
        let entry = s.apps.entry("web".into()).or_insert(new.clone());
        if entry.release != release || entry.phase != phase {
            let old = std::mem::replace(entry, new);
            entry.history = old.history.clone();
            entry.history.insert(
                0,
                HistoryEntry {
                    release: old.release,
                    hash: old.hash,
                    phase: old.phase,
                    since: old.since,
                    until: ts(at),
                    verified: old.verified,
                },
            );
            entry.history.truncate(20);
            entry.known_good = old.known_good;
            entry.poisoned = old.poisoned;
        }
        if phase == Phase::Healthy && !entry.known_good.contains(&hash) {
            entry.known_good.push(hash.clone());
        }
        if phase == Phase::Degraded && !entry.poisoned.contains(&hash) {
            entry.poisoned.push(hash);
        }
    }

    fn heartbeat_all(&mut self, at: SystemTime) {
        for s in self.statuses.values_mut() {
            s.heartbeat = ts(at);
        }
    }

    fn plan(&self, now: SystemTime) -> rollwave::plan::AppPlan {
        plan_app(&PlanInput {
            app: "web",
            policy: &self.policy,
            waves: &self.waves,
            releases: &self.releases,
            order: &self.order,
            statuses: &self.statuses,
            approvals: &self.approvals,
            dependencies: &self.dependencies,
            now,
        })
    }

    fn target(&self, cluster: &str, now: SystemTime) -> String {
        self.plan(now).decisions[cluster]
            .target
            .clone()
            .unwrap_or_default()
    }

    /// Every agent applies its target: Progressing now, Healthy a minute later.
    fn step(&mut self, now: SystemTime) {
        self.heartbeat_all(now);
        let plan = self.plan(now);
        for (cluster, d) in &plan.decisions {
            let current = self.statuses[cluster].apps["web"].release.clone();
            if let Some(target) = &d.target
                && *target != current
            {
                self.report(cluster, target, Phase::Progressing, now);
                self.report(cluster, target, Phase::Healthy, now + MIN);
            }
        }
        self.heartbeat_all(now + MIN);
    }
}

fn policy(bake_min: u64) -> RolloutSpec {
    RolloutSpec {
        bake: MIN * bake_min as u32,
        batches: vec![1, 2, 7],
        ..RolloutSpec::default()
    }
}

#[test]
fn a_release_moves_wave_by_wave_and_never_early() {
    let mut sim = Sim::new(policy(10));
    sim.release("r1", "h1", t(100));
    sim.heartbeat_all(t(100));
    // Only the canary takes it at first.
    assert_eq!(sim.target("canary", t(100)), "r1");
    assert_eq!(sim.target("p1", t(100)), "r0");
    sim.step(t(100)); // canary Healthy at t(101)
    sim.heartbeat_all(t(110));
    assert_eq!(
        sim.target("p1", t(110)),
        "r0",
        "bake not complete one minute early"
    );
    match &sim.plan(t(110)).pending[0].waves[1] {
        GateState::WaitingForBake { cluster, until } => {
            assert_eq!(cluster, "canary");
            assert_eq!(until.as_deref(), Some(ts(t(111)).as_str()));
        }
        other => panic!("{other:?}"),
    }
    sim.heartbeat_all(t(111));
    assert_eq!(sim.target("p1", t(111)), "r1");
    assert_eq!(sim.target("p2", t(111)), "r0");
    sim.step(t(111)); // p1 Healthy at t(112)
    sim.heartbeat_all(t(121));
    assert_eq!(sim.target("p2", t(121)), "r0");
    sim.heartbeat_all(t(122));
    assert_eq!(sim.target("p2", t(122)), "r1");
    assert_eq!(sim.target("p4", t(122)), "r0");
    sim.step(t(122));
    sim.heartbeat_all(t(133));
    assert_eq!(sim.target("p10", t(133)), "r1");
}

#[test]
fn a_degraded_canary_halts_every_later_wave() {
    let mut sim = Sim::new(policy(5));
    sim.release("r1", "h1", t(100));
    sim.report("canary", "r1", Phase::Progressing, t(100));
    sim.report("canary", "r1", Phase::Degraded, t(110));
    sim.heartbeat_all(t(500));
    let plan = sim.plan(t(500));
    assert_eq!(plan.decisions["p1"].target.as_deref(), Some("r0"));
    assert_eq!(
        plan.decisions["canary"].reason,
        Reason::Current,
        "halt leaves the canary as it is"
    );
    assert_eq!(
        plan.pending[0].waves[1],
        GateState::Degraded {
            cluster: "canary".into()
        }
    );
}

#[test]
fn a_silent_earlier_cluster_blocks_as_unknown() {
    let mut sim = Sim::new(policy(5));
    sim.release("r1", "h1", t(100));
    sim.heartbeat_all(t(100));
    sim.step(t(100));
    // The canary's agent stops reporting; everyone else keeps beating.
    for (name, s) in sim.statuses.iter_mut() {
        if name != "canary" {
            s.heartbeat = ts(t(200));
        }
    }
    let plan = sim.plan(t(200));
    assert_eq!(plan.decisions["p1"].target.as_deref(), Some("r0"));
    assert_eq!(
        plan.pending[0].waves[1],
        GateState::Unknown {
            cluster: "canary".into()
        }
    );
}

#[test]
fn manual_gates_open_with_approvals_wave_by_wave() {
    let mut sim = Sim::new(RolloutSpec {
        gate: Gate::Manual,
        ..policy(5)
    });
    let sha = "1234567890abcdef1234567890abcdef12345678";
    sim.release(sha, "h1", t(100));
    sim.heartbeat_all(t(100));
    assert_eq!(sim.target("canary", t(100)), sha);
    assert_eq!(sim.target("p1", t(100)), "r0");
    assert_eq!(
        sim.plan(t(100)).pending[0].waves[1],
        GateState::WaitingForApproval
    );
    sim.approvals.push(Approval {
        release: sha[..7].into(),
        through_wave: 2,
    });
    assert_eq!(sim.target("p1", t(100)), sha);
    assert_eq!(sim.target("p2", t(100)), sha);
    assert_eq!(sim.target("p4", t(100)), "r0");
}

#[test]
fn time_gates_open_one_bake_after_the_previous_wave() {
    let mut sim = Sim::new(RolloutSpec {
        gate: Gate::Time,
        ..policy(5)
    });
    sim.release("r1", "h1", t(100));
    sim.heartbeat_all(t(104));
    assert_eq!(sim.target("p1", t(104)), "r0");
    assert_eq!(sim.target("p1", t(105)), "r1");
    assert_eq!(sim.target("p2", t(109)), "r0");
    assert_eq!(sim.target("p2", t(110)), "r1");
    assert_eq!(sim.target("p4", t(115)), "r1");
}

#[test]
fn a_revert_reaches_every_cluster_at_once_without_gates() {
    let mut sim = Sim::new(policy(10));
    sim.release("r1", "h1", t(100));
    sim.heartbeat_all(t(100));
    for step in 0..6 {
        sim.step(t(100 + step * 12));
    }
    sim.heartbeat_all(t(200));
    assert!(sim.clusters().iter().all(|c| sim.target(c, t(200)) == "r1"));
    // Bad commit: degraded on the canary.
    sim.release("bad", "h2", t(300));
    sim.report("canary", "bad", Phase::Progressing, t(300));
    sim.report("canary", "bad", Phase::Degraded, t(305));
    sim.heartbeat_all(t(306));
    assert_eq!(sim.target("p1", t(306)), "r1");
    // `git revert` renders h1 again.
    sim.release("revert", "h1", t(307));
    sim.heartbeat_all(t(307));
    let plan = sim.plan(t(307));
    assert_eq!(plan.decisions["canary"].target.as_deref(), Some("revert"));
    assert_eq!(plan.decisions["canary"].reason, Reason::Revert);
    for c in sim.clusters().iter().filter(|c| *c != "canary") {
        assert_eq!(plan.decisions[c].target.as_deref(), Some("revert"), "{c}");
        assert_eq!(plan.decisions[c].reason, Reason::NoOp, "{c}");
    }
}

#[test]
fn a_paused_app_takes_no_new_release_anywhere_but_a_revert_goes_through() {
    let mut paused = policy(10);
    paused.paused = Some("incident 4711".into());
    let mut sim = Sim::new(policy(10));
    sim.release("r1", "h1", t(100));
    sim.heartbeat_all(t(100));
    for step in 0..6 {
        sim.step(t(100 + step * 12));
    }
    sim.heartbeat_all(t(200));
    // A bad release reaches the canary, then the app is paused (a reviewed commit).
    sim.release("bad", "h2", t(300));
    sim.report("canary", "bad", Phase::Progressing, t(300));
    sim.report("canary", "bad", Phase::Healthy, t(301));
    sim.policy = paused;
    sim.release("r3", "h3", t(302));
    sim.heartbeat_all(t(400));
    let plan = sim.plan(t(400));
    // Every cluster keeps what it runs, long after every bake would have ended.
    assert_eq!(plan.decisions["canary"].target.as_deref(), Some("bad"));
    assert_eq!(plan.decisions["canary"].reason, Reason::Current);
    for c in sim.clusters().iter().filter(|c| *c != "canary") {
        assert_eq!(plan.decisions[c].target.as_deref(), Some("r1"), "{c}");
    }
    for gate in &plan.pending[0].waves {
        assert_eq!(
            gate,
            &GateState::Paused {
                reason: "incident 4711".into()
            }
        );
    }
    assert!(
        rollwave::plan::describe_gate(&plan.pending[0].waves[0])
            .starts_with("paused: incident 4711")
    );
    // `git revert` of the bad release renders h1 again: it goes through the pause.
    sim.release("revert", "h1", t(401));
    sim.heartbeat_all(t(401));
    let plan = sim.plan(t(401));
    assert_eq!(plan.decisions["canary"].target.as_deref(), Some("revert"));
    assert_eq!(plan.decisions["canary"].reason, Reason::Revert);
}

#[test]
fn a_freeze_holds_the_waves_in_its_scope_until_it_ends_and_lets_a_revert_through() {
    let mut sim = Sim::new(policy(10));
    let later: std::collections::BTreeSet<String> = sim
        .clusters()
        .into_iter()
        .filter(|c| c != "canary")
        .collect();
    let mut frozen = policy(10);
    frozen.freeze = Some(rollwave::fleet::FreezeScope {
        reason: "holiday freeze (alice)".into(),
        until: Some(t(500)),
        clusters: Some(later),
    });
    sim.policy = frozen;
    sim.release("r1", "h1", t(100));
    sim.heartbeat_all(t(100));
    // The canary is outside the freeze's scope: it takes r1 and bakes.
    assert_eq!(sim.target("canary", t(100)), "r1");
    sim.step(t(100));
    sim.heartbeat_all(t(200));
    assert_eq!(sim.target("p1", t(200)), "r0", "frozen long after the bake");
    let plan = sim.plan(t(200));
    assert_eq!(plan.pending[0].waves[0], GateState::Open);
    for gate in &plan.pending[0].waves[1..] {
        assert_eq!(
            gate,
            &GateState::Frozen {
                reason: "holiday freeze (alice)".into(),
                until: Some(ts(t(500)))
            }
        );
    }
    // A revert to what p1 ran Healthy goes through the freeze.
    sim.release("revert", "h0", t(201));
    sim.heartbeat_all(t(201));
    let plan = sim.plan(t(201));
    assert_eq!(plan.decisions["canary"].target.as_deref(), Some("revert"));
    assert_eq!(plan.decisions["canary"].reason, Reason::Revert);
    assert_eq!(plan.decisions["p1"].reason, Reason::NoOp);
    // After `until`, the freeze is over: the next release moves on as usual.
    sim.release("r2", "h2", t(600));
    sim.heartbeat_all(t(600));
    sim.step(t(600));
    sim.heartbeat_all(t(700));
    assert_eq!(sim.target("p1", t(700)), "r2");
}

/// The Sim's clusters, all of stage prod, for scoping windows.
fn prod_clusters(sim: &Sim) -> Vec<rollwave::fleet::Cluster> {
    sim.clusters()
        .into_iter()
        .map(|name| rollwave::fleet::Cluster {
            name,
            stage: "prod".into(),
            labels: Default::default(),
            values: Default::default(),
            kube_version: None,
        })
        .collect()
}

/// A policy of bake 10 minutes under the `windows:` of `yaml` (t(0) is 08:00 UTC).
fn with_windows(sim: &Sim, yaml: &str) -> RolloutSpec {
    let windows = rollwave::fleet::windows::parse("fleet.yaml", yaml, &["prod".into()]).unwrap();
    RolloutSpec {
        windows: rollwave::fleet::windows::AppWindows::scoped(
            &windows,
            &[],
            "web",
            &prod_clusters(sim),
        ),
        ..policy(10)
    }
}

/// A release r1 that reaches the canary and p1 before 09:00 and p2 of wave 2 at 08:58.
fn up_to_wave_2_before_nine(sim: &mut Sim) {
    assert_eq!(ts(t(0)), "2027-01-15T08:00:00Z");
    sim.release("r1", "h1", t(30));
    sim.step(t(30));
    sim.step(t(45));
    assert_eq!(sim.statuses["p1"].apps["web"].release, "r1");
    sim.heartbeat_all(t(58));
    assert_eq!(sim.target("p2", t(58)), "r1");
    sim.report("p2", "r1", Phase::Progressing, t(58));
}

#[test]
fn a_deny_window_holds_new_waves_lets_a_wave_under_way_finish_and_a_revert_through() {
    let mut sim = Sim::new(policy(10));
    sim.policy = with_windows(
        &sim,
        "windows:\n- deny: {schedule: '0 9 * * *', duration: 2h, timeZone: UTC}\n",
    );
    up_to_wave_2_before_nine(&mut sim);
    sim.heartbeat_all(t(61));
    let plan = sim.plan(t(61));
    // p3 is in the wave p2 started before 09:00: the wave finishes.
    assert_eq!(plan.decisions["p3"].target.as_deref(), Some("r1"));
    // The next wave waits for the window to end at 11:00.
    assert_eq!(plan.decisions["p4"].target.as_deref(), Some("r0"));
    let GateState::OutsideWindow { window, opens } = &plan.pending[0].waves[3] else {
        panic!("wave 3: {:?}", plan.pending[0].waves[3]);
    };
    assert!(
        window.contains("inside the deny window '0 9 * * *'"),
        "{window}"
    );
    assert_eq!(opens.as_deref(), Some("2027-01-15T11:00:00Z"));
    // A later release does not open a wave inside the window, not even wave 0.
    sim.release("r2", "h2", t(62));
    sim.heartbeat_all(t(62));
    assert_eq!(sim.target("canary", t(62)), "r1");
    // A revert to what the clusters ran Healthy goes through the window.
    sim.release("revert", "h0", t(63));
    sim.heartbeat_all(t(63));
    let plan = sim.plan(t(63));
    assert_eq!(plan.decisions["canary"].reason, Reason::Revert);
    assert_eq!(plan.decisions["canary"].target.as_deref(), Some("revert"));
    assert_eq!(plan.decisions["p4"].reason, Reason::NoOp);
}

#[test]
fn block_reverts_holds_a_revert_until_the_window_ends() {
    let mut sim = Sim::new(policy(10));
    sim.policy = with_windows(
        &sim,
        "windows:\n- deny: {schedule: '0 9 * * *', duration: 2h}\n  blockReverts: true\n",
    );
    up_to_wave_2_before_nine(&mut sim);
    sim.release("revert", "h0", t(63));
    sim.heartbeat_all(t(63));
    let plan = sim.plan(t(63));
    assert_eq!(plan.decisions["canary"].target.as_deref(), Some("r1"));
    assert_eq!(plan.decisions["canary"].reason, Reason::Current);
    sim.heartbeat_all(t(180));
    assert_eq!(sim.plan(t(180)).decisions["canary"].reason, Reason::Revert);
}

#[test]
fn an_allow_window_opens_waves_only_inside_it() {
    let mut sim = Sim::new(policy(10));
    // Nights only: 22:00 to 04:00 UTC; t(0) is 08:00.
    sim.policy = with_windows(
        &sim,
        "windows:\n- allow: {schedule: '0 22 * * *', duration: 6h}\n",
    );
    sim.release("r1", "h1", t(30));
    sim.heartbeat_all(t(30));
    let plan = sim.plan(t(30));
    assert_eq!(plan.decisions["canary"].target.as_deref(), Some("r0"));
    assert_eq!(
        plan.pending[0].waves[0],
        GateState::OutsideWindow {
            window: "outside the allow window '0 22 * * *' for 6h (UTC) at fleet.yaml:2".into(),
            opens: Some("2027-01-15T22:00:00Z".into()),
        }
    );
    // 14 hours later the night window is open and the canary takes it.
    sim.heartbeat_all(t(14 * 60));
    assert_eq!(sim.target("canary", t(14 * 60)), "r1");
}

#[test]
fn a_dependency_holds_each_cluster_until_it_is_healthy_there_and_a_revert_goes_first() {
    let mut sim = Sim::new(policy(0));
    // The platform app is still Progressing on both clusters of wave 2.
    let not_ready = ["p2", "p3"]
        .into_iter()
        .map(|c| (c.to_string(), "is Progressing".to_string()))
        .collect();
    sim.dependencies = vec![DependencyReadiness {
        app: "platform".into(),
        not_ready,
        everywhere: None,
    }];
    sim.release("r1", "h1", t(30));
    sim.step(t(30));
    sim.step(t(32));
    let plan = sim.plan(t(34));
    assert_eq!(plan.decisions["p1"].target.as_deref(), Some("r1"));
    assert_eq!(plan.decisions["p2"].target.as_deref(), Some("r0"));
    assert_eq!(
        plan.pending[0].waves[2],
        GateState::WaitingForDependency {
            app: "platform".into(),
            cluster: "p2".into(),
            detail: "is Progressing".into(),
        }
    );
    // A revert is not held by the dependency.
    sim.release("revert", "h0", t(35));
    sim.heartbeat_all(t(35));
    assert_eq!(sim.plan(t(35)).decisions["canary"].reason, Reason::Revert);
    // Once platform is ready everywhere, the next release goes through every wave.
    sim.dependencies[0].not_ready.clear();
    sim.release("r2", "h2", t(40));
    for minute in [40, 42, 44, 46, 48] {
        sim.step(t(minute));
    }
    assert_eq!(sim.target("p10", t(50)), "r2");
}

#[test]
fn a_dependency_is_ready_where_it_is_healthy_at_the_release_its_plan_wants() {
    let mut platform = Sim::new(policy(0));
    platform.release("r1", "h1", t(30));
    platform.step(t(30));
    // The canary runs r1 Healthy; p1 has r1 planned but still runs r0.
    let plan = platform.plan(t(31));
    assert_eq!(plan.decisions["p1"].target.as_deref(), Some("r1"));
    // Statuses are keyed by the app "web" in the Sim: read them as that app's.
    let ready = dependency_readiness("web", &plan, &platform.statuses);
    assert!(!ready.holds("canary"));
    assert_eq!(
        ready.not_ready.get("p1").map(String::as_str),
        Some("is Healthy at r0, the plan wants r1")
    );
    // Degraded at the wanted release is not ready either.
    platform.report("canary", "r1", Phase::Degraded, t(32));
    platform.heartbeat_all(t(32));
    let plan = platform.plan(t(32));
    let ready = dependency_readiness("web", &plan, &platform.statuses);
    assert!(ready.holds("canary"), "{:?}", ready.not_ready);
}

#[test]
fn a_stream_of_commits_does_not_starve_later_waves() {
    let mut sim = Sim::new(policy(5));
    for minute in 0..60u64 {
        let now = t(100 + minute);
        sim.release(&format!("c{minute}"), &format!("h{minute}"), now);
        sim.heartbeat_all(now);
        sim.step(now);
    }
    let last_wave = sim.statuses["p10"].apps["web"].release.clone();
    assert_ne!(last_wave, "r0", "the last wave received a release");
    assert!(sim.order[&last_wave] > 1);
}

#[test]
fn a_poisoned_rendering_stops_at_wave_0() {
    let mut sim = Sim::new(policy(5));
    sim.release("bad", "h2", t(100));
    sim.report("canary", "bad", Phase::Degraded, t(101));
    sim.release("revert", "h0", t(102));
    sim.step(t(102));
    sim.heartbeat_all(t(200));
    // The same bad rendering comes back in a new commit.
    sim.release("again", "h2", t(200));
    sim.heartbeat_all(t(300));
    let plan = sim.plan(t(300));
    assert_eq!(
        plan.decisions["canary"].target.as_deref(),
        Some("again"),
        "wave 0 may retry it"
    );
    assert_ne!(plan.decisions["p1"].target.as_deref(), Some("again"));
}

#[test]
fn rollback_reapplies_the_last_known_good_rendering() {
    let mut sim = Sim::new(RolloutSpec {
        on_failure: OnFailure::Rollback,
        ..policy(5)
    });
    sim.release("bad", "h2", t(100));
    sim.report("canary", "bad", Phase::Degraded, t(101));
    sim.heartbeat_all(t(102));
    let d = &sim.plan(t(102)).decisions["canary"];
    assert_eq!(d.reason, Reason::Rollback);
    assert_eq!(
        d.target.as_deref(),
        Some("bad"),
        "the repository still says bad"
    );
    assert_eq!(d.rollback_to.as_deref(), Some("r0"));
}

fn with_analysis(bake_min: u64) -> RolloutSpec {
    let mut p = policy(bake_min);
    p.analysis.metrics = vec![rollwave::fleet::MetricSpec {
        name: "error-ratio".into(),
        query: "q".into(),
        min: None,
        max: Some(0.01),
        source: "fleet.yaml:9".into(),
    }];
    p
}

#[test]
fn with_analysis_a_bake_completes_only_when_the_cluster_says_its_analysis_did() {
    let mut sim = Sim::new(with_analysis(5));
    sim.release("r1", "h1", t(100));
    sim.step(t(100)); // canary Healthy at t(101)
    sim.heartbeat_all(t(110));
    let plan = sim.plan(t(110));
    assert_eq!(
        plan.pending[0].waves[1],
        GateState::WaitingForAnalysis {
            cluster: "canary".into(),
            measurements: "error-ratio not measured yet".into()
        },
        "the bake time is over, the analysis is not"
    );
    assert_eq!(plan.decisions["p1"].target.as_deref(), Some("r0"));
    let web = sim
        .statuses
        .get_mut("canary")
        .unwrap()
        .apps
        .get_mut("web")
        .unwrap();
    web.verified = Some(ts(t(107)));
    assert_eq!(sim.target("p1", t(110)), "r1");
    // Moving on to a newer release keeps the completed analysis (no starvation).
    sim.release("r2", "h2", t(111));
    sim.report("canary", "r2", Phase::Progressing, t(111));
    sim.heartbeat_all(t(112));
    assert_eq!(sim.target("p1", t(112)), "r1");
}

#[test]
fn inconclusive_closes_the_gate_without_rollback_and_an_approval_opens_it() {
    let mut sim = Sim::new(RolloutSpec {
        on_failure: OnFailure::Rollback,
        ..with_analysis(5)
    });
    sim.release("r1", "h1", t(100));
    sim.report("canary", "r1", Phase::Healthy, t(101));
    sim.report("canary", "r1", Phase::Inconclusive, t(102));
    sim.statuses
        .get_mut("canary")
        .unwrap()
        .apps
        .get_mut("web")
        .unwrap()
        .message = "analysis error-ratio: 4 consecutive query errors".into();
    sim.heartbeat_all(t(200));
    let plan = sim.plan(t(200));
    assert_eq!(
        plan.pending[0].waves[1],
        GateState::Inconclusive {
            cluster: "canary".into(),
            message: "analysis error-ratio: 4 consecutive query errors".into()
        }
    );
    assert_eq!(plan.decisions["p1"].target.as_deref(), Some("r0"));
    assert_eq!(
        plan.decisions["canary"].reason,
        Reason::Current,
        "Inconclusive never rolls back"
    );
    sim.approvals.push(Approval {
        release: "r1".repeat(4),
        through_wave: 1,
    });
    sim.releases[0].sha = "r1r1r1r1".into();
    sim.order.insert("r1r1r1r1".into(), sim.order["r1"]);
    let plan = sim.plan(t(200));
    assert_eq!(plan.decisions["p1"].target.as_deref(), Some("r1r1r1r1"));
    assert_ne!(
        plan.decisions["p2"].target.as_deref(),
        Some("r1r1r1r1"),
        "approved through wave 1 only"
    );
}

#[test]
fn a_rolled_back_cluster_does_not_take_the_failed_release_again() {
    let mut sim = Sim::new(RolloutSpec {
        on_failure: OnFailure::Rollback,
        ..policy(5)
    });
    sim.release("bad", "h2", t(100));
    sim.report("canary", "bad", Phase::Degraded, t(101));
    // The agent re-applied r0's rendering: its status says r0, RolledBack.
    sim.report("canary", "r0", Phase::RolledBack, t(102));
    sim.heartbeat_all(t(103));
    let d = &sim.plan(t(103)).decisions["canary"];
    assert_eq!(d.target.as_deref(), Some("r0"), "{d:?}");
    assert_eq!(
        (d.reason, d.rollback_to.as_deref()),
        (Reason::Rollback, Some("r0")),
        "still rolled back: reported RolledBack, not a fresh release"
    );
    // The revert renders what it runs: taken at once.
    sim.release("revert", "h0", t(104));
    assert_eq!(sim.target("canary", t(104)), "revert");
}

mod waves {
    use proptest::prelude::*;
    use rollwave::fleet::{App, Cluster, Fleet, FleetSettings, Removal, RolloutSpec, Targets};
    use rollwave::plan::waves_for;

    fn cluster(name: &str, stage: &str) -> Cluster {
        Cluster {
            name: name.into(),
            stage: stage.into(),
            labels: Default::default(),
            values: Default::default(),
            kube_version: None,
        }
    }

    fn fleet(clusters: Vec<Cluster>) -> (Fleet, App) {
        let settings = FleetSettings {
            stages: vec!["test".into(), "pre".into(), "prod".into()],
            rollout: RolloutSpec::default(),
            removal: Removal::Orphan,
            values: Default::default(),
            tenancy: None,
            status_store: Default::default(),
            owners: vec![],
            health: vec![],
            freeze: None,
            windows: vec![],
        };
        let mut rollout = RolloutSpec {
            batches: vec![1, 2, 7],
            ..RolloutSpec::default()
        };
        rollout.canary = vec![rollwave::fleet::NameAt {
            value: "test-0".into(),
            line: 1,
        }];
        let app = App {
            name: "web".into(),
            namespace: None,
            targets: Targets {
                stages: vec!["test".into(), "pre".into(), "prod".into()],
                ..Targets::default()
            },
            overlays: vec![],
            values: Default::default(),
            rollout,
            removal: Removal::Orphan,
            removal_in_app: None,
            allow_empty: false,
            suspend: false,
            force: false,
            helm: None,
            policy: None,
            owners: vec![],
            depends_on: vec![],
        };
        (Fleet::new(settings, clusters, vec![app.clone()]), app)
    }

    fn example_clusters() -> Vec<Cluster> {
        let mut v = vec![
            cluster("test-0", "test"),
            cluster("test-1", "test"),
            cluster("pre-0", "pre"),
            cluster("pre-1", "pre"),
        ];
        v.extend((0..10).map(|i| cluster(&format!("prod-{i}"), "prod")));
        v
    }

    #[test]
    fn canary_goes_first_and_is_removed_from_its_stage() {
        let (f, app) = fleet(example_clusters());
        let waves = waves_for(&f, &app);
        assert_eq!(waves[0], vec!["test-0"]);
        assert_eq!(waves[1], vec!["test-1"]);
        assert_eq!(waves.iter().flatten().filter(|c| *c == "test-0").count(), 1);
        let sizes: Vec<usize> = waves.iter().map(Vec::len).collect();
        assert_eq!(sizes, vec![1, 1, 1, 1, 1, 2, 7]);
    }

    proptest! {
        #[test]
        fn waves_do_not_depend_on_the_order_clusters_are_listed(shuffled in Just(example_clusters()).prop_shuffle()) {
            let (a, app) = fleet(example_clusters());
            let (b, _) = fleet(shuffled);
            prop_assert_eq!(waves_for(&a, &app), waves_for(&b, &app));
        }
    }
}
