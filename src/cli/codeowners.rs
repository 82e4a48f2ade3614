//! `rollwave codeowners --repo PATH|URL [--path P] [--rev REV]`: prints the CODEOWNERS
//! file that [`crate::review::codeowners::codeowners`] makes of the fleet's owners.

use std::io::Write;
use std::process::ExitCode;

use super::RepoArgs;

/// Prints the file. Exit 1 when the fleet does not load (its errors name the file and
/// line).
pub fn run(source: &RepoArgs) -> anyhow::Result<ExitCode> {
    let opened = source.open_tree()?;
    let fleet = crate::fleet::load(opened.tree.as_ref())?;
    let text = crate::review::codeowners::codeowners(&fleet, source.path.as_deref().unwrap_or(""));
    let _ = std::io::stdout().lock().write_all(text.as_bytes());
    Ok(ExitCode::SUCCESS)
}
