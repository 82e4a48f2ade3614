//! The Git source: a bare mirror of the fleet repository in a cache directory,
//! incremental fetches of the tracked branch and of every agent's status ref, trees
//! read straight from the object store, release history, status publication and
//! commit signature checks. Triggers (polling, webhook, file watch) only wake the
//! fetch loop.

pub mod auth;
pub mod commit;
mod gittree;
pub mod history;
pub mod repo;
pub mod statusref;
pub mod trigger;
pub mod verify;
pub mod watch;

use std::cell::RefCell;
use std::path::{Path, PathBuf};

use git2::{FetchOptions, Oid, RemoteCallbacks, Repository};
use sha2::{Digest, Sha256};

pub use auth::{Auth, Secret};

/// Longest wait for a Git server to accept a connection.
pub const GIT_CONNECT_TIMEOUT_MS: i32 = 10_000;

/// Longest a Git server may stay silent in the middle of a fetch or push. A server that
/// accepts the connection and never answers would otherwise hold the agent's pass (and
/// every cluster it serves) forever; a slow server that keeps sending is not cut.
pub const GIT_IO_TIMEOUT_MS: i32 = 30_000;

/// Bounds every Git network operation of the process ([`GIT_CONNECT_TIMEOUT_MS`],
/// [`GIT_IO_TIMEOUT_MS`]). libgit2 keeps these as process-wide settings, so this is
/// called once at start-up, before any thread exists.
pub fn bound_git_network() {
    // SAFETY: called from `main` before any thread is spawned, as libgit2 requires for
    // its global options; the values are plain integers.
    unsafe {
        let _ = git2::opts::set_server_connect_timeout_in_milliseconds(GIT_CONNECT_TIMEOUT_MS);
        let _ = git2::opts::set_server_timeout_in_milliseconds(GIT_IO_TIMEOUT_MS);
    }
}
pub use gittree::GitTree;

/// Why a Git operation failed.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// Fetching from or pushing to the remote failed.
    #[error("{url}: {operation} failed: {message}")]
    Remote {
        /// The remote (credentials never included).
        url: String,
        /// fetch or push.
        operation: &'static str,
        /// What went wrong.
        message: String,
    },
    /// Credentials could not be read.
    #[error("git credentials: {0}")]
    Auth(String),
    /// A revision does not resolve.
    #[error("revision '{rev}' not found: {message}")]
    Revision {
        /// As given.
        rev: String,
        /// Why.
        message: String,
    },
    /// The local mirror could not be read or written.
    #[error("git mirror {path}: {message}")]
    Local {
        /// The mirror directory.
        path: String,
        /// What went wrong.
        message: String,
    },
}

/// Removes `user:password@` from a URL before it is shown anywhere.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.find('@')) {
        (Some(s), Some(at)) if at > s => format!("{}{}", &url[..s + 3], &url[at + 1..]),
        _ => url.to_string(),
    }
}

/// Whether `repo` names a remote (URL or scp-like `user@host:path`) rather than a path.
pub fn is_remote_url(repo: &str) -> bool {
    repo.contains("://") || (repo.contains('@') && repo.contains(':') && !Path::new(repo).exists())
}

/// What a fetch found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchOutcome {
    /// The branch head after the fetch.
    pub head: Oid,
    /// The head before it, if the mirror had one.
    pub previous: Option<Oid>,
    /// The branch was rewritten (the old head is not an ancestor of the new one).
    pub rewritten: bool,
    /// Objects received.
    pub received_objects: usize,
    /// Bytes received.
    pub received_bytes: usize,
}

/// A bare mirror of one remote branch (plus status refs) in a cache directory.
pub struct Mirror {
    repo: Repository,
    path: PathBuf,
    url: String,
    branch: String,
    auth: Auth,
}

fn local_err(path: &Path, e: impl std::fmt::Display) -> SourceError {
    SourceError::Local {
        path: path.display().to_string(),
        message: e.to_string(),
    }
}

/// Labels of `rollwave_git_operations_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
pub struct GitOperationLabels {
    /// `fetch` or `push`.
    pub op: String,
}

/// Every fetch and push this process made to a Git server, by operation. Process-wide
/// because Git hosts limit operations per repository whatever part of the agent makes
/// them; the agent's metrics register this same family.
pub fn git_operations() -> &'static prometheus_client::metrics::family::Family<
    GitOperationLabels,
    prometheus_client::metrics::counter::Counter,
> {
    static OPS: std::sync::OnceLock<
        prometheus_client::metrics::family::Family<
            GitOperationLabels,
            prometheus_client::metrics::counter::Counter,
        >,
    > = std::sync::OnceLock::new();
    OPS.get_or_init(Default::default)
}

/// Counts one operation against the Git server in [`git_operations`].
pub fn count_git_operation(op: &str) {
    git_operations()
        .get_or_create(&GitOperationLabels { op: op.into() })
        .inc();
}

impl Mirror {
    /// Opens (creating if needed) the mirror of `url` under `cache_root`.
    pub fn open(
        cache_root: &Path,
        url: &str,
        branch: &str,
        auth: Auth,
    ) -> Result<Self, SourceError> {
        let digest = Sha256::digest(format!("{url}\n{branch}").as_bytes());
        let name: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
        let path = cache_root.join(format!("{name}.git"));
        std::fs::create_dir_all(cache_root).map_err(|e| local_err(cache_root, e))?;
        let repo = match Repository::open_bare(&path) {
            Ok(r) => r,
            Err(_) => Repository::init_bare(&path).map_err(|e| local_err(&path, e))?,
        };
        Ok(Mirror {
            repo,
            path,
            url: url.to_string(),
            branch: branch.to_string(),
            auth,
        })
    }

    /// The underlying repository.
    pub fn repo(&self) -> &Repository {
        &self.repo
    }

    /// The mirror's directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The remote URL with any credentials removed.
    pub fn url(&self) -> String {
        redact_url(&self.url)
    }

    /// The remote URL as configured (may hold credentials: never log it).
    fn raw_url(&self) -> String {
        self.url.clone()
    }

    /// The credentials, for other operations on the same remote.
    fn auth_for_callbacks(&self) -> &Auth {
        &self.auth
    }

    /// The tracked branch.
    pub fn branch(&self) -> &str {
        &self.branch
    }

    /// The local ref of the tracked branch.
    fn branch_ref(&self) -> String {
        format!("refs/heads/{}", self.branch)
    }

    /// The branch head in the mirror, if fetched.
    pub fn head(&self) -> Option<Oid> {
        self.repo.refname_to_id(&self.branch_ref()).ok()
    }

    fn remote_err(&self, operation: &'static str, e: git2::Error) -> SourceError {
        let mut message = e.message().to_string();
        if e.class() == git2::ErrorClass::Http && message.contains("401")
            || message.contains("authentication")
        {
            message.push_str(" (check the configured credentials)");
        }
        if message.contains("hostkey") {
            message
                .push_str(" (the server's host key must be listed in the configured known_hosts)");
        }
        SourceError::Remote {
            url: self.url(),
            operation,
            message,
        }
    }

    /// Fetches the branch and all status refs. A fetch that finds nothing new costs one
    /// exchange of refs with the server. A rewritten branch is followed (and reported).
    pub fn fetch(&self) -> Result<FetchOutcome, SourceError> {
        self.fetch_with(true)
    }

    /// Fetches the branch, and the status refs with it when `status_refs` (a fleet
    /// whose statuses live on a hub needs the branch only).
    pub fn fetch_with(&self, status_refs: bool) -> Result<FetchOutcome, SourceError> {
        let previous = self.head();
        let stats = RefCell::new((0usize, 0usize));
        let mut cb = RemoteCallbacks::new();
        self.auth.install(&mut cb);
        cb.transfer_progress(|p| {
            *stats.borrow_mut() = (p.received_objects(), p.received_bytes());
            true
        });
        let headers = self.auth.headers()?;
        let header_refs: Vec<&str> = headers.iter().map(String::as_str).collect();
        let mut opts = FetchOptions::new();
        opts.remote_callbacks(cb);
        opts.custom_headers(&header_refs);
        opts.download_tags(git2::AutotagOption::None);
        let mut remote = self
            .repo
            .remote_anonymous(&self.url)
            .map_err(|e| self.remote_err("fetch", e))?;
        let mut refspecs = vec![format!("+{0}:{0}", self.branch_ref())];
        if status_refs {
            refspecs.push(format!(
                "+{prefix}*:{prefix}*",
                prefix = crate::status::refs::STATUS_REF_PREFIX
            ));
        }
        count_git_operation("fetch");
        remote
            .fetch(&refspecs, Some(&mut opts), None)
            .map_err(|e| self.remote_err("fetch", e))?;
        drop(remote);
        let head = self.head().ok_or_else(|| SourceError::Remote {
            url: self.url(),
            operation: "fetch",
            message: format!("the remote has no branch '{}'", self.branch),
        })?;
        let rewritten = match previous {
            Some(p) if p != head => !self.repo.graph_descendant_of(head, p).unwrap_or(false),
            _ => false,
        };
        if rewritten {
            tracing::warn!(
                url = %self.url(),
                branch = %self.branch,
                old = %previous.map(|p| p.to_string()).unwrap_or_default(),
                new = %head,
                "branch history was rewritten (force-push); following the new history"
            );
        }
        let (received_objects, received_bytes) = *stats.borrow();
        Ok(FetchOutcome {
            head,
            previous,
            rewritten,
            received_objects,
            received_bytes,
        })
    }

    /// Resolves any commit-ish (sha, branch, tag, `HEAD~2`) to a commit.
    pub fn resolve(&self, rev: &str) -> Result<Oid, SourceError> {
        resolve_commit(&self.repo, rev)
    }
}

/// Resolves a commit-ish in `repo`.
pub fn resolve_commit(repo: &Repository, rev: &str) -> Result<Oid, SourceError> {
    let obj = repo
        .revparse_single(rev)
        .map_err(|e| SourceError::Revision {
            rev: rev.to_string(),
            message: e.message().to_string(),
        })?;
    let commit = obj.peel_to_commit().map_err(|e| SourceError::Revision {
        rev: rev.to_string(),
        message: e.message().to_string(),
    })?;
    Ok(commit.id())
}

/// The cache directory for mirrors: `$ROLLWAVE_CACHE`, else `$XDG_CACHE_HOME/rollwave`,
/// else `~/.cache/rollwave`.
pub fn default_cache_dir() -> PathBuf {
    if let Some(p) = std::env::var_os("ROLLWAVE_CACHE") {
        return PathBuf::from(p);
    }
    if let Some(p) = std::env::var_os("XDG_CACHE_HOME") {
        return PathBuf::from(p).join("rollwave");
    }
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir)
        .join(".cache/rollwave")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_never_appear_in_shown_urls() {
        assert_eq!(
            redact_url("https://user:pw@host/repo.git"),
            "https://host/repo.git"
        );
        assert_eq!(redact_url("git://host/repo"), "git://host/repo");
    }
}
