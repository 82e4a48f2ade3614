//! The web view's server side at 1,000 clusters and 20 apps: how long `rollwave ui`
//! takes to rebuild its views (`Loader::load`, the code the server runs), from a local
//! Git repository with a status ref per cluster.
//!
//! `cargo bench --bench ui [-- CLUSTERS APPS]` (default 1,000 and 20)
//!
//! Measured: the first load, which renders every app's releases for every cluster; the
//! loads that follow a status change (every status ref read again, every app planned,
//! every view built), after 50 clusters changed a phase and every agent sent a
//! heartbeat; and the load after a commit that changes one app, whose releases alone
//! are rendered again. The anchor, in the same run: reading
//! the status refs alone, which every load does first.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

mod common;

use common::{git, write};
use rollwave::source::repo::GitAccess;
use rollwave::status::refs::{read_statuses, write_status};
use rollwave::status::{AppStatus, ClusterStatus, HistoryEntry, Phase};
use rollwave::ui::load::Loader;

const REGIONS: [&str; 4] = ["bj", "sh", "gz", "hk"];
/// Loads measured after a status change.
const LOADS: usize = 5;

fn cluster_name(i: usize) -> String {
    format!("prod-{}-{i:04}", REGIONS[i % REGIONS.len()])
}

/// One stage of `clusters` clusters, canary then 1:2:7, and `apps` apps of one
/// ConfigMap each; `version` goes into every ConfigMap (a new release of every app).
fn write_fleet(root: &Path, clusters: usize, apps: usize, version: &str) {
    write(
        root,
        "fleet.yaml",
        &format!(
            "stages: [prod]\nrollout:\n  canary: [{}]\n  batches: [1, 2, 7]\n  bake: 5m\n",
            cluster_name(0)
        ),
    );
    for i in 0..clusters {
        let name = cluster_name(i);
        let provider = if i % 3 == 0 { "cloud" } else { "idc" };
        write(
            root,
            &format!("clusters/{name}.yaml"),
            &format!(
                "name: {name}\nstage: prod\nlabels:\n  region: {}\n  provider: {provider}\n",
                REGIONS[i % REGIONS.len()]
            ),
        );
    }
    for a in 0..apps {
        let app = format!("app-{a:02}");
        write(
            root,
            &format!("apps/{app}/app.yaml"),
            &format!("namespace: {app}\ntargets:\n  stages: [prod]\n"),
        );
        write(
            root,
            &format!("apps/{app}/base/kustomization.yaml"),
            "resources:\n- settings.yaml\n",
        );
        write(
            root,
            &format!("apps/{app}/base/settings.yaml"),
            &format!(
                "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\ndata:\n  version: \"{version}\"\n"
            ),
        );
    }
}

fn ts(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

/// Every cluster runs `release` of every app, Healthy (one in 100 Degraded), with one
/// entry of history.
fn status(cluster: &str, apps: usize, release: &str, at: SystemTime) -> ClusterStatus {
    let hour = Duration::from_secs(3600);
    let apps = (0..apps)
        .map(|a| {
            let degraded = (cluster.len() + a) % 100 == 13;
            (
                format!("app-{a:02}"),
                AppStatus {
                    release: release.to_string(),
                    hash: format!("h-{a}"),
                    phase: if degraded {
                        Phase::Degraded
                    } else {
                        Phase::Healthy
                    },
                    since: ts(at - hour),
                    message: if degraded {
                        "pods not ready: 1 of 3".into()
                    } else {
                        String::new()
                    },
                    known_good: vec![],
                    poisoned: vec![],
                    history: vec![HistoryEntry {
                        release: release.to_string(),
                        hash: format!("h-{a}-old"),
                        phase: Phase::Healthy,
                        since: ts(at - 3 * hour),
                        until: ts(at - hour),
                        verified: None,
                    }],
                    analysis: BTreeMap::new(),
                    verified: None,
                },
            )
        })
        .collect();
    ClusterStatus {
        cluster: cluster.to_string(),
        agent: "bench".into(),
        heartbeat: ts(at),
        interval: 60,
        apps,
        notified: Default::default(),
    }
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1e3)
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let number = |i: usize, default: usize| {
        args.get(i).map_or(default, |n| {
            n.parse()
                .unwrap_or_else(|_| panic!("not a number: {n} (usage: ui [CLUSTERS] [APPS])"))
        })
    };
    let (clusters, apps) = (number(0, 1000), number(1, 20));
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("fleet");
    git(dir.path(), &["init", "-q", "-b", "main", "fleet"]);
    write_fleet(&root, clusters, apps, "1");
    git(&root, &["add", "-A"]);
    git(&root, &["commit", "-qm", "every app 1"]);
    let first = git(&root, &["rev-parse", "HEAD"]);
    write_fleet(&root, clusters, apps, "2");
    git(&root, &["commit", "-qam", "every app 2"]);

    let repo = git2::Repository::open(&root).unwrap();
    let now = SystemTime::now();
    let names: Vec<String> = (0..clusters).map(cluster_name).collect();
    for c in &names {
        write_status(&repo, &status(c, apps, &first, now)).unwrap();
    }
    let access = GitAccess {
        cache_dir: dir.path().join("cache"),
        ..GitAccess::from_env()
    };
    let mut loader = Loader::new(
        root.to_str().unwrap(),
        "main",
        access,
        Duration::from_secs(1),
    );
    let start = Instant::now();
    let views = loader.load(now).unwrap();
    let cold = start.elapsed();
    let json: usize = views
        .apps
        .values()
        .map(|v| serde_json::to_vec(v).unwrap().len())
        .sum();
    println!(
        "web view of {clusters} clusters x {apps} apps, from a local repository with a status ref per cluster"
    );
    println!(
        "  first load (every app's two releases rendered for every cluster, then planned): {}; the views are {} KB as JSON",
        ms(cold),
        json / 1000
    );

    // Live updates: 50 clusters change a phase, every agent sends a heartbeat.
    let mut loads = Vec::new();
    let mut anchors = Vec::new();
    // Statuses are parsed once per status commit (and kept): the anchor and the load
    // each read a round of new commits.
    let every = (clusters / 50).max(1);
    let new_round = |round: usize| {
        let later = now + Duration::from_secs(30 * round as u64);
        for (i, c) in names.iter().enumerate() {
            let mut s = status(c, apps, &first, later);
            if i % every == round % every {
                let app = s.apps.get_mut("app-00").unwrap();
                app.phase = Phase::Progressing;
                app.since = ts(later);
            }
            write_status(&repo, &s).unwrap();
        }
        later
    };
    for round in 1..=LOADS {
        new_round(2 * round - 1);
        let start = Instant::now();
        let (statuses, errors) = read_statuses(&repo);
        anchors.push(start.elapsed());
        assert_eq!((statuses.len(), errors.len()), (clusters, 0));
        drop(statuses);
        let later = new_round(2 * round);
        let start = Instant::now();
        let views = loader.load(later).unwrap();
        loads.push(start.elapsed());
        assert_eq!(views.apps.len(), apps);
    }
    loads.sort();
    anchors.sort();
    let median = |v: &[Duration]| v[v.len() / 2];
    println!(
        "  load after a status change (median of {LOADS}, range {} to {}): {}, {:.1}x the anchor",
        ms(loads[0]),
        ms(loads[LOADS - 1]),
        ms(median(&loads)),
        median(&loads).as_secs_f64() / median(&anchors).as_secs_f64()
    );
    println!(
        "  anchor, the status refs read alone (median of {LOADS}): {}",
        ms(median(&anchors))
    );

    // A new commit that changes one app: only its releases are rendered again.
    write(
        &root,
        "apps/app-00/base/settings.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\ndata:\n  version: \"3\"\n",
    );
    git(&root, &["commit", "-qam", "app-00 3"]);
    let later = now + Duration::from_secs(30 * (2 * LOADS + 1) as u64);
    let start = Instant::now();
    let views = loader.load(later).unwrap();
    println!(
        "  load after a commit that changes one app (its releases rendered again for every cluster): {}",
        ms(start.elapsed())
    );
    assert_eq!(views.apps.len(), apps);
}
