//! Server-side printing: the `Table` and `PartialObjectMetadata` forms kubectl and
//! metadata-only clients ask for in their `Accept` header.

use std::time::SystemTime;

use serde_json::{Value, json};

use super::kinds::ResourceType;

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

/// Human age like kubectl prints it: `45s`, `3m`, `5h`, `2d`.
fn age(created: &str) -> String {
    let Ok(t) = humantime::parse_rfc3339(created) else {
        return "<unknown>".into();
    };
    let secs = SystemTime::now()
        .duration_since(t)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 7200 => format!("{}m", s / 60),
        s if s < 172_800 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86_400),
    }
}

fn column(name: &str, format: &str, description: &str) -> Value {
    json!({"name": name, "type": "string", "format": format, "description": description, "priority": 0})
}

fn int(v: &Value) -> i64 {
    v.as_i64().unwrap_or(0)
}

/// Columns and one row's cells for `obj` of type `rt`.
fn cells(rt: &ResourceType, obj: &Value) -> (Vec<Value>, Vec<Value>) {
    let name = obj["metadata"]["name"].clone();
    let created = age(obj["metadata"]["creationTimestamp"].as_str().unwrap_or(""));
    let name_col = column("Name", "name", "Name must be unique within a namespace.");
    let age_col = column(
        "Age",
        "",
        "CreationTimestamp is a timestamp representing the server time when this object was created.",
    );
    let s = &obj["status"];
    match (rt.group.as_str(), rt.kind.as_str()) {
        ("apps", "Deployment") => {
            let replicas = obj["spec"]["replicas"].as_i64().unwrap_or(1);
            (
                vec![
                    name_col,
                    column("Ready", "", "Number of the pod with ready state"),
                    column(
                        "Up-to-date",
                        "",
                        "Total number of non-terminated pods targeted by this deployment that have the desired template spec.",
                    ),
                    column(
                        "Available",
                        "",
                        "Total number of available pods (ready for at least minReadySeconds) targeted by this deployment.",
                    ),
                    age_col,
                ],
                vec![
                    name,
                    json!(format!("{}/{}", int(&s["readyReplicas"]), replicas)),
                    json!(int(&s["updatedReplicas"])),
                    json!(int(&s["availableReplicas"])),
                    json!(created),
                ],
            )
        }
        ("", "Namespace") => (
            vec![
                name_col,
                column("Status", "", "The status of the namespace"),
                age_col,
            ],
            vec![
                name,
                json!(s["phase"].as_str().unwrap_or("")),
                json!(created),
            ],
        ),
        ("", "Pod") => (
            vec![
                name_col,
                column("Status", "", "The phase of the pod"),
                age_col,
            ],
            vec![
                name,
                json!(s["phase"].as_str().unwrap_or("Pending")),
                json!(created),
            ],
        ),
        _ => (vec![name_col, age_col], vec![name, json!(created)]),
    }
}

/// A `Table` of `objects`; each row carries the object (full when `include_object`,
/// otherwise metadata only), as kubectl expects.
pub fn table(rt: &ResourceType, objects: &[Value], meta: Value, include_object: bool) -> Value {
    let mut columns = None;
    let mut rows = Vec::new();
    for o in objects {
        let (cols, cells) = cells(rt, o);
        columns.get_or_insert(cols);
        let object = if include_object {
            o.clone()
        } else {
            partial(o)
        };
        rows.push(json!({"cells": cells, "object": object}));
    }
    let columns = columns.unwrap_or_else(|| cells(rt, &json!({"metadata": {}})).0);
    json!({"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": meta,
        "columnDefinitions": columns, "rows": rows})
}
