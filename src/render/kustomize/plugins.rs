//! kustomize's built-in generators and transformers given as configuration objects
//! under `generators:` and `transformers:` (`apiVersion: builtin`, `kind:
//! LabelTransformer`, ...): inline YAML, files, or kustomization directories whose
//! output is the configurations. Exec and container (KRM function) plugins are
//! refused: rollwave runs no program a commit names.

use serde::Deserialize;
use serde_json::Value;

use super::fields::FieldSpec;
use super::kustomization::{GeneratorEntry, ImageEntry, LegacyJsonPatch, PatchEntry, ReplicaEntry};
use super::resource::Resource;
use super::kustomization::null_as_default;
use super::{KustomizeError, Loader, Root};
use crate::tree::{EntryKind, RepoPath};

/// Which list an entry comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PluginField {
    /// `generators:`.
    Generators,
    /// `transformers:`.
    Transformers,
}

impl PluginField {
    fn name(self) -> &'static str {
        match self {
            PluginField::Generators => "generators",
            PluginField::Transformers => "transformers",
        }
    }
}

/// Reads the configuration objects of one `generators:`/`transformers:` entry.
pub fn load_configs(
    loader: &Loader<'_>,
    dir: &RepoPath,
    entry: &str,
    field: PluginField,
) -> Result<Vec<(Value, String, Option<RepoPath>)>, KustomizeError> {
    if entry.contains('\n') {
        let what = format!("{dir}: inline {} entry", field.name());
        let docs = crate::yaml::parse_documents(&what, entry)?;
        return Ok(docs.into_iter().map(|d| (d, what.clone(), None)).collect());
    }
    let path = dir.join(entry)?;
    match loader.kind(&path)? {
        Some(EntryKind::Dir) => {
            let acc = super::accumulate_root(loader, &path, Root::Resource, Default::default())?;
            Ok(acc
                .res
                .into_iter()
                .map(|r| (Value::Object(r.obj), path.to_string(), None))
                .collect())
        }
        Some(EntryKind::File) => {
            let path = loader.file_in(dir, entry)?;
            let text = loader.read_text(&path)?;
            let docs = crate::yaml::parse_documents(path.as_str(), &text)?;
            Ok(docs
                .into_iter()
                .map(|d| (d, path.to_string(), Some(path.clone())))
                .collect())
        }
        None => Err(KustomizeError::Kustomization {
            dir: dir.to_string(),
            message: format!("{}: '{entry}' does not exist", field.name()),
        }),
    }
}

fn refuse(where_: &str, message: String) -> KustomizeError {
    KustomizeError::Resource {
        file: where_.to_string(),
        message,
    }
}

/// The built-in kind a configuration object names, or why it cannot run.
fn builtin_kind<'v>(cfg: &'v Value, where_: &str) -> Result<&'v str, KustomizeError> {
    let api = cfg.get("apiVersion").and_then(Value::as_str).unwrap_or("");
    let kind = cfg.get("kind").and_then(Value::as_str).unwrap_or("");
    let annotations = cfg.pointer("/metadata/annotations");
    let is_function = annotations.is_some_and(|a| {
        a.get("config.kubernetes.io/function").is_some()
            || a.get("config.k8s.io/function").is_some()
    });
    if is_function {
        return Err(refuse(
            where_,
            format!(
                "{kind} is a KRM function (exec or container plugin); rollwave runs no programs from the repository, so it is refused; use kustomize's built-in fields or commit the function's output"
            ),
        ));
    }
    if api != "builtin" {
        return Err(refuse(
            where_,
            format!(
                "{api}/{kind} is not a kustomize built-in (apiVersion: builtin); exec and Go plugins are refused, rollwave runs no programs from the repository"
            ),
        ));
    }
    Ok(kind)
}

fn parse<T: for<'de> Deserialize<'de>>(cfg: &Value, where_: &str) -> Result<T, KustomizeError> {
    serde_json::from_value(cfg.clone()).map_err(|e| refuse(where_, e.to_string()))
}

fn meta(cfg: &Value, key: &str) -> Option<String> {
    cfg.pointer(&format!("/metadata/{key}"))
        .and_then(Value::as_str)
        .map(String::from)
}

/// Runs one built-in generator configuration.
pub fn run_generator(
    loader: &Loader<'_>,
    dir: &RepoPath,
    cfg: &Value,
    where_: &str,
) -> Result<Resource, KustomizeError> {
    let kind = builtin_kind(cfg, where_)?;
    let gen_kind = match kind {
        "ConfigMapGenerator" => super::GeneratedKind::ConfigMap,
        "SecretGenerator" => super::GeneratedKind::Secret,
        "IAMPolicyGenerator" => return iam_policy(cfg, where_),
        other => {
            return Err(refuse(
                where_,
                format!(
                    "unable to load builtin generator {other}: not a kustomize built-in generator"
                ),
            ));
        }
    };
    // kustomize reads the configuration leniently: fields it does not know are ignored.
    const KNOWN: &[&str] = &[
        "name",
        "namespace",
        "behavior",
        "literals",
        "files",
        "envs",
        "env",
        "type",
        "options",
    ];
    let mut m = cfg.as_object().cloned().unwrap_or_default();
    m.retain(|k, _| KNOWN.contains(&k.as_str()));
    let mut entry: GeneratorEntry = parse(&Value::Object(m), where_)?;
    if entry.name.as_deref().unwrap_or("").is_empty() {
        entry.name = meta(cfg, "name");
    }
    if entry.namespace.as_deref().unwrap_or("").is_empty() {
        entry.namespace = meta(cfg, "namespace");
    }
    super::generator::generate(loader, dir, gen_kind, &entry, None)
}

/// IAMPolicyGenerator: a ServiceAccount bound to a GKE service account.
fn iam_policy(cfg: &Value, where_: &str) -> Result<Resource, KustomizeError> {
    let text = |p: &str| {
        cfg.pointer(p)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    let cloud = text("/cloud");
    if cloud != "gke" {
        return Err(refuse(
            where_,
            format!("IAMPolicyGenerator: cloud provider {cloud} not supported yet"),
        ));
    }
    let mut meta = serde_json::Map::new();
    meta.insert(
        "annotations".into(),
        serde_json::json!({
            "iam.gke.io/gcp-service-account": format!(
                "{}@{}.iam.gserviceaccount.com",
                text("/serviceAccount/name"),
                text("/serviceAccount/projectId")
            )
        }),
    );
    meta.insert(
        "name".into(),
        Value::String(text("/kubernetesService/name")),
    );
    let ns = text("/kubernetesService/namespace");
    if !ns.is_empty() {
        meta.insert("namespace".into(), Value::String(ns));
    }
    let mut obj = serde_json::Map::new();
    obj.insert("apiVersion".into(), Value::String("v1".into()));
    obj.insert("kind".into(), Value::String("ServiceAccount".into()));
    obj.insert("metadata".into(), Value::Object(meta));
    Ok(Resource::new(obj, where_))
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct Common {
    #[serde(default, deserialize_with = "null_as_default")]
    field_specs: Vec<FieldSpec>,
    #[serde(default, deserialize_with = "null_as_default")]
    prefix: String,
    #[serde(default, deserialize_with = "null_as_default")]
    suffix: String,
    #[serde(default, deserialize_with = "null_as_default")]
    labels: std::collections::BTreeMap<String, String>,
    #[serde(default, deserialize_with = "null_as_default")]
    annotations: std::collections::BTreeMap<String, String>,
    #[serde(default, deserialize_with = "null_as_default")]
    image_tag: Option<ImageEntry>,
    #[serde(default, deserialize_with = "null_as_default")]
    replica: Option<ReplicaEntry>,
    #[serde(default, deserialize_with = "null_as_default")]
    paths: Vec<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    patches: Option<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    path: Option<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    patch: Option<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    target: Option<Value>,
    #[serde(default, deserialize_with = "null_as_default")]
    options: Option<std::collections::BTreeMap<String, bool>>,
    #[serde(default, deserialize_with = "null_as_default")]
    json_op: Option<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    replacements: Vec<super::kustomization::ReplacementEntry>,
}

/// Runs one built-in transformer configuration on `acc`.
pub fn run_transformer(
    loader: &Loader<'_>,
    dir: &RepoPath,
    cfg: &Value,
    where_: &str,
    acc: &mut Vec<Resource>,
) -> Result<(), KustomizeError> {
    let kind = builtin_kind(cfg, where_)?;
    let c: Common = parse(cfg, where_)?;
    let dir_s = dir.to_string();
    match kind {
        "PrefixSuffixTransformer" | "PrefixTransformer" | "SuffixTransformer" => {
            super::transform::add_affixes_by_specs(acc, &c.prefix, &c.suffix, &c.field_specs);
        }
        "LabelTransformer" => super::transform::add_map_entries(acc, &c.labels, &c.field_specs),
        "AnnotationsTransformer" => {
            super::transform::add_map_entries(acc, &c.annotations, &c.field_specs)
        }
        "NamespaceTransformer" => {
            let ns = meta(cfg, "namespace").unwrap_or_default();
            let extra: Vec<FieldSpec> = c
                .field_specs
                .into_iter()
                .filter(|f| f.path != "metadata/namespace")
                .collect();
            super::transform::set_namespace(acc, &ns, &extra)?;
        }
        "ImageTagTransformer" => {
            if let Some(img) = c.image_tag {
                super::transform::set_images(acc, &[img], &c.field_specs);
            }
        }
        "ReplicaCountTransformer" => {
            if let Some(rep) = c.replica {
                super::transform::set_replicas(acc, &[rep], &dir_s, &c.field_specs)?;
            }
        }
        "PatchTransformer" => {
            let target = c
                .target
                .map(serde_json::from_value)
                .transpose()
                .map_err(|e| refuse(where_, format!("target: {e}")))?;
            let entry = PatchEntry {
                path: c.path,
                patch: c.patch,
                target,
                options: c.options,
            };
            super::apply_patch_entry(loader, dir, &entry, acc)?;
        }
        "PatchJson6902Transformer" => {
            let target = c
                .target
                .map(serde_json::from_value)
                .transpose()
                .map_err(|e| refuse(where_, format!("target: {e}")))?
                .ok_or_else(|| refuse(where_, "PatchJson6902Transformer needs a target".into()))?;
            let entry = LegacyJsonPatch {
                target,
                path: c.path,
                patch: c.json_op,
            };
            super::apply_legacy_json6902(loader, dir, &entry, acc)?;
        }
        "PatchStrategicMergeTransformer" => {
            for p in &c.paths {
                super::apply_legacy_smp(loader, dir, p, acc)?;
            }
            if let Some(text) = &c.patches {
                super::apply_legacy_smp(loader, dir, text, acc)?;
            }
        }
        "ReplacementTransformer" => {
            let reps = super::load_replacements(loader, dir, &c.replacements)?;
            super::replacement::apply(acc, &reps).map_err(|message| {
                KustomizeError::Kustomization {
                    dir: where_.to_string(),
                    message,
                }
            })?;
        }
        "HashTransformer" => {
            for r in acc.iter_mut().filter(|r| r.needs_hash) {
                let h = super::name_hash(&r.obj);
                r.store_previous_id();
                let name = format!("{}-{h}", r.name());
                // kustomize still hashes the object again at the end of the build.
                r.set_name(&name);
            }
        }
        other => {
            return Err(refuse(
                where_,
                format!("unable to load builtin {other}: not a kustomize built-in transformer"),
            ));
        }
    }
    Ok(())
}
