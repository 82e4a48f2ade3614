//! Agents that follow the rollout plan, coordinating only through the repository's
//! status refs: a good commit reaches the canary first and prod after it is healthy, a
//! broken image halts at the canary, and its revert brings the canary back at once.

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use common::git::{commit_files, git, work_repo};
use kube::config::{KubeConfigOptions, Kubeconfig};
use rollwave::agent::rollout::ClusterAgent;
use rollwave::apply::Reconciler;
use rollwave::apply::retry::RetryPolicy;
use rollwave::sim::{SimCluster, SimOptions, kubeconfig};
use rollwave::status::Phase;
use rollwave::status::refs::read_statuses;

/// The broken image is Degraded only when the progress deadline runs out, and a healthy
/// rollout outlasting it would be Degraded too: the deadline is far from the second a
/// healthy rollout takes, even on loaded cores.
const FILES: &[(&str, &str)] = &[
    (
        "fleet.yaml",
        "stages: [test, prod]\nrollout:\n  canary: [test-1]\n  batches: [1]\n  bake: 0s\n  progressDeadline: 20s\n",
    ),
    ("clusters/test-1.yaml", "name: test-1\nstage: test\n"),
    ("clusters/prod-1.yaml", "name: prod-1\nstage: prod\n"),
    (
        "apps/web/app.yaml",
        "namespace: web\ntargets:\n  stages: [test, prod]\n",
    ),
    (
        "apps/web/base/kustomization.yaml",
        "resources:\n- deployment.yaml\n",
    ),
    (
        "apps/web/base/deployment.yaml",
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  replicas: 2\n  selector: {matchLabels: {app: web}}\n  template:\n    metadata: {labels: {app: web}}\n    spec: {containers: [{name: web, image: 'nginx:1'}]}\n",
    ),
];

fn deployment_with(image: &str) -> String {
    FILES[5].1.replace("nginx:1", image)
}

async fn agent(name: &str) -> (SimCluster, ClusterAgent) {
    let mut o = SimOptions::named(name);
    o.ready_after = Duration::from_millis(200);
    o.tick = Duration::from_millis(50);
    let sim = SimCluster::start(o).await.unwrap();
    let kc = Kubeconfig::from_yaml(&kubeconfig(&[(name.to_string(), sim.base_url())])).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .unwrap();
    let r = Reconciler::new(kube::Client::try_from(config).unwrap(), "rollwave-system").with_retry(
        RetryPolicy {
            attempts: 5,
            base: Duration::from_millis(5),
            max: Duration::from_millis(100),
            ..RetryPolicy::default()
        },
    );
    (sim, ClusterAgent::new(name, r, Duration::from_secs(1)))
}

/// (release, phase) of `web` on `cluster` from the status refs.
fn status(repo: &Path, cluster: &str) -> Option<(String, Phase)> {
    let (statuses, _) = read_statuses(&git2::Repository::open(repo).unwrap());
    statuses
        .get(cluster)
        .and_then(|s| s.apps.get("web"))
        .map(|a| (a.release.clone(), a.phase))
}

async fn passes_until(
    repo: &Path,
    agents: &mut [&mut ClusterAgent],
    limit: Duration,
    what: &str,
    mut done: impl FnMut() -> bool,
    mut every: impl FnMut(),
) {
    let deadline = Instant::now() + limit;
    let path = repo.to_str().unwrap().to_string();
    loop {
        for a in agents.iter_mut() {
            a.pass(&path, "main", SystemTime::now()).await.unwrap();
        }
        every();
        if done() {
            return;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_good_commit_goes_canary_first_a_broken_one_halts_and_its_revert_returns_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("fleet");
    let v1 = work_repo(&repo, FILES);
    let (sim_test, mut test) = agent("test-1").await;
    let (sim_prod, mut prod) = agent("prod-1").await;

    // v1: prod never runs it before the canary is Healthy.
    let mut order = Vec::new();
    passes_until(
        &repo,
        &mut [&mut test, &mut prod],
        Duration::from_secs(20),
        "v1 healthy everywhere",
        || {
            status(&repo, "test-1") == Some((v1.clone(), Phase::Healthy))
                && status(&repo, "prod-1") == Some((v1.clone(), Phase::Healthy))
        },
        || order.push((status(&repo, "test-1"), status(&repo, "prod-1"))),
    )
    .await;
    for (t, p) in &order {
        if p.is_some() {
            assert!(
                t.as_ref().is_some_and(|(_, ph)| *ph == Phase::Healthy)
                    || order
                        .iter()
                        .any(|(t2, _)| t2.as_ref().is_some_and(|(_, ph)| *ph == Phase::Healthy)),
                "prod ran v1 before the canary was healthy: {order:?}"
            );
        }
    }
    assert!(
        order[0].1.is_none(),
        "prod waits for the canary on the first pass: {order:?}"
    );

    // v2 with a broken image: the canary goes Degraded, prod stays on v1.
    let v2 = commit_files(
        &repo,
        &[(
            "apps/web/base/deployment.yaml",
            &deployment_with("nginx:broken"),
        )],
        "broken image",
    );
    passes_until(
        &repo,
        &mut [&mut test, &mut prod],
        Duration::from_secs(120),
        "the canary to be Degraded on v2",
        || status(&repo, "test-1") == Some((v2.clone(), Phase::Degraded)),
        || {},
    )
    .await;
    // A few more passes: prod must not move.
    for _ in 0..5 {
        prod.pass(repo.to_str().unwrap(), "main", SystemTime::now())
            .await
            .unwrap();
    }
    assert_eq!(
        status(&repo, "prod-1"),
        Some((v1.clone(), Phase::Healthy)),
        "the rollout halted at the canary"
    );

    // The revert: the canary returns to v1's rendering at once.
    git(&repo, &["revert", "--no-edit", "HEAD"]);
    let v3 = git(&repo, &["rev-parse", "HEAD"]);
    passes_until(
        &repo,
        &mut [&mut test, &mut prod],
        Duration::from_secs(20),
        "the revert to be Healthy on the canary",
        || status(&repo, "test-1").is_some_and(|(r, p)| r == v3 && p == Phase::Healthy),
        || {},
    )
    .await;
    let releases: BTreeSet<String> = [status(&repo, "prod-1").unwrap().0].into();
    assert!(
        releases.contains(&v1) || releases.contains(&v3),
        "prod runs v1's rendering: {releases:?}"
    );
    sim_test.shutdown().await;
    sim_prod.shutdown().await;
}

#[test]
fn agent_once_on_a_git_repository_follows_the_plan_and_writes_its_status() {
    common::sim::require_kubectl();
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("fleet");
    let v1 = work_repo(&repo, FILES);
    let path = repo.to_str().unwrap().to_string();
    let test = common::sim::TestCluster::start("test-1");
    let prod = common::sim::TestCluster::start("prod-1");
    let once = |cluster: &str, c: &common::sim::TestCluster| {
        common::run_cli(&[
            "agent",
            "--once",
            "--repo",
            &path,
            "--cluster",
            cluster,
            "--kubeconfig",
            c.kubeconfig.to_str().unwrap(),
        ])
    };
    // prod first: the canary has not run v1, so prod waits (and that is not an error).
    let (code, out, err) = once("prod-1", &prod);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("web\twaiting\t"), "{out}");
    assert_eq!(
        prod.kubectl(&["get", "deployment", "web", "-n", "web"]).0,
        1,
        "nothing applied on prod"
    );
    let (code, out, err) = once("test-1", &test);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("web\tapplied\t"), "{out}");
    assert_eq!(
        status(&repo, "test-1").map(|s| s.0),
        Some(v1.clone()),
        "the canary's status ref names v1"
    );
}

/// (release, phase, message) of `app` on `cluster` from the status refs.
fn app_status(repo: &Path, cluster: &str, app: &str) -> Option<(String, Phase, String)> {
    let (statuses, _) = read_statuses(&git2::Repository::open(repo).unwrap());
    statuses
        .get(cluster)
        .and_then(|s| s.apps.get(app))
        .map(|a| (a.release.clone(), a.phase, a.message.clone()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_app_broken_app_yaml_holds_that_app_only_and_a_broken_fleet_yaml_keeps_agents_on_the_last_good_commit()
 {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("fleet");
    let mut files = FILES.to_vec();
    files.extend_from_slice(&[
        (
            "apps/api/app.yaml",
            "namespace: api\ntargets:\n  stages: [test, prod]\n",
        ),
        (
            "apps/api/base/kustomization.yaml",
            "resources:\n- cm.yaml\n",
        ),
        (
            "apps/api/base/cm.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: api}\ndata: {a: b}\n",
        ),
    ]);
    let v1 = work_repo(&repo, &files);
    let (_sim_test, mut test) = agent("test-1").await;
    let (sim_prod, mut prod) = agent("prod-1").await;
    passes_until(
        &repo,
        &mut [&mut test, &mut prod],
        Duration::from_secs(20),
        "v1 healthy everywhere",
        || status(&repo, "prod-1") == Some((v1.clone(), Phase::Healthy)),
        || {},
    )
    .await;

    // One commit breaks api's app.yaml and changes web: web still rolls out.
    let v2 = commit_files(
        &repo,
        &[
            (
                "apps/api/app.yaml",
                "namespace: api\ntargets:\n  stage: [prod]\n",
            ),
            ("apps/web/base/deployment.yaml", &deployment_with("nginx:2")),
        ],
        "api: typo; web: nginx 2",
    );
    passes_until(
        &repo,
        &mut [&mut test, &mut prod],
        Duration::from_secs(20),
        "web at v2 everywhere",
        || status(&repo, "prod-1") == Some((v2.clone(), Phase::Healthy)),
        || {},
    )
    .await;
    let (release, phase, message) = app_status(&repo, "prod-1", "api").unwrap();
    assert_eq!((release, phase), (v1.clone(), Phase::Error));
    assert!(
        message.starts_with("apps/api/app.yaml:3:3: field 'targets': unknown field 'stage'")
            && message.ends_with("; nothing is changed until it is fixed"),
        "{message}"
    );
    let client =
        kube::Client::try_from(kube::Config::new(sim_prod.base_url().parse().unwrap())).unwrap();
    let configmaps: kube::Api<k8s_openapi::api::core::v1::ConfigMap> =
        kube::Api::namespaced(client, "api");
    assert!(
        configmaps.get("api").await.is_ok(),
        "the broken app's objects are left running"
    );

    // A broken fleet.yaml: passes go on at the last good commit, statuses stay fresh.
    let v3 = commit_files(
        &repo,
        &[("fleet.yaml", "stages: [test, prod\n")],
        "fleet: broken",
    );
    let path = repo.to_str().unwrap().to_string();
    for _ in 0..3 {
        for a in [&mut test, &mut prod] {
            a.pass(&path, "main", SystemTime::now())
                .await
                .expect("a broken fleet.yaml must not fail the pass");
        }
    }
    assert_ne!(v3, v2);
    assert_eq!(status(&repo, "prod-1"), Some((v2.clone(), Phase::Healthy)));
}

/// A fleet in Git (so the agent plans releases) of `n` independent apps and one app
/// that depends on the first, on one cluster.
fn fleet_of_apps(n: usize) -> Vec<(String, String)> {
    let mut files = vec![
        (
            "fleet.yaml".to_string(),
            "stages: [prod]\nrollout:\n  batches: [1]\n  bake: 0s\n".to_string(),
        ),
        (
            "clusters/prod-1.yaml".to_string(),
            "name: prod-1\nstage: prod\n".to_string(),
        ),
    ];
    for i in 0..=n {
        let app = format!("app{i}");
        let depends = if i == n { "dependsOn: [app0]\n" } else { "" };
        files.push((
            format!("apps/{app}/app.yaml"),
            format!("namespace: {app}\ntargets:\n  stages: [prod]\n{depends}"),
        ));
        files.push((
            format!("apps/{app}/base/kustomization.yaml"),
            "resources:\n- deployment.yaml\n".to_string(),
        ));
        files.push((
            format!("apps/{app}/base/deployment.yaml"),
            FILES[5].1.replace("web", &app),
        ));
    }
    files
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pass_applies_independent_apps_side_by_side_and_a_dependent_one_after_its_dependency() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("fleet");
    let owned = fleet_of_apps(6);
    let files: Vec<(&str, &str)> = owned
        .iter()
        .map(|(p, c)| (p.as_str(), c.as_str()))
        .collect();
    let v1 = work_repo(&repo, &files);
    let (sim, mut prod) = agent("prod-1").await;
    // Each write takes a while, as on a real API server: writes sent one after another
    // never overlap.
    sim.set_faults(rollwave::sim::Faults {
        latency_ms: 50,
        writes_only: true,
        ..Default::default()
    });
    let app_status = |app: &str| {
        let (statuses, _) = read_statuses(&git2::Repository::open(&repo).unwrap());
        statuses
            .get("prod-1")
            .and_then(|s| s.apps.get(app))
            .map(|a| (a.release.clone(), a.phase))
    };
    let mut dependent_before_dependency = false;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        prod.pass(repo.to_str().unwrap(), "main", SystemTime::now())
            .await
            .unwrap();
        // The dependent app runs nothing until app0 is Healthy here.
        if app_status("app6").is_some_and(|(r, _)| r == v1)
            && app_status("app0") != Some((v1.clone(), Phase::Healthy))
        {
            dependent_before_dependency = true;
        }
        if (0..=6).all(|i| app_status(&format!("app{i}")) == Some((v1.clone(), Phase::Healthy))) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for every app Healthy"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        !dependent_before_dependency,
        "app6 ran before app0, which it depends on, was Healthy"
    );
    let peak = sim.stats().peak_writes_in_flight();
    assert!(
        peak >= 2,
        "the independent apps' writes went out one after another (at most {peak} at once)"
    );
    sim.shutdown().await;
}
