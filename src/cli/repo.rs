//! `--repo` and `--rev` for the commands that read a fleet: a path (the working
//! directory as it is, or any commit of it with `--rev`) or a URL (mirrored into the
//! cache and read at `--rev`, default the tracked branch).

use std::path::Path;

use anyhow::{Context, bail};

use super::history::GitAccess;
use crate::source::{self, GitTree, Mirror};
use crate::tree::{DirTree, FileTree};

/// An opened fleet repository.
pub struct OpenedRepo {
    /// Its files at the chosen revision.
    pub tree: Box<dyn FileTree>,
    /// The full commit sha, when read from Git.
    pub commit: Option<String>,
    /// The Git directory, when read from Git (for release history).
    pub git_dir: Option<std::path::PathBuf>,
}

impl OpenedRepo {
    /// The release of an app at this commit: the newest first-parent commit that
    /// touched one of `inputs` (None when not read from Git).
    pub fn release_of(&self, inputs: &crate::source::history::Inputs) -> Option<String> {
        let (dir, commit) = (self.git_dir.as_ref()?, self.commit.as_ref()?);
        let repo = git2::Repository::open(dir).ok()?;
        let head = git2::Oid::from_str(commit).ok()?;
        let history = crate::source::history::first_parent_history(&repo, head, 10_000).ok()?;
        for oid in history {
            let changed = crate::source::history::changed_paths(&repo, oid).ok()?;
            if changed.iter().any(|p| inputs.touched_by(p)) {
                return Some(oid.to_string());
            }
        }
        None
    }
}

/// Opens `repo` at `rev`. URLs are fetched (branch `branch`) into the mirror cache with
/// credentials from the environment (see [`crate::source::Auth::from_env`]).
pub fn open(repo: &str, rev: Option<&str>, branch: &str) -> anyhow::Result<OpenedRepo> {
    open_with(repo, rev, branch, &GitAccess::from_env())
}

/// [`open`] reaching remotes as `access` says.
pub fn open_with(
    repo: &str,
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
        let tree = mirror.tree_at(commit)?;
        return Ok(OpenedRepo {
            tree: Box::new(tree),
            commit: Some(commit.to_string()),
            git_dir: Some(mirror.path().to_path_buf()),
        });
    }
    let path = Path::new(repo);
    // A bare repository has no files to read as they are: its default branch (HEAD)
    // is what a reader means.
    match rev {
        None if is_bare(path) => open_with(repo, Some("HEAD"), branch, access),
        None => {
            let tree =
                DirTree::open(path).with_context(|| format!("{repo}: cannot open repository"))?;
            Ok(OpenedRepo {
                tree: Box::new(tree),
                commit: None,
                git_dir: None,
            })
        }
        Some(r) => {
            let git = open_local(repo)?;
            if let Some(workdir) = git.workdir()
                && workdir.canonicalize().ok() != path.canonicalize().ok()
            {
                bail!(
                    "{repo}: --rev needs the top of the Git work tree ({})",
                    workdir.display()
                );
            }
            let oid = source::resolve_commit(&git, r)?;
            let tree = GitTree::open(git.path(), oid)?;
            Ok(OpenedRepo {
                tree: Box::new(tree),
                commit: Some(oid.to_string()),
                git_dir: Some(git.path().to_path_buf()),
            })
        }
    }
}

/// `path` is a bare Git repository (no work tree to read files from).
fn is_bare(path: &Path) -> bool {
    git2::Repository::open(path).is_ok_and(|r| r.is_bare())
}

/// Opens the Git repository at the path `repo` (a work tree's top or a bare
/// repository), with an error a person can act on instead of libgit2's: the path does
/// not exist, is not a repository, or is only a subdirectory of one.
pub fn open_local(repo: &str) -> anyhow::Result<git2::Repository> {
    let path = Path::new(repo);
    if !path.exists() {
        bail!("{repo}: no such directory");
    }
    match git2::Repository::open(path) {
        Ok(r) => Ok(r),
        Err(e) if e.code() == git2::ErrorCode::NotFound => {
            match git2::Repository::discover(path)
                .ok()
                .and_then(|r| r.workdir().map(Path::to_path_buf))
            {
                Some(root) => bail!(
                    "{repo} is inside the Git repository {}: pass the repository's root",
                    root.display()
                ),
                None => bail!(
                    "{repo} is not a Git repository (run `git init` there, or pass the repository's root)"
                ),
            }
        }
        Err(e) => bail!("{repo}: cannot open the Git repository: {}", e.message()),
    }
}
