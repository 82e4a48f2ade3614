//! Renderings found by their inputs: an agent's pass over an unchanged repository renders
//! nothing, a change to one app renders that app only, and what is applied is the same
//! as without the cache.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use common::git::{commit_files, work_repo};
use k8s_openapi::api::apps::v1::Deployment;
use kube::config::{KubeConfigOptions, Kubeconfig};
use rollwave::agent::rollout::ClusterAgent;
use rollwave::apply::Reconciler;
use rollwave::apply::retry::RetryPolicy;
use rollwave::plan::history::{AppHistory, FleetAt, app_history, history_order};
use rollwave::render::cache::{DEFAULT_MAX_BYTES, RenderCache};
use rollwave::sim::{SimCluster, SimOptions, kubeconfig};
use rollwave::source::repo::{GitAccess, GitRepo};
use rollwave::status::Phase;
use rollwave::status::refs::read_statuses;
use rollwave::ui::load::Loader;

fn deployment(name: &str, image: &str) -> String {
    format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {name}\nspec:\n  replicas: 1\n  selector: {{matchLabels: {{app: {name}}}}}\n  template:\n    metadata: {{labels: {{app: {name}}}}}\n    spec: {{containers: [{{name: {name}, image: '{image}'}}]}}\n"
    )
}

fn files() -> Vec<(String, String)> {
    let mut files = vec![
        (
            "fleet.yaml".to_string(),
            "stages: [prod]\nrollout:\n  batches: [1]\n  bake: 0s\n  progressDeadline: 1m\n"
                .to_string(),
        ),
        (
            "clusters/cached.yaml".into(),
            "name: cached\nstage: prod\n".into(),
        ),
        (
            "clusters/uncached.yaml".into(),
            "name: uncached\nstage: prod\n".into(),
        ),
    ];
    for app in ["web", "api"] {
        files.push((
            format!("apps/{app}/app.yaml"),
            format!("namespace: {app}\ntargets:\n  stages: [prod]\n"),
        ));
        files.push((
            format!("apps/{app}/base/kustomization.yaml"),
            "resources:\n- deployment.yaml\n".into(),
        ));
        files.push((
            format!("apps/{app}/base/deployment.yaml"),
            deployment(app, "nginx:1"),
        ));
    }
    files
}

/// The fleet of [`files`] committed in `dir/fleet`: its path and the commit.
fn fleet_repo(dir: &Path) -> (std::path::PathBuf, String) {
    let repo = dir.join("fleet");
    let owned = files();
    let files: Vec<(&str, &str)> = owned
        .iter()
        .map(|(p, c)| (p.as_str(), c.as_str()))
        .collect();
    let v1 = work_repo(&repo, &files);
    (repo, v1)
}

/// Commits web's Deployment on nginx:2 (a change to web alone): the commit.
fn web_on_nginx_2(repo: &Path) -> String {
    commit_files(
        repo,
        &[(
            "apps/web/base/deployment.yaml",
            &deployment("web", "nginx:2"),
        )],
        "web: nginx 2",
    )
}

async fn agent(name: &str, renders: Arc<RenderCache>) -> (SimCluster, ClusterAgent, kube::Client) {
    let mut o = SimOptions::named(name);
    o.ready_after = Duration::from_millis(100);
    o.tick = Duration::from_millis(50);
    let sim = SimCluster::start(o).await.unwrap();
    let kc = Kubeconfig::from_yaml(&kubeconfig(&[(name.to_string(), sim.base_url())])).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .unwrap();
    let client = kube::Client::try_from(config).unwrap();
    let r = Reconciler::new(client.clone(), "rollwave-system").with_retry(RetryPolicy {
        attempts: 5,
        base: Duration::from_millis(5),
        max: Duration::from_millis(100),
        ..RetryPolicy::default()
    });
    let agent = ClusterAgent::new(name, r, Duration::from_secs(60)).with_renders(renders);
    (sim, agent, client)
}

/// (release, phase, hash) of `app` on `cluster` from the status refs.
fn status(repo: &Path, cluster: &str, app: &str) -> Option<(String, Phase, String)> {
    let (statuses, _) = read_statuses(&git2::Repository::open(repo).unwrap());
    statuses
        .get(cluster)
        .and_then(|s| s.apps.get(app))
        .map(|a| (a.release.clone(), a.phase, a.hash.clone()))
}

/// Passes of both agents until each app is Healthy at its release on both clusters.
async fn settle(repo: &Path, agents: &mut [&mut ClusterAgent], releases: &[(&str, &str)]) {
    let deadline = Instant::now() + Duration::from_secs(30);
    let path = repo.to_str().unwrap().to_string();
    loop {
        for a in agents.iter_mut() {
            a.pass(&path, "main", SystemTime::now()).await.unwrap();
        }
        let settled = ["cached", "uncached"].iter().all(|c| {
            releases.iter().all(|(app, release)| {
                status(repo, c, app).is_some_and(|(r, p, _)| r == *release && p == Phase::Healthy)
            })
        });
        if settled {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {releases:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn live_spec(client: &kube::Client, app: &str) -> serde_json::Value {
    let api: kube::Api<Deployment> = kube::Api::namespaced(client.clone(), app);
    let d = api.get(app).await.unwrap();
    serde_json::to_value(d.spec).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unchanged_repository_renders_nothing_and_a_change_renders_only_its_app() {
    let dir = tempfile::tempdir().unwrap();
    let (repo, v1) = fleet_repo(dir.path());
    let renders = Arc::new(RenderCache::new(DEFAULT_MAX_BYTES));
    let (sim_c, mut cached, client_c) = agent("cached", renders.clone()).await;
    // The same fleet rendered every time, for comparison.
    let (sim_u, mut uncached, client_u) = agent("uncached", Arc::new(RenderCache::new(0))).await;
    let both_v1 = [("web", v1.as_str()), ("api", v1.as_str())];
    settle(&repo, &mut [&mut cached, &mut uncached], &both_v1).await;

    // Passes over the unchanged repository render nothing.
    let before = renders.lookups();
    for _ in 0..3 {
        cached
            .pass(repo.to_str().unwrap(), "main", SystemTime::now())
            .await
            .unwrap();
    }
    let after = renders.lookups();
    assert_eq!(
        after.misses, before.misses,
        "an unchanged repository was rendered again"
    );
    assert!(after.hits >= before.hits + 3 * 2, "{before:?} -> {after:?}");

    // A change to web renders web only.
    let (web_before, api_before) = (renders.misses_of("web"), renders.misses_of("api"));
    let v2 = web_on_nginx_2(&repo);
    let web_v2 = [("web", v2.as_str()), ("api", v1.as_str())];
    settle(&repo, &mut [&mut cached, &mut uncached], &web_v2).await;
    // Once: the planner needs the files every cluster's rendering reads, and the
    // fleet's two clusters render web alike (no templates, the same overlay), so they
    // share one rendering; the agent's own cluster's rendering is the one applied, not
    // rendered a second time.
    assert_eq!(
        renders.misses_of("web"),
        web_before + 1,
        "web was not rendered exactly once for both clusters"
    );
    assert_eq!(
        renders.misses_of("api"),
        api_before,
        "api was rendered again"
    );

    // What is applied is what rendering every time applies.
    for app in ["web", "api"] {
        let (rc, _, hc) = status(&repo, "cached", app).unwrap();
        let (ru, _, hu) = status(&repo, "uncached", app).unwrap();
        assert_eq!((rc, hc), (ru, hu), "{app}: the statuses differ");
        assert_eq!(
            live_spec(&client_c, app).await,
            live_spec(&client_u, app).await,
            "{app}: the live Deployments differ"
        );
    }
    let image =
        live_spec(&client_c, "web").await["template"]["spec"]["containers"][0]["image"].clone();
    assert_eq!(image, "nginx:2");
    sim_c.shutdown().await;
    sim_u.shutdown().await;
}

#[test]
fn the_web_view_renders_again_only_the_apps_a_new_commit_changed() {
    let dir = tempfile::tempdir().unwrap();
    let (repo, v1) = fleet_repo(dir.path());
    let renders = Arc::new(RenderCache::new(DEFAULT_MAX_BYTES));
    let mut loader = Loader::new(
        repo.to_str().unwrap(),
        "main",
        GitAccess {
            cache_dir: dir.path().join("cache"),
            ..GitAccess::from_env()
        },
        Duration::from_secs(1),
    )
    .with_renders(renders.clone());
    let newest = |views: &rollwave::ui::load::Views, app: &str| {
        let view = serde_json::to_value(&views.apps[app]).unwrap();
        view["releases"][0]["sha"].as_str().unwrap().to_string()
    };
    let views = loader.load(SystemTime::now()).unwrap();
    assert_eq!(
        (newest(&views, "web"), newest(&views, "api")),
        (v1.clone(), v1.clone())
    );
    let (web_before, api_before) = (renders.misses_of("web"), renders.misses_of("api"));
    assert!(web_before > 0 && api_before > 0);

    let v2 = web_on_nginx_2(&repo);
    let views = loader.load(SystemTime::now()).unwrap();
    assert_eq!((newest(&views, "web"), newest(&views, "api")), (v2, v1));
    assert!(
        renders.misses_of("web") > web_before,
        "web's new release was not rendered"
    );
    assert_eq!(
        renders.misses_of("api"),
        api_before,
        "api, unchanged by the commit, was rendered again"
    );
}

/// The history of `app` at the head of `repo` (the fleet loaded there), with `previous`
/// as the history at an earlier head; and how many rendering lookups it made.
fn history_at(
    repo: &Path,
    renders: &RenderCache,
    app: &str,
    previous: Option<&AppHistory>,
) -> (AppHistory, u64) {
    let g = GitRepo::open(repo.to_str().unwrap(), None, None, "main").unwrap();
    let git = g.repository().unwrap();
    let (history, _) = history_order(&git, g.head).unwrap();
    let (tree, fleet) = g.fleet(g.head).unwrap();
    let at = FleetAt {
        commit: g.head,
        tree: &tree,
        fleet: &fleet,
    };
    let before = renders.lookups();
    let h = app_history(&g, &git, &history, at, app, renders, previous).unwrap();
    let after = renders.lookups();
    (h, after.hits + after.misses - before.hits - before.misses)
}

#[test]
fn a_new_head_renders_only_the_releases_an_earlier_history_does_not_have() {
    let dir = tempfile::tempdir().unwrap();
    let (repo, v1) = fleet_repo(dir.path());
    let v2 = web_on_nginx_2(&repo);
    let renders =
        RenderCache::new(DEFAULT_MAX_BYTES).counting_into(Default::default(), Default::default());
    let (at_v2, _) = history_at(&repo, &renders, "web", None);
    let v3 = commit_files(
        &repo,
        &[(
            "apps/web/base/deployment.yaml",
            &deployment("web", "nginx:3"),
        )],
        "web: nginx 3",
    );

    let (reused, lookups_reused) = history_at(&repo, &renders, "web", Some(&at_v2));
    let (fresh, lookups_fresh) = history_at(&repo, &renders, "web", None);
    let releases = |h: &AppHistory| -> Vec<(String, Vec<(String, String)>)> {
        (h.releases.iter())
            .map(|r| (r.sha.clone(), r.hashes.clone().into_iter().collect()))
            .collect()
    };
    assert_eq!(releases(&reused), releases(&fresh));
    let shas: Vec<&str> = reused.releases.iter().map(|r| r.sha.as_str()).collect();
    assert_eq!(shas, [v3.as_str(), v2.as_str(), v1.as_str()]);
    assert_eq!(
        lookups_fresh - lookups_reused,
        2 * 2,
        "v2 and v1 are not looked up again for either cluster"
    );
}
