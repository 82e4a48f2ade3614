//! Field specs: where in which kinds a transformer writes (labels into selectors,
//! annotations into pod templates, images into containers, ...), and the walker that
//! visits those places.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::{Map, Value};

use super::kustomization::null_as_default;
use super::resource::Gvk;

/// One place a transformer writes: a slash-separated path in objects of a GVK (empty
/// group/version/kind match any). Built-in specs borrow static text; specs read from a
/// kustomization's `configurations`, `crds` or `labels[].fields` own theirs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FieldSpec {
    /// API group filter.
    #[serde(default, deserialize_with = "null_as_default")]
    pub group: Cow<'static, str>,
    /// API version filter.
    #[serde(default, deserialize_with = "null_as_default")]
    pub version: Cow<'static, str>,
    /// Kind filter.
    #[serde(default, deserialize_with = "null_as_default")]
    pub kind: Cow<'static, str>,
    /// Slash-separated path; `[]` after a segment marks a list, `\/` is a slash
    /// inside a field name.
    #[serde(default, deserialize_with = "null_as_default")]
    pub path: Cow<'static, str>,
    /// Create the field when it is missing.
    #[serde(default, deserialize_with = "null_as_default")]
    pub create: bool,
}

const fn fs(
    group: &'static str,
    version: &'static str,
    kind: &'static str,
    path: &'static str,
    create: bool,
) -> FieldSpec {
    FieldSpec {
        group: Cow::Borrowed(group),
        version: Cow::Borrowed(version),
        kind: Cow::Borrowed(kind),
        path: Cow::Borrowed(path),
        create,
    }
}

impl FieldSpec {
    /// Whether the spec applies to an object of `gvk`.
    pub fn applies_to(&self, gvk: &Gvk) -> bool {
        gvk.is_selected_by(&self.group, &self.version, &self.kind)
    }
}

/// The built-in specs of a transformer combined with custom ones, as kustomize merges
/// them: custom specs first, and a built-in spec is dropped when a custom spec has its
/// path and a kind (group, version) it selects, so `namePrefix: [{path: metadata/name,
/// kind: Foo}]` limits the prefix to Foo objects.
pub fn combine(builtin: &[FieldSpec], custom: &[FieldSpec]) -> Vec<FieldSpec> {
    let mut out: Vec<FieldSpec> = custom.to_vec();
    for b in builtin {
        let shadowed = custom.iter().any(|c| {
            c.path == b.path
                && (b.group.is_empty() || b.group == c.group)
                && (b.version.is_empty() || b.version == c.version)
                && (b.kind.is_empty() || b.kind == c.kind)
        });
        if !shadowed {
            out.push(b.clone());
        }
    }
    out
}

/// Splits a field-spec path at `/`, keeping `\/` as a slash inside a segment (as in
/// `metadata/annotations/nginx.ingress.kubernetes.io\/auth-secret`).
pub fn split_path(path: &str) -> Vec<String> {
    let path = path.strip_prefix('/').unwrap_or(path);
    let mut out: Vec<String> = Vec::new();
    for part in path.split('/') {
        match out.last_mut() {
            Some(last) if last.ends_with('\\') => {
                last.pop();
                last.push('/');
                last.push_str(part);
            }
            _ => out.push(part.to_string()),
        }
    }
    out.retain(|s| !s.is_empty());
    out
}

/// Labels on metadata and pod templates (what `labels` with `includeTemplates` touches).
pub const TEMPLATE_LABELS: &[FieldSpec] = &[
    fs("", "", "", "metadata/labels", true),
    fs(
        "",
        "v1",
        "ReplicationController",
        "spec/template/metadata/labels",
        true,
    ),
    fs("", "", "Deployment", "spec/template/metadata/labels", true),
    fs("", "", "ReplicaSet", "spec/template/metadata/labels", true),
    fs("", "", "DaemonSet", "spec/template/metadata/labels", true),
    fs(
        "apps",
        "",
        "StatefulSet",
        "spec/template/metadata/labels",
        true,
    ),
    fs("batch", "", "Job", "spec/template/metadata/labels", true),
    fs(
        "batch",
        "",
        "CronJob",
        "spec/jobTemplate/metadata/labels",
        true,
    ),
    fs(
        "batch",
        "",
        "CronJob",
        "spec/jobTemplate/spec/template/metadata/labels",
        true,
    ),
];

const AFFINITY_PATHS: &[&str] = &[
    "spec/template/spec/affinity/podAffinity/preferredDuringSchedulingIgnoredDuringExecution/podAffinityTerm/labelSelector/matchLabels",
    "spec/template/spec/affinity/podAffinity/requiredDuringSchedulingIgnoredDuringExecution/labelSelector/matchLabels",
    "spec/template/spec/affinity/podAntiAffinity/preferredDuringSchedulingIgnoredDuringExecution/podAffinityTerm/labelSelector/matchLabels",
    "spec/template/spec/affinity/podAntiAffinity/requiredDuringSchedulingIgnoredDuringExecution/labelSelector/matchLabels",
    "spec/template/spec/topologySpreadConstraints/labelSelector/matchLabels",
];

/// Everything `commonLabels` (and `labels` with `includeSelectors`) touches: metadata,
/// templates, selectors and volume claim templates.
pub fn common_label_specs() -> Vec<FieldSpec> {
    let mut out = vec![
        fs("", "v1", "Service", "spec/selector", true),
        fs("", "v1", "ReplicationController", "spec/selector", true),
        fs("", "", "Deployment", "spec/selector/matchLabels", true),
    ];
    for p in AFFINITY_PATHS {
        out.push(fs("apps", "", "Deployment", p, false));
    }
    out.push(fs("", "", "ReplicaSet", "spec/selector/matchLabels", true));
    out.push(fs("", "", "DaemonSet", "spec/selector/matchLabels", true));
    out.push(fs(
        "apps",
        "",
        "StatefulSet",
        "spec/selector/matchLabels",
        true,
    ));
    for p in AFFINITY_PATHS {
        out.push(fs("apps", "", "StatefulSet", p, false));
    }
    out.extend([
        fs("batch", "", "Job", "spec/selector/matchLabels", false),
        fs(
            "batch",
            "",
            "CronJob",
            "spec/jobTemplate/spec/selector/matchLabels",
            false,
        ),
        fs(
            "policy",
            "",
            "PodDisruptionBudget",
            "spec/selector/matchLabels",
            false,
        ),
        fs(
            "networking.k8s.io",
            "",
            "NetworkPolicy",
            "spec/podSelector/matchLabels",
            false,
        ),
        fs(
            "networking.k8s.io",
            "",
            "NetworkPolicy",
            "spec/ingress/from/podSelector/matchLabels",
            false,
        ),
        fs(
            "networking.k8s.io",
            "",
            "NetworkPolicy",
            "spec/egress/to/podSelector/matchLabels",
            false,
        ),
    ]);
    out.extend_from_slice(TEMPLATE_LABELS);
    out.push(VOLUME_CLAIM_TEMPLATE_LABELS);
    out
}

/// Labels of a StatefulSet's volume claim templates.
pub const VOLUME_CLAIM_TEMPLATE_LABELS: FieldSpec = fs(
    "apps",
    "",
    "StatefulSet",
    "spec/volumeClaimTemplates[]/metadata/labels",
    true,
);

/// Where `commonAnnotations` goes.
pub const COMMON_ANNOTATIONS: &[FieldSpec] = &[
    fs("", "", "", "metadata/annotations", true),
    fs(
        "",
        "v1",
        "ReplicationController",
        "spec/template/metadata/annotations",
        true,
    ),
    fs(
        "",
        "",
        "Deployment",
        "spec/template/metadata/annotations",
        true,
    ),
    fs(
        "",
        "",
        "ReplicaSet",
        "spec/template/metadata/annotations",
        true,
    ),
    fs(
        "",
        "",
        "DaemonSet",
        "spec/template/metadata/annotations",
        true,
    ),
    fs(
        "",
        "",
        "StatefulSet",
        "spec/template/metadata/annotations",
        true,
    ),
    fs(
        "batch",
        "",
        "Job",
        "spec/template/metadata/annotations",
        true,
    ),
    fs(
        "batch",
        "",
        "CronJob",
        "spec/jobTemplate/metadata/annotations",
        true,
    ),
    fs(
        "batch",
        "",
        "CronJob",
        "spec/jobTemplate/spec/template/metadata/annotations",
        true,
    ),
];

/// Where `replicas` writes.
pub const REPLICAS: &[FieldSpec] = &[
    fs("", "", "Deployment", "spec/replicas", true),
    fs("", "", "ReplicationController", "spec/replicas", true),
    fs("", "", "ReplicaSet", "spec/replicas", true),
    fs("", "", "StatefulSet", "spec/replicas", true),
];

/// The field specs of the kustomization's `images:` (kustomize rewrites them after its
/// walk over every container). The container lists are `create: true`: a null list
/// the path passes through is written back as an empty list. A built-in
/// `ImageTagTransformer` configuration uses only its own `fieldSpecs`.
pub const IMAGE_SPECS: &[FieldSpec] = &[
    fs("", "", "", "spec/containers[]/image", true),
    fs("", "", "", "spec/initContainers[]/image", true),
    fs("", "", "", "spec/template/spec/containers[]/image", true),
    fs(
        "",
        "",
        "",
        "spec/template/spec/initContainers[]/image",
        true,
    ),
    fs("", "", "", "spec/volumes[]/image/reference", false),
    fs(
        "",
        "",
        "",
        "spec/template/spec/volumes[]/image/reference",
        false,
    ),
];

/// Calls `f` on every value at `path` in `obj`, walking into each element of lists met on
/// the way. With `create`, missing maps on the way are created and a missing final field
/// is passed to `f` as `Null` (and removed again if `f` leaves it `Null`).
pub fn visit_path(obj: &mut Value, path: &str, create: bool, f: &mut dyn FnMut(&mut Value)) {
    let owned = split_path(path);
    let segments: Vec<&str> = owned.iter().map(String::as_str).collect();
    visit(obj, &segments, create, f);
}

fn visit(node: &mut Value, segments: &[&str], create: bool, f: &mut dyn FnMut(&mut Value)) {
    let Some((first, rest)) = segments.split_first() else {
        f(node);
        return;
    };
    if let Value::Array(items) = node {
        for item in items {
            visit(item, segments, create, f);
        }
        return;
    }
    let (key, is_list) = match first.strip_suffix("[]") {
        Some(k) => (k, true),
        None => (*first, false),
    };
    let Value::Object(map) = node else {
        return;
    };
    if !map.contains_key(key) || map.get(key).is_some_and(Value::is_null) {
        if !create || is_list {
            return;
        }
        if rest.is_empty() {
            map.insert(key.to_string(), Value::Null);
            let v = map.get_mut(key).expect("just inserted");
            f(v);
            if v.is_null() {
                map.remove(key);
            }
            return;
        }
        map.insert(key.to_string(), Value::Object(Map::new()));
    }
    let child = map.get_mut(key).expect("present");
    visit(child, rest, create, f);
}

/// Where kustomize expands `$(VAR)` by default (its `varReference` field specs).
pub fn var_reference_specs() -> Vec<FieldSpec> {
    let mut out = Vec::new();
    let owned = |kind: &str, path: String| FieldSpec {
        kind: Cow::Owned(kind.to_string()),
        path: Cow::Owned(path),
        ..FieldSpec::default()
    };
    let workloads: &[(&str, &str, &str)] = &[
        (
            "CronJob",
            "spec/jobTemplate/spec/template/spec",
            "spec/jobTemplate/spec/template/volumes/nfs/server",
        ),
        (
            "DaemonSet",
            "spec/template/spec",
            "spec/template/spec/volumes/nfs/server",
        ),
        (
            "Deployment",
            "spec/template/spec",
            "spec/template/spec/volumes/nfs/server",
        ),
        (
            "Job",
            "spec/template/spec",
            "spec/template/spec/volumes/nfs/server",
        ),
        ("Pod", "spec", "spec/volumes/nfs/server"),
        (
            "ReplicaSet",
            "spec/template/spec",
            "spec/template/spec/volumes/nfs/server",
        ),
        (
            "StatefulSet",
            "spec/template/spec",
            "spec/volumeClaimTemplates/spec/nfs/server",
        ),
    ];
    for (kind, pod, nfs) in workloads {
        for c in ["containers", "initContainers"] {
            for f in ["args", "command", "env/value", "volumeMounts/mountPath"] {
                out.push(owned(kind, format!("{pod}/{c}/{f}")));
            }
        }
        out.push(owned(kind, nfs.to_string()));
        if *kind == "Deployment" {
            out.push(owned(kind, "spec/template/metadata/annotations".into()));
        }
    }
    for (kind, path) in [
        ("Ingress", "spec/rules/host"),
        ("Ingress", "spec/tls/hosts"),
        ("Ingress", "spec/tls/secretName"),
        ("Service", "spec/ports/port"),
        ("Service", "spec/ports/targetPort"),
        ("PersistentVolume", "spec/nfs/server"),
        ("", "metadata/labels"),
        ("", "metadata/annotations"),
    ] {
        out.push(owned(kind, path.to_string()));
    }
    out
}
