//! What the planner needs of one app, gathered from the fleet's Git history: its waves,
//! its releases (each rendered for every cluster it targets) and the approvals at the
//! head. Read by the agent's pass and by `plan`, `status` and `ui` alike.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, SystemTime};

use git2::{Oid, Repository};

use super::{Approval, Release, waves_for};
use crate::fleet::{Fleet, targets_cluster};
use crate::render::cache::{Keep, RenderCache};
use crate::source::history::{Inputs, first_parent_history, releases};
use crate::source::repo::{GitRepo, RepoError};
use crate::source::{GitTree, SourceError};
use crate::tree::{FileTree, RepoPath};
use crate::yaml::YamlError;

/// How many first-parent commits are examined for releases.
pub const HISTORY_LIMIT: usize = 500;
/// How many releases per app are planned.
const RELEASE_LIMIT: usize = 20;

/// Why an app's history could not be gathered.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    /// The app is not in the fleet at the head.
    #[error("app '{0}' is not in apps/")]
    NoSuchApp(String),
    /// The repository could not be read.
    #[error(transparent)]
    Repo(#[from] RepoError),
    /// Git history could not be read.
    #[error(transparent)]
    Source(#[from] SourceError),
    /// The approvals file is not valid.
    #[error(transparent)]
    Approvals(#[from] YamlError),
    /// A file could not be read.
    #[error(transparent)]
    Tree(#[from] crate::tree::TreeError),
}

/// What the planner needs for one app, gathered from Git.
#[derive(Debug, Clone)]
pub struct AppHistory {
    /// Waves at the head.
    pub waves: Vec<Vec<String>>,
    /// Releases, newest first, each rendered for every targeted cluster.
    pub releases: Vec<Release>,
    /// Approvals at the head.
    pub approvals: Vec<Approval>,
}

/// Commit order of the first-parent history of `head` (larger: newer).
pub fn history_order(
    repo: &Repository,
    head: Oid,
) -> Result<(Vec<Oid>, HashMap<String, usize>), SourceError> {
    let history = first_parent_history(repo, head, HISTORY_LIMIT)?;
    let n = history.len();
    let order = history
        .iter()
        .enumerate()
        .map(|(i, o)| (o.to_string(), n - i))
        .collect();
    Ok((history, order))
}

fn approvals_at(tree: &dyn FileTree, app: &str) -> Result<Vec<Approval>, HistoryError> {
    let path = RepoPath::new(&format!("approvals/{app}.yaml"))?;
    match tree.read_text(&path) {
        Ok(text) => Ok(crate::yaml::parse_typed::<Vec<Approval>>(
            path.as_str(),
            &text,
        )?),
        Err(crate::tree::TreeError::NotFound(_)) => Ok(Vec::new()),
        Err(e) => Err(e.into()),
    }
}

/// What a commit must touch to be a release of `app`: the files its renderings read
/// for every cluster it targets, its directory, `clusters/` and `fleet.yaml`.
fn app_inputs(
    g: &GitRepo,
    (tree, fleet): (&GitTree, &Fleet),
    app: &crate::fleet::App,
    renders: &RenderCache,
) -> Inputs {
    let mut files = BTreeSet::new();
    for c in fleet.clusters.iter().filter(|c| targets_cluster(app, c)) {
        if let Ok(r) = renders.render(tree, fleet, app, c, Keep::Head) {
            files.extend(r.files_read.iter().cloned());
        }
    }
    Inputs::for_app(&app.name, &files).in_fleet_dir(&g.fleet_dir)
}

/// The releases of `app` that the commits after `from` up to `to` create (first-parent
/// history of `to`, newest first, at most [`HISTORY_LIMIT`]): what merging a branch
/// starts. A change to `fleet.yaml` or a cluster file is a release of every app it
/// reaches, whether or not a rendering changes.
pub fn releases_created(
    g: &GitRepo,
    repo: &Repository,
    (from, to): (Oid, Oid),
    (tree, fleet): (&GitTree, &Fleet),
    app: &str,
    renders: &RenderCache,
) -> Result<Vec<Oid>, HistoryError> {
    let Some(a) = fleet.app(app) else {
        return Err(HistoryError::NoSuchApp(app.to_string()));
    };
    // Commits reachable from `from` are already on the base.
    let base = repo.merge_base(from, to).unwrap_or(from);
    let range: Vec<Oid> = first_parent_history(repo, to, HISTORY_LIMIT)?
        .into_iter()
        .take_while(|oid| *oid != base)
        .collect();
    Ok(releases(
        repo,
        &range,
        &app_inputs(g, (tree, fleet), a, renders),
    )?)
}

/// Gathers waves, rendered releases and approvals of `app`, given the tree and fleet at
/// the head (loaded once by the caller for every app). Renderings come from `renders`
/// when their inputs were rendered before (only their hashes are kept there).
pub fn app_history(
    g: &GitRepo,
    repo: &Repository,
    history: &[Oid],
    (tree, fleet): (&GitTree, &Fleet),
    app: &str,
    renders: &RenderCache,
) -> Result<AppHistory, HistoryError> {
    let Some(a) = fleet.app(app) else {
        return Err(HistoryError::NoSuchApp(app.to_string()));
    };
    let waves = waves_for(fleet, a);
    let inputs = app_inputs(g, (tree, fleet), a, renders);
    let rel = releases(repo, history, &inputs)?;
    let mut out = Vec::new();
    for oid in rel.into_iter().take(RELEASE_LIMIT) {
        let commit = repo.find_commit(oid).map_err(|e| SourceError::Local {
            path: g.git_dir.display().to_string(),
            message: e.message().to_string(),
        })?;
        let time =
            SystemTime::UNIX_EPOCH + Duration::from_secs(commit.time().seconds().max(0) as u64);
        let mut hashes = BTreeMap::new();
        if let Ok((t, f, _)) = g.fleet_apart(oid)
            && let Some(a) = f.app(app)
        {
            for c in f.clusters.iter().filter(|c| targets_cluster(a, c)) {
                let hash = match renders.render(&t, &f, a, c, Keep::Hash) {
                    Ok(r) => r.content_hash.clone(),
                    Err(_) => crate::plan::unrenderable_hash(&oid.to_string()),
                };
                hashes.insert(c.name.clone(), hash);
            }
        }
        out.push(Release {
            sha: oid.to_string(),
            time,
            hashes,
        });
    }
    Ok(AppHistory {
        waves,
        releases: out,
        approvals: approvals_at(tree, app)?,
    })
}
