//! Status refs: the Git store of statuses. Each agent writes
//! `refs/rollwave/status/<cluster>` as a commit whose tree holds `status.json` and
//! whose parent is its previous status, and reads every peer's ref (fetched with the
//! repository; [`crate::source::statusref`] pushes). A malformed peer status is
//! reported and skipped, never fatal.

use std::collections::BTreeMap;

use git2::{Oid, Repository, Signature};

use super::{ClusterStatus, StatusError};

/// Where status refs live: `refs/rollwave/status/<cluster>`.
pub const STATUS_REF_PREFIX: &str = "refs/rollwave/status/";

/// Why a status could not be recorded in the repository.
#[derive(Debug, thiserror::Error)]
#[error(
    "cannot record the status of {cluster} in the repository's status ref: {message}; check that the agent's mirror directory is writable and not corrupt"
)]
pub struct RefError {
    /// The cluster.
    pub cluster: String,
    /// What libgit2 said.
    pub message: String,
}

/// The ref of `cluster`'s status.
pub fn status_ref(cluster: &str) -> String {
    format!("{STATUS_REF_PREFIX}{cluster}")
}

/// Records `status` as a new commit on its cluster's status ref (locally).
pub fn write_status(repo: &Repository, status: &ClusterStatus) -> Result<Oid, RefError> {
    let local = |e: git2::Error| RefError {
        cluster: status.cluster.clone(),
        message: e.message().to_string(),
    };
    let refname = status_ref(&status.cluster);
    let blob = repo.blob(&status.to_json()).map_err(local)?;
    let mut tb = repo.treebuilder(None).map_err(local)?;
    tb.insert("status.json", blob, 0o100644).map_err(local)?;
    let tree = repo.find_tree(tb.write().map_err(local)?).map_err(local)?;
    let parent = repo
        .refname_to_id(&refname)
        .ok()
        .and_then(|id| repo.find_commit(id).ok());
    let sig = Signature::now("rollwave", "rollwave@localhost").map_err(local)?;
    let parents: Vec<&git2::Commit> = parent.iter().collect();
    let message = format!("status of {} at {}", status.cluster, status.heartbeat);
    let oid = repo
        .commit(None, &sig, &sig, &message, &tree, &parents)
        .map_err(local)?;
    repo.reference(&refname, oid, true, "rollwave status")
        .map_err(local)?;
    Ok(oid)
}

/// Every cluster's status found under the status refs, and the problems with those
/// that could not be read.
pub fn read_statuses(repo: &Repository) -> (BTreeMap<String, ClusterStatus>, Vec<StatusError>) {
    let mut out = BTreeMap::new();
    let mut errors = Vec::new();
    let Ok(refs) = repo.references_glob(&format!("{STATUS_REF_PREFIX}*")) else {
        return (out, errors);
    };
    for r in refs.flatten() {
        let Ok(name) = r.name() else { continue };
        let cluster = name.trim_start_matches(STATUS_REF_PREFIX).to_string();
        let parsed = (|| {
            let commit = r.peel_to_commit().map_err(|e| e.message().to_string())?;
            let tree = commit.tree().map_err(|e| e.message().to_string())?;
            let entry = tree
                .get_name("status.json")
                .ok_or_else(|| "no status.json in the status commit".to_string())?;
            let blob = repo
                .find_blob(entry.id())
                .map_err(|e| e.message().to_string())?;
            ClusterStatus::parse(&cluster, blob.content()).map_err(|e| e.message)
        })();
        match parsed {
            Ok(s) => {
                out.insert(cluster, s);
            }
            Err(message) => {
                tracing::warn!(%cluster, %message, "ignoring unreadable peer status");
                errors.push(StatusError { cluster, message });
            }
        }
    }
    (out, errors)
}
