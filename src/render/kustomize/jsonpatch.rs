//! JSON 6902 patches applied as kustomize applies them (evanphx/json-patch v4), which
//! differs from RFC 6902 in ways real kustomizations rely on: array indexes are read
//! like Go's `strconv.Atoi` (`01` and `+1` are 1) and may be negative (`-1` is the
//! last element; for `add`, the position before the end), `replace` on a missing map
//! key adds it, `test` of a missing field against `null` passes, and `copy` of a
//! missing field copies `null`. A null value in the document counts as missing when
//! a path goes through it.

use serde_json::Value;

/// One operation of a JSON 6902 patch.
#[derive(Debug, Clone, PartialEq)]
pub struct Op {
    /// `add`, `remove`, `replace`, `move`, `copy` or `test`.
    pub op: String,
    /// Where it applies (`None` when the operation has no `path`).
    pub path: Option<String>,
    /// Where `move` and `copy` read.
    pub from: Option<String>,
    /// The value of `add`, `replace` and `test`; `null` when absent.
    pub value: Value,
}

/// A parsed JSON 6902 patch.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Ops(pub Vec<Op>);

/// Why a JSON 6902 patch could not be read or applied, naming the operation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct PatchError(pub String);

/// Reads a list of operations (already parsed from YAML or JSON).
pub fn parse(doc: &Value) -> Result<Ops, PatchError> {
    parse_ops(doc).map_err(PatchError)
}

fn parse_ops(doc: &Value) -> Result<Ops, String> {
    let Value::Array(items) = doc else {
        return Err("a JSON 6902 patch is a list of operations".into());
    };
    let mut ops = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let Value::Object(m) = item else {
            return Err(format!("operation {i} is not a map"));
        };
        let text = |k: &str| -> Result<Option<String>, String> {
            match m.get(k) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) => Ok(Some(s.clone())),
                Some(_) => Err(format!("operation {i}: '{k}' must be a string")),
            }
        };
        ops.push(Op {
            op: text("op")?.unwrap_or_default(),
            path: text("path")?,
            from: text("from")?,
            value: m.get("value").cloned().unwrap_or(Value::Null),
        });
    }
    Ok(Ops(ops))
}

/// Applies `ops` to `doc` in order; the first failing operation stops with a message
/// naming it.
pub fn apply(doc: &mut Value, ops: &Ops) -> Result<(), PatchError> {
    apply_ops(doc, ops).map_err(PatchError)
}

fn apply_ops(doc: &mut Value, ops: &Ops) -> Result<(), String> {
    for (i, op) in ops.0.iter().enumerate() {
        apply_one(doc, op).map_err(|e| format!("operation {i} ({} {}): {e}", op.op, shown(op)))?;
    }
    Ok(())
}

fn shown(op: &Op) -> String {
    match (&op.from, &op.path) {
        (Some(f), Some(p)) => format!("from '{f}' to '{p}'"),
        (_, Some(p)) => format!("'{p}'"),
        _ => "without a path".into(),
    }
}

fn apply_one(doc: &mut Value, op: &Op) -> Result<(), String> {
    let path = || op.path.as_deref().ok_or("the operation has no 'path'");
    let from = || op.from.as_deref().ok_or("the operation has no 'from'");
    match op.op.as_str() {
        "add" => {
            let (parent, key) = find(doc, path()?)?;
            add(parent, &key, op.value.clone())
        }
        "remove" => {
            let (parent, key) = find(doc, path()?)?;
            remove(parent, &key).map(drop)
        }
        "replace" => {
            let (parent, key) = find(doc, path()?)?;
            get(parent, &key)?;
            set(parent, &key, op.value.clone())
        }
        "move" => {
            let (parent, key) = find(doc, from()?)?;
            get(parent, &key)?;
            let value = remove(parent, &key)?;
            let (parent, key) = find(doc, path()?)?;
            add(parent, &key, value)
        }
        "copy" => {
            let (parent, key) = find(doc, from()?)?;
            let value = get(parent, &key)?.cloned().unwrap_or(Value::Null);
            let (parent, key) = find(doc, path()?)?;
            add(parent, &key, value)
        }
        "test" => {
            let (parent, key) = find(doc, path()?)?;
            let found = get(parent, &key)?.filter(|v| !v.is_null());
            match found {
                None if op.value.is_null() => Ok(()),
                Some(v) if *v == op.value => Ok(()),
                _ => Err("the test failed: the value differs".into()),
            }
        }
        "" => Err("the operation has no 'op'".into()),
        other => Err(format!(
            "unknown op '{other}', expected add, remove, replace, move, copy or test"
        )),
    }
}

/// RFC 6901 unescaping: `~1` is `/`, then `~0` is `~`.
fn unescape(part: &str) -> String {
    let mut out = String::with_capacity(part.len());
    let mut chars = part.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '~' {
            match chars.peek() {
                Some('1') => {
                    chars.next();
                    out.push('/');
                    continue;
                }
                Some('0') => {
                    chars.next();
                    out.push('~');
                    continue;
                }
                _ => {}
            }
        }
        out.push(c);
    }
    out
}

/// Go's `strconv.Atoi`: optional sign, decimal digits, no spaces.
fn atoi(key: &str) -> Result<i64, String> {
    let digits = key.strip_prefix(['+', '-']).unwrap_or(key);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("'{key}' is not an array index"));
    }
    key.parse::<i64>()
        .map_err(|_| format!("'{key}' is out of range for an array index"))
}

/// A negative index counts from `len`; `None` when it is still out of range.
fn resolve(idx: i64, len: usize) -> Option<usize> {
    let len = len as i64;
    let idx = if idx < 0 { idx + len } else { idx };
    (0..len).contains(&idx).then_some(idx as usize)
}

/// The container holding the last segment of `path`, and that segment, unescaped.
/// As in kustomize, the text before the first `/` is ignored.
fn find<'a>(doc: &'a mut Value, path: &str) -> Result<(&'a mut Value, String), String> {
    let split: Vec<&str> = path.split('/').collect();
    if split.len() < 2 {
        return Err("the path does not exist in the object".into());
    }
    let mut node = doc;
    for part in &split[1..split.len() - 1] {
        let part = unescape(part);
        let next = match node {
            Value::Object(m) => m.get_mut(&part),
            Value::Array(items) => {
                let len = items.len();
                atoi(&part)
                    .ok()
                    .and_then(|i| resolve(i, len))
                    .and_then(|i| items.get_mut(i))
            }
            _ => None,
        };
        match next {
            Some(n) if n.is_object() || n.is_array() => node = n,
            _ => return Err("the path does not exist in the object".into()),
        }
    }
    Ok((node, unescape(split[split.len() - 1])))
}

/// The value at `key`: `None` for a missing map key; an error for a bad array index.
fn get<'a>(parent: &'a Value, key: &str) -> Result<Option<&'a Value>, String> {
    match parent {
        Value::Object(m) => Ok(m.get(key)),
        Value::Array(items) => {
            let i = resolve(atoi(key)?, items.len())
                .ok_or_else(|| format!("index {key} is out of range"))?;
            Ok(items.get(i))
        }
        _ => Err("the path does not exist in the object".into()),
    }
}

fn add(parent: &mut Value, key: &str, value: Value) -> Result<(), String> {
    match parent {
        Value::Object(m) => {
            m.insert(key.to_string(), value);
            Ok(())
        }
        Value::Array(items) => {
            if key == "-" {
                items.push(value);
                return Ok(());
            }
            // Positions run from 0 to len inclusive; negative ones count from len + 1.
            let i = resolve(atoi(key)?, items.len() + 1)
                .ok_or_else(|| format!("index {key} is out of range"))?;
            items.insert(i, value);
            Ok(())
        }
        _ => Err("the path does not exist in the object".into()),
    }
}

fn set(parent: &mut Value, key: &str, value: Value) -> Result<(), String> {
    match parent {
        Value::Object(m) => {
            m.insert(key.to_string(), value);
            Ok(())
        }
        Value::Array(items) => {
            let i = resolve(atoi(key)?, items.len())
                .ok_or_else(|| format!("index {key} is out of range"))?;
            items[i] = value;
            Ok(())
        }
        _ => Err("the path does not exist in the object".into()),
    }
}

fn remove(parent: &mut Value, key: &str) -> Result<Value, String> {
    match parent {
        Value::Object(m) => m
            .remove(key)
            .ok_or_else(|| format!("there is no field '{key}' to remove")),
        Value::Array(items) => {
            let i = resolve(atoi(key)?, items.len())
                .ok_or_else(|| format!("index {key} is out of range"))?;
            Ok(items.remove(i))
        }
        _ => Err("the path does not exist in the object".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn run(doc: Value, ops: Value) -> Result<Value, String> {
        let mut doc = doc;
        apply(&mut doc, &parse(&ops).map_err(|e| e.0)?).map_err(|e| e.0)?;
        Ok(doc)
    }

    #[test]
    fn indexes_read_as_go_reads_them_and_may_count_from_the_end() {
        let doc = json!({"a": ["x", "y"]});
        let r = |ops| run(doc.clone(), ops).unwrap();
        assert_eq!(
            r(json!([{"op": "replace", "path": "/a/01", "value": "z"}])),
            json!({"a": ["x", "z"]})
        );
        assert_eq!(
            r(json!([{"op": "add", "path": "/a/-1", "value": "z"}])),
            json!({"a": ["x", "y", "z"]})
        );
        assert_eq!(
            r(json!([{"op": "add", "path": "/a/+1", "value": "z"}])),
            json!({"a": ["x", "z", "y"]})
        );
        assert_eq!(
            r(json!([{"op": "remove", "path": "/a/-2"}])),
            json!({"a": ["y"]})
        );
        assert_eq!(
            r(json!([{"op": "add", "path": "/a/-", "value": "z"}])),
            json!({"a": ["x", "y", "z"]})
        );
        assert!(
            run(
                doc.clone(),
                json!([{"op": "add", "path": "/a/3", "value": 1}])
            )
            .is_err()
        );
        assert!(run(doc.clone(), json!([{"op": "remove", "path": "/a/-"}])).is_err());
    }

    #[test]
    fn replace_adds_a_missing_key_and_test_treats_missing_as_null() {
        let doc = json!({"m": {"k": 1}});
        assert_eq!(
            run(
                doc.clone(),
                json!([{"op": "replace", "path": "/m/new", "value": 2}])
            )
            .unwrap(),
            json!({"m": {"k": 1, "new": 2}})
        );
        assert!(
            run(
                doc.clone(),
                json!([{"op": "test", "path": "/m/none", "value": null}])
            )
            .is_ok()
        );
        assert!(
            run(
                doc.clone(),
                json!([{"op": "test", "path": "/m/k", "value": "1"}])
            )
            .is_err()
        );
        assert!(
            run(
                doc.clone(),
                json!([{"op": "replace", "path": "/x/y", "value": 1}])
            )
            .is_err()
        );
    }

    #[test]
    fn escaped_segments_name_slashes_and_tildes() {
        let doc = json!({"a": {"b/c": 1, "d~e": 2}});
        let out = run(
            doc,
            json!([
                {"op": "test", "path": "/a/b~1c", "value": 1},
                {"op": "move", "from": "/a/d~0e", "path": "/a/~01"}
            ]),
        )
        .unwrap();
        assert_eq!(out, json!({"a": {"b/c": 1, "~1": 2}}));
    }
}
