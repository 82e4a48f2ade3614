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
    let src = common::example_fleet();
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

/// The example fleet, copied where a test may change it.
fn example_fleet() -> common::ScratchRepo {
    let repo = common::ScratchRepo::new(&[]);
    copy_dir(&common::example_fleet(), repo.path());
    repo
}

#[test]
fn the_example_fleet_restricts_every_app_but_platform() {
    let fleet =
        rollwave::fleet::load(&rollwave::tree::DirTree::open(common::example_fleet()).unwrap())
            .unwrap();
    let policy = |app: &str| fleet.app(app).unwrap().policy.clone().unwrap();
    assert_eq!(policy("web").name, "restricted");
    assert_eq!(policy("api").name, "restricted");
    assert!(policy("platform").is_unrestricted());
    let (code, out, err) = common::run_cli(&["validate", "--repo", fleet_path().to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(!err.contains("no tenancy"), "{err}");
}

fn fleet_path() -> std::path::PathBuf {
    common::example_fleet()
}

#[test]
fn validate_reports_each_policy_violation_for_every_cluster_and_fails() {
    let repo = example_fleet();
    std::fs::write(
        repo.path().join("apps/web/base/admin.yaml"),
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {name: web-admin}\nrules: []\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: elsewhere, namespace: api}\n",
    )
    .unwrap();
    let k = repo.path().join("apps/web/base/kustomization.yaml");
    let text = std::fs::read_to_string(&k).unwrap();
    std::fs::write(
        &k,
        text.replace("- hpa.yaml\n", "- hpa.yaml\n- admin.yaml\n"),
    )
    .unwrap();
    let (code, out, err) = common::run_cli(&["validate", "--repo", repo.path().to_str().unwrap()]);
    assert_eq!(code, 1, "{out}{err}");
    let web_clusters = 14;
    assert!(
        out.contains(&format!("{} errors", 2 * web_clusters)),
        "{out}"
    );
    assert!(
        err.contains("error: app 'web' for cluster 'prod-bj-1': apps/web: ClusterRole/web-admin: cluster-scoped kind not allowed by policy 'restricted'\n"),
        "{err}"
    );
    assert!(
        err.contains("error: app 'web' for cluster 'test-sh-1': apps/web: ConfigMap/api/elsewhere: namespace 'api' not allowed by policy 'restricted' (namespaces: self = web)\n"),
        "{err}"
    );
}

#[test]
fn validate_says_once_when_the_fleet_has_no_tenancy_and_an_app_cannot_choose_a_policy() {
    let repo = example_fleet();
    let f = repo.path().join("fleet.yaml");
    let text = std::fs::read_to_string(&f).unwrap();
    let without = &text[..text.find("\n# What each app may touch").unwrap() + 1];
    std::fs::write(&f, without).unwrap();
    let (code, out, err) = common::run_cli(&["validate", "--repo", repo.path().to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(err.matches("no tenancy").count(), 1, "{err}");
    assert!(
        err.starts_with("note: fleet.yaml has no tenancy: every app may change anything"),
        "{err}"
    );

    let a = repo.path().join("apps/web/app.yaml");
    let app = std::fs::read_to_string(&a).unwrap();
    std::fs::write(&a, format!("{app}policy: platform\n")).unwrap();
    let (code, _, err) = common::run_cli(&["validate", "--repo", repo.path().to_str().unwrap()]);
    assert_eq!(code, 1, "{err}");
    let line = app.lines().count() + 1;
    assert!(
        err.contains(&format!("error: app 'web': apps/web/app.yaml:{line}: policy: an app cannot choose its tenancy policy; fleet.yaml's tenancy.apps maps apps to policies (the platform team's file)")),
        "{err}"
    );
}

#[test]
fn validate_checks_objects_as_kustomize_places_them_and_fleet_yaml_maps_only_existing_apps() {
    let repo = example_fleet();
    // A kustomization `namespace:` moves every object of web's prod overlay into api's
    // namespace: the rendered objects are what is checked, not the files.
    let k = repo
        .path()
        .join("apps/web/overlays/prod/kustomization.yaml");
    let text = std::fs::read_to_string(&k).unwrap();
    std::fs::write(&k, format!("namespace: api\n{text}")).unwrap();
    let (code, out, err) = common::run_cli(&["validate", "--repo", repo.path().to_str().unwrap()]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        err.contains("error: app 'web' for cluster 'prod-sh-1': apps/web: Service/api/web: namespace 'api' not allowed by policy 'restricted' (namespaces: self = web)"),
        "{err}"
    );
    assert!(
        !err.contains("for cluster 'test-sh-1'"),
        "test clusters use the base:\n{err}"
    );
    std::fs::write(&k, text).unwrap();

    let f = repo.path().join("fleet.yaml");
    let fleet = std::fs::read_to_string(&f).unwrap();
    std::fs::write(
        &f,
        fleet.replace(
            "apps: {platform: platform}",
            "apps: {platform: platform, billing: platform}",
        ),
    )
    .unwrap();
    let (code, _, err) = common::run_cli(&["validate", "--repo", repo.path().to_str().unwrap()]);
    assert_eq!(code, 1);
    let line = fleet
        .lines()
        .position(|l| l.contains("apps: {platform"))
        .unwrap()
        + 1;
    assert!(
        err.contains(&format!("fleet.yaml:{line}: tenancy.apps: 'billing' is not an app (no directory apps/billing/); remove the entry or add the app")),
        "{err}"
    );
}
