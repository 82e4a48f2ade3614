//! Patches: strategic merge (by the patch's own id or by a target selector) and JSON
//! 6902 (by target), from `patches`, `patchesStrategicMerge` and `patchesJson6902`.

use serde_json::{Map, Value};

use super::KustomizeError;
use super::resource::{Gvk, ResId, Resource};
use super::selector::CompiledSelector;
use crate::schema::{
    MergeOutcome, UNSPELLED_ITEM, UNSPELLED_NULL, merges_by_key, strategic_merge_with,
};

/// A parsed patch, ready to apply.
pub enum Patch {
    /// One or more strategic merge documents, with the spellings of the nulls in
    /// their labels and annotations (see [`resource_map_copy`]).
    Strategic(Vec<Value>, Vec<(String, String, String)>),
    /// JSON 6902 operations.
    Json(super::jsonpatch::Ops),
}

/// Where a patch came from, for messages, and the build's `openapi` schema.
pub struct PatchSource<'a> {
    /// Kustomization directory.
    pub dir: &'a str,
    /// File name or "inline patch".
    pub what: String,
    /// The schema an `openapi` field set, if any.
    pub schema: Option<std::rc::Rc<super::openapi::OpenApiSchema>>,
}

impl PatchSource<'_> {
    fn err(&self, message: impl Into<String>) -> KustomizeError {
        KustomizeError::Patch {
            dir: self.dir.to_string(),
            patch: self.what.clone(),
            message: message.into(),
        }
    }
}

/// Which kustomization field a patch comes from: kustomize treats an empty patch
/// differently in each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchField {
    /// `patches`, with or without a `target`.
    Patches {
        /// Whether the entry has a target.
        targeted: bool,
    },
    /// `patchesStrategicMerge`.
    StrategicMerge,
    /// `patchesJson6902`.
    Json6902,
}

/// Parses patch text: a YAML or JSON list is JSON 6902, anything else strategic merge.
/// Empty patches are refused or accepted as kustomize does: in `patches`, blank text is
/// an empty JSON 6902 patch (which needs a target) and text with only comments is
/// ambiguous; in `patchesStrategicMerge` and `patchesJson6902` either is an error.
pub fn parse_patch(
    text: &str,
    src: &PatchSource<'_>,
    field: PatchField,
) -> Result<Patch, KustomizeError> {
    let docs = crate::yaml::parse_manifests(&src.what, text)?;
    if docs.is_empty() {
        // Only text with no bytes at all fails to read as JSON 6902; whitespace,
        // comments or a null read as an empty JSON 6902 patch and an empty strategic
        // merge patch at once. (Inline text arrives trimmed, as kustomize trims it.)
        let no_bytes = text.is_empty();
        return match field {
            PatchField::Patches { targeted: true } if no_bytes => {
                Ok(Patch::Json(super::jsonpatch::Ops::default()))
            }
            PatchField::Patches { targeted: false } if no_bytes => Err(src.err(
                "the patch is empty, which kustomize reads as a JSON 6902 patch without a target; \
                 give it content or remove the entry",
            )),
            PatchField::Patches { .. } => Err(src.err(
                "the patch holds only whitespace, comments or a null, which kustomize refuses \
                 as both a strategic merge and a JSON 6902 patch; give it content or remove \
                 the entry",
            )),
            PatchField::StrategicMerge | PatchField::Json6902 => {
                Err(src.err("the patch is empty; give it content or remove the entry"))
            }
        };
    }
    if let Some(outcome) = json_reading(text, &docs, src, field) {
        return outcome;
    }
    if let PatchField::Patches { .. } = field
        && docs.len() == 1
        && docs[0].as_array().is_some_and(Vec::is_empty)
    {
        return Err(src.err(
            "the patch is an empty list, which kustomize refuses as both an empty strategic \
             merge patch and an empty JSON 6902 patch; give it operations or remove the entry",
        ));
    }
    if docs.len() == 1 && docs[0].is_array() {
        let ops = super::jsonpatch::parse(&docs[0])
            .map_err(|e| src.err(format!("not a valid JSON 6902 patch: {e}")))?;
        return Ok(Patch::Json(ops));
    }
    for d in &docs {
        if !d.is_object() {
            return Err(src.err("a strategic merge patch must be a YAML map"));
        }
        // kustomize reads a strategic merge patch as an object, so it needs a kind and
        // a name even when a target selects what it patches.
        if !reads_as_object(d) {
            return Err(src.err(
                "unable to parse the patch as a strategic merge patch (it needs 'kind' and \
                 'metadata.name', as in kustomize) or as a JSON 6902 patch (a list of operations)",
            ));
        }
    }
    let mut docs = docs;
    mark_unspelled_items(text, &mut docs);
    Ok(Patch::Strategic(
        docs,
        crate::yaml::metadata_null_spellings(text),
    ))
}

/// Replaces each list item of a strategic merge patch written as nothing (`-`) with
/// [`UNSPELLED_ITEM`]: the merge reads it as a null, and [`Settle`]
/// makes it one again (or an empty string, inside a list the object wrote in flow
/// style). Most patches have none.
fn mark_unspelled_items(text: &str, docs: &mut [Value]) {
    let may_have = ["-\n", "- \n", "-\r", "- \r", "- #", "-\t#"]
        .iter()
        .any(|p| text.contains(p))
        || text.trim_end().ends_with('-');
    if !may_have {
        return;
    }
    for (doc, pointer) in crate::yaml::unspelled_nulls(text, docs.len()) {
        let Some((parent, _)) = pointer.rsplit_once('/') else {
            continue;
        };
        let Some(d) = docs.get_mut(doc) else {
            continue;
        };
        if !d.pointer(parent).is_some_and(Value::is_array) {
            continue;
        }
        if let Some(v) = d.pointer_mut(&pointer)
            && v.is_null()
        {
            *v = Value::String(UNSPELLED_ITEM.into());
        }
    }
}

/// Whether kustomize reads a document as an object: a map with a kind and a name.
fn reads_as_object(doc: &Value) -> bool {
    let text = |v: Option<&Value>| v.and_then(Value::as_str).is_some_and(|s| !s.is_empty());
    doc.is_object() && text(doc.get("kind")) && text(doc.pointer("/metadata/name"))
}

/// Where kustomize's reading of the text as a JSON 6902 patch decides the outcome.
/// kustomize reads `patches` and `patchesJson6902` text as JSON 6902 too: text whose
/// first character is `[` with a JSON decoder (so it must be strict JSON), any other
/// text as its first YAML document only, which is null when the text starts with an
/// empty document (`---` then `---`). A null reading is an empty JSON 6902 patch: with
/// a target it changes nothing, unless the rest also reads as a strategic merge patch,
/// which kustomize refuses as ambiguous.
fn json_reading(
    text: &str,
    docs: &[Value],
    src: &PatchSource<'_>,
    field: PatchField,
) -> Option<Result<Patch, KustomizeError>> {
    if field == PatchField::StrategicMerge {
        return None;
    }
    if text.starts_with('[') && serde_json::from_str::<Value>(text).is_err() {
        return Some(Err(src.err(
            "the patch starts with '[' but is not strict JSON, and kustomize reads such a \
             patch with a JSON decoder (quote every key and string, as JSON does, or write \
             the list in block style)",
        )));
    }
    if !crate::yaml::first_document_is_empty(text) {
        return None;
    }
    Some(match field {
        // kustomize's strategic merge reading skips empty maps (`{}`).
        PatchField::Patches { .. }
            if docs
                .iter()
                .all(|d| reads_as_object(d) || d.as_object().is_some_and(Map::is_empty)) =>
        {
            Err(src.err(
                "the patch starts with an empty YAML document, which kustomize reads as an empty \
             JSON 6902 patch while the rest reads as a strategic merge patch, and it refuses \
             a patch that is both; remove the empty document",
            ))
        }
        PatchField::Patches { targeted: true } => Ok(Patch::Json(super::jsonpatch::Ops::default())),
        PatchField::Patches { targeted: false } => Err(src.err(
            "the patch starts with an empty YAML document, which kustomize reads as an empty \
             JSON 6902 patch, and a JSON 6902 patch needs a 'target'; remove the empty document",
        )),
        _ => Err(src.err(
            "the patch starts with an empty YAML document, which kustomize reads as an empty \
             JSON 6902 patch and refuses; remove the empty document",
        )),
    })
}

fn patch_id(doc: &Value) -> ResId {
    let s = |v: Option<&Value>| v.and_then(Value::as_str).unwrap_or("").to_string();
    let meta = doc.get("metadata");
    ResId {
        gvk: Gvk::from_api_version(&s(doc.get("apiVersion")), &s(doc.get("kind"))),
        name: s(meta.and_then(|m| m.get("name"))),
        namespace: s(meta.and_then(|m| m.get("namespace"))),
    }
}

/// Options from a `patches` entry.
#[derive(Debug, Clone, Copy, Default)]
pub struct PatchOptions {
    /// The patch may change metadata.name.
    pub allow_name_change: bool,
    /// The patch may change apiVersion and kind.
    pub allow_kind_change: bool,
    /// kustomize applies the patch through its resource map (`patchesStrategicMerge`,
    /// and `patches` entries with a `target`), which merges a rewritten copy of the
    /// patch: see [`resource_map_copy`].
    pub through_resource_map: bool,
}

/// The copy of a strategic merge patch that kustomize's resource map merges into each
/// object it selects. Its labels and annotations are read as string maps and written
/// back: every value becomes a string (a null that would delete a key becomes its
/// text, "null", "~" or "", as spelled in `nulls`), a null or empty map disappears, and
/// the copy takes the object's apiVersion. (`patches` entries without a target merge
/// the patch as written.)
fn resource_map_copy(doc: &Value, nulls: &[(String, String, String)], object: &Resource) -> Value {
    let mut copy = doc.clone();
    if let Some(Value::Object(meta)) = copy.get_mut("metadata") {
        for field in ["labels", "annotations"] {
            let strings: Map<String, Value> = match meta.get(field) {
                Some(Value::Object(m)) => m
                    .iter()
                    .map(|(k, v)| {
                        let text = match v {
                            Value::Null => nulls
                                .iter()
                                .find(|(f, key, _)| f == field && key == k)
                                .map_or_else(|| "null".to_string(), |(_, _, t)| t.clone()),
                            other => meta_value_text(other),
                        };
                        (k.clone(), Value::String(text))
                    })
                    .collect(),
                _ => Map::new(),
            };
            if strings.is_empty() {
                meta.remove(field);
            } else {
                meta.insert(field.to_string(), Value::Object(strings));
            }
        }
    }
    if let (Value::Object(m), Some(api)) = (&mut copy, object.obj.get("apiVersion")) {
        m.insert("apiVersion".into(), api.clone());
    }
    copy
}

/// The text kustomize reads from a label or annotation value: a scalar as written (a
/// null as "null"), a map or list as "".
fn meta_value_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::Array(_) | Value::Object(_) => String::new(),
    }
}

fn merge_into(
    r: &mut Resource,
    doc: &Value,
    nulls: &[(String, String, String)],
    opts: PatchOptions,
    src: &PatchSource<'_>,
) -> Result<bool, KustomizeError> {
    let copied;
    let doc = if opts.through_resource_map {
        copied = resource_map_copy(doc, nulls, r);
        &copied
    } else {
        doc
    };
    let gvk = r.gvk();
    let old_id = r.cur_id();
    let (name, ns) = (r.name().to_string(), r.namespace().to_string());
    let (api, kind) = (r.obj.get("apiVersion").cloned(), r.obj.get("kind").cloned());
    let mut obj = Value::Object(std::mem::take(&mut r.obj));
    let custom = |path: &[String]| src.schema.as_ref().and_then(|s| s.strategy(&gvk, path));
    mark_unspelled_nulls(&mut obj, &r.unspelled_nulls);
    mark_flow_collections(&mut obj, &r.flow_collections);
    let outcome = strategic_merge_with(&gvk.group, &gvk.kind, &mut obj, doc, &custom)
        .map_err(|e| src.err(format!("{}: {e}", r.cur_id())))?;
    let associative = |path: &[String]| merges_by_key(&gvk.group, &gvk.kind, path, &custom);
    let mut settle = Settle {
        path: Vec::new(),
        tokens: Vec::new(),
        associative: &associative,
        flow_collections: Vec::new(),
    };
    settle.walk(&mut obj, true, false);
    r.unspelled_nulls.clear();
    r.flow_collections = settle.flow_collections;
    r.obj = match obj {
        Value::Object(m) => m,
        _ => Map::new(),
    };
    if outcome == MergeOutcome::Deleted {
        return Ok(false);
    }
    if !opts.allow_kind_change {
        if let Some(a) = api {
            r.obj.insert("apiVersion".into(), a);
        }
        if let Some(k) = kind {
            r.obj.insert("kind".into(), k);
        }
    }
    let new_name = r.name().to_string();
    if !opts.allow_name_change || new_name.is_empty() {
        r.set_name(&name);
    }
    // A renamed or re-kinded object keeps its old id (with its old kind), so later
    // patches written against the original name and kind still find it.
    if r.name() != name || r.gvk() != gvk {
        let mut prev = old_id;
        prev.namespace = prev.effective_namespace().to_string();
        r.prev_ids.push(prev);
    }
    if ns.is_empty() {
        if let Some(Value::Object(m)) = r.obj.get_mut("metadata") {
            m.remove("namespace");
        }
    } else {
        r.set_namespace(&ns);
    }
    Ok(true)
}

/// Replaces each null at `pointers` (still a null) with [`UNSPELLED_NULL`].
fn mark_unspelled_nulls(obj: &mut Value, pointers: &[String]) {
    for p in pointers {
        if let Some(v) = obj.pointer_mut(p)
            && v.is_null()
        {
            *v = Value::String(UNSPELLED_NULL.into());
        }
    }
}

/// Marks, in the map holding it, each map or list at `pointers` (written in flow
/// style): the mark is a key [`FLOW`] followed by the field's name, or [`FLOW`] alone
/// inside a flow map that is a list item or the whole object. Marks move with their
/// maps through the merge (list items merged by key change places).
fn mark_flow_collections(obj: &mut Value, pointers: &[String]) {
    for p in pointers {
        let (parent, field) = p.rsplit_once('/').unwrap_or(("", ""));
        let field = field.replace("~1", "/").replace("~0", "~");
        if !p.is_empty()
            && let Some(Value::Object(m)) = obj.pointer_mut(parent)
        {
            if m.contains_key(&field) {
                m.insert(format!("{FLOW}{field}"), Value::Bool(true));
            }
        } else if let Some(Value::Object(m)) = obj.pointer_mut(p) {
            m.insert(FLOW.to_string(), Value::Bool(true));
        }
    }
}

/// Starts the keys [`mark_flow_collections`] adds.
const FLOW: &str = "\u{0}rollwave: written in flow style: ";

/// After a strategic merge: kustomize's merge walks every map of the object and the
/// elements of every list merged by key, keeping a null spelled `null` or `~` and
/// dropping one written as nothing; inside any other list it changes nothing. So a
/// marked null goes where the merge walked and is a null again elsewhere.
///
/// kustomize then writes the object with the styles it read (a list the patch
/// replaced keeps the object's style) and reads it back: inside a map or list written
/// in flow style, a null written as nothing goes out as `''` and comes back as an
/// empty string. The flow marks are taken out, and where they end up is kept for the
/// next patch.
struct Settle<'a> {
    /// The field names down to the value (list indices left out), as `associative` takes them.
    path: Vec<String>,
    /// The JSON pointer's tokens down to the value.
    tokens: Vec<String>,
    associative: &'a dyn Fn(&[String]) -> bool,
    flow_collections: Vec<String>,
}

impl Settle<'_> {
    fn pointer(&self) -> String {
        self.tokens
            .iter()
            .map(|k| format!("/{}", k.replace('~', "~0").replace('/', "~1")))
            .collect()
    }

    fn walk(&mut self, v: &mut Value, walked: bool, in_flow: bool) {
        let is_mark = |v: &Value| v.as_str() == Some(UNSPELLED_NULL);
        match v {
            Value::Object(m) => {
                if walked {
                    m.retain(|_, v| !is_mark(v));
                }
                let marks: Vec<String> =
                    m.keys().filter(|k| k.starts_with(FLOW)).cloned().collect();
                let mut flow_fields = Vec::new();
                let mut in_flow = in_flow;
                for mark in marks {
                    m.remove(&mark);
                    match &mark[FLOW.len()..] {
                        "" => {
                            in_flow = true;
                            self.flow_collections.push(self.pointer());
                        }
                        field => flow_fields.push(field.to_string()),
                    }
                }
                for (k, item) in m.iter_mut() {
                    self.path.push(k.clone());
                    self.tokens.push(k.clone());
                    let flow_here = flow_fields.iter().any(|f| f == k);
                    if flow_here && (item.is_object() || item.is_array()) {
                        self.flow_collections.push(self.pointer());
                    }
                    self.walk(item, walked, in_flow || flow_here);
                    self.path.pop();
                    self.tokens.pop();
                }
            }
            Value::Array(items) => {
                let walked = walked && (self.associative)(&self.path);
                for (i, item) in items.iter_mut().enumerate() {
                    self.tokens.push(i.to_string());
                    self.walk(item, walked, in_flow);
                    self.tokens.pop();
                }
            }
            _ if is_mark(v) => {
                *v = if in_flow {
                    Value::from("")
                } else {
                    Value::Null
                }
            }
            Value::String(s) if s == UNSPELLED_ITEM => {
                *v = if in_flow {
                    Value::from("")
                } else {
                    Value::Null
                };
            }
            _ => {}
        }
    }
}

/// Applies a patch to the accumulated resources. Strategic merge patches without a
/// target find their object by the id in the patch (matching current or earlier names).
pub fn apply_patch(
    res: &mut Vec<Resource>,
    patch: &Patch,
    target: Option<&CompiledSelector>,
    opts: PatchOptions,
    src: &PatchSource<'_>,
) -> Result<(), KustomizeError> {
    match (patch, target) {
        (Patch::Json(ops), Some(sel)) => {
            for r in res.iter_mut().filter(|r| sel.matches(r)) {
                let before_name = r.name().to_string();
                // kustomize writes the object out and applies a JSON patch to it as
                // JSON: nulls written as nothing in flow style are empty strings by
                // then, every other null is spelled, and nothing stays in flow style.
                r.settle_flow_nulls();
                r.unspelled_nulls.clear();
                r.flow_collections.clear();
                let mut obj = Value::Object(std::mem::take(&mut r.obj));
                super::jsonpatch::apply(&mut obj, ops)
                    .map_err(|e| src.err(format!("{}: {e}", r.cur_id())))?;
                let Value::Object(m) = obj else {
                    return Err(
                        src.err("the JSON patch replaced the whole object with a non-object")
                    );
                };
                r.obj = m;
                let after = r.name().to_string();
                if after != before_name {
                    r.set_name(&before_name);
                    r.store_previous_id();
                    r.set_name(&after);
                }
            }
            Ok(())
        }
        (Patch::Json(_), None) => Err(src.err("a JSON 6902 patch needs a 'target'")),
        (Patch::Strategic(docs, nulls), Some(sel)) => {
            if docs.len() > 1 {
                return Err(
                    src.err("a patch with a 'target' must hold a single strategic merge document")
                );
            }
            let Some(doc) = docs.first() else {
                return Ok(());
            };
            let opts = PatchOptions {
                through_resource_map: true,
                ..opts
            };
            let mut kept = Vec::with_capacity(res.len());
            for mut r in res.drain(..) {
                if sel.matches(&r) && !merge_into(&mut r, doc, nulls, opts, src)? {
                    continue;
                }
                kept.push(r);
            }
            *res = kept;
            Ok(())
        }
        (Patch::Strategic(docs, nulls), None) => {
            for doc in docs {
                let id = patch_id(doc);
                let matches: Vec<usize> = res
                    .iter()
                    .enumerate()
                    .filter(|(_, r)| {
                        r.cur_id().same_as(&id) || r.prev_ids.iter().any(|p| p.same_as(&id))
                    })
                    .map(|(i, _)| i)
                    .collect();
                match matches.as_slice() {
                    [i] => {
                        if !merge_into(&mut res[*i], doc, nulls, opts, src)? {
                            res.remove(*i);
                        }
                    }
                    [] => {
                        return Err(src.err(format!(
                            "no resource matches the patch for {id}; check its apiVersion, kind, name and namespace"
                        )));
                    }
                    _ => {
                        return Err(src.err(format!(
                            "several resources match the patch for {id}; add a namespace or a target"
                        )));
                    }
                }
            }
            Ok(())
        }
    }
}
