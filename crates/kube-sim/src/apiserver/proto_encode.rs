//! Answers in Kubernetes' protobuf encoding (`application/vnd.kubernetes.protobuf`),
//! written from the JSON the store keeps, for clients that prefer protobuf
//! (client-go's typed clients, and so kubectl's `create`, `auth`, `logs`, ...).
//!
//! An answer is the four bytes `k8s\0` and a `runtime.Unknown` message holding the
//! object's apiVersion and kind and its own message, written with the same field
//! table [`crate::apiserver::protobuf`] reads requests with ([`crate::apiserver::proto_schema`]): objects
//! of the kinds the table covers, their `<Kind>List`s (`ListMeta` and the items) and
//! `Status` bodies. Writing is all or nothing: a key of the JSON the table has no
//! field for, or a value of the wrong type, makes the whole answer [`Unencodable`],
//! and the caller answers in JSON instead (or 406 when the client takes protobuf
//! only), so a client never receives an object with fields silently missing.
//! Watches get [`watch_frame`]s: the stream form a real server writes.
//!
//! Fields are written in field-number order, maps by key, as Go's generated
//! marshallers write them; what JSON leaves out is not written at all, which a
//! protobuf reader takes for the zero value, as Go's JSON reader does.

use base64::Engine;
use serde_json::{Map, Value};

use crate::apiserver::proto_schema::{self, Field, Kind, Message};

/// The prefix of every Kubernetes protobuf body.
const MAGIC: &[u8] = b"k8s\0";

/// Why an answer cannot be written in protobuf: the path of the first value the
/// field table cannot write and what is wrong with it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct Unencodable(pub String);

fn unencodable(what: impl Into<String>) -> Unencodable {
    Unencodable(what.into())
}

/// Writes an object, a `<Kind>List` of objects or a `Status` in protobuf, with its
/// envelope. The object's `apiVersion` and `kind` choose its message.
pub fn encode(obj: &Value) -> Result<Vec<u8>, Unencodable> {
    let api_version = obj["apiVersion"].as_str().unwrap_or("");
    let kind = obj["kind"].as_str().unwrap_or("");
    let Some(map) = obj.as_object() else {
        return Err(unencodable("the answer is not an object"));
    };
    let name = format!("{api_version} {kind}");
    let raw = if let Some(message) = proto_schema::message_for(api_version, kind) {
        encode_message(map, message, &name, true)?
    } else if kind == "Status" && api_version == "v1" {
        let message = known("Status")?;
        encode_message(map, message, &name, true)?
    } else if let Some(item_kind) = kind.strip_suffix("List")
        && let Some(message) = proto_schema::message_for(api_version, item_kind)
    {
        encode_list(map, message, &name)?
    } else {
        return Err(unencodable(format!("{name} has no protobuf schema")));
    };
    let type_meta = [string_field(1, api_version), string_field(2, kind)].concat();
    let unknown = [
        bytes_field(1, &type_meta),
        bytes_field(2, &raw),
        string_field(3, ""),
        string_field(4, ""),
    ]
    .concat();
    Ok([MAGIC, &unknown].concat())
}

/// Whether objects of `kind` in `api_version` have a message (their fields may
/// still hold something it lacks).
pub fn can_encode_kind(api_version: &str, kind: &str) -> bool {
    proto_schema::message_for(api_version, kind).is_some()
}

/// One event of a protobuf watch: a 4-byte big-endian length, then a `WatchEvent`
/// message (no envelope) whose object is the encoded object with its envelope, as
/// a real server's length-delimited framer writes it.
pub fn watch_frame(event_type: &str, object: &Value) -> Result<Vec<u8>, Unencodable> {
    let raw = encode(object)?;
    let event = [
        string_field(1, event_type),
        bytes_field(2, &bytes_field(1, &raw)),
    ]
    .concat();
    let len = u32::try_from(event.len())
        .map_err(|_| unencodable("a watch event is larger than 4 GiB"))?;
    Ok([&len.to_be_bytes()[..], &event].concat())
}

fn known(name: &str) -> Result<&'static Message, Unencodable> {
    proto_schema::message(name).ok_or_else(|| unencodable(format!("no message {name}")))
}

/// A `<Kind>List`: `metadata` (ListMeta) in field 1, the items in field 2.
fn encode_list(
    map: &Map<String, Value>,
    item: &Message,
    path: &str,
) -> Result<Vec<u8>, Unencodable> {
    let mut out = Vec::new();
    for (key, value) in map {
        match key.as_str() {
            "apiVersion" | "kind" => {}
            "metadata" => {
                let meta = value
                    .as_object()
                    .ok_or_else(|| unencodable(format!("{path}.metadata is not an object")))?;
                let raw = encode_message(meta, known("ListMeta")?, path, false)?;
                out.push((1, bytes_field(1, &raw)));
            }
            "items" => {
                let items = value
                    .as_array()
                    .ok_or_else(|| unencodable(format!("{path}.items is not a list")))?;
                for (i, it) in items.iter().enumerate() {
                    let here = format!("{path}.items[{i}]");
                    let it = it
                        .as_object()
                        .ok_or_else(|| unencodable(format!("{here} is not an object")))?;
                    out.push((2, bytes_field(2, &encode_message(it, item, &here, true)?)));
                }
            }
            other => return Err(unencodable(format!("{path}.{other} has no field"))),
        }
    }
    Ok(in_field_order(out))
}

/// The JSON keys a message's fields take, an embedded struct's keys included.
fn json_names(msg: &Message, out: &mut Vec<&'static str>) {
    for f in msg.fields() {
        match (&f.kind, f.inline) {
            (Kind::Message(m), true) => {
                if let Some(inner) = proto_schema::message(m) {
                    json_names(inner, out);
                }
            }
            _ => out.push(f.name),
        }
    }
}

/// One message from a JSON object; `top` for an object whose `apiVersion` and
/// `kind` travel in the envelope instead.
fn encode_message(
    map: &Map<String, Value>,
    msg: &Message,
    path: &str,
    top: bool,
) -> Result<Vec<u8>, Unencodable> {
    let mut chunks: Vec<(u64, Vec<u8>)> = Vec::new();
    // Keys that belong to an embedded Go struct, per inline field.
    let mut embedded: Vec<(&Field, Map<String, Value>)> = Vec::new();
    // Go objects carry their apiVersion and kind in JSON only: a top-level one's
    // travel in the envelope, an embedded one's (a StatefulSet's claim templates) are
    // not written at all, as a real server writes them.
    let is_object = top
        || msg
            .fields()
            .iter()
            .any(|f| f.name == "metadata" && f.kind == Kind::Message("ObjectMeta"));
    for (key, value) in map {
        if value.is_null() || (is_object && matches!(key.as_str(), "apiVersion" | "kind")) {
            continue;
        }
        let here = format!("{path}.{key}");
        if let Some(f) = msg.fields().iter().find(|f| !f.inline && f.name == key) {
            encode_field(&mut chunks, f, value, &here)?;
            continue;
        }
        let owner = msg.fields().iter().find(|f| {
            let Kind::Message(m) = f.kind else {
                return false;
            };
            let mut names = Vec::new();
            if let Some(inner) = proto_schema::message(m) {
                json_names(inner, &mut names);
            }
            f.inline && names.contains(&key.as_str())
        });
        let Some(owner) = owner else {
            return Err(unencodable(format!(
                "{here}: {} has no field for it",
                msg.name
            )));
        };
        match embedded.iter_mut().find(|(f, _)| f.tag == owner.tag) {
            Some((_, m)) => {
                m.insert(key.clone(), value.clone());
            }
            None => {
                let mut m = Map::new();
                m.insert(key.clone(), value.clone());
                embedded.push((owner, m));
            }
        }
    }
    for (f, m) in embedded {
        encode_field(&mut chunks, f, &Value::Object(m), path)?;
    }
    Ok(in_field_order(chunks))
}

/// Concatenates fields by number; a stable sort keeps a repeated field's order.
fn in_field_order(mut chunks: Vec<(u64, Vec<u8>)>) -> Vec<u8> {
    chunks.sort_by_key(|(tag, _)| *tag);
    chunks.into_iter().flat_map(|(_, b)| b).collect()
}

fn encode_field(
    out: &mut Vec<(u64, Vec<u8>)>,
    f: &Field,
    value: &Value,
    path: &str,
) -> Result<(), Unencodable> {
    if f.kind == Kind::Ignored {
        return if is_empty(value) {
            Ok(())
        } else {
            Err(unencodable(format!("{path} cannot be written in protobuf")))
        };
    }
    if f.repeated {
        let items = value
            .as_array()
            .ok_or_else(|| unencodable(format!("{path} is not a list")))?;
        for (i, item) in items.iter().enumerate() {
            out.push((
                f.tag,
                encode_value(f.tag, &f.kind, item, &format!("{path}[{i}]"))?,
            ));
        }
        return Ok(());
    }
    if f.map {
        let entries = value
            .as_object()
            .ok_or_else(|| unencodable(format!("{path} is not a map")))?;
        let mut keys: Vec<&String> = entries.keys().collect();
        keys.sort();
        for k in keys {
            let mut entry = string_field(1, k);
            let v = &entries[k];
            if !v.is_null() {
                entry.extend(encode_value(2, &f.kind, v, &format!("{path}[{k}]"))?);
            }
            out.push((f.tag, bytes_field(f.tag, &entry)));
        }
        return Ok(());
    }
    out.push((f.tag, encode_value(f.tag, &f.kind, value, path)?));
    Ok(())
}

/// Whether a value carries nothing a reader would miss.
fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(m) => m.values().all(is_empty),
    }
}

/// One value of a field, with its key.
fn encode_value(tag: u64, kind: &Kind, v: &Value, path: &str) -> Result<Vec<u8>, Unencodable> {
    let wrong = |what: &str| unencodable(format!("{path} is not {what}"));
    Ok(match kind {
        Kind::String => string_field(tag, v.as_str().ok_or_else(|| wrong("a string"))?),
        Kind::Bool => varint_field(
            tag,
            u64::from(v.as_bool().ok_or_else(|| wrong("a boolean"))?),
        ),
        // A negative number goes on the wire sign-extended to 64 bits, for int32
        // and int64 alike.
        Kind::Int => varint_field(tag, v.as_i64().ok_or_else(|| wrong("an integer"))? as u64),
        Kind::Bytes => {
            let text = v.as_str().ok_or_else(|| wrong("a base64 string"))?;
            let raw = base64::engine::general_purpose::STANDARD
                .decode(text)
                .map_err(|_| wrong("valid base64"))?;
            bytes_field(tag, &raw)
        }
        Kind::Time => {
            let text = v.as_str().ok_or_else(|| wrong("a time"))?;
            let (seconds, nanos) = timestamp(text).ok_or_else(|| wrong("an RFC 3339 time"))?;
            let raw = [varint_field(1, seconds as u64), varint_field(2, nanos)].concat();
            bytes_field(tag, &raw)
        }
        Kind::Quantity => {
            let text = match v {
                Value::String(s) => s.clone(),
                Value::Number(n) => n.to_string(),
                _ => return Err(wrong("a quantity")),
            };
            bytes_field(tag, &string_field(1, &text))
        }
        Kind::IntOrString => {
            let raw = match v {
                Value::String(s) => [varint_field(1, 1), varint_field(2, 0), string_field(3, s)],
                Value::Number(n) => {
                    let i = n
                        .as_i64()
                        .and_then(|i| i32::try_from(i).ok())
                        .ok_or_else(|| wrong("a 32-bit integer or a string"))?;
                    [
                        varint_field(1, 0),
                        varint_field(2, i64::from(i) as u64),
                        string_field(3, ""),
                    ]
                }
                _ => return Err(wrong("an integer or a string")),
            }
            .concat();
            bytes_field(tag, &raw)
        }
        Kind::Json => {
            let text = serde_json::to_vec(v).map_err(|_| wrong("JSON"))?;
            bytes_field(tag, &bytes_field(1, &text))
        }
        Kind::StringList => {
            let items = v.as_array().ok_or_else(|| wrong("a list of strings"))?;
            let mut raw = Vec::new();
            for item in items {
                raw.extend(string_field(
                    1,
                    item.as_str().ok_or_else(|| wrong("a list of strings"))?,
                ));
            }
            bytes_field(tag, &raw)
        }
        Kind::Message(name) => {
            let map = v.as_object().ok_or_else(|| wrong("an object"))?;
            bytes_field(tag, &encode_message(map, known(name)?, path, false)?)
        }
        Kind::Ignored => return Err(unencodable(format!("{path} cannot be written"))),
    })
}

/// Seconds and nanoseconds since the epoch of an RFC 3339 time; `None` before the
/// epoch or when it does not parse.
fn timestamp(text: &str) -> Option<(i64, u64)> {
    let t = humantime::parse_rfc3339_weak(text.trim_end_matches('Z')).ok()?;
    if !text.ends_with('Z') {
        // Offsets other than UTC are not written by the store.
        return None;
    }
    let d = t.duration_since(std::time::UNIX_EPOCH).ok()?;
    Some((
        i64::try_from(d.as_secs()).ok()?,
        u64::from(d.subsec_nanos()),
    ))
}

fn varint(mut v: u64, out: &mut Vec<u8>) {
    loop {
        let b = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(b);
            return;
        }
        out.push(b | 0x80);
    }
}

pub(crate) fn varint_field(tag: u64, v: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(11);
    varint(tag << 3, &mut out);
    varint(v, &mut out);
    out
}

/// A 64-bit fixed-width field (a `double`'s bits, little-endian).
pub(crate) fn fixed64_field(tag: u64, bits: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(11);
    varint(tag << 3 | 1, &mut out);
    out.extend_from_slice(&bits.to_le_bytes());
    out
}

pub(crate) fn bytes_field(tag: u64, b: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(b.len() + 6);
    varint(tag << 3 | 2, &mut out);
    varint(b.len() as u64, &mut out);
    out.extend_from_slice(b);
    out
}

pub(crate) fn string_field(tag: u64, s: &str) -> Vec<u8> {
    bytes_field(tag, s.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apiserver::protobuf;
    use serde_json::json;

    fn deployment() -> Value {
        json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "default", "uid": "1234",
                "resourceVersion": "7", "generation": 2,
                "creationTimestamp": "2026-01-02T03:04:05Z",
                "labels": {"app": "web"}, "annotations": {"a": "b"},
                "managedFields": [{"manager": "kubectl", "operation": "Update",
                    "apiVersion": "apps/v1", "time": "2026-01-02T03:04:05Z",
                    "fieldsType": "FieldsV1", "fieldsV1": {"f:spec": {"f:replicas": {}}}}]},
            "spec": {"replicas": 0, "selector": {"matchLabels": {"app": "web"}},
                "strategy": {"type": "RollingUpdate",
                    "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": 1}},
                "revisionHistoryLimit": 10, "progressDeadlineSeconds": 600,
                "template": {"metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{"name": "web", "image": "nginx",
                        "resources": {"limits": {"cpu": "500m"}},
                        "env": [{"name": "X", "valueFrom": {"configMapKeyRef": {"name": "c", "key": "k"}}}],
                        "ports": [{"containerPort": 80, "protocol": "TCP"}]}],
                        "volumes": [{"name": "cfg", "configMap": {"name": "c", "defaultMode": 420}}],
                        "terminationGracePeriodSeconds": 30, "securityContext": {}}}},
            "status": {"observedGeneration": 2, "replicas": 1,
                "conditions": [{"type": "Available", "status": "True",
                    "lastUpdateTime": "2026-01-02T03:04:06Z",
                    "lastTransitionTime": "2026-01-02T03:04:06Z",
                    "reason": "MinimumReplicasAvailable", "message": "ok"}]}})
    }

    #[test]
    fn what_is_written_reads_back_the_same_except_the_status_a_request_leaves_out() {
        let obj = deployment();
        let bytes = encode(&obj).unwrap();
        assert!(bytes.starts_with(b"k8s\0"));
        let mut back = protobuf::decode(&bytes).unwrap();
        let mut want = obj.clone();
        want.as_object_mut().unwrap().remove("status");
        back.as_object_mut().unwrap().remove("status");
        assert_eq!(back, want);
    }

    #[test]
    fn a_field_the_table_lacks_makes_the_whole_answer_unencodable() {
        let mut obj = deployment();
        obj["spec"]["template"]["spec"]["containers"][0]["resizePolicy"] =
            json!([{"resourceName": "cpu"}]);
        let err = encode(&obj).unwrap_err();
        assert_eq!(
            err.0,
            "apps/v1 Deployment.spec.template.spec.containers[0].resizePolicy: Container has no field for it"
        );
        let widget = json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {}});
        assert_eq!(
            encode(&widget).unwrap_err().0,
            "example.com/v1 Widget has no protobuf schema"
        );
        let mut wrong_type = deployment();
        wrong_type["spec"]["replicas"] = json!("three");
        assert_eq!(
            encode(&wrong_type).unwrap_err().0,
            "apps/v1 Deployment.spec.replicas is not an integer"
        );
    }

    #[test]
    fn lists_carry_list_meta_and_items_without_their_type() {
        let list = json!({"apiVersion": "v1", "kind": "ConfigMapList",
            "metadata": {"resourceVersion": "9", "continue": "abc", "remainingItemCount": 0},
            "items": [{"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": "a"}, "data": {"k": "v"}}]});
        let bytes = encode(&list).unwrap();
        // The envelope names the list; the item is a ConfigMap message.
        let text = String::from_utf8_lossy(&bytes);
        assert!(text.contains("ConfigMapList"), "{text}");
        let message = proto_schema::message_for("v1", "ConfigMap").unwrap();
        let item =
            encode_message(list["items"][0].as_object().unwrap(), message, "", true).unwrap();
        let field = bytes_field(2, &item);
        assert!(bytes.windows(field.len()).any(|w| w == field));
        let meta = bytes_field(
            1,
            &[
                string_field(2, "9"),
                string_field(3, "abc"),
                varint_field(4, 0),
            ]
            .concat(),
        );
        assert!(bytes.windows(meta.len()).any(|w| w == meta));
    }

    #[test]
    fn a_status_is_written_with_its_details_and_causes() {
        let status = json!({"kind": "Status", "apiVersion": "v1", "metadata": {},
            "status": "Failure", "message": "not found", "reason": "NotFound", "code": 404,
            "details": {"name": "web", "kind": "deployments", "group": "apps",
                "causes": [{"reason": "FieldValueInvalid", "field": "spec"}]}});
        let bytes = encode(&status).unwrap();
        assert!(bytes.windows(9).any(|w| w == b"not found"));
        // code 6 = 404 as a varint
        assert!(bytes.windows(3).any(|w| w == [6 << 3, 0x94, 0x03]));
    }

    #[test]
    fn a_watch_frame_is_a_length_and_an_event_holding_the_enveloped_object() {
        let cm = json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "a", "resourceVersion": "5"}, "data": {"k": "v"}});
        let frame = watch_frame("MODIFIED", &cm).unwrap();
        let len = u32::from_be_bytes(frame[..4].try_into().unwrap()) as usize;
        assert_eq!(len, frame.len() - 4);
        let object = encode(&cm).unwrap();
        let event = [
            string_field(1, "MODIFIED"),
            bytes_field(2, &bytes_field(1, &object)),
        ]
        .concat();
        assert_eq!(&frame[4..], &event[..]);
        assert_eq!(protobuf::decode(&object).unwrap(), cm);
    }

    #[test]
    fn times_keep_their_fraction_and_other_offsets_are_not_written() {
        assert_eq!(timestamp("1970-01-01T00:01:00Z"), Some((60, 0)));
        assert_eq!(
            timestamp("2026-01-02T03:04:05.250000Z").map(|t| t.1),
            Some(250_000_000)
        );
        assert_eq!(timestamp("2026-01-02T03:04:05+02:00"), None);
        assert_eq!(timestamp("yesterday"), None);
    }

    #[test]
    fn negative_numbers_and_int_or_strings_round_trip() {
        let obj = json!({"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "s"},
            "spec": {"ports": [{"port": 80, "targetPort": "http"}, {"port": 81, "targetPort": 8081}],
                "healthCheckNodePort": -5}});
        let back = protobuf::decode(&encode(&obj).unwrap()).unwrap();
        assert_eq!(back["spec"], obj["spec"]);
    }
}
