//! Handlebars templates: files ending in `.hbs` are rendered with the cluster's values
//! (strict: a missing variable is an error with file and line) and appear to the
//! kustomize build under their name without the suffix. Every other file is taken
//! literally, so `{{ }}` in a ConfigMap is never touched.

use std::collections::BTreeMap;

use handlebars::Handlebars;
use handlebars::template::Template;
use serde_json::Value;

pub mod budget;
pub mod check;

pub use budget::Budget;

use crate::tree::{EntryKind, FileTree, RepoPath, TreeError};

/// A template that failed to parse or render.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}{}: {message}", position(*line, *column))]
pub struct TemplateError {
    /// The `.hbs` file.
    pub file: String,
    /// Line, when known.
    pub line: Option<usize>,
    /// Column, when known.
    pub column: Option<usize>,
    /// What is wrong.
    pub message: String,
}

fn position(line: Option<usize>, column: Option<usize>) -> String {
    match (line, column) {
        (Some(l), Some(c)) => format!(":{l}:{c}"),
        (Some(l), None) => format!(":{l}"),
        _ => String::new(),
    }
}

/// Renders every `.hbs` file below `dir` with `context`, within one [`Budget`] for the
/// whole directory (the app): nesting, recursive partials, loop iterations, output size
/// and time are all bounded, so no template can crash or wedge the process.
pub fn render_templates(
    tree: &dyn FileTree,
    dir: &RepoPath,
    context: &Value,
) -> Result<BTreeMap<RepoPath, Vec<u8>>, RenderTemplatesError> {
    let mut out = BTreeMap::new();
    let budget = Budget::new();
    walk(tree, dir, &mut |path| {
        let text = tree.read_text(path)?;
        let rendered = render_file(path.as_str(), &text, context, &budget)?;
        let target = path
            .parent()
            .join(path.file_name().trim_end_matches(".hbs"))?;
        out.insert(target, rendered);
        Ok(())
    })?;
    Ok(out)
}

/// Renders one template file's `text` (strict, no HTML escaping) against `budget`.
pub fn render_file(
    file: &str,
    text: &str,
    context: &Value,
    budget: &Budget,
) -> Result<Vec<u8>, TemplateError> {
    let at = |line: Option<usize>, column: Option<usize>, message: String| TemplateError {
        file: file.to_string(),
        line,
        column,
        message,
    };
    let finding = |f: check::Finding| at(f.line, None, f.message);
    check::check_nesting(text).map_err(finding)?;
    let template = Template::compile(text).map_err(|t| {
        at(
            t.pos().map(|p| p.0),
            t.pos().map(|p| p.1),
            format!("template syntax error: {}", t.reason()),
        )
    })?;
    check::check_partials(&template).map_err(finding)?;
    let mut hb = Handlebars::new();
    hb.set_strict_mode(true);
    hb.register_escape_fn(handlebars::no_escape);
    hb.register_helper("each", Box::new(budget.each_helper()));
    hb.register_template(file, template);
    let mut writer = budget.writer();
    hb.render_to_write(file, context, &mut writer).map_err(|e| {
        let (line, column) = (e.line_no, e.column_no);
        let message = match (budget::exceeded(&e), e.reason()) {
            (Some(exceeded), _) => exceeded.message(),
            (None, handlebars::RenderErrorReason::MissingVariable(Some(var))) => format!(
                "template variable '{var}' is not defined; add it to the fleet, app or cluster values"
            ),
            (None, other) => other.to_string(),
        };
        at(line, column, message)
    })?;
    Ok(writer.into_bytes())
}

/// Either a template problem or a read problem.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RenderTemplatesError {
    /// The template itself.
    #[error(transparent)]
    Template(#[from] TemplateError),
    /// Reading it.
    #[error(transparent)]
    Read(#[from] TreeError),
}

/// Calls `f` on every `.hbs` file below `dir`, visiting each real directory once: a
/// directory reached through a symlink is walked at its real path, so a symlink loop or
/// many links to one directory cost nothing extra. Rendered files are therefore keyed by
/// their real directory (see [`TemplatedTree`]).
fn walk(
    tree: &dyn FileTree,
    dir: &RepoPath,
    f: &mut dyn FnMut(&RepoPath) -> Result<(), RenderTemplatesError>,
) -> Result<(), RenderTemplatesError> {
    let Some(real) = tree.real_path(dir)? else {
        // Listing reports the missing directory as before.
        tree.list(dir)?;
        return Ok(());
    };
    let mut seen = std::collections::BTreeSet::from([real.clone()]);
    walk_real(tree, &real, &mut seen, f)
}

/// Depth-first, in name order, with an explicit stack: a generated chain of thousands
/// of nested directories must not exhaust the thread's stack.
fn walk_real(
    tree: &dyn FileTree,
    dir: &RepoPath,
    seen: &mut std::collections::BTreeSet<RepoPath>,
    f: &mut dyn FnMut(&RepoPath) -> Result<(), RenderTemplatesError>,
) -> Result<(), RenderTemplatesError> {
    let mut stack = vec![(dir.clone(), tree.list(dir)?.into_iter())];
    while let Some((dir, names)) = stack.last_mut() {
        let Some(name) = names.next() else {
            stack.pop();
            continue;
        };
        let path = dir.join(&name)?;
        match tree.kind(&path)? {
            Some(EntryKind::Dir) => {
                if let Some(real) = tree.real_path(&path)?
                    && seen.insert(real.clone())
                {
                    let names = tree.list(&real)?.into_iter();
                    stack.push((real, names));
                }
            }
            Some(EntryKind::File) if name.ends_with(".hbs") => f(&path)?,
            _ => {}
        }
    }
    Ok(())
}

/// A tree with rendered templates laid over it: `x.yaml` reads the rendered
/// `x.yaml.hbs`, and `.hbs` files themselves are hidden.
pub struct TemplatedTree<'a> {
    base: &'a dyn FileTree,
    rendered: BTreeMap<RepoPath, Vec<u8>>,
}

impl<'a> TemplatedTree<'a> {
    /// Lays `rendered` (keyed by real directory, as [`render_templates`] returns them)
    /// over `base`.
    pub fn new(base: &'a dyn FileTree, rendered: BTreeMap<RepoPath, Vec<u8>>) -> Self {
        TemplatedTree { base, rendered }
    }

    /// The rendered file `path` names, if any, and its key: `path` itself, or the same
    /// name in the real directory its parent resolves to.
    fn rendered_at(&self, path: &RepoPath) -> Result<Option<(RepoPath, &Vec<u8>)>, TreeError> {
        if let Some(b) = self.rendered.get(path) {
            return Ok(Some((path.clone(), b)));
        }
        if self.rendered.is_empty() || path.as_str().is_empty() {
            return Ok(None);
        }
        let parent = path.parent();
        match self.base.real_path(&parent)? {
            Some(real) if real != parent => {
                let key = real.join(path.file_name())?;
                Ok(self.rendered.get(&key).map(|b| (key, b)))
            }
            _ => Ok(None),
        }
    }
}

impl FileTree for TemplatedTree<'_> {
    fn kind(&self, path: &RepoPath) -> Result<Option<EntryKind>, TreeError> {
        if self.rendered_at(path)?.is_some() {
            return Ok(Some(EntryKind::File));
        }
        self.base.kind(path)
    }

    fn real_path(&self, path: &RepoPath) -> Result<Option<RepoPath>, TreeError> {
        match self.rendered_at(path)? {
            Some((key, _)) => Ok(Some(key)),
            None => self.base.real_path(path),
        }
    }

    fn list(&self, path: &RepoPath) -> Result<Vec<String>, TreeError> {
        let mut names: Vec<String> = self
            .base
            .list(path)?
            .into_iter()
            .map(|n| n.strip_suffix(".hbs").map(String::from).unwrap_or(n))
            .collect();
        names.sort();
        names.dedup();
        Ok(names)
    }

    fn read(&self, path: &RepoPath) -> Result<Vec<u8>, TreeError> {
        match self.rendered_at(path)? {
            Some((_, b)) => Ok(b.clone()),
            None => self.base.read(path),
        }
    }
}
