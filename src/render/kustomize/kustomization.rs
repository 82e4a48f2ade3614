//! The `kustomization.yaml` file: its fields, which of them rollwave supports, and how
//! it is found in a directory.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::resource::Behavior;

/// File names kustomize accepts for a kustomization, in its order of preference.
pub const KUSTOMIZATION_FILE_NAMES: &[&str] =
    &["kustomization.yaml", "kustomization.yml", "Kustomization"];

/// kustomize fields that rollwave knows but does not implement; naming them gives a
/// clearer error than "unknown field".
pub const UNSUPPORTED_FIELDS: &[&str] = &[
    "vars",
    "replacements",
    "helmChartInflationGenerator",
    "crds",
    "configurations",
    "generators",
    "transformers",
    "validators",
    "openapi",
    "buildMetadata",
    "sortOptions",
    "replicaCount",
    "imageTags",
];

/// A parsed kustomization (or component).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Kustomization {
    /// `kustomize.config.k8s.io/v1beta1` or `v1alpha1` for components.
    #[serde(default)]
    pub api_version: Option<String>,
    /// `Kustomization` or `Component`.
    #[serde(default)]
    pub kind: Option<String>,
    /// Ignored, as by kustomize.
    #[serde(default)]
    pub metadata: Option<serde_json::Value>,
    /// True when the file has nothing but `apiVersion` and `kind`, which kustomize
    /// refuses ("kustomization.yaml is empty"); set by the loader, never read from YAML.
    #[serde(skip)]
    pub empty: bool,
    /// Files, directories and nested kustomization roots.
    #[serde(default)]
    pub resources: Vec<String>,
    /// Deprecated spelling of `resources` for directories.
    #[serde(default)]
    pub bases: Vec<String>,
    /// Component directories.
    #[serde(default)]
    pub components: Vec<String>,
    /// Patches (strategic merge or JSON 6902), inline or by path, optionally targeted.
    #[serde(default)]
    pub patches: Vec<PatchEntry>,
    /// Legacy strategic merge patches: paths or inline YAML.
    #[serde(default)]
    pub patches_strategic_merge: Vec<String>,
    /// Legacy JSON 6902 patches.
    #[serde(default)]
    pub patches_json6902: Vec<LegacyJsonPatch>,
    /// Namespace for every namespaced object.
    #[serde(default)]
    pub namespace: Option<String>,
    /// Prefix added to names.
    #[serde(default)]
    pub name_prefix: Option<String>,
    /// Suffix added to names.
    #[serde(default)]
    pub name_suffix: Option<String>,
    /// Labels added to metadata, selectors and templates.
    #[serde(default)]
    pub common_labels: BTreeMap<String, String>,
    /// Labels with control over selectors and templates.
    #[serde(default)]
    pub labels: Vec<LabelEntry>,
    /// Annotations added to metadata and templates.
    #[serde(default)]
    pub common_annotations: BTreeMap<String, String>,
    /// Image rewrites.
    #[serde(default)]
    pub images: Vec<ImageEntry>,
    /// Replica counts.
    #[serde(default)]
    pub replicas: Vec<ReplicaEntry>,
    /// ConfigMaps to generate.
    #[serde(default)]
    pub config_map_generator: Vec<GeneratorEntry>,
    /// Secrets to generate.
    #[serde(default)]
    pub secret_generator: Vec<GeneratorEntry>,
    /// Defaults for every generator of this kustomization.
    #[serde(default)]
    pub generator_options: Option<GeneratorOptions>,
    /// Helm charts to inflate ([`super::helm_charts`]).
    #[serde(default)]
    pub helm_charts: Vec<super::helm_charts::HelmChartEntry>,
    /// Where `helmCharts` are vendored.
    #[serde(default)]
    pub helm_globals: Option<super::helm_charts::HelmGlobals>,
}

/// One entry of `patches`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PatchEntry {
    /// A file holding the patch.
    #[serde(default)]
    pub path: Option<String>,
    /// The patch inline.
    #[serde(default)]
    pub patch: Option<String>,
    /// Which objects it applies to.
    #[serde(default)]
    pub target: Option<Selector>,
    /// `allowNameChange` / `allowKindChange`.
    #[serde(default)]
    pub options: Option<BTreeMap<String, bool>>,
}

/// A patch target selector; name, namespace and GVK fields are anchored regular
/// expressions as in kustomize.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Selector {
    /// API group.
    #[serde(default)]
    pub group: Option<String>,
    /// API version.
    #[serde(default)]
    pub version: Option<String>,
    /// Kind.
    #[serde(default)]
    pub kind: Option<String>,
    /// Name (regex).
    #[serde(default)]
    pub name: Option<String>,
    /// Namespace (regex).
    #[serde(default)]
    pub namespace: Option<String>,
    /// Kubernetes label selector.
    #[serde(default)]
    pub label_selector: Option<String>,
    /// Kubernetes label selector syntax, applied to annotations.
    #[serde(default)]
    pub annotation_selector: Option<String>,
}

/// One entry of the legacy `patchesJson6902`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct LegacyJsonPatch {
    /// The object to patch.
    pub target: Selector,
    /// A file holding the operations.
    #[serde(default)]
    pub path: Option<String>,
    /// The operations inline.
    #[serde(default)]
    pub patch: Option<String>,
}

/// One entry of `labels`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct LabelEntry {
    /// The labels.
    #[serde(default)]
    pub pairs: BTreeMap<String, String>,
    /// Also add them to selectors (and templates).
    #[serde(default)]
    pub include_selectors: bool,
    /// Also add them to pod templates.
    #[serde(default)]
    pub include_templates: bool,
}

/// One entry of `images`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ImageEntry {
    /// The image name to match (without tag or digest).
    pub name: String,
    /// Replacement name.
    #[serde(default)]
    pub new_name: Option<String>,
    /// Replacement tag.
    #[serde(default)]
    pub new_tag: Option<String>,
    /// Replacement digest.
    #[serde(default)]
    pub digest: Option<String>,
    /// Appended to the current tag.
    #[serde(default)]
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
    #[serde(default)]
    pub name: Option<String>,
    /// Namespace of the generated object.
    #[serde(default)]
    pub namespace: Option<String>,
    /// create, merge or replace.
    #[serde(default)]
    pub behavior: Option<Behavior>,
    /// `KEY=value` pairs.
    #[serde(default)]
    pub literals: Vec<String>,
    /// Files, as `path` or `key=path`.
    #[serde(default)]
    pub files: Vec<String>,
    /// Env files of `KEY=value` lines.
    #[serde(default)]
    pub envs: Vec<String>,
    /// Deprecated single env file.
    #[serde(default)]
    pub env: Option<String>,
    /// Secret type (secretGenerator only).
    #[serde(default, rename = "type")]
    pub secret_type: Option<String>,
    /// Per-generator options, merged over `generatorOptions`.
    #[serde(default)]
    pub options: Option<GeneratorOptions>,
}

/// Options for generated objects.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct GeneratorOptions {
    /// Labels for generated objects.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Annotations for generated objects.
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    /// Leave the content hash off the name.
    #[serde(default)]
    pub disable_name_suffix_hash: Option<bool>,
    /// Mark the object immutable.
    #[serde(default)]
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
