//! `rollwave build DIR`. A directory of a fleet repository may hold handlebars
//! templates (`*.hbs`), which only `rollwave render` fills in (they need a cluster's
//! values); `build` says so instead of reporting the missing rendered files alone.

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
    let templates = templates_in(&abs);
    let objects = match kustomize::build(&tree, &rel) {
        Ok(objects) => objects,
        Err(e) if !templates.is_empty() => {
            anyhow::bail!("{} (kustomize: {e})", templates_hint(dir, &abs, &templates))
        }
        Err(e) => return Err(e.into()),
    };
    if !templates.is_empty() {
        eprintln!(
            "warning: {}; built without them",
            templates_hint(dir, &abs, &templates)
        );
    }
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

/// The handlebars templates (`*.hbs`) directly in `dir`, by file name, sorted.
fn templates_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| n.ends_with(".hbs"))
        .collect();
    names.sort();
    names
}

/// What to run instead: `dir` has templates, which `rollwave render` fills in per
/// cluster; the enclosing fleet repository (the directory holding fleet.yaml) is named
/// when there is one.
fn templates_hint(dir: &Path, abs: &Path, templates: &[String]) -> String {
    let fleet = abs.ancestors().find(|d| d.join("fleet.yaml").is_file());
    let app = fleet.and_then(|root| {
        let rel = abs.strip_prefix(root).ok()?;
        let mut parts = rel.components();
        (parts.next()?.as_os_str() == "apps")
            .then(|| parts.next())
            .flatten()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
    });
    let command = match (fleet, app) {
        (Some(root), Some(app)) => format!(
            "rollwave render --repo {} --cluster NAME --app {app}",
            root.display()
        ),
        (Some(root), None) => format!("rollwave render --repo {} --cluster NAME", root.display()),
        (None, _) => "rollwave render --repo FLEET --cluster NAME".to_string(),
    };
    format!(
        "{} has handlebars templates ({}), which `rollwave build` does not fill in (they need a cluster's values): use `{command}`",
        dir.display(),
        templates.join(", ")
    )
}
