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
    /// The helm binary the releases were rendered with
    /// ([`crate::render::cache::helm_identity`]): a later history reuses their hashes
    /// only while it is the same.
    helm: [u8; 32],
}

/// The fleet as loaded at one commit (the head, or the newest commit where it loads):
/// the releases at that commit are rendered from it instead of loading it again.
#[derive(Clone, Copy)]
pub struct FleetAt<'a> {
    /// The commit.
    pub commit: Oid,
    /// Its files.
    pub tree: &'a GitTree,
    /// Its model.
    pub fleet: &'a Fleet,
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

/// Gathers waves, rendered releases and approvals of `app`, given the fleet at the
/// head (loaded once by the caller for every app). Renderings come from `renders`
/// when their inputs were rendered before (only their hashes are kept there).
///
/// A release's hashes depend on its commit alone (and on the helm binary), so they are
/// taken from `previous`, the app's history at an earlier head, when it has the
/// release, and a release at `at`'s commit is rendered from `at`: only the other
/// releases load the whole fleet at their commit. Without that, every new head made
/// each app load the fleet once per release, and a cold pass over a thousand apps
/// loaded the fleet a thousand times.
pub fn app_history(
    g: &GitRepo,
    repo: &Repository,
    history: &[Oid],
    at: FleetAt<'_>,
    app: &str,
    renders: &RenderCache,
    previous: Option<&AppHistory>,
) -> Result<AppHistory, HistoryError> {
    let Some(a) = at.fleet.app(app) else {
        return Err(HistoryError::NoSuchApp(app.to_string()));
    };
    let waves = waves_for(at.fleet, a);
    let inputs = app_inputs(g, (at.tree, at.fleet), a, renders);
    let rel = releases(repo, history, &inputs)?;
    let helm = crate::render::cache::helm_identity();
    let known = previous.filter(|p| p.helm == helm);
    let mut out = Vec::new();
    for oid in rel.into_iter().take(RELEASE_LIMIT) {
        let commit = repo.find_commit(oid).map_err(|e| SourceError::Local {
            path: g.git_dir.display().to_string(),
            message: e.message().to_string(),
        })?;
        let time =
            SystemTime::UNIX_EPOCH + Duration::from_secs(commit.time().seconds().max(0) as u64);
        let sha = oid.to_string();
        let hashes = match known.and_then(|p| reusable_hashes(p, &sha)) {
            Some(hashes) => hashes.clone(),
            None if oid == at.commit => release_hashes(at.tree, at.fleet, app, &sha, renders),
            None => match g.fleet_apart(oid) {
                Ok((t, f, _)) => release_hashes(&t, &f, app, &sha, renders),
                Err(_) => BTreeMap::new(),
            },
        };
        out.push(Release { sha, time, hashes });
    }
    Ok(AppHistory {
        waves,
        releases: out,
        approvals: approvals_at(at.tree, app)?,
        helm,
    })
}

/// The hashes of the release `sha` in an earlier history, unless a rendering of it
/// failed there (a failure may be transient: it is rendered again) or the fleet did
/// not load at it.
fn reusable_hashes<'a>(
    previous: &'a AppHistory,
    sha: &str,
) -> Option<&'a BTreeMap<String, String>> {
    let unrenderable = crate::plan::unrenderable_hash(sha);
    previous
        .releases
        .iter()
        .find(|r| r.sha == sha)
        .map(|r| &r.hashes)
        .filter(|h| !h.is_empty() && !h.values().any(|v| *v == unrenderable))
}

/// The content hash of `app` at the commit `sha` (whose files and model are `tree`
/// and `fleet`) for every cluster it targets there.
fn release_hashes(
    tree: &GitTree,
    fleet: &Fleet,
    app: &str,
    sha: &str,
    renders: &RenderCache,
) -> BTreeMap<String, String> {
    let Some(a) = fleet.app(app) else {
        return BTreeMap::new();
    };
    fleet
        .clusters
        .iter()
        .filter(|c| targets_cluster(a, c))
        .map(|c| {
            let hash = match renders.render(tree, fleet, a, c, Keep::Hash) {
                Ok(r) => r.content_hash.clone(),
                Err(_) => crate::plan::unrenderable_hash(sha),
            };
            (c.name.clone(), hash)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn history(releases: &[(&str, &[(&str, &str)])]) -> AppHistory {
        AppHistory {
            waves: Vec::new(),
            releases: releases
                .iter()
                .map(|(sha, hashes)| Release {
                    sha: sha.to_string(),
                    time: SystemTime::UNIX_EPOCH,
                    hashes: (hashes.iter())
                        .map(|(c, h)| (c.to_string(), h.to_string()))
                        .collect(),
                })
                .collect(),
            approvals: Vec::new(),
            helm: [0; 32],
        }
    }

    #[test]
    fn only_hashes_that_rendered_are_reused() {
        let unrenderable = crate::plan::unrenderable_hash("c2");
        let earlier = history(&[
            ("c3", &[("a", "h3"), ("b", "h3")]),
            ("c2", &[("a", "h2"), ("b", unrenderable.as_str())]),
            ("c1", &[]),
        ]);
        let reused = |sha| reusable_hashes(&earlier, sha).map(|h| h.len());
        assert_eq!(reused("c3"), Some(2));
        assert_eq!(reused("c2"), None, "a failed rendering is tried again");
        assert_eq!(
            reused("c1"),
            None,
            "a fleet that did not load is read again"
        );
        assert_eq!(reused("c0"), None, "not in the earlier history");
    }
}
