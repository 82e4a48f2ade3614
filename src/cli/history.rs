//! Shared wiring for the commands that read Git history and statuses (`plan`,
//! `status`, `diff`): open a path or URL as a Git repository, load the fleet at a
//! commit, find each app's releases and render them, read approvals.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use anyhow::{Context, bail};
use git2::{Oid, Repository};

use crate::fleet::{self, BrokenApp, Fleet, targets_cluster};
use crate::plan::{Approval, Release, waves_for};
use crate::render::render;
use crate::source::history::{Inputs, first_parent_history, releases};
use crate::source::statusref::read_statuses;
use crate::source::{self, Auth, GitTree, Mirror};
use crate::status::ClusterStatus;
use crate::tree::{FileTree, RepoPath};

/// How many first-parent commits are examined for releases.
pub const HISTORY_LIMIT: usize = 500;
/// How many releases per app are planned.
pub const RELEASE_LIMIT: usize = 20;

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
            cache_dir: source::default_cache_dir(),
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
    ) -> anyhow::Result<GitRepo> {
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
    ) -> anyhow::Result<GitRepo> {
        if source::is_remote_url(repo) {
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
        let head = source::resolve_commit(&git, rev.unwrap_or("HEAD"))?;
        Ok(GitRepo {
            git_dir: git.path().to_path_buf(),
            head,
            stale: None,
            fleet_dir: fleet_dir_in(&within, path)?,
            _mirror: None,
        })
    }

    /// The repository handle.
    pub fn repository(&self) -> anyhow::Result<Repository> {
        Ok(Repository::open(&self.git_dir)?)
    }

    /// The files of the fleet at `commit`.
    pub fn tree(&self, commit: Oid) -> anyhow::Result<GitTree> {
        Ok(GitTree::open_in(&self.git_dir, commit, &self.fleet_dir)?)
    }

    /// The fleet at `commit`.
    pub fn fleet(&self, commit: Oid) -> anyhow::Result<(GitTree, Fleet)> {
        let tree = self.tree(commit)?;
        let fleet = fleet::load(&tree).with_context(|| format!("fleet at {commit}"))?;
        Ok((tree, fleet))
    }

    /// The fleet at `commit` with broken apps set aside ([`fleet::load_apps_apart`]):
    /// what the rollout reads, so one app's broken app.yaml in a commit does not hide
    /// the other apps' changes in it.
    pub fn fleet_apart(&self, commit: Oid) -> anyhow::Result<(GitTree, Fleet, Vec<BrokenApp>)> {
        let tree = self.tree(commit)?;
        let (fleet, broken) =
            fleet::load_apps_apart(&tree).with_context(|| format!("fleet at {commit}"))?;
        Ok((tree, fleet, broken))
    }

    /// The mirror, when the repository is a URL (status refs are pushed through it).
    pub fn mirror(&self) -> Option<&Mirror> {
        self._mirror.as_ref()
    }

    /// Every peer status found in the repository's status refs.
    pub fn statuses(&self) -> anyhow::Result<BTreeMap<String, ClusterStatus>> {
        let (statuses, errors) = read_statuses(&self.repository()?);
        for e in errors {
            eprintln!("warning: {e}");
        }
        Ok(statuses)
    }
}

/// Every cluster's status from the store fleet.yaml names: the status refs, or the
/// hub reached as `hub` says. With the hub, clusters that still publish fresh status
/// refs are reported (their agents run without `hub:` or an older version, and
/// their peers do not see them), so a fleet is never split in silence.
pub fn fleet_statuses(
    g: &GitRepo,
    fleet: &Fleet,
    hub: &super::HubArgs,
) -> anyhow::Result<BTreeMap<String, ClusterStatus>> {
    let refs = g.statuses()?;
    if fleet.settings.status_store == crate::status::StoreKind::Git {
        return Ok(refs);
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (statuses, errors) = runtime
        .block_on(async {
            let client = crate::agent::daemon::client_for(&hub.connection()).await?;
            let hub = crate::status::hub::Hub::new(client, &hub.hub_namespace, Default::default());
            anyhow::Ok(hub.list().await?)
        })
        .context(
            "fleet.yaml keeps statuses on a hub (status: {store: kubernetes}); reach it with --hub-kubeconfig and --hub-context",
        )?;
    for e in errors {
        eprintln!("warning: {e}");
    }
    for w in crate::status::split_between_stores(&statuses, &refs, SystemTime::now()) {
        eprintln!("warning: {w}");
    }
    Ok(statuses)
}

/// The Git repository enclosing the directory `dir` (a work tree, one of its
/// subdirectories, or a bare repository) and `dir`'s place in its work tree.
pub fn discover(dir: &Path) -> anyhow::Result<(Repository, RepoPath)> {
    if !dir.exists() {
        bail!("{}: no such directory", dir.display());
    }
    let git = Repository::discover(dir).map_err(|_| {
        anyhow::anyhow!(
            "{} is not a Git repository (run `git init` there, or pass the repository's root)",
            dir.display()
        )
    })?;
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
pub fn fleet_dir_in(within: &RepoPath, path: Option<&str>) -> anyhow::Result<RepoPath> {
    match path.map(str::trim).filter(|p| !p.is_empty() && *p != ".") {
        None => Ok(within.clone()),
        Some(p) => within.join(p.trim_end_matches('/')).with_context(|| {
            format!("fleet path '{p}': it must be a directory inside the repository")
        }),
    }
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
) -> anyhow::Result<(Vec<Oid>, HashMap<String, usize>)> {
    let history = first_parent_history(repo, head, HISTORY_LIMIT)?;
    let n = history.len();
    let order = history
        .iter()
        .enumerate()
        .map(|(i, o)| (o.to_string(), n - i))
        .collect();
    Ok((history, order))
}

fn approvals_at(tree: &dyn FileTree, app: &str) -> anyhow::Result<Vec<Approval>> {
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

/// Gathers waves, rendered releases and approvals of `app`, given the tree and fleet at
/// the head (loaded once by the caller for every app).
pub fn app_history(
    g: &GitRepo,
    repo: &Repository,
    history: &[Oid],
    (tree, fleet): (&GitTree, &Fleet),
    app: &str,
) -> anyhow::Result<AppHistory> {
    let Some(a) = fleet.app(app) else {
        bail!("app '{app}' is not in apps/")
    };
    let waves = waves_for(fleet, a);
    let mut files = BTreeSet::new();
    for c in fleet.clusters.iter().filter(|c| targets_cluster(a, c)) {
        if let Ok(r) = render(tree, fleet, a, c) {
            files.extend(r.files_read);
        }
    }
    let inputs = Inputs::for_app(app, &files).in_fleet_dir(&g.fleet_dir);
    let rel = releases(repo, history, &inputs)?;
    let mut out = Vec::new();
    for oid in rel.into_iter().take(RELEASE_LIMIT) {
        let commit = repo.find_commit(oid)?;
        let time =
            SystemTime::UNIX_EPOCH + Duration::from_secs(commit.time().seconds().max(0) as u64);
        let mut hashes = BTreeMap::new();
        if let Ok((t, f, _)) = g.fleet_apart(oid)
            && let Some(a) = f.app(app)
        {
            for c in f.clusters.iter().filter(|c| targets_cluster(a, c)) {
                let hash = match render(&t, &f, a, c) {
                    Ok(r) => r.content_hash,
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
