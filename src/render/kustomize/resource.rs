//! Resources as the kustomize build sees them: an object plus its build history.
//!
//! kustomize remembers every name and namespace a resource had during the build so
//! that patches written against the original name still find it and name references
//! follow renames. [`Resource`] keeps that history explicitly instead of in annotations.

use serde_json::{Map, Value};

/// Group, version and kind of an object.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Gvk {
    /// API group, empty for the core group.
    pub group: String,
    /// API version.
    pub version: String,
    /// Kind.
    pub kind: String,
}

impl Gvk {
    /// Splits `apiVersion` (`apps/v1` or `v1`) and pairs it with `kind`.
    pub fn from_api_version(api_version: &str, kind: &str) -> Gvk {
        let (group, version) = match api_version.rsplit_once('/') {
            Some((g, v)) => (g.to_string(), v.to_string()),
            None => (String::new(), api_version.to_string()),
        };
        Gvk {
            group,
            version,
            kind: kind.to_string(),
        }
    }

    /// True when every non-empty field of `sel` equals this GVK's.
    pub fn is_selected_by(&self, group: &str, version: &str, kind: &str) -> bool {
        (group.is_empty() || group == self.group)
            && (version.is_empty() || version == self.version)
            && (kind.is_empty() || kind == self.kind)
    }

    /// Whether objects of this kind live outside namespaces. kustomize decides this from
    /// its built-in OpenAPI data; custom resources are taken as namespaced.
    pub fn is_cluster_scoped(&self) -> bool {
        crate::schema::is_cluster_scoped_kind(&self.group, &self.kind)
    }

    /// Whether kustomize v5.5 treats this GVK as cluster-scoped when it builds: it
    /// decides from its built-in schema (Kubernetes 1.21), by group, version and kind,
    /// so a version that schema lacks is namespaced there (FlowSchema
    /// `flowcontrol.apiserver.k8s.io/v1`, ValidatingAdmissionPolicy) even where the API
    /// server makes it cluster-scoped. Build output follows kustomize; what the agent
    /// applies uses [`Gvk::is_cluster_scoped`].
    pub fn is_cluster_scoped_in_kustomize(&self) -> bool {
        if !self.is_cluster_scoped() {
            return false;
        }
        if self.version.is_empty() {
            return true;
        }
        let versions: &[&str] = match (self.group.as_str(), self.kind.as_str()) {
            ("", _) => &["v1"],
            ("flowcontrol.apiserver.k8s.io", _) => &["v1alpha1", "v1beta1"],
            ("admissionregistration.k8s.io", "ValidatingAdmissionPolicy")
            | ("admissionregistration.k8s.io", "ValidatingAdmissionPolicyBinding") => &[],
            ("policy", _) => &["v1beta1"],
            _ => return true,
        };
        versions.contains(&self.version.as_str())
    }
}

/// The identity of an object: GVK, name and namespace.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ResId {
    /// Group, version, kind.
    pub gvk: Gvk,
    /// metadata.name.
    pub name: String,
    /// metadata.namespace as written (may be empty).
    pub namespace: String,
}

impl ResId {
    /// The namespace kustomize compares with: `default` for namespaced objects without
    /// one, nothing for cluster-scoped objects.
    pub fn effective_namespace(&self) -> &str {
        if self.gvk.is_cluster_scoped_in_kustomize() {
            ""
        } else if self.namespace.is_empty() {
            "default"
        } else {
            &self.namespace
        }
    }

    /// A hashable key that is equal exactly when [`ResId::same_as`] holds.
    pub fn key(&self) -> (Gvk, String, String) {
        (
            self.gvk.clone(),
            self.name.clone(),
            self.effective_namespace().to_string(),
        )
    }

    /// Same GVK, name and effective namespace.
    pub fn same_as(&self, other: &ResId) -> bool {
        self.gvk == other.gvk
            && self.name == other.name
            && self.effective_namespace() == other.effective_namespace()
    }
}

impl std::fmt::Display for ResId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ", self.gvk.kind)?;
        if !self.namespace.is_empty() {
            write!(f, "{}/", self.namespace)?;
        }
        f.write_str(&self.name)
    }
}

/// How a generated object combines with one of the same name from a base.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Behavior {
    /// Adds to the base object's data.
    Merge,
    /// Replaces the base object's data.
    Replace,
    /// A new object; a clash is an error. kustomize reads any other word (`add`,
    /// `Merge`) as "unspecified" and treats it as create, so those land here too.
    #[default]
    #[serde(other)]
    Create,
}

/// One object during a build.
#[derive(Debug, Clone)]
pub struct Resource {
    /// The object itself.
    pub obj: Map<String, Value>,
    /// Earlier ids, oldest first (empty if never renamed or moved).
    pub prev_ids: Vec<ResId>,
    /// Name prefixes applied, innermost first.
    pub prefixes: Vec<String>,
    /// Name suffixes applied, innermost first.
    pub suffixes: Vec<String>,
    /// A generated object that gets a content-hash name suffix at the end of the build.
    pub needs_hash: bool,
    /// Generator behavior (create/merge/replace) for generated objects.
    pub behavior: Option<Behavior>,
    /// Where the object came from, for error messages.
    pub origin: String,
    /// Vars (`vars:`) whose value is read from this object.
    pub ref_vars: Vec<String>,
    /// Built-in transformers that ran on the object (for `buildMetadata:
    /// [transformerAnnotations]`), as YAML maps.
    pub transformations: Vec<String>,
    /// JSON pointers of the object's values written as nothing in its file (`key:`),
    /// which a strategic merge patch drops where `null` or `~` would stay (see
    /// `patch::merge_into`).
    pub unspelled_nulls: Vec<String>,
    /// JSON pointers of the object's maps and lists written in flow style (`[a]`), which
    /// kustomize keeps through a strategic merge: a list item a patch writes as
    /// nothing (`-`) becomes an empty string inside one (see `patch::merge_into`).
    pub flow_collections: Vec<String>,
}

impl Resource {
    /// Wraps an object read from `origin`.
    pub fn new(obj: Map<String, Value>, origin: impl Into<String>) -> Self {
        Resource {
            obj,
            prev_ids: Vec::new(),
            prefixes: Vec::new(),
            suffixes: Vec::new(),
            needs_hash: false,
            behavior: None,
            origin: origin.into(),
            ref_vars: Vec::new(),
            transformations: Vec::new(),
            unspelled_nulls: Vec::new(),
            flow_collections: Vec::new(),
        }
    }

    /// The object's GVK.
    pub fn gvk(&self) -> Gvk {
        Gvk::from_api_version(self.str_field("apiVersion"), self.str_field("kind"))
    }

    fn str_field(&self, key: &str) -> &str {
        self.obj.get(key).and_then(Value::as_str).unwrap_or("")
    }

    fn meta_str(&self, key: &str) -> &str {
        self.obj
            .get("metadata")
            .and_then(|m| m.get(key))
            .and_then(Value::as_str)
            .unwrap_or("")
    }

    /// metadata.name.
    pub fn name(&self) -> &str {
        self.meta_str("name")
    }

    /// metadata.namespace (empty when unset).
    pub fn namespace(&self) -> &str {
        self.meta_str("namespace")
    }

    /// The current id.
    pub fn cur_id(&self) -> ResId {
        ResId {
            gvk: self.gvk(),
            name: self.name().to_string(),
            namespace: self.namespace().to_string(),
        }
    }

    /// The id the object had when it entered the build.
    pub fn org_id(&self) -> ResId {
        self.prev_ids
            .first()
            .cloned()
            .unwrap_or_else(|| self.cur_id())
    }

    /// Records the current id before a rename or namespace change.
    pub fn store_previous_id(&mut self) {
        let mut id = self.cur_id();
        id.namespace = id.effective_namespace().to_string();
        self.prev_ids.push(id);
    }

    fn metadata_mut(&mut self) -> &mut Map<String, Value> {
        let meta = self
            .obj
            .entry("metadata")
            .or_insert_with(|| Value::Object(Map::new()));
        if !meta.is_object() {
            *meta = Value::Object(Map::new());
        }
        meta.as_object_mut()
            .expect("metadata was just made an object")
    }

    /// Sets metadata.name.
    pub fn set_name(&mut self, name: &str) {
        self.metadata_mut()
            .insert("name".into(), Value::String(name.into()));
    }

    /// Sets metadata.namespace.
    pub fn set_namespace(&mut self, ns: &str) {
        self.metadata_mut()
            .insert("namespace".into(), Value::String(ns.into()));
    }

    /// What kustomize's YAML write and read-back does to the object's nulls written as
    /// nothing (`key:`): inside a map or list written in flow style such a null goes
    /// out as `''` and comes back as an empty string; elsewhere it stays a null.
    /// kustomize writes every object out once at the end of a build and before a JSON
    /// patch, so this runs there (a strategic merge in between may drop them first).
    pub fn settle_flow_nulls(&mut self) {
        if self.flow_collections.is_empty() {
            return;
        }
        let in_flow = |parent: &str| {
            self.flow_collections.iter().any(|f| {
                parent == f
                    || (parent.len() > f.len()
                        && parent.starts_with(f.as_str())
                        && parent.as_bytes()[f.len()] == b'/')
            })
        };
        let settled: Vec<String> = self
            .unspelled_nulls
            .iter()
            .filter(|p| in_flow(p.rsplit_once('/').map_or("", |(parent, _)| parent)))
            .cloned()
            .collect();
        let mut obj = Value::Object(std::mem::take(&mut self.obj));
        for p in &settled {
            if let Some(v) = obj.pointer_mut(p)
                && v.is_null()
            {
                *v = Value::String(String::new());
            }
        }
        self.obj = match obj {
            Value::Object(m) => m,
            _ => Map::new(),
        };
        self.unspelled_nulls.retain(|p| !settled.contains(p));
    }

    /// Makes the object's values that are `unspelled` or `spelled` nulls, recording
    /// the first as nulls written as nothing and the second as spelled: a transformer
    /// that writes an empty text into a null (a replacement) leaves what kustomize
    /// would have read from `key:`, one that writes `~` what it reads from `~`.
    pub fn record_null_spellings(&mut self, unspelled: &str, spelled: &str) {
        fn walk(
            v: &mut Value,
            path: &mut String,
            marks: [&str; 2],
            found: &mut Vec<(String, bool)>,
        ) {
            match v {
                Value::Object(m) => {
                    for (k, item) in m.iter_mut() {
                        let len = path.len();
                        path.push('/');
                        path.push_str(&k.replace('~', "~0").replace('/', "~1"));
                        walk(item, path, marks, found);
                        path.truncate(len);
                    }
                }
                Value::Array(items) => {
                    for (i, item) in items.iter_mut().enumerate() {
                        let len = path.len();
                        path.push_str(&format!("/{i}"));
                        walk(item, path, marks, found);
                        path.truncate(len);
                    }
                }
                Value::String(s) if marks.contains(&s.as_str()) => {
                    found.push((path.clone(), s == marks[0]));
                    *v = Value::Null;
                }
                _ => {}
            }
        }
        let mut found = Vec::new();
        for (k, item) in self.obj.iter_mut() {
            let mut path = format!("/{}", k.replace('~', "~0").replace('/', "~1"));
            walk(item, &mut path, [unspelled, spelled], &mut found);
        }
        for (p, is_unspelled) in found {
            let known = self.unspelled_nulls.contains(&p);
            if is_unspelled && !known {
                self.unspelled_nulls.push(p);
            } else if !is_unspelled && known {
                self.unspelled_nulls.retain(|q| *q != p);
            }
        }
    }

    /// A string map under metadata (labels or annotations).
    pub fn meta_map(&self, key: &str) -> Map<String, Value> {
        self.obj
            .get("metadata")
            .and_then(|m| m.get(key))
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default()
    }
}

const ORDER_FIRST: &[&str] = &[
    "Namespace",
    "ResourceQuota",
    "StorageClass",
    "CustomResourceDefinition",
    "ServiceAccount",
    "PodSecurityPolicy",
    "Role",
    "ClusterRole",
    "RoleBinding",
    "ClusterRoleBinding",
    "ConfigMap",
    "Secret",
    "Endpoints",
    "Service",
    "LimitRange",
    "PriorityClass",
    "PersistentVolume",
    "PersistentVolumeClaim",
    "Deployment",
    "StatefulSet",
    "CronJob",
    "PodDisruptionBudget",
];
const ORDER_LAST: &[&str] = &[
    "MutatingWebhookConfiguration",
    "ValidatingWebhookConfiguration",
];

fn kind_rank(kind: &str) -> i64 {
    if let Some(i) = ORDER_FIRST.iter().position(|k| *k == kind) {
        return i as i64 - ORDER_FIRST.len() as i64;
    }
    if let Some(i) = ORDER_LAST.iter().position(|k| *k == kind) {
        return 1 + i as i64;
    }
    0
}

fn or_tilde<'a>(s: &'a str, t: &'a str) -> &'a str {
    if s.is_empty() { t } else { s }
}

fn gvk_sort_key(g: &Gvk) -> String {
    format!(
        "{}_{}_{}",
        or_tilde(&g.group, "~G"),
        or_tilde(&g.version, "~V"),
        or_tilde(&g.kind, "~K")
    )
}

/// kustomize puts the core Namespace before a Namespace kind of any other group (it
/// compares those two pairs in reverse) and otherwise orders kinds of one rank by
/// group, version and kind. Its comparison is not transitive when such a Namespace kind
/// shares a rank with other kinds; as a sort key the same rules give a total order,
/// which agrees with kustomize wherever kustomize's own is consistent: another group's
/// Namespace sorts right after the core Namespace.
fn gvk_order_key(g: &Gvk) -> String {
    let key = gvk_sort_key(g);
    if g.kind == "Namespace" && !g.group.is_empty() {
        format!("~G_v1_Namespace\u{1}{key}")
    } else {
        key
    }
}

fn id_sort_key(id: &ResId) -> String {
    format!(
        "{}_{}_{}|{}|{}",
        or_tilde(&id.gvk.kind, "~K"),
        or_tilde(&id.gvk.version, "~V"),
        or_tilde(&id.gvk.group, "~G"),
        or_tilde(&id.namespace, "~X"),
        or_tilde(&id.name, "~N")
    )
}

/// The order `kustomize build` prints objects in by default ("legacy" order):
/// namespaces and other foundations first, webhooks last, then by group/version/kind,
/// namespace and name.
pub fn legacy_order(a: &ResId, b: &ResId) -> std::cmp::Ordering {
    legacy_order_by(a, b, &kind_rank)
}

/// Legacy order with the kind ranks given by `rank` (negative first, positive last),
/// as `sortOptions.legacySortOptions` sets them.
pub fn legacy_order_by(a: &ResId, b: &ResId, rank: &dyn Fn(&str) -> i64) -> std::cmp::Ordering {
    if a.gvk != b.gvk {
        let (ra, rb) = (rank(&a.gvk.kind), rank(&b.gvk.kind));
        if ra != rb {
            return ra.cmp(&rb);
        }
        return gvk_order_key(&a.gvk).cmp(&gvk_order_key(&b.gvk));
    }
    id_sort_key(a).cmp(&id_sort_key(b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn resource(obj: Value, nulls: &[&str], flow: &[&str]) -> Resource {
        let mut r = Resource::new(obj.as_object().unwrap().clone(), "test");
        r.unspelled_nulls = nulls.iter().map(|p| p.to_string()).collect();
        r.flow_collections = flow.iter().map(|p| p.to_string()).collect();
        r
    }

    #[test]
    fn only_nulls_written_as_nothing_inside_flow_collections_become_empty_strings() {
        let mut r = resource(
            json!({"spec": {"flow": {"a": null, "b": null, "deep": [{"c": null}]},
                            "block": {"d": null}, "e": "set since"}}),
            &[
                "/spec/flow/a",
                "/spec/flow/deep/0/c",
                "/spec/block/d",
                "/spec/e",
            ],
            &["/spec/flow"],
        );
        r.settle_flow_nulls();
        assert_eq!(
            Value::Object(r.obj.clone()),
            json!({"spec": {"flow": {"a": "", "b": null, "deep": [{"c": ""}]},
                            "block": {"d": null}, "e": "set since"}})
        );
        // The block null is still written as nothing for a later strategic merge.
        assert_eq!(r.unspelled_nulls, vec!["/spec/block/d", "/spec/e"]);
        // A whole object in flow style.
        let mut r = resource(json!({"spec": {"a": null}}), &["/spec/a"], &[""]);
        r.settle_flow_nulls();
        assert_eq!(r.obj["spec"]["a"], json!(""));
        // A flow map whose name only starts like another's.
        let mut r = resource(json!({"ab": {"c": null}}), &["/ab/c"], &["/a"]);
        r.settle_flow_nulls();
        assert_eq!(r.obj["ab"]["c"], Value::Null);
    }

    #[test]
    fn marked_values_become_nulls_written_as_nothing_or_spelled() {
        let mut r = resource(
            json!({"spec": {"a/b": "M", "list": ["x", "M"], "keep": "m", "s": "S"}}),
            &["/spec/list/1", "/spec/s"],
            &[],
        );
        r.record_null_spellings("M", "S");
        assert_eq!(
            Value::Object(r.obj.clone()),
            json!({"spec": {"a/b": null, "list": ["x", null], "keep": "m", "s": null}})
        );
        let mut nulls = r.unspelled_nulls.clone();
        nulls.sort();
        assert_eq!(nulls, vec!["/spec/a~1b", "/spec/list/1"]);
    }
}
