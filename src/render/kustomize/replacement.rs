//! `replacements`: copy a value from one object's field (or a literal) into fields of
//! other objects, as kustomize's ReplacementTransformer does.
//!
//! Field paths are dotted (`spec.template.spec.containers.[name=app].image`), with
//! `[field=value]` list selectors (the value is an unanchored regular expression, as in
//! kustomize), numeric indexes and `*` for every element of a list. A scalar written
//! into a scalar keeps the target's type where the text allows it (a string target
//! stays a string; an integer target takes `"3"` as 3), exactly as kustomize copies
//! only the text of the node.

use regex::Regex;
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::labels::LabelSelector;

use super::kustomization::null_as_default;
use super::resource::{Gvk, ResId, Resource};
use crate::schema::UNSPELLED_NULL;

/// One replacement.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Replacement {
    /// Where the value comes from.
    #[serde(default, deserialize_with = "null_as_default")]
    pub source: Option<SourceSelector>,
    /// Where it goes.
    #[serde(default, deserialize_with = "null_as_default")]
    pub targets: Option<Vec<TargetSelector>>,
}

/// The object and field a value is read from.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SourceSelector {
    /// API group.
    #[serde(default, deserialize_with = "null_as_default")]
    pub group: String,
    /// API version.
    #[serde(default, deserialize_with = "null_as_default")]
    pub version: String,
    /// Kind.
    #[serde(default, deserialize_with = "null_as_default")]
    pub kind: String,
    /// Name.
    #[serde(default, deserialize_with = "null_as_default")]
    pub name: String,
    /// Namespace.
    #[serde(default, deserialize_with = "null_as_default")]
    pub namespace: String,
    /// Dotted path, default `metadata.name`.
    #[serde(default, deserialize_with = "null_as_default")]
    pub field_path: String,
    /// Delimiter and index.
    #[serde(default, deserialize_with = "null_as_default")]
    pub options: Option<FieldOptions>,
}

/// Objects and fields a value is written to.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TargetSelector {
    /// Objects selected.
    #[serde(default, deserialize_with = "null_as_default")]
    pub select: Option<ObjectSelector>,
    /// Objects removed from the selection.
    #[serde(default, deserialize_with = "null_as_default")]
    pub reject: Vec<ObjectSelector>,
    /// Dotted paths, default `metadata.name`.
    #[serde(default, deserialize_with = "null_as_default")]
    pub field_paths: Vec<String>,
    /// Delimiter, index, create.
    #[serde(default, deserialize_with = "null_as_default")]
    pub options: Option<FieldOptions>,
}

/// A selector of objects: regular expressions on GVK, name and namespace, label and
/// annotation selectors.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectSelector {
    /// API group.
    #[serde(default, deserialize_with = "null_as_default")]
    pub group: Option<String>,
    /// API version.
    #[serde(default, deserialize_with = "null_as_default")]
    pub version: Option<String>,
    /// Kind.
    #[serde(default, deserialize_with = "null_as_default")]
    pub kind: Option<String>,
    /// Name.
    #[serde(default, deserialize_with = "null_as_default")]
    pub name: Option<String>,
    /// Namespace.
    #[serde(default, deserialize_with = "null_as_default")]
    pub namespace: Option<String>,
    /// Label selector.
    #[serde(default, deserialize_with = "null_as_default")]
    pub label_selector: Option<String>,
    /// Annotation selector.
    #[serde(default, deserialize_with = "null_as_default")]
    pub annotation_selector: Option<String>,
}

/// `options` of a source or target.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FieldOptions {
    /// Split the field at this delimiter.
    #[serde(default, deserialize_with = "null_as_default")]
    pub delimiter: String,
    /// Which part of the split.
    #[serde(default, deserialize_with = "null_as_default")]
    pub index: i64,
    /// Accepted and unused, as by kustomize.
    #[serde(default, deserialize_with = "null_as_default", rename = "encoding")]
    pub _encoding: String,
    /// Create missing target fields.
    #[serde(default, deserialize_with = "null_as_default")]
    pub create: bool,
}

/// Splits a dotted field path as kustomize does: `\.` is a dot inside a name, and a
/// bracketed `[key=a.b]` stays whole.
fn split_field_path(path: &str) -> Vec<String> {
    let mut raw: Vec<String> = Vec::new();
    let parts: Vec<&str> = path.split('.').collect();
    let parts = if parts.len() > 1 && parts[0].is_empty() {
        &parts[1..]
    } else {
        &parts[..]
    };
    for p in parts {
        match raw.last_mut() {
            Some(last) if last.ends_with('\\') => {
                last.pop();
                last.push('.');
                last.push_str(p);
            }
            _ => raw.push(p.to_string()),
        }
    }
    let mut out = Vec::new();
    let mut i = 0;
    while i < raw.len() {
        let elem = &raw[i];
        if elem.starts_with('[') && !elem.ends_with(']') {
            let mut joined = vec![elem.clone()];
            while i < raw.len() - 1 {
                i += 1;
                joined.push(raw[i].clone());
                if raw[i].ends_with(']') {
                    break;
                }
            }
            let s = joined.join(".");
            if s.contains('=') {
                out.push(s);
            } else {
                out.push(s.trim_matches(|c| c == '[' || c == ']').to_string());
            }
        } else {
            out.push(elem.clone());
        }
        i += 1;
    }
    out
}

fn is_index(p: &str) -> Option<usize> {
    p.parse::<usize>().ok()
}

fn is_list_selector(p: &str) -> bool {
    p.starts_with('[') && p.ends_with(']')
}

fn split_list_selector(p: &str) -> Result<(String, String), String> {
    let inner = &p[1..p.len() - 1];
    match inner.split_once('=') {
        Some((k, v)) => Ok((k.to_string(), v.to_string())),
        None => Err(format!(
            "list path element '{p}' must contain fieldName=fieldValue for element to match"
        )),
    }
}

/// The text of a scalar as YAML holds it.
fn scalar_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        // A mapping or sequence node has no scalar value.
        _ => String::new(),
    }
}

/// Reads plain scalar text the way YAML would type it.
fn plain_scalar(text: &str) -> Value {
    match text {
        "true" | "True" | "TRUE" => return Value::Bool(true),
        "false" | "False" | "FALSE" => return Value::Bool(false),
        "null" | "Null" | "NULL" | "~" | "" => return Value::Null,
        _ => {}
    }
    if let Ok(i) = text.parse::<i64>()
        && !text.starts_with('+')
    {
        return Value::from(i);
    }
    let looks_numeric = text
        .bytes()
        .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'-' | b'+' | b'e' | b'E'))
        && text.bytes().any(|b| b.is_ascii_digit());
    if looks_numeric && let Ok(f) = text.parse::<f64>() {
        return serde_json::Number::from_f64(f).map_or(Value::String(text.into()), Value::Number);
    }
    Value::String(text.to_string())
}

fn kind_name(v: &Value) -> &'static str {
    match v {
        Value::Object(_) => "MappingNode",
        Value::Array(_) => "SequenceNode",
        _ => "ScalarNode",
    }
}

/// The value of `path` in `node` without creating anything (kustomize's `Lookup`).
fn lookup<'a>(node: &'a Value, path: &[String]) -> Result<Option<&'a Value>, String> {
    let Some((first, rest)) = path.split_first() else {
        return Ok(Some(node));
    };
    if node.is_null() {
        return Ok(None);
    }
    if is_list_selector(first) {
        let Value::Array(items) = node else {
            return Err(format!(
                "wrong node kind: expected SequenceNode but got {} at '{first}'",
                kind_name(node)
            ));
        };
        let (k, want) = split_list_selector(first)?;
        for item in items {
            let hit = if k.is_empty() {
                item.is_string() && scalar_text(item) == want
            } else {
                item.get(&k)
                    .is_some_and(|v| !v.is_object() && !v.is_array() && scalar_text(v) == want)
            };
            if hit {
                return lookup(item, rest);
            }
        }
        return Ok(None);
    }
    if let Some(i) = is_index(first)
        && let Value::Array(items) = node
    {
        return match items.get(i) {
            Some(item) => lookup(item, rest),
            None => Ok(None),
        };
    }
    match node {
        Value::Object(m) => match m.get(first.as_str()) {
            Some(child) => lookup(child, rest),
            None => Ok(None),
        },
        other => Err(format!(
            "wrong node kind: expected MappingNode but got {} at '{first}'",
            kind_name(other)
        )),
    }
}

/// What kind of node to create for a missing path part.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NodeKind {
    Scalar,
    Map,
    Seq,
}

fn new_node(next: Option<&String>, create: NodeKind) -> (Value, bool) {
    let kind = match next {
        Some(n) if is_list_selector(n) || is_index(n).is_some() => NodeKind::Seq,
        Some(_) => NodeKind::Map,
        None => create,
    };
    match kind {
        NodeKind::Scalar => (Value::Null, true),
        NodeKind::Map => (Value::Object(Map::new()), true),
        NodeKind::Seq => (Value::Array(Vec::new()), true),
    }
}

type Setter<'f> = dyn FnMut(&mut Value, bool) -> Result<(), String> + 'f;

/// Calls `f` on every node `path` matches in `node` (kustomize's `PathMatcher`),
/// creating missing parts when `create` is set. Returns how many nodes matched.
fn visit_matches(
    node: &mut Value,
    path: &[String],
    create: Option<NodeKind>,
    created: bool,
    f: &mut Setter<'_>,
) -> Result<usize, String> {
    let Some((first, rest)) = path.split_first() else {
        f(node, created)?;
        return Ok(1);
    };
    if let Some(idx) = is_index(first) {
        let Value::Array(items) = node else {
            return Err(format!(
                "wrong node kind: expected SequenceNode but got {} at '{first}'",
                kind_name(node)
            ));
        };
        let mut made = false;
        if let Some(kind) = create
            && items.len() == idx
        {
            let (v, _) = new_node(rest.first(), kind);
            items.push(v);
            made = true;
        }
        let len = items.len();
        let Some(item) = items.get_mut(idx) else {
            return Err(format!(
                "index {idx} specified but only {len} elements found"
            ));
        };
        return visit_matches(item, rest, create, made && rest.is_empty(), f);
    }
    if is_list_selector(first) {
        let (k, pattern) = split_list_selector(first)?;
        let re = Regex::new(&pattern)
            .map_err(|e| format!("'{first}' is not a valid regular expression: {e}"))?;
        let Value::Array(items) = node else {
            if node.is_null() {
                // kustomize stops at a null on the way, even with `create`, and counts
                // the target as done.
                return Ok(usize::from(create.is_some()));
            }
            return Err(format!(
                "wrong node kind: expected SequenceNode but got {} at '{first}'",
                kind_name(node)
            ));
        };
        let mut n = 0;
        let matching: Vec<usize> = items
            .iter()
            .enumerate()
            .filter(|(_, item)| {
                if k.is_empty() {
                    !item.is_object() && !item.is_array() && re.is_match(&scalar_text(item))
                } else {
                    item.get(&k).is_some_and(|v| match v {
                        Value::Null => false,
                        Value::Object(_) | Value::Array(_) => {
                            re.is_match(crate::yaml::to_yaml(v).trim())
                        }
                        _ => re.is_match(&scalar_text(v)),
                    })
                }
            })
            .map(|(i, _)| i)
            .collect();
        for i in &matching {
            if k.is_empty() {
                // A primitive element is itself the match; kustomize ignores the rest of
                // the path here.
                f(&mut items[*i], false)?;
                n += 1;
            } else {
                n += visit_matches(&mut items[*i], rest, create, false, f)?;
            }
        }
        if n == 0 && matching.is_empty() && create.is_some() {
            let elem = if k.is_empty() {
                Value::String(pattern.clone())
            } else {
                let mut m = Map::new();
                m.insert(k.clone(), Value::String(pattern.clone()));
                Value::Object(m)
            };
            items.push(elem);
            return visit_matches(node, path, create, created, f);
        }
        return Ok(n);
    }
    if first == "*" {
        let Value::Array(items) = node else {
            return Err(format!(
                "wrong node kind: expected SequenceNode but got {} at '*'",
                kind_name(node)
            ));
        };
        let mut n = 0;
        for item in items.iter_mut() {
            n += visit_matches(item, rest, create, false, f)?;
        }
        return Ok(n);
    }
    if node.is_null() && create.is_some() {
        // A null on the way stops kustomize's walk: nothing is created under it, and
        // the target counts as done.
        return Ok(1);
    }
    let Value::Object(m) = node else {
        if node.is_null() {
            return Ok(0);
        }
        return Err(format!(
            "wrong node kind: expected MappingNode but got {} at '{first}'",
            kind_name(node)
        ));
    };
    let mut made = false;
    if !m.contains_key(first.as_str()) {
        let Some(kind) = create else {
            return Ok(0);
        };
        let (v, _) = new_node(rest.first(), kind);
        m.insert(first.clone(), v);
        made = true;
    }
    let child = m.get_mut(first.as_str()).expect("present or just created");
    visit_matches(child, rest, create, made && rest.is_empty(), f)
}

/// A value taken from a source, with the text kustomize copies into scalar targets.
struct SourceValue {
    /// The node as read (a scalar keeps its type).
    node: Value,
}

fn refine(options: Option<&FieldOptions>, v: &Value) -> Result<Value, String> {
    let Some(o) = options.filter(|o| !o.delimiter.is_empty()) else {
        return Ok(v.clone());
    };
    if v.is_object() || v.is_array() {
        return Err("delimiter option can only be used with scalar nodes".into());
    }
    let text = scalar_text(v);
    let parts: Vec<&str> = text.split(o.delimiter.as_str()).collect();
    if o.index < 0 || o.index as usize >= parts.len() {
        return Err(format!(
            "options.index {} is out of bounds for value {text}",
            o.index
        ));
    }
    let part = parts[o.index as usize];
    Ok(match v {
        Value::String(_) => Value::String(part.to_string()),
        _ => plain_scalar(part),
    })
}

fn set_field(
    options: Option<&FieldOptions>,
    target: &mut Value,
    created: bool,
    value: &SourceValue,
) -> Result<(), String> {
    let mut v = value.node.clone();
    if let Some(o) = options.filter(|o| !o.delimiter.is_empty()) {
        if target.is_object() || target.is_array() {
            return Err("delimiter option can only be used with scalar nodes".into());
        }
        let current = scalar_text(target);
        let mut parts: Vec<String> = current
            .split(o.delimiter.as_str())
            .map(String::from)
            .collect();
        let text = scalar_text(&v);
        if o.index < 0 {
            parts.insert(0, text);
        } else if o.index as usize >= parts.len() {
            parts.push(text);
        } else {
            parts[o.index as usize] = text;
        }
        let joined = parts.join(&o.delimiter);
        v = match v {
            Value::String(_) => Value::String(joined),
            _ => plain_scalar(&joined),
        };
    }
    let target_is_scalar = !target.is_object() && !target.is_array();
    let created_collection = created && (v.is_object() || v.is_array());
    if target_is_scalar && !created_collection {
        // kustomize copies only the text into a scalar and keeps the target's tag.
        let text = scalar_text(&v);
        *target = if created {
            plain_scalar(&text)
        } else {
            text_as_type_of(target, &text)?
        };
    } else {
        *target = v;
    }
    Ok(())
}

/// Stands, in a replacement's target, for a null the replacement spelled (`~`, `null`):
/// [`Resource::record_null_spellings`] makes it a null that a strategic merge keeps.
const SPELLED_NULL: &str = "\u{0}rollwave: a null a replacement spelled";

/// `text` read as a value of the type `target` holds, as kustomize reads the object
/// back after copying only the text into a scalar: a text of another type is an error
/// (kustomize's is "cannot decode !!str `x` as a !!null"). An empty text in a null (a
/// map or list copied into it) is a null written as nothing, returned as
/// [`UNSPELLED_NULL`], and a spelled null as [`SPELLED_NULL`], for
/// [`Resource::record_null_spellings`].
fn text_as_type_of(target: &Value, text: &str) -> Result<Value, String> {
    let read = plain_scalar(text);
    let fits = match (target, &read) {
        (Value::String(_), _) => return Ok(Value::String(text.to_string())),
        (Value::Null, Value::Null) if text.is_empty() => {
            return Ok(Value::String(UNSPELLED_NULL.into()));
        }
        (Value::Null, Value::Null) => return Ok(Value::String(SPELLED_NULL.into())),
        (Value::Number(n), Value::Number(r)) => n.is_f64() || !r.is_f64(),
        (t, r) => std::mem::discriminant(t) == std::mem::discriminant(r),
    };
    if fits {
        return Ok(read);
    }
    let type_of = |v: &Value| match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(n) if n.is_f64() => "a floating-point number",
        Value::Number(_) => "an integer",
        _ => "a string",
    };
    let shown = if text.is_empty() {
        "the map or list".to_string()
    } else {
        format!("`{text}`")
    };
    Err(format!(
        "the target holds {}, and kustomize keeps a target's type when it copies a value \
         in: {shown} ({}) cannot be read as {}; give the target a value of the \
         source's type (quoted, for a string), or remove it and set `options.create`",
        type_of(target),
        if text.is_empty() {
            "no text"
        } else {
            type_of(&read)
        },
        type_of(target),
    ))
}

fn ids_of(r: &Resource) -> Vec<ResId> {
    let mut ids = vec![r.cur_id()];
    ids.extend(r.prev_ids.iter().cloned());
    ids
}

fn source_selects(s: &SourceSelector, id: &ResId) -> bool {
    if !s.name.is_empty() && s.name != id.name {
        return false;
    }
    if !s.namespace.is_empty() {
        let sel = ResId {
            gvk: Gvk {
                group: s.group.clone(),
                version: s.version.clone(),
                kind: s.kind.clone(),
            },
            name: s.name.clone(),
            namespace: s.namespace.clone(),
        };
        if sel.effective_namespace() != id.effective_namespace() {
            return false;
        }
    }
    id.gvk.is_selected_by(&s.group, &s.version, &s.kind)
}

fn describe_source(s: &SourceSelector) -> String {
    let or = |v: &str, d: &str| {
        if v.is_empty() {
            d.to_string()
        } else {
            v.to_string()
        }
    };
    format!(
        "{}.{}.{}/{}.{}",
        or(&s.kind, "[noKind]"),
        or(&s.version, "[noVer]"),
        or(&s.group, "[noGrp]"),
        or(&s.name, "[noName]"),
        or(&s.namespace, "[noNs]")
    )
}

/// A target or reject selector. kustomize v5.5 compares group, version, kind, name and
/// namespace exactly here (namespaces as effective namespaces), not as patterns.
struct CompiledObjectSelector {
    id: SourceSelector,
    labels: Option<LabelSelector>,
    annotations: Option<LabelSelector>,
    has_id: bool,
}

impl CompiledObjectSelector {
    fn new(s: &ObjectSelector) -> Result<Self, String> {
        let sel = |v: &Option<String>| -> Result<Option<LabelSelector>, String> {
            match v.as_deref() {
                None | Some("") => Ok(None),
                Some(t) => LabelSelector::parse(t).map(Some).map_err(|e| e.0),
            }
        };
        let text = |v: &Option<String>| v.clone().unwrap_or_default();
        let id = SourceSelector {
            group: text(&s.group),
            version: text(&s.version),
            kind: text(&s.kind),
            name: text(&s.name),
            namespace: text(&s.namespace),
            ..SourceSelector::default()
        };
        Ok(CompiledObjectSelector {
            has_id: !(id.group.is_empty()
                && id.version.is_empty()
                && id.kind.is_empty()
                && id.name.is_empty()
                && id.namespace.is_empty()),
            id,
            labels: sel(&s.label_selector)?,
            annotations: sel(&s.annotation_selector)?,
        })
    }

    fn matches_id(&self, id: &ResId) -> bool {
        source_selects(&self.id, id)
    }

    fn has_meta_selectors(&self) -> bool {
        self.labels.is_some() || self.annotations.is_some()
    }

    fn matches_meta(&self, r: &Resource) -> bool {
        self.labels
            .as_ref()
            .is_none_or(|l| l.matches(&r.meta_map("labels")))
            && self
                .annotations
                .as_ref()
                .is_none_or(|a| a.matches(&r.meta_map("annotations")))
    }
}

/// Why a replacement failed (kustomize's message, in lower case), naming its index.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ReplacementError(pub String);

/// Applies `replacements` in order to `res`. Errors are kustomize's, in lower case.
pub fn apply(res: &mut [Resource], replacements: &[Replacement]) -> Result<(), ReplacementError> {
    apply_all(res, replacements).map_err(ReplacementError)
}

fn apply_all(res: &mut [Resource], replacements: &[Replacement]) -> Result<(), String> {
    for (i, r) in replacements.iter().enumerate() {
        apply_one(res, r).map_err(|e| format!("replacements[{i}]: {e}"))?;
    }
    Ok(())
}

fn apply_one(res: &mut [Resource], r: &Replacement) -> Result<(), String> {
    let (Some(targets), Some(s)) = (&r.targets, &r.source) else {
        return Err("replacements must specify a source and at least one target".into());
    };
    let value = {
        {
            let mut found: Option<&Resource> = None;
            for cand in res.iter() {
                if ids_of(cand).iter().any(|id| source_selects(s, id)) {
                    if found.is_some() {
                        return Err(format!(
                            "multiple matches for selector {}",
                            describe_source(s)
                        ));
                    }
                    found = Some(cand);
                }
            }
            let Some(src) = found else {
                return Err(format!("nothing selected by {}", describe_source(s)));
            };
            let fp = if s.field_path.is_empty() {
                "metadata.name"
            } else {
                &s.field_path
            };
            let obj = Value::Object(src.obj.clone());
            let v = lookup(&obj, &split_field_path(fp))
                .map_err(|e| format!("error looking up replacement source: {e}"))?;
            let empty = match v {
                None | Some(Value::Null) => true,
                Some(Value::Object(m)) => m.is_empty(),
                Some(Value::Array(a)) => a.is_empty(),
                _ => false,
            };
            if empty {
                return Err(format!(
                    "fieldPath `{fp}` is missing for replacement source {}",
                    describe_source(s)
                ));
            }
            refine(s.options.as_ref(), v.expect("checked above"))?
        }
    };
    let value = SourceValue { node: value };
    for t in targets {
        let Some(select) = &t.select else {
            return Err("target must specify resources to select".into());
        };
        let select = CompiledObjectSelector::new(select)?;
        let rejects = t
            .reject
            .iter()
            .map(CompiledObjectSelector::new)
            .collect::<Result<Vec<_>, _>>()?;
        let paths: Vec<Vec<String>> = if t.field_paths.is_empty() {
            vec![split_field_path("metadata.name")]
        } else {
            t.field_paths.iter().map(|p| split_field_path(p)).collect()
        };
        let value_kind = match &value.node {
            Value::Object(_) => NodeKind::Map,
            Value::Array(_) => NodeKind::Seq,
            _ => NodeKind::Scalar,
        };
        let create = t
            .options
            .as_ref()
            .is_some_and(|o| o.create)
            .then_some(value_kind);
        for r in res.iter_mut() {
            if !select.matches_meta(r) {
                continue;
            }
            // As in kustomize, a reject's label and annotation selectors and its id
            // each reject on their own.
            if rejects
                .iter()
                .any(|rj| rj.has_meta_selectors() && rj.matches_meta(r))
            {
                continue;
            }
            let ids = ids_of(r);
            if rejects
                .iter()
                .any(|rj| rj.has_id && ids.iter().any(|id| rj.matches_id(id)))
            {
                continue;
            }
            if !ids.iter().any(|id| select.matches_id(id)) {
                continue;
            }
            let mut obj = Value::Object(std::mem::take(&mut r.obj));
            let mut result = Ok(());
            let mut unspelled = false;
            for (raw, path) in t
                .field_paths
                .iter()
                .map(String::as_str)
                .chain(t.field_paths.is_empty().then_some("metadata.name"))
                .zip(&paths)
            {
                let mut set_error = None;
                let mut set = |node: &mut Value, created: bool| {
                    set_field(t.options.as_ref(), node, created, &value).map_err(|e| {
                        set_error = Some(e);
                        String::new()
                    })?;
                    unspelled |= matches!(node.as_str(), Some(UNSPELLED_NULL | SPELLED_NULL));
                    Ok(())
                };
                // kustomize reads `annotations: null` as no annotations (it rewrites
                // them on reading), so a null there does not stop the walk.
                if path.len() > 2
                    && path[0] == "metadata"
                    && path[1] == "annotations"
                    && let Some(Value::Object(meta)) = obj.get_mut("metadata")
                    && meta.get("annotations").is_some_and(Value::is_null)
                {
                    meta.remove("annotations");
                }
                match visit_matches(&mut obj, path, create, false, &mut set) {
                    Ok(0) => {
                        result = Err(if create.is_some() {
                            format!(
                                "unable to find or create field \"{raw}\" in replacement target"
                            )
                        } else {
                            format!("unable to find field \"{raw}\" in replacement target")
                        });
                    }
                    Ok(_) => {}
                    Err(_) if set_error.is_some() => {
                        let e = set_error.take().unwrap_or_default();
                        result = Err(format!("field \"{raw}\": {e}"));
                    }
                    Err(e) => {
                        result = Err(format!(
                            "unable to find field \"{raw}\" in replacement target: {e}"
                        ));
                    }
                }
                if result.is_err() {
                    break;
                }
            }
            r.obj = match obj {
                Value::Object(m) => m,
                _ => Map::new(),
            };
            result.map_err(|e| format!("{}: {e}", r.cur_id()))?;
            if unspelled {
                r.record_null_spellings(UNSPELLED_NULL, SPELLED_NULL);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_paths_split_at_dots_but_not_inside_brackets_or_escapes() {
        assert_eq!(
            split_field_path("spec.containers.[name=a.b].image"),
            vec!["spec", "containers", "[name=a.b]", "image"]
        );
        assert_eq!(
            split_field_path(r"metadata.annotations.a\.b/c"),
            vec!["metadata", "annotations", "a.b/c"]
        );
        // A lone bracketed index stays bracketed (and is refused as a list selector).
        assert_eq!(split_field_path("a.[0].b"), vec!["a", "[0]", "b"]);
    }

    #[test]
    fn a_scalar_target_keeps_its_type_and_refuses_text_of_another() {
        use serde_json::json;
        assert_eq!(text_as_type_of(&json!("80"), "8080"), Ok(json!("8080")));
        assert_eq!(text_as_type_of(&json!(80), "8080"), Ok(json!(8080)));
        assert_eq!(text_as_type_of(&json!(1.5), "3"), Ok(json!(3)));
        assert_eq!(text_as_type_of(&json!(true), "false"), Ok(json!(false)));
        assert_eq!(
            text_as_type_of(&Value::Null, "~"),
            Ok(Value::String(SPELLED_NULL.into()))
        );
        // A map or list copied into a null leaves a null written as nothing.
        assert_eq!(
            text_as_type_of(&Value::Null, ""),
            Ok(Value::String(UNSPELLED_NULL.into()))
        );
        for (target, text) in [
            (Value::Null, "busybox:1.36"),
            (json!(80), "1.5"),
            (json!(80), ""),
            (json!(true), "yes"),
        ] {
            let e = text_as_type_of(&target, text).unwrap_err();
            assert!(e.contains("kustomize keeps a target's type"), "{e}");
        }
    }

    fn config_map(name: &str, ns: &str, team: &str) -> Resource {
        let obj = serde_json::json!({
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": ns, "labels": {"team": team}},
            "data": {"v": "old"}
        });
        Resource::new(obj.as_object().unwrap().clone(), "test")
    }

    fn parse(yaml: &str) -> Replacement {
        let v = crate::yaml::parse_documents("r", yaml).unwrap().remove(0);
        serde_json::from_value(v).unwrap()
    }

    proptest::proptest! {
        /// Replacements never touch an object their targets do not select.
        #[test]
        fn replacements_never_touch_unselected_objects(
            objs in proptest::collection::vec(("[a-d]{1,2}", "[xy]", "[pq]"), 1..12),
            want_team in "[pq]",
            want_ns in "[xy]",
            create in proptest::bool::ANY,
        ) {
            let mut res: Vec<Resource> = Vec::new();
            let mut seen = std::collections::HashSet::new();
            for (n, ns, team) in &objs {
                if seen.insert((n.clone(), ns.clone())) {
                    res.push(config_map(n, ns, team));
                }
            }
            res.push(Resource::new(
                serde_json::json!({"apiVersion": "v1", "kind": "Secret",
                    "metadata": {"name": "src"}, "stringData": {"k": "new"}})
                    .as_object().unwrap().clone(),
                "test",
            ));
            let r = parse(&[
                "source: {kind: Secret, name: src, fieldPath: stringData.k}".to_string(),
                "targets:".to_string(),
                format!("- select: {{kind: ConfigMap, namespace: {want_ns}, labelSelector: team={want_team}}}"),
                "  reject: [{name: a}]".to_string(),
                "  fieldPaths: [data.v, data.w]".to_string(),
                format!("  options: {{create: {create}}}"),
            ].join("\n"));
            let before: Vec<Map<String, Value>> = res.iter().map(|r| r.obj.clone()).collect();
            let result = apply(&mut res, &[r]);
            for (r, old) in res.iter().zip(&before) {
                let selected = r.gvk().kind == "ConfigMap"
                    && r.namespace() == want_ns
                    && r.meta_map("labels").get("team").and_then(Value::as_str) == Some(want_team.as_str())
                    && r.name() != "a";
                if !selected {
                    proptest::prop_assert_eq!(&r.obj, old);
                } else if result.is_ok() {
                    proptest::prop_assert_eq!(r.obj["data"]["v"].as_str(), Some("new"));
                }
            }
            // Without create, the missing data.w fails the build when anything is selected.
            let any_selected = before.iter().any(|o| {
                o["kind"] == "ConfigMap"
                    && o["metadata"]["namespace"] == want_ns.as_str()
                    && o["metadata"]["labels"]["team"] == want_team.as_str()
                    && o["metadata"]["name"] != "a"
            });
            proptest::prop_assert_eq!(result.is_err(), any_selected && !create);
        }
    }
}
