//! The planner never panics, whatever the repository says (within what the model
//! accepts) and whatever peers wrote in their statuses: random fleet.yaml text goes
//! through the real loader, random statuses (absurd times, intervals and phases)
//! through the real planner.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, SystemTime};

use proptest::prelude::*;
use rollwave::plan::{Approval, PlanInput, Reason, Release, plan_app, waves_for};
use rollwave::status::{AppStatus, ClusterStatus, HistoryEntry, Phase};
use rollwave::tree::MemTree;

fn ratio() -> impl Strategy<Value = String> {
    prop_oneof![
        20 => (1u64..12).prop_map(|n| n.to_string()),
        1 => (0u64..2000).prop_map(|n| n.to_string()),
        1 => any::<u64>().prop_map(|n| n.to_string()),
        1 => Just("18446744073709551615".to_string()),
        1 => Just("100000000000000000000000000000".to_string()),
        1 => Just("-1".to_string()),
        1 => Just("1.5".to_string()),
    ]
}

fn duration() -> impl Strategy<Value = String> {
    prop_oneof![
        10 => (1u64..100).prop_map(|n| format!("{n}s")),
        10 => (1u64..20_000).prop_map(|n| format!("{n}m")),
        1 => any::<u64>().prop_map(|n| format!("{n}s")),
        1 => any::<u64>().prop_map(|n| format!("{n}d")),
        1 => Just("1h30m".to_string()),
        1 => Just("0s".to_string()),
    ]
}

fn fleet_yaml() -> impl Strategy<Value = String> {
    (
        prop::collection::vec(ratio(), 1..6),
        duration(),
        duration(),
        prop::collection::vec(0usize..8, 0..4),
        prop_oneof![Just("health"), Just("manual"), Just("time")],
        prop_oneof![Just("halt"), Just("rollback")],
    )
        .prop_map(|(batches, bake, deadline, canary, gate, on_failure)| {
            let canary: Vec<String> = canary.iter().map(|i| format!("c-{i}")).collect();
            format!(
                "stages: [test, pre, prod]\nrollout:\n  canary: [{}]\n  batches: [{}]\n  bake: {bake}\n  progressDeadline: {deadline}\n  gate: {gate}\n  onFailure: {on_failure}\n",
                canary.join(", "),
                batches.join(", ")
            )
        })
}

fn time_text() -> impl Strategy<Value = String> {
    prop_oneof![
        (0u64..4_000_000_000).prop_map(|s| {
            humantime::format_rfc3339_seconds(SystemTime::UNIX_EPOCH + Duration::from_secs(s))
                .to_string()
        }),
        Just("9999-12-31T23:59:59Z".to_string()),
        Just("0001-01-01T00:00:00Z".to_string()),
        Just("not a time".to_string()),
        Just(String::new()),
    ]
}

fn phase() -> impl Strategy<Value = Phase> {
    prop_oneof![
        Just(Phase::Progressing),
        Just(Phase::Healthy),
        Just(Phase::Degraded),
        Just(Phase::RolledBack),
        Just(Phase::Suspended),
        Just(Phase::Error),
    ]
}

fn release_name() -> impl Strategy<Value = String> {
    prop_oneof![
        (0usize..4).prop_map(|i| format!("r{i}")),
        Just("unknown".to_string())
    ]
}

fn app_status() -> impl Strategy<Value = AppStatus> {
    (
        release_name(),
        (0usize..4).prop_map(|i| format!("h{i}")),
        phase(),
        time_text(),
        prop::collection::vec((release_name(), phase(), time_text(), time_text()), 0..4),
    )
        .prop_map(|(release, hash, phase, since, history)| AppStatus {
            release,
            hash: hash.clone(),
            phase,
            since,
            message: String::new(),
            known_good: vec![hash],
            poisoned: vec!["h3".into()],
            history: history
                .into_iter()
                .map(|(release, phase, since, until)| HistoryEntry {
                    release,
                    hash: "h1".into(),
                    phase,
                    since,
                    until,
                    verified: None,
                })
                .collect(),
            analysis: Default::default(),
            verified: None,
        })
}

fn cluster_status() -> impl Strategy<Value = (String, u64, AppStatus)> {
    (
        time_text(),
        prop_oneof![Just(0u64), Just(60), any::<u64>()],
        app_status(),
    )
}

fn at(s: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(s)
}

/// Releases r0..r3 (newest first) made at `times`, rendering h0, h1, h2, h0 on the
/// clusters c-0..c-7, and their order.
fn releases_at(times: &[u64]) -> (Vec<Release>, HashMap<String, usize>) {
    let releases = (0..4)
        .rev()
        .map(|i| Release {
            sha: format!("r{i}"),
            time: at(times[i]),
            hashes: (0..8)
                .map(|c| (format!("c-{c}"), format!("h{}", i % 3)))
                .collect(),
        })
        .collect();
    (releases, (0..4).map(|i| (format!("r{i}"), i)).collect())
}

/// The statuses of clusters c-0.. in order, with the app `web`.
fn statuses_of(statuses: Vec<(String, u64, AppStatus)>) -> BTreeMap<String, ClusterStatus> {
    statuses
        .into_iter()
        .enumerate()
        .map(|(i, (heartbeat, interval, app))| {
            let name = format!("c-{i}");
            let status = ClusterStatus {
                notified: Default::default(),
                cluster: name.clone(),
                agent: "0.1.0".into(),
                heartbeat,
                interval,
                apps: [("web".to_string(), app)].into(),
            };
            (name, status)
        })
        .collect()
}

/// A fleet.yaml of bake 0 with one to three change windows of any kind, zone and scope.
fn windows_yaml() -> impl Strategy<Value = String> {
    let window = (
        prop_oneof![Just("allow"), Just("deny")],
        prop_oneof![
            Just("0 * * * *"),
            Just("*/15 * * * *"),
            Just("0 22 * * 1-4"),
            Just("30 2 * * *"),
            Just("0 0 1 * *"),
            Just("0 9 * * 1-5"),
            Just("0 0 20 12 *"),
        ],
        prop_oneof![Just("1m"), Just("20m"), Just("6h"), Just("48h"), Just("408h")],
        prop_oneof![
            Just("UTC"),
            Just("Europe/Berlin"),
            Just("Asia/Shanghai"),
            Just("America/New_York"),
            Just("Australia/Lord_Howe"),
        ],
        prop_oneof![
            Just(""),
            Just("\n  stages: [prod]"),
            Just("\n  stages: [test, pre]"),
            Just("\n  selector: {half: a}"),
        ],
        any::<bool>(),
    )
        .prop_map(|(kind, schedule, duration, zone, scope, block)| {
            format!(
                "- {kind}: {{schedule: '{schedule}', duration: {duration}, timeZone: {zone}}}{scope}\n  blockReverts: {block}\n"
            )
        });
    prop::collection::vec(window, 1..4).prop_map(|w| {
        format!(
            "stages: [test, pre, prod]\nrollout:\n  batches: [1, 1]\n  bake: 0s\nwindows:\n{}",
            w.concat()
        )
    })
}

/// A status of `app` at `now` with a heartbeat at `now`, Healthy before at any of
/// the renderings (so reverts happen).
fn fresh_status(now: u64) -> impl Strategy<Value = (String, u64, AppStatus)> {
    (
        app_status(),
        0u64..86_400,
        prop::collection::vec(0usize..3, 0..3),
    )
        .prop_map(move |(mut app, age, good)| {
            app.known_good.extend(good.iter().map(|g| format!("h{g}")));
            app.since = humantime::format_rfc3339_seconds(at(now - age)).to_string();
            for h in &mut app.history {
                h.since = humantime::format_rfc3339_seconds(at(now - age - 60)).to_string();
            }
            let heartbeat = humantime::format_rfc3339_seconds(at(now)).to_string();
            (heartbeat, 60, app)
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// No wave opens for a new release on a cluster that change windows hold (unless a
    /// cluster of its wave already runs it: the wave finishes), and a revert the plan
    /// would make without windows is made with them unless a window says blockReverts.
    #[test]
    fn no_wave_opens_outside_its_windows_and_reverts_go_through_unless_blocked(
        (fleet_text, now, statuses) in (windows_yaml(), 1_780_000_000u64..1_860_000_000)
            .prop_flat_map(|(f, now)| (Just(f), Just(now), prop::collection::vec(fresh_status(now), 8))),
        release_ages in prop::collection::vec(0u64..1_000_000, 4),
    ) {
        let mut tree = MemTree::new();
        tree.insert("fleet.yaml", fleet_text.as_str());
        let stages = ["test", "pre", "prod"];
        for i in 0..8 {
            // Half the clusters carry a label, so a window can hold part of a wave.
            let half = if i % 2 == 0 { "a" } else { "b" };
            tree.insert(
                &format!("clusters/c-{i}.yaml"),
                format!("name: c-{i}\nstage: {}\nlabels: {{half: {half}}}\n", stages[i % 3]),
            );
        }
        tree.insert("apps/web/app.yaml", "targets: {stages: [test, pre, prod]}\n");
        let fleet = rollwave::fleet::load(&tree).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let app = fleet.app("web").unwrap();
        let waves = waves_for(&fleet, app);
        let times: Vec<u64> = release_ages.iter().map(|a| now - a).collect();
        let (releases, order) = releases_at(&times);
        let statuses = statuses_of(statuses);
        let plan_with = |policy: &rollwave::fleet::RolloutSpec| {
            plan_app(&PlanInput {
                app: "web",
                policy,
                waves: &waves,
                releases: &releases,
                order: &order,
                statuses: &statuses,
                approvals: &[],
                dependencies: &[],
                now: at(now),
            })
        };
        let windowed = plan_with(&app.rollout);
        let mut open = app.rollout.clone();
        open.windows = Default::default();
        let unwindowed = plan_with(&open);
        let windows = app.rollout.windows.at(at(now));
        let runs = |cluster: &str| {
            statuses.get(cluster).and_then(|s| s.apps.get("web")).and_then(|a| order.get(&a.release).copied())
        };
        for (cluster, d) in &windowed.decisions {
            let closed = windows.closed(cluster);
            if d.reason == Reason::Rollout && let Some(closed) = &closed {
                let target = d.target.as_deref().and_then(|t| order.get(t).copied());
                let under_way = waves[d.wave].iter().any(|c| runs(c) >= target);
                prop_assert!(under_way, "{cluster} took {:?} {}", d.target, closed.why);
            }
            let before = &unwindowed.decisions[cluster];
            let blocked = closed.is_some_and(|c| c.blocks_reverts);
            if before.reason == Reason::Revert && !blocked {
                prop_assert_eq!(d, before, "a revert on {} was held", cluster);
            }
            if before.reason == Reason::Revert && blocked {
                prop_assert_ne!(d.reason, Reason::Revert);
            }
        }
    }

    #[test]
    fn the_planner_never_panics_on_a_fleet_the_model_accepts(
        fleet_text in fleet_yaml(),
        statuses in prop::collection::vec(cluster_status(), 8),
        release_times in prop::collection::vec(0u64..4_000_000_000, 4),
        now in 0u64..4_000_000_000,
        through_wave in any::<usize>(),
    ) {
        let mut tree = MemTree::new();
        tree.insert("fleet.yaml", fleet_text.as_str());
        let stages = ["test", "pre", "prod"];
        for i in 0..8 {
            tree.insert(
                &format!("clusters/c-{i}.yaml"),
                format!("name: c-{i}\nstage: {}\n", stages[i % 3]),
            );
        }
        tree.insert("apps/web/app.yaml", "targets: {stages: [test, pre, prod]}\n");
        // Generators favour valid values, so about a quarter of the cases load and
        // reach the planner; the rest exercise the loader's refusals.
        let Ok(fleet) = rollwave::fleet::load(&tree) else {
            return Ok(());
        };
        let app = fleet.app("web").unwrap();
        let waves = waves_for(&fleet, app);
        let clusters: usize = waves.iter().map(Vec::len).sum();
        prop_assert_eq!(clusters, 8, "every targeted cluster is in exactly one wave");
        let (releases, order) = releases_at(&release_times);
        let statuses = statuses_of(statuses);
        let approvals = [Approval { release: "r3".into(), through_wave }];
        let plan = plan_app(&PlanInput {
            app: "web",
            policy: &app.rollout,
            waves: &waves,
            releases: &releases,
            order: &order,
            statuses: &statuses,
            approvals: &approvals,
            dependencies: &[],
            now: at(now),
        });
        prop_assert_eq!(plan.decisions.len(), 8);
    }

    #[test]
    fn batch_sizes_always_cover_every_cluster(
        n in 0usize..5000,
        ratio in prop::collection::vec(any::<u64>(), 0..8),
    ) {
        let sizes = rollwave::plan::batch_sizes(n, &ratio);
        if n > 0 && ratio.iter().any(|r| *r > 0) {
            prop_assert_eq!(sizes.iter().sum::<usize>(), n);
            prop_assert!(sizes.iter().all(|s| *s > 0));
        } else {
            prop_assert!(sizes.is_empty());
        }
    }
}

/// Found by the property above: a peer Healthy since the last second of year 9999
/// made every agent's planner panic while formatting when its bake would end.
#[test]
fn a_peer_status_at_the_end_of_time_does_not_crash_the_planner() {
    let mut tree = MemTree::new();
    tree.insert(
        "fleet.yaml",
        "stages: [test, prod]\nrollout:\n  canary: [c-0]\n  bake: 10m\n",
    );
    tree.insert("clusters/c-0.yaml", "name: c-0\nstage: test\n");
    tree.insert("clusters/c-1.yaml", "name: c-1\nstage: prod\n");
    tree.insert("apps/web/app.yaml", "targets: {stages: [test, prod]}\n");
    let fleet = rollwave::fleet::load(&tree).unwrap();
    let app = fleet.app("web").unwrap();
    let waves = waves_for(&fleet, app);
    let end = "9999-12-31T23:59:59Z".to_string();
    let status = ClusterStatus {
        notified: Default::default(),
        cluster: "c-0".into(),
        agent: "0.1.0".into(),
        heartbeat: end.clone(),
        interval: 60,
        apps: [(
            "web".to_string(),
            AppStatus {
                release: "r1".into(),
                hash: "h1".into(),
                phase: Phase::Healthy,
                since: end.clone(),
                message: String::new(),
                known_good: vec![],
                poisoned: vec![],
                history: vec![],
                analysis: Default::default(),
                verified: None,
            },
        )]
        .into(),
    };
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(253_402_300_000);
    let release = |sha: &str, hash: &str| Release {
        sha: sha.into(),
        time: now,
        hashes: [
            ("c-0".to_string(), hash.to_string()),
            ("c-1".to_string(), hash.to_string()),
        ]
        .into(),
    };
    let releases = vec![release("r1", "h1"), release("r0", "h0")];
    let order: HashMap<String, usize> = [("r1".to_string(), 1), ("r0".to_string(), 0)].into();
    let mut behind = status.clone();
    behind.cluster = "c-1".into();
    behind.heartbeat = humantime::format_rfc3339_seconds(now).to_string();
    if let Some(web) = behind.apps.get_mut("web") {
        web.release = "r0".into();
        web.hash = "h0".into();
        web.since = behind.heartbeat.clone();
    }
    let plan = plan_app(&PlanInput {
        app: "web",
        policy: &app.rollout,
        waves: &waves,
        releases: &releases,
        order: &order,
        statuses: &[("c-0".to_string(), status), ("c-1".to_string(), behind)].into(),
        approvals: &[],
        dependencies: &[],
        now,
    });
    let gates = serde_json::to_string(&plan.pending).unwrap();
    assert!(gates.contains("9999-12-31T23:59:59Z"), "{gates}");
}
