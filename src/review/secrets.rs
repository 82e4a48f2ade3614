//! Secret values never reach a review: CI logs and pull-request comments are read by
//! more people than the repository's secrets should be. As `kubectl diff` does, every
//! value of a Secret's `data` and `stringData` becomes `***`, or `*** (before)` and
//! `*** (after)` where it changed, so a reviewer sees which keys change and nothing
//! of their values. The `kubectl.kubernetes.io/last-applied-configuration` annotation of
//! a Secret, which holds its values, is masked the same way.

use serde_json::{Map, Value};

/// What stands for a value.
const MASK: &str = "***";

const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// Whether an object is a core Secret.
fn is_secret(obj: &Value) -> bool {
    obj.get("kind").and_then(Value::as_str) == Some("Secret")
        && obj.get("apiVersion").and_then(Value::as_str) == Some("v1")
}

/// The two sides of a change with their Secret values masked (an object that is not
/// a Secret on either side is returned as it is).
pub fn masked_pair(
    before: Option<&Value>,
    after: Option<&Value>,
) -> (Option<Value>, Option<Value>) {
    let mut before = before.cloned();
    let mut after = after.cloned();
    if !before.iter().chain(after.iter()).any(is_secret) {
        return (before, after);
    }
    for field in ["data", "stringData"] {
        let old = before.as_ref().and_then(|o| o.get(field)).cloned();
        let new = after.as_ref().and_then(|o| o.get(field)).cloned();
        if let Some(b) = before.as_mut().and_then(|o| o.get_mut(field)) {
            *b = mask_map(b, new.as_ref(), "(before)");
        }
        if let Some(a) = after.as_mut().and_then(|o| o.get_mut(field)) {
            *a = mask_map(a, old.as_ref(), "(after)");
        }
    }
    for side in [&mut before, &mut after].into_iter().flatten() {
        if let Some(Value::Object(a)) = side.pointer_mut("/metadata/annotations")
            && let Some(v) = a.get_mut(LAST_APPLIED)
        {
            *v = Value::String(MASK.into());
        }
    }
    (before, after)
}

/// `values` with each value masked; `(before)`/`(after)` marks a key whose value
/// differs in `other`.
fn mask_map(values: &Value, other: Option<&Value>, mark: &str) -> Value {
    let Value::Object(m) = values else {
        // Not a map (malformed): nothing of it is shown.
        return Value::String(MASK.into());
    };
    let masked: Map<String, Value> = m
        .iter()
        .map(|(k, v)| {
            let same = other.and_then(|o| o.get(k)).is_some_and(|o| o == v);
            let changed = other.and_then(|o| o.get(k)).is_some() && !same;
            let text = if changed {
                format!("{MASK} {mark}")
            } else {
                MASK.to_string()
            };
            (k.clone(), Value::String(text))
        })
        .collect();
    Value::Object(masked)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn values_are_masked_and_changed_keys_marked() {
        let before = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s",
            "annotations": {LAST_APPLIED: "{\"data\":{\"a\":\"c2VjcmV0\"}}"}},
            "data": {"a": "c2VjcmV0", "b": "eA=="}, "stringData": {"p": "hunter2"}});
        let after = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"},
            "data": {"a": "bmV3", "b": "eA==", "c": "eQ=="}, "stringData": {"p": "hunter2"}});
        let (b, a) = masked_pair(Some(&before), Some(&after));
        let (b, a) = (b.unwrap(), a.unwrap());
        assert_eq!(b["data"], json!({"a": "*** (before)", "b": "***"}));
        assert_eq!(
            a["data"],
            json!({"a": "*** (after)", "b": "***", "c": "***"})
        );
        assert_eq!(a["stringData"], json!({"p": "***"}));
        assert_eq!(b["metadata"]["annotations"][LAST_APPLIED], "***");
        let text = format!("{b}{a}");
        for secret in ["c2VjcmV0", "bmV3", "hunter2", "eA=="] {
            assert!(!text.contains(secret), "{text}");
        }
    }

    #[test]
    fn other_objects_are_left_alone() {
        let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "data": {"a": "1"}});
        assert_eq!(masked_pair(Some(&cm), None).0, Some(cm));
    }
}
