//! The planner never panics, whatever the repository says (within what the model
//! accepts) and whatever peers wrote in their statuses: random fleet.yaml text goes
//! through the real loader, random statuses (absurd times, intervals and phases)
//! through the real planner.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, SystemTime};

use proptest::prelude::*;
use rollwave::plan::{Approval, PlanInput, Release, plan_app, waves_for};
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

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

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
        let at = |s: u64| SystemTime::UNIX_EPOCH + Duration::from_secs(s);
        let releases: Vec<Release> = (0..4)
            .rev()
            .map(|i| Release {
                sha: format!("r{i}"),
                time: at(release_times[i]),
                hashes: (0..8).map(|c| (format!("c-{c}"), format!("h{}", i % 3))).collect(),
            })
            .collect();
        let order: HashMap<String, usize> = (0..4).map(|i| (format!("r{i}"), i)).collect();
        let statuses: BTreeMap<String, ClusterStatus> = statuses
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
            .collect();
        let approvals = [Approval { release: "r3".into(), through_wave }];
        let plan = plan_app(&PlanInput {
            app: "web",
            policy: &app.rollout,
            waves: &waves,
            releases: &releases,
            order: &order,
            statuses: &statuses,
            approvals: &approvals,
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
        now,
    });
    let gates = serde_json::to_string(&plan.pending).unwrap();
    assert!(gates.contains("9999-12-31T23:59:59Z"), "{gates}");
}
