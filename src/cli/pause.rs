//! `rollwave pause APP --reason R [--branch B]` and `rollwave resume APP [--branch B]`:
//! write `paused: true` and `pauseReason` into `apps/APP/app.yaml` (or take them out)
//! as a commit, on the checked-out branch or on a new branch for a pull request. The
//! agents see it at their next fetch: no wave takes a new release of the app while it
//! is paused, reverts still do.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;

use crate::fleet::edit::set_paused;
use crate::source::commit::commit_file;
use crate::tree::RepoPath;

/// Pauses (`reason`: `Some`) or resumes `app` in the fleet at `repo` (a local
/// repository; `path`: the fleet's directory in it).
pub fn run(
    repo: &str,
    path: Option<&str>,
    app: &str,
    reason: Option<&str>,
    branch: Option<&str>,
) -> anyhow::Result<ExitCode> {
    if crate::source::is_remote_url(repo) {
        anyhow::bail!(
            "--repo {repo}: pause and resume write a commit into a local clone; clone it, run this there, then push"
        );
    }
    if let Some(r) = reason
        && r.trim().is_empty()
    {
        anyhow::bail!("--reason: say why the app is paused");
    }
    let fleet_dir = path.unwrap_or("").trim_matches('/');
    let file = if fleet_dir.is_empty() {
        format!("apps/{app}/app.yaml")
    } else {
        format!("{fleet_dir}/apps/{app}/app.yaml")
    };
    let file = RepoPath::new(&file).with_context(|| format!("app '{app}'"))?;
    let message = match reason {
        Some(r) => format!("pause {app}: {r}"),
        None => format!("resume {app}"),
    };
    let check = |git_dir: &Path, commit: git2::Oid| -> Result<(), String> {
        let dir = if fleet_dir.is_empty() {
            RepoPath::default()
        } else {
            RepoPath::new(fleet_dir).map_err(|e| e.to_string())?
        };
        let tree =
            crate::source::GitTree::open_in(git_dir, commit, &dir).map_err(|e| e.to_string())?;
        let fleet = crate::fleet::load(&tree).map_err(|e| e.to_string())?;
        match fleet.app(app) {
            Some(a) if a.rollout.paused.as_deref() == reason => Ok(()),
            Some(_) => Err(format!(
                "apps/{app}/app.yaml does not read as intended after the edit"
            )),
            None => Err(format!("app '{app}' is not in apps/")),
        }
    };
    let done = commit_file(
        Path::new(repo),
        &file,
        &|text| set_paused(text, reason),
        &message,
        branch,
        &check,
    )?;
    let short = &done.commit.to_string()[..8];
    println!("{message}: commit {short} on branch {}", done.branch);
    println!(
        "{}",
        match branch {
            Some(b) => format!("push it and open a pull request: git push origin {b}"),
            None => "push it (git push) for the agents to see it at their next fetch".to_string(),
        }
    );
    Ok(ExitCode::SUCCESS)
}
