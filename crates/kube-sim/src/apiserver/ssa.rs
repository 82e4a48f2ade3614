//! Server-side apply and field ownership: merging an applied configuration into the
//! live object, conflicts with other managers, removal of fields a manager stopped
//! applying, and the bookkeeping of `metadata.managedFields` for every write.

use serde_json::{Map, Value, json};

use crate::apiserver::api_error::ApiError;
use manifest::fieldset::{
    FieldPath, FieldSet, ListShape, ListShapes, PathElement, changed_fields, fields_of,
    from_fields_v1, item_key, path_string, remove_under, to_fields_v1, under,
};

/// Which part of an object a request writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// The main resource; `status` is left alone when the type has a status
    /// subresource.
    Main {
        /// Whether the type has a status subresource.
        status_subresource: bool,
    },
    /// The `/status` subresource: only `status` is written.
    Status,
}

impl Scope {
    fn subresource(self) -> &'static str {
        match self {
            Scope::Main { .. } => "",
            Scope::Status => "status",
        }
    }

    /// Whether a top-level path belongs to this scope's fields.
    fn owns(self, path: &FieldPath) -> bool {
        let first = match path.first() {
            Some(PathElement::Field(f)) => f.as_str(),
            _ => return false,
        };
        // `metadata` itself is a struct every object has, never anyone's field (a
        // real server records no bare `f:metadata`), only what is inside it.
        if first == "apiVersion" || first == "kind" || (first == "metadata" && path.len() == 1) {
            return false;
        }
        if first == "metadata"
            && let Some(PathElement::Field(f)) = path.get(1)
            && IGNORED_METADATA.contains(&f.as_str())
        {
            return false;
        }
        match self {
            Scope::Main { status_subresource } => !(status_subresource && first == "status"),
            Scope::Status => first == "status",
        }
    }
}

/// Metadata the server owns: never part of anyone's field set.
const IGNORED_METADATA: &[&str] = &[
    "name",
    "namespace",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "managedFields",
    "selfLink",
    "generateName",
];

/// One `managedFields` entry.
#[derive(Debug, Clone, PartialEq)]
pub struct ManagerEntry {
    /// The field manager name.
    pub manager: String,
    /// `Apply` or `Update`.
    pub operation: String,
    /// The API version the manager wrote with.
    pub api_version: String,
    /// When the set last changed (RFC 3339).
    pub time: String,
    /// `""` or `status`.
    pub subresource: String,
    /// The fields owned.
    pub fields: FieldSet,
}

/// Reads `metadata.managedFields`.
pub fn read_managers(obj: &Value) -> Vec<ManagerEntry> {
    obj["metadata"]["managedFields"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| ManagerEntry {
            manager: e["manager"].as_str().unwrap_or("").to_string(),
            operation: e["operation"].as_str().unwrap_or("Update").to_string(),
            api_version: e["apiVersion"].as_str().unwrap_or("").to_string(),
            time: e["time"].as_str().unwrap_or("").to_string(),
            subresource: e["subresource"].as_str().unwrap_or("").to_string(),
            fields: from_fields_v1(&e["fieldsV1"]),
        })
        .collect()
}

fn write_managers(obj: &mut Value, entries: &[ManagerEntry]) {
    // A real server lists appliers before updaters, then oldest first, then by
    // manager name, version and subresource.
    let mut sorted: Vec<&ManagerEntry> = entries.iter().collect();
    sorted.sort_by(|a, b| {
        (
            &a.operation,
            &a.time,
            &a.manager,
            &a.api_version,
            &a.subresource,
        )
            .cmp(&(
                &b.operation,
                &b.time,
                &b.manager,
                &b.api_version,
                &b.subresource,
            ))
    });
    let list: Vec<Value> = sorted
        .into_iter()
        .filter(|e| !e.fields.is_empty())
        .map(|e| {
            let mut v = json!({
                "manager": e.manager, "operation": e.operation, "apiVersion": e.api_version,
                "time": e.time, "fieldsType": "FieldsV1", "fieldsV1": to_fields_v1(&e.fields),
            });
            if !e.subresource.is_empty() {
                v["subresource"] = json!(e.subresource);
            }
            v
        })
        .collect();
    if !list.is_empty() && obj.is_object() && obj.get("metadata").is_none() {
        obj["metadata"] = json!({});
    }
    if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        if list.is_empty() {
            meta.remove("managedFields");
        } else {
            meta.insert("managedFields".into(), Value::Array(list));
        }
    }
}

/// The part of an object a scope can write, with server-owned metadata removed.
fn scoped(obj: &Value, scope: Scope) -> Value {
    let mut out = Map::new();
    if let Value::Object(m) = obj {
        for (k, v) in m {
            let path = vec![PathElement::Field(k.clone())];
            if k == "metadata" {
                if scope == Scope::Status {
                    continue;
                }
                let mut meta = Map::new();
                for (mk, mv) in v.as_object().into_iter().flatten() {
                    if !IGNORED_METADATA.contains(&mk.as_str()) {
                        meta.insert(mk.clone(), mv.clone());
                    }
                }
                out.insert(k.clone(), Value::Object(meta));
            } else if scope.owns(&path) {
                out.insert(k.clone(), v.clone());
            }
        }
    }
    Value::Object(out)
}

/// What the caller of [`apply`] and [`record_update`] says about the request.
#[derive(Debug, Clone)]
pub struct Writer<'a> {
    /// Field manager.
    pub manager: &'a str,
    /// API version of the request.
    pub api_version: &'a str,
    /// Main resource or status.
    pub scope: Scope,
    /// The current time, RFC 3339.
    pub now: &'a str,
}

/// Server-side apply of `config` by `writer` onto `live` (or a new object): returns the
/// object to store, managedFields updated, or a 409 listing conflicts with other
/// managers (unless `force`, which takes the fields from them).
pub fn apply(
    live: &Value,
    config: &Value,
    writer: &Writer,
    force: bool,
    shapes: &ListShapes,
) -> Result<Value, ApiError> {
    let applied = scoped(config, writer.scope);
    let mut cfg_fields = fields_of(&applied, shapes)
        .map_err(|e| ApiError::bad_request(format!("failed to create typed patch object: {e}")))?;
    cfg_fields.retain(|p| writer.scope.owns(p));

    let mut entries = read_managers(live);
    let subresource = writer.scope.subresource();
    let mine = entries.iter().position(|e| {
        e.manager == writer.manager && e.operation == "Apply" && e.subresource == subresource
    });
    let previous = mine.map(|i| entries[i].fields.clone()).unwrap_or_default();

    let mut merged = live.clone();
    merge_into(&mut merged, &applied, shapes, &mut Vec::new());

    // Fields this manager applied before and dropped now go away unless someone
    // else also owns them.
    let mut others_fields = FieldSet::new();
    for (i, e) in entries.iter().enumerate() {
        if Some(i) != mine && e.subresource == subresource {
            others_fields.extend(e.fields.iter().cloned());
        }
    }
    // A dropped list item or map goes whole (with whatever defaults it carries) unless
    // someone still owns something inside it; then only its dropped fields go.
    let mut dropped: Vec<&FieldPath> = previous
        .iter()
        .filter(|p| !cfg_fields.contains(*p) && !others_fields.contains(*p))
        .collect();
    dropped.sort_by_key(|p| p.len());
    let mut gone: Vec<&FieldPath> = Vec::new();
    for p in dropped {
        if gone.iter().any(|g| p.starts_with(g))
            || under(&others_fields, p).next().is_some()
            || under(&cfg_fields, p).next().is_some()
        {
            continue;
        }
        remove_path(&mut merged, p);
        gone.push(p);
    }

    let (changed, _) = changed_fields(
        &scoped(live, writer.scope),
        &scoped(&merged, writer.scope),
        shapes,
    );
    let mut conflicts: Vec<(usize, FieldPath)> = Vec::new();
    for (i, e) in entries.iter().enumerate() {
        if Some(i) == mine || e.subresource != subresource {
            continue;
        }
        for c in &changed {
            if under(&e.fields, c).next().is_some() {
                conflicts.push((i, c.clone()));
            }
        }
    }
    if !conflicts.is_empty() {
        if !force {
            return Err(conflict_error(&entries, &conflicts));
        }
        for (i, p) in &conflicts {
            remove_under(&mut entries[*i].fields, p);
        }
    }

    match mine {
        Some(i) => {
            let e = &mut entries[i];
            if e.fields != cfg_fields || e.api_version != writer.api_version {
                e.time = writer.now.to_string();
            }
            e.fields = cfg_fields;
            e.api_version = writer.api_version.to_string();
        }
        None => entries.push(ManagerEntry {
            manager: writer.manager.to_string(),
            operation: "Apply".into(),
            api_version: writer.api_version.to_string(),
            time: writer.now.to_string(),
            subresource: subresource.to_string(),
            fields: cfg_fields,
        }),
    }
    write_managers(&mut merged, &entries);
    Ok(merged)
}

/// Records a non-apply write (create, update, patch) by `writer`: the fields it changed
/// become its own and leave every other manager; `new` gets the resulting
/// managedFields.
pub fn record_update(old: Option<&Value>, new: &mut Value, writer: &Writer, shapes: &ListShapes) {
    let mut entries = old.map(read_managers).unwrap_or_default();
    let subresource = writer.scope.subresource();
    let (mut changed, mut removed) = match old {
        Some(o) => changed_fields(&scoped(o, writer.scope), &scoped(new, writer.scope), shapes),
        None => (
            fields_of(&scoped(new, writer.scope), shapes).unwrap_or_default(),
            FieldSet::new(),
        ),
    };
    changed.retain(|p| writer.scope.owns(p));
    removed.retain(|p| writer.scope.owns(p));
    if !changed.is_empty() || !removed.is_empty() {
        for e in entries.iter_mut().filter(|e| e.subresource == subresource) {
            for p in changed.iter().chain(removed.iter()) {
                remove_under(&mut e.fields, p);
            }
        }
        let mine = entries.iter().position(|e| {
            e.manager == writer.manager
                && e.operation == "Update"
                && e.api_version == writer.api_version
                && e.subresource == subresource
        });
        match mine {
            Some(i) => {
                entries[i].fields.extend(changed);
                entries[i].time = writer.now.to_string();
            }
            None if !changed.is_empty() => entries.push(ManagerEntry {
                manager: writer.manager.to_string(),
                operation: "Update".into(),
                api_version: writer.api_version.to_string(),
                time: writer.now.to_string(),
                subresource: subresource.to_string(),
                fields: changed,
            }),
            None => {}
        }
    }
    write_managers(new, &entries);
}

/// The 409 a real API server sends, worded the same way.
fn conflict_error(entries: &[ManagerEntry], conflicts: &[(usize, FieldPath)]) -> ApiError {
    let who = |i: usize| {
        let e = &entries[i];
        if e.operation == "Update" {
            format!("{:?} using {}", e.manager, e.api_version)
        } else {
            format!("{:?}", e.manager)
        }
    };
    let causes: Vec<Value> = conflicts
        .iter()
        .map(|(i, p)| {
            json!({"reason": "FieldManagerConflict", "message": format!("conflict with {}", who(*i)),
                "field": path_string(p)})
        })
        .collect();
    let message = if conflicts.len() == 1 {
        let (i, p) = &conflicts[0];
        format!(
            "Apply failed with 1 conflict: conflict with {}: {}",
            who(*i),
            path_string(p)
        )
    } else {
        let mut by_manager: std::collections::BTreeMap<String, Vec<String>> = Default::default();
        for (i, p) in conflicts {
            by_manager.entry(who(*i)).or_default().push(path_string(p));
        }
        let mut lines = Vec::new();
        for (m, paths) in by_manager {
            lines.push(format!("conflicts with {m}:"));
            lines.extend(paths.into_iter().map(|p| format!("- {p}")));
        }
        format!(
            "Apply failed with {} conflicts: {}",
            conflicts.len(),
            lines.join("\n")
        )
    };
    ApiError::apply_conflict(message, causes)
}

/// Merges an applied configuration into an object: maps field by field, associative
/// lists item by item (new items appended), set lists by union, everything else
/// replaced. An explicit `null` removes the field.
pub fn merge_into(target: &mut Value, patch: &Value, shapes: &ListShapes, path: &mut Vec<String>) {
    match (target, patch) {
        (Value::Object(t), Value::Object(p)) if path.is_empty() || !shapes.atomic_map(path) => {
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                    continue;
                }
                path.push(k.clone());
                match t.get_mut(k) {
                    Some(existing) => merge_into(existing, v, shapes, path),
                    None => {
                        t.insert(k.clone(), v.clone());
                    }
                }
                path.pop();
            }
        }
        (Value::Array(t), Value::Array(p)) => match shapes.list(path) {
            ListShape::Map(keys) => {
                let mut out: Vec<Value> = Vec::with_capacity(p.len().max(t.len()));
                // Items of the live list keep their place; applied items not there yet
                // follow in the applied order.
                let pkeys: Vec<Option<PathElement>> =
                    p.iter().map(|it| item_key(it, &keys).ok()).collect();
                let mut used = vec![false; p.len()];
                for it in t.iter() {
                    let k = item_key(it, &keys).ok();
                    let pos = k
                        .as_ref()
                        .and_then(|k| pkeys.iter().position(|pk| pk.as_ref() == Some(k)));
                    let mut item = it.clone();
                    if let Some(j) = pos {
                        used[j] = true;
                        merge_into(&mut item, &p[j], shapes, path);
                    }
                    out.push(item);
                }
                for (j, it) in p.iter().enumerate() {
                    if !used[j] {
                        out.push(it.clone());
                    }
                }
                *t = out;
            }
            ListShape::Set => {
                for v in p {
                    if !t.contains(v) {
                        t.push(v.clone());
                    }
                }
            }
            ListShape::Atomic => *t = p.clone(),
        },
        (t, p) => *t = p.clone(),
    }
}

fn matches(item: &Value, pe: &PathElement) -> bool {
    match pe {
        PathElement::Key(kv) => kv.iter().all(|(k, v)| {
            item.get(k)
                .is_some_and(|x| serde_json::to_string(x).ok().as_deref() == Some(v.as_str()))
        }),
        PathElement::Value(v) => serde_json::to_string(item).ok().as_deref() == Some(v.as_str()),
        _ => false,
    }
}

fn child_mut<'v>(v: &'v mut Value, pe: &PathElement) -> Option<&'v mut Value> {
    match (v, pe) {
        (Value::Object(m), PathElement::Field(f)) => m.get_mut(f),
        (Value::Array(a), PathElement::Index(i)) => a.get_mut(*i),
        (Value::Array(a), pe) => a.iter_mut().find(|it| matches(it, pe)),
        _ => None,
    }
}

/// Removes the field or list item at `path`, if it is there.
pub fn remove_path(obj: &mut Value, path: &[PathElement]) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut cur = obj;
    for pe in parents {
        match child_mut(cur, pe) {
            Some(next) => cur = next,
            None => return,
        }
    }
    match (cur, last) {
        (Value::Object(m), PathElement::Field(f)) => {
            m.remove(f);
        }
        (Value::Array(a), PathElement::Index(i)) if *i < a.len() => {
            a.remove(*i);
        }
        (Value::Array(a), pe) => a.retain(|it| !matches(it, pe)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shapes() -> ListShapes<'static> {
        ListShapes::new("apps", "Deployment", None)
    }

    fn writer<'a>(manager: &'a str) -> Writer<'a> {
        Writer {
            manager,
            api_version: "apps/v1",
            scope: Scope::Main {
                status_subresource: true,
            },
            now: "2026-01-01T00:00:00Z",
        }
    }

    fn deployment(replicas: i64, image: &str) -> Value {
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
            "spec": {"replicas": replicas, "template": {"spec": {"containers": [
                {"name": "web", "image": image}]}}}})
    }

    #[test]
    fn another_manager_changing_an_owned_field_conflicts_unless_forced() {
        let live = apply(
            &json!({}),
            &deployment(2, "a"),
            &writer("one"),
            false,
            &shapes(),
        )
        .unwrap();
        let err = apply(&live, &deployment(3, "a"), &writer("two"), false, &shapes()).unwrap_err();
        assert_eq!(err.code, 409);
        assert_eq!(
            err.message,
            "Apply failed with 1 conflict: conflict with \"one\": .spec.replicas"
        );
        let forced = apply(&live, &deployment(3, "a"), &writer("two"), true, &shapes()).unwrap();
        assert_eq!(forced["spec"]["replicas"], 3);
        let entries = read_managers(&forced);
        let one = entries.iter().find(|e| e.manager == "one").unwrap();
        assert!(
            !one.fields
                .iter()
                .any(|p| path_string(p) == ".spec.replicas")
        );
    }

    #[test]
    fn the_same_value_from_two_managers_is_shared_not_a_conflict() {
        let live = apply(
            &json!({}),
            &deployment(2, "a"),
            &writer("one"),
            false,
            &shapes(),
        )
        .unwrap();
        let shared = apply(&live, &deployment(2, "a"), &writer("two"), false, &shapes()).unwrap();
        assert_eq!(read_managers(&shared).len(), 2);
    }

    #[test]
    fn a_field_dropped_from_the_config_is_removed_unless_another_manager_owns_it() {
        let mut cfg = deployment(2, "a");
        cfg["metadata"]["labels"] = json!({"x": "1", "y": "2"});
        let live = apply(&json!({}), &cfg, &writer("one"), false, &shapes()).unwrap();
        let mut other = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "labels": {"y": "2"}}});
        let live = apply(&live, &other, &writer("two"), false, &shapes()).unwrap();
        let live = apply(&live, &deployment(2, "a"), &writer("one"), false, &shapes()).unwrap();
        assert_eq!(live["metadata"]["labels"], json!({"y": "2"}));
        other["metadata"]["labels"] = json!({});
        let live = apply(&live, &other, &writer("two"), false, &shapes()).unwrap();
        assert_eq!(live["metadata"]["labels"], json!({}));
    }

    #[test]
    fn an_update_takes_ownership_of_the_fields_it_changes() {
        let live = apply(
            &json!({}),
            &deployment(2, "a"),
            &writer("one"),
            false,
            &shapes(),
        )
        .unwrap();
        let mut scaled = live.clone();
        scaled["spec"]["replicas"] = json!(5);
        record_update(Some(&live), &mut scaled, &writer("hpa"), &shapes());
        // The applier no longer owns replicas, so re-applying without it keeps 5.
        let mut cfg = deployment(2, "a");
        cfg["spec"].as_object_mut().unwrap().remove("replicas");
        let after = apply(&scaled, &cfg, &writer("one"), false, &shapes()).unwrap();
        assert_eq!(after["spec"]["replicas"], 5);
        // And re-applying with a different value conflicts with the updater.
        let err = apply(
            &scaled,
            &deployment(2, "a"),
            &writer("one"),
            false,
            &shapes(),
        )
        .unwrap_err();
        assert!(
            err.message
                .contains("conflict with \"hpa\" using apps/v1: .spec.replicas"),
            "{}",
            err.message
        );
    }

    #[test]
    fn containers_merge_by_name_keeping_others_items() {
        let live = apply(
            &json!({}),
            &deployment(1, "a"),
            &writer("one"),
            false,
            &shapes(),
        )
        .unwrap();
        let sidecar = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
            "spec": {"template": {"spec": {"containers": [{"name": "proxy", "image": "envoy"}]}}}});
        let both = apply(&live, &sidecar, &writer("mesh"), false, &shapes()).unwrap();
        let names: Vec<&str> = both["spec"]["template"]["spec"]["containers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["web", "proxy"]);
    }
}
