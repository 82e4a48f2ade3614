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
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use super::config::{AgentConfig, Connection};
use super::connect::ConnectError;
use super::error::AgentError;
use super::rollout::ClusterAgent;
use super::timers::{Fired, Timers};
use super::{AppResult, Memory, PassReport, Source, reconcile_cluster_with};
use crate::apply::Reconciler;
use crate::apply::drift::LiveCache;
use crate::apply::retry::{Breaker, RetryPolicy};
use crate::metrics::Metrics;
use crate::source::repo::{GitAccess, GitRepo};
use crate::source::trigger::{FetchBackoff, Wake, poll, webhook_router};
use crate::source::verify::TrustPolicy;
use crate::source::watch::{RepositoryWatch, watch_repository};
use crate::status::StoreKind;
use crate::status::hub::Hub;

/// How long connecting to an API server may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long an API server may stay silent on an open request (between two reads of
/// the answer, and after the request is sent). Watches are asked to end sooner
/// ([`crate::apply::drift::WATCH_TIMEOUT`]) so a quiet watch is renewed, not cut.
pub const READ_TIMEOUT: Duration = Duration::from_secs(30);
/// How long sending a request may take.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(30);

/// A client for one cluster. Every request is bounded ([`CONNECT_TIMEOUT`],
/// [`READ_TIMEOUT`], [`WRITE_TIMEOUT`]); retries are left to
/// [`crate::apply::retry`], whose deadline bounds the whole call (the client's own
/// retry layer would wait up to 15 times on 429 with backoffs reaching minutes).
pub async fn client_for(connection: &Connection) -> Result<kube::Client, ConnectError> {
    let config = config_for(connection).await?;
    kube::Client::try_from(config).map_err(ConnectError::Client)
}

/// The configuration [`client_for`] makes its client from: also the base of the
/// clients that impersonate an app's ServiceAccount (DESIGN §6.1).
pub async fn config_for(connection: &Connection) -> Result<kube::Config, ConnectError> {
    let mut config = super::connect::config_for(connection).await?;
    config.connect_timeout = Some(CONNECT_TIMEOUT);
    config.read_timeout = Some(READ_TIMEOUT);
    config.write_timeout = Some(WRITE_TIMEOUT);
    // Counted from when a request is sent, not from when its pooled connection went
    // idle.
    config.reset_reader_on_write = true;
    config.default_retry = false;
    Ok(config)
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
    /// Shared by every API call to this cluster: tripped by the first call that gives
    /// up, reset at the start of each pass.
    breaker: Breaker,
    /// The wake its last pass started after ([`Agent::run`] counts wakes); a pass is
    /// due when a newer one arrived.
    seen: u64,
    /// It has completed a pass since the agent started.
    passed: bool,
}

/// What one round of passes reads: the repository, read once for every cluster
/// (shared by passes on the agent's one thread; a Git repository is not `Sync`).
#[derive(Clone)]
enum Input {
    /// A Git history for the rollout planner.
    Rollout(Rc<GitRepo>),
    /// A tree applied as it is.
    Direct(Rc<(crate::source::repo::OpenedRepo, crate::fleet::Fleet)>),
    /// The repository could not be read.
    Failed(Rc<String>),
}

/// A pass under way: the cluster it runs on, and its result when it ends.
type Running = std::pin::Pin<Box<dyn Future<Output = (Managed, Result<PassReport, AgentError>)>>>;

/// The run loop's state between its turns.
struct Round {
    /// The passes under way.
    running: futures_util::stream::FuturesUnordered<Running>,
    /// When each kind of wake is due.
    timers: Timers,
    /// The repository the latest passes read (statuses are pushed through it).
    last_repo: Option<Rc<GitRepo>>,
    /// What the last round of passes read.
    last_input: Option<Input>,
}

impl Managed {
    /// One pass of this cluster over `input`.
    async fn pass(
        &mut self,
        input: &Input,
        now: SystemTime,
        metrics: &Metrics,
    ) -> Result<PassReport, AgentError> {
        self.breaker.reset();
        match (input, &mut self.runner) {
            (Input::Failed(message), _) => Err(AgentError::Input(message.to_string())),
            (Input::Rollout(g), Runner::Rollout(agent)) => agent.pass_on(g, now).await,
            (Input::Direct(d), Runner::Direct(direct)) => {
                let (opened, fleet) = &**d;
                let (reconciler, memory) = &mut **direct;
                let release_of =
                    |app: &str, files: &std::collections::BTreeSet<crate::tree::RepoPath>| {
                        opened.release_of(&crate::source::history::Inputs::for_app(app, files))
                    };
                let source = Source {
                    tree: opened.tree.as_ref(),
                    fleet,
                    release_of: &release_of,
                };
                reconcile_cluster_with(&source, &self.name, reconciler, memory, Some(metrics))
                    .await
                    .map_err(AgentError::from)
            }
            _ => Err(AgentError::Input(
                "internal error: the pass input does not match the cluster's mode".into(),
            )),
        }
    }
}

/// The passes running now, by cluster, with when each started: `/healthz` fails when
/// one has run longer than `stuck_after`, so Kubernetes restarts a wedged agent.
#[derive(Debug)]
struct PassClock {
    running: std::sync::Mutex<std::collections::BTreeMap<String, Instant>>,
    stuck_after: Duration,
}

impl PassClock {
    /// No pass running; a pass is stuck after `stuck_after`.
    pub fn new(stuck_after: Duration) -> PassClock {
        PassClock {
            running: Default::default(),
            stuck_after,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, std::collections::BTreeMap<String, Instant>> {
        self.running.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn started(&self, cluster: &str) {
        self.lock().insert(cluster.to_string(), Instant::now());
    }

    fn finished(&self, cluster: &str) {
        self.lock().remove(cluster);
    }

    /// Why the agent is wedged: the oldest pass running longer than the limit.
    pub fn stuck(&self) -> Option<String> {
        let running = self.lock();
        let (cluster, since) = running.iter().min_by_key(|(_, since)| **since)?;
        let age = since.elapsed();
        (age > self.stuck_after).then(|| {
            format!(
                "cluster '{cluster}': pass running for {}s, longer than stuckAfter ({})",
                age.as_secs(),
                humantime::format_duration(self.stuck_after)
            )
        })
    }
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
    /// The status hub (`hub:`), when configured.
    hub: Option<Arc<Hub>>,
    /// Failed fetches in a row: polls slow down, and other wakes read the mirror.
    backoff: FetchBackoff,
}

/// Whether `config` names a Git history to plan rollouts with (a URL, or a Git
/// repository path, and no fixed revision).
fn rollout_mode(config: &AgentConfig) -> bool {
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
    pub async fn connect(config: AgentConfig, watch: bool) -> Result<Agent, AgentError> {
        if let Some(helm) = &config.helm {
            crate::render::helm::set_helm_binary(helm.clone());
        }
        let metrics = Arc::new(Metrics::new());
        let rollout = rollout_mode(&config);
        let shared_planning = Arc::new(super::rollout::SharedPlanning::default());
        let renders = Arc::new(
            crate::render::cache::RenderCache::new(crate::render::cache::DEFAULT_MAX_BYTES)
                .counting_into(
                    metrics.render_cache_counter("hit"),
                    metrics.render_cache_counter("miss"),
                ),
        );
        // Events are sent by a running agent; one pass (`--once`) sends none.
        let notifier = if watch && !config.notify.is_empty() {
            Some(super::notify::Notifier::start(config.notify_endpoints()?)?)
        } else {
            None
        };
        let hub = match &config.hub {
            Some(h) => {
                let client = client_for(&h.connection).await.map_err(AgentError::Hub)?;
                let own = config.clusters.iter().map(|c| c.name.clone()).collect();
                let hub = Arc::new(Hub::new(client, &h.namespace, own));
                if watch {
                    hub.watch();
                }
                Some(hub)
            }
            None => None,
        };
        let mut clusters = Vec::new();
        for c in &config.clusters {
            let unreachable = |error| AgentError::Connect {
                cluster: c.name.clone(),
                error,
            };
            let kube_config = config_for(&c.connection).await.map_err(unreachable)?;
            let client = kube::Client::try_from(kube_config.clone())
                .map_err(|e| unreachable(ConnectError::Client(e)))?;
            // One pass reads live objects from one list per kind too (a cold apply
            // would otherwise read every object alone); only a running agent is woken
            // by the watches.
            let live = LiveCache::new(client.clone());
            let cache = watch.then(|| live.clone());
            let breaker = Breaker::default();
            let reconciler = Reconciler::new(client, &config.namespace)
                .with_retry(RetryPolicy {
                    breaker: breaker.clone(),
                    ..RetryPolicy::default()
                })
                .with_limits(config.apply)
                .with_impersonation(kube_config)
                .with_cache(live);
            let prometheus = config
                .prometheus_for(c)
                .map(crate::prometheus::Prometheus::new)
                .transpose()
                .map_err(|error| AgentError::Prometheus {
                    cluster: c.name.clone(),
                    error,
                })?;
            let runner = if rollout {
                let mut agent = ClusterAgent::new(&c.name, reconciler, config.heartbeat)
                    .with_metrics(metrics.clone())
                    .with_shared_planning(shared_planning.clone())
                    .with_renders(renders.clone())
                    .with_prometheus(prometheus)
                    .with_notifier(notifier.clone())
                    .with_hub(hub.clone())
                    .defer_push()
                    .with_push(config.push_status);
                agent.tells_fleet_events = clusters.is_empty();
                Runner::Rollout(Box::new(agent))
            } else {
                Runner::Direct(Box::new((reconciler, Memory::default())))
            };
            clusters.push(Managed {
                name: c.name.clone(),
                runner,
                cache,
                breaker,
                seen: 0,
                passed: false,
            });
        }
        let access = GitAccess {
            auth: config.auth.clone(),
            cache_dir: config
                .cache_dir
                .clone()
                .unwrap_or_else(crate::source::default_cache_dir),
            allow_stale: watch,
            status_refs: true,
            fetch: true,
        };
        let trust = match &config.verify {
            Some(v) => Some(
                TrustPolicy::load(v.allowed_signers.as_deref(), v.openpgp_keyring.as_deref())
                    .map_err(AgentError::Verify)?,
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
            hub,
            backoff: FetchBackoff::default(),
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

    /// One pass over every cluster: one fetch, then every cluster's pass at once, so
    /// a cluster that does not answer delays the others by nothing (its calls give up
    /// at their deadline, [`crate::apply::retry::CALL_DEADLINE`]). A cluster whose pass
    /// fails does not stop the others. Results are in the clusters' order.
    pub async fn pass(&mut self) -> Vec<(String, Result<PassReport, AgentError>)> {
        let now = self.config.clock.now();
        let input = self.read_input();
        let metrics = self.metrics.clone();
        let passes = self
            .clusters
            .iter_mut()
            .map(|c| {
                let (input, metrics) = (&input, &metrics);
                async move { (c.name.clone(), c.pass(input, now, metrics).await) }
            })
            .collect::<Vec<_>>();
        let results = futures_util::future::join_all(passes).await;
        if let Input::Rollout(g) = &input {
            self.push_statuses(g).await;
        }
        results
    }

    /// Publishes the written, unpublished statuses of every idle cluster: to the
    /// hub, one write each, when the fleet's statuses live there; else in one push
    /// of their status refs. A failure is logged and the statuses stay pending for
    /// the next pass: the clusters keep being reconciled while the Git server or the
    /// hub is unreachable.
    async fn push_statuses(&mut self, g: &GitRepo) {
        for c in &mut self.clusters {
            if let Runner::Rollout(agent) = &mut c.runner
                && agent.store() == StoreKind::Kubernetes
            {
                agent.publish_to_hub().await;
            }
        }
        let git_store =
            |c: &Managed| matches!(&c.runner, Runner::Rollout(a) if a.store() == StoreKind::Git);
        let pushing = self
            .clusters
            .iter()
            .any(|c| git_store(c) && matches!(&c.runner, Runner::Rollout(a) if a.push_pending()));
        if pushing {
            // The others' heartbeats ride along when half due.
            let now = self.config.clock.now();
            for c in self.clusters.iter_mut().filter(|c| git_store(c)) {
                if let Runner::Rollout(agent) = &mut c.runner
                    && let Err(e) = agent.beat_with_others(g, now)
                {
                    tracing::warn!(cluster = %c.name, error = %crate::error_text::chain(&e), "status not written");
                }
            }
        }
        let pending: Vec<&str> = self
            .clusters
            .iter()
            .filter_map(|c| match &c.runner {
                Runner::Rollout(agent)
                    if agent.push_pending() && agent.store() == StoreKind::Git =>
                {
                    Some(c.name.as_str())
                }
                _ => None,
            })
            .collect();
        if pending.is_empty() {
            return;
        }
        let pushed = match g.mirror() {
            // A local repository: the status refs are written where peers read them.
            None => true,
            Some(mirror) => match crate::source::statusref::push_statuses(mirror, &pending, 3) {
                Ok(()) => true,
                Err(e) => {
                    tracing::warn!(
                        clusters = pending.len(),
                        error = %e,
                        "status not pushed; trying again at the next pass"
                    );
                    false
                }
            },
        };
        if pushed {
            for c in &mut self.clusters {
                if let Runner::Rollout(agent) = &mut c.runner
                    && agent.store() == StoreKind::Git
                {
                    agent.pushed();
                }
            }
        }
    }

    /// Fetches the repository and reads what the passes need from it.
    fn read_input(&mut self) -> Input {
        let config = &self.config;
        if self.rollout {
            let remote = crate::source::is_remote_url(&config.repo);
            let fetching = remote && self.backoff.may_fetch();
            let access = GitAccess {
                fetch: fetching || !remote,
                ..self.access.clone()
            };
            let opened = GitRepo::open_with(
                &config.repo,
                config.repo_path.as_deref(),
                None,
                &config.branch,
                &access,
            );
            if fetching {
                match &opened {
                    Ok(g) if g.stale.is_none() => self.backoff.succeeded(),
                    _ => self.backoff.failed(config.interval),
                }
            }
            let opened = opened
                .map_err(AgentError::from)
                .and_then(|g| self.trusted(g));
            return match opened {
                Ok(g) => Input::Rollout(Rc::new(g)),
                Err(e) => Input::Failed(Rc::new(crate::error_text::chain(&e))),
            };
        }
        let opened = match crate::source::repo::open_tree_with(
            &config.repo,
            config.repo_path.as_deref(),
            config.rev.as_deref(),
            &config.branch,
            &self.access,
        ) {
            Ok(o) => o,
            Err(e) => return Input::Failed(Rc::new(crate::error_text::chain(&e))),
        };
        match crate::fleet::load(opened.tree.as_ref()) {
            Ok(fleet) => Input::Direct(Rc::new((opened, fleet))),
            Err(e) => Input::Failed(Rc::new(crate::error_text::chain(&e))),
        }
    }

    /// `g` moved back to the newest commit of its first-parent history signed by a
    /// trusted key, when signatures are checked: an unsigned or foreign tip is not
    /// applied, and the agent stays where the trusted history ends.
    fn trusted(&mut self, mut g: GitRepo) -> Result<GitRepo, AgentError> {
        let Some(trust) = &self.trust else {
            return Ok(g);
        };
        let repo = g.repository()?;
        let history = crate::source::history::first_parent_history(
            &repo,
            g.head,
            crate::plan::history::HISTORY_LIMIT,
        )?;
        let (trusted, refused) = trust.newest_trusted(&repo, &history);
        let Some(trusted) = trusted else {
            return Err(AgentError::Untrusted {
                looked_at: history.len(),
                refused: refused.first().map(|e| e.to_string()).unwrap_or_default(),
            });
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

    /// Writes and pushes every cluster's last status with a fresh heartbeat.
    pub async fn flush(&mut self) {
        if !self.rollout {
            return;
        }
        let access = GitAccess {
            allow_stale: true,
            ..self.access.clone()
        };
        let g = match GitRepo::open_with(
            &self.config.repo,
            self.config.repo_path.as_deref(),
            None,
            &self.config.branch,
            &access,
        ) {
            Ok(g) => g,
            Err(e) => {
                tracing::warn!(error = %crate::error_text::chain(&e), "final status not written");
                return;
            }
        };
        for c in &mut self.clusters {
            if let Runner::Rollout(agent) = &mut c.runner
                && let Err(e) = agent.flush(&g, self.config.clock.now())
            {
                tracing::warn!(cluster = %c.name, error = %crate::error_text::chain(&e), "final status not written")
            }
        }
        self.push_statuses(&g).await;
        for c in &self.clusters {
            if let Runner::Rollout(agent) = &c.runner {
                if agent.push_pending() {
                    tracing::warn!(cluster = %c.name, "final status written but not pushed")
                } else {
                    tracing::info!(cluster = %c.name, "final status written")
                }
            }
        }
    }

    /// Runs passes until `stop` completes, serving `/metrics`, `/healthz`, `/readyz`
    /// and (with a webhook secret) `POST /hooks/git` on the configured address
    /// ([`super::listener`]: the probes are answered while slow clients hold
    /// connections).
    ///
    /// Each cluster runs its own passes: a wake starts a pass on every cluster that is
    /// not in one, and a cluster still in its pass starts another as soon as it is done,
    /// so a hung cluster never holds back the commits of the others.
    pub async fn run(mut self, stop: impl Future<Output = ()>) -> Result<(), AgentError> {
        use futures_util::StreamExt;
        let wake = Wake::new();
        let ready = Arc::new(AtomicBool::new(false));
        let clock = Arc::new(PassClock::new(self.config.stuck_after));
        let server = self.serve(&wake, &ready, &clock)?;
        let poller = tokio::spawn(poll(
            self.config.interval,
            wake.clone(),
            self.backoff.clone(),
        ));
        let _watcher = self.watch_local_repository(&wake);
        let caches: Vec<(String, Arc<LiveCache>)> = self
            .clusters
            .iter()
            .filter_map(|c| Some((c.name.clone(), c.cache.clone()?)))
            .collect();
        let mut round = Round {
            running: Default::default(),
            timers: Timers::new(self.config.drift_interval),
            last_repo: None,
            last_input: None,
        };
        let hub = self.hub.clone();
        let mut stop = std::pin::pin!(stop);
        loop {
            self.start_due_passes(&mut round, &clock);
            tokio::select! {
                biased;
                _ = &mut stop => break,
                Some((c, result)) = round.running.next(), if !round.running.is_empty() => {
                    self.pass_finished(&mut round, c, result, &clock, &ready).await;
                }
                _ = wake.woken() => round.timers.woken(),
                fired = round.timers.next() => {
                    // A pass still running holds the finished ones' statuses no longer.
                    if fired == Fired::StatusBatch && let Some(g) = &round.last_repo {
                        self.push_statuses(g).await;
                    }
                    round.timers.fire(fired);
                }
                _ = async { match &hub { Some(h) => h.changed().await, None => std::future::pending().await } },
                    if round.timers.peers_idle() => {
                    tracing::debug!("a peer's status changed on the hub");
                    round.timers.peer_changed();
                }
                (cluster, apps) = any_drift(&caches), if round.timers.drift_idle() => {
                    tracing::debug!(%cluster, apps = apps.len(), "live objects changed; reconciling");
                    round.timers.drift_seen(cluster);
                }
            }
        }
        tracing::info!(running = round.running.len(), "stopping");
        // The passes under way are finished (an apply is never cut in the middle); each
        // call is bounded, so this ends.
        while let Some((c, result)) = round.running.next().await {
            clock.finished(&c.name);
            log_pass(&c.name, &result);
            self.clusters.push(c);
        }
        self.flush().await;
        poller.abort();
        server.abort();
        Ok(())
    }

    /// Opens the agent's port and serves `/healthz`, `/readyz`, `/metrics` and, when
    /// configured, the Git webhook (which wakes the loop).
    fn serve(
        &self,
        wake: &Wake,
        ready: &Arc<AtomicBool>,
        clock: &Arc<PassClock>,
    ) -> Result<tokio::task::JoinHandle<()>, AgentError> {
        let listener =
            super::listener::bind(self.config.listen).map_err(|error| AgentError::Listen {
                addr: self.config.listen,
                error,
            })?;
        // The address bound, which says the port when the config asked for port 0.
        let bound = listener.local_addr().unwrap_or(self.config.listen);
        let mut routes = endpoints(self.metrics.clone(), ready.clone(), clock.clone());
        if self.config.webhook.enabled() {
            let secrets = self.config.webhook_secrets()?;
            routes = routes.merge(webhook_router(secrets, wake.clone()));
        }
        tracing::info!(
            repo = %crate::source::redact_url(&self.config.repo),
            clusters = self.clusters.len(),
            listen = %bound,
            "agent started"
        );
        Ok(tokio::spawn(super::listener::serve(listener, routes)))
    }

    /// A local repository is watched: a commit there starts a pass at once. The
    /// agent's own status refs, written at every pass, wake nothing; a peer's do.
    fn watch_local_repository(&self, wake: &Wake) -> Option<RepositoryWatch> {
        if crate::source::is_remote_url(&self.config.repo) {
            return None;
        }
        let own: Vec<String> = self
            .config
            .clusters
            .iter()
            .map(|c| crate::status::refs::status_ref(&c.name))
            .collect();
        match watch_repository(std::path::Path::new(&self.config.repo), wake.clone(), &own) {
            Ok(w) => Some(w),
            Err(e) => {
                tracing::warn!(error = %e, "cannot watch the repository; polling only");
                None
            }
        }
    }

    /// Starts a pass on every cluster that is due and not in one. A wake from a
    /// managed object, a peer or an analysis reads what the last fetch brought: only
    /// the poll, a webhook or a local commit (and the start) ask the Git server again.
    fn start_due_passes(&mut self, round: &mut Round, clock: &PassClock) {
        if !self
            .clusters
            .iter()
            .any(|c| round.timers.is_due(&c.name, c.seen))
        {
            return;
        }
        let now = self.config.clock.now();
        let input = match (&round.last_input, round.timers.take_fetch_due()) {
            (Some(Input::Rollout(g)), false) => Input::Rollout(g.clone()),
            _ => self.read_input(),
        };
        round.last_input = Some(input.clone());
        if let Input::Rollout(g) = &input {
            round.last_repo = Some(g.clone());
        }
        let (due, idle): (Vec<Managed>, Vec<Managed>) = std::mem::take(&mut self.clusters)
            .into_iter()
            .partition(|c| round.timers.is_due(&c.name, c.seen));
        self.clusters = idle;
        for mut c in due {
            c.seen = round.timers.starting(&c.name);
            clock.started(&c.name);
            let (input, metrics) = (input.clone(), self.metrics.clone());
            round.running.push(Box::pin(async move {
                let r = c.pass(&input, now, &metrics).await;
                (c, r)
            }));
        }
    }

    /// What follows a cluster's pass: its log line, the timers its state asks for (a
    /// gate it opened wakes the agent's other clusters, a rollout in progress is
    /// looked at again soon, an analysis is measured when due), the round's statuses
    /// pushed once, and readiness after every cluster's first pass.
    async fn pass_finished(
        &mut self,
        round: &mut Round,
        mut c: Managed,
        result: Result<PassReport, AgentError>,
        clock: &PassClock,
        ready: &AtomicBool,
    ) {
        clock.finished(&c.name);
        log_pass(&c.name, &result);
        c.passed = true;
        if let Runner::Rollout(agent) = &mut c.runner {
            // Status refs are fetched only while the fleet uses them.
            self.access.status_refs = agent.store() == StoreKind::Git;
            // A gate it opened may let the agent's other clusters move: they make a
            // pass (without a fetch), it does not.
            if agent.take_opened_gate() && self.config.clusters.len() > 1 {
                c.seen = round.timers.rewake();
            }
            if agent.progressing() {
                round.timers.recheck(&c.name);
            }
            if let Some(due) = agent.next_due() {
                let wait = due
                    .duration_since(self.config.clock.now())
                    .unwrap_or(Duration::ZERO);
                round.timers.analysis_in(wait);
            }
        }
        self.clusters.push(c);
        // One push for the round's statuses; a cluster whose pass hangs holds the
        // others' back by STATUS_BATCH_WAIT at most.
        let waited = round.timers.batch_waited_enough();
        if (round.running.is_empty() || waited)
            && let Some(g) = &round.last_repo
        {
            self.push_statuses(g).await;
            round.timers.batch_pushed();
        }
        if round.running.is_empty() {
            // Back in the configured order (passes and the final status are started
            // in it).
            let order: Vec<&str> = self
                .config
                .clusters
                .iter()
                .map(|c| c.name.as_str())
                .collect();
            self.clusters.sort_by_key(|c| {
                order
                    .iter()
                    .position(|n| *n == c.name)
                    .unwrap_or(usize::MAX)
            });
            // Once a round, not once a pass: with hundreds of clusters handing pages
            // back after every pass cost the agent a sixth of its CPU.
            release_freed_memory();
        }
        if !ready.load(Ordering::Acquire)
            && round.running.is_empty()
            && self.clusters.iter().all(|c| c.passed)
        {
            ready.store(true, Ordering::Release);
        }
    }
}

/// Waits until a managed object changed on any cluster: which cluster, and its apps
/// affected.
async fn any_drift(
    caches: &[(String, Arc<LiveCache>)],
) -> (String, std::collections::BTreeSet<String>) {
    if caches.is_empty() {
        return std::future::pending().await;
    }
    let waits = caches
        .iter()
        .map(|(name, c)| Box::pin(async move { (name.clone(), c.drifted().await) }));
    futures_util::future::select_all(waits).await.0
}

/// Logs one cluster's pass: changes and failures at info/warn, the rest at debug.
fn log_pass(cluster: &str, result: &Result<PassReport, AgentError>) {
    let report = match result {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(%cluster, error = %crate::error_text::chain(&e), "pass failed");
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

/// `/metrics`, `/healthz` (the process is up and no pass is stuck) and `/readyz` (a
/// pass has completed on every cluster).
fn endpoints(metrics: Arc<Metrics>, ready: Arc<AtomicBool>, clock: Arc<PassClock>) -> axum::Router {
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
        .route(
            "/healthz",
            get(move || {
                let clock = clock.clone();
                async move {
                    match clock.stuck() {
                        None => (StatusCode::OK, "ok".to_string()),
                        Some(why) => (StatusCode::SERVICE_UNAVAILABLE, why),
                    }
                }
            }),
        )
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
