//! Whether the hub holds an object as `hub init` makes it. Pure: an object `hub init`
//! wants and what the hub returned, in; the first field that differs, out.
//!
//! Only the fields `hub init` sets are compared. The hub adds its own (uid,
//! managedFields, a namespace's `kubernetes.io/metadata.name` label), and each agent
//! adds its status to its object: none of that is a difference. Lists must match
//! element for element (a Role with one more rule or one more resourceName grants
//! more than `hub init` means to).

use serde_json::Value;

/// How an object on the hub differs from what `hub init` makes.
#[derive(Debug, Clone, PartialEq)]
pub enum Difference {
    /// The hub has no such object.
    Missing,
    /// The field at `path` is not what `hub init` sets.
    Field {
        /// Where, as `rules[0].verbs` or `metadata.labels["rollwave.io/status"]`.
        path: String,
        /// What `hub init` sets.
        want: Value,
        /// What the hub has (`Null` when the field is absent).
        have: Value,
    },
}

impl std::fmt::Display for Difference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Difference::Missing => f.write_str("missing"),
            Difference::Field { path, want, have } if have.is_null() => {
                write!(f, "{path} is not set, want {want}")
            }
            Difference::Field { path, want, have } => {
                write!(f, "{path} is {have}, want {want}")
            }
        }
    }
}

/// How `live` (`None`: absent) differs from `want`, or `None` when it holds every
/// field of `want` as `want` has it.
pub fn compare(want: &Value, live: Option<&Value>) -> Option<Difference> {
    let Some(live) = live else {
        return Some(Difference::Missing);
    };
    let fields = want.as_object()?;
    fields
        .iter()
        .filter(|(k, _)| !matches!(k.as_str(), "apiVersion" | "kind"))
        .find_map(|(k, v)| within(v, &live[k.as_str()], key(String::new(), k)))
}

/// `path` extended by the object key `k`.
fn key(path: String, k: &str) -> String {
    let plain = !k.is_empty() && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
    match (plain, path.is_empty()) {
        (true, true) => k.to_string(),
        (true, false) => format!("{path}.{k}"),
        (false, _) => format!("{path}[{}]", Value::from(k)),
    }
}

/// The first place where `have` lacks what `want` says.
fn within(want: &Value, have: &Value, path: String) -> Option<Difference> {
    let differs = |path: String| {
        Some(Difference::Field {
            path,
            want: want.clone(),
            have: have.clone(),
        })
    };
    match (want, have) {
        (Value::Object(w), Value::Object(h)) => w
            .iter()
            .find_map(|(k, v)| within(v, h.get(k).unwrap_or(&Value::Null), key(path.clone(), k))),
        (Value::Array(w), Value::Array(h)) if w.len() == h.len() => w
            .iter()
            .zip(h)
            .enumerate()
            .find_map(|(i, (w, h))| within(w, h, format!("{path}[{i}]"))),
        _ if want == have => None,
        _ => differs(path),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn role() -> Value {
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
               "metadata": {"name": "w", "namespace": "ns", "labels": {"a.io/b": "c"}},
               "rules": [{"apiGroups": [""], "resources": ["configmaps"],
                          "resourceNames": ["p1"], "verbs": ["get", "patch"]}]})
    }

    #[test]
    fn what_the_hub_adds_is_no_difference() {
        let mut live = role();
        live["metadata"]["uid"] = json!("123");
        live["metadata"]["labels"]["other"] = json!("x");
        live["metadata"]["managedFields"] = json!([{"manager": "m"}]);
        live.as_object_mut().unwrap().remove("apiVersion");
        assert_eq!(compare(&role(), Some(&live)), None);
        // A status written into its object is no difference either.
        let cm = json!({"metadata": {"name": "p1", "labels": {"rollwave.io/status": "true"}}});
        let written = json!({"metadata": {"name": "p1", "labels": {"rollwave.io/status": "true"}},
                             "data": {"status.json": "{}"}});
        assert_eq!(compare(&cm, Some(&written)), None);
    }

    #[test]
    fn an_absent_object_is_missing() {
        assert_eq!(compare(&role(), None), Some(Difference::Missing));
        assert_eq!(Difference::Missing.to_string(), "missing");
    }

    #[test]
    fn a_list_with_more_or_other_entries_differs_and_says_where() {
        let mut live = role();
        live["rules"][0]["verbs"] = json!(["get", "patch", "create"]);
        assert_eq!(
            compare(&role(), Some(&live)).unwrap().to_string(),
            r#"rules[0].verbs is ["get","patch","create"], want ["get","patch"]"#
        );
        let mut live = role();
        live["rules"][0]["resourceNames"] = json!(["p2"]);
        assert_eq!(
            compare(&role(), Some(&live)).unwrap().to_string(),
            r#"rules[0].resourceNames[0] is "p2", want "p1""#
        );
    }

    #[test]
    fn a_missing_label_is_named_with_its_key() {
        let mut live = role();
        live["metadata"]["labels"] = json!({});
        assert_eq!(
            compare(&role(), Some(&live)).unwrap().to_string(),
            r#"metadata.labels["a.io/b"] is not set, want "c""#
        );
    }
}
