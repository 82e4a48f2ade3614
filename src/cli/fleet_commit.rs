//! What `pause`, `resume`, `freeze` and `unfreeze` share: where the commit goes
//! (`--repo`, `--path`, `--branch`), the check that the fleet at the new commit loads
//! and says what was meant, and the lines that say what was written.

use std::path::Path;
use std::process::ExitCode;

use crate::fleet::Fleet;
use crate::source::commit::commit_file;
use crate::tree::RepoPath;

/// Where a change of the fleet is committed.
#[derive(Debug, Clone, clap::Args)]
pub struct CommitTarget {
    /// A local clone of the fleet repository.
    #[arg(long, default_value = ".", env = "ROLLWAVE_REPO")]
    pub repo: String,
    /// The fleet's directory inside the repository (a fleet kept in a monorepo).
    #[arg(long, env = "ROLLWAVE_PATH")]
    pub path: Option<String>,
    /// Commit on this new branch (for a pull request) instead of the checked-out one.
    #[arg(long)]
    pub branch: Option<String>,
}

/// Commits `edit` of `file` (relative to the fleet's directory) with `message`, once
/// `means` accepts the fleet loaded at the new commit; prints the commit and how to
/// publish it.
pub fn commit_fleet_change(
    target: &CommitTarget,
    file: &str,
    message: &str,
    edit: &dyn Fn(&str) -> String,
    means: &dyn Fn(&Fleet) -> Result<(), String>,
) -> anyhow::Result<ExitCode> {
    if crate::source::is_remote_url(&target.repo) {
        anyhow::bail!(
            "--repo {}: this command writes a commit into a local clone; clone it, run it there, then push",
            target.repo
        );
    }
    let fleet_dir = target.path.as_deref().unwrap_or("").trim_matches('/');
    let dir = if fleet_dir.is_empty() {
        RepoPath::default()
    } else {
        RepoPath::new(fleet_dir)?
    };
    let path = if fleet_dir.is_empty() {
        RepoPath::new(file)?
    } else {
        dir.join(file)?
    };
    let check = |git_dir: &Path, commit: git2::Oid| -> Result<(), String> {
        let tree =
            crate::source::GitTree::open_in(git_dir, commit, &dir).map_err(|e| e.to_string())?;
        let fleet = crate::fleet::load(&tree).map_err(|e| e.to_string())?;
        means(&fleet)
    };
    let done = commit_file(
        Path::new(&target.repo),
        &path,
        edit,
        message,
        target.branch.as_deref(),
        &check,
    )?;
    println!(
        "{message}: commit {} on branch {}",
        &done.commit.to_string()[..8],
        done.branch
    );
    println!(
        "{}",
        match &target.branch {
            Some(b) => format!("push it and open a pull request: git push origin {b}"),
            None => "push it (git push) for the agents to see it at their next fetch".to_string(),
        }
    );
    Ok(ExitCode::SUCCESS)
}
