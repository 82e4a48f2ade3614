//! Planning for a 1,000-cluster fleet with 50 apps and 20 pending releases each, from
//! statuses (each with a 20-entry history): the time to decide every cluster's target
//! for every app, on all cores.
//!
//! `cargo bench --bench plan`

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant, SystemTime};

use rollwave::fleet::RolloutSpec;
use rollwave::plan::{PlanInput, Release, batch_sizes, plan_app};
use rollwave::status::{AppStatus, ClusterStatus, HistoryEntry, Phase};

const CLUSTERS: usize = 1000;
const APPS: usize = 50;
const RELEASES: usize = 20;

fn ts(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

fn main() {
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    let clusters: Vec<String> = (0..CLUSTERS).map(|i| format!("c{i:04}")).collect();
    // Canary, then three stages of roughly equal size at 1:2:7.
    let mut waves = vec![vec![clusters[0].clone()]];
    for stage in clusters[1..].chunks(CLUSTERS / 3) {
        let mut start = 0;
        for size in batch_sizes(stage.len(), &[1, 2, 7]) {
            waves.push(stage[start..start + size].to_vec());
            start += size;
        }
    }
    // History: 40 commits; releases are the 20 newest.
    let order: HashMap<String, usize> = (0..40).map(|i| (format!("commit{i:02}"), i)).collect();
    let apps: Vec<String> = (0..APPS).map(|a| format!("app{a:02}")).collect();
    let releases: Vec<Vec<Release>> = apps
        .iter()
        .map(|app| {
            (20..40)
                .rev()
                .map(|i| Release {
                    sha: format!("commit{i:02}"),
                    time: now - Duration::from_secs(60 * (40 - i) as u64),
                    hashes: clusters
                        .iter()
                        .map(|c| (c.clone(), format!("{app}-h{i}-{c}")))
                        .collect(),
                })
                .collect()
        })
        .collect();
    // Every cluster runs commit20 (the oldest pending release's parent state) Healthy,
    // with a full history.
    let statuses: BTreeMap<String, ClusterStatus> = clusters
        .iter()
        .map(|c| {
            let app_statuses = apps
                .iter()
                .map(|app| {
                    let history = (0..20)
                        .map(|k| HistoryEntry {
                            release: format!("commit{:02}", 19 - k.min(19)),
                            hash: format!("{app}-old{k}"),
                            phase: Phase::Healthy,
                            since: ts(now - Duration::from_secs(3600 * (k + 2) as u64)),
                            until: ts(now - Duration::from_secs(3600 * (k + 1) as u64)),
                            verified: None,
                        })
                        .collect();
                    (
                        app.clone(),
                        AppStatus {
                            release: "commit20".into(),
                            hash: format!("{app}-h20-{c}"),
                            phase: Phase::Healthy,
                            since: ts(now - Duration::from_secs(3600)),
                            message: String::new(),
                            known_good: (0..10).map(|k| format!("{app}-old{k}")).collect(),
                            poisoned: vec![],
                            history,
                            analysis: Default::default(),
                            verified: None,
                        },
                    )
                })
                .collect();
            (
                c.clone(),
                ClusterStatus {
                    notified: Default::default(),
                    cluster: c.clone(),
                    agent: "bench".into(),
                    heartbeat: ts(now),
                    interval: 60,
                    apps: app_statuses,
                },
            )
        })
        .collect();
    let policy = RolloutSpec {
        bake: Duration::from_secs(300),
        batches: vec![1, 2, 7],
        ..RolloutSpec::default()
    };
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let start = Instant::now();
    let decided: usize = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let (apps, releases, statuses, waves, order, policy) =
                    (&apps, &releases, &statuses, &waves, &order, &policy);
                s.spawn(move || {
                    let mut n = 0;
                    for a in (t..APPS).step_by(threads) {
                        let plan = plan_app(&PlanInput {
                            app: &apps[a],
                            policy,
                            waves,
                            releases: &releases[a],
                            order,
                            statuses,
                            approvals: &[],
                            dependencies: &[],
                            now,
                        });
                        n += plan.decisions.len();
                    }
                    n
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).sum()
    });
    let wall = start.elapsed();
    println!(
        "planned {APPS} apps x {CLUSTERS} clusters x {RELEASES} pending releases ({decided} decisions) in {:.0} ms on {threads} threads",
        wall.as_secs_f64() * 1e3
    );
}
