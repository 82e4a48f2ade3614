//! `rollwave pause APP --reason R [--branch B]` and `rollwave resume APP [--branch B]`:
//! write `paused: true` and `pauseReason` into `apps/APP/app.yaml` (or take them out)
//! as a commit, on the checked-out branch or on a new branch for a pull request. The
//! agents see it at their next fetch: no wave takes a new release of the app while it
//! is paused, reverts still do.

use std::process::ExitCode;

use super::fleet_commit::{CommitTarget, commit_fleet_change};
use crate::fleet::edit::set_paused;

/// Pauses (`reason`: `Some`) or resumes `app`.
pub fn run(target: &CommitTarget, app: &str, reason: Option<&str>) -> anyhow::Result<ExitCode> {
    if let Some(r) = reason
        && r.trim().is_empty()
    {
        anyhow::bail!("--reason: say why the app is paused");
    }
    let message = match reason {
        Some(r) => format!("pause {app}: {r}"),
        None => format!("resume {app}"),
    };
    commit_fleet_change(
        target,
        &format!("apps/{app}/app.yaml"),
        &message,
        &|text| set_paused(text, reason),
        &|fleet| match fleet.app(app) {
            Some(a) if a.rollout.paused.as_deref() == reason => Ok(()),
            Some(_) => Err(format!(
                "apps/{app}/app.yaml does not read as intended after the edit"
            )),
            None => Err(format!("app '{app}' is not in apps/")),
        },
    )
}
