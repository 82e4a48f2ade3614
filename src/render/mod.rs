//! Rendering: `(repository tree, app, cluster) -> objects + content hash`.
//!
//! Handlebars first (only `.hbs` files), then the kustomize build of the overlay the
//! fleet model chooses, then rollwave's own labels, the app's default namespace, the
//! kustomize output order and a sha256 content hash. No clock, no network, files only
//! through [`FileTree`]; the one exception is [`helm`], which runs the `helm` binary
//! (`helm template`, offline) on a copy of the chart taken from the tree. The files
//! read are recorded so releases can be found by tree diff later.

pub mod cache;
pub mod helm;
pub mod kustomize;
pub mod objects;
pub mod template;

use std::collections::BTreeSet;
use std::sync::Arc;

use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use crate::fleet::{App, Cluster, Fleet, choose_overlay};
use crate::tree::{ConfinedTree, FileTree, RecordingTree, RepoPath, TreeError};
use crate::vocab::{APP_LABEL, MANAGED_BY_LABEL, MANAGED_BY_VALUE};
use kustomize::{Gvk, KustomizeError, ResId, legacy_order};
pub use objects::Objects;
use template::{RenderTemplatesError, TemplatedTree};

/// The desired state of one app on one cluster.
#[derive(Debug, Clone, PartialEq)]
pub struct Rendered {
    /// The objects, in apply order as kustomize prints them.
    pub objects: Objects,
    /// sha256 (hex) over the canonical JSON of `objects`: equal hashes, equal state.
    pub content_hash: String,
    /// The kustomization root used, relative to the repository.
    pub root: String,
    /// Every file read to produce this rendering: the app's files, `fleet.yaml` and
    /// its `app.yaml` (shared by the copies the render cache hands out). The cluster's
    /// own file is not named: every rendering for a cluster depends on it, release
    /// detection counts all of `clusters/` ([`crate::source::history::Inputs::for_app`]),
    /// and so one rendering can serve every cluster that renders the app alike.
    pub files_read: Arc<BTreeSet<RepoPath>>,
}

/// What a rendering asked of its inputs besides the fleet's settings and the app: every
/// path of the tree it asked about in any way, and whether it rendered a template (a
/// template sees the whole cluster). What [`cache`] keys a rendering by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Asked {
    /// The paths asked about ([`RecordingTree::paths_queried`]).
    pub paths: BTreeSet<RepoPath>,
    /// Whether any `.hbs` file was rendered.
    pub templates: bool,
}

/// What a rendering of `app` reads of `cluster`, written out for the render cache's key.
///
/// A rendering that renders a template reads all of it (the template context). One
/// without templates reads only the overlay it chooses and, for a chart of the app's
/// own, the cluster's `values.helm.<app>` and `kubeVersion`: renderings of the app for
/// clusters that agree on those are one rendering, so an agent serving many clusters,
/// the planner and the web view render each release of such an app once rather than once
/// per cluster. Keep in step with `render_here`: a new read of the cluster there
/// belongs here.
pub fn cluster_inputs(app: &App, cluster: &Cluster, templates: bool) -> String {
    if templates {
        return format!("the whole cluster {cluster:?}");
    }
    let root = choose_overlay(app, cluster);
    match &app.helm {
        None => format!("root {root:?}"),
        Some(_) => format!(
            "root {root:?} helm values {:?} kubeVersion {:?}",
            cluster.values.get("helm").and_then(|h| h.get(&app.name)),
            cluster.kube_version
        ),
    }
}

/// Why an app could not be rendered for a cluster.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RenderError {
    /// A template failed.
    #[error(transparent)]
    Template(#[from] RenderTemplatesError),
    /// The kustomize build failed.
    #[error(transparent)]
    Build(#[from] KustomizeError),
    /// A read failed outside the build.
    #[error(transparent)]
    Read(#[from] TreeError),
    /// The result is not something rollwave can apply.
    #[error("{0}")]
    Invalid(String),
    /// Rendering failed in a way the bounds did not foresee (a panic), contained to
    /// this app.
    #[error(transparent)]
    Internal(#[from] crate::contain::Contained),
}

/// Deep-merges `over` into `base` (maps merge recursively; everything else replaces).
pub fn deep_merge(base: &mut Value, over: &Value) {
    match (base, over) {
        (Value::Object(b), Value::Object(o)) => {
            for (k, v) in o {
                match b.get_mut(k) {
                    Some(existing) => deep_merge(existing, v),
                    None => {
                        b.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        (b, o) => *b = o.clone(),
    }
}

/// The handlebars context for `app` on `cluster`: `cluster`, `app` and `values`
/// (fleet < app < cluster, deep-merged).
pub fn template_context(fleet: &Fleet, app: &App, cluster: &Cluster) -> Value {
    let mut values = Value::Object(fleet.settings.values.clone());
    deep_merge(&mut values, &Value::Object(app.values.clone()));
    deep_merge(&mut values, &Value::Object(cluster.values.clone()));
    json!({
        "cluster": {
            "name": cluster.name,
            "stage": cluster.stage,
            "labels": cluster.labels,
            "values": cluster.values,
        },
        "app": {"name": app.name, "namespace": app.namespace},
        "values": values,
    })
}

/// Renders `app` for `cluster` from `tree`, on a thread of its own: whatever the
/// repository holds, the result is a value or an error for this app, never the end of
/// the process ([`crate::contain`]).
pub fn render(
    tree: &dyn FileTree,
    fleet: &Fleet,
    app: &App,
    cluster: &Cluster,
) -> Result<Rendered, RenderError> {
    render_traced(tree, fleet, app, cluster).map(|(rendered, _)| rendered)
}

/// [`render`], with what the rendering asked of its inputs, which is what [`cache`]
/// keys a rendering by.
fn render_traced(
    tree: &dyn FileTree,
    fleet: &Fleet,
    app: &App,
    cluster: &Cluster,
) -> Result<(Rendered, Asked), RenderError> {
    let what = format!("rendering apps/{} for {}", app.name, cluster.name);
    crate::contain::contained(&what, || render_here(tree, fleet, app, cluster))?
}

/// [`render_traced`] on the calling thread. What it reads of the cluster is what
/// [`cluster_inputs`] says: the template context, the overlay and the chart's values
/// and version (and its name in errors, which are never cached).
fn render_here(
    tree: &dyn FileTree,
    fleet: &Fleet,
    app: &App,
    cluster: &Cluster,
) -> Result<(Rendered, Asked), RenderError> {
    let recording = RecordingTree::new(tree);
    let app_dir = RepoPath::new("apps")?.join(&app.name)?;
    // Symlinks may not lead out of the app: one app never reads another's files.
    let confined = ConfinedTree::new(&recording, app_dir.clone());
    let context = template_context(fleet, app, cluster);
    let rendered = template::render_templates(&confined, &app_dir, &context)?;
    let templates = !rendered.is_empty();
    let templated = TemplatedTree::new(&confined, rendered);
    let root = app_dir.join(choose_overlay(app, cluster))?;
    let built = match &app.helm {
        None => kustomize::build(&templated, &root)?,
        Some(spec) => {
            let origin = app_dir.join("app.yaml")?.to_string();
            let chart = inflate_app_chart(&templated, &app_dir, spec, app, cluster, &origin)?;
            if kustomize::has_kustomization(&templated, &root)? {
                // The root's kustomization sees the chart's output, as kustomize's
                // `helmCharts` would give it.
                kustomize::build_with_chart(&templated, &root, Some((origin, chart)))?
            } else {
                kustomize::objects_of_manifests(&origin, &chart)?
            }
        }
    };
    let objects = finish(built, app)?;
    if objects.is_empty() && !app.allow_empty {
        return Err(RenderError::Invalid(format!(
            "{root}: renders no objects for cluster {}; applying it would prune everything the app has. \
             Remove an app by taking it out of targets or deleting its directory, or set allowEmpty: true in \
             apps/{}/app.yaml if it is meant to be empty",
            cluster.name, app.name
        )));
    }
    let content_hash = content_hash(&objects);
    let mut files_read = recording.files_read();
    files_read.insert(RepoPath::new("fleet.yaml")?);
    files_read.insert(app_dir.join("app.yaml")?);
    let rendered = Rendered {
        objects: objects.into(),
        content_hash,
        root: root.to_string(),
        files_read: Arc::new(files_read),
    };
    let asked = Asked {
        paths: recording.paths_queried(),
        templates,
    };
    Ok((rendered, asked))
}

/// Renders the app's own chart (app.yaml `helm`). Values: chart defaults < `valuesFiles`
/// (in order) < `values` < the cluster's `values.helm.<app>`.
fn inflate_app_chart(
    tree: &dyn FileTree,
    app_dir: &RepoPath,
    spec: &crate::fleet::AppHelm,
    app: &App,
    cluster: &Cluster,
    origin: &str,
) -> Result<String, RenderError> {
    let mut values = Value::Object(Map::new());
    let mut values_files = Vec::new();
    for f in &spec.values_files {
        let path = app_dir.join(f)?;
        if tree.kind(&path)?.is_none() {
            return Err(RenderError::Invalid(format!(
                "{origin}: helm.valuesFiles: {path} does not exist"
            )));
        }
        values_files.push(path);
    }
    deep_merge(&mut values, &Value::Object(spec.values.clone()));
    if let Some(own) = cluster.values.get("helm").and_then(|h| h.get(&app.name)) {
        deep_merge(&mut values, own);
    }
    let run = helm::ChartRun {
        chart_dir: app_dir.join(&spec.chart)?,
        release_name: spec.release_name.clone(),
        name_template: None,
        namespace: app.namespace.clone(),
        values_files,
        values: Some(values),
        include_crds: spec.include_crds,
        skip_hooks: spec.skip_hooks,
        skip_tests: spec.skip_tests,
        kube_version: cluster.kube_version.clone(),
        api_versions: Vec::new(),
    };
    helm::inflate(tree, &run, origin).map_err(|e| RenderError::Build(e.into()))
}

fn id_of(obj: &Value) -> ResId {
    let s = |v: Option<&Value>| v.and_then(Value::as_str).unwrap_or("").to_string();
    let meta = obj.get("metadata");
    ResId {
        gvk: Gvk::from_api_version(&s(obj.get("apiVersion")), &s(obj.get("kind"))),
        name: s(meta.and_then(|m| m.get("name"))),
        namespace: s(meta.and_then(|m| m.get("namespace"))),
    }
}

/// Adds rollwave's labels (metadata only: selectors and pod templates stay untouched so
/// adopting a workload never restarts its pods) and the app's default namespace, then
/// re-sorts and checks that every object is unique. The sort is kustomize's legacy order
/// whatever the kustomization's `sortOptions` say: the agent applies by kind order
/// anyway (DESIGN §6), and the content hash must not change when only the order of
/// the sources does. `rollwave build` keeps `sortOptions`, as kustomize does.
fn finish(objects: Vec<Value>, app: &App) -> Result<Vec<Value>, RenderError> {
    let mut out = Vec::with_capacity(objects.len());
    for mut obj in objects {
        let gvk = id_of(&obj).gvk;
        let cluster_scoped = gvk.is_cluster_scoped();
        let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) else {
            return Err(RenderError::Invalid(format!(
                "{}: object has no metadata",
                id_of(&obj)
            )));
        };
        // kustomize's schema namespaces some versions of cluster-scoped kinds (such as
        // FlowSchema v1); what the agent applies carries no namespace for them.
        if cluster_scoped && !gvk.is_cluster_scoped_in_kustomize() {
            meta.remove("namespace");
        }
        if !cluster_scoped
            && let Some(ns) = &app.namespace
            && meta
                .get("namespace")
                .and_then(Value::as_str)
                .unwrap_or("")
                .is_empty()
        {
            meta.insert("namespace".into(), Value::String(ns.clone()));
        }
        let labels = meta
            .entry("labels")
            .or_insert_with(|| Value::Object(Map::new()));
        if !labels.is_object() {
            *labels = Value::Object(Map::new());
        }
        if let Some(l) = labels.as_object_mut() {
            l.insert(
                MANAGED_BY_LABEL.into(),
                Value::String(MANAGED_BY_VALUE.into()),
            );
            l.insert(APP_LABEL.into(), Value::String(app.name.clone()));
        }
        out.push(obj);
    }
    out.sort_by(|a, b| legacy_order(&id_of(a), &id_of(b)));
    for pair in out.windows(2) {
        let (a, b) = (id_of(&pair[0]), id_of(&pair[1]));
        if a.same_as(&b) {
            return Err(RenderError::Invalid(format!(
                "{a} appears twice after the app namespace '{}' was applied; give one of them an explicit namespace",
                app.namespace.as_deref().unwrap_or("")
            )));
        }
    }
    Ok(out)
}

/// sha256 (hex) of the canonical JSON (sorted keys, no spaces) of `objects`.
pub fn content_hash(objects: &[Value]) -> String {
    let json = serde_json::to_string(objects).unwrap_or_default();
    let digest = Sha256::digest(json.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}
