//! Commits that rollwave writes itself (`rollwave pause`, `resume`): one file of the
//! fleet changed on top of the head, checked to load as a fleet before any ref moves,
//! then either on the checked-out branch (the work tree and index follow, so `git
//! status` stays clean) or on a new branch for a pull request (the work tree is not
//! touched). Nothing is pushed: the change goes through review like any other.

use std::path::Path;

use git2::{Oid, Repository, Signature};

use super::SourceError;
use crate::tree::RepoPath;

/// Why the commit was not written.
#[derive(Debug, thiserror::Error)]
pub enum CommitError {
    /// Git failed.
    #[error("{path}: {message}")]
    Git {
        /// The repository.
        path: String,
        /// What failed.
        message: String,
    },
    /// The repository has no commit yet, or its HEAD is detached.
    #[error("{0}")]
    Head(String),
    /// The file has changes in the work tree that are not committed.
    #[error("{0} has changes that are not committed; commit or stash them first")]
    Dirty(String),
    /// The branch to create exists already.
    #[error("branch '{0}' exists already; choose another name")]
    BranchExists(String),
    /// The file does not exist at the head.
    #[error("{0} is not in the repository's head")]
    Missing(String),
    /// The edit changes nothing.
    #[error("{0}")]
    Unchanged(String),
    /// The edited fleet does not load.
    #[error("the change would break the fleet, nothing was committed: {0}")]
    Invalid(String),
    /// Reading the new tree failed.
    #[error(transparent)]
    Source(#[from] SourceError),
}

fn git(repo: &Repository) -> impl Fn(git2::Error) -> CommitError + '_ {
    move |e| CommitError::Git {
        path: repo.path().display().to_string(),
        message: e.message().to_string(),
    }
}

/// The tree `tree` with the blob at `path` (components) replaced by `blob`.
fn replaced(
    repo: &Repository,
    tree: &git2::Tree,
    path: &[&str],
    blob: Oid,
) -> Result<Oid, git2::Error> {
    let mut builder = repo.treebuilder(Some(tree))?;
    match path {
        [] => return Err(git2::Error::from_str("an empty path names no file")),
        [name] => {
            builder.insert(name, blob, 0o100644)?;
        }
        [dir, rest @ ..] => {
            let sub = tree
                .get_name(dir)
                .ok_or_else(|| git2::Error::from_str(&format!("no directory {dir}")))?
                .to_object(repo)?
                .peel_to_tree()?;
            let new_sub = replaced(repo, &sub, rest, blob)?;
            builder.insert(dir, new_sub, 0o040000)?;
        }
    }
    builder.write()
}

/// What [`commit_file`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Committed {
    /// The new commit.
    pub commit: Oid,
    /// The branch it is on.
    pub branch: String,
}

/// Replaces `file` (relative to the repository's root) with what `edit` makes of its
/// content at the head, as one commit with `message`, after `check` accepted the new
/// commit (it gets the repository's git directory and the commit). On the checked-out
/// branch, or with `new_branch` on a new branch from the head.
pub fn commit_file(
    repo_dir: &Path,
    file: &RepoPath,
    edit: &dyn Fn(&str) -> String,
    message: &str,
    new_branch: Option<&str>,
    check: &dyn Fn(&Path, Oid) -> Result<(), String>,
) -> Result<Committed, CommitError> {
    let repo = Repository::discover(repo_dir).map_err(|e| CommitError::Git {
        path: repo_dir.display().to_string(),
        message: e.message().to_string(),
    })?;
    let err = git(&repo);
    let head = repo.head().map_err(|_| {
        CommitError::Head(format!("{}: no commit to change yet", repo_dir.display()))
    })?;
    let branch = match new_branch {
        Some(b) => {
            if repo.find_branch(b, git2::BranchType::Local).is_ok() {
                return Err(CommitError::BranchExists(b.to_string()));
            }
            b.to_string()
        }
        None => head
            .shorthand()
            .ok()
            .filter(|_| head.is_branch())
            .ok_or_else(|| {
                CommitError::Head(format!(
                    "{}: HEAD is detached; check out a branch or give --branch",
                    repo_dir.display()
                ))
            })?
            .to_string(),
    };
    let parent = head.peel_to_commit().map_err(&err)?;
    let tree = parent.tree().map_err(&err)?;
    let entry = tree
        .get_path(Path::new(file.as_str()))
        .map_err(|_| CommitError::Missing(file.as_str().to_string()))?;
    let old = entry
        .to_object(&repo)
        .and_then(|o| o.peel_to_blob())
        .map_err(&err)?;
    let old_text = String::from_utf8_lossy(old.content()).into_owned();
    let work_file = repo.workdir().map(|w| w.join(file.as_str()));
    let on_checkout = new_branch.is_none();
    if on_checkout
        && let Some(path) = &work_file
        && std::fs::read(path).ok().as_deref() != Some(old.content())
    {
        return Err(CommitError::Dirty(file.as_str().to_string()));
    }
    let new_text = edit(&old_text);
    if new_text == old_text {
        return Err(CommitError::Unchanged(format!(
            "{} already says that; nothing to commit",
            file.as_str()
        )));
    }
    let blob = repo.blob(new_text.as_bytes()).map_err(&err)?;
    let parts: Vec<&str> = file.as_str().split('/').collect();
    let new_tree = replaced(&repo, &tree, &parts, blob).map_err(&err)?;
    let new_tree = repo.find_tree(new_tree).map_err(&err)?;
    let signature = repo
        .signature()
        .or_else(|_| Signature::now("rollwave", "rollwave@localhost"))
        .map_err(&err)?;
    let commit = repo
        .commit(None, &signature, &signature, message, &new_tree, &[&parent])
        .map_err(&err)?;
    check(repo.path(), commit).map_err(CommitError::Invalid)?;
    match new_branch {
        Some(b) => {
            let c = repo.find_commit(commit).map_err(&err)?;
            repo.branch(b, &c, false).map_err(&err)?;
        }
        None => {
            let name = head.name().unwrap_or("HEAD").to_string();
            repo.reference(&name, commit, true, message).map_err(&err)?;
            if let Some(path) = &work_file {
                std::fs::write(path, &new_text).map_err(|e| CommitError::Git {
                    path: path.display().to_string(),
                    message: e.to_string(),
                })?;
                let mut index = repo.index().map_err(&err)?;
                index.add_path(Path::new(file.as_str())).map_err(&err)?;
                index.write().map_err(&err)?;
            }
        }
    }
    Ok(Committed { commit, branch })
}
