//! The built-in transformers of a kustomization: namespace, name prefix and suffix,
//! labels, annotations, images and replicas. Each takes the accumulated resources and
//! edits them in place, recording renames so name references can follow.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::KustomizeError;
use super::config::TransformerConfig;
use super::fields::{self, FieldSpec, visit_path};
use super::kustomization::{ImageEntry, ReplicaEntry};
use super::resource::Resource;

/// Sets `namespace` on every namespaced object, renames Namespace objects, and updates
/// the namespace of RoleBinding subjects named `default`, as kustomize does.
pub fn set_namespace(
    res: &mut [Resource],
    ns: &str,
    extra: &[FieldSpec],
) -> Result<(), KustomizeError> {
    if ns.is_empty() {
        return Ok(());
    }
    for r in res.iter_mut() {
        if !extra.is_empty() {
            let gvk = r.gvk();
            let mut obj = Value::Object(std::mem::take(&mut r.obj));
            for spec in extra.iter().filter(|s| s.applies_to(&gvk)) {
                visit_path(&mut obj, &spec.path, spec.create, &mut |v| {
                    *v = Value::String(ns.into())
                });
            }
            r.obj = into_map(obj);
        }
        r.store_previous_id();
        let gvk = r.gvk();
        if !gvk.is_cluster_scoped_in_kustomize() {
            r.set_namespace(ns);
        }
        if gvk.kind == "Namespace" && r.obj.get("apiVersion").and_then(Value::as_str) == Some("v1")
        {
            r.set_name(ns);
        }
        if (gvk.kind == "RoleBinding" || gvk.kind == "ClusterRoleBinding")
            && let Some(Value::Array(subjects)) = r.obj.get_mut("subjects")
        {
            for s in subjects.iter_mut() {
                if s.get("name").and_then(Value::as_str) == Some("default")
                    && let Some(m) = s.as_object_mut()
                {
                    m.insert("namespace".into(), Value::String(ns.into()));
                }
            }
        }
        if gvk.group == "apiregistration.k8s.io" && gvk.kind == "APIService" {
            let mut obj = Value::Object(std::mem::take(&mut r.obj));
            visit_path(&mut obj, "spec/service/namespace", true, &mut |v| {
                *v = Value::String(ns.into())
            });
            r.obj = into_map(obj);
        }
        if gvk.kind == "CustomResourceDefinition" {
            let mut obj = Value::Object(std::mem::take(&mut r.obj));
            visit_path(
                &mut obj,
                "spec/conversion/webhook/clientConfig/service/namespace",
                false,
                &mut |v| *v = Value::String(ns.into()),
            );
            r.obj = into_map(obj);
        }
    }
    check_unique(res, "namespace")
}

/// Sets one object's namespace as kustomize's namespace filter does without field
/// specs (the ValueAddTransformer's `metadata/namespace`): namespaced objects only,
/// and RoleBinding subjects named `default`.
pub fn set_namespace_of(r: &mut Resource, ns: &str) {
    r.store_previous_id();
    let gvk = r.gvk();
    if !gvk.is_cluster_scoped_in_kustomize() {
        r.set_namespace(ns);
    }
    if (gvk.kind == "RoleBinding" || gvk.kind == "ClusterRoleBinding")
        && let Some(Value::Array(subjects)) = r.obj.get_mut("subjects")
    {
        for s in subjects.iter_mut() {
            if s.get("name").and_then(Value::as_str) == Some("default")
                && let Some(m) = s.as_object_mut()
            {
                m.insert("namespace".into(), Value::String(ns.into()));
            }
        }
    }
}

fn into_map(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

/// Fails when two objects ended up with the same identity.
fn check_unique(res: &[Resource], step: &str) -> Result<(), KustomizeError> {
    let mut seen = std::collections::HashSet::with_capacity(res.len());
    for r in res {
        let id = r.cur_id();
        if !seen.insert(id.key()) {
            return Err(KustomizeError::Conflict {
                message: format!("{step} transformation produces two objects with the id {id}"),
            });
        }
    }
    Ok(())
}

fn skips_affixes(r: &Resource) -> bool {
    let id = r.org_id();
    let g = &id.gvk;
    g.kind == "CustomResourceDefinition"
        || g.kind == "Namespace"
        || (g.group == "apiregistration.k8s.io" && g.kind == "APIService")
}

/// Adds `prefix` and `suffix` to object names (not to CRDs, Namespaces or APIServices)
/// and to the fields of `extra` (custom `namePrefix`/`nameSuffix` field specs, which
/// may narrow the renaming to some kinds as in kustomize).
pub fn add_affixes(res: &mut [Resource], prefix: &str, suffix: &str, extra: &[FieldSpec]) {
    let name = [FieldSpec {
        path: "metadata/name".into(),
        ..FieldSpec::default()
    }];
    add_affixes_by_specs(res, prefix, suffix, &fields::combine(&name, extra));
}

/// A PrefixSuffixTransformer configured with its own field specs: `metadata/name` in
/// a spec renames the objects it selects (by their original kind); other paths get the
/// affixes as text.
pub fn add_affixes_by_specs(res: &mut [Resource], prefix: &str, suffix: &str, specs: &[FieldSpec]) {
    for r in res.iter_mut() {
        if skips_affixes(r) {
            continue;
        }
        let gvk = r.org_id().gvk;
        for spec in specs.iter().filter(|s| s.applies_to(&gvk)) {
            if spec.path == "metadata/name" {
                if prefix.is_empty() && suffix.is_empty() {
                    continue;
                }
                if !prefix.is_empty() {
                    r.prefixes.push(prefix.to_string());
                }
                if !suffix.is_empty() {
                    r.suffixes.push(suffix.to_string());
                }
                r.store_previous_id();
                let name = format!("{prefix}{}{suffix}", r.name());
                r.set_name(&name);
                continue;
            }
            let mut obj = Value::Object(std::mem::take(&mut r.obj));
            visit_path(&mut obj, &spec.path, spec.create, &mut |v| {
                if let Value::String(s) = v {
                    *s = format!("{prefix}{s}{suffix}");
                }
            });
            r.obj = into_map(obj);
        }
    }
}

/// Writes string `pairs` into the maps at each matching field spec.
pub fn add_map_entries(
    res: &mut [Resource],
    pairs: &BTreeMap<String, String>,
    specs: &[FieldSpec],
) {
    if pairs.is_empty() {
        return;
    }
    for r in res.iter_mut() {
        let gvk = r.gvk();
        let mut obj = Value::Object(std::mem::take(&mut r.obj));
        for spec in specs.iter().filter(|s| s.applies_to(&gvk)) {
            visit_path(&mut obj, &spec.path, spec.create, &mut |v| {
                if v.is_null() {
                    *v = Value::Object(Map::new());
                }
                if let Value::Object(m) = v {
                    for (k, val) in pairs {
                        m.insert(k.clone(), Value::String(val.clone()));
                    }
                }
            });
        }
        r.obj = into_map(obj);
    }
}

/// The label field specs for one `labels` entry, custom specs of `tc` included.
pub fn label_specs(
    include_selectors: bool,
    include_templates: bool,
    tc: &TransformerConfig,
) -> Vec<FieldSpec> {
    if include_selectors {
        fields::combine(&fields::common_label_specs(), &tc.common_labels)
    } else if include_templates {
        let mut v = fields::TEMPLATE_LABELS.to_vec();
        v.push(fields::VOLUME_CLAIM_TEMPLATE_LABELS);
        fields::combine(&v, &tc.template_labels)
    } else {
        fields::TEMPLATE_LABELS[..1].to_vec()
    }
}

/// Splits an image reference into name, tag and digest the way kustomize does.
fn split_image(image: &str) -> (String, String, String) {
    let slash = image.find('/').filter(|i| *i > 0).unwrap_or(0);
    let search = &image[slash..];
    let at = search.find('@');
    let colon = search.find(':');
    if let Some(a) = at.filter(|a| colon.is_none_or(|c| *a < c)) {
        let a = a + slash;
        return (
            image[..a].to_string(),
            String::new(),
            image[a + 1..].to_string(),
        );
    }
    match (colon, at) {
        (Some(c), Some(a)) => {
            let (c, a) = (c + slash, a + slash);
            (
                image[..c].to_string(),
                image[c + 1..a].to_string(),
                image[a + 1..].to_string(),
            )
        }
        (Some(c), None) => {
            let c = c + slash;
            (
                image[..c].to_string(),
                image[c + 1..].to_string(),
                String::new(),
            )
        }
        _ => (image.to_string(), String::new(), String::new()),
    }
}

/// The pattern an image entry matches. kustomize builds it without escaping the name;
/// do the same so that matching agrees, and treat a name that is not a valid pattern as
/// matching nothing.
fn image_pattern(name: &str) -> Option<regex::bytes::Regex> {
    // Image references are ASCII; without Unicode tables the pattern compiles in
    // microseconds, which matters for one-shot `rollwave build` calls.
    regex::bytes::RegexBuilder::new(&format!(
        "^{name}(:[a-zA-Z0-9_.{{}}-]*)?(@[a-zA-Z0-9]+([.+_-][a-zA-Z0-9]+)*:[a-zA-Z0-9_.{{}}-]*)?$"
    ))
    .unicode(false)
    .build()
    .ok()
}

fn rewrite_image(value: &str, img: &ImageEntry, pattern: &regex::bytes::Regex) -> Option<String> {
    if !value.starts_with(
        img.name
            .split(['.', '[', '(', '\\', '*', '+', '?', '{', '|', '^', '$'])
            .next()
            .unwrap_or(""),
    ) || !pattern.is_match(value.as_bytes())
    {
        return None;
    }
    let (mut name, mut tag, mut digest) = split_image(value);
    if let Some(n) = img.new_name.as_deref().filter(|s| !s.is_empty()) {
        name = n.to_string();
    }
    let new_tag = img.new_tag.as_deref().unwrap_or("");
    let new_digest = img.digest.as_deref().unwrap_or("");
    let suffix = img.tag_suffix.as_deref().unwrap_or("");
    if !new_tag.is_empty() && !new_digest.is_empty() {
        tag = new_tag.into();
        digest = new_digest.into();
    } else if !new_tag.is_empty() {
        tag = new_tag.into();
        digest.clear();
    } else if !new_digest.is_empty() {
        tag.clear();
        digest = new_digest.into();
    } else if !suffix.is_empty() {
        tag.push_str(suffix);
        digest.clear();
    }
    if !tag.is_empty() {
        name = format!("{name}:{tag}");
    }
    if !digest.is_empty() {
        name = format!("{name}@{digest}");
    }
    Some(name)
}

fn walk_containers(v: &mut Value, img: &ImageEntry, pattern: &regex::bytes::Regex) {
    match v {
        Value::Object(m) => {
            for (k, child) in m.iter_mut() {
                walk_containers(child, img, pattern);
                if (k == "containers" || k == "initContainers")
                    && let Value::Array(items) = child
                {
                    for c in items {
                        if let Some(Value::String(s)) = c.get_mut("image")
                            && let Some(new) = rewrite_image(s, img, pattern)
                        {
                            *s = new;
                        }
                    }
                }
            }
        }
        Value::Array(a) => a.iter_mut().for_each(|c| walk_containers(c, img, pattern)),
        _ => {}
    }
}

/// Applies `images` rewrites to containers and init containers anywhere in each object
/// (except CRDs) and to image volume references.
pub fn set_images(res: &mut [Resource], images: &[ImageEntry], specs: &[FieldSpec]) {
    for img in images {
        let Some(pattern) = image_pattern(&img.name) else {
            continue;
        };
        for r in res.iter_mut() {
            if r.gvk().kind == "CustomResourceDefinition" {
                continue;
            }
            let gvk = r.gvk();
            let mut obj = Value::Object(std::mem::take(&mut r.obj));
            walk_containers(&mut obj, img, &pattern);
            // kustomize then rewrites the images again through its field specs (for a
            // tagSuffix that appends twice, and matching its output means doing the
            // same). A spec with `create: true` writes a null list its path passes
            // through back as an empty list; an absent one stays absent.
            for spec in specs.iter().filter(|s| s.applies_to(&gvk)) {
                if spec.create {
                    empty_null_list_on(&mut obj, &spec.path);
                }
                visit_path(&mut obj, &spec.path, false, &mut |v| {
                    if let Value::String(s) = v
                        && let Some(new) = rewrite_image(s, img, &pattern)
                    {
                        *s = new;
                    }
                });
            }
            r.obj = into_map(obj);
        }
    }
}

/// Makes the first list `path` passes through (`a/b[]/c`: `a/b`) an empty list when
/// it is null.
fn empty_null_list_on(obj: &mut Value, path: &str) {
    let Some((list, _)) = path.split_once("[]") else {
        return;
    };
    let pointer: String = list
        .split('/')
        .map(|k| format!("/{}", k.replace('~', "~0")))
        .collect();
    if let Some(v) = obj.pointer_mut(&pointer)
        && v.is_null()
    {
        *v = Value::Array(Vec::new());
    }
}

/// Applies `replicas`: every entry must match a workload by (original or current) name.
pub fn set_replicas(
    res: &mut [Resource],
    replicas: &[ReplicaEntry],
    dir: &str,
    extra: &[FieldSpec],
) -> Result<(), KustomizeError> {
    for rep in replicas {
        let mut found = false;
        for r in res.iter_mut() {
            let gvk = r.gvk();
            let names_match = r.name() == rep.name || r.prev_ids.iter().any(|p| p.name == rep.name);
            if !names_match {
                continue;
            }
            for spec in fields::REPLICAS
                .iter()
                .chain(extra)
                .filter(|s| s.applies_to(&gvk))
            {
                found = true;
                let mut obj = Value::Object(std::mem::take(&mut r.obj));
                visit_path(&mut obj, &spec.path, spec.create, &mut |v| {
                    *v = Value::from(rep.count)
                });
                r.obj = into_map(obj);
            }
        }
        if !found {
            return Err(KustomizeError::Kustomization {
                dir: dir.to_string(),
                message: format!(
                    "replicas: no Deployment, ReplicaSet, ReplicationController or StatefulSet named '{}'",
                    rep.name
                ),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_image_handles_registries_with_ports_and_digests() {
        assert_eq!(split_image("nginx"), ("nginx".into(), "".into(), "".into()));
        assert_eq!(
            split_image("nginx:1.2"),
            ("nginx".into(), "1.2".into(), "".into())
        );
        assert_eq!(
            split_image("reg:5000/app:v1@sha256:abc"),
            ("reg:5000/app".into(), "v1".into(), "sha256:abc".into())
        );
        assert_eq!(
            split_image("app@sha256:abc"),
            ("app".into(), "".into(), "sha256:abc".into())
        );
    }
}
