//! Opening the fleet repository for reading: a path or a URL (mirrored into the cache
//! and fetched), at a commit, with the fleet in a directory of it (a monorepo), as a
//! Git history ([`GitRepo`]: what the rollout planner, `plan`, `status` and `ui` read)
//! or as one file tree ([`OpenedRepo`]: what `render`, `validate` and an agent
//! without a Git history apply).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use git2::{Oid, Repository};

use super::history::{Inputs, changed_paths, first_parent_history};
use super::{Auth, GitTree, Mirror, SourceError};
use crate::fleet::{self, BrokenApp, Fleet, FleetError};
use crate::status::refs::read_statuses;
use crate::status::{ClusterStatus, StatusError};
use crate::tree::{DirTree, FileTree, RepoPath, TreeError};

/// Why a fleet repository could not be opened or read.
#[derive(Debug, thiserror::Error)]
pub enum RepoError {
    /// A path that does not exist.
    #[error("{0}: no such directory")]
    NoSuchDirectory(String),
    /// A directory outside any Git repository, where history is needed.
    #[error("{0} is not a Git repository (run `git init` there, or pass the repository's root)")]
    NotARepository(String),
    /// `--path` / `repo.path` leaves the repository.
    #[error("fleet path '{path}': it must be a directory inside the repository")]
    FleetPath {
        /// As given.
        path: String,
        /// Why.
        #[source]
        source: TreeError,
    },
    /// The fleet directory of a path without `--rev` cannot be read.
    #[error("{path}: cannot open the fleet directory")]
    Directory {
        /// The directory.
        path: String,
        /// Why.
        #[source]
        source: TreeError,
    },
    /// The fleet at a commit does not load.
    #[error("fleet at {commit}")]
    Fleet {
        /// The commit.
        commit: Oid,
        /// Why.
        #[source]
        source: Box<FleetError>,
    },
    /// The repository's directory could not be opened by Git.
    #[error("git repository {path}: {message}")]
    Git {
        /// The directory.
        path: String,
        /// What Git said.
        message: String,
    },
    /// Fetching, resolving or reading Git objects failed.
    #[error(transparent)]
    Source(#[from] SourceError),
    /// A file of the fleet could not be read.
    #[error(transparent)]
    Tree(#[from] TreeError),
}

/// A fleet repository opened through Git.
pub struct GitRepo {
    /// The repository directory (work tree's .git, bare repo, or mirror).
    pub git_dir: PathBuf,
    /// The resolved head commit.
    pub head: Oid,
    /// Why the fetch failed, when the head is the mirror's last fetched state instead
    /// (only with [`GitAccess::allow_stale`]).
    pub stale: Option<String>,
    /// The fleet's directory in the repository (empty: the root). Everything is read
    /// below it, and only changes below it are releases.
    pub fleet_dir: RepoPath,
    _mirror: Option<Mirror>,
}

/// How a remote repository is reached.
#[derive(Debug, Clone)]
pub struct GitAccess {
    /// Credentials.
    pub auth: Auth,
    /// Where mirrors are kept.
    pub cache_dir: PathBuf,
    /// Use the mirror's last fetched state when the remote cannot be reached (the
    /// agent: keep running on what it has), instead of failing (one-shot commands).
    pub allow_stale: bool,
    /// Fetch the status refs with the branch (false: the fleet's statuses live on a
    /// hub, and fetching the branch alone spares the Git server).
    pub status_refs: bool,
    /// Fetch at all (false: the agent backs off after failed fetches and reads the
    /// mirror's last state, which must exist).
    pub fetch: bool,
}

impl GitAccess {
    /// Credentials from `ROLLWAVE_GIT_*`, the default cache directory, fetch failures
    /// are errors.
    pub fn from_env() -> GitAccess {
        GitAccess {
            auth: Auth::from_env(),
            cache_dir: super::default_cache_dir(),
            allow_stale: false,
            status_refs: true,
            fetch: true,
        }
    }
}

impl GitRepo {
    /// Opens `repo` (path or URL; URLs are fetched with status refs) at `rev` or the
    /// branch head, with credentials from the environment. `path`: the fleet's
    /// directory in the repository ([`GitRepo::open_with`]).
    pub fn open(
        repo: &str,
        path: Option<&str>,
        rev: Option<&str>,
        branch: &str,
    ) -> Result<GitRepo, RepoError> {
        Self::open_with(repo, path, rev, branch, &GitAccess::from_env())
    }

    /// Opens `repo` as [`GitRepo::open`] does, reaching remotes as `access` says. A
    /// directory inside a work tree opens the enclosing repository with the fleet in
    /// that directory (`--repo deploy/fleet` in a monorepo checkout); `path`, relative
    /// to that, names the fleet's directory further down.
    pub fn open_with(
        repo: &str,
        path: Option<&str>,
        rev: Option<&str>,
        branch: &str,
        access: &GitAccess,
    ) -> Result<GitRepo, RepoError> {
        if super::is_remote_url(repo) {
            let mirror = Mirror::open(&access.cache_dir, repo, branch, access.auth.clone())?;
            let fetch = match (access.fetch, mirror.head()) {
                (false, Some(head)) => Err(head),
                _ => Ok(mirror.fetch_with(access.status_refs)),
            };
            let (fetched, stale) = match fetch {
                Err(head) => (
                    head,
                    Some("not fetched: backing off after failed fetches".to_string()),
                ),
                Ok(fetch) => match fetch {
                    Ok(f) => (f.head, None),
                    Err(e) => match mirror.head() {
                        Some(head) if access.allow_stale => {
                            tracing::warn!(error = %e, %head, "fetch failed; using the last fetched state");
                            (head, Some(e.to_string()))
                        }
                        _ => return Err(e.into()),
                    },
                },
            };
            let head = match rev {
                Some(r) => mirror.resolve(r)?,
                None => fetched,
            };
            return Ok(GitRepo {
                git_dir: mirror.path().to_path_buf(),
                head,
                stale,
                fleet_dir: fleet_dir_in(&RepoPath::default(), path)?,
                _mirror: Some(mirror),
            });
        }
        let (git, within) = discover(Path::new(repo))?;
        let head = super::resolve_commit(&git, rev.unwrap_or("HEAD"))?;
        Ok(GitRepo {
            git_dir: git.path().to_path_buf(),
            head,
            stale: None,
            fleet_dir: fleet_dir_in(&within, path)?,
            _mirror: None,
        })
    }

    /// The repository handle.
    pub fn repository(&self) -> Result<Repository, RepoError> {
        Repository::open(&self.git_dir).map_err(|e| RepoError::Git {
            path: self.git_dir.display().to_string(),
            message: e.message().to_string(),
        })
    }

    /// The files of the fleet at `commit`.
    pub fn tree(&self, commit: Oid) -> Result<GitTree, RepoError> {
        Ok(GitTree::open_in(&self.git_dir, commit, &self.fleet_dir)?)
    }

    /// The fleet at `commit`.
    pub fn fleet(&self, commit: Oid) -> Result<(GitTree, Fleet), RepoError> {
        let tree = self.tree(commit)?;
        let fleet = fleet::load(&tree).map_err(|e| RepoError::Fleet {
            commit,
            source: Box::new(e),
        })?;
        Ok((tree, fleet))
    }

    /// The fleet at `commit` with broken apps set aside ([`fleet::load_apps_apart`]):
    /// what the rollout reads, so one app's broken app.yaml in a commit does not hide
    /// the other apps' changes in it.
    pub fn fleet_apart(&self, commit: Oid) -> Result<(GitTree, Fleet, Vec<BrokenApp>), RepoError> {
        let tree = self.tree(commit)?;
        let (fleet, broken) = fleet::load_apps_apart(&tree).map_err(|e| RepoError::Fleet {
            commit,
            source: Box::new(e),
        })?;
        Ok((tree, fleet, broken))
    }

    /// The mirror, when the repository is a URL (status refs are pushed through it).
    pub fn mirror(&self) -> Option<&Mirror> {
        self._mirror.as_ref()
    }

    /// Every status found in the repository's status refs, with the refs that could
    /// not be read.
    pub fn statuses(
        &self,
    ) -> Result<(BTreeMap<String, ClusterStatus>, Vec<StatusError>), RepoError> {
        Ok(read_statuses(&self.repository()?))
    }
}

/// The Git repository enclosing the directory `dir` (a work tree, one of its
/// subdirectories, or a bare repository) and `dir`'s place in its work tree.
pub fn discover(dir: &Path) -> Result<(Repository, RepoPath), RepoError> {
    if !dir.exists() {
        return Err(RepoError::NoSuchDirectory(dir.display().to_string()));
    }
    let git = Repository::discover(dir)
        .map_err(|_| RepoError::NotARepository(dir.display().to_string()))?;
    let within = match (git.workdir(), dir.canonicalize()) {
        (Some(work), Ok(dir)) => {
            let work = work.canonicalize().unwrap_or_else(|_| work.to_path_buf());
            let rel = dir.strip_prefix(&work).unwrap_or(Path::new(""));
            RepoPath::new(&rel.to_string_lossy())?
        }
        _ => RepoPath::default(),
    };
    Ok((git, within))
}

/// `within` joined with the `--path` / `repo.path` given, checked as a path inside the
/// repository.
fn fleet_dir_in(within: &RepoPath, path: Option<&str>) -> Result<RepoPath, RepoError> {
    match path.map(str::trim).filter(|p| !p.is_empty() && *p != ".") {
        None => Ok(within.clone()),
        Some(p) => within
            .join(p.trim_end_matches('/'))
            .map_err(|source| RepoError::FleetPath {
                path: p.to_string(),
                source,
            }),
    }
}

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
    pub fn release_of(&self, inputs: &Inputs) -> Option<String> {
        let (dir, commit) = (self.git_dir.as_ref()?, self.commit.as_ref()?);
        let repo = git2::Repository::open(dir).ok()?;
        let head = git2::Oid::from_str(commit).ok()?;
        let history = first_parent_history(&repo, head, 10_000).ok()?;
        let inputs = inputs.in_fleet(&self.fleet_dir);
        for oid in history {
            let changed = changed_paths(&repo, oid).ok()?;
            if changed.iter().any(|p| inputs.touched_by(p)) {
                return Some(oid.to_string());
            }
        }
        None
    }
}

/// Opens `repo` at `rev` as a file tree (the working directory as it is for a path
/// without `rev`), the fleet in its directory `path` (`--path`). URLs are
/// fetched (branch `branch`) into the mirror cache with credentials from the environment
/// (see [`crate::source::Auth::from_env`]).
pub fn open_tree(
    repo: &str,
    path: Option<&str>,
    rev: Option<&str>,
    branch: &str,
) -> Result<OpenedRepo, RepoError> {
    open_tree_with(repo, path, rev, branch, &GitAccess::from_env())
}

/// [`open_tree`] reaching remotes as `access` says.
pub fn open_tree_with(
    repo: &str,
    path: Option<&str>,
    rev: Option<&str>,
    branch: &str,
    access: &GitAccess,
) -> Result<OpenedRepo, RepoError> {
    if super::is_remote_url(repo) {
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
        None if is_bare(Path::new(repo)) => {
            open_tree_with(repo, path, Some("HEAD"), branch, access)
        }
        None => {
            let dir = match path {
                Some(p) => Path::new(repo).join(p),
                None => Path::new(repo).to_path_buf(),
            };
            let tree = DirTree::open(&dir).map_err(|source| RepoError::Directory {
                path: dir.display().to_string(),
                source,
            })?;
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
            let oid = super::resolve_commit(&git, r)?;
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
