//! Field specs: where in which kinds a transformer writes (labels into selectors,
//! annotations into pod templates, images into containers, ...), and the walker that
//! visits those places.

use serde_json::{Map, Value};

use super::resource::Gvk;

/// One place a transformer writes: a slash-separated path in objects of a GVK (empty
/// group/version/kind match any).
#[derive(Debug, Clone, Copy)]
pub struct FieldSpec {
    /// API group filter.
    pub group: &'static str,
    /// API version filter.
    pub version: &'static str,
    /// Kind filter.
    pub kind: &'static str,
    /// Slash-separated path; `[]` after a segment marks a list.
    pub path: &'static str,
    /// Create the field when it is missing.
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
        group,
        version,
        kind,
        path,
        create,
    }
}

impl FieldSpec {
    /// Whether the spec applies to an object of `gvk`.
    pub fn applies_to(&self, gvk: &Gvk) -> bool {
        gvk.is_selected_by(self.group, self.version, self.kind)
    }
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

/// Image fields kustomize rewrites by field spec (after its walk over every container).
pub const IMAGE_PATHS: &[&str] = &[
    "spec/containers[]/image",
    "spec/initContainers[]/image",
    "spec/template/spec/containers[]/image",
    "spec/template/spec/initContainers[]/image",
    "spec/volumes[]/image/reference",
    "spec/template/spec/volumes[]/image/reference",
];

/// Calls `f` on every value at `path` in `obj`, walking into each element of lists met on
/// the way. With `create`, missing maps on the way are created and a missing final field
/// is passed to `f` as `Null` (and removed again if `f` leaves it `Null`).
pub fn visit_path(obj: &mut Value, path: &str, create: bool, f: &mut dyn FnMut(&mut Value)) {
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
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
