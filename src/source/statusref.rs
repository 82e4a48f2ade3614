//! Status refs: each agent writes `refs/rollwave/status/<cluster>` as a commit whose
//! tree holds `status.json` and whose parent is its previous status, pushes only that
//! ref, and reads every peer's ref after each fetch. A malformed peer status is
//! reported and skipped, never fatal.

use std::collections::BTreeMap;
use std::time::Duration;

use git2::{Oid, PushOptions, RemoteCallbacks, Repository, Signature};

use super::{Mirror, STATUS_REF_PREFIX, SourceError};
use crate::status::{ClusterStatus, StatusError};

fn local(e: git2::Error) -> SourceError {
    SourceError::Local {
        path: "status ref".into(),
        message: e.message().to_string(),
    }
}

/// The ref of `cluster`'s status.
pub fn status_ref(cluster: &str) -> String {
    format!("{STATUS_REF_PREFIX}{cluster}")
}

/// Records `status` as a new commit on its cluster's status ref (locally).
pub fn write_status(repo: &Repository, status: &ClusterStatus) -> Result<Oid, SourceError> {
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

/// Pushes `cluster`'s status ref, retrying transient failures with backoff. Only that
/// ref is pushed, so agents never conflict; no force is needed since the agent owns it.
pub fn push_status(mirror: &Mirror, cluster: &str, attempts: u32) -> Result<(), SourceError> {
    push_statuses(mirror, &[cluster], attempts)
}

/// Pushes the status refs of `clusters` in one push (one connection, one pack), so an
/// agent serving many clusters costs the Git server one push per pass, not one per
/// cluster. Retried as a whole with backoff; each ref is the agent's own, so the push
/// never conflicts with other agents.
pub fn push_statuses(mirror: &Mirror, clusters: &[&str], attempts: u32) -> Result<(), SourceError> {
    let refspecs: Vec<String> = clusters
        .iter()
        .map(|c| {
            let r = status_ref(c);
            format!("{r}:{r}")
        })
        .collect();
    if refspecs.is_empty() {
        return Ok(());
    }
    let mut last = None;
    for attempt in 0..attempts.max(1) {
        if attempt > 0 {
            std::thread::sleep(Duration::from_millis(200 * (1 << attempt.min(5))));
        }
        match push_once(mirror, &refspecs) {
            Ok(()) => return Ok(()),
            Err(e) => {
                tracing::warn!(clusters = clusters.len(), attempt, error = %e, "status push failed");
                last = Some(e);
            }
        }
    }
    Err(last.unwrap_or_else(|| SourceError::Remote {
        url: mirror.url(),
        operation: "push",
        message: "no attempt made".into(),
    }))
}

fn push_once(mirror: &Mirror, refspecs: &[String]) -> Result<(), SourceError> {
    let rejected = std::cell::RefCell::new(Vec::<String>::new());
    {
        let mut cb = RemoteCallbacks::new();
        mirror.auth_for_callbacks().install(&mut cb);
        cb.push_update_reference(|r, status| {
            if let Some(msg) = status {
                rejected.borrow_mut().push(format!("{r}: {msg}"));
            }
            Ok(())
        });
        let headers = mirror.auth_for_callbacks().headers()?;
        let header_refs: Vec<&str> = headers.iter().map(String::as_str).collect();
        let mut opts = PushOptions::new();
        opts.remote_callbacks(cb);
        opts.custom_headers(&header_refs);
        let mut remote = mirror
            .repo()
            .remote_anonymous(&mirror.raw_url())
            .map_err(local)?;
        super::count_git_operation("push");
        remote
            .push(refspecs, Some(&mut opts))
            .map_err(|e| SourceError::Remote {
                url: mirror.url(),
                operation: "push",
                message: e.message().to_string(),
            })?;
    }
    let rejected = rejected.into_inner();
    if !rejected.is_empty() {
        return Err(SourceError::Remote {
            url: mirror.url(),
            operation: "push",
            message: format!("rejected: {}", rejected.join("; ")),
        });
    }
    Ok(())
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
