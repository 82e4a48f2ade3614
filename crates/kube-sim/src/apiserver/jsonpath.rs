//! The JSONPath a CRD's `additionalPrinterColumns` use (`.spec.size`,
//! `.status.conditions[?(@.type=="Ready")].status`, `.items[0]`, `.a['dotted.key']`),
//! evaluated against an object for its Table cell. A real server accepts the
//! "simple" JSONPath of client-go; this covers the same forms.

use serde_json::Value;

#[derive(Debug, PartialEq)]
enum Step {
    Field(String),
    Index(i64),
    All,
    Filter(Vec<String>, Value),
}

fn parse(path: &str) -> Option<Vec<Step>> {
    let p = path.trim().trim_start_matches('{').trim_end_matches('}');
    let p = p.strip_prefix('$').unwrap_or(p);
    let b = p.as_bytes();
    let mut steps = Vec::new();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'.' => {
                let start = i + 1;
                let mut end = start;
                while end < b.len() && b[end] != b'.' && b[end] != b'[' {
                    end += 1;
                }
                if end > start {
                    steps.push(Step::Field(p[start..end].to_string()));
                }
                i = end;
            }
            b'[' => {
                let close = p[i..].find(']')? + i;
                let inner = p[i + 1..close].trim();
                let step = if inner == "*" {
                    Step::All
                } else if let Some(f) = inner.strip_prefix("?(").and_then(|f| f.strip_suffix(')')) {
                    let (lhs, rhs) = f.split_once("==")?;
                    let field: Vec<String> = lhs
                        .trim()
                        .strip_prefix("@.")?
                        .split('.')
                        .map(String::from)
                        .collect();
                    let rhs = rhs.trim();
                    let value = if let Some(q) = rhs
                        .strip_prefix('"')
                        .and_then(|r| r.strip_suffix('"'))
                        .or_else(|| rhs.strip_prefix('\'').and_then(|r| r.strip_suffix('\'')))
                    {
                        Value::String(q.to_string())
                    } else {
                        serde_json::from_str(rhs).ok()?
                    };
                    Step::Filter(field, value)
                } else if let Some(q) = inner
                    .strip_prefix('\'')
                    .and_then(|r| r.strip_suffix('\''))
                    .or_else(|| inner.strip_prefix('"').and_then(|r| r.strip_suffix('"')))
                {
                    Step::Field(q.to_string())
                } else {
                    Step::Index(inner.parse().ok()?)
                };
                steps.push(step);
                i = close + 1;
            }
            _ => return None,
        }
    }
    Some(steps)
}

/// The first value `path` finds in `obj`, if any.
pub fn first<'a>(obj: &'a Value, path: &str) -> Option<&'a Value> {
    let steps = parse(path)?;
    let mut current: Vec<&Value> = vec![obj];
    for step in &steps {
        let mut next = Vec::new();
        for v in current {
            match step {
                Step::Field(f) => next.extend(v.get(f)),
                Step::Index(n) => {
                    let a = v.as_array().map(Vec::as_slice).unwrap_or(&[]);
                    let idx = if *n < 0 { a.len() as i64 + n } else { *n };
                    next.extend(usize::try_from(idx).ok().and_then(|i| a.get(i)));
                }
                Step::All => match v {
                    Value::Array(a) => next.extend(a.iter()),
                    Value::Object(m) => next.extend(m.values()),
                    _ => {}
                },
                Step::Filter(field, want) => {
                    for item in v.as_array().into_iter().flatten() {
                        let got = field.iter().try_fold(item, |x, f| x.get(f));
                        if got == Some(want) {
                            next.push(item);
                        }
                    }
                }
            }
        }
        current = next;
    }
    current.into_iter().next()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn printer_column_paths_find_their_values() {
        let obj = json!({"metadata": {"labels": {"app.kubernetes.io/name": "w"}},
            "spec": {"size": 3, "hosts": ["a", "b"]},
            "status": {"conditions": [{"type": "Synced", "status": "False"},
                {"type": "Ready", "status": "True"}]}});
        assert_eq!(first(&obj, ".spec.size"), Some(&json!(3)));
        assert_eq!(first(&obj, ".spec.hosts[1]"), Some(&json!("b")));
        assert_eq!(first(&obj, ".spec.hosts[*]"), Some(&json!("a")));
        assert_eq!(
            first(&obj, r#".status.conditions[?(@.type=="Ready")].status"#),
            Some(&json!("True"))
        );
        assert_eq!(
            first(&obj, ".metadata.labels['app.kubernetes.io/name']"),
            Some(&json!("w"))
        );
        assert_eq!(first(&obj, ".spec.missing"), None);
    }
}
