//! Verification by metrics against a real Prometheus (Debian's `prometheus`, installed
//! by `./test` when missing) scraping the simulated clusters' traffic every second, with a
//! `cluster` label per target. Agents (one per simulated cluster) coordinate through
//! the repository's status refs, as in production; every assertion is made on what
//! they published.

mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

use common::git::{commit_files, work_repo};
use kube::config::{KubeConfigOptions, Kubeconfig};
use rollwave::agent::AppResult;
use rollwave::agent::rollout::ClusterAgent;
use rollwave::apply::Reconciler;
use rollwave::apply::health::Health;
use rollwave::apply::retry::RetryPolicy;
use rollwave::demo::prometheus::{ScrapingPrometheus, find_binary};
use rollwave::prometheus::Prometheus;
use rollwave::sim::{SimCluster, SimOptions, kubeconfig};
use rollwave::status::refs::read_statuses;
use rollwave::status::{AppStatus, ClusterStatus, Phase};

const ERROR_RATIO: &str = "    - name: error-ratio
      query: |
        sum(rate(sim_http_requests_total{cluster=\"{{cluster.name}}\",namespace=\"{{app.namespace}}\",code=~\"5..\"}[5s]))
        / sum(rate(sim_http_requests_total{cluster=\"{{cluster.name}}\",namespace=\"{{app.namespace}}\"}[5s]))
      max: 0.05
";

const LATENCY: &str = "    - name: latency-p99
      query: |
        histogram_quantile(0.99, sum by (le) (rate(sim_http_request_duration_seconds_bucket{cluster=\"{{cluster.name}}\",namespace=\"{{app.namespace}}\"}[5s])))
      max: 1
";

fn fleet_yaml(bake: &str, on_failure: &str, analysis: &str) -> String {
    format!(
        "stages: [test, prod]\nrollout:\n  canary: [test-1]\n  batches: [1]\n  bake: {bake}\n  progressDeadline: 30s\n  onFailure: {on_failure}\n  analysis:\n{analysis}"
    )
}

fn standard_analysis() -> String {
    format!(
        "    interval: 1s\n    initialDelay: 1s\n    errorLimit: 2\n    metrics:\n{ERROR_RATIO}{LATENCY}"
    )
}

fn deployment(name: &str, image: &str) -> String {
    format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {name}\nspec:\n  replicas: 2\n  selector: {{matchLabels: {{app: {name}}}}}\n  template:\n    metadata: {{labels: {{app: {name}}}}}\n    spec: {{containers: [{{name: {name}, image: '{image}'}}]}}\n"
    )
}

/// Files of an app `name` in namespace `name` with `app_yaml_extra` appended.
fn app_files(name: &str, image: &str, app_yaml_extra: &str) -> Vec<(String, String)> {
    vec![
        (
            format!("apps/{name}/app.yaml"),
            format!("namespace: {name}\ntargets:\n  stages: [test, prod]\n{app_yaml_extra}"),
        ),
        (
            format!("apps/{name}/base/kustomization.yaml"),
            "resources:\n- deployment.yaml\n".into(),
        ),
        (
            format!("apps/{name}/base/deployment.yaml"),
            deployment(name, image),
        ),
    ]
}

/// Simulated clusters, their agents, a Prometheus scraping them, a fleet repository.
struct World {
    _dir: tempfile::TempDir,
    repo: PathBuf,
    sims: Vec<SimCluster>,
    agents: Vec<ClusterAgent>,
    prometheus: ScrapingPrometheus,
}

fn require_prometheus() -> PathBuf {
    find_binary().expect(
        "the analysis tests need a real Prometheus: apt-get install -y prometheus (./test does as root)",
    )
}

impl World {
    async fn start(files: &[(String, String)], clusters: &[&str]) -> (World, String) {
        let binary = require_prometheus();
        let dir = tempfile::tempdir().unwrap();
        let repo = dir.path().join("fleet");
        let mut all: Vec<(String, String)> = files.to_vec();
        for c in clusters {
            let stage = c.split('-').next().unwrap();
            all.push((
                format!("clusters/{c}.yaml"),
                format!("name: {c}\nstage: {stage}\n"),
            ));
        }
        let refs: Vec<(&str, &str)> = all.iter().map(|(p, t)| (p.as_str(), t.as_str())).collect();
        let v1 = work_repo(&repo, &refs);
        let mut sims = Vec::new();
        for c in clusters {
            let mut o = SimOptions::named(c);
            o.ready_after = Duration::from_millis(200);
            o.tick = Duration::from_millis(50);
            sims.push(SimCluster::start(o).await.unwrap());
        }
        let targets: Vec<(String, std::net::SocketAddr)> = sims
            .iter()
            .map(|s| (s.name().to_string(), s.addr()))
            .collect();
        let prometheus = ScrapingPrometheus::start(
            &binary,
            &dir.path().join("prometheus"),
            &targets,
            Duration::from_secs(1),
        )
        .unwrap();
        prometheus
            .wait_for_targets(Duration::from_secs(30))
            .await
            .unwrap();
        let mut agents = Vec::new();
        for s in &sims {
            let kc = Kubeconfig::from_yaml(&kubeconfig(&[(s.name().to_string(), s.base_url())]))
                .unwrap();
            let config = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
                .await
                .unwrap();
            let r = Reconciler::new(kube::Client::try_from(config).unwrap(), "rollwave-system")
                .with_retry(RetryPolicy {
                    attempts: 5,
                    base: Duration::from_millis(5),
                    max: Duration::from_millis(100),
                    ..RetryPolicy::default()
                });
            let p = Prometheus::new(&prometheus.config()).unwrap();
            agents.push(
                ClusterAgent::new(s.name(), r, Duration::from_secs(1)).with_prometheus(Some(p)),
            );
        }
        (
            World {
                _dir: dir,
                repo,
                sims,
                agents,
                prometheus,
            },
            v1,
        )
    }

    fn statuses(&self) -> BTreeMap<String, ClusterStatus> {
        read_statuses(&git2::Repository::open(&self.repo).unwrap()).0
    }

    fn app(&self, cluster: &str, app: &str) -> Option<AppStatus> {
        self.statuses()
            .get(cluster)
            .and_then(|s| s.apps.get(app).cloned())
    }

    /// Passes of every agent until `done` holds; each pass's report goes to `seen`.
    async fn passes_until(
        &mut self,
        limit: Duration,
        what: &str,
        mut done: impl FnMut(&World) -> bool,
        mut seen: impl FnMut(&str, &[(String, AppResult)], &World),
    ) {
        let deadline = Instant::now() + limit;
        let path = self.repo.to_str().unwrap().to_string();
        loop {
            for i in 0..self.agents.len() {
                let report = self.agents[i]
                    .pass(&path, "main", SystemTime::now())
                    .await
                    .unwrap();
                let cluster = self.agents[i].cluster.clone();
                seen(&cluster, &report.apps, self);
            }
            if done(self) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}: {:#?}",
                self.statuses()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn shutdown(self) {
        for s in self.sims {
            s.shutdown().await;
        }
    }
}

fn is(s: &Option<AppStatus>, release: &str, phase: Phase) -> bool {
    s.as_ref()
        .is_some_and(|a| a.release == release && a.phase == phase)
}

/// Every release an app ran on a cluster, from its status and history.
fn releases_run(s: &Option<AppStatus>) -> Vec<String> {
    s.iter()
        .flat_map(|a| {
            a.history
                .iter()
                .map(|h| h.release.clone())
                .chain([a.release.clone()])
        })
        .collect()
}

fn verified_everywhere(w: &World, release: &str, clusters: &[&str]) -> bool {
    clusters.iter().all(|c| {
        let a = w.app(c, "web");
        is(&a, release, Phase::Healthy) && a.is_some_and(|a| a.verified.is_some())
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_good_release_passes_every_wave_and_an_errors_release_is_halted_at_the_canary_and_rolled_back()
 {
    let mut files = vec![(
        "fleet.yaml".to_string(),
        fleet_yaml("2s", "rollback", &standard_analysis()),
    )];
    files.extend(app_files("web", "nginx:1", ""));
    let (mut w, v1) = World::start(&files, &["test-1", "prod-1"]).await;

    // The good release: measured on every cluster, wave after wave.
    w.passes_until(
        Duration::from_secs(60),
        "v1 verified everywhere",
        |w| verified_everywhere(w, &v1, &["test-1", "prod-1"]),
        |_, _, _| {},
    )
    .await;
    for c in ["test-1", "prod-1"] {
        let a = w.app(c, "web").unwrap();
        for (metric, bound) in [("error-ratio", 0.05), ("latency-p99", 1.0)] {
            let r = &a.analysis[metric];
            assert!(r.measurements >= 1, "{c} {metric}: {r:?}");
            assert_eq!(r.failures, 0, "{c} {metric}: {r:?}");
            let v = r.value.expect("a value");
            assert!(v <= bound, "{c} {metric}: {v}");
        }
    }
    let canary = w.app("test-1", "web").unwrap();
    let prod = w.app("prod-1", "web").unwrap();
    let prod_started = prod
        .history
        .last()
        .map(|h| h.since.clone())
        .unwrap_or(prod.since.clone());
    assert!(
        humantime::parse_rfc3339(&prod_started).unwrap()
            >= humantime::parse_rfc3339(canary.verified.as_deref().unwrap()).unwrap(),
        "prod started {prod_started}, before the canary's analysis passed at {:?}",
        canary.verified
    );

    // Pods Ready, 30% of requests answered 500: health says Healthy, analysis Degraded.
    let v2 = commit_files(
        &w.repo,
        &[(
            "apps/web/base/deployment.yaml",
            &deployment("web", "nginx:errors"),
        )],
        "web: errors",
    );
    let mut health_at_v2 = Vec::new();
    w.passes_until(
        Duration::from_secs(60),
        "the canary Degraded by analysis",
        |w| is(&w.app("test-1", "web"), &v2, Phase::Degraded),
        |cluster, apps, _| {
            for (app, r) in apps {
                if let AppResult::Applied {
                    release, health, ..
                } = r
                    && cluster == "test-1"
                    && app == "web"
                    && *release == v2
                {
                    health_at_v2.push(*health);
                }
            }
        },
    )
    .await;
    let degraded = w.app("test-1", "web").unwrap();
    assert!(
        degraded.message.starts_with("analysis error-ratio: ")
            && degraded.message.contains(" > 0.05"),
        "{}",
        degraded.message
    );
    assert_eq!(
        health_at_v2.last(),
        Some(&Health::Healthy),
        "health alone says Healthy: {health_at_v2:?}"
    );
    assert!(degraded.analysis["error-ratio"].failures >= 1);

    // onFailure: rollback puts the canary back on v1's rendering, and it stays there.
    w.passes_until(
        Duration::from_secs(30),
        "the canary rolled back",
        |w| {
            w.app("test-1", "web").is_some_and(|a| {
                a.release == v1
                    && (a.phase == Phase::RolledBack
                        || a.history.iter().any(|h| h.phase == Phase::RolledBack))
            })
        },
        |_, _, _| {},
    )
    .await;
    let until = Instant::now() + Duration::from_secs(5);
    w.passes_until(
        Duration::from_secs(30),
        "a few more passes",
        |_| Instant::now() > until,
        |_, _, _| {},
    )
    .await;
    assert_eq!(w.app("test-1", "web").unwrap().release, v1, "not retaken");
    assert!(
        !releases_run(&w.app("prod-1", "web")).contains(&v2),
        "the later wave never received the errors release"
    );
    w.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_release_is_caught_by_a_latency_quantile_and_halts() {
    let mut files = vec![(
        "fleet.yaml".to_string(),
        fleet_yaml("1s", "halt", &standard_analysis()),
    )];
    files.extend(app_files("web", "nginx:1", ""));
    let (mut w, v1) = World::start(&files, &["test-1", "prod-1"]).await;
    w.passes_until(
        Duration::from_secs(60),
        "v1 verified everywhere",
        |w| verified_everywhere(w, &v1, &["test-1", "prod-1"]),
        |_, _, _| {},
    )
    .await;
    let v2 = commit_files(
        &w.repo,
        &[(
            "apps/web/base/deployment.yaml",
            &deployment("web", "nginx:slow"),
        )],
        "web: slow",
    );
    w.passes_until(
        Duration::from_secs(60),
        "the canary Degraded by the latency check",
        |w| is(&w.app("test-1", "web"), &v2, Phase::Degraded),
        |_, _, _| {},
    )
    .await;
    let a = w.app("test-1", "web").unwrap();
    assert!(
        a.message.starts_with("analysis latency-p99: ") && a.message.contains(" > 1"),
        "{}",
        a.message
    );
    assert!(!releases_run(&w.app("prod-1", "web")).contains(&v2));
    w.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_that_returns_nothing_counts_as_no_data_says() {
    let nothing = "    interval: 1s\n    metrics:\n    - name: nothing\n      query: 'sum(rate(sim_no_such_metric_total{cluster=\"{{cluster.name}}\"}[5s]))'\n      max: 1\n";
    let mut files = vec![(
        "fleet.yaml".to_string(),
        fleet_yaml("1s", "rollback", nothing),
    )];
    for (app, no_data) in [
        ("nd-pass", "pass"),
        ("nd-fail", "fail"),
        ("nd-inconclusive", "inconclusive"),
    ] {
        files.extend(app_files(
            app,
            "nginx:1",
            &format!("rollout:\n  analysis: {{noData: {no_data}}}\n"),
        ));
    }
    let (mut w, v1) = World::start(&files, &["test-1", "prod-1"]).await;
    w.passes_until(
        Duration::from_secs(60),
        "every app decided on the canary, nd-pass everywhere",
        |w| {
            let pass = w.app("prod-1", "nd-pass");
            is(&w.app("test-1", "nd-fail"), &v1, Phase::Degraded)
                && is(
                    &w.app("test-1", "nd-inconclusive"),
                    &v1,
                    Phase::Inconclusive,
                )
                && is(&pass, &v1, Phase::Healthy)
                && pass.is_some_and(|a| a.verified.is_some())
        },
        |_, _, _| {},
    )
    .await;
    assert_eq!(
        w.app("test-1", "nd-fail").unwrap().message,
        "analysis nothing: no data (noData: fail)"
    );
    assert_eq!(
        w.app("test-1", "nd-inconclusive").unwrap().message,
        "analysis nothing: the query returned no data (noData: inconclusive)"
    );
    let r = &w.app("test-1", "nd-pass").unwrap().analysis["nothing"];
    assert_eq!((r.value, r.note.as_str(), r.failures), (None, "no data", 0));
    for app in ["nd-fail", "nd-inconclusive"] {
        assert!(w.app("prod-1", app).is_none(), "{app} went past the canary");
    }
    w.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_stopped_mid_bake_is_inconclusive_without_rollback_until_an_approval() {
    let analysis = "    interval: 1s\n    initialDelay: 3s\n    errorLimit: 2\n    metrics:\n"
        .to_string()
        + ERROR_RATIO;
    let mut files = vec![(
        "fleet.yaml".to_string(),
        fleet_yaml("1s", "rollback", &analysis),
    )];
    files.extend(app_files("web", "nginx:1", ""));
    let (mut w, v1) = World::start(&files, &["test-1", "prod-1"]).await;
    w.passes_until(
        Duration::from_secs(60),
        "v1 verified everywhere",
        |w| verified_everywhere(w, &v1, &["test-1", "prod-1"]),
        |_, _, _| {},
    )
    .await;
    // v2 bakes for 20 s; Prometheus goes away after its first measurement.
    let v2 = commit_files(
        &w.repo,
        &[
            ("fleet.yaml", &fleet_yaml("20s", "rollback", &analysis)),
            (
                "apps/web/base/deployment.yaml",
                &deployment("web", "nginx:2"),
            ),
        ],
        "web 2, a longer bake",
    );
    w.passes_until(
        Duration::from_secs(30),
        "a first measurement of v2 on the canary",
        |w| {
            w.app("test-1", "web").is_some_and(|a| {
                a.release == v2
                    && a.analysis
                        .get("error-ratio")
                        .is_some_and(|r| r.measurements >= 1)
            })
        },
        |_, _, _| {},
    )
    .await;
    w.prometheus.stop();
    w.passes_until(
        Duration::from_secs(30),
        "the canary Inconclusive",
        |w| is(&w.app("test-1", "web"), &v2, Phase::Inconclusive),
        |_, _, _| {},
    )
    .await;
    let a = w.app("test-1", "web").unwrap();
    assert!(
        a.message
            .starts_with("analysis error-ratio: 2 consecutive query errors (errorLimit 2), last: "),
        "{}",
        a.message
    );
    assert_eq!(a.verified, None, "mid-bake: the bake did not complete");
    // No rollback, and nothing else applied, for longer than the bake.
    let until = Instant::now() + Duration::from_secs(22);
    w.passes_until(
        Duration::from_secs(60),
        "the bake time to pass",
        |_| Instant::now() > until,
        |_, _, _| {},
    )
    .await;
    assert!(is(&w.app("test-1", "web"), &v2, Phase::Inconclusive));
    assert!(is(&w.app("prod-1", "web"), &v1, Phase::Healthy));
    // A person decides: an approval entry for v2 through wave 1 moves it on.
    commit_files(
        &w.repo,
        &[(
            "approvals/web.yaml",
            &format!("- {{release: {v2}, through-wave: 1}}\n"),
        )],
        "approve web 2 through wave 1",
    );
    w.passes_until(
        Duration::from_secs(30),
        "prod on v2",
        |w| w.app("prod-1", "web").is_some_and(|a| a.release == v2),
        |_, _, _| {},
    )
    .await;
    assert!(
        is(&w.app("test-1", "web"), &v2, Phase::Inconclusive),
        "never rolled back"
    );
    w.shutdown().await;
}

#[test]
fn the_agent_process_measures_with_the_prometheus_of_its_config_and_wakes_for_each_measurement() {
    use rollwave::agent::config::{AgentConfig, ClusterConfig, Connection};
    use rollwave::agent::daemon::Agent;
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let mut files = vec![(
        "fleet.yaml".to_string(),
        fleet_yaml("1s", "halt", &standard_analysis()),
    )];
    files.extend(app_files("web", "nginx:1", ""));
    let (w, v1) = runtime.block_on(World::start(&files, &["test-1"]));
    let kubeconfig = w._dir.path().join("test-1.kubeconfig");
    rollwave::sim::write_kubeconfig(&kubeconfig, &[("test-1".into(), w.sims[0].base_url())])
        .unwrap();
    let config = AgentConfig {
        repo: w.repo.to_str().unwrap().to_string(),
        // Far longer than the test: the analysis wakes the passes it needs.
        interval: Duration::from_secs(600),
        heartbeat: Duration::from_secs(1),
        drift_interval: Duration::from_millis(200),
        listen: "127.0.0.1:0".parse().unwrap(),
        prometheus: Some(w.prometheus.config()),
        clusters: vec![ClusterConfig {
            name: "test-1".into(),
            connection: Connection::Kubeconfig {
                path: Some(kubeconfig),
                context: None,
            },
            prometheus: None,
        }],
        ..AgentConfig::default()
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let (metrics_tx, metrics_rx) = std::sync::mpsc::channel();
    let agent = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let agent = Agent::connect(config, true).await.unwrap();
            metrics_tx.send(agent.metrics()).unwrap();
            agent
                .run(async move {
                    let _ = stopped.await;
                })
                .await
                .unwrap();
        });
    });
    let metrics = metrics_rx.recv_timeout(Duration::from_secs(30)).unwrap();
    common::sim::eventually(Duration::from_secs(60), "v1 verified on test-1", || {
        w.app("test-1", "web")
            .is_some_and(|a| a.release == v1 && a.phase == Phase::Healthy && a.verified.is_some())
    });
    let a = w.app("test-1", "web").unwrap();
    assert!(a.analysis["error-ratio"].measurements >= 1, "{a:#?}");
    let text = metrics.encode();
    assert!(
        text.contains(
            "rollwave_analysis_value{cluster=\"test-1\",app=\"web\",metric=\"error-ratio\"}"
        ),
        "{text}"
    );
    assert!(
        text.contains("rollwave_analysis_failures_total{cluster=\"test-1\",app=\"web\",metric=\"latency-p99\"} 0"),
        "{text}"
    );
    let _ = stop.send(());
    agent.join().unwrap();
    runtime.block_on(w.shutdown());
}
