//! One reconciler test, two clusters: a fresh simulated cluster, or the real control
//! plane (`tests/k8s/`) shared by the test binary. [`on_both!`] turns an `async fn
//! (Backend)` into two tests, `<name>::simulated` and `<name>::real`, so whatever the
//! simulator shows is shown again where the answers come from Kubernetes itself.
//!
//! On the real control plane the tests of one binary take turns (write counts come
//! from the apiserver's own metrics and would mix), and each works in a namespace of its
//! own named after the test, with its inventories in `inv-<namespace>`, so what one
//! leaves behind never meets the next.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use kube::Client;
use kube::config::{KubeConfigOptions, Kubeconfig};
use rollwave::apply::health::Health;
use rollwave::apply::inventory::ObjectKey;
use rollwave::apply::retry::RetryPolicy;
use rollwave::apply::{AppRevision, Reconciler};
use rollwave::sim::{SimCluster, SimOptions, write_kubeconfig};
use serde_json::{Value, json};
use tokio::sync::{Mutex, MutexGuard};

use super::k8s::RealCluster;

/// Which cluster a test runs against.
pub enum Target {
    Sim(SimCluster),
    Real(&'static RealCluster),
}

/// A cluster, a client and a reconciler for one test; `ns` is both the namespace the
/// test's objects live in and the name of its app.
pub struct Backend {
    pub target: Target,
    pub client: Client,
    pub reconciler: Reconciler,
    pub ns: String,
    /// A kubeconfig for the CLI and kubectl.
    pub kubeconfig: PathBuf,
    _kubeconfig_dir: Option<tempfile::TempDir>,
    _turn: Option<MutexGuard<'static, ()>>,
}

/// Defines `mod $name { simulated, real }`, each running `$name(backend)`.
#[macro_export]
macro_rules! on_both {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn simulated() {
                super::$name(super::common::backend::Backend::sim(stringify!($name)).await).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn real() {
                super::$name(super::common::backend::Backend::real(stringify!($name)).await).await
            }
        }
    )*};
}

/// Revision `release` of `app`, holding `objects`, in namespace `app`, with their
/// content hash, and no tenancy policy.
pub fn rev<'a>(app: &'a str, release: &'a str, objects: &'a [Value]) -> AppRevision<'a> {
    // The hash and the objects' copy live as long as the test process: a test's
    // revisions are a few small objects each.
    let content_hash: &'a str = Box::leak(rollwave::render::content_hash(objects).into_boxed_str());
    let objects: &'a rollwave::render::Objects =
        Box::leak(Box::new(rollwave::render::Objects::from(objects.to_vec())));
    AppRevision {
        app,
        release,
        content_hash,
        objects,
        force: false,
        namespace: Some(app),
        removal: None,
        policy: None,
    }
}

/// Retries fast enough for tests, many enough for injected faults.
fn test_retry() -> RetryPolicy {
    RetryPolicy {
        attempts: 12,
        base: Duration::from_millis(5),
        max: Duration::from_millis(200),
        ..RetryPolicy::default()
    }
}

/// A DNS label from a test's name: `drift_by_another_writer` -> `drift-by-another-wri…`.
fn namespace_for(test: &str) -> String {
    let mut ns: String = test.replace('_', "-").chars().take(40).collect();
    while ns.ends_with('-') {
        ns.pop();
    }
    ns
}

impl Backend {
    /// A fresh simulated cluster whose workloads turn ready after 200 ms.
    pub async fn sim(test: &str) -> Backend {
        let ns = namespace_for(test);
        let mut options = SimOptions::named(&ns);
        options.ready_after = Duration::from_millis(200);
        options.tick = Duration::from_millis(50);
        let sim = SimCluster::start(options).await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kubeconfig");
        write_kubeconfig(&path, &[(ns.clone(), sim.base_url())]).unwrap();
        Backend::connect(Target::Sim(sim), ns, path, Some(dir), None).await
    }

    /// The binary's real control plane (started by the first test that asks), this
    /// test's turn on it, and a client with its admin kubeconfig.
    pub async fn real(test: &str) -> Backend {
        static CLUSTER: OnceLock<RealCluster> = OnceLock::new();
        static ONE_AT_A_TIME: Mutex<()> = Mutex::const_new(());
        let turn = ONE_AT_A_TIME.lock().await;
        let cluster = tokio::task::spawn_blocking(|| {
            super::sim::require_kubectl();
            CLUSTER.get_or_init(RealCluster::start)
        })
        .await
        .unwrap();
        let kubeconfig = cluster.kubeconfig().to_path_buf();
        let ns = namespace_for(test);
        Backend::connect(Target::Real(cluster), ns, kubeconfig, None, Some(turn)).await
    }

    /// A client and a reconciler (inventories in `inv-<ns>`) through `kubeconfig`.
    async fn connect(
        target: Target,
        ns: String,
        kubeconfig: PathBuf,
        kubeconfig_dir: Option<tempfile::TempDir>,
        turn: Option<MutexGuard<'static, ()>>,
    ) -> Backend {
        let kc = Kubeconfig::read_from(&kubeconfig).unwrap();
        let config = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
            .await
            .unwrap();
        let client = Client::try_from(config).unwrap();
        let reconciler =
            Reconciler::new(client.clone(), &format!("inv-{ns}")).with_retry(test_retry());
        Backend {
            target,
            client,
            reconciler,
            ns,
            kubeconfig,
            _kubeconfig_dir: kubeconfig_dir,
            _turn: turn,
        }
    }

    /// Another reconciler for the same cluster (one the test owns, to share or wrap).
    pub fn fresh_reconciler(&self) -> Reconciler {
        Reconciler::new(self.client.clone(), &format!("inv-{}", self.ns)).with_retry(test_retry())
    }

    pub fn is_real(&self) -> bool {
        matches!(self.target, Target::Real(_))
    }

    /// The simulated cluster, for what only a simulator can do (inject faults).
    pub fn sim_cluster(&self) -> Option<&SimCluster> {
        match &self.target {
            Target::Sim(sim) => Some(sim),
            Target::Real(_) => None,
        }
    }

    /// How long workloads may take to report their state: the simulator answers within
    /// a second, real controllers within tens of seconds on a busy machine.
    pub fn patience(&self) -> Duration {
        if self.is_real() {
            Duration::from_secs(120)
        } else {
            Duration::from_secs(10)
        }
    }

    /// Polls the health of `objects` until it is `want` or `limit` ends; returns the
    /// last health and why objects are not healthy.
    pub async fn health_within(
        &self,
        objects: &[Value],
        want: Health,
        limit: Duration,
    ) -> (Health, Vec<(ObjectKey, String)>) {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let health = self.reconciler.health(objects).await.unwrap();
            if health.0 == want || tokio::time::Instant::now() > deadline {
                return health;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Polls the health of `objects` until it is `want` or the backend's patience ends.
    pub async fn health_becomes(&self, objects: &[Value], want: Health) -> Health {
        self.health_within(objects, want, self.patience()).await.0
    }

    /// Write requests the cluster has served so far, once whatever the controllers
    /// were still doing has settled (on the real control plane: no write other than
    /// Leases and Events for 3 s, counted by the apiserver's `apiserver_request_total`).
    pub async fn writes(&self) -> BTreeMap<String, u64> {
        match &self.target {
            Target::Sim(sim) => BTreeMap::from([("all".to_string(), sim.stats().writes())]),
            Target::Real(cluster) => {
                let cluster: &'static RealCluster = cluster;
                tokio::task::spawn_blocking(move || {
                    cluster.wait_settled(Duration::from_secs(3), Duration::from_secs(120))
                })
                .await
                .unwrap()
            }
        }
    }

    /// Write requests served so far, without waiting for anything to settle: what a
    /// pass just did is counted (its requests were answered), so this follows a
    /// [`Backend::writes`] taken before the pass.
    pub async fn writes_now(&self) -> BTreeMap<String, u64> {
        match &self.target {
            Target::Sim(sim) => BTreeMap::from([("all".to_string(), sim.stats().writes())]),
            Target::Real(cluster) => {
                let cluster: &'static RealCluster = cluster;
                tokio::task::spawn_blocking(move || cluster.writes())
                    .await
                    .unwrap()
            }
        }
    }

    /// Requests with one of `verbs` (get, list, create, update, patch, delete; a
    /// server-side apply is a patch, dry runs count) served so far: by the simulator on
    /// any resource, by the real apiserver on one of `resources` (its controllers keep
    /// reading and writing others).
    pub async fn requests(&self, verbs: &[&str], resources: &[&str]) -> u64 {
        match &self.target {
            Target::Sim(sim) => verbs.iter().map(|v| sim.stats().requests(v)).sum(),
            Target::Real(cluster) => {
                let cluster: &'static RealCluster = cluster;
                let all = tokio::task::spawn_blocking(move || cluster.requests())
                    .await
                    .unwrap();
                let wanted: Vec<&str> = verbs
                    .iter()
                    .flat_map(|v| match *v {
                        "get" => &["GET"][..],
                        "list" => &["LIST"],
                        "create" => &["POST"],
                        "update" => &["PUT"],
                        "patch" => &["PATCH", "APPLY"],
                        "delete" => &["DELETE"],
                        other => panic!("unknown verb {other}"),
                    })
                    .copied()
                    .collect();
                all.iter()
                    .filter(|(key, _)| {
                        let key = key.strip_prefix("dry-run ").unwrap_or(key);
                        let (verb, res) = key.split_once(' ').unwrap_or((key, ""));
                        let res = res.rsplit(':').next().unwrap_or(res);
                        wanted.contains(&verb) && resources.contains(&res)
                    })
                    .map(|(_, n)| n)
                    .sum()
            }
        }
    }

    /// Runs kubectl on this cluster; returns (exit code, stdout, stderr).
    pub fn kubectl(&self, args: &[&str]) -> (i32, String, String) {
        let out = Command::new("kubectl")
            .env("KUBECONFIG", &self.kubeconfig)
            .args(args)
            .output()
            .expect("run kubectl");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// Whether `kubectl get KIND NAME -n NS` finds the object.
    pub fn exists(&self, ns: &str, kind: &str, name: &str) -> bool {
        self.kubectl(&["get", kind, name, "-n", ns]).0 == 0
    }

    /// The labels rollwave puts on the objects of this test's app.
    pub fn labels(&self) -> Value {
        json!({"app.kubernetes.io/managed-by": "rollwave", "rollwave.dev/app": self.ns})
    }

    /// A ConfigMap of this test's app.
    pub fn cm(&self, name: &str, value: &str) -> Value {
        json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": self.ns, "labels": self.labels()},
            "data": {"v": value}})
    }

    /// A Deployment of this test's app with one container.
    pub fn deployment(&self, name: &str, image: &str, replicas: Option<i64>) -> Value {
        let mut d = json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "namespace": self.ns, "labels": self.labels()},
            "spec": {"selector": {"matchLabels": {"app": name}}, "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "main", "image": image}]}}}});
        if let Some(r) = replicas {
            d["spec"]["replicas"] = json!(r);
        }
        d
    }

    /// Stops a simulated cluster; the real one lives as long as the test binary.
    pub async fn finish(self) {
        if let Target::Sim(sim) = self.target {
            sim.shutdown().await;
        }
    }
}
