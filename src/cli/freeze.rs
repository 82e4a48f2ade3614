//! `rollwave freeze --reason R [--until T] [--stage S]... [--app A]... [--branch B]` and
//! `rollwave unfreeze [--branch B]`: write a `freeze:` entry into fleet.yaml (or take
//! it out) as a commit, on the checked-out branch or on a new branch for a pull
//! request. At their next fetch the agents open no new wave in the freeze's scope;
//! reverts still go through.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;

use crate::fleet::edit::{FreezeEntry, set_freeze};
use crate::source::commit::commit_file;
use crate::tree::RepoPath;

/// Writes `entry` (or, with `None`, removes the freeze) in the fleet at `repo` (a
/// local repository; `path`: the fleet's directory in it).
pub fn run(
    repo: &str,
    path: Option<&str>,
    entry: Option<FreezeEntry>,
    branch: Option<&str>,
) -> anyhow::Result<ExitCode> {
    if crate::source::is_remote_url(repo) {
        anyhow::bail!(
            "--repo {repo}: freeze and unfreeze write a commit into a local clone; clone it, run this there, then push"
        );
    }
    if let Some(e) = &entry {
        if e.reason.trim().is_empty() {
            anyhow::bail!("--reason: say why the line is stopped");
        }
        if let Some(u) = &e.until {
            humantime::parse_rfc3339_weak(u).with_context(|| {
                format!("--until '{u}': expected a time like 2026-12-27T00:00:00Z")
            })?;
        }
    }
    let fleet_dir = path.unwrap_or("").trim_matches('/');
    let file = if fleet_dir.is_empty() {
        "fleet.yaml".to_string()
    } else {
        format!("{fleet_dir}/fleet.yaml")
    };
    let file = RepoPath::new(&file)?;
    let message = match &entry {
        Some(e) => format!("freeze: {}", e.reason),
        None => "unfreeze".to_string(),
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
        if fleet.settings.freeze.is_some() != entry.is_some() {
            return Err("fleet.yaml does not read as intended after the edit".into());
        }
        Ok(())
    };
    let done = commit_file(
        Path::new(repo),
        &file,
        &|text| set_freeze(text, entry.as_ref()),
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
