//! kustomize's built-in generators and transformers given as configuration objects
//! under `generators:` and `transformers:` (`apiVersion: builtin`, `kind:
//! LabelTransformer`, ...): inline YAML, files, or kustomization directories whose
//! output is the configurations. Exec and container (KRM function) plugins are
//! refused: rollwave runs no program a commit names.

use serde::Deserialize;
use serde_json::Value;

use super::fields::FieldSpec;
use super::kustomization::null_as_default;
use super::kustomization::{GeneratorEntry, ImageEntry, LegacyJsonPatch, PatchEntry, ReplicaEntry};
use super::resource::Resource;
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
    #[serde(default, deserialize_with = "scalar_as_string")]
    prefix: String,
    #[serde(default, deserialize_with = "scalar_as_string")]
    suffix: String,
    #[serde(default, deserialize_with = "scalars_as_strings")]
    labels: std::collections::BTreeMap<String, String>,
    #[serde(default, deserialize_with = "scalars_as_strings")]
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

/// The text of a scalar where a plugin configuration expects a string: kustomize
/// reads these configurations with its YAML library, which takes `1`, `1.50` and
/// `true` as the text `1`, `1.5` and `true`, and null as empty.
fn scalar_text(v: Value) -> Result<String, String> {
    match v {
        Value::Null => Ok(String::new()),
        Value::String(s) => Ok(s),
        Value::Bool(b) => Ok(b.to_string()),
        Value::Number(n) => Ok(n.to_string()),
        other => Err(format!("expected a string, found {other}")),
    }
}

fn scalar_as_string<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    scalar_text(Value::deserialize(d)?).map_err(serde::de::Error::custom)
}

fn scalars_as_strings<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<std::collections::BTreeMap<String, String>, D::Error> {
    let m: Option<std::collections::BTreeMap<String, Value>> = Option::deserialize(d)?;
    m.unwrap_or_default()
        .into_iter()
        .map(|(k, v)| scalar_text(v).map(|t| (k, t)))
        .collect::<Result<_, _>>()
        .map_err(serde::de::Error::custom)
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
                    message: message.0,
                }
            })?;
        }
        "ValueAddTransformer" => value_add(loader, dir, cfg, where_, acc)?,
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

/// The configuration of a ValueAddTransformer.
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct ValueAdd {
    #[serde(default, deserialize_with = "null_as_default")]
    value: String,
    #[serde(default, deserialize_with = "null_as_default")]
    targets: Vec<ValueAddTarget>,
    #[serde(default, deserialize_with = "null_as_default")]
    target_file_path: String,
}

/// Where a ValueAddTransformer writes.
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct ValueAddTarget {
    #[serde(default)]
    selector: Option<super::kustomization::Selector>,
    #[serde(default, deserialize_with = "null_as_default")]
    field_path: String,
    #[serde(default, deserialize_with = "null_as_default")]
    file_path_position: i64,
}

/// ValueAddTransformer: writes one value (by default the name of the kustomization's
/// directory) into a field of the selected objects, creating the field; with
/// `filePathPosition` n > 0 the value is inserted as the n-th part of the file path
/// the field holds. `metadata/namespace` is set as the namespace transformer sets it,
/// on namespaced objects only.
fn value_add(
    loader: &Loader<'_>,
    dir: &RepoPath,
    cfg: &Value,
    where_: &str,
    acc: &mut [Resource],
) -> Result<(), KustomizeError> {
    let mut c: ValueAdd = parse(cfg, where_)?;
    let mut value = c.value.trim().to_string();
    if value.is_empty() {
        value = dir.file_name().to_string();
        if value.is_empty() {
            return Err(refuse(
                where_,
                "ValueAddTransformer: no value, and the kustomization is at the repository root, whose name rollwave does not know; give it a value".into(),
            ));
        }
    }
    if !c.target_file_path.is_empty() {
        let path = loader.file_in(dir, &c.target_file_path)?;
        let text = loader.read_text(&path)?;
        #[derive(Deserialize, Default)]
        struct Targets {
            #[serde(default, deserialize_with = "null_as_default")]
            targets: Vec<ValueAddTarget>,
        }
        let more: Targets = crate::yaml::parse_typed(path.as_str(), &text)?;
        c.targets.extend(more.targets);
    }
    if c.targets.is_empty() {
        return Err(refuse(
            where_,
            "ValueAddTransformer: must specify at least one target".into(),
        ));
    }
    for t in &c.targets {
        if t.field_path.is_empty() {
            return Err(refuse(
                where_,
                "ValueAddTransformer: a target's fieldPath cannot be empty".into(),
            ));
        }
        if t.file_path_position < 0 {
            return Err(refuse(
                where_,
                format!(
                    "ValueAddTransformer: filePathPosition ({}) cannot be negative",
                    t.file_path_position
                ),
            ));
        }
    }
    for t in &c.targets {
        let selector = t
            .selector
            .as_ref()
            .map(super::selector::CompiledSelector::new)
            .transpose()
            .map_err(|e| refuse(where_, format!("ValueAddTransformer: {e}")))?;
        let fields = split_escaped_path(&t.field_path);
        for r in acc
            .iter_mut()
            .filter(|r| selector.as_ref().is_none_or(|s| s.matches(r)))
        {
            if t.field_path == "metadata/namespace" {
                super::transform::set_namespace_of(r, &value);
                continue;
            }
            let mut obj = Value::Object(std::mem::take(&mut r.obj));
            let res = add_value(&mut obj, &fields, &value, t.file_path_position);
            r.obj = match obj {
                Value::Object(m) => m,
                _ => serde_json::Map::new(),
            };
            res.map_err(|e| {
                refuse(
                    where_,
                    format!(
                        "ValueAddTransformer: {}: field '{}': {e}",
                        r.cur_id(),
                        t.field_path
                    ),
                )
            })?;
        }
    }
    Ok(())
}

/// Splits a slash-separated field path; `\/` is a slash inside a field name.
fn split_escaped_path(path: &str) -> Vec<String> {
    let mut fields: Vec<String> = Vec::new();
    for part in path.split('/') {
        match fields.last_mut() {
            Some(prev) if prev.ends_with('\\') => {
                prev.pop();
                prev.push('/');
                prev.push_str(part);
            }
            _ => fields.push(part.to_string()),
        }
    }
    fields
}

/// Writes `value` at `fields`, creating missing maps on the way (a null one on the way
/// leaves the object as it is, as in kustomize), into a scalar field.
fn add_value(
    node: &mut Value,
    fields: &[String],
    value: &str,
    position: i64,
) -> Result<(), String> {
    let Some((last, parents)) = fields.split_last() else {
        return Ok(());
    };
    let mut node = node;
    for f in parents {
        let Value::Object(m) = node else {
            return Err(format!("'{f}' is not inside a map"));
        };
        let child = m
            .entry(f.clone())
            .or_insert_with(|| Value::Object(serde_json::Map::new()));
        if child.is_null() {
            // kustomize's path lookup stops at a field written as null and adds nothing.
            return Ok(());
        }
        node = child;
    }
    let Value::Object(m) = node else {
        return Err(format!("'{last}' is not inside a map"));
    };
    let old = match m.get(last) {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        Some(Value::Bool(b)) => b.to_string(),
        Some(_) => return Err("the field holds a map or a list, not a value".into()),
    };
    let new = if position > 0 {
        insert_path_part(&old, (position - 1) as usize, value)
    } else {
        value.to_string()
    };
    m.insert(last.clone(), Value::String(new));
    Ok(())
}

/// Inserts `part` into the file path `path` at `pos` (0 first, past the end last),
/// keeping an absolute path absolute, and cleans the result as Go's `filepath.Join`
/// does.
fn insert_path_part(path: &str, pos: usize, part: &str) -> String {
    if part.is_empty() {
        return path.to_string();
    }
    let mut parts = path_split(path);
    let mut pos = pos.min(parts.len());
    if parts.first().is_some_and(String::is_empty) && pos < parts.len() {
        pos += 1;
    }
    parts.insert(pos, part.to_string());
    if parts.first().is_some_and(String::is_empty) {
        format!("/{}", clean_join(&parts[1..]))
    } else {
        clean_join(&parts)
    }
}

/// A file path as its parts; an absolute path starts with an empty part.
fn path_split(path: &str) -> Vec<String> {
    if path.is_empty() {
        return Vec::new();
    }
    let (dir, file) = match path.rfind('/') {
        Some(i) => (&path[..=i], &path[i + 1..]),
        None => ("", path),
    };
    if dir == "/" {
        return if file.is_empty() {
            vec![String::new()]
        } else {
            vec![String::new(), file.to_string()]
        };
    }
    let dir = dir.strip_suffix('/').unwrap_or(dir);
    if dir.is_empty() {
        return vec![file.to_string()];
    }
    let mut out = path_split(dir);
    out.push(file.to_string());
    out
}

/// Go's `filepath.Join`: joins the non-empty parts and cleans the result (`.`,
/// `..`, repeated slashes); empty when every part is.
fn clean_join(parts: &[String]) -> String {
    let joined: Vec<&str> = parts
        .iter()
        .filter(|p| !p.is_empty())
        .map(String::as_str)
        .collect();
    if joined.is_empty() {
        return String::new();
    }
    let text = joined.join("/");
    let rooted = text.starts_with('/');
    let mut out: Vec<&str> = Vec::new();
    for seg in text.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                if out.last().is_some_and(|l| *l != "..") {
                    out.pop();
                } else if !rooted {
                    out.push("..");
                }
            }
            s => out.push(s),
        }
    }
    let body = out.join("/");
    match (rooted, body.is_empty()) {
        (true, _) => format!("/{body}"),
        (false, true) => ".".into(),
        (false, false) => body,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_path_part_is_inserted_as_kustomize_inserts_it() {
        let cases = [
            ("", 0, "PEACH"),
            ("/", 0, "/PEACH"),
            ("pie", 0, "PEACH/pie"),
            ("/pie", 0, "/PEACH/pie"),
            ("raw", 1, "raw/PEACH"),
            ("/raw", 1, "/raw/PEACH"),
            ("a/nice/warm/pie", 3, "a/nice/warm/PEACH/pie"),
            ("/a/nice/warm/pie", 3, "/a/nice/warm/PEACH/pie"),
            ("a/b", 99, "a/b/PEACH"),
        ];
        for (path, pos, want) in cases {
            assert_eq!(
                insert_path_part(path, pos, "PEACH"),
                want,
                "{path} at {pos}"
            );
        }
    }

    #[test]
    fn an_escaped_slash_stays_in_the_field_name() {
        assert_eq!(
            split_escaped_path("metadata/annotations/a\\/b"),
            vec!["metadata", "annotations", "a/b"]
        );
    }
}
