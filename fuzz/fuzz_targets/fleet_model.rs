//! The fleet model on any fleet.yaml, cluster file and app.yaml (the input is split on
//! NUL bytes into the three files): a model or a file:line error, never a panic; and
//! whatever the model accepts, waves and targeting work on it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rollwave::tree::MemTree;

fuzz_target!(|data: &[u8]| {
    let mut parts = data.split(|b| *b == 0);
    let fleet = parts.next().unwrap_or_default();
    let cluster = parts.next().unwrap_or_default();
    let app = parts.next().unwrap_or_default();
    let mut tree = MemTree::new();
    tree.insert("fleet.yaml", fleet);
    tree.insert("clusters/c-1.yaml", cluster);
    tree.insert("clusters/c-2.yaml", "name: c-2\nstage: prod\n");
    tree.insert("apps/web/app.yaml", app);
    if let Ok(fleet) = rollwave::fleet::load(&tree) {
        for app in &fleet.apps {
            let waves = rollwave::plan::waves_for(&fleet, app);
            let placed: usize = waves.iter().map(Vec::len).sum();
            let targeted = fleet
                .clusters
                .iter()
                .filter(|c| rollwave::fleet::targets_cluster(app, c))
                .count();
            assert_eq!(placed, targeted, "every targeted cluster is in one wave");
            for c in &fleet.clusters {
                let _ = rollwave::fleet::choose_overlay(app, c);
            }
        }
    }
});
