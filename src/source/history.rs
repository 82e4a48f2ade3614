//! Release history: the first-parent history of the tracked branch, and which of its
//! commits are releases of an app (commits that change a file the app's rendering
//! depends on), found by tree diffs of paths rather than re-rendering history.

use std::collections::BTreeSet;
use std::path::Path;

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

/// The paths a commit changes compared with its first parent (everything, for a root
/// commit).
pub fn changed_paths(repo: &Repository, commit: Oid) -> Result<Vec<String>, SourceError> {
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
            if let Some(p) = f.path().and_then(Path::to_str)
                && !out.iter().any(|x: &String| x == p)
            {
                out.push(p.to_string());
            }
        }
    }
    Ok(out)
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
