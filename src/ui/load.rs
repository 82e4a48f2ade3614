//! Reads what the web view shows: the fleet, each app's releases and plan at the head
//! of the tracked branch, and every cluster's status ref. The expensive part (each
//! release rendered for each cluster, as `rollwave plan` does) is redone only when the
//! head moves, and then only for what the new commit changed (renderings are kept by
//! their inputs); the status refs and the plan are re-read on every call.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant, SystemTime};

use git2::Oid;

use super::UiError;
use super::model::{
    AppSource, AppView, FleetSource, FleetView, PICKER_RELEASES, app_view, fleet_view,
};
use crate::fleet::RolloutSpec;
use crate::plan::history::{AppHistory, FleetAt, app_history, history_order};
use crate::plan::{PlanInput, plan_app, release_gates};
use crate::render::cache::{DEFAULT_MAX_BYTES, RenderCache};
use crate::source::repo::{GitAccess, GitRepo};

/// Everything the page and the API serve, as of one read.
#[derive(Debug, Clone, PartialEq)]
pub struct Views {
    /// `/api/fleet`.
    pub fleet: FleetView,
    /// `/api/apps/<app>`, by app.
    pub apps: BTreeMap<String, AppView>,
}

/// What depends only on the head commit.
struct HeadState {
    head: Oid,
    order: HashMap<String, usize>,
    subjects: HashMap<String, String>,
    /// Per app, in dependency order: its name, policy, `dependsOn` and history.
    apps: Vec<(String, RolloutSpec, Vec<String>, AppHistory)>,
    store: crate::status::StoreKind,
    /// fleet.yaml's freeze and windows, for the banner.
    freeze: Option<crate::fleet::Freeze>,
    windows: Vec<std::sync::Arc<crate::fleet::windows::Window>>,
    /// Every cluster's labels, for the page's label filter.
    labels: BTreeMap<String, BTreeMap<String, String>>,
}

/// Where the fleet is read from, and what was read at the current head.
pub struct Loader {
    repo: String,
    /// The fleet's directory in the repository (`--path`), if not its root.
    path: Option<String>,
    branch: String,
    access: GitAccess,
    fetch_every: Duration,
    remote: Option<(GitRepo, Instant)>,
    head_state: Option<HeadState>,
    /// The status hub, watched, for a fleet whose statuses live there.
    hub: Option<std::sync::Arc<crate::status::hub::Hub>>,
    /// Renderings of every release for every cluster, kept across head moves: a new
    /// commit renders again only the apps whose inputs it changed.
    renders: std::sync::Arc<RenderCache>,
}

impl Loader {
    /// Reads `repo` (a path: its `HEAD` as it moves; a URL: `branch`, fetched with the
    /// status refs every `fetch_every`).
    pub fn new(repo: &str, branch: &str, access: GitAccess, fetch_every: Duration) -> Loader {
        Loader {
            repo: repo.to_string(),
            path: None,
            branch: branch.to_string(),
            access,
            fetch_every,
            remote: None,
            head_state: None,
            hub: None,
            renders: std::sync::Arc::new(RenderCache::new(DEFAULT_MAX_BYTES)),
        }
    }

    /// Keeps renderings in `renders` (shared, or with another budget) instead of a
    /// cache of its own.
    pub fn with_renders(mut self, renders: std::sync::Arc<RenderCache>) -> Loader {
        self.renders = renders;
        self
    }

    /// Reads statuses from `hub` (watched by the caller) when fleet.yaml keeps them
    /// there.
    pub fn with_hub(mut self, hub: Option<std::sync::Arc<crate::status::hub::Hub>>) -> Loader {
        self.hub = hub;
        self
    }

    /// Where the fleet at the repository's head keeps its statuses.
    pub fn status_store(&mut self) -> Result<crate::status::StoreKind, UiError> {
        self.open()?;
        let Some((g, _)) = &self.remote else {
            return Err(UiError::NotRead(self.repo.clone()));
        };
        Ok(g.fleet(g.head)?.1.settings.status_store)
    }

    /// Reads the fleet in the directory `path` of the repository (a monorepo).
    pub fn with_path(mut self, path: Option<String>) -> Loader {
        self.path = path;
        self
    }

    /// The repository's directory, when it is not a URL (to watch its refs).
    pub fn local_path(&self) -> Option<&std::path::Path> {
        (!crate::source::is_remote_url(&self.repo)).then(|| std::path::Path::new(&self.repo))
    }

    /// The repository as of now: a local one read again, a remote one fetched at
    /// most every `fetch_every`.
    fn open(&mut self) -> Result<(), UiError> {
        if !crate::source::is_remote_url(&self.repo) {
            let g = GitRepo::open_with(
                &self.repo,
                self.path.as_deref(),
                None,
                &self.branch,
                &self.access,
            )?;
            self.remote = Some((g, Instant::now()));
        } else if self
            .remote
            .as_ref()
            .is_none_or(|(_, at)| at.elapsed() >= self.fetch_every)
        {
            let mut access = self.access.clone();
            // After the first read, a failed fetch keeps the last fetched state.
            access.allow_stale = self.remote.is_some();
            let g = GitRepo::open_with(
                &self.repo,
                self.path.as_deref(),
                None,
                &self.branch,
                &access,
            )?;
            self.remote = Some((g, Instant::now()));
        }
        Ok(())
    }

    /// Reads the repository and the status refs and builds the views as of `now`.
    pub fn load(&mut self, now: SystemTime) -> Result<Views, UiError> {
        self.open()?;
        let Some((g, _)) = &self.remote else {
            return Err(UiError::NotRead(self.repo.clone()));
        };
        let repo = g.repository()?;
        let head = g.head;
        if self.head_state.as_ref().is_none_or(|h| h.head != head) {
            let (history, order) = history_order(&repo, head)?;
            let (tree, fleet) = g.fleet(head)?;
            // The histories at the head before: their releases' hashes are reused.
            let earlier: HashMap<&str, &AppHistory> = (self.head_state.iter())
                .flat_map(|s| s.apps.iter().map(|(name, _, _, h)| (name.as_str(), h)))
                .collect();
            let at = FleetAt {
                commit: head,
                tree: &tree,
                fleet: &fleet,
            };
            let mut apps = Vec::new();
            for app in fleet.apps_in_dependency_order() {
                let previous = earlier.get(app.name.as_str()).copied();
                let h = app_history(g, &repo, &history, at, &app.name, &self.renders, previous)?;
                let depends_on = app.depends_on.iter().map(|d| d.value.clone()).collect();
                apps.push((app.name.clone(), app.rollout.clone(), depends_on, h));
            }
            let subjects = history
                .iter()
                .filter_map(|oid| {
                    let c = repo.find_commit(*oid).ok()?;
                    Some((
                        oid.to_string(),
                        c.summary().ok().flatten().unwrap_or_default().to_string(),
                    ))
                })
                .collect();
            self.head_state = Some(HeadState {
                head,
                order,
                subjects,
                apps,
                store: fleet.settings.status_store,
                freeze: fleet.settings.freeze.clone(),
                windows: fleet.settings.windows.clone(),
                labels: fleet
                    .clusters
                    .iter()
                    .map(|c| (c.name.clone(), c.labels.clone()))
                    .collect(),
            });
        }
        let Some(state) = &self.head_state else {
            return Err(UiError::NotRead(self.repo.clone()));
        };
        let store = crate::status::store::Store::open(state.store, self.hub.as_ref())
            .map_err(UiError::Store)?;
        let (statuses, errors) = store.read_now(&repo);
        let unreadable: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
        let head_sha = head.to_string();
        let src = FleetSource {
            head: &head_sha,
            order: &state.order,
            subjects: &state.subjects,
            statuses: &statuses,
            unreadable: &unreadable,
            freeze: state.freeze.as_ref(),
            windows: &state.windows,
            labels: &state.labels,
            now,
        };
        let mut apps = BTreeMap::new();
        let mut ordered = Vec::new();
        let mut plans = std::collections::HashMap::new();
        for (name, policy, depends_on, h) in &state.apps {
            let dependencies =
                crate::plan::readiness_of(depends_on.iter().map(String::as_str), &plans, &statuses);
            let input = PlanInput {
                app: name,
                policy,
                waves: &h.waves,
                releases: &h.releases,
                order: &state.order,
                statuses: &statuses,
                approvals: &h.approvals,
                dependencies: &dependencies,
                now,
            };
            let plan = plan_app(&input);
            let gates = h
                .releases
                .iter()
                .take(PICKER_RELEASES)
                .map(|r| (r.sha.clone(), release_gates(&input, r)))
                .collect();
            let view = app_view(
                &src,
                &AppSource {
                    name,
                    policy,
                    plan: &plan,
                    releases: &h.releases,
                    gates: &gates,
                },
            );
            ordered.push(view.clone());
            apps.insert(name.clone(), view);
            plans.insert(name.clone(), plan);
        }
        Ok(Views {
            fleet: fleet_view(&src, &ordered),
            apps,
        })
    }
}
