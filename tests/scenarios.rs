//! The whole mission on simulated fleets: a real `git daemon`, one simulated cluster
//! and one agent (the real agent loop, `Agent::run`) per cluster, each agent on its
//! own thread as it would be in its own process. Every assertion about order is made
//! from the status history the agents pushed, the record a user reads.
//!
//! The scenarios run with each status store: the fleet repository's status refs, and
//! a hub (one more simulated cluster) holding one object per cluster.

mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use common::git::{GitDaemon, commit_files, git, publish, work_repo};
use common::k8s::RealCluster;
use common::sim::eventually;
use rollwave::agent::clock::Clock;
use rollwave::agent::config::{AgentConfig, ClusterConfig, Connection, HubConfig};
use rollwave::agent::daemon::Agent;
use rollwave::sim::{SimCluster, SimOptions, write_kubeconfig};
use rollwave::status::refs::read_statuses;
use rollwave::status::{AppStatus, Phase};

const DEPLOYMENT: &str = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  replicas: 1\n  selector: {matchLabels: {app: web}}\n  template:\n    metadata: {labels: {app: web}}\n    spec: {containers: [{name: web, image: 'nginx:1'}]}\n";

fn deployment_with(image: &str) -> String {
    DEPLOYMENT.replace("nginx:1", image)
}

/// A fleet repository with one app `web` targeting every stage, and these clusters.
fn fleet_files(fleet_yaml: &str, clusters: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut stages: Vec<&str> = Vec::new();
    for (_, stage) in clusters {
        if !stages.contains(stage) {
            stages.push(stage);
        }
    }
    let mut files = vec![
        ("fleet.yaml".to_string(), fleet_yaml.to_string()),
        (
            "apps/web/app.yaml".into(),
            format!(
                "namespace: web\ntargets:\n  stages: [{}]\n",
                stages.join(", ")
            ),
        ),
        (
            "apps/web/base/kustomization.yaml".into(),
            "resources:\n- deployment.yaml\n".into(),
        ),
        ("apps/web/base/deployment.yaml".into(), DEPLOYMENT.into()),
    ];
    for (name, stage) in clusters {
        files.push((
            format!("clusters/{name}.yaml"),
            format!("name: {name}\nstage: {stage}\n"),
        ));
    }
    files
}

/// One agent thread; stopped (SIGTERM-like, with a final status) or killed (no last
/// word) by the harness.
struct AgentThread {
    stop: Option<tokio::sync::oneshot::Sender<bool>>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl AgentThread {
    fn spawn(config: AgentConfig) -> AgentThread {
        let (tx, rx) = tokio::sync::oneshot::channel::<bool>();
        let handle = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let agent = Agent::connect(config, true).await.unwrap();
                let (graceful_tx, graceful_rx) = tokio::sync::oneshot::channel::<()>();
                let run = agent.run(async move {
                    let _ = graceful_rx.await;
                });
                tokio::pin!(run);
                tokio::select! {
                    r = &mut run => r.unwrap(),
                    how = rx => {
                        if how.unwrap_or(false) {
                            let _ = graceful_tx.send(());
                            run.await.unwrap();
                        }
                        // Killed: the agent is dropped wherever it was waiting.
                    }
                }
            });
        });
        AgentThread {
            stop: Some(tx),
            handle: Some(handle),
        }
    }

    fn end(&mut self, graceful: bool) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(graceful);
        }
        if let Some(h) = self.handle.take() {
            h.join().expect("agent thread panicked");
        }
    }
}

impl Drop for AgentThread {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            self.end(false);
        } else if let Some(tx) = self.stop.take() {
            let _ = tx.send(false);
        }
    }
}

/// What the clusters of a scenario are.
enum Clusters {
    Simulated,
    /// A real control plane each (`tests/k8s/`): slower, and proof that what the
    /// simulated scenarios show holds on Kubernetes itself.
    Real,
}

/// Where a scenario's agents keep their statuses.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Store {
    /// Status refs in the fleet repository.
    Git,
    /// `status: {store: kubernetes}`: objects on a hub cluster.
    Hub,
}

/// One cluster of a scenario; a real control plane stops when dropped.
enum Backing {
    Sim(SimCluster),
    /// Held so the control plane runs as long as the scenario.
    Real {
        _running: RealCluster,
    },
}

/// A fleet on this machine: the Git server, the clusters and their agents.
struct Scenario {
    dir: tempfile::TempDir,
    work: PathBuf,
    bare: PathBuf,
    served: PathBuf,
    daemon: Option<GitDaemon>,
    port: u16,
    runtime: tokio::runtime::Runtime,
    clusters: BTreeMap<String, (Backing, PathBuf)>,
    agents: BTreeMap<String, AgentThread>,
    interval: Duration,
    heartbeat: Duration,
    restarts: usize,
    /// The status hub and its kubeconfig, with [`Store::Hub`].
    hub: Option<(SimCluster, PathBuf)>,
    /// The agents' clock: the system's until a scenario moves it.
    clock: Clock,
}

impl Scenario {
    fn start(
        files: &[(String, String)],
        interval: Duration,
        heartbeat: Duration,
        store: Store,
    ) -> Scenario {
        Scenario::start_on(files, interval, heartbeat, Clusters::Simulated, store)
    }

    fn start_on(
        files: &[(String, String)],
        interval: Duration,
        heartbeat: Duration,
        kind: Clusters,
        store: Store,
    ) -> Scenario {
        Scenario::start_at(files, (interval, heartbeat), kind, store, Clock::default())
    }

    /// [`Scenario::start_on`] with the agents on `clock`, which the scenario may move.
    fn start_at(
        files: &[(String, String)],
        (interval, heartbeat): (Duration, Duration),
        kind: Clusters,
        store: Store,
        clock: Clock,
    ) -> Scenario {
        let mut files = files.to_vec();
        if store == Store::Hub {
            for (path, text) in &mut files {
                if path == "fleet.yaml" {
                    text.push_str("status:\n  store: kubernetes\n");
                }
            }
        }
        // ROLLWAVE_LOG=info shows what the agents do when a scenario fails.
        if let Ok(directives) = std::env::var("ROLLWAVE_LOG") {
            let _ = tracing_subscriber::fmt()
                .with_test_writer()
                .with_env_filter(tracing_subscriber::EnvFilter::new(directives))
                .try_init();
        }
        let dir = tempfile::tempdir().unwrap();
        let work = dir.path().join("work");
        let served = dir.path().join("served");
        std::fs::create_dir_all(&served).unwrap();
        let refs: Vec<(&str, &str)> = files
            .iter()
            .map(|(p, c)| (p.as_str(), c.as_str()))
            .collect();
        work_repo(&work, &refs);
        let bare = publish(&work, &served, "fleet");
        let daemon = GitDaemon::start(&served);
        let port = daemon.port;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let mut s = Scenario {
            dir,
            work,
            bare,
            served,
            daemon: Some(daemon),
            port,
            runtime,
            clusters: BTreeMap::new(),
            agents: BTreeMap::new(),
            interval,
            heartbeat,
            restarts: 0,
            hub: None,
            clock,
        };
        if store == Store::Hub {
            s.start_hub(SimOptions::named("hub"));
        }
        let clusters: Vec<String> = files
            .iter()
            .filter_map(|(p, _)| p.strip_prefix("clusters/")?.strip_suffix(".yaml"))
            .map(String::from)
            .collect();
        match kind {
            Clusters::Simulated => {
                for name in &clusters {
                    let mut o = SimOptions::named(name);
                    o.ready_after = Duration::from_millis(300);
                    o.tick = Duration::from_millis(50);
                    let sim = s.runtime.block_on(SimCluster::start(o)).unwrap();
                    let kubeconfig = s.dir.path().join(format!("{name}.kubeconfig"));
                    write_kubeconfig(&kubeconfig, &[(name.clone(), sim.base_url())]).unwrap();
                    s.clusters
                        .insert(name.clone(), (Backing::Sim(sim), kubeconfig));
                }
            }
            Clusters::Real => {
                // Started side by side: each takes a while to answer.
                let started: Vec<RealCluster> = std::thread::scope(|scope| {
                    let starting: Vec<_> = clusters
                        .iter()
                        .map(|_| scope.spawn(RealCluster::start))
                        .collect();
                    starting.into_iter().map(|h| h.join().unwrap()).collect()
                });
                for (name, real) in clusters.iter().zip(started) {
                    let kubeconfig = real.kubeconfig().to_path_buf();
                    s.clusters
                        .insert(name.clone(), (Backing::Real { _running: real }, kubeconfig));
                }
            }
        }
        for name in &clusters {
            s.start_agent(name);
        }
        s
    }

    /// Starts the status hub (a simulated cluster with the status namespace) and
    /// writes its kubeconfig.
    fn start_hub(&mut self, options: SimOptions) {
        let sim = self.runtime.block_on(SimCluster::start(options)).unwrap();
        let kubeconfig = self.dir.path().join("hub.kubeconfig");
        write_kubeconfig(&kubeconfig, &[("hub".into(), sim.base_url())]).unwrap();
        let out = std::process::Command::new("kubectl")
            .env("KUBECONFIG", &kubeconfig)
            .args(["create", "namespace", "rollwave-status"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        self.hub = Some((sim, kubeconfig));
    }

    fn url(&self) -> String {
        format!("git://127.0.0.1:{}/fleet.git", self.port)
    }

    /// Starts `cluster`'s agent with a fresh mirror: all it knows comes from the
    /// repository and the cluster.
    fn start_agent(&mut self, cluster: &str) {
        self.start_agent_with(cluster, true)
    }

    /// Starts `cluster`'s agent as [`Scenario::start_agent`] does, without the hub in
    /// its config when `with_hub` is false (a misconfigured agent).
    fn start_agent_with(&mut self, cluster: &str, with_hub: bool) {
        self.restarts += 1;
        let config = AgentConfig {
            repo: self.url(),
            cache_dir: Some(
                self.dir
                    .path()
                    .join(format!("cache-{cluster}-{}", self.restarts)),
            ),
            interval: self.interval,
            heartbeat: self.heartbeat,
            drift_interval: Duration::from_millis(200),
            listen: "127.0.0.1:0".parse().unwrap(),
            clusters: vec![ClusterConfig {
                name: cluster.to_string(),
                connection: Connection::Kubeconfig {
                    path: Some(self.clusters[cluster].1.clone()),
                    context: None,
                },
                prometheus: None,
            }],
            hub: self
                .hub
                .as_ref()
                .filter(|_| with_hub)
                .map(|(_, kubeconfig)| HubConfig {
                    connection: Connection::Kubeconfig {
                        path: Some(kubeconfig.clone()),
                        context: None,
                    },
                    namespace: "rollwave-status".into(),
                }),
            clock: self.clock.clone(),
            ..AgentConfig::default()
        };
        self.agents
            .insert(cluster.to_string(), AgentThread::spawn(config));
    }

    fn kill_agent(&mut self, cluster: &str) {
        if let Some(mut a) = self.agents.remove(cluster) {
            a.end(false);
        }
    }

    /// Commits `files` in the work tree and pushes them (straight to the bare
    /// repository, so it works while the server is down); returns the commit.
    fn commit(&self, files: &[(&str, &str)], message: &str) -> String {
        let sha = commit_files(&self.work, files, message);
        git(&self.work, &["push", "-q", "origin", "main"]);
        sha
    }

    fn revert(&self, sha: &str) -> String {
        git(&self.work, &["revert", "--no-edit", sha]);
        git(&self.work, &["push", "-q", "origin", "main"]);
        git(&self.work, &["rev-parse", "HEAD"])
    }

    /// `web` on every cluster, from the pushed status refs or the hub.
    fn statuses(&self) -> BTreeMap<String, AppStatus> {
        self.app_statuses("web")
    }

    /// `app` on every cluster, from the pushed status refs or the hub.
    fn app_statuses(&self, app: &str) -> BTreeMap<String, AppStatus> {
        let all = match &self.hub {
            None => read_statuses(&git2::Repository::open(&self.bare).unwrap()).0,
            Some((_, kubeconfig)) => self.runtime.block_on(async {
                common::hub::connect(kubeconfig, &[])
                    .await
                    .list()
                    .await
                    .map(|(all, _)| all)
                    .unwrap_or_default()
            }),
        };
        all.into_iter()
            .filter_map(|(c, s)| Some((c, s.apps.get(app)?.clone())))
            .collect()
    }

    fn at(&self, cluster: &str) -> Option<(String, Phase)> {
        self.statuses()
            .get(cluster)
            .map(|s| (s.release.clone(), s.phase))
    }

    fn wait_all(&self, release: &str, phase: Phase, limit: Duration) {
        let deadline = std::time::Instant::now() + limit;
        loop {
            let s = self.statuses();
            let done = self.clusters.keys().all(|c| {
                s.get(c)
                    .is_some_and(|a| a.release == release && a.phase == phase)
            });
            if done {
                return;
            }
            if std::time::Instant::now() > deadline {
                let now: Vec<String> = s
                    .iter()
                    .map(|(c, a)| format!("{c}: {} {:?} {}", &a.release[..8], a.phase, a.message))
                    .collect();
                panic!(
                    "timed out after {limit:?} waiting for every cluster {phase:?} at {}; now:\n{}",
                    &release[..8],
                    now.join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The image of `web` live on `cluster`, as kubectl reads it.
    fn image(&self, cluster: &str) -> Option<String> {
        self.image_of(cluster, "web")
    }

    /// The image of Deployment `app` in namespace `app` live on `cluster`.
    fn image_of(&self, cluster: &str, app: &str) -> Option<String> {
        let out = std::process::Command::new("kubectl")
            .env("KUBECONFIG", &self.clusters[cluster].1)
            .args(["get", "deployment", app, "-n", app, "-o"])
            .arg("jsonpath={.spec.template.spec.containers[0].image}")
            .stderr(std::process::Stdio::null())
            .output()
            .ok()?;
        let image = String::from_utf8_lossy(&out.stdout).trim().to_string();
        (out.status.success() && !image.is_empty()).then_some(image)
    }
}

impl Drop for Scenario {
    fn drop(&mut self) {
        let agents = std::mem::take(&mut self.agents);
        drop(agents);
        for (_, (backing, _)) in std::mem::take(&mut self.clusters) {
            if let Backing::Sim(sim) = backing {
                self.runtime.block_on(sim.shutdown());
            }
        }
        if let Some((hub, _)) = self.hub.take() {
            self.runtime.block_on(hub.shutdown());
        }
    }
}

fn parse_time(s: &str) -> SystemTime {
    humantime::parse_rfc3339(s).unwrap()
}

/// When `status` first showed `release` (any phase), and since when it has been
/// Healthy there, from its history.
fn started_and_healthy(
    status: &AppStatus,
    release: &str,
) -> (Option<SystemTime>, Option<SystemTime>) {
    let mut entries: Vec<(String, Phase, String)> = status
        .history
        .iter()
        .map(|h| (h.release.clone(), h.phase, h.since.clone()))
        .collect();
    entries.insert(
        0,
        (status.release.clone(), status.phase, status.since.clone()),
    );
    // Oldest first.
    entries.reverse();
    let started = entries
        .iter()
        .find(|(r, _, _)| r == release)
        .map(|(_, _, s)| parse_time(s));
    let healthy = entries
        .iter()
        .find(|(r, p, _)| r == release && *p == Phase::Healthy)
        .map(|(_, _, s)| parse_time(s));
    (started, healthy)
}

/// Asserts from the status history that no cluster started `release` before every
/// cluster of the earlier waves had been Healthy there for `bake` (status times have
/// one-second resolution, hence the second of slack).
fn assert_wave_order(
    statuses: &BTreeMap<String, AppStatus>,
    waves: &[Vec<String>],
    release: &str,
    bake: Duration,
) {
    let slack = Duration::from_secs(1);
    for (w, wave) in waves.iter().enumerate().skip(1) {
        for c in wave {
            let (Some(start), _) = started_and_healthy(&statuses[c], release) else {
                panic!("{c} never ran {release}");
            };
            for earlier in waves[..w].iter().flatten() {
                let (_, Some(healthy)) = started_and_healthy(&statuses[earlier], release) else {
                    panic!("{earlier} (before wave {w}) was never Healthy at {release}");
                };
                assert!(
                    start + slack >= healthy + bake,
                    "{c} (wave {w}) started {release} at {start:?}, before {earlier} had baked \
                     (Healthy since {healthy:?}, bake {bake:?})"
                );
            }
        }
    }
}

const EXAMPLE_CLUSTERS: &[(&str, &str)] = &[
    ("test-sh-1", "test"),
    ("test-bj-1", "test"),
    ("pre-bj-1", "pre"),
    ("pre-sh-1", "pre"),
    ("prod-bj-1", "prod"),
    ("prod-bj-2", "prod"),
    ("prod-bj-3", "prod"),
    ("prod-bj-4", "prod"),
    ("prod-gz-1", "prod"),
    ("prod-gz-2", "prod"),
    ("prod-gz-3", "prod"),
    ("prod-sh-1", "prod"),
    ("prod-sh-2", "prod"),
    ("prod-sh-3", "prod"),
];

#[test]
fn fourteen_clusters_take_a_good_commit_wave_by_wave_halt_a_bad_one_at_the_canary_and_revert_at_once()
 {
    fourteen_clusters(Store::Git)
}

#[test]
fn fourteen_clusters_take_a_good_commit_wave_by_wave_halt_a_bad_one_at_the_canary_and_revert_at_once_with_the_status_hub()
 {
    fourteen_clusters(Store::Hub)
}

fn fourteen_clusters(store: Store) {
    let bake = Duration::from_secs(2);
    // The broken image is Degraded only when the progress deadline runs out, and a
    // healthy rollout outlasting it would be Degraded too and halt the good change: on
    // two loaded cores a rollout of a second took 4 s, so the deadline is far off.
    let fleet_yaml = "stages: [test, pre, prod]\nrollout:\n  canary: [test-sh-1]\n  batches: [1, 2, 7]\n  bake: 2s\n  progressDeadline: 20s\n";
    let files = fleet_files(fleet_yaml, EXAMPLE_CLUSTERS);
    let interval = Duration::from_millis(500);
    let s = Scenario::start(&files, interval, Duration::from_secs(10), store);
    let v1 = git(&s.work, &["rev-parse", "HEAD"]);
    s.wait_all(&v1, Phase::Healthy, Duration::from_secs(120));

    let tree = rollwave::tree::DirTree::open(&s.work).unwrap();
    let fleet = rollwave::fleet::load(&tree).unwrap();
    let waves = rollwave::plan::waves_for(&fleet, fleet.app("web").unwrap());
    assert_eq!(waves.len(), 7, "{waves:?}");
    assert_wave_order(&s.statuses(), &waves, &v1, bake);

    // A good change: wave by wave, never a wave early.
    let v2 = s.commit(
        &[("apps/web/base/deployment.yaml", &deployment_with("nginx:2"))],
        "web: nginx 2",
    );
    s.wait_all(&v2, Phase::Healthy, Duration::from_secs(120));
    assert_wave_order(&s.statuses(), &waves, &v2, bake);
    for c in s.clusters.keys() {
        assert_eq!(s.image(c).as_deref(), Some("nginx:2"), "{c}");
    }

    // A bad change: the canary only, Degraded, and nobody else moves.
    let v3 = s.commit(
        &[(
            "apps/web/base/deployment.yaml",
            &deployment_with("nginx:broken"),
        )],
        "web: broken",
    );
    eventually(
        Duration::from_secs(120),
        "the canary Degraded at v3",
        || s.at("test-sh-1") == Some((v3.clone(), Phase::Degraded)),
    );
    std::thread::sleep(interval * 6);
    for c in s.clusters.keys().filter(|c| *c != "test-sh-1") {
        assert_eq!(
            s.at(c),
            Some((v2.clone(), Phase::Healthy)),
            "{c} must hold at v2"
        );
        assert_eq!(s.image(c).as_deref(), Some("nginx:2"), "{c}");
    }

    // Its revert: everywhere at once, through no gate (the waves' bake is skipped).
    let v4 = s.revert(&v3);
    eventually(
        Duration::from_secs(20),
        "the canary back on nginx:2",
        || s.image("test-sh-1").as_deref() == Some("nginx:2"),
    );
    s.wait_all(&v4, Phase::Healthy, Duration::from_secs(30));
    let statuses = s.statuses();
    let later: Vec<&String> = waves.iter().skip(1).flatten().collect();
    let ungated = started_before_their_gate(&statuses, &waves, &v4, bake);
    assert!(
        ungated.len() * 2 >= later.len(),
        "the revert waited at the gates: only {ungated:?} of {later:?} started it before \
         the earlier waves had baked it"
    );
}

/// The clusters of waves after the first that started `release` before every cluster
/// of the earlier waves had been Healthy there for `bake`: what a gated rollout never
/// does ([`assert_wave_order`]), and a revert does, going everywhere at once.
fn started_before_their_gate(
    statuses: &BTreeMap<String, AppStatus>,
    waves: &[Vec<String>],
    release: &str,
    bake: Duration,
) -> Vec<String> {
    let slack = Duration::from_secs(1);
    let mut ungated = Vec::new();
    for (w, wave) in waves.iter().enumerate().skip(1) {
        let gate = waves[..w]
            .iter()
            .flatten()
            .filter_map(|earlier| started_and_healthy(&statuses[earlier], release).1)
            .max();
        for c in wave {
            let (Some(start), _) = started_and_healthy(&statuses[c], release) else {
                panic!("{c} never ran {release}");
            };
            if gate.is_some_and(|healthy| start + slack < healthy + bake) {
                ungated.push(c.clone());
            }
        }
    }
    ungated
}

/// The waves of [`small_fleet`] and [`THREE`]: test-1, then prod-1, then prod-2.
fn one_cluster_waves() -> Vec<Vec<String>> {
    ["test-1", "prod-1", "prod-2"]
        .iter()
        .map(|c| vec![c.to_string()])
        .collect()
}

fn small_fleet() -> Vec<(String, String)> {
    fleet_files(
        "stages: [test, prod]\nrollout:\n  canary: [test-1]\n  batches: [1, 1]\n  bake: 1s\n  progressDeadline: 20s\n",
        &[("test-1", "test"), ("prod-1", "prod"), ("prod-2", "prod")],
    )
}

#[test]
fn a_silent_agent_blocks_later_waves_as_unknown_and_its_restart_resumes_the_rollout() {
    silent_agent(Store::Git)
}

#[test]
fn a_silent_agent_blocks_later_waves_as_unknown_and_its_restart_resumes_the_rollout_with_the_status_hub()
 {
    silent_agent(Store::Hub)
}

fn silent_agent(store: Store) {
    let heartbeat = Duration::from_secs(1);
    let mut s = Scenario::start(&small_fleet(), Duration::from_millis(400), heartbeat, store);
    let v1 = git(&s.work, &["rev-parse", "HEAD"]);
    s.wait_all(&v1, Phase::Healthy, Duration::from_secs(60));

    // prod-1's agent dies without a last word; a change arrives.
    s.kill_agent("prod-1");
    let v2 = s.commit(
        &[("apps/web/base/deployment.yaml", &deployment_with("nginx:2"))],
        "web: nginx 2",
    );
    eventually(Duration::from_secs(30), "the canary Healthy at v2", || {
        s.at("test-1") == Some((v2.clone(), Phase::Healthy))
    });
    // Three heartbeats later prod-1 is Unknown, and prod-2 (the wave after it) waits.
    std::thread::sleep(heartbeat * 4);
    assert_eq!(s.at("prod-2"), Some((v1.clone(), Phase::Healthy)));
    assert_eq!(s.image("prod-2").as_deref(), Some("nginx:1"));
    let cache = s.dir.path().join("plan-cache");
    let mut plan = std::process::Command::new(env!("CARGO_BIN_EXE_rollwave"));
    plan.args(["plan", "--repo", &s.url()])
        .env("ROLLWAVE_CACHE", &cache);
    if let Some((_, kubeconfig)) = &s.hub {
        plan.arg("--hub-kubeconfig").arg(kubeconfig);
    }
    let out = plan.output().unwrap();
    let plan = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{plan}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        plan.contains("blocked: prod-1 Unknown (no recent status)"),
        "{plan}"
    );

    // Restarted with nothing but the repository and the cluster: it resumes.
    s.start_agent("prod-1");
    s.wait_all(&v2, Phase::Healthy, Duration::from_secs(60));
    let statuses = s.statuses();
    let waves = one_cluster_waves();
    assert_wave_order(&statuses, &waves, &v2, Duration::from_secs(1));
    // Nothing it knew was lost: its v1 history survived the restart.
    let (_, healthy_v1) = started_and_healthy(&statuses["prod-1"], &v1);
    assert!(healthy_v1.is_some(), "{:?}", statuses["prod-1"]);
    assert_eq!(s.image("prod-1").as_deref(), Some("nginx:2"));
}

#[test]
fn agents_keep_their_clusters_while_the_git_server_is_down_and_resume_when_it_returns() {
    let mut s = Scenario::start(
        &fleet_files(
            "stages: [test, prod]\nrollout:\n  canary: [test-1]\n  bake: 1s\n  progressDeadline: 20s\n",
            &[("test-1", "test"), ("prod-1", "prod")],
        ),
        Duration::from_millis(400),
        Duration::from_secs(2),
        Store::Git,
    );
    let v1 = git(&s.work, &["rev-parse", "HEAD"]);
    s.wait_all(&v1, Phase::Healthy, Duration::from_secs(60));

    s.daemon = None; // the server goes away
    std::thread::sleep(Duration::from_secs(2));
    // Someone edits the live Deployment: the agent still takes it back, on what it has.
    let kubeconfig = s.clusters["prod-1"].1.clone();
    let out = std::process::Command::new("kubectl")
        .env("KUBECONFIG", &kubeconfig)
        .args([
            "set",
            "image",
            "deployment/web",
            "-n",
            "web",
            "web=nginx:hacked",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    eventually(Duration::from_secs(20), "drift corrected offline", || {
        s.image("prod-1").as_deref() == Some("nginx:1")
    });

    // A commit made while the server is down rolls out once it is back.
    let v2 = s.commit(
        &[("apps/web/base/deployment.yaml", &deployment_with("nginx:2"))],
        "web: nginx 2",
    );
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(s.image("test-1").as_deref(), Some("nginx:1"));
    s.daemon = Some(GitDaemon::start_on(&s.served, s.port));
    s.wait_all(&v2, Phase::Healthy, Duration::from_secs(60));
    for c in ["test-1", "prod-1"] {
        assert_eq!(s.image(c).as_deref(), Some("nginx:2"), "{c}");
    }
    // Both agents are still the ones started at the beginning.
    assert_eq!(s.restarts, 2);
    s.kill_agent("test-1");
}

/// The hub holds status only: while it is away the gates that read it close (the
/// canary's status cannot reach the later waves, which wait at the old release), every
/// cluster keeps running what it runs, and the rollout resumes once it is back (a hub
/// that lost its objects is written again from the agents' own memory).
#[test]
fn a_status_hub_that_goes_away_mid_rollout_closes_the_gates_and_changes_nothing_else() {
    let heartbeat = Duration::from_secs(1);
    let interval = Duration::from_millis(400);
    let mut s = Scenario::start(&small_fleet(), interval, heartbeat, Store::Hub);
    let v1 = git(&s.work, &["rev-parse", "HEAD"]);
    s.wait_all(&v1, Phase::Healthy, Duration::from_secs(60));

    let (hub, _) = s.hub.take().unwrap();
    let address = hub.base_url();
    s.runtime.block_on(hub.shutdown());
    let v2 = s.commit(
        &[("apps/web/base/deployment.yaml", &deployment_with("nginx:2"))],
        "web: nginx 2",
    );
    // The canary needs no peer and takes it; the waves after it wait, as they would
    // for a silent canary, well past its bake.
    eventually(Duration::from_secs(30), "the canary on nginx:2", || {
        s.image("test-1").as_deref() == Some("nginx:2")
    });
    std::thread::sleep(heartbeat * 5);
    for c in ["prod-1", "prod-2"] {
        assert_eq!(s.image(c).as_deref(), Some("nginx:1"), "{c} must hold");
    }
    for (c, agent) in &s.agents {
        let alive = agent.handle.as_ref().is_some_and(|h| !h.is_finished());
        assert!(alive, "the agent of {c} must still be running");
    }

    // The hub is back, empty, at the same address: the rollout completes.
    let port: u16 = address
        .rsplit(':')
        .next()
        .unwrap()
        .trim_end_matches('/')
        .parse()
        .unwrap();
    let mut options = SimOptions::named("hub");
    options.listen = ([127, 0, 0, 1], port).into();
    s.start_hub(options);
    s.wait_all(&v2, Phase::Healthy, Duration::from_secs(60));
    let statuses = s.statuses();
    let waves = one_cluster_waves();
    assert_wave_order(&statuses, &waves, &v2, Duration::from_secs(1));
    // What the canary knew survived the hub's loss: its v1 history is written again.
    let (_, healthy_v1) = started_and_healthy(&statuses["test-1"], &v1);
    assert!(healthy_v1.is_some(), "{:?}", statuses["test-1"]);
}

/// A fleet whose statuses live on the hub is never split in silence: an agent whose
/// config lacks `hub:` publishes nothing anywhere (its passes fail with the reason),
/// so its cluster reads as Unknown and the waves after it wait; a cluster whose agent
/// still writes status refs (an older version) is named by `rollwave status`.
#[test]
fn an_agent_without_the_hub_in_a_hub_fleet_is_reported_and_never_splits_the_fleet() {
    let heartbeat = Duration::from_secs(1);
    let mut s = Scenario::start(
        &small_fleet(),
        Duration::from_millis(400),
        heartbeat,
        Store::Hub,
    );
    let v1 = git(&s.work, &["rev-parse", "HEAD"]);
    s.wait_all(&v1, Phase::Healthy, Duration::from_secs(60));

    s.kill_agent("prod-1");
    s.start_agent_with("prod-1", false);
    let v2 = s.commit(
        &[("apps/web/base/deployment.yaml", &deployment_with("nginx:2"))],
        "web: nginx 2",
    );
    eventually(Duration::from_secs(30), "the canary Healthy at v2", || {
        s.at("test-1") == Some((v2.clone(), Phase::Healthy))
    });
    std::thread::sleep(heartbeat * 5);
    assert_eq!(s.image("prod-1").as_deref(), Some("nginx:1"));
    assert_eq!(s.image("prod-2").as_deref(), Some("nginx:1"));
    let hub_kubeconfig = s.hub.as_ref().unwrap().1.clone();
    let cli = |command: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_rollwave"))
            .args([command, "--repo", &s.url(), "--hub-kubeconfig"])
            .arg(&hub_kubeconfig)
            .env("ROLLWAVE_CACHE", s.dir.path().join("cli-cache"))
            .output()
            .unwrap()
    };
    let out = cli("plan");
    let plan = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{plan}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        plan.contains("blocked: prod-1 Unknown (no recent status)"),
        "{plan}"
    );
    let refs = git2::Repository::open(&s.bare).unwrap();
    let (before, _) = read_statuses(&refs);
    assert!(before.is_empty(), "nothing is written to Git: {before:?}");

    // prod-1's agent, an older version, writes status refs instead: `rollwave status`
    // names its cluster (its object on the hub is stale since its restart).
    let mut stray = s.runtime.block_on(async {
        common::hub::connect(&hub_kubeconfig, &[])
            .await
            .list()
            .await
            .unwrap()
            .0
            .remove("prod-1")
            .unwrap()
    });
    stray.heartbeat = humantime::format_rfc3339_millis(SystemTime::now()).to_string();
    rollwave::status::refs::write_status(&refs, &stray).unwrap();
    let out = cli("status");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("cluster 'prod-1' publishes its status to the Git status refs")
            && err.contains("needs `hub:`"),
        "{err}"
    );
    assert!(!err.contains("cluster 'test-1'"), "{err}");
}

#[test]
fn an_app_removed_from_a_clusters_targets_is_orphaned_there_not_deleted() {
    removed_app(Store::Git)
}

#[test]
fn an_app_removed_from_a_clusters_targets_is_orphaned_there_not_deleted_with_the_status_hub() {
    removed_app(Store::Hub)
}

fn removed_app(store: Store) {
    let s = Scenario::start(
        &fleet_files(
            "stages: [test, prod]\nrollout:\n  canary: [test-1]\n  bake: 1s\n  progressDeadline: 20s\n",
            &[("test-1", "test"), ("prod-1", "prod")],
        ),
        Duration::from_millis(400),
        Duration::from_secs(2),
        store,
    );
    let v1 = git(&s.work, &["rev-parse", "HEAD"]);
    s.wait_all(&v1, Phase::Healthy, Duration::from_secs(60));
    s.commit(
        &[(
            "apps/web/app.yaml",
            "namespace: web\ntargets:\n  stages: [test]\n",
        )],
        "web: test only",
    );
    let inventory = |cluster: &str| {
        let out = std::process::Command::new("kubectl")
            .env("KUBECONFIG", &s.clusters[cluster].1)
            .args([
                "get",
                "configmap",
                "rollwave-inventory-web",
                "-n",
                "rollwave-system",
            ])
            .output()
            .unwrap();
        out.status.success()
    };
    eventually(Duration::from_secs(30), "prod-1 to let web go", || {
        !inventory("prod-1") && !s.statuses().contains_key("prod-1")
    });
    assert_eq!(
        s.image("prod-1").as_deref(),
        Some("nginx:1"),
        "left running"
    );
    assert!(inventory("test-1"), "test-1 still manages web");
    assert_eq!(s.image("test-1").as_deref(), Some("nginx:1"));
}

/// The commit that used to crash every agent of a fleet (a template whose partials call
/// each other overflowed the stack of whoever rendered it) is now an error of one app
/// on the canary: every agent keeps running, later waves never take it, its revert
/// heals.
#[test]
fn a_recursive_partial_is_a_render_failure_at_the_canary_and_never_a_fleet_outage() {
    recursive_partial(Store::Git)
}

#[test]
fn a_recursive_partial_is_a_render_failure_at_the_canary_and_never_a_fleet_outage_with_the_status_hub()
 {
    recursive_partial(Store::Hub)
}

fn recursive_partial(store: Store) {
    let interval = Duration::from_millis(400);
    let s = Scenario::start(&small_fleet(), interval, Duration::from_secs(2), store);
    let v1 = git(&s.work, &["rev-parse", "HEAD"]);
    s.wait_all(&v1, Phase::Healthy, Duration::from_secs(60));

    let bad = s.commit(
        &[
            (
                "apps/web/base/kustomization.yaml",
                "resources:\n- deployment.yaml\n- cm.yaml\n",
            ),
            (
                "apps/web/base/cm.yaml.hbs",
                "{{#*inline \"a\"}}{{> b}}{{/inline}}{{#*inline \"b\"}}{{> a}}{{/inline}}apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: web\ndata:\n  x: \"{{> a}}\"\n",
            ),
        ],
        "web: a template with recursive partials",
    );
    eventually(
        Duration::from_secs(30),
        "the canary in Error at the bad commit",
        || {
            s.statuses().get("test-1").is_some_and(|a| {
                a.release == bad
                    && a.phase == Phase::Error
                    && a.message.contains("partial 'a' calls itself (a -> b -> a)")
            })
        },
    );
    std::thread::sleep(interval * 6);
    for c in ["prod-1", "prod-2"] {
        assert_eq!(s.at(c), Some((v1.clone(), Phase::Healthy)), "{c} must hold");
    }
    for (c, agent) in &s.agents {
        let alive = agent.handle.as_ref().is_some_and(|h| !h.is_finished());
        assert!(alive, "the agent of {c} must still be running");
    }

    let fixed = s.revert(&bad);
    s.wait_all(&fixed, Phase::Healthy, Duration::from_secs(30));
    assert_eq!(s.image("test-1").as_deref(), Some("nginx:1"));
}

#[test]
fn three_real_control_planes_take_a_release_canary_first_halt_a_broken_one_and_follow_its_revert() {
    common::sim::require_kubectl();
    // The app's own deadline is long: Degraded here can only come from the real
    // deployment controller's ProgressDeadlineExceeded (the Deployment's 10 s).
    let fleet_yaml = "stages: [test, prod]\nrollout:\n  canary: [real-test]\n  batches: [1, 1]\n  bake: 2s\n  progressDeadline: 10m\n";
    let clusters = [
        ("real-test", "test"),
        ("real-prod-a", "prod"),
        ("real-prod-b", "prod"),
    ];
    let mut files = fleet_files(fleet_yaml, &clusters);
    let with_deadline = |image: &str| {
        deployment_with(image).replace(
            "  replicas: 1\n",
            "  replicas: 1\n  progressDeadlineSeconds: 10\n",
        )
    };
    for (path, content) in &mut files {
        if path == "apps/web/base/deployment.yaml" {
            *content = with_deadline("nginx:1");
        }
    }
    let interval = Duration::from_secs(1);
    let s = Scenario::start_on(
        &files,
        interval,
        Duration::from_secs(15),
        Clusters::Real,
        Store::Git,
    );
    let v1 = git(&s.work, &["rev-parse", "HEAD"]);
    s.wait_all(&v1, Phase::Healthy, Duration::from_secs(300));

    let tree = rollwave::tree::DirTree::open(&s.work).unwrap();
    let fleet = rollwave::fleet::load(&tree).unwrap();
    let waves = rollwave::plan::waves_for(&fleet, fleet.app("web").unwrap());
    assert_eq!(
        waves,
        [vec!["real-test"], vec!["real-prod-a"], vec!["real-prod-b"]]
            .map(|w| w.into_iter().map(String::from).collect::<Vec<_>>())
    );

    // A good change: the canary, then one wave after the other, each after the bake.
    let v2 = s.commit(
        &[("apps/web/base/deployment.yaml", &with_deadline("nginx:2"))],
        "web: nginx 2",
    );
    s.wait_all(&v2, Phase::Healthy, Duration::from_secs(300));
    assert_wave_order(&s.statuses(), &waves, &v2, Duration::from_secs(2));
    for c in s.clusters.keys() {
        assert_eq!(s.image(c).as_deref(), Some("nginx:2"), "{c}");
    }

    // A broken image: its Pods never turn Ready, the deployment controller gives up
    // after 10 s, and the canary halts the release there.
    let v3 = s.commit(
        &[(
            "apps/web/base/deployment.yaml",
            &with_deadline("nginx:broken"),
        )],
        "web: broken",
    );
    eventually(
        Duration::from_secs(180),
        "the canary Degraded at v3",
        || s.at("real-test") == Some((v3.clone(), Phase::Degraded)),
    );
    let canary = s.statuses()["real-test"].clone();
    assert!(
        canary.message.contains("has timed out progressing"),
        "Degraded from the controller's condition: {}",
        canary.message
    );
    std::thread::sleep(interval * 8);
    for c in ["real-prod-a", "real-prod-b"] {
        assert_eq!(
            s.at(c),
            Some((v2.clone(), Phase::Healthy)),
            "{c} must hold at v2"
        );
        assert_eq!(s.image(c).as_deref(), Some("nginx:2"), "{c}");
    }

    // Its revert reaches all three: the canary at once, the others stay where they are.
    let v4 = s.revert(&v3);
    eventually(
        Duration::from_secs(60),
        "the canary back on nginx:2",
        || s.image("real-test").as_deref() == Some("nginx:2"),
    );
    s.wait_all(&v4, Phase::Healthy, Duration::from_secs(300));
    for c in s.clusters.keys() {
        assert_eq!(s.image(c).as_deref(), Some("nginx:2"), "{c}");
    }
}

/// `rollwave plan` of the scenario's repository as of `at` (the agents' clock).
fn plan_at(s: &Scenario, at: &str) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_rollwave"))
        .args(["plan", "--repo", &s.url(), "--at", at])
        .env("ROLLWAVE_CACHE", s.dir.path().join("plan-cache"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

/// Polls `interval` apart for as long as `n` polls take, asserting `holds` at each:
/// what must stay true while the agents run (no deadline to meet, only a span).
fn stays(n: u32, interval: Duration, what: &str, holds: impl Fn() -> bool) {
    for _ in 0..n {
        assert!(holds(), "{what}");
        std::thread::sleep(interval);
    }
    assert!(holds(), "{what}");
}

const THREE: [(&str, &str); 3] = [("test-1", "test"), ("prod-1", "prod"), ("prod-2", "prod")];

#[test]
fn a_deny_window_holds_a_rollout_lets_a_revert_through_and_the_rollout_resumes_when_it_ends() {
    // Berlin's 09:00 in January is 08:00 UTC: the window is 08:00 to 09:00 UTC.
    let files = fleet_files(
        "stages: [test, prod]\nrollout:\n  canary: [test-1]\n  batches: [1, 1]\n  bake: 1s\n  progressDeadline: 20s\nwindows:\n- deny: {schedule: '0 9 * * *', duration: 1h, timeZone: Europe/Berlin}\n",
        &THREE,
    );
    let clock = Clock::adjustable();
    clock.set(parse_time("2030-01-07T07:00:00Z"));
    let interval = Duration::from_millis(400);
    let s = Scenario::start_at(
        &files,
        (interval, Duration::from_secs(1)),
        Clusters::Simulated,
        Store::Git,
        clock.clone(),
    );
    let v1 = git(&s.work, &["rev-parse", "HEAD"]);
    s.wait_all(&v1, Phase::Healthy, Duration::from_secs(60));
    let v2 = s.commit(
        &[("apps/web/base/deployment.yaml", &deployment_with("nginx:2"))],
        "web: nginx 2",
    );
    s.wait_all(&v2, Phase::Healthy, Duration::from_secs(60));

    // Inside the window: a revert goes through at once, everywhere.
    clock.set(parse_time("2030-01-07T08:00:30Z"));
    let reverted = s.revert(&v2);
    s.wait_all(&reverted, Phase::Healthy, Duration::from_secs(60));
    for c in ["test-1", "prod-1", "prod-2"] {
        assert_eq!(s.image(c).as_deref(), Some("nginx:1"), "{c}");
    }
    // A new release waits, even at the canary.
    let v3 = s.commit(
        &[("apps/web/base/deployment.yaml", &deployment_with("nginx:3"))],
        "web: nginx 3",
    );
    stays(8, interval, "no cluster takes v3 inside the window", || {
        s.statuses().values().all(|a| a.release == reverted)
    });
    let plan = plan_at(&s, "2030-01-07T08:01:00Z");
    assert!(
        plan.contains("outside window: inside the deny window '0 9 * * *' for 1h (Europe/Berlin) at fleet.yaml:8; opens at 2030-01-07T09:00:00Z"),
        "{plan}"
    );

    // The window ends: the release rolls out wave by wave.
    clock.set(parse_time("2030-01-07T09:00:01Z"));
    s.wait_all(&v3, Phase::Healthy, Duration::from_secs(60));
    let statuses = s.statuses();
    let waves = one_cluster_waves();
    assert_wave_order(&statuses, &waves, &v3, Duration::from_secs(1));
    for (c, a) in &statuses {
        let (started, _) = started_and_healthy(a, &v3);
        assert!(
            started.is_some_and(|t| t >= parse_time("2030-01-07T09:00:00Z")),
            "{c} started v3 at {started:?}, inside the window"
        );
    }
}

#[test]
fn a_freeze_during_a_rollout_halts_every_agent_while_a_revert_reaches_every_cluster() {
    let files = fleet_files(
        "stages: [test, prod]\nrollout:\n  canary: [test-1]\n  batches: [1, 1]\n  bake: 8s\n  progressDeadline: 20s\n",
        &THREE,
    );
    let interval = Duration::from_millis(400);
    let s = Scenario::start(&files, interval, Duration::from_secs(1), Store::Git);
    let v1 = git(&s.work, &["rev-parse", "HEAD"]);
    s.wait_all(&v1, Phase::Healthy, Duration::from_secs(60));
    let v2 = s.commit(
        &[("apps/web/base/deployment.yaml", &deployment_with("nginx:2"))],
        "web: nginx 2",
    );
    eventually(Duration::from_secs(60), "the canary Healthy at v2", || {
        s.at("test-1") == Some((v2.clone(), Phase::Healthy))
    });
    // Stop the line while the canary bakes: one command, one commit, one push.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_rollwave"))
        .args([
            "freeze",
            "--reason",
            "INC-1: payment errors",
            "--by",
            "alice",
            "--repo",
        ])
        .arg(&s.work)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    git(&s.work, &["push", "-q", "origin", "main"]);
    // The bake ends and more: prod-1's gate would be open, but no agent opens it.
    stays(
        30,
        interval,
        "prod-1 and prod-2 stay at v1 under the freeze",
        || {
            let st = s.statuses();
            ["prod-1", "prod-2"].iter().all(|c| st[*c].release == v1)
        },
    );
    assert_eq!(s.image("prod-1").as_deref(), Some("nginx:1"));
    let now = humantime::format_rfc3339_seconds(SystemTime::now()).to_string();
    assert!(
        plan_at(&s, &now).contains("frozen: INC-1: payment errors (alice)"),
        "the plan names the freeze"
    );
    // The fix is a revert: it goes through the freeze to every cluster.
    let reverted = s.revert(&v2);
    s.wait_all(&reverted, Phase::Healthy, Duration::from_secs(60));
    for c in ["test-1", "prod-1", "prod-2"] {
        assert_eq!(s.image(c).as_deref(), Some("nginx:1"), "{c}");
    }
}

#[test]
fn depends_on_holds_an_app_on_each_cluster_until_its_platform_is_healthy_there() {
    let platform = DEPLOYMENT.replace("web", "platform");
    let mut files = fleet_files(
        "stages: [test, prod]\nrollout:\n  canary: [test-1]\n  batches: [1, 1]\n  bake: 1s\n  progressDeadline: 60s\n",
        &THREE,
    );
    for (path, text) in &mut files {
        if path == "apps/web/app.yaml" {
            text.push_str("dependsOn: [platform]\n");
        }
    }
    files.extend([
        (
            "apps/platform/app.yaml".to_string(),
            "namespace: platform\ntargets:\n  stages: [test, prod]\n".to_string(),
        ),
        (
            "apps/platform/base/kustomization.yaml".into(),
            "resources:\n- deployment.yaml\n".into(),
        ),
        (
            "apps/platform/base/deployment.yaml".into(),
            platform.clone(),
        ),
    ]);
    let interval = Duration::from_millis(400);
    let s = Scenario::start(&files, interval, Duration::from_secs(1), Store::Git);
    let v1 = git(&s.work, &["rev-parse", "HEAD"]);
    s.wait_all(&v1, Phase::Healthy, Duration::from_secs(60));
    // One commit changes both: the platform's new image never becomes ready.
    let v2 = s.commit(
        &[
            (
                "apps/platform/base/deployment.yaml",
                &platform.replace("nginx:1", "nginx:broken"),
            ),
            ("apps/web/base/deployment.yaml", &deployment_with("nginx:2")),
        ],
        "platform and web: v2",
    );
    eventually(
        Duration::from_secs(60),
        "the platform Progressing at v2 on the canary",
        || {
            s.app_statuses("platform")
                .get("test-1")
                .is_some_and(|a| a.release == v2 && a.phase == Phase::Progressing)
        },
    );
    stays(
        8,
        interval,
        "web stays at v1 while the platform is not Healthy",
        || s.statuses().values().all(|a| a.release == v1),
    );
    assert_eq!(s.image("test-1").as_deref(), Some("nginx:1"));
    let now = humantime::format_rfc3339_seconds(SystemTime::now()).to_string();
    let plan = plan_at(&s, &now);
    assert!(plan.contains("dependsOn: platform"), "{plan}");
    // The platform is fixed: web follows it, cluster by cluster.
    let v3 = s.commit(
        &[(
            "apps/platform/base/deployment.yaml",
            &platform.replace("nginx:1", "nginx:3"),
        )],
        "platform: fixed",
    );
    // v3 does not touch web: web's release stays v2, now let through.
    s.wait_all(&v2, Phase::Healthy, Duration::from_secs(90));
    let platforms = s.app_statuses("platform");
    let web = s.statuses();
    for c in ["test-1", "prod-1", "prod-2"] {
        assert_eq!(s.image(c).as_deref(), Some("nginx:2"), "{c}");
        assert_eq!(s.image_of(c, "platform").as_deref(), Some("nginx:3"), "{c}");
        let (web_started, _) = started_and_healthy(&web[c], &v2);
        let (_, platform_healthy) = started_and_healthy(&platforms[c], &v3);
        assert!(
            web_started >= platform_healthy && platform_healthy.is_some(),
            "{c}: web started v2 at {web_started:?}, the platform was Healthy at v3 at {platform_healthy:?}"
        );
    }
}
