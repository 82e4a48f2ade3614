//! Strategic merge patch as a real API server applies it
//! (`application/strategic-merge-patch+json`), directives included:
//! `$patch: replace | delete` on maps and list items, `$retainKeys`,
//! `$setElementOrder/<list>` and `$deleteFromPrimitiveList/<list>`.
//!
//! Why not the renderer's strategic merge ([`manifest::schema::strategic_merge`]): that
//! one reproduces `kustomize build`, which orders merged lists its own way and keeps
//! the parallel-list directives as ordinary fields. Clients that talk to a server
//! (client-side `kubectl apply`, `kubectl edit`, `kubectl patch`) send patches computed
//! for the server's semantics (`k8s.io/apimachinery/pkg/util/strategicpatch`): merged
//! lists keep the live order with new items placed by the patch, and a patch
//! carries `$setElementOrder/containers` whenever it touches a merged list. Both share
//! the merge keys of [`manifest::schema::list_strategy`].

use serde_json::{Map, Value};

use manifest::schema::{ListStrategy, list_strategy};

const DIRECTIVE: &str = "$patch";
const RETAIN_KEYS: &str = "$retainKeys";
const SET_ORDER: &str = "$setElementOrder/";
const DELETE_FROM: &str = "$deleteFromPrimitiveList/";

/// Why a strategic merge patch cannot be applied; the message is a real server's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct PatchError(String);

/// Applies `patch` to `target`, an object of `kind` in `group` (a built-in kind: custom
/// resources have no strategic merge).
pub fn apply_patch(
    group: &str,
    kind: &str,
    target: &Value,
    patch: &Value,
) -> Result<Value, PatchError> {
    let (Value::Object(t), Value::Object(p)) = (target, patch) else {
        return Err(PatchError("invalid JSON document".into()));
    };
    let schema = Schema { group, kind };
    let merged = schema.merge_map(t.clone(), p.clone(), &mut Vec::new())?;
    Ok(Value::Object(merged))
}

struct Schema<'a> {
    group: &'a str,
    kind: &'a str,
}

/// How a list field merges.
enum Strategy {
    Replace,
    Primitives,
    Key(&'static str),
}

impl Schema<'_> {
    fn strategy(&self, path: &[String]) -> Strategy {
        match list_strategy(self.group, self.kind, path) {
            ListStrategy::Replace => Strategy::Replace,
            ListStrategy::MergePrimitives => Strategy::Primitives,
            ListStrategy::MergeByKey(k) => Strategy::Key(k),
        }
    }

    fn merge_map(
        &self,
        mut original: Map<String, Value>,
        mut patch: Map<String, Value>,
        path: &mut Vec<String>,
    ) -> Result<Map<String, Value>, PatchError> {
        if let Some(d) = patch.get(DIRECTIVE) {
            return match d.as_str() {
                Some("replace") => {
                    patch.remove(DIRECTIVE);
                    Ok(patch)
                }
                Some("delete") => Ok(Map::new()),
                _ => Err(PatchError(format!(
                    "unknown patch type: {} in map: {}",
                    plain(d),
                    Value::Object(patch.clone())
                ))),
            };
        }
        retain_keys(&mut original, &mut patch)?;
        self.set_element_orders(&mut original, &mut patch, path)?;
        for (key, value) in patch {
            let (key, delete_list) = match key.strip_prefix(DELETE_FROM) {
                Some(list) => (list.to_string(), true),
                None => (key, false),
            };
            if value.is_null() {
                original.remove(&key);
                continue;
            }
            let Some(current) = original.remove(&key) else {
                // A deletion list for a list that is not there deletes nothing.
                if !delete_list {
                    original.insert(key, value);
                }
                continue;
            };
            path.push(key.clone());
            let merged = match (current, value) {
                (Value::Object(c), Value::Object(v)) => Value::Object(self.merge_map(c, v, path)?),
                (Value::Array(c), Value::Array(v)) => {
                    Value::Array(self.merge_list_field(c, v, path, delete_list)?)
                }
                (_, v) => v,
            };
            path.pop();
            original.insert(key, merged);
        }
        Ok(original)
    }

    fn merge_list_field(
        &self,
        original: Vec<Value>,
        patch: Vec<Value>,
        path: &[String],
        delete_list: bool,
    ) -> Result<Vec<Value>, PatchError> {
        match self.strategy(path) {
            Strategy::Replace => Ok(patch),
            Strategy::Primitives => Ok(merge_primitives(original, patch, delete_list)),
            Strategy::Key(key) => self.merge_keyed(original, patch, key, path),
        }
    }

    /// `$setElementOrder/<list>`: merges the list it names (when the patch has it) and
    /// puts the result in the given order, live-only items where they were.
    fn set_element_orders(
        &self,
        original: &mut Map<String, Value>,
        patch: &mut Map<String, Value>,
        path: &mut Vec<String>,
    ) -> Result<(), PatchError> {
        let keys: Vec<String> = patch
            .keys()
            .filter(|k| k.starts_with(SET_ORDER))
            .cloned()
            .collect();
        for directive in keys {
            let order = patch.remove(&directive).unwrap_or(Value::Null);
            let Value::Array(order) = order else {
                return Err(PatchError(
                    "invalid patch format of setElementOrder list".into(),
                ));
            };
            let field = directive[SET_ORDER.len()..].to_string();
            let current = original.get(&field).cloned();
            let patched = patch.remove(&field);
            path.push(field.clone());
            let strategy = self.strategy(path);
            let merged = match (current.clone(), patched) {
                (Some(Value::Array(c)), None) => c,
                (None, Some(Value::Array(p))) => p,
                (Some(Value::Array(c)), Some(Value::Array(p))) => match strategy {
                    Strategy::Replace => p,
                    Strategy::Primitives => merge_primitives(c, p, false),
                    Strategy::Key(key) => self.merge_keyed(c, p, key, path)?,
                },
                (None, None) => {
                    path.pop();
                    continue;
                }
                _ => {
                    path.pop();
                    return Err(PatchError(format!("invalid patch: {field} is not a list")));
                }
            };
            path.pop();
            let key = match strategy {
                Strategy::Key(k) => Some(k),
                _ => None,
            };
            let live: Vec<Value> = match current {
                Some(Value::Array(c)) => c,
                _ => Vec::new(),
            };
            let (in_order, live_only): (Vec<Value>, Vec<Value>) = merged
                .into_iter()
                .partition(|item| position(&order, item, key).is_some());
            let sorted = normalize_order(in_order, live_only, &order, &live, key);
            original.insert(field, Value::Array(sorted));
        }
        Ok(())
    }

    /// Merges a list whose items are matched by `key`, `$patch` items handled first.
    fn merge_keyed(
        &self,
        mut original: Vec<Value>,
        patch: Vec<Value>,
        key: &str,
        path: &[String],
    ) -> Result<Vec<Value>, PatchError> {
        if original.is_empty() && patch.is_empty() {
            return Ok(original);
        }
        if original.iter().chain(&patch).any(|v| !v.is_object()) {
            return Ok(merge_primitives(original, patch, false));
        }
        let mut plain_items = Vec::new();
        let mut replace = false;
        for item in patch {
            match item.get(DIRECTIVE) {
                None => plain_items.push(item),
                Some(d) => match d.as_str() {
                    Some("delete") => {
                        let Some(k) = item.get(key) else {
                            return Err(no_merge_key(&item, key));
                        };
                        original.retain(|o| o.get(key) != Some(k));
                    }
                    Some("replace") => replace = true,
                    Some("merge") => {
                        return Err(PatchError(
                            "merging lists cannot yet be specified in the patch".into(),
                        ));
                    }
                    _ => {
                        return Err(PatchError(format!(
                            "unknown patch type: {} in map: {item}",
                            plain(d)
                        )));
                    }
                },
            }
        }
        let (original, patch) = if replace {
            (plain_items, Vec::new())
        } else {
            (original, plain_items)
        };
        let mut merged = original.clone();
        for item in &patch {
            let Some(k) = item.get(key) else {
                return Err(no_merge_key(item, key));
            };
            match merged.iter().position(|o| o.get(key) == Some(k)) {
                Some(i) => {
                    let (Value::Object(o), Value::Object(p)) = (merged[i].clone(), item.clone())
                    else {
                        continue;
                    };
                    let mut item_path = path.to_vec();
                    merged[i] = Value::Object(self.merge_map(o, p, &mut item_path)?);
                }
                None => merged.push(item.clone()),
            }
        }
        let (from_patch, live_only): (Vec<Value>, Vec<Value>) = merged
            .into_iter()
            .partition(|item| position(&patch, item, Some(key)).is_some());
        Ok(normalize_order(
            from_patch,
            live_only,
            &patch,
            &original,
            Some(key),
        ))
    }
}

/// A list of scalars merged with a patch: the union (duplicates dropped), or with
/// `$deleteFromPrimitiveList` the live list without the patch's values.
fn merge_primitives(original: Vec<Value>, patch: Vec<Value>, delete_list: bool) -> Vec<Value> {
    if delete_list {
        return original
            .into_iter()
            .filter(|v| !patch.contains(v))
            .collect();
    }
    if original.is_empty() && patch.is_empty() {
        return original;
    }
    let mut merged: Vec<Value> = Vec::new();
    for v in original.iter().chain(&patch) {
        if !merged.contains(v) {
            merged.push(v.clone());
        }
    }
    let (from_patch, live_only): (Vec<Value>, Vec<Value>) = merged
        .into_iter()
        .partition(|v| position(&patch, v, None).is_some());
    normalize_order(from_patch, live_only, &patch, &original, None)
}

/// Where `item` is in `list`, by merge key (or by value for scalars).
fn position(list: &[Value], item: &Value, key: Option<&str>) -> Option<usize> {
    match key {
        Some(k) => {
            let want = item.get(k)?;
            list.iter().position(|v| v.get(k) == Some(want))
        }
        None => list.iter().position(|v| v == item),
    }
}

/// The order a real server gives a merged list: the patch's items in the patch's
/// order, the live-only items in the live order, interleaved so that a live-only item
/// goes before the first patch item that comes after it in the live list.
fn normalize_order(
    mut from_patch: Vec<Value>,
    mut live_only: Vec<Value>,
    patch_order: &[Value],
    live_order: &[Value],
    key: Option<&str>,
) -> Vec<Value> {
    from_patch.sort_by_key(|v| position(patch_order, v, key).unwrap_or(usize::MAX));
    live_only.sort_by_key(|v| position(live_order, v, key).unwrap_or(usize::MAX));
    let mut out = Vec::with_capacity(from_patch.len() + live_only.len());
    let mut patch_items = from_patch.into_iter().peekable();
    let mut live_items = live_only.into_iter().peekable();
    loop {
        match (live_items.peek(), patch_items.peek()) {
            (None, None) => break,
            (Some(_), None) => out.extend(live_items.next()),
            (None, Some(_)) => out.extend(patch_items.next()),
            (Some(l), Some(p)) => {
                let before = match (position(live_order, l, key), position(live_order, p, key)) {
                    (Some(a), Some(b)) => a < b,
                    _ => false,
                };
                if before {
                    out.extend(live_items.next());
                } else {
                    out.extend(patch_items.next());
                }
            }
        }
    }
    out
}

/// `$retainKeys`: live fields not listed go; every field the patch sets must be listed.
fn retain_keys(
    original: &mut Map<String, Value>,
    patch: &mut Map<String, Value>,
) -> Result<(), PatchError> {
    let Some(list) = patch.remove(RETAIN_KEYS) else {
        return Ok(());
    };
    let bad = || PatchError("invalid patch format of retainKeys".into());
    let Value::Array(list) = list else {
        return Err(bad());
    };
    let keep: Vec<&str> = list.iter().filter_map(Value::as_str).collect();
    for (k, v) in patch.iter() {
        if v.is_null() || k.starts_with(DELETE_FROM) || k.starts_with(SET_ORDER) {
            continue;
        }
        if !keep.contains(&k.as_str()) {
            return Err(bad());
        }
    }
    original.retain(|k, _| keep.contains(&k.as_str()));
    Ok(())
}

fn no_merge_key(item: &Value, key: &str) -> PatchError {
    PatchError(format!(
        "map: {item} does not contain declared merge key: {key}"
    ))
}

fn plain(v: &Value) -> String {
    v.as_str()
        .map(String::from)
        .unwrap_or_else(|| v.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn deployment(containers: Value) -> Value {
        json!({"spec": {"template": {"spec": {"containers": containers}}}})
    }

    fn patched(original: Value, patch: Value) -> Value {
        apply_patch("apps", "Deployment", &original, &patch).unwrap()
    }

    fn names(v: &Value) -> Vec<&str> {
        v["spec"]["template"]["spec"]["containers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect()
    }

    #[test]
    fn new_items_follow_the_live_ones_they_come_after() {
        let live = deployment(json!([{"name": "a"}, {"name": "b"}]));
        let out = patched(
            live,
            deployment(json!([{"name": "b", "image": "x"}, {"name": "c"}])),
        );
        assert_eq!(names(&out), ["a", "b", "c"]);
        assert_eq!(
            out["spec"]["template"]["spec"]["containers"][1]["image"],
            "x"
        );
    }

    #[test]
    fn set_element_order_decides_the_order_of_a_merged_list() {
        let live = deployment(json!([{"name": "a", "image": "1"}, {"name": "b"}]));
        let patch = json!({"spec": {"template": {"spec": {
            "$setElementOrder/containers": [{"name": "b"}, {"name": "a"}],
            "containers": [{"name": "a", "image": "2"}]}}}});
        let out = patched(live, patch);
        assert_eq!(names(&out), ["b", "a"]);
        assert_eq!(
            out["spec"]["template"]["spec"]["containers"][1]["image"],
            "2"
        );
    }

    #[test]
    fn client_side_apply_of_a_new_image_changes_only_the_image() {
        let live = deployment(json!([{"name": "web", "image": "nginx:1.27",
            "imagePullPolicy": "IfNotPresent"}]));
        let patch = json!({"spec": {"template": {"spec": {
            "$setElementOrder/containers": [{"name": "web"}],
            "containers": [{"image": "nginx:1.28", "name": "web"}]}}}});
        let out = patched(live, patch);
        assert_eq!(
            out["spec"]["template"]["spec"]["containers"],
            json!([{"name": "web", "image": "nginx:1.28", "imagePullPolicy": "IfNotPresent"}])
        );
    }

    #[test]
    fn retain_keys_clears_fields_it_does_not_list() {
        let live = json!({"spec": {"strategy": {"type": "RollingUpdate",
            "rollingUpdate": {"maxSurge": 1}}}});
        let patch = json!({"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}}});
        assert_eq!(
            patched(live, patch)["spec"]["strategy"],
            json!({"type": "Recreate"})
        );
        let bad = json!({"spec": {"strategy": {"$retainKeys": ["type"], "rollingUpdate": {}}}});
        let live = json!({"spec": {"strategy": {"type": "RollingUpdate"}}});
        assert!(apply_patch("apps", "Deployment", &live, &bad).is_err());
    }

    #[test]
    fn delete_from_primitive_list_removes_values_from_a_merged_scalar_list() {
        let live = json!({"metadata": {"finalizers": ["a", "b"]}});
        let patch = json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["a"],
            "finalizers": ["c"]}});
        let out = apply_patch("", "ConfigMap", &live, &patch).unwrap();
        assert_eq!(out["metadata"]["finalizers"], json!(["c", "b"]));
    }

    #[test]
    fn patch_directives_delete_replace_and_refuse_merge() {
        let live = deployment(json!([{"name": "a"}, {"name": "b"}]));
        let out = patched(
            live.clone(),
            deployment(json!([{"name": "a", "$patch": "delete"}])),
        );
        assert_eq!(names(&out), ["b"]);
        let out = patched(
            live.clone(),
            deployment(json!([{"name": "z"}, {"$patch": "replace"}])),
        );
        assert_eq!(names(&out), ["z"]);
        let err = apply_patch(
            "apps",
            "Deployment",
            &live,
            &deployment(json!([{"$patch": "merge"}])),
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "merging lists cannot yet be specified in the patch"
        );
        let maps = json!({"metadata": {"labels": {"$patch": "replace", "x": "1"},
            "annotations": {"$patch": "delete"}}});
        let out = apply_patch(
            "",
            "ConfigMap",
            &json!({"metadata": {"labels": {"a": "1"}, "annotations": {"b": "2"}}}),
            &maps,
        )
        .unwrap();
        assert_eq!(
            out["metadata"],
            json!({"labels": {"x": "1"}, "annotations": {}})
        );
    }
}
