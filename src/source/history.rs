//! Release history: the first-parent history of the tracked branch, and which of its
//! commits are releases of an app (commits that change a file the app's rendering
//! depends on), found by tree diffs of paths rather than re-rendering history.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};

use git2::{DiffOptions, Oid, Repository};

use super::SourceError;
use crate::tree::RepoPath;

fn local(e: git2::Error) -> SourceError {
    SourceError::Local {
        path: "history".into(),
        message: e.message().to_string(),
    }
}

/// Commits from `head` following first parents, newest first, at most `limit`.
pub fn first_parent_history(
    repo: &Repository,
    head: Oid,
    limit: usize,
) -> Result<Vec<Oid>, SourceError> {
    let mut walk = repo.revwalk().map_err(local)?;
    walk.push(head).map_err(local)?;
    walk.simplify_first_parent().map_err(local)?;
    let mut out = Vec::new();
    for oid in walk.take(limit) {
        out.push(oid.map_err(local)?);
    }
    Ok(out)
}

/// How many commits' changed paths [`changed_paths`] keeps: the history an agent plans
/// from (every app asks about the same commits).
const CHANGED_PATHS_KEPT: usize = 1024;

/// The paths a commit changes compared with its first parent (everything, for a root
/// commit), sorted. Every app's release history asks about the same commits, so each
/// commit's paths are worked out once per process and shared: a commit's id fixes its
/// tree and its first parent's, so a kept answer is always right.
pub fn changed_paths(repo: &Repository, commit: Oid) -> Result<Arc<Vec<String>>, SourceError> {
    static KEPT: OnceLock<Mutex<HashMap<Oid, Arc<Vec<String>>>>> = OnceLock::new();
    let kept = KEPT.get_or_init(Default::default);
    if let Some(paths) = kept.lock().unwrap_or_else(|e| e.into_inner()).get(&commit) {
        return Ok(paths.clone());
    }
    let c = repo.find_commit(commit).map_err(local)?;
    let new_tree = c.tree().map_err(local)?;
    let old_tree = match c.parent(0) {
        Ok(p) => Some(p.tree().map_err(local)?),
        Err(_) => None,
    };
    let mut opts = DiffOptions::new();
    opts.skip_binary_check(true);
    let diff = repo
        .diff_tree_to_tree(old_tree.as_ref(), Some(&new_tree), Some(&mut opts))
        .map_err(local)?;
    let mut out = Vec::new();
    for d in diff.deltas() {
        for f in [d.old_file(), d.new_file()] {
            if let Some(p) = f.path().and_then(Path::to_str) {
                out.push(p.to_string());
            }
        }
    }
    out.sort_unstable();
    out.dedup();
    let paths = Arc::new(out);
    let mut kept = kept.lock().unwrap_or_else(|e| e.into_inner());
    if kept.len() >= CHANGED_PATHS_KEPT {
        kept.clear();
    }
    kept.insert(commit, paths.clone());
    Ok(paths)
}

/// What an app's rendering depends on: the files it read plus whole directories (its
/// app directory and `clusters/`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Inputs {
    /// Individual files.
    pub files: BTreeSet<RepoPath>,
    /// Directory prefixes: any change below them counts.
    pub dirs: BTreeSet<RepoPath>,
    /// The fleet's directory in the repository (empty: its root). Files and dirs are
    /// relative to it; a change outside it touches nothing.
    pub fleet_dir: RepoPath,
}

impl Inputs {
    /// The inputs of app `app` whose rendering read `files_read`.
    pub fn for_app(app: &str, files_read: &BTreeSet<RepoPath>) -> Inputs {
        let mut files = files_read.clone();
        files.insert(RepoPath::new("fleet.yaml").unwrap_or_default());
        let mut dirs = BTreeSet::new();
        if let Ok(d) = RepoPath::new(&format!("apps/{app}")) {
            dirs.insert(d);
        }
        if let Ok(d) = RepoPath::new("clusters") {
            dirs.insert(d);
        }
        Inputs {
            files,
            dirs,
            fleet_dir: RepoPath::default(),
        }
    }

    /// The same inputs for a fleet kept in `fleet_dir` of its repository: commits are
    /// releases of the app only through changes under that directory.
    pub fn in_fleet_dir(mut self, fleet_dir: &RepoPath) -> Inputs {
        self.fleet_dir = fleet_dir.clone();
        self
    }

    /// [`Inputs::in_fleet_dir`] on a copy.
    pub fn in_fleet(&self, fleet_dir: &RepoPath) -> Inputs {
        self.clone().in_fleet_dir(fleet_dir)
    }

    /// Whether a change to `path` affects the app.
    pub fn touched_by(&self, path: &str) -> bool {
        let path = if self.fleet_dir.as_str().is_empty() {
            path
        } else {
            match path
                .strip_prefix(self.fleet_dir.as_str())
                .and_then(|rest| rest.strip_prefix('/'))
            {
                Some(rest) => rest,
                None => return false,
            }
        };
        let Ok(p) = RepoPath::new(path) else {
            return false;
        };
        self.files.contains(&p) || self.dirs.iter().any(|d| p.starts_with(d))
    }
}

/// The releases of an app among `history` (newest first): commits whose changes touch
/// its inputs.
pub fn releases(
    repo: &Repository,
    history: &[Oid],
    inputs: &Inputs,
) -> Result<Vec<Oid>, SourceError> {
    let mut out = Vec::new();
    for oid in history {
        if changed_paths(repo, *oid)?
            .iter()
            .any(|p| inputs.touched_by(p))
        {
            out.push(*oid);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A commit of `files` (paths at most one directory deep) on `parent`.
    fn commit(repo: &Repository, files: &[(&str, &str)], parent: Option<Oid>) -> Oid {
        let mut dirs: HashMap<&str, git2::TreeBuilder<'_>> = HashMap::new();
        let mut root = repo.treebuilder(None).unwrap();
        for (path, text) in files {
            let blob = repo.blob(text.as_bytes()).unwrap();
            match path.split_once('/') {
                Some((dir, name)) => {
                    let b = dirs
                        .entry(dir)
                        .or_insert_with(|| repo.treebuilder(None).unwrap());
                    b.insert(name, blob, 0o100644).unwrap();
                }
                None => {
                    root.insert(path, blob, 0o100644).unwrap();
                }
            }
        }
        for (dir, b) in dirs {
            root.insert(dir, b.write().unwrap(), 0o040000).unwrap();
        }
        let tree = repo.find_tree(root.write().unwrap()).unwrap();
        let sig = git2::Signature::now("test", "test@example.com").unwrap();
        let parents: Vec<git2::Commit<'_>> = parent
            .map(|p| repo.find_commit(p).unwrap())
            .into_iter()
            .collect();
        let parents: Vec<&git2::Commit<'_>> = parents.iter().collect();
        repo.commit(None, &sig, &sig, "change", &tree, &parents)
            .unwrap()
    }

    #[test]
    fn a_commit_lists_each_path_it_changes_once_and_the_answer_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let repo = Repository::init_bare(dir.path()).unwrap();
        let first = commit(
            &repo,
            &[
                ("fleet.yaml", "1"),
                ("apps/b.yaml", "1"),
                ("apps/a.yaml", "1"),
            ],
            None,
        );
        assert_eq!(
            *changed_paths(&repo, first).unwrap(),
            ["apps/a.yaml", "apps/b.yaml", "fleet.yaml"],
            "a root commit changes every path"
        );
        let second = commit(
            &repo,
            &[
                ("apps/b.yaml", "2"),
                ("apps/c.yaml", "1"),
                ("apps/a.yaml", "1"),
            ],
            Some(first),
        );
        let paths = changed_paths(&repo, second).unwrap();
        assert_eq!(*paths, ["apps/b.yaml", "apps/c.yaml", "fleet.yaml"]);
        assert!(
            Arc::ptr_eq(&paths, &changed_paths(&repo, second).unwrap()),
            "asked again, the commit's paths are the ones worked out before"
        );
    }
}
