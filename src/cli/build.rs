//! `rollwave build DIR`.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;

use crate::render::kustomize;
use crate::tree::{DirTree, RepoPath};

/// Builds `dir` and prints the objects as a YAML stream. Paths may not leave `root`
/// (by default the enclosing Git work tree, or the whole filesystem as with kustomize
/// when `dir` is not in one).
pub fn run(dir: &Path, root: Option<&Path>) -> anyhow::Result<ExitCode> {
    let abs = dir
        .canonicalize()
        .with_context(|| format!("{}: cannot open directory", dir.display()))?;
    let root = match root {
        Some(r) => r
            .canonicalize()
            .with_context(|| format!("{}: cannot open --root", r.display()))?,
        None => enclosing_root(&abs),
    };
    if !abs.starts_with(&root) {
        anyhow::bail!("{}: not inside --root {}", dir.display(), root.display());
    }
    let tree = DirTree::open(&root).with_context(|| format!("{}: cannot open", root.display()))?;
    let rel = abs.strip_prefix(&root).unwrap_or(Path::new(""));
    let rel = RepoPath::new(&rel.to_string_lossy())?;
    let objects = kustomize::build(&tree, &rel)?;
    let out = crate::yaml::to_yaml_stream(&objects);
    let mut stdout = std::io::stdout().lock();
    // A closed pipe (`| head`) is not an error worth a message.
    let _ = stdout.write_all(out.as_bytes());
    Ok(ExitCode::SUCCESS)
}

/// The top of the Git work tree containing `dir`, so overlays may refer to bases in
/// sibling directories; outside any work tree, the filesystem root, as kustomize
/// allows.
fn enclosing_root(dir: &Path) -> std::path::PathBuf {
    let mut cur = Some(dir);
    while let Some(d) = cur {
        if d.join(".git").exists() {
            return d.to_path_buf();
        }
        cur = d.parent();
    }
    dir.ancestors().last().unwrap_or(dir).to_path_buf()
}
