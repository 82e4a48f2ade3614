//! Server-side printing: the `Table` and `PartialObjectMetadata` forms kubectl and
//! metadata-only clients ask for in their `Accept` header.

use serde_json::{Value, json};

use crate::apiserver::jsonpath;
use crate::apiserver::kinds::ResourceType;
use crate::apiserver::printers;

/// The response form a client asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    /// The objects themselves.
    Full,
    /// `as=Table`: rows with printed columns.
    Table,
    /// `as=PartialObjectMetadata[List]`: metadata only.
    Metadata,
}

impl Form {
    /// Reads the `Accept` header: the first alternative we serve wins.
    pub fn from_accept(accept: &str) -> Form {
        for alt in accept.split(',') {
            let alt = alt.trim();
            if alt.contains("as=Table") {
                return Form::Table;
            }
            if alt.contains("as=PartialObjectMetadata") {
                return Form::Metadata;
            }
            if alt.starts_with("application/json") || alt.starts_with("*/*") || alt.is_empty() {
                return Form::Full;
            }
        }
        Form::Full
    }
}

/// Metadata-only view of an object.
pub fn partial(obj: &Value) -> Value {
    json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
        "metadata": obj["metadata"].clone()})
}

/// Metadata-only list.
pub fn partial_list(items: &[Value], meta: Value) -> Value {
    let items: Vec<Value> = items.iter().map(partial).collect();
    json!({"kind": "PartialObjectMetadataList", "apiVersion": "meta.k8s.io/v1",
        "metadata": meta, "items": items})
}

/// The columns and row cells for objects of `rt` served in `version`: a CRD's
/// `additionalPrinterColumns` (an Age column when it declares none, as a real
/// server defaults them), or the built-in printer of the kind.
fn printer<'a>(rt: &'a ResourceType, version: &str) -> (Vec<Value>, Printer<'a>) {
    if !is_builtin_group(&rt.group) {
        let declared = rt.printer_columns.get(version).cloned().unwrap_or_else(|| {
            vec![json!({"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"})]
        });
        let mut columns = vec![json!({"name": "Name", "type": "string", "format": "name",
            "description": "Name must be unique within a namespace.", "priority": 0})];
        for c in &declared {
            let path = c["jsonPath"].as_str().unwrap_or("");
            let description = c["description"]
                .as_str()
                .map(String::from)
                .unwrap_or_else(|| {
                    format!("Custom resource definition column (in JSONPath format): {path}")
                });
            columns.push(
                json!({"name": c["name"], "type": c["type"].as_str().unwrap_or("string"),
                "format": c["format"].as_str().unwrap_or(""), "description": description,
                "priority": c["priority"].as_i64().unwrap_or(0)}),
            );
        }
        return (columns, Printer::Custom(declared));
    }
    let columns = printers::columns(rt)
        .into_iter()
        .map(|(name, ty, priority, description)| {
            json!({"name": name, "type": ty, "format": if name == "Name" { "name" } else { "" },
                "description": description, "priority": priority})
        })
        .collect();
    (columns, Printer::Builtin(rt))
}

/// Whether a group is one of the built-in ones: a CRD's group has a dot and is not
/// under `k8s.io`.
fn is_builtin_group(group: &str) -> bool {
    group.ends_with(".k8s.io") || !group.contains('.')
}

enum Printer<'a> {
    Builtin(&'a ResourceType),
    Custom(Vec<Value>),
}

impl Printer<'_> {
    fn cells(&self, obj: &Value) -> Vec<Value> {
        match self {
            Printer::Builtin(rt) => printers::cells(rt, obj),
            Printer::Custom(columns) => {
                let mut cells = vec![obj["metadata"]["name"].clone()];
                for c in columns {
                    let found = jsonpath::first(obj, c["jsonPath"].as_str().unwrap_or(""));
                    cells.push(custom_cell(c["type"].as_str().unwrap_or("string"), found));
                }
                cells
            }
        }
    }
}

/// A custom column's cell as a real server fills it: strings printed, numbers and
/// booleans typed, dates as ages, nothing for a missing or mistyped value.
fn custom_cell(ty: &str, value: Option<&Value>) -> Value {
    let Some(v) = value.filter(|v| !v.is_null()) else {
        return Value::Null;
    };
    match (ty, v) {
        ("string", Value::String(s)) => json!(s),
        ("string", other) => json!(other.to_string()),
        ("integer", Value::Number(n)) => n
            .as_i64()
            .or_else(|| n.as_f64().map(|f| f as i64))
            .map_or(Value::Null, |i| json!(i)),
        ("number", Value::Number(n)) => n.as_f64().map_or(Value::Null, |f| json!(f)),
        ("boolean", Value::Bool(b)) => json!(b),
        ("date", Value::String(_)) => json!(printers::age(v)),
        _ => Value::Null,
    }
}

/// A `Table` of `objects`; each row carries the object (full when `include_object`,
/// otherwise metadata only), as kubectl expects.
pub fn table(rt: &ResourceType, objects: &[Value], meta: Value, include_object: bool) -> Value {
    let version = objects
        .first()
        .and_then(|o| o["apiVersion"].as_str())
        .map(|av| av.rsplit('/').next().unwrap_or(av).to_string())
        .unwrap_or_else(|| rt.versions[0].clone());
    let (columns, printer) = printer(rt, &version);
    let rows: Vec<Value> = objects
        .iter()
        .map(|o| {
            let object = if include_object {
                o.clone()
            } else {
                partial(o)
            };
            json!({"cells": printer.cells(o), "object": object})
        })
        .collect();
    json!({"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": meta,
        "columnDefinitions": columns, "rows": rows})
}
