//! Field paths and field sets, the vocabulary of server-side apply: which fields of an
//! object a manager owns, encoded on the wire as `managedFields[].fieldsV1`. The
//! simulated API server keeps ownership with it; the reconciler reads it to tell
//! whether a live object still carries exactly what it applied.
//!
//! A path walks maps by field name, associative lists by key (`[name="web"]`), set
//! lists by value (`[="x"]`) and atomic lists never (they are one leaf). Which list is
//! which comes from [`ListShapes`], built from the shared merge-key knowledge of
//! [`crate::schema`] and, for custom resources, from their CRD's schema.

use std::collections::BTreeSet;

use serde_json::{Map, Value};

use crate::schema::{ListStrategy, is_builtin_group, list_strategy};

/// One step of a field path.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PathElement {
    /// A map field: `f:name` on the wire, `.name` in messages.
    Field(String),
    /// An associative-list element by its key fields (name, canonical JSON value),
    /// sorted by name: `k:{"name":"web"}`, `[name="web"]`.
    Key(Vec<(String, String)>),
    /// A set-list element by value (canonical JSON): `v:"x"`, `[="x"]`.
    Value(String),
    /// A list element by position, for lists read from others' fieldsV1: `i:0`.
    Index(usize),
}

/// A field path from the object root.
pub type FieldPath = Vec<PathElement>;

/// A set of field paths.
pub type FieldSet = BTreeSet<FieldPath>;

/// Renders a path as the API server does in conflict messages
/// (`.spec.template.spec.containers[name="web"].image`).
pub fn path_string(path: &[PathElement]) -> String {
    let mut s = String::new();
    for pe in path {
        match pe {
            PathElement::Field(f) => {
                s.push('.');
                s.push_str(f);
            }
            PathElement::Key(kv) => {
                let parts: Vec<String> = kv.iter().map(|(k, v)| format!("{k}={v}")).collect();
                s.push('[');
                s.push_str(&parts.join(","));
                s.push(']');
            }
            PathElement::Value(v) => {
                s.push_str("[=");
                s.push_str(v);
                s.push(']');
            }
            PathElement::Index(i) => s.push_str(&format!("[{i}]")),
        }
    }
    s
}

/// How each list (and a few maps) of one resource type merge.
#[derive(Debug, Clone)]
pub struct ListShapes<'a> {
    group: &'a str,
    kind: &'a str,
    /// Associative list keys by dotted path, from a CRD schema.
    crd_keys: Option<&'a std::collections::BTreeMap<String, Vec<String>>>,
}

/// How one list merges.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListShape {
    /// Replaced whole; one leaf in field sets.
    Atomic,
    /// Elements identified by these key fields.
    Map(Vec<String>),
    /// Scalar elements identified by value.
    Set,
}

impl<'a> ListShapes<'a> {
    /// Shapes for `kind` in `group`, with a CRD's list keys when it has them.
    pub fn new(
        group: &'a str,
        kind: &'a str,
        crd_keys: Option<&'a std::collections::BTreeMap<String, Vec<String>>>,
    ) -> Self {
        ListShapes {
            group,
            kind,
            crd_keys,
        }
    }

    /// The shape of the list at `path` (field names only).
    pub fn list(&self, path: &[String]) -> ListShape {
        if let Some(keys) = self.crd_keys.and_then(|k| k.get(&path.join("."))) {
            return ListShape::Map(keys.clone());
        }
        match list_strategy(self.group, self.kind, path) {
            // Server-side apply keys ports by port and protocol (a strategic merge by the
            // port alone), as a real apiserver's managedFields show.
            ListStrategy::MergeByKey(k @ ("containerPort" | "port")) => {
                ListShape::Map(vec![k.to_string(), "protocol".to_string()])
            }
            ListStrategy::MergeByKey(k) => ListShape::Map(vec![k.to_string()]),
            ListStrategy::MergePrimitives => ListShape::Set,
            ListStrategy::Replace => ListShape::Atomic,
        }
    }

    /// Whether the map at `path` is atomic: label selectors of workloads and Services
    /// are, a binding's roleRef, and the key and field references of built-in kinds (a
    /// real apiserver's managedFields own them whole).
    pub fn atomic_map(&self, path: &[String]) -> bool {
        let last = path.last().map(String::as_str).unwrap_or("");
        (last == "selector" && path.len() == 2)
            || (is_builtin_group(self.group)
                && matches!(
                    last,
                    "secretKeyRef" | "configMapKeyRef" | "fieldRef" | "resourceFieldRef"
                ))
            || (last == "roleRef"
                && path.len() == 1
                && matches!(self.kind, "RoleBinding" | "ClusterRoleBinding"))
            || last == "podSelector"
            || last == "namespaceSelector"
    }
}

/// Field names of a path, list elements skipped, for schema lookups.
fn names(path: &[PathElement]) -> Vec<String> {
    path.iter()
        .filter_map(|p| match p {
            PathElement::Field(f) => Some(f.clone()),
            _ => None,
        })
        .collect()
}

/// Canonical JSON of a scalar (what fieldsV1 keys and messages show).
fn canonical(v: &Value) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

/// The key field an associative-list item lacks.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct MissingKeyField(pub String);

/// The key path element of an associative-list item, or the key field it lacks.
pub fn item_key(item: &Value, keys: &[String]) -> Result<PathElement, MissingKeyField> {
    item_key_or_missing(item, keys).map_err(MissingKeyField)
}

fn item_key_or_missing(item: &Value, keys: &[String]) -> Result<PathElement, String> {
    let mut kv = Vec::new();
    for k in keys {
        match item.get(k) {
            Some(v) if !v.is_null() => kv.push((k.clone(), canonical(v))),
            // The server defaults a port's protocol before it keys the item.
            _ if keys.len() > 1 && k == "protocol" => kv.push((k.clone(), "\"TCP\"".into())),
            _ => return Err(k.clone()),
        }
    }
    kv.sort();
    Ok(PathElement::Key(kv))
}

/// An error building a field set: an associative-list item without its key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: associative list with keys has an element that omits key field \"{key}\"")]
pub struct MissingKey {
    /// Where the list is.
    pub path: String,
    /// The key field that is missing.
    pub key: String,
}

/// The fields an applied configuration sets: leaves, atomic lists and maps, and the
/// items of associative and set lists.
pub fn fields_of(value: &Value, shapes: &ListShapes) -> Result<FieldSet, MissingKey> {
    let mut set = FieldSet::new();
    walk(value, &mut Vec::new(), shapes, &mut set, false)?;
    Ok(set)
}

/// Collects the field paths of `value` at `path`. With `members`, every non-empty map
/// and list is a member of the set too: a write that creates a map or list owns the
/// map or list itself, which a real server's managedFields mark with `"."`.
fn walk(
    value: &Value,
    path: &mut FieldPath,
    shapes: &ListShapes,
    set: &mut FieldSet,
    members: bool,
) -> Result<(), MissingKey> {
    match value {
        Value::Object(m) => {
            if !path.is_empty() && (m.is_empty() || shapes.atomic_map(&names(path))) {
                set.insert(path.clone());
                return Ok(());
            }
            if members && !path.is_empty() {
                set.insert(path.clone());
            }
            for (k, v) in m {
                path.push(PathElement::Field(k.clone()));
                walk(v, path, shapes, set, members)?;
                path.pop();
            }
        }
        Value::Array(items) => match shapes.list(&names(path)) {
            ListShape::Atomic => {
                set.insert(path.clone());
            }
            shape if members && !items.is_empty() && !path.is_empty() => {
                set.insert(path.clone());
                walk_items(items, &shape, path, shapes, set, members)?;
            }
            shape => walk_items(items, &shape, path, shapes, set, members)?,
        },
        _ => {
            if !path.is_empty() {
                set.insert(path.clone());
            }
        }
    }
    Ok(())
}

fn walk_items(
    items: &[Value],
    shape: &ListShape,
    path: &mut FieldPath,
    shapes: &ListShapes,
    set: &mut FieldSet,
    members: bool,
) -> Result<(), MissingKey> {
    match shape {
        ListShape::Atomic => {
            set.insert(path.clone());
        }
        ListShape::Set => {
            for it in items {
                path.push(PathElement::Value(canonical(it)));
                set.insert(path.clone());
                path.pop();
            }
        }
        ListShape::Map(keys) => {
            for it in items {
                let pe = item_key(it, keys).map_err(|key| MissingKey {
                    path: path_string(path),
                    key: key.0,
                })?;
                path.push(pe);
                set.insert(path.clone());
                if let Value::Object(m) = it {
                    for (k, v) in m {
                        path.push(PathElement::Field(k.clone()));
                        walk(v, path, shapes, set, members)?;
                        path.pop();
                    }
                }
                path.pop();
            }
        }
    }
    Ok(())
}

/// The fields that differ between two versions of an object: added or changed (first)
/// and removed (second).
pub fn changed_fields(old: &Value, new: &Value, shapes: &ListShapes) -> (FieldSet, FieldSet) {
    let mut changed = FieldSet::new();
    let mut removed = FieldSet::new();
    compare(
        old,
        new,
        &mut Vec::new(),
        shapes,
        &mut changed,
        &mut removed,
    );
    (changed, removed)
}

fn subtree(value: &Value, path: &mut FieldPath, shapes: &ListShapes, out: &mut FieldSet) {
    subtree_of(value, path, shapes, out, false);
}

/// The fields a value brings where there was none before, its maps and lists
/// included.
fn added(value: &Value, path: &mut FieldPath, shapes: &ListShapes, out: &mut FieldSet) {
    subtree_of(value, path, shapes, out, true);
}

fn subtree_of(
    value: &Value,
    path: &mut FieldPath,
    shapes: &ListShapes,
    out: &mut FieldSet,
    members: bool,
) {
    // Items without keys cannot be addressed; the whole value then counts as one leaf.
    let mut sub = FieldSet::new();
    if walk(value, path, shapes, &mut sub, members).is_err() || sub.is_empty() {
        out.insert(path.clone());
    } else {
        out.extend(sub);
    }
}

fn compare(
    old: &Value,
    new: &Value,
    path: &mut FieldPath,
    shapes: &ListShapes,
    changed: &mut FieldSet,
    removed: &mut FieldSet,
) {
    match (old, new) {
        (Value::Object(a), Value::Object(b))
            if path.is_empty() || !shapes.atomic_map(&names(path)) =>
        {
            if !path.is_empty() && (a.is_empty() != b.is_empty()) {
                if b.is_empty() {
                    changed.insert(path.clone());
                } else {
                    removed.insert(path.clone());
                }
            }
            for (k, v) in b {
                path.push(PathElement::Field(k.clone()));
                match a.get(k) {
                    Some(ov) => compare(ov, v, path, shapes, changed, removed),
                    None => added(v, path, shapes, changed),
                }
                path.pop();
            }
            for (k, v) in a {
                if !b.contains_key(k) {
                    path.push(PathElement::Field(k.clone()));
                    subtree(v, path, shapes, removed);
                    removed.insert(path.clone());
                    path.pop();
                }
            }
        }
        (Value::Array(a), Value::Array(b)) => match shapes.list(&names(path)) {
            ListShape::Map(keys) => {
                let keyed = |items: &[Value]| -> Option<Vec<(PathElement, Value)>> {
                    items
                        .iter()
                        .map(|it| item_key(it, &keys).ok().map(|k| (k, it.clone())))
                        .collect()
                };
                let (Some(ka), Some(kb)) = (keyed(a), keyed(b)) else {
                    if a != b {
                        changed.insert(path.clone());
                    }
                    return;
                };
                for (k, v) in &kb {
                    path.push(k.clone());
                    match ka.iter().find(|(x, _)| x == k) {
                        Some((_, ov)) => compare(ov, v, path, shapes, changed, removed),
                        None => {
                            changed.insert(path.clone());
                            if let Value::Object(m) = v {
                                for (f, fv) in m {
                                    path.push(PathElement::Field(f.clone()));
                                    added(fv, path, shapes, changed);
                                    path.pop();
                                }
                            }
                        }
                    }
                    path.pop();
                }
                for (k, v) in &ka {
                    if !kb.iter().any(|(x, _)| x == k) {
                        path.push(k.clone());
                        removed.insert(path.clone());
                        if let Value::Object(m) = v {
                            for (f, fv) in m {
                                path.push(PathElement::Field(f.clone()));
                                subtree(fv, path, shapes, removed);
                                path.pop();
                            }
                        }
                        path.pop();
                    }
                }
            }
            ListShape::Set => {
                for v in b.iter().filter(|v| !a.contains(v)) {
                    path.push(PathElement::Value(canonical(v)));
                    changed.insert(path.clone());
                    path.pop();
                }
                for v in a.iter().filter(|v| !b.contains(v)) {
                    path.push(PathElement::Value(canonical(v)));
                    removed.insert(path.clone());
                    path.pop();
                }
            }
            ListShape::Atomic => {
                if a != b {
                    changed.insert(path.clone());
                }
            }
        },
        (a, b) => {
            if a != b && !path.is_empty() {
                changed.insert(path.clone());
            }
        }
    }
}

/// Paths in `set` equal to or below `prefix`.
pub fn under<'s>(set: &'s FieldSet, prefix: &'s FieldPath) -> impl Iterator<Item = &'s FieldPath> {
    set.range(prefix.clone()..)
        .take_while(move |p| p.starts_with(prefix))
}

/// Removes `prefix` and everything below it from `set`.
pub fn remove_under(set: &mut FieldSet, prefix: &FieldPath) {
    let doomed: Vec<FieldPath> = under(set, prefix).cloned().collect();
    for p in doomed {
        set.remove(&p);
    }
}

/// Encodes a set as `fieldsV1`.
pub fn to_fields_v1(set: &FieldSet) -> Value {
    let mut root = Map::new();
    for path in set {
        let mut node = &mut root;
        for pe in path {
            let key = encode(pe);
            node = node
                .entry(key)
                .or_insert_with(|| Value::Object(Map::new()))
                .as_object_mut()
                .expect("fieldsV1 nodes are objects");
        }
        // A member that also has children is marked with ".".
        if !node.is_empty() {
            node.insert(".".into(), Value::Object(Map::new()));
        }
    }
    // Parents inserted before their children need "." too; children inserted later
    // turn an empty (leaf) node into a parent, so fix up in a second pass.
    mark_members(&mut root, set, &mut Vec::new());
    Value::Object(root)
}

fn mark_members(node: &mut Map<String, Value>, set: &FieldSet, path: &mut FieldPath) {
    for (k, v) in node.iter_mut() {
        if k == "." {
            continue;
        }
        let Some(pe) = decode(k) else { continue };
        path.push(pe);
        if let Value::Object(child) = v {
            if !child.is_empty() && set.contains(path) {
                child.insert(".".into(), Value::Object(Map::new()));
            }
            mark_members(child, set, path);
        }
        path.pop();
    }
}

fn encode(pe: &PathElement) -> String {
    match pe {
        PathElement::Field(f) => format!("f:{f}"),
        PathElement::Key(kv) => {
            let parts: Vec<String> = kv
                .iter()
                .map(|(k, v)| format!("{}:{v}", canonical(&Value::String(k.clone()))))
                .collect();
            format!("k:{{{}}}", parts.join(","))
        }
        PathElement::Value(v) => format!("v:{v}"),
        PathElement::Index(i) => format!("i:{i}"),
    }
}

fn decode(key: &str) -> Option<PathElement> {
    if let Some(f) = key.strip_prefix("f:") {
        return Some(PathElement::Field(f.to_string()));
    }
    if let Some(k) = key.strip_prefix("k:") {
        let m: Map<String, Value> = serde_json::from_str(k).ok()?;
        let mut kv: Vec<(String, String)> =
            m.iter().map(|(k, v)| (k.clone(), canonical(v))).collect();
        kv.sort();
        return Some(PathElement::Key(kv));
    }
    if let Some(v) = key.strip_prefix("v:") {
        let v: Value = serde_json::from_str(v).ok()?;
        return Some(PathElement::Value(canonical(&v)));
    }
    if let Some(i) = key.strip_prefix("i:") {
        return i.parse().ok().map(PathElement::Index);
    }
    None
}

/// Decodes `fieldsV1`; unknown keys are skipped (they can only come from a client
/// that wrote managedFields by hand).
pub fn from_fields_v1(v: &Value) -> FieldSet {
    let mut set = FieldSet::new();
    if let Value::Object(m) = v {
        read_node(m, &mut Vec::new(), &mut set);
    }
    set
}

fn read_node(node: &Map<String, Value>, path: &mut FieldPath, set: &mut FieldSet) {
    for (k, v) in node {
        if k == "." {
            set.insert(path.clone());
            continue;
        }
        let Some(pe) = decode(k) else { continue };
        path.push(pe);
        match v {
            Value::Object(child) if !child.is_empty() => read_node(child, path, set),
            _ => {
                set.insert(path.clone());
            }
        }
        path.pop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn shapes() -> ListShapes<'static> {
        ListShapes::new("apps", "Deployment", None)
    }

    #[test]
    fn fields_of_a_deployment_match_what_the_api_server_records() {
        let cfg = json!({"metadata": {"labels": {"app": "web"}},
            "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
            "template": {"spec": {"containers": [{"name": "web", "image": "nginx"}]}}}});
        let set = fields_of(&cfg, &shapes()).unwrap();
        let v1 = to_fields_v1(&set);
        assert_eq!(
            v1,
            json!({"f:metadata": {"f:labels": {"f:app": {}}}, "f:spec": {"f:replicas": {},
                "f:selector": {}, "f:template": {"f:spec": {"f:containers": {
                    "k:{\"name\":\"web\"}": {".": {}, "f:image": {}, "f:name": {}}}}}}})
        );
        assert_eq!(from_fields_v1(&v1), set);
    }

    /// A real kube-apiserver recorded these for the example fleet; computing anything
    /// else made every pass re-apply Services, Deployments and ClusterRoleBindings.
    #[test]
    fn ports_selectors_key_refs_and_role_refs_are_owned_as_a_real_api_server_records_them() {
        let deployment = json!({"spec": {"template": {"spec": {"containers": [{"name": "api",
            "ports": [{"name": "http", "containerPort": 9090}],
            "env": [{"name": "DB_USER", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}]}]}}}});
        assert_eq!(
            to_fields_v1(&fields_of(&deployment, &shapes()).unwrap()),
            json!({"f:spec": {"f:template": {"f:spec": {"f:containers": {"k:{\"name\":\"api\"}": {
                ".": {}, "f:name": {},
                "f:env": {"k:{\"name\":\"DB_USER\"}": {".": {}, "f:name": {}, "f:valueFrom": {"f:secretKeyRef": {}}}},
                "f:ports": {"k:{\"containerPort\":9090,\"protocol\":\"TCP\"}": {".": {}, "f:containerPort": {}, "f:name": {}}}}}}}}})
        );
        let service = json!({"spec": {"selector": {"app": "web"},
            "ports": [{"port": 80, "targetPort": "http", "name": "http"}]}});
        assert_eq!(
            to_fields_v1(&fields_of(&service, &ListShapes::new("", "Service", None)).unwrap()),
            json!({"f:spec": {"f:selector": {}, "f:ports": {"k:{\"port\":80,\"protocol\":\"TCP\"}": {
                ".": {}, "f:name": {}, "f:port": {}, "f:targetPort": {}}}}})
        );
        let binding = json!({"roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "r"},
            "subjects": [{"kind": "Group", "name": "g"}]});
        let shapes = ListShapes::new("rbac.authorization.k8s.io", "ClusterRoleBinding", None);
        assert_eq!(
            to_fields_v1(&fields_of(&binding, &shapes).unwrap()),
            json!({"f:roleRef": {}, "f:subjects": {}})
        );
    }

    #[test]
    fn paths_print_like_the_api_server() {
        let p = vec![
            PathElement::Field("spec".into()),
            PathElement::Field("containers".into()),
            PathElement::Key(vec![("name".into(), "\"web\"".into())]),
            PathElement::Field("image".into()),
        ];
        assert_eq!(path_string(&p), ".spec.containers[name=\"web\"].image");
    }

    #[test]
    fn changed_fields_sees_modified_added_and_removed_items() {
        let old = json!({"spec": {"replicas": 1, "template": {"spec": {"containers": [
            {"name": "a", "image": "x"}, {"name": "b", "image": "y"}]}}}});
        let new = json!({"spec": {"replicas": 3, "template": {"spec": {"containers": [
            {"name": "a", "image": "z"}, {"name": "c", "image": "y"}]}}}});
        let (changed, removed) = changed_fields(&old, &new, &shapes());
        let strings = |s: &FieldSet| s.iter().map(|p| path_string(p)).collect::<Vec<_>>();
        assert!(strings(&changed).contains(&".spec.replicas".to_string()));
        assert!(
            strings(&changed)
                .contains(&".spec.template.spec.containers[name=\"a\"].image".to_string())
        );
        assert!(
            strings(&changed).contains(&".spec.template.spec.containers[name=\"c\"]".to_string())
        );
        assert!(
            strings(&removed).contains(&".spec.template.spec.containers[name=\"b\"]".to_string())
        );
    }

    #[test]
    fn a_keyless_item_in_an_associative_list_is_refused() {
        let cfg = json!({"spec": {"template": {"spec": {"containers": [{"image": "x"}]}}}});
        let err = fields_of(&cfg, &shapes()).unwrap_err();
        assert_eq!(err.key, "name");
    }
}
