//! `--repo` and `--rev` for the commands that read a fleet: a path (the working
//! directory as it is, or any commit of it with `--rev`) or a URL (mirrored into the
//! cache and read at `--rev`, default the tracked branch).

use std::path::Path;

use anyhow::Context;

use super::history::{GitAccess, discover, fleet_dir_in};
use crate::source::{self, GitTree, Mirror};
use crate::tree::{DirTree, FileTree, RepoPath};

/// An opened fleet repository.
pub struct OpenedRepo {
    /// Its files at the chosen revision.
    pub tree: Box<dyn FileTree>,
    /// The full commit sha, when read from Git.
    pub commit: Option<String>,
    /// The Git directory, when read from Git (for release history).
    pub git_dir: Option<std::path::PathBuf>,
    /// The fleet's directory in that repository (empty: its root).
    pub fleet_dir: RepoPath,
}

impl OpenedRepo {
    /// The release of an app at this commit: the newest first-parent commit that
    /// touched one of `inputs` (None when not read from Git).
    pub fn release_of(&self, inputs: &crate::source::history::Inputs) -> Option<String> {
        let (dir, commit) = (self.git_dir.as_ref()?, self.commit.as_ref()?);
        let repo = git2::Repository::open(dir).ok()?;
        let head = git2::Oid::from_str(commit).ok()?;
        let history = crate::source::history::first_parent_history(&repo, head, 10_000).ok()?;
        let inputs = inputs.in_fleet(&self.fleet_dir);
        for oid in history {
            let changed = crate::source::history::changed_paths(&repo, oid).ok()?;
            if changed.iter().any(|p| inputs.touched_by(p)) {
                return Some(oid.to_string());
            }
        }
        None
    }
}

/// Opens `repo` at `rev`, the fleet in its directory `path` (`--path`). URLs are
/// fetched (branch `branch`) into the mirror cache with credentials from the environment
/// (see [`crate::source::Auth::from_env`]).
pub fn open(
    repo: &str,
    path: Option<&str>,
    rev: Option<&str>,
    branch: &str,
) -> anyhow::Result<OpenedRepo> {
    open_with(repo, path, rev, branch, &GitAccess::from_env())
}

/// [`open`] reaching remotes as `access` says.
pub fn open_with(
    repo: &str,
    path: Option<&str>,
    rev: Option<&str>,
    branch: &str,
    access: &GitAccess,
) -> anyhow::Result<OpenedRepo> {
    if source::is_remote_url(repo) {
        let mirror = Mirror::open(&access.cache_dir, repo, branch, access.auth.clone())?;
        let fetched = mirror.fetch()?;
        let commit = match rev {
            Some(r) => mirror.resolve(r)?,
            None => fetched.head,
        };
        let fleet_dir = fleet_dir_in(&RepoPath::default(), path)?;
        let tree = GitTree::open_in(mirror.path(), commit, &fleet_dir)?;
        return Ok(OpenedRepo {
            tree: Box::new(tree),
            commit: Some(commit.to_string()),
            git_dir: Some(mirror.path().to_path_buf()),
            fleet_dir,
        });
    }
    // A bare repository has no files to read as they are: its default branch (HEAD)
    // is what a reader means.
    match rev {
        None if is_bare(Path::new(repo)) => open_with(repo, path, Some("HEAD"), branch, access),
        None => {
            let dir = match path {
                Some(p) => Path::new(repo).join(p),
                None => Path::new(repo).to_path_buf(),
            };
            let tree = DirTree::open(&dir)
                .with_context(|| format!("{}: cannot open the fleet directory", dir.display()))?;
            Ok(OpenedRepo {
                tree: Box::new(tree),
                commit: None,
                git_dir: None,
                fleet_dir: RepoPath::default(),
            })
        }
        Some(r) => {
            let (git, within) = discover(Path::new(repo))?;
            let fleet_dir = fleet_dir_in(&within, path)?;
            let oid = source::resolve_commit(&git, r)?;
            let tree = GitTree::open_in(git.path(), oid, &fleet_dir)?;
            Ok(OpenedRepo {
                tree: Box::new(tree),
                commit: Some(oid.to_string()),
                git_dir: Some(git.path().to_path_buf()),
                fleet_dir,
            })
        }
    }
}

/// `path` is a bare Git repository (no work tree to read files from).
fn is_bare(path: &Path) -> bool {
    git2::Repository::open(path).is_ok_and(|r| r.is_bare())
}
