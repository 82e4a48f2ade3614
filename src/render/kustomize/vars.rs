//! `vars` (deprecated in kustomize v5, still built): `$(NAME)` in the fields of
//! kustomize's `varReference` field specs is replaced, at the end of the top-level
//! build, by a field of the object each var names.
//!
//! As in kustomize: a var is bound to its object when the kustomization that declares it
//! is built (by group, version, kind and name, and namespace when given), a var name
//! may be declared once per build, every declared var must resolve even if unused, and
//! `$(NAME)` of an unknown var is left as written. A whole-field `$(NAME)` takes the
//! type of the value (a number stays a number); `$$` escapes `$`.

use serde_json::Value;

use super::KustomizeError;
use super::fields::{FieldSpec, split_path};
use super::kustomization::Var;
use super::resource::{Gvk, ResId, Resource};

fn objref_gvk(v: &Var) -> Gvk {
    let o = &v.objref;
    if o.api_version.is_empty() {
        return Gvk {
            group: o.group.clone(),
            version: o.version.clone(),
            kind: o.kind.clone(),
        };
    }
    let (group, version) = match o.api_version.split_once('/') {
        Some((g, v)) => (g.to_string(), v.to_string()),
        None => (o.group.clone(), o.api_version.clone()),
    };
    Gvk {
        group,
        version,
        kind: o.kind.clone(),
    }
}

/// Binds the vars a kustomization declares to the objects they name and adds them to
/// the build's vars.
pub fn merge_vars(
    declared: &mut Vec<Var>,
    res: &mut [Resource],
    incoming: &[Var],
    dir: &str,
) -> Result<(), KustomizeError> {
    for v in incoming {
        let target = ResId {
            gvk: objref_gvk(v),
            name: v.objref.name.clone(),
            namespace: v.objref.namespace.clone(),
        };
        let with_ns = !target.namespace.is_empty() || target.gvk.is_cluster_scoped_in_kustomize();
        let same = |id: &ResId| {
            id.gvk == target.gvk
                && id.name == target.name
                && (!with_ns || id.effective_namespace() == target.effective_namespace())
        };
        let matched: Vec<usize> = res
            .iter()
            .enumerate()
            .filter(|(_, r)| same(&r.cur_id()) || r.prev_ids.iter().any(same))
            .map(|(i, _)| i)
            .collect();
        if matched.len() > 1 {
            return Err(KustomizeError::Kustomization {
                dir: dir.to_string(),
                message: format!(
                    "vars: found {} objects for var '{}' ({target}); unable to disambiguate, give objref a namespace",
                    matched.len(),
                    v.name
                ),
            });
        }
        if let Some(i) = matched.first() {
            res[*i].ref_vars.push(v.name.clone());
        }
        if declared.iter().any(|d| d.name == v.name) {
            return Err(KustomizeError::Kustomization {
                dir: dir.to_string(),
                message: format!("vars: var '{}' already encountered", v.name),
            });
        }
        declared.push(v.clone());
    }
    Ok(())
}

/// Merges the vars of an included kustomization into the including one's.
pub fn merge_declared(
    declared: &mut Vec<Var>,
    incoming: &[Var],
    dir: &str,
) -> Result<(), KustomizeError> {
    for v in incoming {
        if declared.iter().any(|d| d.name == v.name) {
            return Err(KustomizeError::Kustomization {
                dir: dir.to_string(),
                message: format!("vars: var '{}' already encountered", v.name),
            });
        }
        declared.push(v.clone());
    }
    Ok(())
}

/// The value at a dotted `fieldPath` (`spec.containers[0].image`).
fn field_value(obj: &Value, path: &str) -> Option<Value> {
    let mut cur = obj;
    for part in path.split('.') {
        let (name, index) = match part.strip_suffix(']').and_then(|p| p.rsplit_once('[')) {
            Some((n, i)) if i.parse::<usize>().is_ok() => (n, i.parse::<usize>().ok()),
            _ => (part, None),
        };
        if !name.is_empty() {
            cur = cur.as_object()?.get(name)?;
        }
        if let Some(i) = index {
            cur = cur.as_array()?.get(i)?;
        }
    }
    if cur.is_null() {
        return None;
    }
    Some(cur.clone())
}

fn expand(input: &str, values: &[(String, Value)], used: &mut [bool]) -> Value {
    let bytes = input.as_bytes();
    let mut out = String::new();
    let mut checkpoint = 0;
    let mut cursor = 0;
    while cursor < bytes.len() {
        if bytes[cursor] == b'$' && cursor + 1 < bytes.len() {
            out.push_str(&input[checkpoint..cursor]);
            let rest = &input[cursor + 1..];
            let advance;
            match rest.as_bytes()[0] {
                b'$' => {
                    out.push('$');
                    advance = 1;
                }
                b'(' => match rest.find(')') {
                    Some(close) => {
                        let name = &rest[1..close];
                        let hit = values.iter().position(|(n, _)| n == name);
                        let mapped = match hit {
                            Some(i) => {
                                used[i] = true;
                                values[i].1.clone()
                            }
                            None => Value::String(format!("$({name})")),
                        };
                        if input.len() == name.len() + 3 && hit.is_some() {
                            return mapped;
                        }
                        match &mapped {
                            Value::String(s) => out.push_str(s),
                            other => out.push_str(&go_format(other)),
                        }
                        advance = close + 1;
                    }
                    None => {
                        out.push_str("$(");
                        advance = 1;
                    }
                },
                _ => {
                    let c = rest.chars().next().expect("not empty");
                    out.push('$');
                    out.push(c);
                    advance = c.len_utf8();
                }
            }
            cursor += advance + 1;
            checkpoint = cursor;
            continue;
        }
        cursor += 1;
    }
    out.push_str(&input[checkpoint.min(input.len())..]);
    Value::String(out)
}

/// Go's `%v` of a value read from YAML.
fn go_format(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Null => "<nil>".into(),
        Value::Array(a) => format!(
            "[{}]",
            a.iter().map(go_format).collect::<Vec<_>>().join(" ")
        ),
        Value::Object(m) => format!(
            "map[{}]",
            m.iter()
                .map(|(k, v)| format!("{k}:{}", go_format(v)))
                .collect::<Vec<_>>()
                .join(" ")
        ),
    }
}

fn substitute(
    node: &mut Value,
    values: &[(String, Value)],
    used: &mut [bool],
) -> Result<(), String> {
    match node {
        Value::String(s) => {
            *node = expand(s, values, used);
        }
        Value::Object(m) => {
            for v in m.values_mut() {
                if let Value::String(s) = v {
                    *v = expand(s, values, used);
                }
            }
        }
        Value::Array(items) => {
            for item in items.iter_mut() {
                let Value::String(s) = item else {
                    return Err("invalid value type expect a string".into());
                };
                *item = expand(s, values, used);
            }
        }
        _ => {}
    }
    Ok(())
}

fn walk(
    node: &mut Value,
    segs: &[String],
    values: &[(String, Value)],
    used: &mut [bool],
) -> Result<(), String> {
    let Some((first, rest)) = segs.split_first() else {
        return substitute(node, values, used);
    };
    match node {
        Value::Array(items) => {
            for item in items {
                walk(item, segs, values, used)?;
            }
            Ok(())
        }
        Value::Object(m) => match m.get_mut(first.trim_end_matches("[]")) {
            Some(child) if !child.is_null() => walk(child, rest, values, used),
            _ => Ok(()),
        },
        _ => Err(format!("expected sequence or mapping node at '{first}'")),
    }
}

/// Replaces `$(NAME)` of every declared var in the `varReference` fields of `res`.
pub fn resolve_vars(
    res: &mut [Resource],
    declared: &[Var],
    specs: &[FieldSpec],
) -> Result<(), KustomizeError> {
    let mut values: Vec<(String, Value)> = Vec::new();
    for v in declared {
        let path = v
            .fieldref
            .as_ref()
            .map(|f| f.field_path.as_str())
            .filter(|p| !p.is_empty())
            .unwrap_or("metadata.name");
        let owner = res.iter().find(|r| r.ref_vars.contains(&v.name));
        let Some(owner) = owner else {
            return Err(KustomizeError::NameReference {
                message: format!(
                    "var '{}' cannot be mapped to a field in the set of known resources (objref {} {})",
                    v.name, v.objref.kind, v.objref.name
                ),
            });
        };
        let Some(value) = field_value(&Value::Object(owner.obj.clone()), path) else {
            return Err(KustomizeError::NameReference {
                message: format!(
                    "field '{path}' specified in var '{}' not found in {}",
                    v.name,
                    owner.cur_id()
                ),
            });
        };
        values.push((v.name.clone(), value));
    }
    if values.is_empty() {
        return Ok(());
    }
    let mut used = vec![false; values.len()];
    let split: Vec<Vec<String>> = specs.iter().map(|s| split_path(&s.path)).collect();
    for r in res.iter_mut() {
        let gvk = r.gvk();
        let mut obj = Value::Object(std::mem::take(&mut r.obj));
        let mut result = Ok(());
        for (spec, segs) in specs.iter().zip(&split) {
            if !spec.applies_to(&gvk) {
                continue;
            }
            result = walk(&mut obj, segs, &values, &mut used);
            if result.is_err() {
                break;
            }
        }
        r.obj = match obj {
            Value::Object(m) => m,
            _ => Default::default(),
        };
        result.map_err(|e| KustomizeError::NameReference {
            message: format!("{}: vars: {e}", r.cur_id()),
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expansion_keeps_types_of_whole_fields_and_escapes_dollars() {
        let vals = vec![
            ("PORT".to_string(), Value::from(8080)),
            ("SVC".to_string(), Value::from("web")),
        ];
        let mut used = vec![false; 2];
        assert_eq!(expand("$(PORT)", &vals, &mut used), Value::from(8080));
        assert_eq!(
            expand("http://$(SVC):$(PORT)/", &vals, &mut used),
            Value::from("http://web:8080/")
        );
        assert_eq!(expand("$$(SVC)", &vals, &mut used), Value::from("$(SVC)"));
        assert_eq!(expand("$(NOPE)", &vals, &mut used), Value::from("$(NOPE)"));
        assert_eq!(expand("a$(", &vals, &mut used), Value::from("a$("));
        assert_eq!(expand("$x", &vals, &mut used), Value::from("$x"));
    }
}
