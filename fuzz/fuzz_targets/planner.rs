//! The planner on any peer status document: whatever another agent (or an attacker
//! with push access to a status ref) wrote, parsing refuses it or the plan is made,
//! never a panic.
#![no_main]

use std::collections::{BTreeMap, HashMap};
use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

use libfuzzer_sys::fuzz_target;
use rollwave::fleet::Fleet;
use rollwave::plan::{PlanInput, Release, plan_app, waves_for};
use rollwave::status::ClusterStatus;
use rollwave::tree::MemTree;

fn fleet() -> &'static Fleet {
    static FLEET: OnceLock<Fleet> = OnceLock::new();
    FLEET.get_or_init(|| {
        let mut tree = MemTree::new();
        tree.insert(
            "fleet.yaml",
            "stages: [test, prod]\nrollout:\n  canary: [c-0]\n  batches: [1, 2]\n  bake: 10m\n",
        );
        for (i, stage) in ["test", "prod", "prod", "prod"].iter().enumerate() {
            tree.insert(
                &format!("clusters/c-{i}.yaml"),
                format!("name: c-{i}\nstage: {stage}\n"),
            );
        }
        tree.insert("apps/web/app.yaml", "targets: {stages: [test, prod]}\n");
        rollwave::fleet::load(&tree).expect("the fuzz fleet loads")
    })
}

fuzz_target!(|data: &[u8]| {
    let fleet = fleet();
    let app = fleet.app("web").expect("web");
    let waves = waves_for(fleet, app);
    let mut statuses = BTreeMap::new();
    for (i, doc) in data.split(|b| *b == 0).take(4).enumerate() {
        let cluster = format!("c-{i}");
        if let Ok(s) = ClusterStatus::parse(&cluster, doc) {
            statuses.insert(cluster, s);
        }
    }
    let at = |s: u64| SystemTime::UNIX_EPOCH + Duration::from_secs(s);
    let releases: Vec<Release> = (0..3u64)
        .rev()
        .map(|i| Release {
            sha: format!("r{i}"),
            time: at(1_800_000_000 + i * 60),
            hashes: (0..4)
                .map(|c| (format!("c-{c}"), format!("h{i}")))
                .collect(),
        })
        .collect();
    let order: HashMap<String, usize> = (0..3).map(|i| (format!("r{i}"), i)).collect();
    let plan = plan_app(&PlanInput {
        app: "web",
        policy: &app.rollout,
        waves: &waves,
        releases: &releases,
        order: &order,
        statuses: &statuses,
        approvals: &[],
        dependencies: &[],
        now: at(1_800_000_600),
    });
    assert_eq!(plan.decisions.len(), 4);
});
