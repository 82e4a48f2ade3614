//! The `kustomization.yaml` file: its fields, which of them rollwave supports, and how
//! it is found in a directory.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::resource::Behavior;

/// Reads a field written with no value (`components:`, or a list whose every entry is
/// commented out) as its empty value. kustomize decodes these files with Go's JSON
/// rules, where `null` leaves a field at its zero value: an empty list, an empty map,
/// an empty string, false.
pub(crate) fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// File names kustomize accepts for a kustomization, in its order of preference.
pub const KUSTOMIZATION_FILE_NAMES: &[&str] =
    &["kustomization.yaml", "kustomization.yml", "Kustomization"];

/// kustomize fields that rollwave knows but does not implement; naming them gives a
/// clearer error than "unknown field".
pub const UNSUPPORTED_FIELDS: &[&str] =
    &["helmChartInflationGenerator", "validators", "replicaCount"];

/// Every field name of the kustomization file's structures, as kustomize spells them.
/// kustomize decodes the file with Go's JSON decoder, which matches field names
/// case-insensitively (`nameprefix` is `namePrefix`); [`normalize_field_names`] does
/// the same.
const FIELD_NAMES: &[&str] = &[
    "apiVersion",
    "kind",
    "metadata",
    "resources",
    "bases",
    "components",
    "patches",
    "patchesStrategicMerge",
    "patchesJson6902",
    "namespace",
    "namePrefix",
    "nameSuffix",
    "commonLabels",
    "labels",
    "commonAnnotations",
    "images",
    "imageTags",
    "replicas",
    "configMapGenerator",
    "secretGenerator",
    "generatorOptions",
    "replacements",
    "vars",
    "configurations",
    "crds",
    "openapi",
    "sortOptions",
    "buildMetadata",
    "generators",
    "transformers",
    "validators",
    "helmCharts",
    "helmGlobals",
    "path",
    "patch",
    "target",
    "options",
    "group",
    "version",
    "name",
    "labelSelector",
    "annotationSelector",
    "pairs",
    "includeSelectors",
    "includeTemplates",
    "fields",
    "newName",
    "newTag",
    "digest",
    "tagSuffix",
    "count",
    "behavior",
    "literals",
    "files",
    "envs",
    "env",
    "type",
    "disableNameSuffixHash",
    "immutable",
    "annotations",
    "source",
    "sourceValue",
    "targets",
    "objref",
    "fieldref",
    "fieldPath",
    "fieldPaths",
    "select",
    "reject",
    "delimiter",
    "index",
    "create",
    "encoding",
    "order",
    "legacySortOptions",
    "orderFirst",
    "orderLast",
    "allowNameChange",
    "allowKindChange",
    "repo",
    "releaseName",
    "nameTemplate",
    "additionalValuesFiles",
    "valuesFile",
    "valuesInline",
    "valuesMerge",
    "includeCRDs",
    "skipHooks",
    "skipTests",
    "apiVersions",
    "kubeVersion",
    "chartHome",
    "configHome",
];

/// Keys whose values are maps of user data, whose keys must not be renamed.
const USER_MAPS: &[&str] = &[
    "commonLabels",
    "commonAnnotations",
    "pairs",
    "labels",
    "annotations",
    "metadata",
    "openapi",
    "valuesInline",
];

/// Renames keys that match a kustomization field name case-insensitively to that
/// name, everywhere except in maps of user data. Returns whether anything changed.
pub fn normalize_field_names(v: &mut serde_json::Value) -> bool {
    let mut changed = false;
    match v {
        serde_json::Value::Object(m) => {
            let keys: Vec<String> = m.keys().cloned().collect();
            for k in keys {
                if !FIELD_NAMES.contains(&k.as_str())
                    && let Some(canon) = FIELD_NAMES.iter().find(|f| f.eq_ignore_ascii_case(&k))
                {
                    let val = m.remove(&k).expect("listed key");
                    m.insert(canon.to_string(), val);
                    changed = true;
                }
            }
            for (k, child) in m.iter_mut() {
                if USER_MAPS.contains(&k.as_str()) && child.is_object() {
                    continue;
                }
                changed |= normalize_field_names(child);
            }
        }
        serde_json::Value::Array(items) => {
            for item in items {
                changed |= normalize_field_names(item);
            }
        }
        _ => {}
    }
    changed
}

/// Maps of strings whose null values kustomize reads as empty strings.
const STRING_MAPS: &[&str] = &[
    "commonLabels",
    "commonAnnotations",
    "pairs",
    "labels",
    "annotations",
];

/// Removes the [`UNSUPPORTED_FIELDS`] written with no value (`validators: []`,
/// `validators:`): kustomize has nothing to run for them, so they are not refused.
pub fn drop_empty_unsupported_fields(v: &mut serde_json::Value) {
    if let serde_json::Value::Object(m) = v {
        m.retain(|k, v| {
            let empty = match v {
                serde_json::Value::Null => true,
                serde_json::Value::Array(items) => items.is_empty(),
                serde_json::Value::Object(map) => map.is_empty(),
                _ => false,
            };
            !(empty && UNSUPPORTED_FIELDS.contains(&k.as_str()))
        });
    }
}

/// Replaces null values of label and annotation maps with empty strings, as Go's JSON
/// decoding into a map of strings leaves them (`commonLabels: {team: }`).
pub fn nulls_in_string_maps_to_empty(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, child) in m.iter_mut() {
                if STRING_MAPS.contains(&k.as_str())
                    && let serde_json::Value::Object(entries) = child
                {
                    for value in entries.values_mut().filter(|x| x.is_null()) {
                        *value = serde_json::Value::String(String::new());
                    }
                    continue;
                }
                if k != "metadata" && k != "valuesInline" && k != "openapi" {
                    nulls_in_string_maps_to_empty(child);
                }
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(nulls_in_string_maps_to_empty),
        _ => {}
    }
}

/// A parsed kustomization (or component).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Kustomization {
    /// `kustomize.config.k8s.io/v1beta1` or `v1alpha1` for components.
    #[serde(default, deserialize_with = "null_as_default")]
    pub api_version: Option<String>,
    /// `Kustomization` or `Component`.
    #[serde(default, deserialize_with = "null_as_default")]
    pub kind: Option<String>,
    /// Ignored, as by kustomize.
    #[serde(default, deserialize_with = "null_as_default")]
    pub metadata: Option<serde_json::Value>,
    /// True when the file has nothing but `apiVersion` and `kind`, which kustomize
    /// refuses ("kustomization.yaml is empty"); set by the loader, never read from YAML.
    #[serde(skip)]
    pub empty: bool,
    /// Files, directories and nested kustomization roots.
    #[serde(default, deserialize_with = "null_as_default")]
    pub resources: Vec<String>,
    /// Deprecated spelling of `resources` for directories.
    #[serde(default, deserialize_with = "null_as_default")]
    pub bases: Vec<String>,
    /// Component directories.
    #[serde(default, deserialize_with = "null_as_default")]
    pub components: Vec<String>,
    /// Patches (strategic merge or JSON 6902), inline or by path, optionally targeted.
    #[serde(default, deserialize_with = "null_as_default")]
    pub patches: Vec<PatchEntry>,
    /// Legacy strategic merge patches: paths or inline YAML.
    #[serde(default, deserialize_with = "null_as_default")]
    pub patches_strategic_merge: Vec<String>,
    /// Legacy JSON 6902 patches.
    #[serde(default, deserialize_with = "null_as_default")]
    pub patches_json6902: Vec<LegacyJsonPatch>,
    /// Namespace for every namespaced object.
    #[serde(default, deserialize_with = "null_as_default")]
    pub namespace: Option<String>,
    /// Prefix added to names.
    #[serde(default, deserialize_with = "null_as_default")]
    pub name_prefix: Option<String>,
    /// Suffix added to names.
    #[serde(default, deserialize_with = "null_as_default")]
    pub name_suffix: Option<String>,
    /// Labels added to metadata, selectors and templates.
    #[serde(default, deserialize_with = "null_as_default")]
    pub common_labels: BTreeMap<String, String>,
    /// Labels with control over selectors and templates.
    #[serde(default, deserialize_with = "null_as_default")]
    pub labels: Vec<LabelEntry>,
    /// Annotations added to metadata and templates.
    #[serde(default, deserialize_with = "null_as_default")]
    pub common_annotations: BTreeMap<String, String>,
    /// Image rewrites.
    #[serde(default, deserialize_with = "null_as_default")]
    pub images: Vec<ImageEntry>,
    /// Deprecated spelling of `images`, applied after them as kustomize folds it in.
    #[serde(default, deserialize_with = "null_as_default")]
    pub image_tags: Vec<ImageEntry>,
    /// Replica counts.
    #[serde(default, deserialize_with = "null_as_default")]
    pub replicas: Vec<ReplicaEntry>,
    /// ConfigMaps to generate.
    #[serde(default, deserialize_with = "null_as_default")]
    pub config_map_generator: Vec<GeneratorEntry>,
    /// Secrets to generate.
    #[serde(default, deserialize_with = "null_as_default")]
    pub secret_generator: Vec<GeneratorEntry>,
    /// Defaults for every generator of this kustomization.
    #[serde(default, deserialize_with = "null_as_default")]
    pub generator_options: Option<GeneratorOptions>,
    /// Helm charts to inflate (see the `helm_charts` module).
    #[serde(default, deserialize_with = "null_as_default")]
    pub helm_charts: Vec<super::helm_charts::HelmChartEntry>,
    /// Where `helmCharts` are vendored.
    #[serde(default, deserialize_with = "null_as_default")]
    pub helm_globals: Option<super::helm_charts::HelmGlobals>,
    /// Values copied from one object's field into others' (inline or by path).
    #[serde(default, deserialize_with = "null_as_default")]
    pub replacements: Vec<ReplacementEntry>,
    /// Deprecated `$(VAR)` substitutions.
    #[serde(default, deserialize_with = "null_as_default")]
    pub vars: Vec<Var>,
    /// Files of custom field specs merged with the built-in ones.
    #[serde(default, deserialize_with = "null_as_default")]
    pub configurations: Vec<String>,
    /// CRD files (or OpenAPI definitions) whose name references are followed.
    #[serde(default, deserialize_with = "null_as_default")]
    pub crds: Vec<String>,
    /// A schema file for strategic merge on custom kinds.
    #[serde(default, deserialize_with = "null_as_default")]
    pub openapi: Option<BTreeMap<String, String>>,
    /// Output order.
    #[serde(default, deserialize_with = "null_as_default")]
    pub sort_options: Option<SortOptions>,
    /// `originAnnotations`, `transformerAnnotations`, `managedByLabel`.
    #[serde(default, deserialize_with = "null_as_default")]
    pub build_metadata: Vec<String>,
    /// Generator configuration files (or directories) of kustomize's built-ins.
    #[serde(default, deserialize_with = "null_as_default")]
    pub generators: Vec<String>,
    /// Transformer configuration files (or directories) of kustomize's built-ins.
    #[serde(default, deserialize_with = "null_as_default")]
    pub transformers: Vec<String>,
}

/// One entry of `replacements`: a file holding replacements, or one inline.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ReplacementEntry {
    /// A file holding one replacement or a list of them.
    #[serde(default, deserialize_with = "null_as_default")]
    pub path: Option<String>,
    /// Where the value comes from.
    #[serde(default, deserialize_with = "null_as_default")]
    pub source: Option<serde_json::Value>,
    /// Where it goes.
    #[serde(default, deserialize_with = "null_as_default")]
    pub targets: Option<serde_json::Value>,
}

/// One entry of `vars`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Var {
    /// The name used as `$(NAME)`.
    pub name: String,
    /// The object the value is read from.
    #[serde(default, deserialize_with = "null_as_default")]
    pub objref: VarObjRef,
    /// The field of that object (default `metadata.name`).
    #[serde(default, deserialize_with = "null_as_default")]
    pub fieldref: Option<VarFieldRef>,
}

/// The object a var reads.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct VarObjRef {
    /// Kind.
    #[serde(default, deserialize_with = "null_as_default")]
    pub kind: String,
    /// Name.
    #[serde(default, deserialize_with = "null_as_default")]
    pub name: String,
    /// Namespace (empty: any).
    #[serde(default, deserialize_with = "null_as_default")]
    pub namespace: String,
    /// `group/version`.
    #[serde(default, deserialize_with = "null_as_default")]
    pub api_version: String,
    /// API group.
    #[serde(default, deserialize_with = "null_as_default")]
    pub group: String,
    /// API version.
    #[serde(default, deserialize_with = "null_as_default")]
    pub version: String,
}

/// The field a var reads.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct VarFieldRef {
    /// Dotted path, `[n]` indexes allowed.
    #[serde(default, deserialize_with = "null_as_default")]
    pub field_path: String,
}

/// `sortOptions`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SortOptions {
    /// `legacy` or `fifo`.
    #[serde(default, deserialize_with = "null_as_default")]
    pub order: Option<String>,
    /// Kinds first and last in `legacy` order.
    #[serde(default, deserialize_with = "null_as_default")]
    pub legacy_sort_options: Option<LegacySortOptions>,
}

/// `sortOptions.legacySortOptions`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct LegacySortOptions {
    /// Kinds printed first, in this order.
    #[serde(default, deserialize_with = "null_as_default")]
    pub order_first: Vec<String>,
    /// Kinds printed last, in this order.
    #[serde(default, deserialize_with = "null_as_default")]
    pub order_last: Vec<String>,
}

/// One entry of `patches`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PatchEntry {
    /// A file holding the patch.
    #[serde(default, deserialize_with = "null_as_default")]
    pub path: Option<String>,
    /// The patch inline.
    #[serde(default, deserialize_with = "null_as_default")]
    pub patch: Option<String>,
    /// Which objects it applies to.
    #[serde(default, deserialize_with = "null_as_default")]
    pub target: Option<Selector>,
    /// `allowNameChange` / `allowKindChange`.
    #[serde(default, deserialize_with = "null_as_default")]
    pub options: Option<BTreeMap<String, bool>>,
}

/// A patch target selector; name, namespace and GVK fields are anchored regular
/// expressions as in kustomize.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Selector {
    /// API group.
    #[serde(default, deserialize_with = "null_as_default")]
    pub group: Option<String>,
    /// API version.
    #[serde(default, deserialize_with = "null_as_default")]
    pub version: Option<String>,
    /// Kind.
    #[serde(default, deserialize_with = "null_as_default")]
    pub kind: Option<String>,
    /// Name (regex).
    #[serde(default, deserialize_with = "null_as_default")]
    pub name: Option<String>,
    /// Namespace (regex).
    #[serde(default, deserialize_with = "null_as_default")]
    pub namespace: Option<String>,
    /// Kubernetes label selector.
    #[serde(default, deserialize_with = "null_as_default")]
    pub label_selector: Option<String>,
    /// Kubernetes label selector syntax, applied to annotations.
    #[serde(default, deserialize_with = "null_as_default")]
    pub annotation_selector: Option<String>,
}

/// One entry of the legacy `patchesJson6902`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct LegacyJsonPatch {
    /// The object to patch.
    pub target: Selector,
    /// A file holding the operations.
    #[serde(default, deserialize_with = "null_as_default")]
    pub path: Option<String>,
    /// The operations inline.
    #[serde(default, deserialize_with = "null_as_default")]
    pub patch: Option<String>,
}

/// One entry of `labels`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct LabelEntry {
    /// The labels.
    #[serde(default, deserialize_with = "null_as_default")]
    pub pairs: BTreeMap<String, String>,
    /// Also add them to selectors (and templates).
    #[serde(default, deserialize_with = "null_as_default")]
    pub include_selectors: bool,
    /// Also add them to pod templates.
    #[serde(default, deserialize_with = "null_as_default")]
    pub include_templates: bool,
    /// Further places to write them.
    #[serde(default, deserialize_with = "null_as_default")]
    pub fields: Vec<super::fields::FieldSpec>,
}

/// One entry of `images`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ImageEntry {
    /// The image name to match (without tag or digest).
    pub name: String,
    /// Replacement name.
    #[serde(default, deserialize_with = "null_as_default")]
    pub new_name: Option<String>,
    /// Replacement tag.
    #[serde(default, deserialize_with = "null_as_default")]
    pub new_tag: Option<String>,
    /// Replacement digest.
    #[serde(default, deserialize_with = "null_as_default")]
    pub digest: Option<String>,
    /// Appended to the current tag.
    #[serde(default, deserialize_with = "null_as_default")]
    pub tag_suffix: Option<String>,
}

/// One entry of `replicas`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ReplicaEntry {
    /// Name of the workload.
    pub name: String,
    /// Replica count.
    pub count: i64,
}

/// One entry of `configMapGenerator` or `secretGenerator`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct GeneratorEntry {
    /// Name of the generated object (before prefix, suffix and hash).
    #[serde(default, deserialize_with = "null_as_default")]
    pub name: Option<String>,
    /// Namespace of the generated object.
    #[serde(default, deserialize_with = "null_as_default")]
    pub namespace: Option<String>,
    /// create, merge or replace.
    #[serde(default, deserialize_with = "null_as_default")]
    pub behavior: Option<Behavior>,
    /// `KEY=value` pairs.
    #[serde(default, deserialize_with = "null_as_default")]
    pub literals: Vec<String>,
    /// Files, as `path` or `key=path`.
    #[serde(default, deserialize_with = "null_as_default")]
    pub files: Vec<String>,
    /// Env files of `KEY=value` lines.
    #[serde(default, deserialize_with = "null_as_default")]
    pub envs: Vec<String>,
    /// Deprecated single env file.
    #[serde(default, deserialize_with = "null_as_default")]
    pub env: Option<String>,
    /// Secret type (secretGenerator only).
    #[serde(default, deserialize_with = "null_as_default", rename = "type")]
    pub secret_type: Option<String>,
    /// Per-generator options, merged over `generatorOptions`.
    #[serde(default, deserialize_with = "null_as_default")]
    pub options: Option<GeneratorOptions>,
}

/// Options for generated objects.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct GeneratorOptions {
    /// Labels for generated objects.
    #[serde(default, deserialize_with = "null_as_default")]
    pub labels: BTreeMap<String, String>,
    /// Annotations for generated objects.
    #[serde(default, deserialize_with = "null_as_default")]
    pub annotations: BTreeMap<String, String>,
    /// Leave the content hash off the name.
    #[serde(default, deserialize_with = "null_as_default")]
    pub disable_name_suffix_hash: Option<bool>,
    /// Mark the object immutable.
    #[serde(default, deserialize_with = "null_as_default")]
    pub immutable: Option<bool>,
}

impl GeneratorOptions {
    /// Combines kustomization-wide options with one generator's (the latter win).
    pub fn merged(global: Option<&GeneratorOptions>, local: Option<&GeneratorOptions>) -> Self {
        let mut out = global.cloned().unwrap_or_default();
        if let Some(l) = local {
            out.labels.extend(l.labels.clone());
            out.annotations.extend(l.annotations.clone());
            if l.disable_name_suffix_hash.is_some() {
                out.disable_name_suffix_hash = l.disable_name_suffix_hash;
            }
            if l.immutable.is_some() {
                out.immutable = l.immutable;
            }
        }
        out
    }
}
