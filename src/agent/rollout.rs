//! The rollout-aware pass: the planner decides which release each app runs on this
//! cluster (waves, gates, halts, reverts, rollbacks), from the peers' status refs; the
//! reconciler applies that release's rendering; the cluster's own status is written back
//! to its status ref (and pushed, for a remote repository) when it changes and at
//! every heartbeat. Agents coordinate only through the repository.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use futures_util::StreamExt;
use git2::Oid;

use super::error::AgentError;
use super::{AppResult, Memory, PassReport};
use crate::apply::Reconciler;
use crate::apply::health::Health;
use crate::fleet::{App, BrokenApp, Fleet, targets_cluster};
use crate::metrics::Metrics;
use crate::plan::history::{AppHistory, FleetAt, app_history, history_order};
use crate::plan::{PlanInput, Reason, plan_app};
use crate::prometheus::Prometheus;
use crate::render::cache::{Keep, RenderCache};
use crate::source::GitTree;
use crate::source::repo::GitRepo;
use crate::source::statusref::push_status;
use crate::status::hub::Hub;
use crate::status::publish::Publisher;
use crate::status::store::Store;
use crate::status::{
    AppStatus, ClusterStatus, HistoryEntry, MAX_HISTORY, Phase, StoreKind, rfc3339,
};

/// One cluster's agent state across passes.
pub struct ClusterAgent {
    /// The cluster's name in clusters/.
    pub cluster: String,
    /// Its reconciler.
    pub reconciler: Reconciler,
    memory: Memory,
    /// Where this cluster's status goes, what was written last and what is still to
    /// send.
    publisher: Publisher,
    /// The deliveries recorded in this cluster's status by an earlier run, read at the
    /// first pass of an agent without notifications, which keeps them for the next
    /// agent that has them.
    notified_before: BTreeMap<String, Vec<String>>,
    /// Whether this cluster's passes also tell fleet-wide events (a freeze and its
    /// end): true for the first cluster of each agent, so an agent tells them once.
    pub tells_fleet_events: bool,
    metrics: Option<Arc<Metrics>>,
    /// Each app's releases and plan, shared by the clusters of one agent process
    /// ([`SharedPlanning`]).
    shared: Arc<SharedPlanning>,
    /// Renderings by their inputs, shared by the clusters of one agent process: a pass
    /// over an unchanged repository, and the planner's renders of releases already
    /// rendered, render nothing.
    renders: Arc<RenderCache>,
    /// The fleet model by commit: loading it parses every cluster and app file, and a
    /// pass needs it at the head and at each app's target, usually the same commits.
    /// Entries a pass did not use are dropped at its end.
    fleets: HashMap<Oid, Arc<Model>>,
    /// The head whose fleet could not be loaded, so the fallback is logged once.
    unloadable_head: Option<Oid>,
    /// The cluster's Prometheus, for the analysis of bakes.
    prometheus: Option<Prometheus>,
    /// Apps whose analysis was skipped for want of a Prometheus (logged once each).
    skipped: HashSet<String>,
    /// When a pass should run whatever else happens: the next measurement of a
    /// running analysis is due, or an earlier wave's bake ends and a gate for this
    /// cluster opens.
    next_due: Option<SystemTime>,
    /// Where the events of this cluster's apps are sent (agent config `notify:`).
    notifier: Option<Arc<super::notify::Notifier>>,
    /// The status hub (agent config `hub:`), for fleets whose statuses live there.
    hub: Option<Arc<Hub>>,
}

/// The fleet at one commit, with the apps whose app.yaml is broken set aside.
struct Model {
    /// The apps that loaded, the clusters and fleet.yaml.
    pub fleet: Fleet,
    /// The apps that did not, with why.
    pub broken: Vec<BrokenApp>,
    /// The apps some app depends on (`dependsOn`): their plans are kept during a
    /// pass for the apps that wait on them. Derived once per commit.
    pub depended_on: BTreeSet<String>,
}

/// What the [`ClusterAgent`]s of one process work out once for all of them: the
/// parts of planning that do not depend on the cluster planning.
#[derive(Default)]
pub struct SharedPlanning {
    /// Each app's releases, for the head they were computed at: rendering every
    /// release for every cluster is the expensive part of planning, and it only
    /// changes with the head.
    histories: Mutex<BTreeMap<String, (Oid, Arc<AppHistory>)>>,
    /// Each app's last plan, with what it was made from. A plan covers every cluster
    /// of the app, so the passes of the agent's clusters that start together (a
    /// peer's change wakes them all) make it once instead of once each; without this,
    /// an agent of 100 clusters in a fleet of 1,000 spent most of a release planning
    /// the whole fleet a hundred times over.
    plans: Mutex<BTreeMap<String, SharedPlan>>,
}

/// A plan and what it was made from: the same head, the same map of statuses (the
/// same `Arc`: maps are shared until a status changes, [`Hub::read`]) and the same
/// time give the same plan. Apps with dependencies are planned by each pass, as
/// their readiness includes what the pass did on its own cluster.
struct SharedPlan {
    head: Oid,
    statuses: Arc<BTreeMap<String, ClusterStatus>>,
    now: SystemTime,
    plan: Arc<crate::plan::AppPlan>,
}

impl SharedPlanning {
    fn lock_histories(
        &self,
    ) -> std::sync::MutexGuard<'_, BTreeMap<String, (Oid, Arc<AppHistory>)>> {
        self.histories.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The plan of `app` made from `statuses` at `head` and `now`, if one was made.
    fn plan(
        &self,
        app: &str,
        head: Oid,
        statuses: &Arc<BTreeMap<String, ClusterStatus>>,
        now: SystemTime,
    ) -> Option<Arc<crate::plan::AppPlan>> {
        let plans = self.plans.lock().unwrap_or_else(|e| e.into_inner());
        let shared = plans.get(app)?;
        (shared.head == head && shared.now == now && Arc::ptr_eq(&shared.statuses, statuses))
            .then(|| shared.plan.clone())
    }

    /// Keeps `plan` for the passes that read the same.
    fn keep_plan(
        &self,
        app: &str,
        head: Oid,
        statuses: &Arc<BTreeMap<String, ClusterStatus>>,
        now: SystemTime,
        plan: Arc<crate::plan::AppPlan>,
    ) {
        self.plans.lock().unwrap_or_else(|e| e.into_inner()).insert(
            app.to_string(),
            SharedPlan {
                head,
                statuses: statuses.clone(),
                now,
                plan,
            },
        );
    }
}

fn phase_of(health: Health) -> Phase {
    match health {
        Health::Healthy => Phase::Healthy,
        Health::Progressing => Phase::Progressing,
        Health::Degraded => Phase::Degraded,
    }
}

/// The next status of one app from its previous one and what this pass saw.
fn next_status(
    previous: Option<&AppStatus>,
    release: &str,
    hash: &str,
    phase: Phase,
    message: String,
    now: SystemTime,
) -> AppStatus {
    let now_s = rfc3339(now);
    let mut s = previous
        .cloned()
        .unwrap_or_else(|| AppStatus::new(release, hash, phase, now_s.clone()));
    if previous.is_some() && (s.release != release || s.phase != phase || s.hash != hash) {
        s.history.insert(
            0,
            HistoryEntry {
                release: s.release.clone(),
                hash: s.hash.clone(),
                phase: s.phase,
                since: s.since.clone(),
                until: now_s.clone(),
                verified: s.verified.clone(),
            },
        );
        s.history.truncate(MAX_HISTORY);
        s.since = now_s;
    }
    if s.release != release || s.hash != hash {
        // Measurements belong to the release they were taken for.
        s.analysis.clear();
        s.verified = None;
    }
    s.release = release.to_string();
    s.hash = hash.to_string();
    s.phase = phase;
    s.message = message;
    if phase == Phase::Healthy && !s.known_good.iter().any(|h| h == hash) {
        s.known_good.push(hash.to_string());
        let extra = s.known_good.len().saturating_sub(MAX_HISTORY);
        s.known_good.drain(..extra);
    }
    if phase == Phase::Degraded && !s.poisoned.iter().any(|h| h == hash) {
        s.poisoned.push(hash.to_string());
    }
    s
}

/// How many commits back from a head whose fleet does not load the agent looks for
/// one that does.
const HEAD_FALLBACK_LIMIT: usize = 100;

/// The status `app` has on `cluster` in `statuses`: on this cluster, what the pass
/// starts from. A function of the map, not of the pass, so it borrows the statuses
/// alone while the pass records what it does.
fn status_here<'s>(
    statuses: &'s BTreeMap<String, ClusterStatus>,
    cluster: &str,
    app: &str,
) -> Option<&'s AppStatus> {
    statuses.get(cluster)?.apps.get(app)
}

/// What a pass read at its start (the read stage), and what it gathers on the way.
struct PassState {
    git: git2::Repository,
    history: Vec<Oid>,
    order: HashMap<String, usize>,
    head_tree: Arc<GitTree>,
    model: Arc<Model>,
    /// The commit `head_tree` and `model` are of: the head, unless the fleet does not
    /// load there ([`ClusterAgent::head_model`]).
    model_commit: Oid,
    /// Every cluster's status as the pass found it, this cluster's own included;
    /// shared with the passes of the agent's other clusters that read the same.
    statuses: Arc<BTreeMap<String, ClusterStatus>>,
    head: String,
    /// The commits whose fleet models the pass needed, with their trees, each opened
    /// once a pass (not once per app).
    used: HashMap<Oid, Arc<GitTree>>,
    /// The apps targeting this cluster (or held on it), not to be released.
    targeted: Vec<String>,
    /// Releases halted right before this cluster's wave: (app, release, why), for
    /// notifications.
    halts: Vec<(String, String, String)>,
    /// The plans of apps others depend on, made earlier in the pass (apps are planned
    /// in dependency order).
    plans: HashMap<String, crate::plan::AppPlan>,
}

/// The plan stage's verdict for one app: the release to run here.
struct Planned {
    target: String,
    /// A rollback to the last known-good release.
    rollback: bool,
}

/// A planned app rendered for this cluster, ready to apply.
struct ReadyToApply<'m> {
    /// The app at the head.
    app: &'m App,
    /// The release (a commit).
    target: String,
    /// A rollback to the last known-good release.
    rollback: bool,
    /// The fleet at the release.
    at: Arc<Model>,
    rendered: Arc<crate::render::Rendered>,
}

/// What a reconcile came to, and how long it took.
type Reconciled = (
    Result<crate::apply::Applied, crate::apply::ApplyError>,
    Duration,
);

/// When the next bake of an earlier wave than `wave` ends: a gate for this cluster
/// may open then, and a pass should look rather than wait for the next poll. A second
/// is added, so the pass does not come a moment early and find the gate still closed;
/// a bake that ended more than that ago sets nothing.
fn bake_ends_before(
    plan: &crate::plan::AppPlan,
    wave: usize,
    statuses: &BTreeMap<String, ClusterStatus>,
    app: &App,
    now: SystemTime,
) -> Option<SystemTime> {
    plan.waves
        .iter()
        .take(wave)
        .flatten()
        .filter_map(|c| statuses.get(c)?.apps.get(&app.name))
        .filter(|a| a.phase == Phase::Healthy)
        .filter_map(|a| humantime::parse_rfc3339(&a.since).ok())
        .map(|since| since + app.rollout.bake + Duration::from_secs(1))
        .filter(|due| *due > now)
        .min()
}

/// What one pass produces: the statuses to write and the report to return.
#[derive(Default)]
struct PassOutcome {
    apps: BTreeMap<String, AppStatus>,
    report: PassReport,
}

impl PassOutcome {
    /// The app ends the pass with `status` and `result`.
    fn record(&mut self, app: &str, status: AppStatus, result: AppResult) {
        self.apps.insert(app.to_string(), status);
        self.report.apps.push((app.to_string(), result));
    }

    /// The app stays as it runs, and its status says why nothing moves: the phase is
    /// Error at the release it runs (`fallback`, usually the head, if it runs nothing
    /// yet).
    fn hold(
        &mut self,
        app: &str,
        previous: Option<&AppStatus>,
        fallback: &str,
        message: String,
        now: SystemTime,
    ) {
        let (release, hash) =
            previous.map_or((fallback, ""), |p| (p.release.as_str(), p.hash.as_str()));
        let status = next_status(previous, release, hash, Phase::Error, message.clone(), now);
        self.record(app, status, AppResult::RenderFailed(message));
    }
}

impl ClusterAgent {
    /// An agent for `cluster` applying through `reconciler`.
    pub fn new(cluster: &str, reconciler: Reconciler, heartbeat: Duration) -> ClusterAgent {
        ClusterAgent {
            cluster: cluster.to_string(),
            reconciler,
            memory: Memory::default(),
            publisher: Publisher::new(cluster, heartbeat),
            notified_before: BTreeMap::new(),
            tells_fleet_events: false,
            metrics: None,
            shared: Arc::default(),
            renders: Arc::new(RenderCache::new(crate::render::cache::DEFAULT_MAX_BYTES)),
            fleets: HashMap::new(),
            unloadable_head: None,
            prometheus: None,
            skipped: HashSet::new(),
            next_due: None,
            notifier: None,
            hub: None,
        }
    }

    /// Publishes and reads statuses through `hub` when the fleet's `status.store` is
    /// `kubernetes` (without one, such a fleet's passes fail with the reason).
    pub fn with_hub(mut self, hub: Option<Arc<Hub>>) -> ClusterAgent {
        self.hub = hub;
        self
    }

    /// Where the last pass found the fleet's statuses.
    pub fn store(&self) -> StoreKind {
        self.publisher.store().kind()
    }

    /// Every peer's status from the fleet's store, this cluster's own as it wrote it
    /// last. With the hub, a cluster that has no object there yet (a fleet moving
    /// from the Git store) starts from its status ref.
    async fn peer_statuses(
        &mut self,
        repo: &git2::Repository,
        store: StoreKind,
    ) -> Result<Arc<BTreeMap<String, ClusterStatus>>, AgentError> {
        self.publisher.open(store, self.hub.as_ref())?;
        let (mut statuses, errors) = self.publisher.store().read(repo).await?;
        if self.publisher.store().kind() == StoreKind::Kubernetes {
            // Unreadable refs are logged where they are read.
            for e in errors {
                tracing::warn!(error = %e, "ignoring unreadable peer status");
            }
            // A fleet moving from the Git store: this cluster starts from its ref.
            if !statuses.contains_key(&self.cluster) && self.publisher.last().is_none() {
                let (refs, _) = Store::Refs.read_now(repo);
                if let Some(own) = refs.get(&self.cluster) {
                    Arc::make_mut(&mut statuses).insert(self.cluster.clone(), own.clone());
                }
            }
        }
        // The map is shared with the agent's other passes: copied only when this
        // cluster's last status is not in it yet.
        if let Some(own) = self.publisher.last()
            && statuses.get(&self.cluster) != Some(own)
        {
            Arc::make_mut(&mut statuses).insert(self.cluster.clone(), own.clone());
        }
        Ok(statuses)
    }

    /// Measures the analysis of bakes against `prometheus` (without one, analysis is
    /// skipped; see [`super::analysis`]).
    pub fn with_prometheus(mut self, prometheus: Option<Prometheus>) -> ClusterAgent {
        self.prometheus = prometheus;
        self
    }

    /// Whether an app on this cluster is Progressing as of the last status written:
    /// its workloads are still rolling, and a pass should look again soon even if no
    /// change of theirs is seen (a missed watch event must not wait for the poll).
    pub fn progressing(&self) -> bool {
        self.publisher
            .last()
            .is_some_and(|s| s.apps.values().any(|a| a.phase == Phase::Progressing))
    }

    /// When a running analysis has its next measurement due (a pass should run then).
    pub fn next_due(&self) -> Option<SystemTime> {
        self.next_due
    }

    /// A pass should run at `at` (or earlier).
    fn due_at(&mut self, at: SystemTime) {
        self.next_due = Some(self.next_due.map_or(at, |n| n.min(at)));
    }

    /// Sends the events of this cluster's apps through `notifier`.
    pub fn with_notifier(mut self, notifier: Option<Arc<super::notify::Notifier>>) -> Self {
        self.notifier = notifier;
        self
    }

    /// Shares renderings with the other clusters of this process.
    pub fn with_renders(mut self, shared: Arc<RenderCache>) -> ClusterAgent {
        self.renders = shared;
        self
    }

    /// Shares release histories and plans with the other clusters of this process.
    pub fn with_shared_planning(mut self, shared: Arc<SharedPlanning>) -> ClusterAgent {
        self.shared = shared;
        self
    }

    /// The files and the fleet model at `commit`, the model from the cache when this
    /// agent loaded it before; `used` collects the commits this pass needed, with
    /// their trees.
    fn fleet_at(
        &mut self,
        g: &GitRepo,
        commit: Oid,
        used: &mut HashMap<Oid, Arc<GitTree>>,
    ) -> Result<(Arc<GitTree>, Arc<Model>), AgentError> {
        let tree = match used.get(&commit) {
            Some(tree) => tree.clone(),
            None => {
                let tree = Arc::new(g.tree(commit)?);
                used.insert(commit, tree.clone());
                tree
            }
        };
        if let Some(f) = self.fleets.get(&commit) {
            return Ok((tree, f.clone()));
        }
        let (fleet, broken) = crate::fleet::load_apps_apart(&*tree)
            .map_err(|error| AgentError::Fleet { commit, error })?;
        let depended_on = fleet
            .apps
            .iter()
            .flat_map(|a| a.depends_on.iter().map(|d| d.value.clone()))
            .collect();
        let f = Arc::new(Model {
            fleet,
            broken,
            depended_on,
        });
        self.fleets.insert(commit, f.clone());
        Ok((tree, f))
    }

    /// The fleet at the head, or, when fleet.yaml or a cluster file is broken there,
    /// at the newest commit of `history` where it loads: the agent keeps running (and
    /// reporting) on the last good state instead of failing every pass until someone
    /// fixes the repository. The refusal is logged once per head.
    fn head_model(
        &mut self,
        g: &GitRepo,
        history: &[Oid],
        used: &mut HashMap<Oid, Arc<GitTree>>,
    ) -> Result<(Oid, Arc<GitTree>, Arc<Model>), AgentError> {
        let e = match self.fleet_at(g, g.head, used) {
            Ok((tree, model)) => {
                self.unloadable_head = None;
                return Ok((g.head, tree, model));
            }
            Err(e) => e,
        };
        for oid in history.iter().skip(1).take(HEAD_FALLBACK_LIMIT) {
            if let Ok((tree, model)) = self.fleet_at(g, *oid, used) {
                if self.unloadable_head != Some(g.head) {
                    tracing::error!(
                        cluster = %self.cluster,
                        error = %crate::error_text::chain(&e),
                        fallback = %oid,
                        "the fleet at the head cannot be loaded; staying on the newest commit where it can"
                    );
                    self.unloadable_head = Some(g.head);
                }
                return Ok((*oid, tree, model));
            }
        }
        Err(e)
    }

    /// Records every reconcile in `metrics`.
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> ClusterAgent {
        self.metrics = Some(metrics);
        self
    }

    /// One pass against `repo` (a Git path or URL, fetched with credentials from the
    /// environment) at the head of `branch`.
    pub async fn pass(
        &mut self,
        repo: &str,
        branch: &str,
        now: SystemTime,
    ) -> Result<PassReport, AgentError> {
        let g = GitRepo::open(repo, None, None, branch)?;
        self.pass_on(&g, now).await
    }

    /// One pass at the head of `g`, already opened (and fetched) by the caller, so one
    /// fetch serves every cluster an agent process manages. Its stages, in the order of
    /// DESIGN §1: `read_fleet` (the fleet at the head and every peer's status),
    /// `plan_here` (the release each app runs on this cluster), `render_and_apply`
    /// (that release rendered, applied and its bake analysed) and `report` (apps that
    /// left released, the status written and published).
    pub async fn pass_on(
        &mut self,
        g: &GitRepo,
        now: SystemTime,
    ) -> Result<PassReport, AgentError> {
        let mut pass = self.read_fleet(g).await?;
        let model = pass.model.clone();
        self.reconciler
            .set_health_rules(&model.fleet.settings.health);
        let Some(cluster) = model.fleet.cluster(&self.cluster) else {
            return Err(AgentError::NotInFleet {
                cluster: self.cluster.clone(),
                head: g.head,
            });
        };
        let mut out = PassOutcome::default();
        self.next_due = None;
        // An app whose app.yaml is broken at the head is held where it is (never
        // released, never pruned) and reported on the clusters that run it.
        for broken in &model.broken {
            let Some(previous) = status_here(&pass.statuses, &self.cluster, &broken.name) else {
                continue;
            };
            pass.targeted.push(broken.name.clone());
            let message = format!("{}; nothing is changed until it is fixed", broken.error);
            out.hold(&broken.name, Some(previous), &pass.head, message, now);
        }
        // Apps are planned in dependency order and applied in batches, side by side: a
        // batch is applied before an app that depends on others is planned, so its
        // plan sees what this pass did to them.
        let mut batch = Vec::new();
        for app in model.fleet.apps_in_dependency_order() {
            if !targets_cluster(app, cluster) {
                continue;
            }
            pass.targeted.push(app.name.clone());
            if !app.depends_on.is_empty() && !batch.is_empty() {
                let planned = std::mem::take(&mut batch);
                self.render_and_apply(g, &mut pass, planned, &mut out, now)
                    .await?;
            }
            if let Some(planned) = self.plan_here(g, &mut pass, app, &mut out, now) {
                batch.push((app, planned));
            }
        }
        self.render_and_apply(g, &mut pass, batch, &mut out, now)
            .await?;
        self.report(g, pass, out, now).await
    }

    /// The read stage: the fleet at the head (or the newest commit where it loads) and
    /// every peer's status from the fleet's store.
    async fn read_fleet(&mut self, g: &GitRepo) -> Result<PassState, AgentError> {
        let git = g.repository()?;
        let (history, order) = history_order(&git, g.head)?;
        let mut used = HashMap::new();
        let (model_commit, head_tree, model) = self.head_model(g, &history, &mut used)?;
        let statuses = self
            .peer_statuses(&git, model.fleet.settings.status_store)
            .await?;
        Ok(PassState {
            git,
            history,
            order,
            head_tree,
            model,
            model_commit,
            statuses,
            head: g.head.to_string(),
            used,
            targeted: Vec::new(),
            halts: Vec::new(),
            plans: HashMap::new(),
        })
    }

    /// The plan stage for one app targeting this cluster: the release it should run
    /// here now, or `None` when it stays as it is (suspended, waiting for its wave,
    /// or held with the reason recorded in `out`).
    fn plan_here(
        &mut self,
        g: &GitRepo,
        pass: &mut PassState,
        app: &App,
        out: &mut PassOutcome,
        now: SystemTime,
    ) -> Option<Planned> {
        let head = &pass.head;
        let fleet = &pass.model.fleet;
        let previous = status_here(&pass.statuses, &self.cluster, &app.name);
        if app.suspend {
            out.report
                .apps
                .push((app.name.clone(), AppResult::Suspended));
            if let Some(p) = previous {
                let mut s = next_status(
                    Some(p),
                    &p.release,
                    &p.hash,
                    Phase::Suspended,
                    "suspend: true".into(),
                    now,
                );
                s.message = "suspend: true in app.yaml".into();
                out.apps.insert(app.name.clone(), s);
            }
            return None;
        }
        let cached = self.shared.lock_histories().get(&app.name).cloned();
        let h = match cached {
            Some((at, h)) if at == g.head => h,
            earlier => match app_history(
                g,
                &pass.git,
                &pass.history,
                FleetAt {
                    commit: pass.model_commit,
                    tree: &pass.head_tree,
                    fleet,
                },
                &app.name,
                &self.renders,
                earlier.as_ref().map(|(_, h)| &**h),
            ) {
                Ok(h) => {
                    let h = Arc::new(h);
                    self.shared
                        .lock_histories()
                        .insert(app.name.clone(), (g.head, h.clone()));
                    h
                }
                Err(e) => {
                    let message = format!(
                        "cannot read the app's releases: {}",
                        crate::error_text::chain(&e)
                    );
                    out.hold(&app.name, previous, head, message, now);
                    return None;
                }
            },
        };
        let dependencies = self.dependencies_here(fleet, pass, app, out);
        let shareable = app.depends_on.is_empty();
        let shared = shareable
            .then(|| self.shared.plan(&app.name, g.head, &pass.statuses, now))
            .flatten();
        let plan = match shared {
            Some(plan) => plan,
            None => {
                let what = format!("planning apps/{} for {}", app.name, self.cluster);
                let planned = crate::contain::caught(&what, || {
                    plan_app(&PlanInput {
                        app: &app.name,
                        policy: &app.rollout,
                        waves: &h.waves,
                        releases: &h.releases,
                        order: &pass.order,
                        statuses: &pass.statuses,
                        approvals: &h.approvals,
                        dependencies: &dependencies,
                        now,
                    })
                });
                match planned {
                    Ok(plan) => {
                        let plan = Arc::new(plan);
                        if shareable {
                            self.shared.keep_plan(
                                &app.name,
                                g.head,
                                &pass.statuses,
                                now,
                                plan.clone(),
                            );
                        }
                        plan
                    }
                    Err(e) => {
                        out.hold(&app.name, previous, head, e.to_string(), now);
                        return None;
                    }
                }
            }
        };
        if self.notifier.is_some() {
            let halted = super::notify::halted(&plan, &self.cluster);
            pass.halts.extend(
                halted
                    .into_iter()
                    .map(|(r, why)| (app.name.clone(), r, why)),
            );
        }
        if pass.model.depended_on.contains(&app.name) {
            pass.plans.insert(app.name.clone(), (*plan).clone());
        }
        let decision = plan.decisions.get(&self.cluster)?;
        // Only a cluster held back (running what it runs, or nothing yet) waits for
        // a gate to open; one that gets its release now has nothing to wait for.
        let held = matches!(decision.reason, Reason::Current | Reason::Waiting);
        if held && let Some(ends) = bake_ends_before(&plan, decision.wave, &pass.statuses, app, now)
        {
            self.due_at(ends);
        }
        let target = match decision.reason {
            Reason::Rollback => decision.rollback_to.clone().or(decision.target.clone()),
            _ => decision.target.clone(),
        };
        let Some(target) = target else {
            out.report.apps.push((
                app.name.clone(),
                AppResult::Waiting(format!(
                    "no release may run here yet ({:?})",
                    decision.reason
                )),
            ));
            if let Some(p) = previous {
                out.apps.insert(app.name.clone(), p.clone());
            }
            return None;
        };
        Some(Planned {
            target,
            rollback: decision.reason == Reason::Rollback,
        })
    }

    /// The readiness of the apps `app` depends on (DESIGN §4.9): from their plans made
    /// earlier in this pass, with this cluster's status as this pass wrote it. A
    /// dependency that does not target this cluster does not hold it.
    fn dependencies_here(
        &self,
        fleet: &crate::fleet::Fleet,
        pass: &PassState,
        app: &App,
        out: &PassOutcome,
    ) -> Vec<crate::plan::DependencyReadiness> {
        let here = fleet.cluster(&self.cluster);
        app.depends_on
            .iter()
            .map(|d| {
                let dep = fleet.apps.iter().find(|a| a.name == d.value);
                let elsewhere = dep
                    .zip(here)
                    .is_some_and(|(dep, c)| !targets_cluster(dep, c));
                let mut readiness =
                    crate::plan::readiness_of([d.value.as_str()], &pass.plans, &pass.statuses)
                        .into_iter()
                        .next()
                        .unwrap_or_default();
                if elsewhere {
                    readiness.everywhere = None;
                    readiness.not_ready.remove(&self.cluster);
                } else if let Some(plan) = pass.plans.get(&d.value) {
                    readiness.update(plan, &self.cluster, out.apps.get(&d.value));
                }
                readiness
            })
            .collect()
    }

    /// The render and apply stages for a batch of apps planned in this pass: each
    /// planned release rendered for this cluster, then applied, apps that define
    /// namespaces or kinds first and one after another, the rest side by side within
    /// the reconciler's concurrency; then each app's health and the analysis of its
    /// bake recorded in `out`, in plan order.
    async fn render_and_apply(
        &mut self,
        g: &GitRepo,
        pass: &mut PassState,
        batch: Vec<(&App, Planned)>,
        out: &mut PassOutcome,
        now: SystemTime,
    ) -> Result<(), AgentError> {
        let mut ready = Vec::new();
        for (app, planned) in batch {
            if let Some(r) = self.render_planned(g, pass, app, planned, out, now)? {
                ready.push(r);
            }
        }
        // What each app is applied as: the app at its release.
        fn revision<'r>(
            r: &'r ReadyToApply<'_>,
        ) -> Option<(&'r App, &'r str, &'r crate::render::Rendered)> {
            let a = r.at.fleet.app(&r.app.name)?;
            Some((a, r.target.as_str(), &*r.rendered))
        }
        let mut outcomes: Vec<Option<Reconciled>> = (0..ready.len()).map(|_| None).collect();
        let (foundations, others): (Vec<usize>, Vec<usize>) = (0..ready.len())
            .partition(|i| (ready[*i].rendered.objects).any_kind(super::defines_what_others_use));
        let reconciler = &self.reconciler;
        for i in foundations {
            if let Some((a, target, rendered)) = revision(&ready[i]) {
                outcomes[i] = Some(super::reconcile_app(reconciler, a, target, rendered).await);
            }
        }
        let revisions: Vec<_> = others
            .iter()
            .filter_map(|i| Some((*i, revision(&ready[*i])?)))
            .collect();
        let mut side_by_side = futures_util::stream::iter(revisions)
            .map(|(i, (a, target, rendered))| async move {
                (
                    i,
                    super::reconcile_app(reconciler, a, target, rendered).await,
                )
            })
            // In completion order: a slow app must not hold back the next ones.
            .buffer_unordered(reconciler.concurrency());
        while let Some((i, outcome)) = side_by_side.next().await {
            outcomes[i] = Some(outcome);
        }
        drop(side_by_side);
        for (r, outcome) in ready.into_iter().zip(outcomes) {
            if let Some(outcome) = outcome {
                self.record_applied(pass, r, outcome, out, now).await;
            }
        }
        Ok(())
    }

    /// The render stage for one planned app: the fleet at its release and its
    /// rendering for this cluster, or `None` with the reason recorded in `out`.
    fn render_planned<'m>(
        &mut self,
        g: &GitRepo,
        pass: &mut PassState,
        app: &'m App,
        planned: Planned,
        out: &mut PassOutcome,
        now: SystemTime,
    ) -> Result<Option<ReadyToApply<'m>>, AgentError> {
        let Planned { target, rollback } = planned;
        let previous = status_here(&pass.statuses, &self.cluster, &app.name);
        let head = &pass.head;
        let oid = Oid::from_str(&target).map_err(|error| AgentError::Release {
            release: target.clone(),
            error,
        })?;
        let (tree, at) = match self.fleet_at(g, oid, &mut pass.used) {
            Ok(found) => found,
            Err(e) => {
                out.hold(&app.name, previous, head, crate::error_text::chain(&e), now);
                return Ok(None);
            }
        };
        let (Some(a), Some(c)) = (at.fleet.app(&app.name), at.fleet.cluster(&self.cluster)) else {
            return Ok(None);
        };
        let rendered = match self.renders.render(&*tree, &at.fleet, a, c, Keep::Objects) {
            Ok(r) => r,
            Err(e) => {
                let message = e.to_string();
                let status = next_status(previous, &target, "", Phase::Error, message.clone(), now);
                out.record(&app.name, status, AppResult::RenderFailed(message));
                return Ok(None);
            }
        };
        Ok(Some(ReadyToApply {
            app,
            target,
            rollback,
            at,
            rendered,
        }))
    }

    /// The health stage for one applied app: its health with the progress deadline,
    /// the analysis of its bake, and its status recorded in `out`.
    async fn record_applied(
        &mut self,
        pass: &PassState,
        ready: ReadyToApply<'_>,
        (outcome, took): Reconciled,
        out: &mut PassOutcome,
        now: SystemTime,
    ) {
        let ReadyToApply {
            app,
            target,
            rollback,
            at,
            rendered,
        } = ready;
        let previous = status_here(&pass.statuses, &self.cluster, &app.name);
        let at = &at.fleet;
        let (Some(a), Some(c)) = (at.app(&app.name), at.cluster(&self.cluster)) else {
            return;
        };
        let health = outcome.as_ref().ok().map(|applied| {
            self.memory.with_deadline(
                &app.name,
                &target,
                applied.health,
                a.rollout.progress_deadline,
            )
        });
        if let Some(m) = &self.metrics {
            m.record_reconcile(
                &self.cluster,
                &app.name,
                &target,
                took,
                outcome.as_ref().ok().zip(health),
            );
        }
        match outcome {
            Ok(applied) => {
                let health = health.unwrap_or(applied.health);
                let mut phase = phase_of(health);
                if rollback && phase == Phase::Healthy {
                    phase = Phase::RolledBack;
                }
                let mut message = applied
                    .unhealthy
                    .iter()
                    .map(|(k, r)| format!("{k}: {r}"))
                    .collect::<Vec<_>>()
                    .join("; ");
                let hash = &rendered.content_hash;
                // The analysis of the bake, by the head's policy as the gates are.
                let analysis = if rollback {
                    None
                } else {
                    let context = crate::render::template_context(at, a, c);
                    super::analysis::step(super::analysis::Step {
                        cluster: &self.cluster,
                        app: &app.name,
                        spec: &app.rollout.analysis,
                        bake: app.rollout.bake,
                        release: &target,
                        hash,
                        phase,
                        previous,
                        context: &context,
                        prometheus: self.prometheus.as_ref(),
                        metrics: self.metrics.as_deref(),
                        now,
                    })
                    .await
                };
                if let Some(o) = &analysis {
                    phase = o.phase;
                    if let Some(m) = &o.message {
                        message = m.clone();
                    }
                    if o.message.as_deref() == Some(super::analysis::SKIPPED)
                        && self.skipped.insert(app.name.clone())
                    {
                        tracing::warn!(cluster = %self.cluster, app = %app.name, "the app's rollout has analysis but no prometheus is configured for this cluster: analysis skipped, the bake time alone applies");
                    }
                    if let Some(next) = o.next {
                        self.due_at(next);
                    }
                }
                let was_good = previous.is_some_and(|p| p.known_good.contains(hash));
                let mut status = next_status(previous, &target, hash, phase, message, now);
                if let Some(o) = analysis {
                    // Healthy is not good enough before the analysis passed: a
                    // known-good rendering is re-applied by the revert fast path.
                    if o.verified.is_none() && !was_good {
                        status.known_good.retain(|h| h != hash);
                    }
                    status.analysis = o.results;
                    status.verified = o.verified;
                }
                let result = AppResult::applied(target.clone(), &applied, health);
                out.record(&app.name, status, result);
            }
            Err(e) => {
                let hash = &rendered.content_hash;
                let status = next_status(previous, &target, hash, Phase::Error, e.to_string(), now);
                out.record(&app.name, status, AppResult::failed(&e));
            }
        }
    }

    /// The report stage: apps no longer targeted here released, then the status
    /// written (when it changed or the heartbeat is due) and published, and the
    /// events of the pass queued.
    async fn report(
        &mut self,
        g: &GitRepo,
        pass: PassState,
        mut out: PassOutcome,
        now: SystemTime,
    ) -> Result<PassReport, AgentError> {
        let PassState {
            model,
            statuses,
            used,
            targeted,
            halts,
            ..
        } = pass;
        let fleet = &model.fleet;
        let mine = statuses.get(&self.cluster);
        self.fleets.retain(|commit, _| used.contains_key(commit));
        // Apps are reported in the order they were planned (a batch records its
        // render failures before its applies).
        let position: HashMap<&str, usize> = targeted
            .iter()
            .enumerate()
            .map(|(i, a)| (a.as_str(), i))
            .collect();
        out.report
            .apps
            .sort_by_key(|(app, _)| position.get(app.as_str()).copied().unwrap_or(usize::MAX));
        // Released apps are reported per app; the status is written either way.
        super::release_untargeted(&self.reconciler, fleet, &targeted, &mut out.report).await?;
        // An app whose release failed (its objects could not be deleted) stays in the
        // status, in Error with the reason, until a pass releases it: dropping it would
        // hide that its objects and inventory are still there.
        for (app, result) in &out.report.apps {
            if let AppResult::ApplyFailed { message, .. } = result
                && !out.apps.contains_key(app)
            {
                let previous = status_here(&statuses, &self.cluster, app);
                let (release, hash) =
                    previous.map_or(("", ""), |p| (p.release.as_str(), p.hash.as_str()));
                let status =
                    next_status(previous, release, hash, Phase::Error, message.clone(), now);
                out.apps.insert(app.clone(), status);
            }
        }
        // Events are queued first, so the status written next already carries what
        // an earlier run of the agent delivered.
        match &self.notifier {
            Some(n) => {
                let freeze = self
                    .tells_fleet_events
                    .then(|| super::notify::FreezeNotice::of(fleet.settings.freeze.as_ref(), now));
                let freeze = freeze.as_ref().map(Option::as_ref);
                n.observe(&self.cluster, mine, &out.apps, &halts, freeze, now)
            }
            // Without notifications, what an earlier run delivered is kept as read.
            None if self.publisher.last().is_none() => {
                self.notified_before = mine.map(|m| m.notified.clone()).unwrap_or_default();
            }
            None => {}
        }
        self.write_status(g, out.apps, now)?;
        if !self.publisher.deferred() {
            self.publisher.publish_to_hub().await;
        }
        Ok(out.report)
    }

    /// Writes the pending status to the hub, when the fleet's statuses live there (see
    /// [`Publisher::publish_to_hub`]).
    pub async fn publish_to_hub(&mut self) {
        self.publisher.publish_to_hub().await;
    }

    /// Writes the last status again with a fresh heartbeat and pushes it: the agent's
    /// last word before it stops, so peers see exactly how it left the cluster.
    pub fn flush(&mut self, g: &GitRepo, now: SystemTime) -> Result<(), AgentError> {
        let Some(last) = self.publisher.last() else {
            return Ok(());
        };
        let apps = last.apps.clone();
        self.publisher.beat_next();
        self.write_status(g, apps, now)
    }

    /// Writes (and for a remote repository pushes) the status when it changed or the
    /// heartbeat is due. A failed push is logged and retried at the next pass: the
    /// cluster keeps being reconciled while the Git server is unreachable.
    fn write_status(
        &mut self,
        g: &GitRepo,
        apps: BTreeMap<String, AppStatus>,
        now: SystemTime,
    ) -> Result<(), AgentError> {
        let notified = match &self.notifier {
            Some(n) => n.memory(&self.cluster),
            // Without notifications, the memory in the last status written (or, before
            // the first, in the status an earlier run left) is kept.
            None => self
                .publisher
                .last()
                .map(|l| l.notified.clone())
                .unwrap_or_else(|| self.notified_before.clone()),
        };
        self.publisher
            .record(&g.repository()?, apps, notified, now)?;
        if !self.publisher.ref_push_due() {
            return Ok(());
        }
        let Some(mirror) = g.mirror() else {
            self.publisher.sent();
            return Ok(());
        };
        match push_status(mirror, &self.cluster, 3) {
            Ok(()) => self.publisher.sent(),
            Err(e) => tracing::warn!(
                cluster = %self.cluster,
                error = %e,
                "status not pushed; trying again at the next pass"
            ),
        }
        Ok(())
    }

    /// Writes the last status again with a fresh heartbeat when half of the heartbeat
    /// interval has passed, so that it joins a push the agent makes for another cluster
    /// anyway: the heartbeats of an agent's clusters fall due together, and an idle
    /// agent pushes about once per heartbeat instead of once per cluster.
    pub fn beat_with_others(&mut self, g: &GitRepo, now: SystemTime) -> Result<(), AgentError> {
        if !self.publisher.half_beat_due() {
            return Ok(());
        }
        let Some(last) = self.publisher.last() else {
            return Ok(());
        };
        let apps = last.apps.clone();
        self.publisher.beat_next();
        self.write_status(g, apps, now)
    }

    /// Whether the statuses written since the last call opened a gate (an app turned
    /// Healthy at a release, or its analysis passed): the agent's other clusters,
    /// whose next wave may wait on it, should make a pass.
    pub fn take_opened_gate(&mut self) -> bool {
        self.publisher.take_opened_gate()
    }

    /// Whether a status is written but not yet sent.
    pub fn push_pending(&self) -> bool {
        self.publisher.pending()
    }

    /// Leaves pushing the written status to the caller, which pushes the statuses of
    /// every cluster it runs in one push ([`crate::source::statusref::push_statuses`])
    /// and then calls [`ClusterAgent::pushed`]: an agent serving many clusters costs the
    /// Git server one push per pass.
    pub fn defer_push(mut self) -> Self {
        self.publisher.defer();
        self
    }

    /// Keeps the status in the local mirror (a read-only agent, for fleets whose
    /// policy is `gate: time`) when `push` is false.
    pub fn with_push(mut self, push: bool) -> Self {
        self.publisher.set_push(push);
        self
    }

    /// The status written last is on the server.
    pub fn pushed(&mut self) {
        self.publisher.sent();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plan_is_shared_only_with_passes_that_read_the_same_head_statuses_and_time() {
        let shared = SharedPlanning::default();
        let head = Oid::from_str("1111111111111111111111111111111111111111").unwrap();
        let other_head = Oid::from_str("2222222222222222222222222222222222222222").unwrap();
        let statuses = Arc::new(BTreeMap::new());
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let plan = Arc::new(crate::plan::AppPlan {
            waves: vec![vec!["test-1".into()]],
            decisions: BTreeMap::new(),
            pending: Vec::new(),
        });
        assert!(shared.plan("web", head, &statuses, now).is_none());
        shared.keep_plan("web", head, &statuses, now, plan.clone());
        let found = shared.plan("web", head, &statuses, now).expect("kept");
        assert!(Arc::ptr_eq(&found, &plan));
        // An equal map read apart may hold different statuses by the time it is
        // compared: only the same map is the same input.
        let equal_but_apart = Arc::new(BTreeMap::new());
        assert!(shared.plan("web", head, &equal_but_apart, now).is_none());
        assert!(shared.plan("web", other_head, &statuses, now).is_none());
        let later = now + Duration::from_secs(1);
        assert!(shared.plan("web", head, &statuses, later).is_none());
        assert!(shared.plan("api", head, &statuses, now).is_none());
    }
}
