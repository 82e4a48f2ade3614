//! Simulated Kubernetes clusters: an API server over HTTP that real clients (kubectl,
//! kube-rs) accept, with objects in memory, plus simulated controllers that play a
//! real cluster's: Deployments own ReplicaSets that own Pods, which the kubelet of one
//! simulated Node turns Running and Ready; Services get Endpoints and EndpointSlices;
//! namespaces their `default` ServiceAccount; StatefulSets, DaemonSets and Jobs run
//! Pods too; PVCs bind, quotas and disruption budgets get their status; fault injection for reliability tests, request accounting
//! (`GET /sim/stats`), and simulated traffic a real Prometheus can scrape
//! (`GET /sim/metrics`, [`traffic`]).
//!
//! It is a test and demo double: the agent talks to it through a kubeconfig like to any
//! cluster. What it leaves out (authentication, admission webhooks, containers that
//! run) is listed in docs/development.md, "Simulated clusters".
//!
//! ```no_run
//! # async fn demo() -> Result<(), kube_sim::SimError> {
//! use kube_sim::{SimCluster, SimOptions};
//! let cluster = SimCluster::start(SimOptions::named("test-sh-1")).await?;
//! println!("serving at {}", cluster.base_url());
//! cluster.shutdown().await;
//! # Ok(()) }
//! ```

pub mod apiserver;
pub mod controllers;
pub mod testing;
pub mod traffic;

// The paths of the modules other crates use, as before they were grouped.
pub use apiserver::{api_error, defaults, kinds, ssa, store, validate};
pub use controllers::{deployments, kubelet, workload};

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::sync::watch;

pub use apiserver::store::Store;

/// Why a simulated cluster could not start or its kubeconfig not be written.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// Binding the listening socket failed.
    #[error("cannot listen on {addr}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Writing the kubeconfig failed.
    #[error("cannot write kubeconfig {path}")]
    Kubeconfig {
        /// The file.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

/// Faults injected into API requests (not into `/sim/*`), switched at run time with
/// [`SimCluster::set_faults`] or `PUT /sim/faults`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct Faults {
    /// Fraction of requests answered 500 or 503.
    pub error_rate: f64,
    /// Fraction of requests answered 429 with `Retry-After`.
    pub throttle_rate: f64,
    /// Seconds sent in `Retry-After` with injected 429s.
    pub retry_after_seconds: u64,
    /// Fraction of requests whose connection is cut before a complete response.
    pub drop_rate: f64,
    /// Added latency per request, in milliseconds.
    pub latency_ms: u64,
    /// When true, only writes (POST, PUT, PATCH, DELETE) are affected.
    pub writes_only: bool,
}

/// Why a fault configuration is refused, naming the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct FaultsError(pub String);

impl Faults {
    /// Checks the rates are fractions that sum to at most 1.
    pub fn validate(&self) -> Result<(), FaultsError> {
        self.check().map_err(FaultsError)
    }

    fn check(&self) -> Result<(), String> {
        for (name, r) in [
            ("errorRate", self.error_rate),
            ("throttleRate", self.throttle_rate),
            ("dropRate", self.drop_rate),
        ] {
            if !(0.0..=1.0).contains(&r) {
                return Err(format!("{name} must be between 0 and 1, got {r}"));
            }
        }
        if self.error_rate + self.throttle_rate + self.drop_rate > 1.0 {
            return Err("errorRate + throttleRate + dropRate must not exceed 1".into());
        }
        Ok(())
    }
}

/// How to run one simulated cluster.
#[derive(Debug, Clone)]
pub struct SimOptions {
    /// The cluster's name (shown in `/sim/stats` and logs).
    pub name: String,
    /// Where to listen; port 0 picks a free one. Loopback by default.
    pub listen: SocketAddr,
    /// How long a workload takes to become ready after a change.
    pub ready_after: Duration,
    /// How often the workload simulator looks at workloads.
    pub tick: Duration,
    /// Interval of watch bookmarks for clients that ask for them.
    pub bookmark_interval: Duration,
    /// Watch history length; watchers further behind get 410 Gone.
    pub history: usize,
    /// Faults active from the start.
    pub faults: Faults,
}

impl SimOptions {
    /// Defaults for a cluster called `name`: loopback, any port, ready after 2 s.
    pub fn named(name: &str) -> SimOptions {
        SimOptions {
            name: name.to_string(),
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            ready_after: Duration::from_secs(2),
            tick: Duration::from_millis(100),
            bookmark_interval: Duration::from_secs(5),
            history: store::DEFAULT_HISTORY,
            faults: Faults::default(),
        }
    }
}

/// The verbs counted by `/sim/stats`.
pub const VERBS: [&str; 7] = [
    "get", "list", "watch", "create", "update", "patch", "delete",
];

/// Request counters, by verb and by resource.
#[derive(Debug, Default)]
pub struct Stats {
    verbs: [AtomicU64; 7],
    discovery: AtomicU64,
    dry_run: AtomicU64,
    errors_injected: AtomicU64,
    throttled_injected: AtomicU64,
    dropped_injected: AtomicU64,
    by_resource: Mutex<std::collections::BTreeMap<String, [u64; 7]>>,
    /// Writes to objects being served now, and the most at any time: whether a
    /// client sends its writes side by side.
    writes_in_flight: AtomicU64,
    peak_writes_in_flight: AtomicU64,
}

/// A write being served, counted in [`Stats`] until dropped.
pub(crate) struct WriteInFlight<'s>(&'s Stats);

impl Drop for WriteInFlight<'_> {
    fn drop(&mut self) {
        self.0.writes_in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Stats {
    fn count(&self, verb: &str, resource: &str, dry_run: bool) {
        if let Some(i) = VERBS.iter().position(|v| *v == verb) {
            self.verbs[i].fetch_add(1, Ordering::Relaxed);
            if let Ok(mut m) = self.by_resource.lock() {
                m.entry(resource.to_string()).or_default()[i] += 1;
            }
        }
        if dry_run {
            self.dry_run.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Counts a write to an object as being served until the guard is dropped.
    pub(crate) fn write_started(&self) -> WriteInFlight<'_> {
        let now = self.writes_in_flight.fetch_add(1, Ordering::Relaxed) + 1;
        self.peak_writes_in_flight.fetch_max(now, Ordering::Relaxed);
        WriteInFlight(self)
    }

    /// The most writes to objects (dry runs included) served at the same time so far.
    pub fn peak_writes_in_flight(&self) -> u64 {
        self.peak_writes_in_flight.load(Ordering::Relaxed)
    }

    /// Requests of one verb so far.
    pub fn requests(&self, verb: &str) -> u64 {
        VERBS
            .iter()
            .position(|v| *v == verb)
            .map(|i| self.verbs[i].load(Ordering::Relaxed))
            .unwrap_or(0)
    }

    /// Writes so far (create, update, patch, delete).
    pub fn writes(&self) -> u64 {
        ["create", "update", "patch", "delete"]
            .iter()
            .map(|v| self.requests(v))
            .sum()
    }

    fn to_json(&self, objects: usize, resource_version: u64) -> Value {
        let mut requests = serde_json::Map::new();
        for v in VERBS {
            requests.insert(v.into(), json!(self.requests(v)));
        }
        let by_resource: serde_json::Map<String, Value> = self
            .by_resource
            .lock()
            .map(|m| {
                m.iter()
                    .map(|(r, counts)| {
                        let c: serde_json::Map<String, Value> = VERBS
                            .iter()
                            .zip(counts)
                            .filter(|(_, n)| **n > 0)
                            .map(|(v, n)| (v.to_string(), json!(n)))
                            .collect();
                        (r.clone(), Value::Object(c))
                    })
                    .collect()
            })
            .unwrap_or_default();
        json!({
            "requests": requests,
            "objects": objects,
            "discovery": self.discovery.load(Ordering::Relaxed),
            "dryRun": self.dry_run.load(Ordering::Relaxed),
            "peakWritesInFlight": self.peak_writes_in_flight(),
            "injected": {
                "errors": self.errors_injected.load(Ordering::Relaxed),
                "throttled": self.throttled_injected.load(Ordering::Relaxed),
                "dropped": self.dropped_injected.load(Ordering::Relaxed),
            },
            "byResource": by_resource,
            "resourceVersion": resource_version.to_string(),
        })
    }
}

/// State shared by the HTTP handlers and the workload simulator.
pub(crate) struct Shared {
    pub(crate) name: String,
    pub(crate) store: Mutex<Store>,
    pub(crate) stats: Stats,
    pub(crate) faults: Mutex<Faults>,
    pub(crate) bookmark_interval: Duration,
    pub(crate) shutdown: watch::Receiver<bool>,
    /// Bumped to cut every open watch (a simulated network disconnect).
    pub(crate) disconnect: watch::Sender<u64>,
    /// What the simulated Deployments served, for `GET /sim/metrics`.
    pub(crate) traffic: Mutex<traffic::Traffic>,
}

impl Shared {
    pub(crate) fn lock(&self) -> std::sync::MutexGuard<'_, Store> {
        // A panic while holding the lock cannot leave a half-written object (writes
        // are a single insert), so a poisoned lock is still usable.
        self.store.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A running simulated cluster.
pub struct SimCluster {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl SimCluster {
    /// Starts the API server and the workload simulator on the current tokio runtime;
    /// returns once the socket accepts connections.
    pub async fn start(options: SimOptions) -> Result<SimCluster, SimError> {
        let listener = tokio::net::TcpListener::bind(options.listen)
            .await
            .map_err(|source| SimError::Bind {
                addr: options.listen,
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| SimError::Bind {
            addr: options.listen,
            source,
        })?;
        let (stop, stopped) = watch::channel(false);
        let shared = Arc::new(Shared {
            name: options.name.clone(),
            store: Mutex::new(Store::new(options.history)),
            stats: Stats::default(),
            faults: Mutex::new(options.faults.clone()),
            bookmark_interval: options.bookmark_interval,
            shutdown: stopped.clone(),
            disconnect: watch::channel(0).0,
            traffic: Mutex::new(traffic::Traffic::default()),
        });
        let app = apiserver::http::router(shared.clone());
        let mut server_stop = stopped.clone();
        let server = tokio::spawn(async move {
            let shutdown = async move {
                let _ = server_stop.wait_for(|s| *s).await;
            };
            if let Err(e) = axum::serve(listener, app)
                .with_graceful_shutdown(shutdown)
                .await
            {
                tracing::error!(error = %e, "simulated API server stopped");
            }
        });
        let sim = workload::spawn(
            shared.clone(),
            workload::WorkloadOptions {
                ready_after: options.ready_after,
                tick: options.tick,
            },
            stopped,
        );
        Ok(SimCluster {
            addr,
            shared,
            stop,
            tasks: vec![server, sim],
        })
    }

    /// The cluster's name.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// The address the API server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`, what a kubeconfig's `server` field holds.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Request counts so far.
    pub fn stats(&self) -> &Stats {
        &self.shared.stats
    }

    /// Number of stored objects.
    pub fn object_count(&self) -> usize {
        self.shared.lock().object_count()
    }

    /// Replaces the injected faults.
    pub fn set_faults(&self, faults: Faults) {
        *self.shared.faults.lock().unwrap_or_else(|e| e.into_inner()) = faults;
    }

    /// The Prometheus text exposition of the simulated traffic (`GET /sim/metrics`).
    pub fn traffic_metrics(&self) -> String {
        let store = self.shared.lock();
        let mut traffic = self
            .shared
            .traffic
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        traffic.advance(&store, std::time::Instant::now());
        traffic.exposition()
    }

    /// Drops the watch history so older resourceVersions get 410 Gone.
    pub fn compact(&self) {
        self.shared.lock().compact();
    }

    /// Ends every open watch stream, as a dropped connection would; clients must
    /// reconnect and resume.
    pub fn disconnect_watches(&self) {
        self.shared.disconnect.send_modify(|n| *n += 1);
    }

    /// Runs `f` on the store directly (tests that need to inspect or seed state
    /// without going through HTTP).
    pub fn with_store<T>(&self, f: impl FnOnce(&mut Store) -> T) -> T {
        f(&mut self.shared.lock())
    }

    /// Stops serving: open watches end, the listener closes.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        for t in self.tasks {
            let _ = tokio::time::timeout(Duration::from_secs(5), t).await;
        }
    }
}

/// A kubeconfig with one context per `(name, base URL)`, the first one current.
pub fn kubeconfig(clusters: &[(String, String)]) -> String {
    let mut out = String::from("apiVersion: v1\nkind: Config\nclusters:\n");
    for (name, url) in clusters {
        out.push_str(&format!("- name: {name}\n  cluster:\n    server: {url}\n"));
    }
    out.push_str("contexts:\n");
    for (name, _) in clusters {
        out.push_str(&format!(
            "- name: {name}\n  context:\n    cluster: {name}\n    user: {name}\n    namespace: default\n"
        ));
    }
    out.push_str("users:\n");
    for (name, _) in clusters {
        out.push_str(&format!("- name: {name}\n  user: {{}}\n"));
    }
    if let Some((first, _)) = clusters.first() {
        out.push_str(&format!("current-context: {first}\n"));
    }
    out
}

/// Writes a kubeconfig atomically (a temporary file renamed into place), so a reader
/// that sees the file sees all of it.
pub fn write_kubeconfig(path: &Path, clusters: &[(String, String)]) -> Result<(), SimError> {
    let err = |source| SimError::Kubeconfig {
        path: path.display().to_string(),
        source,
    };
    let tmp = path.with_extension("tmp-rollwave");
    std::fs::write(&tmp, kubeconfig(clusters)).map_err(err)?;
    std::fs::rename(&tmp, path).map_err(err)
}
