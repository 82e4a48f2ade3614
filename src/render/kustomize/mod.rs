//! A kustomize v5 compatible build of one kustomization root.
//!
//! The pipeline follows kustomize's: resources (files and nested roots) are
//! accumulated with their custom field specs (`configurations`, `crds`) and vars,
//! generators run (the fields, then `generators:`), components are applied to the
//! accumulation, then the transformers in kustomize's fixed order (strategic merge
//! patches, patches, namespace, prefix, suffix, labels, annotations, JSON 6902 patches,
//! replicas, images, replacements, then `transformers:`), and the kustomization's vars
//! are bound. At the top level only, generated names get their hash suffix, name
//! references are fixed, vars are resolved, local-config objects are dropped and
//! objects are sorted (`sortOptions`) and annotated (`buildMetadata`). Fields rollwave
//! does not implement are refused by name, never ignored.

mod config;
mod fields;
mod generator;
mod helm_charts;
mod jsonpatch;
mod keep_chomp;
mod kustomization;
mod nameref;
mod openapi;
mod patch;
mod plugins;
mod replacement;
mod resource;
mod selector;
mod sort;
mod transform;
mod vars;

use std::cell::{Cell, RefCell};
use std::collections::HashSet;

use serde_json::{Map, Value};

pub use generator::name_hash;
pub use kustomization::{KUSTOMIZATION_FILE_NAMES, Kustomization};
pub use resource::{Gvk, ResId, legacy_order};

use crate::tree::{EntryKind, FileTree, RepoPath, TreeError};
use crate::yaml::YamlError;
use config::TransformerConfig;
use generator::GeneratedKind;
use kustomization::Var;
use patch::{PatchOptions, PatchSource};
use resource::{Behavior, Resource};
use selector::CompiledSelector;

/// The managed-by label value `buildMetadata: [managedByLabel]` sets, as the kustomize
/// built into kubectl (the reference rollwave is compared with) writes it.
const MANAGED_BY: &str = "kustomize-(devel)";

/// Deepest chain of kustomization roots (resources and components) one build follows:
/// 100. Real kustomizations nest fewer than 10 deep; the limit refuses a chain of
/// thousands of generated roots at once instead of after minutes, and keeps the
/// recursion far from the end of a thread's stack.
pub const MAX_KUSTOMIZATION_DEPTH: usize = 100;

/// Most files one build reads (kustomization files, resources, patches, generator
/// inputs): 5,000. The largest real apps read a few hundred; a generated base of tens of
/// thousands of files is refused instead of holding an agent for minutes.
pub const MAX_BUILD_FILES: usize = 5_000;

/// Most bytes one build reads, all files together: 64 MiB, eight files at the per-file
/// cap ([`crate::yaml::MAX_FILE_BYTES`]). Real apps read well under 1 MiB; the limit
/// bounds the memory and parse time one commit can cost every agent.
pub const MAX_BUILD_BYTES: u64 = 64 * 1024 * 1024;

/// Why a build failed. Every variant names the directory or file concerned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KustomizeError {
    /// A file or directory could not be read or is outside the repository.
    #[error(transparent)]
    Read(#[from] TreeError),
    /// A file is not valid YAML or has the wrong shape.
    #[error(transparent)]
    Parse(#[from] YamlError),
    /// A Helm chart could not be inflated.
    #[error(transparent)]
    Helm(#[from] crate::render::helm::HelmError),
    /// The build failed in a way the bounds did not foresee (a panic), contained.
    #[error(transparent)]
    Internal(#[from] crate::contain::Contained),
    /// A directory used as a kustomization root has no kustomization file.
    #[error("{dir}: no kustomization.yaml, kustomization.yml or Kustomization in this directory")]
    NotARoot {
        /// The directory.
        dir: String,
    },
    /// A field rollwave knows but does not implement.
    #[error(
        "{file}: kustomize field '{field}' is not supported by rollwave; express it with patches or remove it"
    )]
    Unsupported {
        /// The kustomization file (with line when known).
        file: String,
        /// The field.
        field: String,
    },
    /// A URL where a path was expected.
    #[error(
        "{file}: remote base '{url}' is refused: rollwave renders only what is in the fleet repository; vendor it into the repository"
    )]
    RemoteBase {
        /// The kustomization file.
        file: String,
        /// The URL.
        url: String,
    },
    /// A kustomization includes itself through its resources or components.
    #[error("cycle in kustomizations: {chain}")]
    Cycle {
        /// The chain of directories, ending where it started.
        chain: String,
    },
    /// The kustomization file has no content (only `apiVersion` and `kind` at most),
    /// which kustomize refuses too ("kustomization.yaml is empty").
    #[error(
        "{file}: kustomization is empty; list the app's resources in it (to remove an app, drop it from its targets or delete its directory)"
    )]
    Empty {
        /// The kustomization file.
        file: String,
    },
    /// The build went over one of its limits ([`MAX_KUSTOMIZATION_DEPTH`],
    /// [`MAX_BUILD_FILES`], [`MAX_BUILD_BYTES`]).
    #[error("{dir}: {message}")]
    Limit {
        /// The kustomization being built when the limit was reached.
        dir: String,
        /// Which limit, and what to do.
        message: String,
    },
    /// A kustomization's content is inconsistent.
    #[error("{dir}: {message}")]
    Kustomization {
        /// The kustomization directory.
        dir: String,
        /// What is wrong.
        message: String,
    },
    /// An object in a resource file is unusable.
    #[error("{file}: {message}")]
    Resource {
        /// The file (and document number).
        file: String,
        /// What is wrong.
        message: String,
    },
    /// A patch could not be applied.
    #[error("{dir}: {patch}: {message}")]
    Patch {
        /// The kustomization directory.
        dir: String,
        /// Which patch.
        patch: String,
        /// What went wrong.
        message: String,
    },
    /// A generator could not run.
    #[error("{dir}: generator '{name}': {message}")]
    Generator {
        /// The kustomization directory.
        dir: String,
        /// Generator name.
        name: String,
        /// What went wrong.
        message: String,
    },
    /// Two objects share an identity.
    #[error("{message}")]
    Conflict {
        /// The two objects.
        message: String,
    },
    /// A name reference matched more than one object.
    #[error("{message}")]
    NameReference {
        /// What is ambiguous.
        message: String,
    },
}

/// Reads files for a build through a tree, guards against cycles and enforces the
/// build's limits.
pub struct Loader<'t> {
    tree: &'t dyn FileTree,
    /// The roots being built, outermost first, and their real paths as a set: a cycle
    /// check costs one hash lookup, not a scan of the chain.
    stack: RefCell<Vec<RepoPath>>,
    on_stack: RefCell<HashSet<RepoPath>>,
    files_read: Cell<usize>,
    /// The top kustomization's directory when its `buildMetadata` asks for origin or
    /// transformer annotations: objects then record where they came from.
    origin_root: RefCell<Option<RepoPath>>,
    /// The schema of the first kustomization loaded with an `openapi` field.
    openapi: RefCell<Option<std::rc::Rc<openapi::OpenApiSchema>>>,
    /// Whether kustomize would have read its built-in schema before any `openapi`
    /// field was loaded (an object of a kind it does not know, or a strategic merge):
    /// it then keeps the built-in definitions under a custom schema loaded later.
    builtin_schema_read: Cell<bool>,
    bytes_read: Cell<u64>,
    /// The app's own chart output (app.yaml `helm:`) and where it came from, taken by
    /// the top-level root.
    app_chart: RefCell<Option<(String, String)>>,
}

impl<'t> Loader<'t> {
    /// Records that kustomize would have consulted its built-in schema by now (see
    /// `builtin_schema_read`); after a custom schema is loaded nothing changes.
    fn note_builtin_schema_read(&self) {
        if self.openapi.borrow().is_none() {
            self.builtin_schema_read.set(true);
        }
    }

    fn new(tree: &'t dyn FileTree) -> Self {
        Loader {
            tree,
            stack: RefCell::new(Vec::new()),
            on_stack: RefCell::new(HashSet::new()),
            files_read: Cell::new(0),
            origin_root: RefCell::new(None),
            openapi: RefCell::new(None),
            builtin_schema_read: Cell::new(false),
            bytes_read: Cell::new(0),
            app_chart: RefCell::new(None),
        }
    }

    /// Resolves a file named in the kustomization at `dir`. Like kustomize's default
    /// load restrictor, files must lie inside the kustomization's own directory, after
    /// symlinks are followed; only directories (bases) may be elsewhere.
    fn file_in(&self, dir: &RepoPath, rel: &str) -> Result<RepoPath, KustomizeError> {
        let path = dir.join(rel)?;
        if !path.starts_with(dir) {
            return Err(KustomizeError::Kustomization {
                dir: dir.to_string(),
                message: format!(
                    "file '{rel}' is outside this kustomization's directory; move it in, or make its directory a kustomization and list that directory instead"
                ),
            });
        }
        if let (Some(real), Some(real_dir)) =
            (self.tree.real_path(&path)?, self.tree.real_path(dir)?)
            && !real.starts_with(&real_dir)
        {
            return Err(KustomizeError::Kustomization {
                dir: dir.to_string(),
                message: format!(
                    "file '{rel}' is a symlink to {real}, outside this kustomization's directory (kustomize refuses it too); move the file in, or make its directory a kustomization and list that directory instead"
                ),
            });
        }
        Ok(path)
    }

    /// `path` relative to the top kustomization's directory, when origins are tracked.
    fn origin_of(&self, path: &RepoPath) -> Option<String> {
        let root = self.origin_root.borrow();
        let root = root.as_ref()?;
        let from: Vec<&str> = root
            .as_str()
            .split('/')
            .filter(|s| !s.is_empty() && *s != ".")
            .collect();
        let to: Vec<&str> = path
            .as_str()
            .split('/')
            .filter(|s| !s.is_empty() && *s != ".")
            .collect();
        let common = from.iter().zip(&to).take_while(|(a, b)| a == b).count();
        let mut parts: Vec<&str> = vec![".."; from.len() - common];
        parts.extend(&to[common..]);
        Some(parts.join("/"))
    }

    /// The kustomization being built, for limit errors.
    fn current_dir(&self) -> String {
        self.stack
            .borrow()
            .last()
            .map_or_else(|| ".".to_string(), |d| d.to_string())
    }

    /// Counts one file read against [`MAX_BUILD_FILES`] before it is read.
    fn count_file(&self) -> Result<(), KustomizeError> {
        let n = self.files_read.get() + 1;
        self.files_read.set(n);
        if n > MAX_BUILD_FILES {
            return Err(KustomizeError::Limit {
                dir: self.current_dir(),
                message: format!(
                    "the build reads more than {MAX_BUILD_FILES} files, the limit for one build; merge small files into multi-document files or split the app"
                ),
            });
        }
        Ok(())
    }

    /// Counts bytes read against [`MAX_BUILD_BYTES`].
    fn count_bytes(&self, len: usize) -> Result<(), KustomizeError> {
        let total = self.bytes_read.get().saturating_add(len as u64);
        self.bytes_read.set(total);
        if total > MAX_BUILD_BYTES {
            return Err(KustomizeError::Limit {
                dir: self.current_dir(),
                message: format!(
                    "the build reads more than {MAX_BUILD_BYTES} bytes (64 MiB), the limit for one build; split the app"
                ),
            });
        }
        Ok(())
    }

    fn read_bytes(&self, path: &RepoPath) -> Result<Vec<u8>, KustomizeError> {
        self.count_file()?;
        let bytes = self.tree.read(path)?;
        self.count_bytes(bytes.len())?;
        Ok(bytes)
    }

    fn read_text(&self, path: &RepoPath) -> Result<String, KustomizeError> {
        self.count_file()?;
        let text = self.tree.read_text(path)?;
        self.count_bytes(text.len())?;
        Ok(text)
    }

    fn kind(&self, path: &RepoPath) -> Result<Option<EntryKind>, KustomizeError> {
        Ok(self.tree.kind(path)?)
    }
}

/// What a kustomization root contributes to the one that includes it: its objects,
/// its custom field specs and its vars (kustomize's resource accumulator).
#[derive(Default)]
struct Accumulation {
    res: Vec<Resource>,
    config: TransformerConfig,
    vars: Vec<Var>,
    /// Options only the outermost kustomization's count.
    top: Option<TopOptions>,
}

/// Options of the kustomization `build` was called on.
#[derive(Default, Clone)]
struct TopOptions {
    sort: Option<kustomization::SortOptions>,
    build_metadata: Vec<String>,
    file: String,
}

/// Builds the kustomization root `dir` of `tree` into objects, in `kustomize build`
/// order.
pub fn build(tree: &dyn FileTree, dir: &RepoPath) -> Result<Vec<Value>, KustomizeError> {
    build_with_chart(tree, dir, None)
}

/// [`build`], with the output of the app's own Helm chart (`origin`, the manifests)
/// added to the root as a generator's output: the root's patches, prefixes, labels and
/// other transformers apply to it, as they would to a `helmCharts` entry.
pub fn build_with_chart(
    tree: &dyn FileTree,
    dir: &RepoPath,
    app_chart: Option<(String, String)>,
) -> Result<Vec<Value>, KustomizeError> {
    // Each nested root recurses: the build runs where the stack is known to hold
    // MAX_KUSTOMIZATION_DEPTH of them, whatever thread called it.
    crate::contain::on_app_stack(&format!("building {dir}"), || {
        build_here(tree, dir, app_chart)
    })?
}

/// [`build_with_chart`] on the calling thread.
fn build_here(
    tree: &dyn FileTree,
    dir: &RepoPath,
    app_chart: Option<(String, String)>,
) -> Result<Vec<Value>, KustomizeError> {
    let loader = Loader::new(tree);
    *loader.app_chart.borrow_mut() = app_chart;
    let acc = accumulate_root(&loader, dir, Root::Top, Accumulation::default())?;
    let top = acc.top.clone().unwrap_or_default();
    let mut res = acc.res;
    // Hash suffixes, then name references, then vars, then order: only at the top.
    for r in res.iter_mut().filter(|r| r.needs_hash) {
        let h = name_hash(&r.obj);
        r.store_previous_id();
        let name = format!("{}-{h}", r.name());
        r.set_name(&name);
    }
    nameref::fix_name_references(&mut res, &acc.config.name_reference)?;
    let var_specs = fields::combine(&fields::var_reference_specs(), &acc.config.var_reference);
    vars::resolve_vars(&mut res, &acc.vars, &var_specs)?;
    // Objects marked local-config are inputs to transformers, not output.
    res.retain(|r| {
        r.meta_map("annotations")
            .get("config.kubernetes.io/local-config")
            .and_then(Value::as_str)
            != Some("true")
    });
    let mut res = sort::sort(res, top.sort.as_ref(), &top.file)?;
    let wants = |o: &str| top.build_metadata.iter().any(|b| b == o);
    for r in res.iter_mut() {
        // kustomize writes each object out before printing it.
        r.settle_flow_nulls();
        stringify_annotations(r);
        if wants("managedByLabel") {
            let mut labels = r.meta_map("labels");
            labels.insert(
                "app.kubernetes.io/managed-by".into(),
                Value::String(MANAGED_BY.into()),
            );
            if let Some(Value::Object(meta)) = r.obj.get_mut("metadata") {
                meta.insert("labels".into(), Value::Object(labels));
            }
        }
        if !wants("originAnnotations") {
            remove_annotation(r, ORIGIN_ANNOTATION);
        }
        if wants("transformerAnnotations") && !r.transformations.is_empty() {
            let list: String = r
                .transformations
                .iter()
                .map(|t| {
                    let mut lines = t.lines();
                    let first = lines.next().unwrap_or("");
                    let mut s = format!("- {first}\n");
                    for l in lines {
                        s.push_str(&format!("  {l}\n"));
                    }
                    s
                })
                .collect();
            set_annotation(r, TRANSFORMATIONS_ANNOTATION, list);
        }
        drop_empty_annotations(r);
    }
    Ok(res.into_iter().map(|r| Value::Object(r.obj)).collect())
}

/// Whether `dir` holds a kustomization file.
pub fn has_kustomization(tree: &dyn FileTree, dir: &RepoPath) -> Result<bool, KustomizeError> {
    for name in KUSTOMIZATION_FILE_NAMES {
        if tree.kind(&dir.join(name)?)? == Some(EntryKind::File) {
            return Ok(true);
        }
    }
    Ok(false)
}

/// The objects of manifests printed by `helm template` (`origin` names where they came
/// from), for an app whose chart is used without a kustomization.
pub fn objects_of_manifests(origin: &str, text: &str) -> Result<Vec<Value>, KustomizeError> {
    Ok(helm_charts::helm_output_resources(origin, text)?
        .into_iter()
        .map(|r| Value::Object(r.obj))
        .collect())
}

/// Finds and parses the kustomization file of `dir`.
fn load_kustomization(
    loader: &Loader<'_>,
    dir: &RepoPath,
) -> Result<(RepoPath, Kustomization), KustomizeError> {
    let mut found = Vec::new();
    for name in KUSTOMIZATION_FILE_NAMES {
        let p = dir.join(name)?;
        if loader.kind(&p)? == Some(EntryKind::File) {
            found.push(p);
        }
    }
    let file = match found.len() {
        0 => {
            return Err(KustomizeError::NotARoot {
                dir: dir.to_string(),
            });
        }
        1 => found.remove(0),
        _ => {
            return Err(KustomizeError::Kustomization {
                dir: dir.to_string(),
                message: "found more than one kustomization file; keep only one".into(),
            });
        }
    };
    let text = loader.read_text(&file)?;
    if let Ok(docs) = crate::yaml::parse_documents(file.as_str(), &text)
        && is_empty_kustomization(&docs)
    {
        // Refused by the caller once it has checked the kind, so a Component listed
        // as a resource is still explained as such.
        let field = |name: &str| {
            docs.first()
                .and_then(|d| d.get(name))
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .map(String::from)
        };
        let k = Kustomization {
            api_version: field("apiVersion"),
            kind: field("kind"),
            empty: true,
            ..Kustomization::default()
        };
        return Ok((file, k));
    }
    // kustomize decodes the file as JSON converted from YAML 1.1: a repeated key keeps
    // its last value, field names match case-insensitively, `yes` is a boolean, null
    // is a zero value, and a number or boolean where a string belongs is refused.
    let mut strict_error = None;
    if let Ok(mut doc) = crate::yaml::parse_value_yaml11_last_key_wins(file.as_str(), &text) {
        kustomization::normalize_field_names(&mut doc);
        kustomization::nulls_in_string_maps_to_empty(&mut doc);
        kustomization::drop_empty_unsupported_fields(&mut doc);
        match serde_path_to_error::deserialize::<_, Kustomization>(doc) {
            Ok(k) => return Ok((file, k)),
            Err(e) => strict_error = Some(e),
        }
    }
    match crate::yaml::parse_typed::<Kustomization>(file.as_str(), &text) {
        Ok(k) => match strict_error {
            // Only the stricter typing failed: a value of the wrong type.
            Some(e) if e.inner().to_string().starts_with("invalid type") => {
                Err(KustomizeError::Parse(YamlError {
                    file: file.to_string(),
                    line: None,
                    column: None,
                    field: Some(e.path().to_string()),
                    message: {
                        let m = e.inner().to_string().replace('`', "'");
                        if m.ends_with("expected a string") {
                            format!(
                                "{m}; kustomize refuses it too (quote a value meant as text: \"1\", \"true\", \"yes\")"
                            )
                        } else {
                            format!("{m}; kustomize refuses it too")
                        }
                    },
                }))
            }
            _ => Ok((file, k)),
        },
        Err(e) => {
            if let Some(field) = kustomization::UNSUPPORTED_FIELDS
                .iter()
                .find(|f| e.message.starts_with(&format!("unknown field '{f}'")))
            {
                let at = match e.line {
                    Some(l) => format!("{}:{l}", file.as_str()),
                    None => file.as_str().to_string(),
                };
                return Err(KustomizeError::Unsupported {
                    file: at,
                    field: field.to_string(),
                });
            }
            Err(e.into())
        }
    }
}

/// Whether a kustomization file is empty as kustomize v5 sees it: no document, or a
/// map whose fields other than `apiVersion` and `kind` are all null or `""`, or an empty
/// `bases` (kustomize folds `bases` into `resources` first). An empty list or map
/// elsewhere (`resources: []`) is content, as in kustomize.
fn is_empty_kustomization(docs: &[Value]) -> bool {
    match docs.first() {
        None | Some(Value::Null) => true,
        Some(Value::Object(m)) => m.iter().all(|(k, v)| {
            k == "apiVersion"
                || k == "kind"
                || v.is_null()
                || v.as_str() == Some("")
                || (k == "bases" && v.as_array().is_some_and(Vec::is_empty))
        }),
        _ => false,
    }
}

fn is_remote(s: &str) -> bool {
    s.contains("://")
        || s.starts_with("git@")
        || s.starts_with("github.com/")
        || s.starts_with("gitlab.com/")
        || s.starts_with("bitbucket.org/")
}

/// How a kustomization root is being built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Root {
    /// The root `build` was called on (a Kustomization or a Component).
    Top,
    /// A directory listed under `resources`.
    Resource,
    /// A directory listed under `components`.
    Component,
}

/// Builds a non-component root into a fresh accumulation, or applies a component to
/// `acc`.
fn accumulate_root(
    loader: &Loader<'_>,
    dir: &RepoPath,
    root: Root,
    acc: Accumulation,
) -> Result<Accumulation, KustomizeError> {
    // As kustomize does, a root is built at its real path: `..` in it is relative to
    // where a directory symlink leads, and a symlink back to an enclosing root is a
    // cycle, not a chain that grows until a limit.
    let real = loader.tree.real_path(dir)?.unwrap_or_else(|| dir.clone());
    {
        let mut stack = loader.stack.borrow_mut();
        if loader.on_stack.borrow().contains(&real) {
            let mut chain: Vec<String> = stack.iter().map(|p| p.to_string()).collect();
            chain.push(dir.to_string());
            return Err(KustomizeError::Cycle {
                chain: chain.join(" -> "),
            });
        }
        if stack.len() >= MAX_KUSTOMIZATION_DEPTH {
            return Err(KustomizeError::Limit {
                dir: dir.to_string(),
                message: format!(
                    "kustomization roots nest more than {MAX_KUSTOMIZATION_DEPTH} deep (the limit for one build), counting from {}; flatten the chain of bases",
                    stack.first().map_or_else(String::new, |d| d.to_string())
                ),
            });
        }
        stack.push(dir.clone());
        loader.on_stack.borrow_mut().insert(real.clone());
    }
    let result = accumulate_inner(loader, &real, root, acc);
    loader.stack.borrow_mut().pop();
    loader.on_stack.borrow_mut().remove(&real);
    result
}

fn accumulate_inner(
    loader: &Loader<'_>,
    dir: &RepoPath,
    root: Root,
    mut whole: Accumulation,
) -> Result<Accumulation, KustomizeError> {
    let (file, k) = load_kustomization(loader, dir)?;
    let kind = k.kind.as_deref().unwrap_or("Kustomization");
    let dir_s = dir.to_string();
    let is_component = root == Root::Component;
    match (is_component, kind) {
        (true, "Component") | (false, "Kustomization") => {}
        (false, "Component") if root == Root::Top => {}
        (true, other) => {
            return Err(KustomizeError::Kustomization {
                dir: dir_s,
                message: format!(
                    "listed under 'components' but its kind is '{other}'; set kind: Component"
                ),
            });
        }
        (false, "Component") => {
            return Err(KustomizeError::Kustomization {
                dir: dir_s,
                message: "is a Component; list it under 'components', not 'resources'".into(),
            });
        }
        (false, other) => {
            return Err(KustomizeError::Kustomization {
                dir: dir_s,
                message: format!("unknown kind '{other}', expected Kustomization or Component"),
            });
        }
    }
    // As kustomize enforces: a Kustomization is kustomize.config.k8s.io/v1beta1, a
    // Component v1alpha1 (when an apiVersion is given at all).
    let required = if kind == "Component" {
        "kustomize.config.k8s.io/v1alpha1"
    } else {
        "kustomize.config.k8s.io/v1beta1"
    };
    if let Some(api) = k
        .api_version
        .as_deref()
        .filter(|a| !a.is_empty() && *a != required)
    {
        return Err(KustomizeError::Kustomization {
            dir: file.to_string(),
            message: format!("apiVersion for {kind} should be {required}, not {api}"),
        });
    }
    if k.empty {
        return Err(KustomizeError::Empty {
            file: file.to_string(),
        });
    }
    if let Some(o) = &k.openapi {
        load_openapi(loader, dir, &file, o)?;
    }
    if root == Root::Top && !k.build_metadata.is_empty() {
        *loader.origin_root.borrow_mut() = Some(dir.clone());
    }
    if root == Root::Top {
        whole.top = Some(TopOptions {
            sort: k.sort_options.clone(),
            build_metadata: k.build_metadata.clone(),
            file: file.to_string(),
        });
    }
    let mut acc = std::mem::take(&mut whole.res);
    // Resources.
    let mut ids: std::collections::HashMap<_, usize> = acc
        .iter()
        .enumerate()
        .map(|(i, r)| (r.cur_id().key(), i))
        .collect();
    for entry in k.resources.iter().chain(k.bases.iter()) {
        if is_remote(entry) {
            return Err(KustomizeError::RemoteBase {
                file: file.to_string(),
                url: entry.clone(),
            });
        }
        let path = dir.join(entry)?;
        match loader.kind(&path)? {
            Some(EntryKind::File) => {
                let path = loader.file_in(dir, entry)?;
                for r in load_resources(loader, &path)? {
                    add_unique(&mut acc, &mut ids, r)?;
                }
            }
            Some(EntryKind::Dir) => {
                let sub = accumulate_root(loader, &path, Root::Resource, Accumulation::default())?;
                for r in sub.res {
                    add_unique(&mut acc, &mut ids, r)?;
                }
                whole.config.merge(&sub.config);
                vars::merge_declared(&mut whole.vars, &sub.vars, &dir_s)?;
            }
            None => {
                return Err(KustomizeError::Resource {
                    file: file.to_string(),
                    message: format!("resource '{entry}' does not exist (looked for {path})"),
                });
            }
        }
    }
    // Custom field specs, from files and from CRD schemas.
    for c in &k.configurations {
        let path = loader.file_in(dir, c)?;
        let text = loader.read_text(&path)?;
        // kustomize reads only the first document of a configurations file: a file
        // starting with an empty document configures nothing.
        let tc: TransformerConfig = if crate::yaml::first_document_is_empty(&text) {
            TransformerConfig::default()
        } else {
            crate::yaml::parse_typed(path.as_str(), &text)?
        };
        whole.config.merge(&tc);
    }
    for c in &k.crds {
        let path = loader.file_in(dir, c)?;
        let text = loader.read_text(&path)?;
        let defs = crate::yaml::parse_documents(path.as_str(), &text)?;
        let defs = defs.into_iter().next().unwrap_or(Value::Null);
        whole.config.merge(&config::from_openapi_definitions(&defs));
    }
    // Generators.
    for (kind, entries) in [
        (GeneratedKind::ConfigMap, &k.config_map_generator),
        (GeneratedKind::Secret, &k.secret_generator),
    ] {
        for entry in entries {
            let mut generated =
                generator::generate(loader, dir, kind, entry, k.generator_options.as_ref())?;
            let by = match kind {
                GeneratedKind::ConfigMap => "ConfigMapGenerator",
                GeneratedKind::Secret => "SecretGenerator",
            };
            set_configured_origin(loader, &mut generated, &file, by, "");
            absorb_generated(&mut acc, generated, &dir_s)?;
        }
    }
    for entry in &k.generators {
        for (cfg, where_, source) in
            plugins::load_configs(loader, dir, entry, plugins::PluginField::Generators)?
        {
            let mut generated = plugins::run_generator(loader, dir, &cfg, &where_)?;
            let by = cfg.get("kind").and_then(Value::as_str).unwrap_or("");
            let identity = plugin_identity(&cfg);
            set_configured_origin(
                loader,
                &mut generated,
                source.as_ref().unwrap_or(&file),
                by,
                &identity,
            );
            absorb_generated(&mut acc, generated, &dir_s)?;
        }
    }
    // Helm charts: this kustomization's, then (at the top-level root only) the app's
    // own `helm:` chart, whose output the root's transformers see as well.
    for r in helm_charts::inflate_charts(
        loader,
        dir,
        &file.to_string(),
        &k.helm_charts,
        k.helm_globals.as_ref(),
    )? {
        absorb_generated(&mut acc, r, &dir_s)?;
    }
    if loader.stack.borrow().len() == 1
        && let Some((origin, text)) = loader.app_chart.borrow_mut().take()
    {
        for r in helm_charts::helm_output_resources(&origin, &text)? {
            absorb_generated(&mut acc, r, &dir_s)?;
        }
    }
    // Components apply to what has been accumulated so far.
    for c in &k.components {
        if is_remote(c) {
            return Err(KustomizeError::RemoteBase {
                file: file.to_string(),
                url: c.clone(),
            });
        }
        let path = dir.join(c)?;
        whole.res = acc;
        whole = accumulate_root(loader, &path, Root::Component, whole)?;
        acc = std::mem::take(&mut whole.res);
    }
    run_transformers(loader, dir, &k, &whole.config, &mut acc)?;
    vars::merge_vars(&mut whole.vars, &mut acc, &k.vars, &dir_s)?;
    whole.res = acc;
    Ok(whole)
}

fn add_unique(
    acc: &mut Vec<Resource>,
    ids: &mut std::collections::HashMap<(Gvk, String, String), usize>,
    r: Resource,
) -> Result<(), KustomizeError> {
    let id = r.cur_id();
    if let Some(existing) = ids.get(&id.key()).map(|i| &acc[*i]) {
        return Err(KustomizeError::Conflict {
            message: format!(
                "{id} is defined twice (in {} and in {}); an object may appear once per build",
                existing.origin, r.origin
            ),
        });
    }
    ids.insert(id.key(), acc.len());
    acc.push(r);
    Ok(())
}

fn absorb_generated(acc: &mut Vec<Resource>, r: Resource, dir: &str) -> Result<(), KustomizeError> {
    let id = r.cur_id();
    let pos = acc
        .iter()
        .position(|x| x.cur_id().same_as(&id) || x.prev_ids.iter().any(|p| p.same_as(&id)));
    match (r.behavior.unwrap_or_default(), pos) {
        (Behavior::Create, None) => {
            acc.push(r);
            Ok(())
        }
        (Behavior::Create, Some(_)) => Err(KustomizeError::Conflict {
            message: format!(
                "{dir}: generator would create {id}, which already exists; use behavior: merge or replace"
            ),
        }),
        (b, None) => Err(KustomizeError::Generator {
            dir: dir.to_string(),
            name: r.name().to_string(),
            message: format!(
                "behavior: {} needs an existing {} named '{}' from a base, and there is none",
                if b == Behavior::Merge {
                    "merge"
                } else {
                    "replace"
                },
                id.gvk.kind,
                id.name
            ),
        }),
        (b, Some(i)) => {
            let old = &mut acc[i];
            for field in ["data", "binaryData"] {
                let new_val = r.obj.get(field).cloned();
                if b == Behavior::Replace {
                    match new_val {
                        Some(v) => {
                            old.obj.insert(field.into(), v);
                        }
                        None => {
                            old.obj.remove(field);
                        }
                    }
                } else if let Some(Value::Object(newm)) = new_val {
                    let entry = old
                        .obj
                        .entry(field.to_string())
                        .or_insert_with(|| Value::Object(Map::new()));
                    if let Value::Object(m) = entry {
                        m.extend(newm);
                    }
                }
            }
            for key in ["labels", "annotations"] {
                let mut add = r.meta_map(key);
                // A merge keeps the origin of the object it merges into; a replace
                // takes the replacing generator's, as in kustomize.
                if b == Behavior::Merge {
                    add.remove(ORIGIN_ANNOTATION);
                }
                if add.is_empty() {
                    continue;
                }
                let mut merged = old.meta_map(key);
                merged.extend(add);
                if let Some(Value::Object(meta)) = old.obj.get_mut("metadata") {
                    meta.insert(key.into(), Value::Object(merged));
                }
            }
            if r.obj.contains_key("immutable") {
                old.obj.insert("immutable".into(), Value::Bool(true));
            }
            // A base that turned the hash off keeps it off; an overlay may turn it off.
            old.needs_hash = old.needs_hash && r.needs_hash;
            Ok(())
        }
    }
}

/// Reads an `openapi` field: a schema file (the first one loaded in a build wins, as in
/// kustomize) or the one built-in version.
fn load_openapi(
    loader: &Loader<'_>,
    dir: &RepoPath,
    file: &RepoPath,
    o: &std::collections::BTreeMap<String, String>,
) -> Result<(), KustomizeError> {
    let bad = |message: String| KustomizeError::Kustomization {
        dir: file.to_string(),
        message,
    };
    match (o.get("path"), o.get("version")) {
        (Some(_), Some(_)) => Err(bad(
            "openapi: builtin version and custom schema provided, cannot use both".into(),
        )),
        (None, Some(v)) if v != openapi::BUILTIN_VERSION => Err(bad(format!(
            "openapi: the specified OpenAPI version {v} is not built in (only {})",
            openapi::BUILTIN_VERSION
        ))),
        (Some(p), None) => {
            let path = loader.file_in(dir, p)?;
            let text = loader.read_text(&path)?;
            let doc = crate::yaml::parse_documents(path.as_str(), &text)?
                .into_iter()
                .next()
                .unwrap_or(Value::Null);
            let mut current = loader.openapi.borrow_mut();
            if current.is_none() {
                *current = Some(std::rc::Rc::new(openapi::OpenApiSchema::parse(
                    &doc,
                    loader.builtin_schema_read.get(),
                )));
            }
            Ok(())
        }
        (None, Some(_)) => {
            // The built-in schema: it too takes precedence over schemas loaded later.
            let mut current = loader.openapi.borrow_mut();
            if current.is_none() {
                *current = Some(std::rc::Rc::new(openapi::OpenApiSchema::default()));
            }
            Ok(())
        }
        (None, None) => Ok(()),
    }
}

/// Annotation values are strings; kustomize writes `happy: true` or `port: 8080` back
/// as `"true"` and `"8080"` when it rewrites annotations at the end of every build.
fn stringify_annotations(r: &mut Resource) {
    if let Some(Value::Object(meta)) = r.obj.get_mut("metadata")
        && let Some(Value::Object(a)) = meta.get_mut("annotations")
    {
        for v in a.values_mut() {
            let text = match v {
                Value::Bool(b) => b.to_string(),
                Value::Number(n) => n.to_string(),
                Value::Null => "null".to_string(),
                _ => continue,
            };
            *v = Value::String(text);
        }
    }
}

/// Removes `metadata.annotations` when it is null, empty or an empty text. kustomize keeps its
/// bookkeeping in annotations and deletes the map once the last of them is gone, so
/// an object's own `annotations: {}` or `annotations:` never reaches the output;
/// every other empty or null field (`labels: {}`, `labels:`, `data: {}`, template
/// annotations) is printed as written.
fn drop_empty_annotations(r: &mut Resource) {
    if let Some(Value::Object(meta)) = r.obj.get_mut("metadata")
        && meta.get("annotations").is_some_and(|a| {
            a.is_null() || a.as_str() == Some("") || a.as_object().is_some_and(Map::is_empty)
        })
    {
        meta.remove("annotations");
    }
}

/// The annotation kustomize records an object's origin in.
const ORIGIN_ANNOTATION: &str = "config.kubernetes.io/origin";
/// The annotation kustomize records the transformers that ran on an object in.
const TRANSFORMATIONS_ANNOTATION: &str = "alpha.config.kubernetes.io/transformations";

fn set_annotation(r: &mut Resource, key: &str, value: String) {
    let mut annotations = r.meta_map("annotations");
    annotations.insert(key.into(), Value::String(value));
    if let Some(Value::Object(meta)) = r.obj.get_mut("metadata") {
        meta.insert("annotations".into(), Value::Object(annotations));
    }
}

fn remove_annotation(r: &mut Resource, key: &str) {
    if let Some(Value::Object(meta)) = r.obj.get_mut("metadata")
        && let Some(Value::Object(a)) = meta.get_mut("annotations")
        && a.remove(key).is_some()
        && a.is_empty()
    {
        meta.remove("annotations");
    }
}

/// Records that `r` was read from `path`, when origins are tracked.
fn with_origin(loader: &Loader<'_>, path: &RepoPath, mut r: Resource) -> Resource {
    if let Some(rel) = loader.origin_of(path) {
        set_annotation(&mut r, ORIGIN_ANNOTATION, format!("path: {rel}\n"));
    }
    r
}

fn configured(rel: &str, kind: &str, identity: &str) -> String {
    format!("configuredIn: {rel}\nconfiguredBy:\n  apiVersion: builtin\n  kind: {kind}\n{identity}")
}

/// The `name` and `namespace` lines of a plugin configuration's `configuredBy`.
fn plugin_identity(cfg: &Value) -> String {
    let mut s = String::new();
    for key in ["name", "namespace"] {
        if let Some(v) = cfg
            .pointer(&format!("/metadata/{key}"))
            .and_then(Value::as_str)
        {
            s.push_str(&format!("  {key}: {v}\n"));
        }
    }
    s
}

/// Records that a built-in generator configured in `file` made `r`.
fn set_configured_origin(
    loader: &Loader<'_>,
    r: &mut Resource,
    file: &RepoPath,
    kind: &str,
    identity: &str,
) {
    if let Some(rel) = loader.origin_of(file) {
        set_annotation(r, ORIGIN_ANNOTATION, configured(&rel, kind, identity));
    }
}

/// The kustomization file of `dir` (for origins of inline configurations).
fn kustomization_file(loader: &Loader<'_>, dir: &RepoPath) -> RepoPath {
    KUSTOMIZATION_FILE_NAMES
        .iter()
        .filter_map(|n| dir.join(n).ok())
        .find(|p| matches!(loader.kind(p), Ok(Some(EntryKind::File))))
        .unwrap_or_else(|| dir.clone())
}

/// Records, on every object, that a built-in transformer configured in `file` ran (an
/// object without an origin is taken as made by it), when origins are tracked.
fn record_transformation(
    loader: &Loader<'_>,
    acc: &mut [Resource],
    file: &RepoPath,
    kind: &str,
    identity: &str,
) {
    let Some(rel) = loader.origin_of(file) else {
        return;
    };
    for r in acc.iter_mut() {
        if r.meta_map("annotations").contains_key(ORIGIN_ANNOTATION) {
            r.transformations.push(configured(&rel, kind, identity));
        } else {
            set_annotation(r, ORIGIN_ANNOTATION, configured(&rel, kind, identity));
        }
    }
}

/// Reads the objects of one resource file (multi-document; `List` kinds expanded).
fn load_resources(loader: &Loader<'_>, path: &RepoPath) -> Result<Vec<Resource>, KustomizeError> {
    let text = loader.read_text(path)?;
    let resources: Vec<Resource> = resources_from_text(path.as_str(), &text)?
        .into_iter()
        .map(|r| with_origin(loader, path, r))
        .collect();
    if resources
        .iter()
        .any(|r| !crate::schema::is_builtin_group(&r.gvk().group))
    {
        loader.note_builtin_schema_read();
    }
    Ok(resources)
}

/// The objects of a YAML stream (`List` kinds unpacked); `origin` names it in errors.
fn resources_from_text(origin: &str, text: &str) -> Result<Vec<Resource>, KustomizeError> {
    let text = &*keep_chomp::as_kustomize_reads(text);
    let docs = crate::yaml::parse_manifests(origin, text)?;
    // A value written as nothing is a key followed by a line break, a comment, the end
    // of the text or the end of a flow entry; most files have none.
    let may_have_unspelled = [
        ":\n", ": \n", ":\r", ": \r", ": #", ":\t#", ": }", ":}", ": ,", ":,",
    ]
    .iter()
    .any(|p| text.contains(p))
        || text.trim_end().ends_with(':');
    let unspelled = if may_have_unspelled {
        crate::yaml::unspelled_nulls(text, docs.len())
    } else {
        Vec::new()
    };
    let flow = if text.contains(['[', '{']) {
        crate::yaml::flow_collections(text, docs.len())
    } else {
        Vec::new()
    };
    // The pointers of document `doc` under `prefix`, with the prefix taken off.
    let under = |found: &[(usize, String)], doc: usize, prefix: &str| -> Vec<String> {
        found
            .iter()
            .filter(|(d, p)| *d == doc && p.starts_with(prefix))
            .filter(|(_, p)| p.len() == prefix.len() || p.as_bytes()[prefix.len()] == b'/')
            .map(|(_, p)| p[prefix.len()..].to_string())
            .collect()
    };
    let nulls_of = |doc: usize, prefix: &str| -> Vec<String> {
        let mut found = under(&unspelled, doc, prefix);
        found.retain(|p| !p.is_empty());
        found
    };
    let mut out = Vec::new();
    for (i, doc) in docs.into_iter().enumerate() {
        let where_ = if i == 0 {
            origin.to_string()
        } else {
            format!("{origin} (document {})", i + 1)
        };
        let Value::Object(obj) = doc else {
            return Err(KustomizeError::Resource {
                file: where_,
                message: "expected a Kubernetes object (a YAML map)".into(),
            });
        };
        let kind = obj.get("kind").and_then(Value::as_str).unwrap_or("");
        if kind.ends_with("List") && obj.get("items").is_some_and(Value::is_array) {
            if let Some(Value::Array(items)) = obj.get("items") {
                for (j, item) in items.iter().enumerate() {
                    if let Value::Object(m) = item {
                        let mut r = check_object(m.clone(), &where_)?;
                        r.unspelled_nulls = nulls_of(i, &format!("/items/{j}"));
                        r.flow_collections = under(&flow, i, &format!("/items/{j}"));
                        out.push(r);
                    }
                }
            }
            continue;
        }
        let mut r = check_object(obj, &where_)?;
        r.unspelled_nulls = nulls_of(i, "");
        r.flow_collections = under(&flow, i, "");
        out.push(r);
    }
    Ok(out)
}

fn check_object(obj: Map<String, Value>, where_: &str) -> Result<Resource, KustomizeError> {
    let err = |m: &str| KustomizeError::Resource {
        file: where_.to_string(),
        message: m.to_string(),
    };
    // kustomize builds an object without apiVersion (its group and version are
    // empty); only kind and name are required.
    match obj.get("apiVersion") {
        None | Some(Value::Null) | Some(Value::String(_)) => {}
        _ => return Err(err("'apiVersion' must be a string such as apps/v1")),
    }
    match obj.get("kind") {
        Some(Value::String(s)) if !s.is_empty() => {}
        _ => return Err(err("missing 'kind'")),
    }
    let meta = obj.get("metadata").and_then(Value::as_object);
    match meta.and_then(|m| m.get("name")) {
        Some(Value::String(s)) if !s.is_empty() => {}
        _ => return Err(err("missing 'metadata.name'")),
    }
    if let Some(ns) = meta.and_then(|m| m.get("namespace"))
        && !ns.is_string()
        && !ns.is_null()
    {
        return Err(err("'metadata.namespace' must be a string"));
    }
    Ok(Resource::new(obj, where_))
}

fn patch_text(
    loader: &Loader<'_>,
    dir: &RepoPath,
    path: Option<&String>,
    inline: Option<&String>,
) -> Result<(String, String), KustomizeError> {
    // kustomize trims inline patch text, and blank inline text counts as absent.
    let inline = inline.map(|t| t.trim()).filter(|t| !t.is_empty());
    match (path, inline) {
        (Some(p), None) => {
            let full = loader.file_in(dir, p)?;
            Ok((loader.read_text(&full)?, full.to_string()))
        }
        (None, Some(t)) => Ok((t.to_string(), format!("{dir}: inline patch"))),
        (Some(_), Some(_)) => Err(KustomizeError::Kustomization {
            dir: dir.to_string(),
            message: "a patch has both 'path' and 'patch'; keep one of them".into(),
        }),
        (None, None) => Err(KustomizeError::Kustomization {
            dir: dir.to_string(),
            message: "a patch needs one of 'path' or 'patch' (an inline patch that is blank \
                      counts as none)"
                .into(),
        }),
    }
}

fn run_transformers(
    loader: &Loader<'_>,
    dir: &RepoPath,
    k: &Kustomization,
    tc: &TransformerConfig,
    acc: &mut Vec<Resource>,
) -> Result<(), KustomizeError> {
    let dir_s = dir.to_string();
    // With transformer annotations asked for, each built-in transformer a field
    // configures is recorded on every object, as kustomize records it.
    let kfile = loader
        .origin_root
        .borrow()
        .is_some()
        .then(|| kustomization_file(loader, dir));
    let note = |acc: &mut Vec<Resource>, kind: &str| {
        if let Some(f) = &kfile {
            record_transformation(loader, acc, f, kind, "");
        }
    };
    for entry in &k.patches_strategic_merge {
        apply_legacy_smp(loader, dir, entry, acc)?;
    }
    if !k.patches_strategic_merge.is_empty() {
        note(acc, "PatchStrategicMergeTransformer");
    }
    for entry in &k.patches {
        apply_patch_entry(loader, dir, entry, acc)?;
        note(acc, "PatchTransformer");
    }
    if let Some(ns) = k.namespace.as_deref().filter(|n| !n.is_empty()) {
        transform::set_namespace(acc, ns, &tc.namespace)?;
        note(acc, "NamespaceTransformer");
    }
    if let Some(prefix) = k.name_prefix.as_deref().filter(|p| !p.is_empty()) {
        transform::add_affixes(acc, prefix, "", &tc.name_prefix);
        note(acc, "PrefixTransformer");
    }
    if let Some(suffix) = k.name_suffix.as_deref().filter(|p| !p.is_empty()) {
        transform::add_affixes(acc, "", suffix, &tc.name_suffix);
        note(acc, "SuffixTransformer");
    }
    for l in &k.labels {
        let mut specs = transform::label_specs(l.include_selectors, l.include_templates, tc);
        for f in l.fields.iter().chain(&tc.labels) {
            if !specs.contains(f) {
                specs.push(f.clone());
            }
        }
        transform::add_map_entries(acc, &l.pairs, &specs);
        note(acc, "LabelTransformer");
    }
    if !k.common_labels.is_empty() {
        let label_specs = fields::combine(&fields::common_label_specs(), &tc.common_labels);
        transform::add_map_entries(acc, &k.common_labels, &label_specs);
        note(acc, "LabelTransformer");
    }
    if !k.common_annotations.is_empty() {
        let annotation_specs = fields::combine(fields::COMMON_ANNOTATIONS, &tc.common_annotations);
        transform::add_map_entries(acc, &k.common_annotations, &annotation_specs);
        note(acc, "AnnotationsTransformer");
    }
    for entry in &k.patches_json6902 {
        apply_legacy_json6902(loader, dir, entry, acc)?;
        note(acc, "PatchJson6902Transformer");
    }
    for rep in &k.replicas {
        transform::set_replicas(acc, std::slice::from_ref(rep), &dir_s, &tc.replicas)?;
        note(acc, "ReplicaCountTransformer");
    }
    let image_specs: Vec<fields::FieldSpec> = fields::IMAGE_SPECS
        .iter()
        .chain(&tc.images)
        .cloned()
        .collect();
    for img in k.images.iter().chain(&k.image_tags) {
        transform::set_images(acc, std::slice::from_ref(img), &image_specs);
        note(acc, "ImageTagTransformer");
    }
    if !k.replacements.is_empty() {
        let reps = load_replacements(loader, dir, &k.replacements)?;
        replacement::apply(acc, &reps).map_err(|message| KustomizeError::Kustomization {
            dir: kustomization_file(loader, dir).to_string(),
            message: message.0,
        })?;
        note(acc, "ReplacementTransformer");
    }
    for entry in &k.transformers {
        for (cfg, where_, source) in
            plugins::load_configs(loader, dir, entry, plugins::PluginField::Transformers)?
        {
            plugins::run_transformer(loader, dir, &cfg, &where_, acc)?;
            let by = cfg.get("kind").and_then(Value::as_str).unwrap_or("");
            let identity = plugin_identity(&cfg);
            let file = source.unwrap_or_else(|| kustomization_file(loader, dir));
            record_transformation(loader, acc, &file, by, &identity);
        }
    }
    Ok(())
}

/// Applies one `patchesStrategicMerge` entry (a path, or inline YAML).
fn apply_legacy_smp(
    loader: &Loader<'_>,
    dir: &RepoPath,
    entry: &str,
    acc: &mut Vec<Resource>,
) -> Result<(), KustomizeError> {
    let dir_s = dir.to_string();
    let looks_inline = entry.contains('\n') || entry.contains(": ");
    let (text, what) = if looks_inline {
        (entry.to_string(), format!("{dir}: inline patch"))
    } else {
        patch_text(loader, dir, Some(&entry.to_string()), None)?
    };
    loader.note_builtin_schema_read();
    let src = PatchSource {
        dir: &dir_s,
        what,
        schema: loader.openapi.borrow().clone(),
    };
    let p = patch::parse_patch(&text, &src, patch::PatchField::StrategicMerge)?;
    if matches!(p, patch::Patch::Json(_)) {
        return Err(KustomizeError::Patch {
            dir: dir_s.clone(),
            patch: src.what,
            message: "patchesStrategicMerge entries must be strategic merge patches".into(),
        });
    }
    let through_map = PatchOptions {
        through_resource_map: true,
        ..PatchOptions::default()
    };
    patch::apply_patch(acc, &p, None, through_map, &src)?;
    Ok(())
}

/// Applies one `patches` entry.
fn apply_patch_entry(
    loader: &Loader<'_>,
    dir: &RepoPath,
    entry: &kustomization::PatchEntry,
    acc: &mut Vec<Resource>,
) -> Result<(), KustomizeError> {
    let dir_s = dir.to_string();
    let (text, what) = patch_text(loader, dir, entry.path.as_ref(), entry.patch.as_ref())?;
    loader.note_builtin_schema_read();
    let src = PatchSource {
        dir: &dir_s,
        what,
        schema: loader.openapi.borrow().clone(),
    };
    let field = patch::PatchField::Patches {
        targeted: entry.target.is_some(),
    };
    let p = patch::parse_patch(&text, &src, field)?;
    let target = match &entry.target {
        Some(t) => Some(CompiledSelector::new(t).map_err(|m| KustomizeError::Patch {
            dir: dir_s.clone(),
            patch: src.what.clone(),
            message: m.0,
        })?),
        None => None,
    };
    let opts = entry
        .options
        .as_ref()
        .map_or(PatchOptions::default(), |o| PatchOptions {
            allow_name_change: o.get("allowNameChange").copied().unwrap_or(false),
            allow_kind_change: o.get("allowKindChange").copied().unwrap_or(false),
            through_resource_map: false,
        });
    patch::apply_patch(acc, &p, target.as_ref(), opts, &src)?;
    Ok(())
}

/// Applies one `patchesJson6902` entry.
fn apply_legacy_json6902(
    loader: &Loader<'_>,
    dir: &RepoPath,
    entry: &kustomization::LegacyJsonPatch,
    acc: &mut Vec<Resource>,
) -> Result<(), KustomizeError> {
    let dir_s = dir.to_string();
    let (text, what) = patch_text(loader, dir, entry.path.as_ref(), entry.patch.as_ref())?;
    let src = PatchSource {
        dir: &dir_s,
        what,
        schema: loader.openapi.borrow().clone(),
    };
    let p = patch::parse_patch(&text, &src, patch::PatchField::Json6902)?;
    let target = CompiledSelector::new(&entry.target).map_err(|m| KustomizeError::Patch {
        dir: dir_s.clone(),
        patch: src.what.clone(),
        message: m.0,
    })?;
    patch::apply_patch(acc, &p, Some(&target), PatchOptions::default(), &src)?;
    Ok(())
}

/// Reads `replacements`: inline entries, and files holding one replacement or a list.
fn load_replacements(
    loader: &Loader<'_>,
    dir: &RepoPath,
    entries: &[kustomization::ReplacementEntry],
) -> Result<Vec<replacement::Replacement>, KustomizeError> {
    let bad = |message: String| KustomizeError::Kustomization {
        dir: dir.to_string(),
        message,
    };
    let mut out = Vec::new();
    for (i, e) in entries.iter().enumerate() {
        match &e.path {
            Some(p) => {
                if e.source.is_some() || e.targets.is_some() {
                    return Err(bad(format!(
                        "replacements[{i}]: cannot specify both path and inline replacement"
                    )));
                }
                let path = loader.file_in(dir, p)?;
                let text = loader.read_text(&path)?;
                let docs = crate::yaml::parse_documents(path.as_str(), &text)?;
                // kustomize reads the file's first document only: an empty one is null.
                let doc = if crate::yaml::first_document_is_empty(&text) {
                    Value::Null
                } else {
                    docs.into_iter().next().unwrap_or(Value::Null)
                };
                let parsed = match doc {
                    Value::Array(items) => items
                        .into_iter()
                        .map(serde_json::from_value)
                        .collect::<Result<Vec<replacement::Replacement>, _>>(),
                    m @ Value::Object(_) => serde_json::from_value(m).map(|r| vec![r]),
                    _ => {
                        return Err(bad(format!(
                            "{path}: unsupported replacement type encountered within replacement path; expected a map or a list"
                        )));
                    }
                };
                out.extend(parsed.map_err(|err| bad(format!("{path}: {err}")))?);
            }
            None => {
                let mut m = Map::new();
                for (k, v) in [("source", &e.source), ("targets", &e.targets)] {
                    if let Some(v) = v {
                        m.insert(k.into(), v.clone());
                    }
                }
                let r: replacement::Replacement = serde_json::from_value(Value::Object(m))
                    .map_err(|err| bad(format!("replacements[{i}]: {err}")))?;
                out.push(r);
            }
        }
    }
    Ok(out)
}
