//! Pushing status refs: each agent pushes only its own clusters' refs
//! (`refs/rollwave/status/<cluster>`, written by [`crate::status::refs`]) and reads
//! every peer's after each fetch.

use std::time::Duration;

use git2::{PushOptions, RemoteCallbacks};

use super::{Mirror, SourceError};
use crate::status::refs::status_ref;

fn local(e: git2::Error) -> SourceError {
    SourceError::Local {
        path: "status ref".into(),
        message: e.message().to_string(),
    }
}

/// Pushes `cluster`'s status ref, retrying transient failures with backoff. Only that
/// ref is pushed, so agents never conflict; it is pushed with force, which is safe
/// since the agent owns it, and needed when a full chain starts anew.
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
            // Forced: a full chain starts anew ([`crate::status::refs::STATUS_HISTORY`]),
            // and the agent is its ref's only writer.
            format!("+{r}:{r}")
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
