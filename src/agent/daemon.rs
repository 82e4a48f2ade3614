//! The agent process: one [`AgentConfig`], one or several clusters, and the loop
//! fetch → plan → render → apply → report.
//!
//! A pass fetches the repository once and then runs every cluster's pass against that
//! commit. Passes are started by the poll timer, a verified push webhook, a change in a
//! local repository's refs (file watch), or a change to a managed object (drift); wakes
//! that arrive during a pass are coalesced into one more pass. On SIGTERM the current
//! pass is finished (an apply is never cut in the middle) and each cluster's status is
//! written and pushed one last time.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::SystemTime;

use anyhow::Context;
use kube::config::{KubeConfigOptions, Kubeconfig};

use super::config::{AgentConfig, Connection};
use super::rollout::ClusterAgent;
use super::{AppResult, Memory, PassReport, Source, reconcile_cluster_with};
use crate::apply::Reconciler;
use crate::apply::drift::LiveCache;
use crate::cli::history::{GitAccess, GitRepo};
use crate::metrics::Metrics;
use crate::source::trigger::{Wake, poll, watch_repository, webhook_router};
use crate::source::verify::TrustPolicy;

/// A client for one cluster.
pub async fn client_for(connection: &Connection) -> anyhow::Result<kube::Client> {
    let config = match connection {
        Connection::InCluster => kube::Config::incluster()
            .context("inCluster: not running in a Kubernetes pod (no service account token)")?,
        Connection::Kubeconfig { path, context } => {
            let options = KubeConfigOptions {
                context: context.clone(),
                ..Default::default()
            };
            match path {
                Some(path) => {
                    let kc = Kubeconfig::read_from(path)
                        .with_context(|| format!("cannot read kubeconfig {}", path.display()))?;
                    kube::Config::from_custom_kubeconfig(kc, &options)
                        .await
                        .with_context(|| format!("kubeconfig {}", path.display()))?
                }
                None if context.is_some() => kube::Config::from_kubeconfig(&options)
                    .await
                    .context("cannot load the kubeconfig context")?,
                None => kube::Config::infer().await.context(
                    "no cluster configured: give a kubeconfig, set KUBECONFIG, or run in a cluster",
                )?,
            }
        }
    };
    kube::Client::try_from(config).context("cannot create a Kubernetes client")
}

/// How one cluster's passes are made.
enum Runner {
    /// The rollout planner decides each app's release (a Git repository).
    Rollout(Box<ClusterAgent>),
    /// The tree is applied as it is (a plain directory, or a fixed `rev`).
    Direct(Box<(Reconciler, Memory)>),
}

struct Managed {
    name: String,
    runner: Runner,
    cache: Option<Arc<LiveCache>>,
}

/// An agent process: its configuration and one runner per cluster.
pub struct Agent {
    config: AgentConfig,
    /// Decided once at start-up, so every pass matches how the clusters' runners were
    /// built ([`rollout_mode`]).
    rollout: bool,
    access: GitAccess,
    /// Keys the branch tip must be signed with, when configured.
    trust: Option<TrustPolicy>,
    /// The last tip refused, so a refusal is logged once, not every pass.
    refused_tip: Option<git2::Oid>,
    clusters: Vec<Managed>,
    metrics: Arc<Metrics>,
}

/// Whether `config` names a Git history to plan rollouts with (a URL, or a Git
/// repository path, and no fixed revision).
pub fn rollout_mode(config: &AgentConfig) -> bool {
    config.rev.is_none()
        && (crate::source::is_remote_url(&config.repo)
            || git2::Repository::open(&config.repo).is_ok())
}

impl Agent {
    /// Connects to every cluster of `config`. With `watch`, managed objects are
    /// watched (drift wakes a pass and steady-state passes read the cache); without it
    /// (one-shot runs) objects are read when needed. A fetch failure is an error
    /// without `watch`, and a warning with it (the agent keeps running on the
    /// mirror's last state).
    pub async fn connect(config: AgentConfig, watch: bool) -> anyhow::Result<Agent> {
        let metrics = Arc::new(Metrics::new());
        let rollout = rollout_mode(&config);
        let histories = super::rollout::SharedHistories::default();
        let mut clusters = Vec::new();
        for c in &config.clusters {
            let client = client_for(&c.connection)
                .await
                .with_context(|| format!("cluster '{}'", c.name))?;
            let cache = watch.then(|| LiveCache::new(client.clone()));
            let mut reconciler = Reconciler::new(client, &config.namespace);
            if let Some(cache) = &cache {
                reconciler = reconciler.with_cache(cache.clone());
            }
            let runner = if rollout {
                let mut agent = ClusterAgent::new(&c.name, reconciler, config.heartbeat)
                    .with_metrics(metrics.clone())
                    .with_histories(histories.clone());
                agent.push = config.push_status;
                Runner::Rollout(Box::new(agent))
            } else {
                Runner::Direct(Box::new((reconciler, Memory::default())))
            };
            clusters.push(Managed {
                name: c.name.clone(),
                runner,
                cache,
            });
        }
        let access = GitAccess {
            auth: config.auth.clone(),
            cache_dir: config
                .cache_dir
                .clone()
                .unwrap_or_else(crate::source::default_cache_dir),
            allow_stale: watch,
        };
        let trust = match &config.verify {
            Some(v) => Some(
                TrustPolicy::load(v.allowed_signers.as_deref(), v.openpgp_keyring.as_deref())
                    .context("repo.verify")?,
            ),
            None => None,
        };
        Ok(Agent {
            config,
            rollout,
            access,
            trust,
            refused_tip: None,
            clusters,
            metrics,
        })
    }

    /// The clusters managed, in order.
    pub fn cluster_names(&self) -> Vec<&str> {
        self.clusters.iter().map(|c| c.name.as_str()).collect()
    }

    /// The agent's metrics.
    pub fn metrics(&self) -> Arc<Metrics> {
        self.metrics.clone()
    }

    /// One pass over every cluster: one fetch, then each cluster's pass in order. A
    /// cluster whose pass fails does not stop the others.
    pub async fn pass(&mut self) -> Vec<(String, anyhow::Result<PassReport>)> {
        let now = SystemTime::now();
        let config = &self.config;
        let mut out = Vec::new();
        if self.rollout {
            let opened = GitRepo::open_with(&config.repo, None, &config.branch, &self.access)
                .and_then(|g| self.trusted(g));
            let g = match opened {
                Ok(g) => g,
                Err(e) => return self.failed_everywhere(&e),
            };
            for c in &mut self.clusters {
                if let Runner::Rollout(agent) = &mut c.runner {
                    out.push((c.name.clone(), agent.pass_on(&g, now).await));
                }
            }
            return out;
        }
        let opened = match crate::cli::repo::open_with(
            &config.repo,
            config.rev.as_deref(),
            &config.branch,
            &self.access,
        ) {
            Ok(o) => o,
            Err(e) => return self.failed_everywhere(&e),
        };
        let tree = opened.tree.as_ref();
        let fleet = match crate::fleet::load(tree) {
            Ok(f) => f,
            Err(e) => return self.failed_everywhere(&anyhow::Error::from(e)),
        };
        let release_of = |app: &str, files: &std::collections::BTreeSet<crate::tree::RepoPath>| {
            opened.release_of(&crate::source::history::Inputs::for_app(app, files))
        };
        let source = Source {
            tree,
            fleet: &fleet,
            release_of: &release_of,
        };
        for c in &mut self.clusters {
            if let Runner::Direct(direct) = &mut c.runner {
                let (reconciler, memory) = &mut **direct;
                let r = reconcile_cluster_with(
                    &source,
                    &c.name,
                    reconciler,
                    memory,
                    Some(&self.metrics),
                )
                .await
                .map_err(anyhow::Error::from);
                out.push((c.name.clone(), r));
            }
        }
        out
    }

    /// `g` moved back to the newest commit of its first-parent history signed by a
    /// trusted key, when signatures are checked: an unsigned or foreign tip is not
    /// applied, and the agent stays where the trusted history ends.
    fn trusted(&mut self, mut g: GitRepo) -> anyhow::Result<GitRepo> {
        let Some(trust) = &self.trust else {
            return Ok(g);
        };
        let repo = g.repository()?;
        let history = crate::source::history::first_parent_history(
            &repo,
            g.head,
            crate::cli::history::HISTORY_LIMIT,
        )?;
        let (trusted, refused) = trust.newest_trusted(&repo, &history);
        let Some(trusted) = trusted else {
            anyhow::bail!(
                "no commit of the last {} on the branch is signed by a trusted key ({})",
                history.len(),
                refused.first().map(|e| e.to_string()).unwrap_or_default()
            );
        };
        if trusted != g.head && self.refused_tip != Some(g.head) {
            for e in &refused {
                tracing::warn!(error = %e, %trusted, "commit not applied: staying on the newest trusted commit");
            }
        }
        self.refused_tip = (trusted != g.head).then_some(g.head);
        g.head = trusted;
        Ok(g)
    }

    /// The same failure (the repository could not be read) for every cluster.
    fn failed_everywhere(&self, e: &anyhow::Error) -> Vec<(String, anyhow::Result<PassReport>)> {
        let message = format!("{e:#}");
        self.clusters
            .iter()
            .map(|c| (c.name.clone(), Err(anyhow::anyhow!("{message}"))))
            .collect()
    }

    /// Writes and pushes every cluster's last status with a fresh heartbeat.
    pub fn flush(&mut self) {
        if !self.rollout {
            return;
        }
        let access = GitAccess {
            allow_stale: true,
            ..self.access.clone()
        };
        let g = match GitRepo::open_with(&self.config.repo, None, &self.config.branch, &access) {
            Ok(g) => g,
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), "final status not written");
                return;
            }
        };
        for c in &mut self.clusters {
            if let Runner::Rollout(agent) = &mut c.runner {
                match agent.flush(&g, SystemTime::now()) {
                    Ok(()) if agent.push_pending() => {
                        tracing::warn!(cluster = %c.name, "final status written but not pushed")
                    }
                    Ok(()) => tracing::info!(cluster = %c.name, "final status written"),
                    Err(e) => {
                        tracing::warn!(cluster = %c.name, error = %format!("{e:#}"), "final status not written")
                    }
                }
            }
        }
    }

    /// Runs passes until `stop` completes, serving `/metrics`, `/healthz`, `/readyz`
    /// and (with a webhook secret) `POST /hooks/git` on the configured address.
    pub async fn run(mut self, stop: impl Future<Output = ()>) -> anyhow::Result<()> {
        let wake = Wake::new();
        let ready = Arc::new(AtomicBool::new(false));
        let listener = tokio::net::TcpListener::bind(self.config.listen)
            .await
            .with_context(|| format!("cannot listen on {}", self.config.listen))?;
        let mut routes = endpoints(self.metrics.clone(), ready.clone());
        if self.config.webhook.enabled() {
            let secrets = self.config.webhook_secrets()?;
            routes = routes.merge(webhook_router(secrets, wake.clone()));
        }
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, routes).await;
        });
        let poller = tokio::spawn(poll(self.config.interval, wake.clone()));
        // A local repository is watched: a commit there starts a pass at once.
        let _watcher = if crate::source::is_remote_url(&self.config.repo) {
            None
        } else {
            match watch_repository(std::path::Path::new(&self.config.repo), wake.clone()) {
                Ok(w) => Some(w),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot watch the repository; polling only");
                    None
                }
            }
        };
        let caches: Vec<Arc<LiveCache>> = self
            .clusters
            .iter()
            .filter_map(|c| c.cache.clone())
            .collect();
        tracing::info!(
            repo = %crate::source::redact_url(&self.config.repo),
            clusters = self.clusters.len(),
            listen = %self.config.listen,
            "agent started"
        );
        let mut stop = std::pin::pin!(stop);
        loop {
            // A failed pass is reported and retried next time: the agent keeps running
            // on what it applied last.
            for (cluster, result) in self.pass().await {
                log_pass(&cluster, &result);
            }
            ready.store(true, Ordering::Release);
            release_freed_memory();
            tokio::select! {
                biased;
                _ = &mut stop => break,
                _ = wake.woken() => {}
                apps = any_drift(&caches) => {
                    tracing::debug!(apps = apps.len(), "live objects changed; reconciling");
                    // Drift passes are rate-limited; a commit or a stop is not held up.
                    tokio::select! {
                        biased;
                        _ = &mut stop => break,
                        _ = wake.woken() => {}
                        _ = tokio::time::sleep(self.config.drift_interval) => {}
                    }
                }
            }
        }
        tracing::info!("stopping");
        self.flush();
        poller.abort();
        server.abort();
        Ok(())
    }
}

/// Waits until a managed object changed on any cluster.
async fn any_drift(caches: &[Arc<LiveCache>]) -> std::collections::BTreeSet<String> {
    if caches.is_empty() {
        return std::future::pending().await;
    }
    let waits = caches.iter().map(|c| Box::pin(c.drifted()));
    futures_util::future::select_all(waits).await.0
}

/// Logs one cluster's pass: changes and failures at info/warn, the rest at debug.
fn log_pass(cluster: &str, result: &anyhow::Result<PassReport>) {
    let report = match result {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(%cluster, error = %format!("{e:#}"), "pass failed");
            return;
        }
    };
    for (app, r) in &report.apps {
        match r {
            AppResult::Applied {
                release,
                counts,
                health,
                unhealthy,
            } => {
                let writes = counts[0] + counts[1] + counts[3];
                if writes > 0 {
                    tracing::info!(%cluster, %app, %release, created = counts[0], configured = counts[1], pruned = counts[3], ?health, "applied");
                } else {
                    tracing::debug!(%cluster, %app, %release, ?health, "in sync");
                }
                if !unhealthy.is_empty() {
                    tracing::debug!(%cluster, %app, reasons = %unhealthy.join("; "), "not healthy yet");
                }
            }
            AppResult::Waiting(why) => tracing::debug!(%cluster, %app, %why, "waiting"),
            AppResult::Suspended => tracing::debug!(%cluster, %app, "suspended"),
            AppResult::Released { removal, objects } => {
                tracing::info!(%cluster, %app, ?removal, objects, "no longer targeted; released")
            }
            AppResult::RenderFailed(message) => {
                tracing::warn!(%cluster, %app, %message, "render failed; nothing applied")
            }
            AppResult::ApplyFailed {
                reason, message, ..
            } => tracing::warn!(%cluster, %app, %reason, %message, "apply failed"),
        }
    }
}

/// `/metrics`, `/healthz` (the process is up) and `/readyz` (a pass has completed).
fn endpoints(metrics: Arc<Metrics>, ready: Arc<AtomicBool>) -> axum::Router {
    use axum::http::StatusCode;
    use axum::routing::get;
    axum::Router::new()
        .route(
            "/metrics",
            get(move || {
                let m = metrics.clone();
                async move {
                    (
                        [(
                            "content-type",
                            "application/openmetrics-text; version=1.0.0; charset=utf-8",
                        )],
                        m.encode(),
                    )
                }
            }),
        )
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/readyz",
            get(move || {
                let ready = ready.clone();
                async move {
                    if ready.load(Ordering::Acquire) {
                        (StatusCode::OK, "ready")
                    } else {
                        (
                            StatusCode::SERVICE_UNAVAILABLE,
                            "the first pass has not finished",
                        )
                    }
                }
            }),
        )
}

/// A pass renders every app and drops the results; hand the freed pages back to the
/// system so the resident size reflects what the agent keeps, not its peak.
fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free heap pages; it has no preconditions.
    unsafe {
        libc::malloc_trim(0);
    }
}
