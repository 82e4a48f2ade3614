//! Whether a live object already is what rollwave would apply: every field of the
//! desired object present in the live one with the same value (the server may add
//! defaults and others may own extra fields), and rollwave's own managed fields exactly
//! the desired set (otherwise an apply would still remove or take over something).
//! Pure; this is what lets a steady-state reconcile make no write at all.

use serde_json::Value;

use crate::fieldset::{ListShape, ListShapes, fields_of, from_fields_v1, item_key};

/// The field manager rollwave applies with.
pub const FIELD_MANAGER: &str = "rollwave";

/// Why a live object needs an apply, or that it does not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sync {
    /// Nothing to do.
    InSync,
    /// The object does not exist.
    Missing,
    /// A field differs (dotted path).
    Differs(String),
    /// rollwave's managed fields are not the desired ones.
    Ownership,
}

fn group_kind(obj: &Value) -> (String, String) {
    let av = obj["apiVersion"].as_str().unwrap_or("");
    let group = av.rsplit_once('/').map(|(g, _)| g).unwrap_or("");
    (
        group.to_string(),
        obj["kind"].as_str().unwrap_or("").to_string(),
    )
}

/// Compares desired with live.
pub fn sync_state(desired: &Value, live: Option<&Value>) -> Sync {
    let Some(live) = live else {
        return Sync::Missing;
    };
    let (group, kind) = group_kind(desired);
    let shapes = ListShapes::new(&group, &kind, None);
    let mut path = Vec::new();
    if let Some(p) = first_difference(desired, live, &shapes, &mut path) {
        return Sync::Differs(p);
    }
    let mut scoped = desired.clone();
    if let Some(m) = scoped.as_object_mut() {
        m.remove("apiVersion");
        m.remove("kind");
        m.remove("status");
        if let Some(meta) = m.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.remove("name");
            meta.remove("namespace");
        }
    }
    let Ok(want) = fields_of(&scoped, &shapes) else {
        return Sync::Ownership;
    };
    let owned = live["metadata"]["managedFields"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|e| {
            e["manager"] == FIELD_MANAGER
                && e["operation"] == "Apply"
                && e["subresource"].as_str().unwrap_or("").is_empty()
        })
        .map(|e| from_fields_v1(&e["fieldsV1"]))
        .unwrap_or_default();
    if owned != want {
        return Sync::Ownership;
    }
    Sync::InSync
}

/// The first path where `desired` is not contained in `live`.
fn first_difference(
    desired: &Value,
    live: &Value,
    shapes: &ListShapes,
    path: &mut Vec<String>,
) -> Option<String> {
    match (desired, live) {
        (Value::Object(d), Value::Object(l)) => {
            for (k, dv) in d {
                if path.is_empty() && k == "status" {
                    continue;
                }
                path.push(k.clone());
                let r = match l.get(k) {
                    Some(lv) => first_difference(dv, lv, shapes, path),
                    None if dv.is_null() => None,
                    None => Some(path.join(".")),
                };
                path.pop();
                if r.is_some() {
                    return r;
                }
            }
            None
        }
        (Value::Array(d), Value::Array(l)) => match shapes.list(path) {
            ListShape::Map(keys) => {
                for item in d {
                    let Ok(k) = item_key(item, &keys) else {
                        return Some(path.join("."));
                    };
                    let Some(live_item) = l
                        .iter()
                        .find(|x| item_key(x, &keys).ok().as_ref() == Some(&k))
                    else {
                        return Some(path.join("."));
                    };
                    if let Some(p) = first_difference(item, live_item, shapes, path) {
                        return Some(p);
                    }
                }
                None
            }
            ListShape::Set => d.iter().any(|x| !l.contains(x)).then(|| path.join(".")),
            ListShape::Atomic => {
                if d.len() != l.len() {
                    return Some(path.join("."));
                }
                d.iter()
                    .zip(l)
                    .find_map(|(a, b)| first_difference(a, b, shapes, path))
            }
        },
        (Value::Number(a), Value::Number(b)) => (a.as_f64() != b.as_f64()).then(|| path.join(".")),
        (d, l) => (d != l).then(|| path.join(".")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn desired() -> Value {
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "n",
            "labels": {"app": "x"}}, "data": {"a": "1"}})
    }

    fn live_owned(data: Value, owned: Value) -> Value {
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "n",
            "labels": {"app": "x", "extra": "y"}, "uid": "u", "resourceVersion": "5",
            "managedFields": [{"manager": "rollwave", "operation": "Apply", "fieldsType": "FieldsV1", "fieldsV1": owned}]},
            "data": data})
    }

    #[test]
    fn a_live_object_with_extra_fields_and_exact_ownership_is_in_sync() {
        let owned = json!({"f:metadata": {"f:labels": {"f:app": {}}}, "f:data": {"f:a": {}}});
        assert_eq!(
            sync_state(
                &desired(),
                Some(&live_owned(json!({"a": "1", "b": "2"}), owned))
            ),
            Sync::InSync
        );
    }

    #[test]
    fn changed_values_missing_objects_and_stale_ownership_need_an_apply() {
        let owned = json!({"f:metadata": {"f:labels": {"f:app": {}}}, "f:data": {"f:a": {}}});
        assert_eq!(
            sync_state(&desired(), Some(&live_owned(json!({"a": "2"}), owned))),
            Sync::Differs("data.a".into())
        );
        assert_eq!(sync_state(&desired(), None), Sync::Missing);
        let more =
            json!({"f:metadata": {"f:labels": {"f:app": {}}}, "f:data": {"f:a": {}, "f:old": {}}});
        assert_eq!(
            sync_state(&desired(), Some(&live_owned(json!({"a": "1"}), more))),
            Sync::Ownership
        );
    }
}
