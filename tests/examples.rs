//! The shipped examples stay valid: every agent config parses, and the read-only
//! fleet policy is a fleet.yaml the example fleet validates with.

mod common;

use std::path::Path;

fn example(path: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples")
        .join(path)
}

#[test]
fn every_example_agent_config_is_valid() {
    let mut seen = 0;
    for entry in std::fs::read_dir(example("agent")).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if name.ends_with("-fleet.yaml") {
            continue;
        }
        let config = rollwave::agent::config::load(&path).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(!config.clusters.is_empty(), "{name}");
        seen += 1;
    }
    assert_eq!(seen, 4);
    let single = rollwave::agent::config::load(&example("agent/single-cluster.yaml")).unwrap();
    assert_eq!(single.notify.len(), 1);
    assert_eq!(
        single.notify[0].format,
        rollwave::agent::notify::Format::Slack
    );
    let laptop = rollwave::agent::config::load(&example("agent/laptop.yaml")).unwrap();
    assert_eq!(laptop.clusters.len(), 2);
    let several = rollwave::agent::config::load(&example("agent/several-clusters.yaml")).unwrap();
    assert_eq!(several.clusters.len(), 3);
    assert!(several.verify.is_some());
    assert!(matches!(several.auth, rollwave::source::Auth::Ssh { .. }));
    let prometheus = |i: usize| {
        several
            .prometheus_for(&several.clusters[i])
            .map(|p| p.url.clone())
    };
    assert_eq!(
        prometheus(0).as_deref(),
        Some("https://prometheus.bj.example.com")
    );
    assert_eq!(
        prometheus(2).as_deref(),
        Some("http://prometheus.bj-4.example.com:9090"),
        "a cluster's own Prometheus"
    );
    let read_only = rollwave::agent::config::load(&example("agent/read-only.yaml")).unwrap();
    assert!(!read_only.push_status);
}

#[test]
fn the_read_only_fleet_policy_validates_with_the_example_fleet() {
    let repo = common::ScratchRepo::new(&[]);
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("fleet-example-repo");
    copy_dir(&src, repo.path());
    std::fs::copy(
        example("agent/read-only-fleet.yaml"),
        repo.path().join("fleet.yaml"),
    )
    .unwrap();
    let (code, out, err) = common::run_cli(&["validate", "--repo", repo.path().to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
    let fleet =
        rollwave::fleet::load(&rollwave::tree::DirTree::open(repo.path()).unwrap()).unwrap();
    assert_eq!(fleet.settings.rollout.gate, rollwave::fleet::Gate::Time);
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}
