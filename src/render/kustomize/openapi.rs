//! `openapi`: a schema (Swagger `definitions` with `x-kubernetes-group-version-kind`)
//! that tells strategic merge how the lists of custom kinds merge
//! (`x-kubernetes-patch-merge-key`, `x-kubernetes-patch-strategy`), as kustomize's
//! `openapi.path` does. As in kustomize, the first kustomization loaded that names a
//! schema sets it for the rest of the build; `openapi.version` may only name the
//! version kustomize has built in.

use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, OnceLock};

use serde_json::{Map, Value};

use super::resource::Gvk;
use crate::schema::ListStrategy;

/// The Kubernetes version whose schema kustomize v5 has built in.
pub const BUILTIN_VERSION: &str = "v1.21.2";

/// Deepest `$ref` chain followed (a schema may refer to itself).
const MAX_DEPTH: usize = 64;

/// Most distinct merge-key names kept for the process (each is kept for good, so
/// schemas can be shared with the merge code without copying); beyond it a list merges
/// by the built-in rules.
const MAX_INTERNED_KEYS: usize = 1_000;

fn intern(key: &str) -> Option<&'static str> {
    static KEYS: OnceLock<Mutex<HashSet<&'static str>>> = OnceLock::new();
    let mut keys = KEYS.get_or_init(Default::default).lock().ok()?;
    if let Some(k) = keys.get(key) {
        return Some(k);
    }
    if keys.len() >= MAX_INTERNED_KEYS {
        return None;
    }
    let leaked: &'static str = Box::leak(key.to_string().into_boxed_str());
    keys.insert(leaked);
    Some(leaked)
}

/// A parsed schema file.
#[derive(Debug, Default)]
pub struct OpenApiSchema {
    definitions: Map<String, Value>,
    roots: HashMap<(String, String, String), String>,
    /// Loaded after kustomize had read its built-in schema, whose definitions it then
    /// keeps: a `$ref` the file does not define (`io.k8s.api.core.v1.PodTemplateSpec`)
    /// is resolved there instead of leaving its lists without a merge strategy.
    over_builtin: bool,
}

impl OpenApiSchema {
    /// Reads a schema document (JSON or YAML already parsed); `over_builtin`: see the
    /// field of that name.
    pub fn parse(doc: &Value, over_builtin: bool) -> Self {
        let definitions = doc
            .get("definitions")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        let mut roots = HashMap::new();
        for (name, def) in &definitions {
            if let Some(Value::Array(gvks)) = def.get("x-kubernetes-group-version-kind") {
                for g in gvks {
                    let text = |k: &str| g.get(k).and_then(Value::as_str).unwrap_or("").to_string();
                    roots
                        .entry((text("group"), text("version"), text("kind")))
                        .or_insert_with(|| name.clone());
                }
            }
        }
        OpenApiSchema {
            definitions,
            roots,
            over_builtin,
        }
    }

    fn resolve<'a>(&'a self, mut schema: &'a Value) -> &'a Value {
        for _ in 0..MAX_DEPTH {
            match schema.get("$ref").and_then(Value::as_str) {
                Some(r) => match self
                    .definitions
                    .get(r.strip_prefix("#/definitions/").unwrap_or(r))
                {
                    Some(next) => schema = next,
                    None => return schema,
                },
                None => return schema,
            }
        }
        schema
    }

    /// How the list at `path` of an object of `gvk` merges, when the schema knows it.
    pub fn strategy(&self, gvk: &Gvk, path: &[String]) -> Option<ListStrategy> {
        let root = self
            .roots
            .get(&(gvk.group.clone(), gvk.version.clone(), gvk.kind.clone()))?;
        let mut schema = self.definitions.get(root)?;
        let mut prop: Option<&Value> = None;
        for seg in path {
            let mut cur = self.resolve(schema);
            if let Some(items) = cur.get("items") {
                cur = self.resolve(items);
            }
            if cur.get("$ref").is_some() {
                // A type the file refers to without defining it: a built-in type when
                // kustomize still holds its built-in schema, else unknown, and then
                // its lists are replaced.
                return Some(if self.over_builtin {
                    crate::schema::list_strategy("", "", path)
                } else {
                    ListStrategy::Replace
                });
            }
            let p = cur.get("properties")?.get(seg)?;
            prop = Some(p);
            schema = p;
        }
        let p = prop?;
        let strategy = p
            .get("x-kubernetes-patch-strategy")
            .and_then(Value::as_str)
            .unwrap_or("");
        if strategy.split(',').any(|s| s == "merge") {
            return Some(
                match p
                    .get("x-kubernetes-patch-merge-key")
                    .and_then(Value::as_str)
                {
                    Some(k) => match intern(k) {
                        Some(k) => ListStrategy::MergeByKey(k),
                        None => return None,
                    },
                    None => ListStrategy::MergePrimitives,
                },
            );
        }
        Some(ListStrategy::Replace)
    }
}
