//! Request bodies in Kubernetes' protobuf encoding (`application/vnd.kubernetes.protobuf`),
//! which every typed client of client-go sends for built-in kinds (`kubectl create
//! deployment`, `kubectl create token`, `kubectl auth can-i`, ...), decoded into the
//! JSON the store keeps.
//!
//! A body is the four bytes `k8s\0` and then a `runtime.Unknown` message: the type's
//! apiVersion and kind, the object's own message as raw bytes, and its content
//! encoding and type (both empty for plain protobuf). The object's message is read
//! with the schemas in [`crate::apiserver::proto_schema`], which cover what kubectl's typed
//! clients send; an object whose kind, or one of whose non-empty fields, is not
//! covered is refused with 415 Unsupported Media Type, so nothing is dropped in
//! silence.
//!
//! The wire format cannot tell an absent field from a Go zero value: a Go client
//! writes every non-pointer field, empty or not (`generateName: ""`, `paused:
//! false`). Decoding therefore leaves out empty strings, `false` and `0` the way
//! Go's JSON encoder leaves out `omitempty` fields, except for the fields marked to
//! keep their zero (pointer fields where zero means something, such as `replicas:
//! 0`, and required fields such as a PriorityClass's `value`). Nested messages are
//! kept even when empty (`resources: {}`), as a real server's JSON shows them;
//! timestamps at zero are left out.
//!
//! Answers go out in protobuf when the client's `Accept` prefers it (client-go's
//! typed clients send `application/vnd.kubernetes.protobuf, */*`), written by
//! [`crate::apiserver::proto_encode`] from the same table; an answer the table cannot write
//! goes out in JSON, which those clients accept too and decode by the response's
//! `Content-Type`. Watches of a kind the table covers stream protobuf `WatchEvent`s
//! (an event whose object it cannot write becomes an ERROR event). A client that
//! accepts protobuf only gets 406 Not Acceptable for what cannot be written in it.
//!
//! Why a table and not generated types: the `k8s-pb` crate has prost-generated
//! messages for every built-in kind, but no mapping between them and JSON, and the
//! store keeps JSON. Using it would mean writing that mapping for every message by
//! hand (field names, inline structs, `omitempty`, quantities, int-or-strings,
//! times), which is the same knowledge the table holds in one line per message,
//! and reading or writing a kind would still need code per message. The table
//! drives both directions with one reader and one writer, and a field it lacks is
//! refused (415) or answered in JSON instead of silently dropped.

use base64::Engine;
use serde_json::{Map, Value, json};

use crate::apiserver::api_error::ApiError;
use crate::apiserver::proto_schema::{self, Field, Kind, Message};

/// The media type of Kubernetes protobuf bodies.
pub const MEDIA_TYPE: &str = "application/vnd.kubernetes.protobuf";

/// The prefix of every Kubernetes protobuf body.
const MAGIC: &[u8] = b"k8s\0";

/// Whether a client with this `Accept` header takes a JSON answer: it names JSON,
/// YAML or a wildcard, or nothing at all.
pub fn answers_json(accept: &str) -> bool {
    accept.trim().is_empty()
        || accept.split(',').any(|alt| {
            let media = alt.split(';').next().unwrap_or("").trim();
            matches!(
                media,
                "" | "*/*" | "application/*" | "application/json" | "application/yaml"
            )
        })
}

/// Whether a client with this `Accept` header prefers a protobuf answer: of the
/// media types the simulator writes, the one with the highest `q` (the first of
/// equals) is protobuf. A protobuf alternative asking for another form (`as=Table`)
/// does not count: tables are written in JSON only.
pub fn prefers_protobuf(accept: &str) -> bool {
    let mut best: Option<(f32, bool)> = None;
    for alt in accept.split(',') {
        let mut parts = alt.split(';');
        let media = parts.next().unwrap_or("").trim();
        let (mut q, mut plain) = (1.0f32, true);
        for param in parts {
            let param = param.trim();
            if let Some(v) = param.strip_prefix("q=") {
                q = v.trim().parse().unwrap_or(0.0);
            } else if param.starts_with("as=") {
                plain = false;
            }
        }
        let protobuf = media == MEDIA_TYPE && plain;
        let json = matches!(
            media,
            "*/*" | "application/*" | "application/json" | "application/yaml"
        );
        if !(protobuf || json) || q <= 0.0 {
            continue;
        }
        if best.is_none_or(|(b, _)| q > b) {
            best = Some((q, protobuf));
        }
    }
    best.is_some_and(|(_, protobuf)| protobuf)
}

/// Why a protobuf body could not be read.
#[derive(Debug, PartialEq)]
enum Problem {
    /// The bytes are not a well-formed message (400).
    Malformed(String),
    /// The bytes are fine but the simulator has no schema for them (415).
    Unsupported(String),
}

fn malformed(what: impl Into<String>) -> Problem {
    Problem::Malformed(what.into())
}

/// Decodes a protobuf request body into the object's JSON, with `apiVersion` and
/// `kind` from its envelope. A top-level `status` is left out: a write to the object
/// itself never changes it (a write to its `/status` in protobuf is refused, see
/// [`refuse_status_write`]).
pub fn decode(body: &[u8]) -> Result<Value, ApiError> {
    decode_object(body, proto_schema::message_for).map_err(refusal)
}

/// Decodes the `DeleteOptions` a typed client sends with a delete (under the
/// apiVersion of the client's group) into their JSON.
pub fn decode_delete_options(body: &[u8]) -> Result<Value, ApiError> {
    decode_object(body, |_, kind| {
        (kind == "DeleteOptions")
            .then(|| proto_schema::message("DeleteOptions"))
            .flatten()
    })
    .map_err(refusal)
}

fn refusal(p: Problem) -> ApiError {
    match p {
        Problem::Malformed(m) => {
            ApiError::bad_request(format!("the protobuf request body is malformed: {m}"))
        }
        Problem::Unsupported(m) => ApiError::unsupported_media_type(format!(
            "{m}; the simulated cluster reads protobuf only for the fields kubectl's typed clients send: send this object as application/json"
        )),
    }
}

/// The error for a protobuf write to a `/status` subresource, whose status this
/// module does not read.
pub fn refuse_status_write() -> ApiError {
    ApiError::unsupported_media_type(
        "the simulated cluster does not read status from protobuf: send this status write as application/json",
    )
}

fn decode_object(
    body: &[u8],
    message_for: impl Fn(&str, &str) -> Option<&'static Message>,
) -> Result<Value, Problem> {
    let Some(envelope) = body.strip_prefix(MAGIC) else {
        return Err(malformed(
            "it does not start with the protobuf prefix \"k8s\\x00\"",
        ));
    };
    let (mut api_version, mut kind, mut raw) = (String::new(), String::new(), &[][..]);
    let (mut encoding, mut content_type) = (String::new(), String::new());
    let mut r = Reader::new(envelope);
    while let Some((tag, wire)) = r.key()? {
        match (tag, wire) {
            (1, 2) => {
                let mut tm = Reader::new(r.bytes()?);
                while let Some((tag, wire)) = tm.key()? {
                    match (tag, wire) {
                        (1, 2) => api_version = tm.string()?,
                        (2, 2) => kind = tm.string()?,
                        _ => tm.skip(wire)?,
                    }
                }
            }
            (2, 2) => raw = r.bytes()?,
            (3, 2) => encoding = r.string()?,
            (4, 2) => content_type = r.string()?,
            _ => r.skip(wire)?,
        }
    }
    if !encoding.is_empty() {
        return Err(Problem::Unsupported(format!(
            "the content encoding \"{encoding}\" is not supported"
        )));
    }
    if !content_type.is_empty() && content_type != MEDIA_TYPE {
        return Err(Problem::Unsupported(format!(
            "the embedded content type \"{content_type}\" is not supported"
        )));
    }
    let Some(message) = message_for(&api_version, &kind) else {
        return Err(Problem::Unsupported(format!(
            "{api_version} {kind} cannot be read from protobuf"
        )));
    };
    let mut obj = decode_message(raw, message, &format!("{api_version} {kind}"))?;
    obj.insert("apiVersion".into(), json!(api_version));
    obj.insert("kind".into(), json!(kind));
    // Keys in the order a JSON client would send them is not needed: the store
    // keeps objects as maps.
    Ok(Value::Object(obj))
}

/// A cursor over protobuf wire bytes.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8]) -> Reader<'a> {
        Reader { buf, pos: 0 }
    }

    fn varint(&mut self) -> Result<u64, Problem> {
        let mut v: u64 = 0;
        for shift in (0..64).step_by(7) {
            let Some(&b) = self.buf.get(self.pos) else {
                return Err(malformed("a varint runs past the end"));
            };
            self.pos += 1;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(malformed("a varint is longer than 10 bytes"))
    }

    /// The next field's number and wire type, or `None` at the end.
    fn key(&mut self) -> Result<Option<(u64, u8)>, Problem> {
        if self.pos >= self.buf.len() {
            return Ok(None);
        }
        let k = self.varint()?;
        Ok(Some((k >> 3, (k & 7) as u8)))
    }

    fn bytes(&mut self) -> Result<&'a [u8], Problem> {
        let len = usize::try_from(self.varint()?).map_err(|_| malformed("a length overflows"))?;
        let end = self
            .pos
            .checked_add(len)
            .filter(|e| *e <= self.buf.len())
            .ok_or_else(|| malformed("a length runs past the end"))?;
        let b = &self.buf[self.pos..end];
        self.pos = end;
        Ok(b)
    }

    fn string(&mut self) -> Result<String, Problem> {
        String::from_utf8(self.bytes()?.to_vec()).map_err(|_| malformed("a string is not UTF-8"))
    }

    fn skip(&mut self, wire: u8) -> Result<(), Problem> {
        match wire {
            0 => self.varint().map(|_| ()),
            1 => self.advance(8),
            2 => self.bytes().map(|_| ()),
            5 => self.advance(4),
            w => Err(malformed(format!("wire type {w} is not supported"))),
        }
    }

    fn advance(&mut self, n: usize) -> Result<(), Problem> {
        if self.pos + n > self.buf.len() {
            return Err(malformed("a fixed-width value runs past the end"));
        }
        self.pos += n;
        Ok(())
    }
}

/// Whether an unknown field's value carries nothing: a zero varint, or bytes that
/// read as a message whose every field is itself empty (a Go zero struct).
fn is_empty_value(r: &mut Reader, wire: u8) -> Result<bool, Problem> {
    match wire {
        0 => Ok(r.varint()? == 0),
        2 => Ok(all_fields_empty(r.bytes()?)),
        1 | 5 => {
            let start = r.pos;
            r.skip(wire)?;
            Ok(r.buf[start..r.pos].iter().all(|b| *b == 0))
        }
        w => Err(malformed(format!("wire type {w} is not supported"))),
    }
}

fn all_fields_empty(buf: &[u8]) -> bool {
    let mut r = Reader::new(buf);
    loop {
        match r.key() {
            Ok(None) => return true,
            Ok(Some((0, _))) | Err(_) => return false,
            Ok(Some((_, wire))) => match is_empty_value(&mut r, wire) {
                Ok(true) => {}
                _ => return false,
            },
        }
    }
}

fn decode_message(buf: &[u8], msg: &Message, path: &str) -> Result<Map<String, Value>, Problem> {
    let mut out = Map::new();
    let mut r = Reader::new(buf);
    while let Some((tag, wire)) = r.key()? {
        let Some(field) = msg.field(tag) else {
            if is_empty_value(&mut r, wire)? {
                continue;
            }
            return Err(Problem::Unsupported(format!(
                "{path}: field {tag} of {} cannot be read",
                msg.name
            )));
        };
        if field.answer_only {
            r.skip(wire)?;
            continue;
        }
        let here = format!("{path}.{}", field.name);
        if field.repeated {
            let items = out
                .entry(field.name)
                .or_insert_with(|| Value::Array(Vec::new()));
            if field.kind == Kind::Int && wire == 2 {
                // A packed list of integers.
                let mut packed = Reader::new(r.bytes()?);
                while packed.pos < packed.buf.len() {
                    push(items, json!(packed.varint()? as i64));
                }
                continue;
            }
            let v = decode_value(&mut r, wire, field, &here)?.unwrap_or(Value::Null);
            push(items, v);
            continue;
        }
        if field.map {
            let entry = expect_bytes(&mut r, wire, &here)?;
            let (k, v) = decode_entry(entry, field, &here)?;
            let m = out
                .entry(field.name)
                .or_insert_with(|| Value::Object(Map::new()));
            if let Value::Object(m) = m {
                m.insert(k, v.unwrap_or(Value::Null));
            }
            continue;
        }
        let Some(v) = decode_value(&mut r, wire, field, &here)? else {
            out.remove(field.name);
            continue;
        };
        if field.inline {
            // An embedded Go struct: its fields sit beside the parent's in JSON.
            if let Value::Object(m) = v {
                out.extend(m);
            }
            continue;
        }
        if !field.keep_zero && is_zero(&v) {
            out.remove(field.name);
            continue;
        }
        out.insert(field.name.to_string(), v);
    }
    Ok(out)
}

fn push(items: &mut Value, v: Value) {
    if let Value::Array(a) = items {
        a.push(v);
    }
}

fn is_zero(v: &Value) -> bool {
    match v {
        Value::String(s) => s.is_empty(),
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_i64() == Some(0),
        _ => false,
    }
}

fn expect_bytes<'a>(r: &mut Reader<'a>, wire: u8, path: &str) -> Result<&'a [u8], Problem> {
    if wire != 2 {
        return Err(malformed(format!(
            "{path}: wire type {wire} where length-delimited bytes belong"
        )));
    }
    r.bytes()
}

/// One `map<string, T>` entry: key in field 1, value in field 2.
fn decode_entry(buf: &[u8], field: &Field, path: &str) -> Result<(String, Option<Value>), Problem> {
    let mut r = Reader::new(buf);
    let (mut key, mut value) = (String::new(), None);
    while let Some((tag, wire)) = r.key()? {
        match tag {
            1 => key = r.string()?,
            2 => value = decode_value(&mut r, wire, field, &format!("{path}[{key}]"))?,
            _ => r.skip(wire)?,
        }
    }
    if value.is_none() {
        // An entry without a value holds the value type's zero.
        value = Some(match field.kind {
            Kind::String | Kind::Quantity => json!(""),
            Kind::Bytes => json!(""),
            Kind::Bool => json!(false),
            Kind::Int => json!(0),
            _ => json!({}),
        });
    }
    Ok((key, value))
}

/// One value of `field`'s type; `None` for a timestamp or embedded JSON that is
/// empty (absent in JSON).
fn decode_value(
    r: &mut Reader,
    wire: u8,
    field: &Field,
    path: &str,
) -> Result<Option<Value>, Problem> {
    if field.kind == Kind::Ignored {
        r.skip(wire)?;
        return Ok(None);
    }
    let want_varint = matches!(field.kind, Kind::Bool | Kind::Int);
    if want_varint != (wire == 0) || (!want_varint && wire != 2) {
        return Err(malformed(format!(
            "{path}: wire type {wire} does not fit the field's type"
        )));
    }
    Ok(match &field.kind {
        Kind::String => Some(json!(r.string()?)),
        Kind::Bool => Some(json!(r.varint()? != 0)),
        // int32 and int64 alike: a negative int32 is sent sign-extended to 64 bits.
        Kind::Int => Some(json!(r.varint()? as i64)),
        Kind::Bytes => Some(json!(
            base64::engine::general_purpose::STANDARD.encode(r.bytes()?)
        )),
        Kind::Time => time(r.bytes()?)?,
        Kind::Quantity => Some(json!(wrapped_string(r.bytes()?)?)),
        Kind::IntOrString => Some(int_or_string(r.bytes()?)?),
        Kind::Json => {
            let raw = wrapped_bytes(r.bytes()?)?;
            if raw.is_empty() {
                None
            } else {
                Some(serde_json::from_slice(raw).map_err(|_| {
                    Problem::Unsupported(format!("{path}: embedded data is not JSON"))
                })?)
            }
        }
        Kind::Message(name) => {
            let Some(msg) = proto_schema::message(name) else {
                return Err(Problem::Unsupported(format!(
                    "{path}: {name} cannot be read"
                )));
            };
            Some(Value::Object(decode_message(r.bytes()?, msg, path)?))
        }
        Kind::Ignored => None,
        Kind::StringList => {
            // A wrapper message around `repeated string items = 1`.
            let mut list = Vec::new();
            let mut m = Reader::new(r.bytes()?);
            while let Some((tag, wire)) = m.key()? {
                match (tag, wire) {
                    (1, 2) => list.push(json!(m.string()?)),
                    _ => m.skip(wire)?,
                }
            }
            Some(Value::Array(list))
        }
    })
}

/// `metav1.Time`: seconds and nanos since the epoch, in JSON an RFC 3339 time to
/// the second; zero is no time at all.
fn time(buf: &[u8]) -> Result<Option<Value>, Problem> {
    let mut r = Reader::new(buf);
    let mut seconds: i64 = 0;
    while let Some((tag, wire)) = r.key()? {
        match (tag, wire) {
            (1, 0) => seconds = r.varint()? as i64,
            _ => r.skip(wire)?,
        }
    }
    if seconds == 0 {
        return Ok(None);
    }
    let t = u64::try_from(seconds)
        .ok()
        .and_then(|s| std::time::UNIX_EPOCH.checked_add(std::time::Duration::from_secs(s)))
        .ok_or_else(|| malformed("a time is out of range"))?;
    Ok(Some(json!(
        humantime::format_rfc3339_seconds(t).to_string()
    )))
}

/// The bytes in field 1 of a wrapper message (`RawExtension`, `FieldsV1`).
fn wrapped_bytes(buf: &[u8]) -> Result<&[u8], Problem> {
    let mut r = Reader::new(buf);
    let mut out: &[u8] = &[];
    while let Some((tag, wire)) = r.key()? {
        match (tag, wire) {
            (1, 2) => out = r.bytes()?,
            _ => r.skip(wire)?,
        }
    }
    Ok(out)
}

/// The string in field 1 of a wrapper message (`resource.Quantity`).
fn wrapped_string(buf: &[u8]) -> Result<String, Problem> {
    String::from_utf8(wrapped_bytes(buf)?.to_vec())
        .map_err(|_| malformed("a quantity is not UTF-8"))
}

/// `intstr.IntOrString`: a type (0 int, 1 string) and the value of that type.
fn int_or_string(buf: &[u8]) -> Result<Value, Problem> {
    let mut r = Reader::new(buf);
    let (mut ty, mut int, mut string) = (0, 0i64, String::new());
    while let Some((tag, wire)) = r.key()? {
        match (tag, wire) {
            (1, 0) => ty = r.varint()?,
            (2, 0) => int = r.varint()? as i32 as i64,
            (3, 2) => string = r.string()?,
            _ => r.skip(wire)?,
        }
    }
    Ok(if ty == 1 { json!(string) } else { json!(int) })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writes protobuf by hand for the tests: each helper appends one field.
    #[derive(Default)]
    struct W(Vec<u8>);

    impl W {
        fn varint(&mut self, mut v: u64) {
            loop {
                let b = (v & 0x7f) as u8;
                v >>= 7;
                if v == 0 {
                    self.0.push(b);
                    return;
                }
                self.0.push(b | 0x80);
            }
        }
        fn key(&mut self, tag: u64, wire: u64) {
            self.varint(tag << 3 | wire);
        }
        fn bytes(mut self, tag: u64, b: &[u8]) -> W {
            self.key(tag, 2);
            self.varint(b.len() as u64);
            self.0.extend_from_slice(b);
            self
        }
        fn str(self, tag: u64, s: &str) -> W {
            self.bytes(tag, s.as_bytes())
        }
        fn int(mut self, tag: u64, v: i64) -> W {
            self.key(tag, 0);
            self.varint(v as u64);
            self
        }
        fn msg(self, tag: u64, m: W) -> W {
            self.bytes(tag, &m.0)
        }
        fn entry(self, tag: u64, k: &str, v: &str) -> W {
            self.msg(tag, W::default().str(1, k).str(2, v))
        }
    }

    fn envelope(api_version: &str, kind: &str, raw: W) -> Vec<u8> {
        let tm = W::default().str(1, api_version).str(2, kind);
        let unknown = W::default()
            .msg(1, tm)
            .bytes(2, &raw.0)
            .str(3, "")
            .str(4, "");
        let mut out = MAGIC.to_vec();
        out.extend_from_slice(&unknown.0);
        out
    }

    /// ObjectMeta as a Go client writes it: every non-pointer field, empty or not.
    fn meta(name: &str) -> W {
        W::default()
            .str(1, name)
            .str(2, "")
            .str(3, "")
            .str(4, "")
            .str(5, "")
            .str(6, "")
            .int(7, 0)
            .msg(8, W::default())
            .entry(11, "app", "web")
    }

    #[test]
    fn a_configmap_as_kubectl_sends_it_decodes_without_go_zero_values() {
        let raw = W::default()
            .msg(1, meta("settings"))
            .entry(2, "mode", "fast")
            .entry(2, "empty", "");
        let obj = decode(&envelope("v1", "ConfigMap", raw)).unwrap();
        assert_eq!(
            obj,
            json!({"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": "settings", "labels": {"app": "web"}},
                "data": {"mode": "fast", "empty": ""}})
        );
    }

    #[test]
    fn a_deployment_keeps_zero_replicas_nested_empty_messages_and_int_or_strings() {
        let container = W::default()
            .str(1, "web")
            .str(2, "nginx:1.27")
            .msg(6, W::default().int(3, 80).str(4, "TCP"))
            .msg(8, W::default())
            .str(13, "")
            .int(16, 0);
        let pod_spec = W::default().msg(2, container).str(3, "").int(11, 0);
        let template = W::default()
            .msg(1, W::default().entry(11, "app", "web"))
            .msg(2, pod_spec);
        let rolling = W::default()
            .msg(1, W::default().int(1, 1).str(3, "25%").int(1, 1))
            .msg(2, W::default().int(1, 0).int(2, 0));
        let spec = W::default()
            .int(1, 0)
            .msg(2, W::default().entry(1, "app", "web"))
            .msg(3, template)
            .msg(4, W::default().str(1, "RollingUpdate").msg(2, rolling))
            .int(5, 0)
            .int(7, 0);
        // A status, which a write to the object itself never changes: left out.
        let status = W::default().int(1, 4).int(2, 3);
        let raw = W::default().msg(1, meta("web")).msg(2, spec).msg(3, status);
        let obj = decode(&envelope("apps/v1", "Deployment", raw)).unwrap();
        assert_eq!(
            obj["spec"],
            json!({"replicas": 0, "selector": {"matchLabels": {"app": "web"}},
                "strategy": {"type": "RollingUpdate",
                    "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": 0}},
                "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [
                    {"name": "web", "image": "nginx:1.27", "resources": {},
                     "ports": [{"containerPort": 80, "protocol": "TCP"}]}]}}})
        );
        assert!(obj.get("status").is_none(), "{obj}");
    }

    #[test]
    fn delete_options_of_any_group_decode() {
        let raw = W::default()
            .msg(2, W::default().str(1, "u-1"))
            .str(4, "Foreground")
            .str(5, "All");
        let opts = decode_delete_options(&envelope("apps/v1", "DeleteOptions", raw)).unwrap();
        assert_eq!(opts["propagationPolicy"], "Foreground");
        assert_eq!(opts["preconditions"]["uid"], "u-1");
        assert_eq!(opts["dryRun"], json!(["All"]));
        let err = decode_delete_options(&envelope("v1", "ConfigMap", W::default())).unwrap_err();
        assert_eq!(err.code, 415);
    }

    #[test]
    fn rbac_rules_keep_the_empty_core_api_group() {
        let rule = W::default().str(1, "get").str(2, "").str(3, "pods");
        let raw = W::default().msg(1, meta("reader")).msg(2, rule);
        let obj = decode(&envelope("rbac.authorization.k8s.io/v1", "Role", raw)).unwrap();
        assert_eq!(
            obj["rules"],
            json!([{"verbs": ["get"], "apiGroups": [""], "resources": ["pods"]}])
        );
    }

    #[test]
    fn secret_data_is_base64_and_inline_structs_are_flattened() {
        let raw = W::default()
            .msg(1, meta("token"))
            .msg(2, W::default().str(1, "token").bytes(2, b"s3cret"))
            .str(3, "Opaque");
        let obj = decode(&envelope("v1", "Secret", raw)).unwrap();
        assert_eq!(obj["data"], json!({"token": "czNjcmV0"}));
        assert_eq!(obj["type"], "Opaque");

        let selector = W::default()
            .msg(1, W::default().str(1, "settings"))
            .str(2, "mode");
        let env = W::default()
            .str(1, "MODE")
            .msg(3, W::default().msg(3, selector));
        let container = W::default().str(1, "web").msg(7, env);
        let raw = W::default()
            .msg(1, meta("p"))
            .msg(2, W::default().msg(2, container));
        let obj = decode(&envelope("v1", "Pod", raw)).unwrap();
        assert_eq!(
            obj["spec"]["containers"][0]["env"][0],
            json!({"name": "MODE", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "mode"}}})
        );
    }

    #[test]
    fn a_kind_or_field_without_a_schema_is_refused_with_415_and_broken_bytes_with_400() {
        let unknown_kind = envelope("example.com/v1", "Widget", W::default());
        let err = decode(&unknown_kind).unwrap_err();
        assert_eq!((err.code, err.reason), (415, "UnsupportedMediaType"));
        assert!(
            err.message
                .starts_with("example.com/v1 Widget cannot be read from protobuf"),
            "{}",
            err.message
        );

        let raw = W::default().msg(1, meta("x")).str(99, "something");
        let err = decode(&envelope("v1", "ConfigMap", raw)).unwrap_err();
        assert_eq!(err.code, 415);
        assert!(
            err.message.contains("field 99 of ConfigMap"),
            "{}",
            err.message
        );

        let err = decode(b"{\"kind\": \"ConfigMap\"}").unwrap_err();
        assert_eq!(err.code, 400);
        let mut truncated = envelope("v1", "ConfigMap", W::default().msg(1, meta("x")));
        truncated.truncate(truncated.len() - 3);
        assert_eq!(decode(&truncated).unwrap_err().code, 400);
    }

    #[test]
    fn only_protobuf_in_accept_is_not_answered_in_json() {
        assert!(answers_json(
            "application/vnd.kubernetes.protobuf,application/json"
        ));
        assert!(answers_json(""));
        assert!(answers_json("application/json;as=Table;v=v1;g=meta.k8s.io"));
        assert!(!answers_json("application/vnd.kubernetes.protobuf"));
    }

    #[test]
    fn protobuf_is_preferred_when_it_comes_first_or_weighs_most() {
        assert!(prefers_protobuf("application/vnd.kubernetes.protobuf, */*"));
        assert!(prefers_protobuf(
            "application/vnd.kubernetes.protobuf,application/json"
        ));
        assert!(prefers_protobuf("application/vnd.kubernetes.protobuf"));
        assert!(prefers_protobuf(
            "application/json;q=0.5, application/vnd.kubernetes.protobuf"
        ));
        assert!(!prefers_protobuf(
            "application/json, application/vnd.kubernetes.protobuf"
        ));
        assert!(!prefers_protobuf(""));
        assert!(!prefers_protobuf(
            "application/vnd.kubernetes.protobuf;as=Table;v=v1;g=meta.k8s.io, application/json"
        ));
    }
}
