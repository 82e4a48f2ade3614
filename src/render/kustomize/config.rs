//! Custom field specs: what a kustomization's `configurations` files and `crds` add to
//! kustomize's built-in field specs. The built-in specs stay in `fields` and
//! `nameref`; this module holds only additions, which flow from a base to every
//! kustomization that includes it, as kustomize's accumulated transformer config does.

use serde::Deserialize;
use serde_json::Value;

use super::fields::FieldSpec;
use super::kustomization::null_as_default;

/// Field specs added to the built-in ones, by transformer.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TransformerConfig {
    /// Where `namePrefix` writes besides `metadata/name`.
    #[serde(default, deserialize_with = "null_as_default")]
    pub name_prefix: Vec<FieldSpec>,
    /// Where `nameSuffix` writes besides `metadata/name`.
    #[serde(default, deserialize_with = "null_as_default")]
    pub name_suffix: Vec<FieldSpec>,
    /// Where `namespace` writes besides `metadata/namespace`.
    #[serde(default, deserialize_with = "null_as_default")]
    pub namespace: Vec<FieldSpec>,
    /// Where `commonLabels` write.
    #[serde(default, deserialize_with = "null_as_default")]
    pub common_labels: Vec<FieldSpec>,
    /// Where template labels (`labels` with `includeTemplates`) write.
    #[serde(default, deserialize_with = "null_as_default")]
    pub template_labels: Vec<FieldSpec>,
    /// Where every `labels` entry writes besides its own choice of fields.
    #[serde(default, deserialize_with = "null_as_default")]
    pub labels: Vec<FieldSpec>,
    /// Where `commonAnnotations` write.
    #[serde(default, deserialize_with = "null_as_default")]
    pub common_annotations: Vec<FieldSpec>,
    /// Where `images` look for image references.
    #[serde(default, deserialize_with = "null_as_default")]
    pub images: Vec<FieldSpec>,
    /// Where `replicas` write.
    #[serde(default, deserialize_with = "null_as_default")]
    pub replicas: Vec<FieldSpec>,
    /// Where `$(VAR)` is expanded.
    #[serde(default, deserialize_with = "null_as_default")]
    pub var_reference: Vec<FieldSpec>,
    /// Fields that name other objects.
    #[serde(default, deserialize_with = "null_as_default")]
    pub name_reference: Vec<NameBackRef>,
}

/// A kind that can be referred to by name, and the fields that do.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct NameBackRef {
    /// API group of the referred kind.
    #[serde(default, deserialize_with = "null_as_default")]
    pub group: String,
    /// API version of the referred kind.
    #[serde(default, deserialize_with = "null_as_default")]
    pub version: String,
    /// The referred kind.
    #[serde(default, deserialize_with = "null_as_default")]
    pub kind: String,
    /// The referring fields.
    #[serde(default, deserialize_with = "null_as_default")]
    pub field_specs: Vec<FieldSpec>,
}

fn union(into: &mut Vec<FieldSpec>, from: &[FieldSpec]) {
    for f in from {
        if !into.contains(f) {
            into.push(f.clone());
        }
    }
}

impl TransformerConfig {
    /// Adds `other`'s specs to these, skipping duplicates.
    pub fn merge(&mut self, other: &TransformerConfig) {
        union(&mut self.name_prefix, &other.name_prefix);
        union(&mut self.name_suffix, &other.name_suffix);
        union(&mut self.namespace, &other.namespace);
        union(&mut self.common_labels, &other.common_labels);
        union(&mut self.template_labels, &other.template_labels);
        union(&mut self.labels, &other.labels);
        union(&mut self.common_annotations, &other.common_annotations);
        union(&mut self.images, &other.images);
        union(&mut self.replicas, &other.replicas);
        union(&mut self.var_reference, &other.var_reference);
        for b in &other.name_reference {
            match self
                .name_reference
                .iter_mut()
                .find(|x| x.group == b.group && x.version == b.version && x.kind == b.kind)
            {
                Some(x) => union(&mut x.field_specs, &b.field_specs),
                None => self.name_reference.push(b.clone()),
            }
        }
    }
}

/// Deepest `$ref` chain followed in an OpenAPI definition file given under `crds`
/// (kustomize follows them without a limit and loops forever on a cycle).
const MAX_REF_DEPTH: usize = 32;

/// Reads the field specs an OpenAPI definition file (`crds:`) declares with kustomize's
/// `x-kubernetes-*` extensions: object references, annotations, label selectors and
/// identities of custom kinds.
pub fn from_openapi_definitions(defs: &Value) -> TransformerConfig {
    let mut tc = TransformerConfig::default();
    let Some(map) = defs.as_object() else {
        return tc;
    };
    for (type_name, def) in map {
        let props = def.pointer("/Schema/properties").and_then(Value::as_object);
        let looks_k8s = props.is_some_and(|p| {
            p.contains_key("kind") && p.contains_key("apiVersion") && p.contains_key("metadata")
        });
        if !looks_k8s {
            continue;
        }
        let kind = type_name
            .rsplit('.')
            .next()
            .unwrap_or(type_name)
            .to_string();
        load_type(&mut tc, &kind, map, type_name, &mut Vec::new(), 0);
    }
    tc
}

fn load_type(
    tc: &mut TransformerConfig,
    kind: &str,
    defs: &serde_json::Map<String, Value>,
    type_name: &str,
    path: &mut Vec<String>,
    depth: usize,
) {
    if depth > MAX_REF_DEPTH {
        return;
    }
    let Some(props) = defs
        .get(type_name)
        .and_then(|d| d.pointer("/Schema/properties"))
        .and_then(Value::as_object)
    else {
        return;
    };
    let spec = |path: &[String]| FieldSpec {
        kind: kind.to_string().into(),
        path: path.join("/").into(),
        ..FieldSpec::default()
    };
    for (prop, schema) in props {
        path.push(prop.clone());
        let ext = |k: &str| schema.get(k).and_then(Value::as_str);
        if ext("x-kubernetes-annotation").is_some() {
            union(&mut tc.common_annotations, &[spec(path)]);
        }
        if ext("x-kubernetes-label-selector").is_some() {
            union(&mut tc.common_labels, &[spec(path)]);
        }
        if ext("x-kubernetes-identity").is_some() {
            union(&mut tc.name_prefix, &[spec(path)]);
        }
        if let (Some(version), Some(ref_kind)) = (
            ext("x-kubernetes-object-ref-api-version"),
            ext("x-kubernetes-object-ref-kind"),
        ) {
            let key = ext("x-kubernetes-object-ref-name-key").unwrap_or("name");
            let mut p = path.clone();
            p.push(key.to_string());
            tc.merge(&TransformerConfig {
                name_reference: vec![NameBackRef {
                    kind: ref_kind.to_string(),
                    version: version.to_string(),
                    group: String::new(),
                    field_specs: vec![spec(&p)],
                }],
                ..TransformerConfig::default()
            });
        }
        if let Some(r) = schema.get("$ref").and_then(Value::as_str) {
            load_type(tc, kind, defs, r, path, depth + 1);
        }
        path.pop();
    }
}
