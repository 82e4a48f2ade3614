//! `GET /openapi/v2`: the Swagger 2.0 document kubectl reads for client-side `apply`
//! (its strategic merge patch follows the document's merge keys) and for `explain
//! --output=plaintext-openapiv2`, in JSON or in the protobuf form kubectl asks for
//! (the gnostic `openapi_v2.Document` message,
//! `application/com.github.proto-openapi.spec.v2@v1.0+protobuf`).
//!
//! The definitions are the v3 documents' schemas ([`crate::apiserver::openapi`]) of every
//! served group version, rewritten for Swagger 2.0 as a real server writes them:
//! references point into `#/definitions/`, a reference wrapped in `allOf` (how v3
//! puts a description beside it) becomes a plain `$ref` with the description, and
//! what v2 cannot say (`nullable`, `oneOf`, `anyOf`) is left out. Each list a
//! strategic merge merges carries `x-kubernetes-patch-strategy: merge` and its
//! `x-kubernetes-patch-merge-key`, taken from [`manifest::schema::list_strategy`], the
//! table the simulator's own strategic merge ([`crate::apiserver::smp`]) follows, so a patch
//! kubectl computes from this document is one the simulator merges the same way.

use std::collections::HashSet;

use serde_json::{Map, Value, json};

use crate::apiserver::kinds::Registry;
use crate::apiserver::openapi;
use crate::apiserver::proto_encode::{bytes_field, fixed64_field, string_field, varint_field};
use manifest::schema::{ListStrategy, list_strategy};

/// The media type of the protobuf form as a real server answers it (clients ask for
/// it as `...spec.v2@v1.0+protobuf` too, which Go's MIME parser cannot read back).
pub const PROTOBUF: &str = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf";

/// Whether a client with this `Accept` header prefers the protobuf form: of the
/// alternatives the simulator writes, the one with the highest `q` (the first of
/// equals) is protobuf, in either spelling.
pub fn wants_protobuf(accept: &str) -> bool {
    let mut best: Option<(f32, bool)> = None;
    for alt in accept.split(',') {
        let mut parts = alt.split(';');
        let media = parts.next().unwrap_or("").trim();
        let q = parts
            .filter_map(|p| p.trim().strip_prefix("q="))
            .next()
            .map_or(1.0, |v| v.trim().parse().unwrap_or(0.0));
        let protobuf = matches!(
            media,
            "application/com.github.proto-openapi.spec.v2@v1.0+protobuf"
                | "application/com.github.proto-openapi.spec.v2.v1.0+protobuf"
        );
        let json = matches!(media, "application/json" | "application/*" | "*/*");
        if (protobuf || json) && q > 0.0 && best.is_none_or(|(b, _)| q > b) {
            best = Some((q, protobuf));
        }
    }
    best.is_some_and(|(_, protobuf)| protobuf)
}

const V3_REFS: &str = "#/components/schemas/";
const V2_REFS: &str = "#/definitions/";

/// The whole Swagger 2.0 document: every served group version's paths and the
/// schemas of its kinds, custom resources included.
pub fn document(registry: &Registry) -> Value {
    let mut paths = Map::new();
    let mut definitions = Map::new();
    for (group, version) in openapi::group_versions(registry) {
        let Some(gv_paths) = openapi::paths(registry, &group, &version) else {
            continue;
        };
        for (path, mut item) in gv_paths {
            // Swagger 2.0 parameters carry their type themselves.
            for op in item
                .as_object_mut()
                .into_iter()
                .flat_map(|m| m.values_mut())
            {
                for p in op["parameters"].as_array_mut().into_iter().flatten() {
                    if let Some(m) = p.as_object_mut() {
                        m.remove("schema");
                        m.insert("type".into(), json!("string"));
                        m.insert("uniqueItems".into(), json!(true));
                    }
                }
            }
            paths.insert(path, item);
        }
        for (name, schema) in openapi::schemas(registry, &group, &version) {
            definitions.entry(name).or_insert_with(|| to_v2(&schema));
        }
    }
    add_merge_keys(&mut definitions);
    json!({
        "swagger": "2.0",
        "info": {"title": "Kubernetes", "version": "v1.32.0"},
        "paths": paths,
        "definitions": definitions,
    })
}

/// A v3 schema as Swagger 2.0 says it.
fn to_v2(schema: &Value) -> Value {
    match schema {
        Value::Object(m) => {
            let mut out = Map::new();
            // v2 has no way to say "integer or string": a real server calls such a
            // value a string of format int-or-string (kubectl explain prints
            // `<string>`).
            if m.get("x-kubernetes-int-or-string") == Some(&Value::Bool(true))
                && !m.contains_key("type")
            {
                out.insert("type".into(), json!("string"));
                out.insert("format".into(), json!("int-or-string"));
            }
            for (k, v) in m {
                match k.as_str() {
                    "nullable" | "oneOf" | "anyOf" | "not" => {}
                    "$ref" => {
                        let r = v.as_str().unwrap_or("");
                        out.insert(k.clone(), json!(r.replace(V3_REFS, V2_REFS)));
                    }
                    "allOf"
                        if v.as_array()
                            .is_some_and(|a| a.len() == 1 && a[0].get("$ref").is_some()) =>
                    {
                        if let Value::Object(inner) = to_v2(&v[0]) {
                            out.extend(inner);
                        }
                    }
                    // Property names and extension values are data, not schemas.
                    "properties" => {
                        let props = v
                            .as_object()
                            .map(|p| p.iter().map(|(n, s)| (n.clone(), to_v2(s))).collect())
                            .unwrap_or_default();
                        out.insert(k.clone(), Value::Object(props));
                    }
                    _ if k.starts_with("x-")
                        || matches!(k.as_str(), "enum" | "default" | "example") =>
                    {
                        out.insert(k.clone(), v.clone());
                    }
                    _ => {
                        out.insert(k.clone(), to_v2(v));
                    }
                }
            }
            Value::Object(out)
        }
        Value::Array(a) => Value::Array(a.iter().map(to_v2).collect()),
        other => other.clone(),
    }
}

/// Marks the lists a strategic merge merges, walking each built-in kind's schema
/// from its root with the path [`list_strategy`] expects.
fn add_merge_keys(definitions: &mut Map<String, Value>) {
    let roots: Vec<(String, String, String)> = definitions
        .iter()
        .filter_map(|(name, s)| {
            let gvk = s["x-kubernetes-group-version-kind"].get(0)?;
            Some((
                name.clone(),
                gvk["group"].as_str()?.to_string(),
                gvk["kind"].as_str()?.to_string(),
            ))
        })
        .collect();
    // (definition, property, strategy), the first path to reach a property wins.
    let mut marks: Vec<(String, String, ListStrategy)> = Vec::new();
    for (root, group, kind) in roots {
        if !manifest::schema::is_builtin_group(&group) {
            continue; // custom resources have no strategic merge
        }
        let mut seen = HashSet::new();
        let mut stack = vec![(root, Vec::<String>::new())];
        while let Some((name, path)) = stack.pop() {
            if !seen.insert(name.clone()) {
                continue;
            }
            let Some(props) = definitions
                .get(&name)
                .and_then(|s| s["properties"].as_object())
            else {
                continue;
            };
            for (prop, schema) in props {
                let mut here = path.clone();
                here.push(prop.clone());
                let target = if schema["type"] == "array" {
                    let strategy = list_strategy(&group, &kind, &here);
                    if strategy != ListStrategy::Replace
                        && !marks.iter().any(|(d, p, _)| *d == name && p == prop)
                    {
                        marks.push((name.clone(), prop.clone(), strategy));
                    }
                    schema["items"]["$ref"].as_str()
                } else {
                    schema["$ref"].as_str()
                };
                if let Some(r) = target.and_then(|r| r.strip_prefix(V2_REFS)) {
                    stack.push((r.to_string(), here));
                }
            }
        }
    }
    for (name, prop, strategy) in marks {
        let Some(p) = definitions
            .get_mut(&name)
            .and_then(|s| s["properties"].get_mut(&prop))
            .and_then(Value::as_object_mut)
        else {
            continue;
        };
        p.insert("x-kubernetes-patch-strategy".into(), json!("merge"));
        if let ListStrategy::MergeByKey(key) = strategy {
            p.insert("x-kubernetes-patch-merge-key".into(), json!(key));
        }
    }
}

/// The document in gnostic's `openapi_v2.Document` message.
pub fn to_protobuf(doc: &Value) -> Vec<u8> {
    let mut out = string_field(1, doc["swagger"].as_str().unwrap_or("2.0"));
    let info = [
        string_field(1, doc["info"]["title"].as_str().unwrap_or("")),
        string_field(2, doc["info"]["version"].as_str().unwrap_or("")),
    ]
    .concat();
    out.extend(bytes_field(2, &info));
    let mut paths = Vec::new();
    for (path, item) in doc["paths"].as_object().into_iter().flatten() {
        let mut path_item = Vec::new();
        for (verb, tag) in [
            ("get", 2),
            ("put", 3),
            ("post", 4),
            ("delete", 5),
            ("patch", 8),
        ] {
            if let Some(op) = item.get(verb) {
                path_item.extend(bytes_field(tag, &operation(op)));
            }
        }
        let named = [string_field(1, path), bytes_field(2, &path_item)].concat();
        paths.extend(bytes_field(2, &named));
    }
    out.extend(bytes_field(8, &paths));
    let mut definitions = Vec::new();
    for (name, schema) in doc["definitions"].as_object().into_iter().flatten() {
        definitions.extend(bytes_field(1, &named_schema(name, schema)));
    }
    out.extend(bytes_field(9, &definitions));
    out
}

/// An `Operation`: its id, a 200 response and its extensions (kubectl reads the
/// group-version-kind).
fn operation(op: &Value) -> Vec<u8> {
    let mut out = string_field(5, op["operationId"].as_str().unwrap_or(""));
    let response = bytes_field(1, &string_field(1, "OK"));
    let code = [string_field(1, "200"), bytes_field(2, &response)].concat();
    out.extend(bytes_field(9, &bytes_field(1, &code)));
    out.extend(extensions(op, 13));
    out
}

fn named_schema(name: &str, schema: &Value) -> Vec<u8> {
    [
        string_field(1, name),
        bytes_field(2, &schema_message(schema)),
    ]
    .concat()
}

/// A `NamedAny` per `x-` key: the value as YAML text (JSON is YAML).
fn extensions(v: &Value, tag: u64) -> Vec<u8> {
    let mut out = Vec::new();
    for (k, val) in v.as_object().into_iter().flatten() {
        if k.starts_with("x-") {
            let named = [string_field(1, k), bytes_field(2, &any(val))].concat();
            out.extend(bytes_field(tag, &named));
        }
    }
    out
}

/// gnostic's `Any`: the value as YAML in field 2.
fn any(v: &Value) -> Vec<u8> {
    string_field(2, &serde_json::to_string(v).unwrap_or_default())
}

fn double_field(tag: u64, v: f64) -> Vec<u8> {
    fixed64_field(tag, v.to_bits())
}

/// gnostic's `Schema` from a Swagger 2.0 schema in JSON; keys it has no field for
/// (other than extensions) are left out, as the real server's converter does.
fn schema_message(s: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    let Some(m) = s.as_object() else {
        return out;
    };
    let text = |k: &str| m.get(k).and_then(Value::as_str);
    let int = |k: &str| m.get(k).and_then(Value::as_i64);
    let float = |k: &str| m.get(k).and_then(Value::as_f64);
    let flag = |k: &str| m.get(k).and_then(Value::as_bool);
    for (key, tag) in [("$ref", 1), ("format", 2), ("title", 3), ("description", 4)] {
        if let Some(t) = text(key) {
            out.extend(string_field(tag, t));
        }
    }
    if let Some(d) = m.get("default") {
        out.extend(bytes_field(5, &any(d)));
    }
    for (key, tag) in [("multipleOf", 6), ("maximum", 7), ("minimum", 9)] {
        if let Some(f) = float(key) {
            out.extend(double_field(tag, f));
        }
    }
    for (key, tag) in [
        ("exclusiveMaximum", 8),
        ("exclusiveMinimum", 10),
        ("uniqueItems", 16),
        ("readOnly", 27),
    ] {
        if let Some(b) = flag(key) {
            out.extend(varint_field(tag, u64::from(b)));
        }
    }
    for (key, tag) in [
        ("maxLength", 11),
        ("minLength", 12),
        ("maxItems", 14),
        ("minItems", 15),
        ("maxProperties", 17),
        ("minProperties", 18),
    ] {
        if let Some(i) = int(key) {
            out.extend(varint_field(tag, i as u64));
        }
    }
    if let Some(p) = text("pattern") {
        out.extend(string_field(13, p));
    }
    for r in m
        .get("required")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if let Some(r) = r.as_str() {
            out.extend(string_field(19, r));
        }
    }
    for e in m
        .get("enum")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        out.extend(bytes_field(20, &any(e)));
    }
    match m.get("additionalProperties") {
        Some(Value::Bool(b)) => out.extend(bytes_field(21, &varint_field(2, u64::from(*b)))),
        Some(v @ Value::Object(_)) => {
            out.extend(bytes_field(21, &bytes_field(1, &schema_message(v))));
        }
        _ => {}
    }
    if let Some(t) = text("type") {
        out.extend(bytes_field(22, &string_field(1, t)));
    }
    match m.get("items") {
        Some(v @ Value::Object(_)) => {
            out.extend(bytes_field(23, &bytes_field(1, &schema_message(v))))
        }
        Some(Value::Array(a)) => {
            let items: Vec<u8> = a
                .iter()
                .flat_map(|i| bytes_field(1, &schema_message(i)))
                .collect();
            out.extend(bytes_field(23, &items));
        }
        _ => {}
    }
    for a in m
        .get("allOf")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        out.extend(bytes_field(24, &schema_message(a)));
    }
    if let Some(props) = m.get("properties").and_then(Value::as_object) {
        let named: Vec<u8> = props
            .iter()
            .flat_map(|(n, p)| bytes_field(1, &named_schema(n, p)))
            .collect();
        out.extend(bytes_field(25, &named));
    }
    if let Some(d) = text("discriminator") {
        out.extend(string_field(26, d));
    }
    if let Some(e) = m.get("example") {
        out.extend(bytes_field(30, &any(e)));
    }
    out.extend(extensions(s, 31));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc() -> Value {
        document(&Registry::builtin())
    }

    #[test]
    fn definitions_are_named_as_a_real_server_names_them_with_v2_references() {
        let d = doc();
        let deployment = &d["definitions"]["io.k8s.api.apps.v1.Deployment"];
        assert_eq!(
            deployment["x-kubernetes-group-version-kind"],
            json!([{"group": "apps", "version": "v1", "kind": "Deployment"}])
        );
        let spec = &d["definitions"]["io.k8s.api.apps.v1.DeploymentSpec"];
        assert_eq!(
            spec["properties"]["strategy"]["$ref"],
            "#/definitions/io.k8s.api.apps.v1.DeploymentStrategy"
        );
        assert!(
            spec["properties"]["strategy"]["description"].is_string(),
            "{spec}"
        );
        assert!(!d.to_string().contains("#/components/schemas/"));
    }

    #[test]
    fn merged_lists_carry_the_merge_keys_the_simulators_strategic_merge_uses() {
        let d = doc();
        let defs = &d["definitions"];
        let prop = |def: &str, p: &str| defs[def]["properties"][p].clone();
        let containers = prop("io.k8s.api.core.v1.PodSpec", "containers");
        assert_eq!(containers["x-kubernetes-patch-merge-key"], "name");
        assert_eq!(containers["x-kubernetes-patch-strategy"], "merge");
        assert_eq!(
            prop("io.k8s.api.core.v1.Container", "ports")["x-kubernetes-patch-merge-key"],
            "containerPort"
        );
        assert_eq!(
            prop("io.k8s.api.core.v1.ServiceSpec", "ports")["x-kubernetes-patch-merge-key"],
            "port"
        );
        assert_eq!(
            prop(
                "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta",
                "finalizers"
            )["x-kubernetes-patch-strategy"],
            "merge"
        );
        // A list replaced whole carries nothing.
        assert!(
            prop("io.k8s.api.core.v1.Container", "args")
                .get("x-kubernetes-patch-strategy")
                .is_none()
        );
    }

    #[test]
    fn the_protobuf_form_holds_every_definition_and_its_extensions() {
        let d = doc();
        let pb = to_protobuf(&d);
        assert!(pb.starts_with(&string_field(1, "2.0")));
        let named = string_field(1, "io.k8s.api.apps.v1.DeploymentStrategy");
        assert!(pb.windows(named.len()).any(|w| w == named));
        let key = string_field(1, "x-kubernetes-patch-merge-key");
        assert!(pb.windows(key.len()).any(|w| w == key));
        assert_eq!(double_field(7, 1.5)[0], 7 << 3 | 1);
        assert_eq!(&double_field(7, 1.5)[1..], &1.5f64.to_le_bytes());
        // A field number above 15 takes a two-byte key.
        assert_eq!(&double_field(16, 0.0)[..2], &[0x81, 0x01]);
    }

    #[test]
    fn accept_headers_choose_the_form() {
        assert!(wants_protobuf(
            "application/com.github.proto-openapi.spec.v2@v1.0+protobuf"
        ));
        assert!(wants_protobuf(
            "application/com.github.proto-openapi.spec.v2.v1.0+protobuf, application/json"
        ));
        assert!(!wants_protobuf("application/json"));
        assert!(!wants_protobuf(
            "application/json, application/com.github.proto-openapi.spec.v2@v1.0+protobuf"
        ));
        assert!(!wants_protobuf(
            "application/com.github.proto-openapi.spec.v2@v1.0+protobuf; q=0.5, application/json"
        ));
    }
}
