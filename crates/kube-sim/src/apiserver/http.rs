//! The HTTP face of a simulated cluster: routing of Kubernetes API paths, query
//! parameters, content types, watch streams, fault injection and request accounting.
//! Semantics live in [`crate::apiserver::store`]; this module only translates.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use tokio::sync::{broadcast, mpsc};

use crate::apiserver::api_error::{ApiError, deleted_answer, qualified};
use crate::apiserver::kinds::{self, ResourceType, api_version};
use crate::apiserver::openapi;
use crate::apiserver::openapi_v2;
use crate::apiserver::proto_encode;
use crate::apiserver::protobuf;
use crate::apiserver::reviews;
use crate::apiserver::store::{
    DeleteOptions, EventKind, Filter, PatchKind, Stored, WatchEvent, WriteOptions,
};
use crate::apiserver::table::{self, Form};
use crate::apiserver::validate::FieldValidation;
use crate::apiserver::versions;
use crate::{Faults, Shared};
use manifest::labels::LabelSelector;

/// Largest request body accepted, as a real API server (3 MiB).
const MAX_BODY: usize = 3 * 1024 * 1024;

pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/sim/stats", get(stats))
        .route("/sim/metrics", get(traffic_metrics))
        .route("/sim/faults", get(get_faults).put(put_faults))
        .route("/sim/compact", post(compact))
        .route("/sim/disconnect", post(disconnect))
        .fallback(api)
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(shared)
}

async fn stats(State(shared): State<Arc<Shared>>) -> Response {
    let (objects, rv) = {
        let store = shared.lock();
        (store.object_count(), store.resource_version())
    };
    json_response(StatusCode::OK, &shared.stats.to_json(objects, rv))
}

async fn traffic_metrics(State(shared): State<Arc<Shared>>) -> Response {
    let text = {
        let store = shared.lock();
        let mut traffic = shared.traffic.lock().unwrap_or_else(|e| e.into_inner());
        traffic.advance(&store, std::time::Instant::now());
        traffic.exposition()
    };
    (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

async fn get_faults(State(shared): State<Arc<Shared>>) -> Response {
    let f = shared
        .faults
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    json_response(StatusCode::OK, &serde_json::to_value(f).unwrap_or_default())
}

async fn put_faults(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    let parsed: Result<Faults, String> = serde_json::from_slice(&body)
        .map_err(|e| format!("invalid faults: {e}"))
        .and_then(|f: Faults| f.validate().map(|_| f).map_err(|e| e.0));
    match parsed {
        Ok(f) => {
            *shared.faults.lock().unwrap_or_else(|e| e.into_inner()) = f.clone();
            json_response(StatusCode::OK, &serde_json::to_value(f).unwrap_or_default())
        }
        Err(e) => error_response(&ApiError::bad_request(e)),
    }
}

async fn compact(State(shared): State<Arc<Shared>>) -> Response {
    shared.lock().compact();
    json_response(StatusCode::OK, &json!({"compacted": true}))
}

async fn disconnect(State(shared): State<Arc<Shared>>) -> Response {
    shared.disconnect.send_modify(|n| *n += 1);
    json_response(StatusCode::OK, &json!({"disconnected": true}))
}

fn json_response(code: StatusCode, v: &Value) -> Response {
    let body = serde_json::to_vec(v).unwrap_or_default();
    (code, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

fn protobuf_response(code: StatusCode, body: Vec<u8>) -> Response {
    (code, [(header::CONTENT_TYPE, protobuf::MEDIA_TYPE)], body).into_response()
}

fn error_response(e: &ApiError) -> Response {
    error_response_in(e, false)
}

/// A `Status` body for an error, in protobuf when `protobuf` and in JSON otherwise.
fn error_response_in(e: &ApiError, protobuf: bool) -> Response {
    let code = StatusCode::from_u16(e.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let status = e.to_status();
    let encoded = if protobuf {
        proto_encode::encode(&status).ok()
    } else {
        None
    };
    let mut resp = match encoded {
        Some(bytes) => protobuf_response(code, bytes),
        None => json_response(code, &status),
    };
    if e.code == 429 {
        let secs = e
            .details
            .as_ref()
            .and_then(|d| d["retryAfterSeconds"].as_u64())
            .unwrap_or(1);
        if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
            resp.headers_mut().insert(header::RETRY_AFTER, v);
        }
    }
    resp
}

/// The media type a request is answered in, from its `Accept` header.
#[derive(Debug, Clone, Copy)]
struct Answer {
    /// Protobuf is preferred: objects the field table covers go out in it.
    protobuf: bool,
    /// JSON is accepted: the answer when protobuf is not preferred or not possible.
    json: bool,
}

impl Answer {
    fn of(accept: &str) -> Answer {
        Answer {
            protobuf: protobuf::prefers_protobuf(accept),
            json: protobuf::answers_json(accept),
        }
    }

    /// An object, list or `Status` answer: protobuf when preferred and the table
    /// covers every field, else JSON when accepted, else 406.
    fn object(self, code: StatusCode, v: &Value) -> Response {
        if self.protobuf {
            match proto_encode::encode(v) {
                Ok(bytes) => return protobuf_response(code, bytes),
                Err(why) if !self.json => {
                    return self.error(&ApiError::not_acceptable_in_protobuf(&why.0));
                }
                Err(_) => {}
            }
        }
        json_response(code, v)
    }

    /// An answer already serialized as JSON.
    fn raw(self, code: StatusCode, bytes: Bytes) -> Response {
        if self.protobuf {
            return match serde_json::from_slice::<Value>(&bytes) {
                Ok(v) => self.object(code, &v),
                Err(e) => self.error(&ApiError::internal(format!(
                    "a stored answer is not JSON: {e}"
                ))),
            };
        }
        (code, [(header::CONTENT_TYPE, "application/json")], bytes).into_response()
    }

    fn error(self, e: &ApiError) -> Response {
        error_response_in(e, self.protobuf)
    }
}

/// A response body: a JSON tree, or JSON already serialized (lists of stored objects
/// are written from their stored bytes without parsing them).
enum Reply {
    Json(StatusCode, Value),
    Raw(Bytes),
    /// Plain text (a container's log).
    Text(String),
}

/// What a request path names.
#[derive(Debug)]
enum Route {
    Version,
    Health,
    CoreVersions,
    Groups,
    Group(String),
    Resources(String, String),
    Object(ObjectPath),
    OpenApiRoot,
    OpenApi(String, String),
    OpenApiV2,
    NotFound,
}

#[derive(Debug)]
struct ObjectPath {
    group: String,
    version: String,
    plural: String,
    namespace: Option<String>,
    name: Option<String>,
    subresource: Option<String>,
}

fn route(path: &str) -> Route {
    let segs: Vec<&str> = path
        .trim_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    let (group, version, rest) = match segs.as_slice() {
        ["version"] => return Route::Version,
        ["healthz"] | ["livez"] | ["readyz"] => return Route::Health,
        ["api"] => return Route::CoreVersions,
        ["openapi", "v2"] => return Route::OpenApiV2,
        ["openapi", "v3"] => return Route::OpenApiRoot,
        ["openapi", "v3", "api", v] => return Route::OpenApi(String::new(), v.to_string()),
        ["openapi", "v3", "apis", g, v] => return Route::OpenApi(g.to_string(), v.to_string()),
        ["apis"] => return Route::Groups,
        ["apis", g] => return Route::Group(g.to_string()),
        ["api", v] => return Route::Resources(String::new(), v.to_string()),
        ["apis", g, v] => return Route::Resources(g.to_string(), v.to_string()),
        ["api", v, rest @ ..] => ("", *v, rest),
        ["apis", g, v, rest @ ..] => (*g, *v, rest),
        _ => return Route::NotFound,
    };
    let object = |ns: Option<&str>, plural: &str, name: Option<&str>, sub: Option<&str>| {
        Route::Object(ObjectPath {
            group: group.to_string(),
            version: version.to_string(),
            plural: plural.to_string(),
            namespace: ns.map(String::from),
            name: name.map(String::from),
            subresource: sub.map(String::from),
        })
    };
    match rest {
        // /api/v1/namespaces/{name}/status and /finalize are the Namespace's own.
        ["namespaces", name, sub @ ("status" | "finalize")] if group.is_empty() => {
            object(None, "namespaces", Some(name), Some(sub))
        }
        ["namespaces", ns, plural] => object(Some(ns), plural, None, None),
        ["namespaces", ns, plural, name] => object(Some(ns), plural, Some(name), None),
        ["namespaces", ns, plural, name, sub] => object(Some(ns), plural, Some(name), Some(sub)),
        [plural] => object(None, plural, None, None),
        [plural, name] => object(None, plural, Some(name), None),
        [plural, name, sub] => object(None, plural, Some(name), Some(sub)),
        _ => Route::NotFound,
    }
}

fn version_info() -> Value {
    json!({"major": "1", "minor": "32", "gitVersion": "v1.32.0+rollwave.sim",
        "gitCommit": "0000000000000000000000000000000000000000", "gitTreeState": "clean",
        "buildDate": "2026-01-01T00:00:00Z", "goVersion": "go1.23", "compiler": "gc",
        "platform": "linux/amd64"})
}

/// The verb a request counts as in `/sim/stats`.
fn verb_of(method: &Method, p: &ObjectPath, query: &HashMap<String, String>) -> &'static str {
    let watching = matches!(query.get("watch").map(String::as_str), Some("true" | "1"));
    match *method {
        Method::GET if watching => "watch",
        Method::GET if p.name.is_none() => "list",
        Method::GET => "get",
        Method::POST => "create",
        Method::PUT => "update",
        Method::PATCH => "patch",
        Method::DELETE => "delete",
        _ => "other",
    }
}

async fn api(State(shared): State<Arc<Shared>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let path = parts.uri.path().to_string();
    let query: HashMap<String, String> =
        form_urlencoded::parse(parts.uri.query().unwrap_or("").as_bytes())
            .into_owned()
            .collect();
    let route = route(&path);

    let is_write = !matches!(parts.method, Method::GET | Method::HEAD);
    let faults = shared
        .faults
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    let counted = shared.clone();
    let _in_flight =
        (is_write && matches!(route, Route::Object(_))).then(|| counted.stats.write_started());
    match &route {
        Route::Object(p) => {
            let rt_name = qualified(&p.group, &p.plural);
            let dry = query.get("dryRun").is_some_and(|d| d == "All");
            shared
                .stats
                .count(verb_of(&parts.method, p, &query), &rt_name, dry);
        }
        _ => {
            shared
                .stats
                .discovery
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }
    if (!faults.writes_only || is_write)
        && let Some(resp) = inject(&shared, &faults).await
    {
        return resp;
    }

    let accept = parts
        .headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let form = Form::from_accept(&accept);
    match route {
        Route::Version => json_response(StatusCode::OK, &version_info()),
        Route::Health => (StatusCode::OK, "ok").into_response(),
        Route::CoreVersions => {
            json_response(StatusCode::OK, &shared.lock().registry.core_versions())
        }
        Route::Groups => json_response(StatusCode::OK, &shared.lock().registry.group_list()),
        Route::Group(g) => match shared.lock().registry.group(&g) {
            Some(v) => json_response(StatusCode::OK, &v),
            None => error_response(&ApiError::no_route()),
        },
        Route::Resources(g, v) => match shared.lock().registry.resource_list(&g, &v) {
            Some(doc) => json_response(StatusCode::OK, &doc),
            None => error_response(&ApiError::no_route()),
        },
        Route::OpenApiRoot => {
            json_response(StatusCode::OK, &openapi::root(&shared.lock().registry))
        }
        Route::OpenApiV2 => {
            let doc = openapi_v2::document(&shared.lock().registry);
            if openapi_v2::wants_protobuf(&accept) {
                (
                    StatusCode::OK,
                    [(header::CONTENT_TYPE, openapi_v2::PROTOBUF)],
                    openapi_v2::to_protobuf(&doc),
                )
                    .into_response()
            } else {
                json_response(StatusCode::OK, &doc)
            }
        }
        Route::OpenApi(g, v) => match openapi::group_version(&shared.lock().registry, &g, &v) {
            Some(doc) => json_response(StatusCode::OK, &doc),
            None => error_response(&ApiError::no_route()),
        },
        Route::NotFound => error_response(&ApiError::no_route()),
        Route::Object(p) => {
            let answer = Answer::of(&accept);
            let body = match axum::body::to_bytes(body, MAX_BODY).await {
                Ok(b) => b,
                Err(_) => {
                    let mut e =
                        ApiError::bad_request("the request body is too large (limit 3 MiB)");
                    e.code = 413;
                    e.reason = "RequestEntityTooLarge";
                    return answer.error(&e);
                }
            };
            let rt = {
                let store = shared.lock();
                store
                    .registry
                    .by_plural(&p.group, &p.version, &p.plural)
                    .cloned()
            };
            let Some(rt) = rt else {
                return answer.error(&ApiError::no_route());
            };
            if (p.namespace.is_some() && !rt.namespaced)
                || (p.name.is_some() && rt.namespaced && p.namespace.is_none())
            {
                return answer.error(&ApiError::no_route());
            }
            if !answer.json && !answer.protobuf {
                return error_response(&ApiError::not_acceptable(&accept));
            }
            let watching = matches!(query.get("watch").map(String::as_str), Some("true" | "1"));
            if parts.method == Method::GET && watching {
                // Protobuf when preferred and the kind has a message; a field the
                // message lacks turns into an ERROR event (see `WatchSpec::event`).
                let protobuf = answer.protobuf
                    && form == Form::Full
                    && proto_encode::can_encode_kind(&api_version(&rt.group, &p.version), &rt.kind);
                if !protobuf && !answer.json {
                    return answer.error(&ApiError::not_acceptable_in_protobuf(&format!(
                        "{} {} has no protobuf schema",
                        api_version(&rt.group, &p.version),
                        rt.kind
                    )));
                }
                return match watch(shared, rt, &p, &query, form, protobuf) {
                    Ok(resp) => resp,
                    Err(e) => answer.error(&e),
                };
            }
            match object_request(
                &shared,
                &rt,
                &p,
                &parts.method,
                &parts.headers,
                &query,
                &body,
                form,
            ) {
                Ok(Reply::Json(code, v)) => answer.object(code, &v),
                Ok(Reply::Text(text)) => {
                    (StatusCode::OK, [(header::CONTENT_TYPE, "text/plain")], text).into_response()
                }
                Ok(Reply::Raw(bytes)) => answer.raw(StatusCode::OK, bytes),
                Err(e) => answer.error(&e),
            }
        }
    }
}

/// Applies the configured faults; returns the response to send instead of serving.
async fn inject(shared: &Shared, f: &Faults) -> Option<Response> {
    use std::sync::atomic::Ordering::Relaxed;
    if f.latency_ms > 0 {
        tokio::time::sleep(Duration::from_millis(f.latency_ms)).await;
    }
    let roll: f64 = rand::random();
    if roll < f.drop_rate {
        shared.stats.dropped_injected.fetch_add(1, Relaxed);
        // Headers go out, then the body fails: the client sees the connection cut
        // mid-response.
        let stream = futures_util::stream::once(async {
            Err::<Bytes, std::io::Error>(std::io::Error::new(
                std::io::ErrorKind::ConnectionReset,
                "injected connection drop",
            ))
        });
        return Some(
            Response::builder()
                .status(StatusCode::OK)
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from_stream(stream))
                .unwrap_or_default(),
        );
    }
    if roll < f.drop_rate + f.error_rate {
        shared.stats.errors_injected.fetch_add(1, Relaxed);
        let e = if rand::random::<bool>() {
            ApiError::internal("injected fault: internal error")
        } else {
            ApiError::unavailable("injected fault: service unavailable")
        };
        return Some(error_response(&e));
    }
    if roll < f.drop_rate + f.error_rate + f.throttle_rate {
        shared.stats.throttled_injected.fetch_add(1, Relaxed);
        return Some(error_response(&ApiError::too_many_requests(
            f.retry_after_seconds.max(1),
        )));
    }
    None
}

/// The field manager of a write: `fieldManager`, else the user agent's program name.
fn manager(query: &HashMap<String, String>, headers: &HeaderMap) -> String {
    if let Some(m) = query.get("fieldManager").filter(|m| !m.is_empty()) {
        return m.clone();
    }
    headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .and_then(|ua| ua.split('/').next())
        .filter(|s| !s.is_empty())
        .unwrap_or("unknown")
        .to_string()
}

/// The object a create or update sends, in JSON, YAML or protobuf: what its
/// `Content-Type` says (JSON or YAML when it says nothing).
fn read_object(
    headers: &HeaderMap,
    body: &[u8],
    rt: &ResourceType,
    version: &str,
) -> Result<Value, ApiError> {
    let media = content_type(headers);
    let obj = match media {
        "" | "application/json" | "application/yaml" | "*/*" => parse_body(body, true)?,
        protobuf::MEDIA_TYPE => protobuf::decode(body)?,
        other => {
            return Err(ApiError::unsupported_media_type(format!(
                "the body of the request was in an unknown format ({other}) - accepted media types include: application/json, application/yaml, application/vnd.kubernetes.protobuf"
            )));
        }
    };
    Ok(versions::to_stored(rt, version, obj))
}

/// The media type of a request's `Content-Type`, without parameters.
fn content_type(headers: &HeaderMap) -> &str {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
}

fn parse_body(body: &[u8], yaml_ok: bool) -> Result<Value, ApiError> {
    if body.is_empty() {
        return Err(ApiError::bad_request("the request body is empty"));
    }
    match serde_json::from_slice(body) {
        Ok(v) => Ok(v),
        Err(e) if !yaml_ok => Err(ApiError::bad_request(format!(
            "the request body is not valid JSON: {e}"
        ))),
        Err(_) => {
            let text = std::str::from_utf8(body)
                .map_err(|_| ApiError::bad_request("the request body is not UTF-8"))?;
            let mut docs = manifest::yaml::parse_documents("request body", text)
                .map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")))?;
            if docs.len() != 1 {
                return Err(ApiError::bad_request(
                    "the request body must hold exactly one object",
                ));
            }
            Ok(docs.remove(0))
        }
    }
}

/// Serves the object in the version the client asked for.
fn in_version(obj: &Value, rt: &ResourceType, version: &str) -> Value {
    let mut o = versions::to_served(rt, version, obj.clone());
    o["apiVersion"] = json!(api_version(&rt.group, version));
    o
}

fn shape_one(obj: Value, rt: &ResourceType, form: Form, include_object: bool) -> Value {
    match form {
        Form::Full => obj,
        Form::Metadata => table::partial(&obj),
        Form::Table => {
            let rv = obj["metadata"]["resourceVersion"].clone();
            table::table(rt, &[obj], json!({"resourceVersion": rv}), include_object)
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn object_request(
    shared: &Shared,
    rt: &ResourceType,
    p: &ObjectPath,
    method: &Method,
    headers: &HeaderMap,
    query: &HashMap<String, String>,
    body: &[u8],
    form: Form,
) -> Result<Reply, ApiError> {
    let ns = p.namespace.as_deref();
    if rt.create_only {
        return match (method, p.name.as_deref(), p.subresource.as_deref()) {
            (&Method::POST, None, None) => {
                let body = read_object(headers, body, rt, &p.version)?;
                Ok(Reply::Json(
                    StatusCode::CREATED,
                    reviews::answer(rt, ns, body)?,
                ))
            }
            (m, _, _) => Err(ApiError::method_not_allowed(m.as_str(), &p.plural)),
        };
    }
    match p.subresource.as_deref() {
        Some("scale") if kinds::has_scale(rt) => {
            return scale(shared, rt, p, method, headers, query, body);
        }
        Some("token") if rt.group.is_empty() && rt.kind == "ServiceAccount" => {
            if *method != Method::POST {
                return Err(ApiError::method_not_allowed(method.as_str(), "token"));
            }
            let sa = shared.lock().get(rt, ns, p.name.as_deref().unwrap_or(""))?;
            let request = if body.is_empty() {
                json!({})
            } else {
                read_object(headers, body, rt, &p.version)?
            };
            return Ok(Reply::Json(
                StatusCode::CREATED,
                reviews::token(&sa, &request)?,
            ));
        }
        Some("ephemeralcontainers") if rt.group.is_empty() && rt.kind == "Pod" => {
            return ephemeral_containers(shared, rt, p, method, headers, query, body);
        }
        _ => {}
    }
    if p.subresource.as_deref() == Some("log") && rt.group.is_empty() && rt.kind == "Pod" {
        if *method != Method::GET {
            return Err(ApiError::method_not_allowed(method.as_str(), "pods/log"));
        }
        let pod = shared.lock().get(rt, ns, p.name.as_deref().unwrap_or(""))?;
        return Ok(Reply::Text(crate::controllers::kubelet::logs(&pod, query)?));
    }
    let status = match p.subresource.as_deref() {
        None => false,
        Some("status") if rt.status_subresource => true,
        Some(_) => {
            return Err(ApiError::no_route());
        }
    };
    let include_object = query.get("includeObject").is_some_and(|v| v == "Object");
    let dry_run = match query.get("dryRun").map(String::as_str) {
        None | Some("") => false,
        Some("All") => true,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "dryRun: Unsupported value: \"{other}\": supported values: \"All\""
            )));
        }
    };
    let opts = || -> Result<WriteOptions, ApiError> {
        Ok(WriteOptions {
            manager: manager(query, headers),
            dry_run,
            force: query.get("force").is_some_and(|f| f == "true"),
            validation: FieldValidation::parse(
                query
                    .get("fieldValidation")
                    .map(String::as_str)
                    .unwrap_or(""),
            )?,
            status,
        })
    };
    let out = |o: &Value| shape_one(in_version(o, rt, &p.version), rt, form, include_object);
    match (method.clone(), p.name.as_deref()) {
        (Method::GET, Some(name)) => {
            let o = shared.lock().get(rt, ns, name)?;
            Ok(Reply::Json(StatusCode::OK, out(&o)))
        }
        (Method::GET, None) => list(shared, rt, p, query, form, include_object),
        (Method::POST, None) => {
            let body = read_object(headers, body, rt, &p.version)?;
            let version = versions::stored_version(rt, &p.version);
            let o = shared.lock().create(rt, version, ns, body, &opts()?)?;
            Ok(Reply::Json(StatusCode::CREATED, out(&o)))
        }
        (Method::PUT, Some(name)) => {
            if status && content_type(headers).starts_with(protobuf::MEDIA_TYPE) {
                return Err(protobuf::refuse_status_write());
            }
            let body = read_object(headers, body, rt, &p.version)?;
            let version = versions::stored_version(rt, &p.version);
            let o = shared
                .lock()
                .update(rt, version, ns, name, body, &opts()?)?;
            Ok(Reply::Json(StatusCode::OK, out(&o)))
        }
        (Method::PATCH, Some(name)) => {
            let ct = headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            let kind = match ct.split(';').next().unwrap_or("").trim() {
                "application/apply-patch+yaml" | "application/apply-patch+cbor" => PatchKind::Apply,
                "application/merge-patch+json" => PatchKind::Merge,
                "application/json-patch+json" => PatchKind::Json,
                "application/strategic-merge-patch+json" => PatchKind::Strategic,
                other => {
                    let mut e = ApiError::bad_request(format!(
                        "the body of the request was in an unknown format ({other}) - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml, application/strategic-merge-patch+json"
                    ));
                    e.code = 415;
                    e.reason = "UnsupportedMediaType";
                    return Err(e);
                }
            };
            let o = opts()?;
            if kind == PatchKind::Apply && query.get("fieldManager").is_none_or(|m| m.is_empty()) {
                return Err(ApiError::bad_request(
                    "PATCH: fieldManager is required for apply requests",
                ));
            }
            if kind != PatchKind::Apply && o.force {
                return Err(ApiError::bad_request(
                    "force: Forbidden: may not be specified for non-apply patch",
                ));
            }
            let body = parse_body(body, kind == PatchKind::Apply)?;
            let mut store = shared.lock();
            let existed = store.get(rt, ns, name).is_ok();
            let obj = store.patch(rt, &p.version, ns, name, kind, &body, &o)?;
            let code = if existed {
                StatusCode::OK
            } else {
                StatusCode::CREATED
            };
            Ok(Reply::Json(code, out(&obj)))
        }
        (Method::DELETE, name) => {
            let mut d = DeleteOptions {
                propagation: "Background".into(),
                dry_run,
                ..Default::default()
            };
            if let Some(pp) = query.get("propagationPolicy") {
                d.propagation = pp.clone();
            }
            if !body.is_empty() {
                let b: Value = if content_type(headers) == protobuf::MEDIA_TYPE {
                    protobuf::decode_delete_options(body)?
                } else {
                    serde_json::from_slice(body)
                        .map_err(|e| ApiError::bad_request(format!("invalid DeleteOptions: {e}")))?
                };
                if let Some(pp) = b["propagationPolicy"].as_str() {
                    d.propagation = pp.to_string();
                }
                if b["orphanDependents"] == true {
                    d.propagation = "Orphan".into();
                }
                if b["dryRun"]
                    .as_array()
                    .is_some_and(|a| a.iter().any(|x| x == "All"))
                {
                    d.dry_run = true;
                }
                d.uid = b["preconditions"]["uid"].as_str().map(String::from);
                d.resource_version = b["preconditions"]["resourceVersion"]
                    .as_str()
                    .map(String::from);
            }
            if !matches!(
                d.propagation.as_str(),
                "Orphan" | "Background" | "Foreground"
            ) {
                return Err(ApiError::bad_request(format!(
                    "propagationPolicy: Unsupported value: \"{}\": supported values: \"Foreground\", \"Background\", \"Orphan\"",
                    d.propagation
                )));
            }
            match name {
                Some(name) => {
                    let o = shared.lock().delete(rt, ns, name, &d)?;
                    Ok(Reply::Json(
                        StatusCode::OK,
                        deleted_answer(rt, &o).unwrap_or_else(|| out(&o)),
                    ))
                }
                None => {
                    let filter = filter_of(ns, query)?;
                    let items = shared.lock().delete_collection(rt, &filter, &d);
                    let items: Vec<Value> = items
                        .iter()
                        .map(|o| in_version(o, rt, &p.version))
                        .collect();
                    Ok(Reply::Json(
                        StatusCode::OK,
                        json!({"kind": format!("{}List", rt.kind),
                        "apiVersion": api_version(&rt.group, &p.version), "metadata": {}, "items": items}),
                    ))
                }
            }
        }
        (m, _) => Err(ApiError::method_not_allowed(m.as_str(), &p.plural)),
    }
}

/// `pods/<name>/ephemeralcontainers`, which `kubectl debug` writes through: the Pod,
/// of which a write may change only `spec.ephemeralContainers`.
fn ephemeral_containers(
    shared: &Shared,
    rt: &ResourceType,
    p: &ObjectPath,
    method: &Method,
    headers: &HeaderMap,
    query: &HashMap<String, String>,
    body: &[u8],
) -> Result<Reply, ApiError> {
    let ns = p.namespace.as_deref();
    let name = p.name.as_deref().unwrap_or("");
    let opts = WriteOptions {
        manager: manager(query, headers),
        dry_run: query.get("dryRun").is_some_and(|d| d == "All"),
        force: false,
        validation: FieldValidation::Ignore,
        status: false,
    };
    let mut store = shared.lock();
    let wanted = match *method {
        Method::GET => {
            let pod = store.get(rt, ns, name)?;
            return Ok(Reply::Json(
                StatusCode::OK,
                in_version(&pod, rt, &p.version),
            ));
        }
        Method::PUT => {
            read_object(headers, body, rt, &p.version)?["spec"]["ephemeralContainers"].clone()
        }
        Method::PATCH => {
            let kind = match content_type(headers) {
                "application/merge-patch+json" => PatchKind::Merge,
                "application/json-patch+json" => PatchKind::Json,
                _ => PatchKind::Strategic,
            };
            let patch = parse_body(body, false)?;
            let trial = WriteOptions {
                dry_run: true,
                ..opts.clone()
            };
            let patched = store.patch(rt, &p.version, ns, name, kind, &patch, &trial)?;
            patched["spec"]["ephemeralContainers"].clone()
        }
        ref m => {
            return Err(ApiError::method_not_allowed(
                m.as_str(),
                "ephemeralcontainers",
            ));
        }
    };
    let updated = store.patch(
        rt,
        &p.version,
        ns,
        name,
        PatchKind::Merge,
        &json!({"spec": {"ephemeralContainers": wanted}}),
        &opts,
    )?;
    Ok(Reply::Json(
        StatusCode::OK,
        in_version(&updated, rt, &p.version),
    ))
}

/// The `autoscaling/v1` Scale view of a workload.
fn scale_of(obj: &Value) -> Value {
    let meta = &obj["metadata"];
    let selector = obj["spec"]["selector"]
        .get("matchLabels")
        // A ReplicationController's selector is the label map itself.
        .unwrap_or(&obj["spec"]["selector"])
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default();
    json!({"kind": "Scale", "apiVersion": "autoscaling/v1",
        "metadata": {"name": meta["name"], "namespace": meta["namespace"], "uid": meta["uid"],
            "resourceVersion": meta["resourceVersion"], "creationTimestamp": meta["creationTimestamp"]},
        "spec": {"replicas": obj["spec"]["replicas"].as_i64().unwrap_or(1)},
        "status": {"replicas": obj["status"]["replicas"].as_i64().unwrap_or(0), "selector": selector}})
}

/// The `/scale` subresource of Deployments, StatefulSets and ReplicaSets, which
/// `kubectl scale` and autoscalers write through.
fn scale(
    shared: &Shared,
    rt: &ResourceType,
    p: &ObjectPath,
    method: &Method,
    headers: &HeaderMap,
    query: &HashMap<String, String>,
    body: &[u8],
) -> Result<Reply, ApiError> {
    let ns = p.namespace.as_deref();
    let name = p.name.as_deref().unwrap_or("");
    let mut store = shared.lock();
    let current = store.get(rt, ns, name)?;
    let replicas = match *method {
        Method::GET => return Ok(Reply::Json(StatusCode::OK, scale_of(&current))),
        Method::PUT => {
            let doc = if content_type(headers) == protobuf::MEDIA_TYPE {
                protobuf::decode(body)?
            } else {
                parse_body(body, false)?
            };
            // A Scale written with a resourceVersion is a conditional update of
            // its object, as on a real server.
            let sent = doc["metadata"]["resourceVersion"].as_str().unwrap_or("");
            if !sent.is_empty() && current["metadata"]["resourceVersion"] != sent {
                return Err(ApiError::stale(&rt.group, &rt.plural, name));
            }
            doc["spec"]["replicas"].as_i64()
        }
        Method::PATCH => {
            let mut doc = scale_of(&current);
            let patch = parse_body(body, false)?;
            let ct = headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            if ct.starts_with("application/json-patch+json") {
                let ops: json_patch::Patch = serde_json::from_value(patch)
                    .map_err(|e| ApiError::bad_request(format!("invalid JSON patch: {e}")))?;
                json_patch::patch(&mut doc, &ops)
                    .map_err(|e| ApiError::bad_request(e.to_string()))?;
            } else {
                json_patch::merge(&mut doc, &patch);
            }
            doc["spec"]["replicas"].as_i64()
        }
        ref m => return Err(ApiError::method_not_allowed(m.as_str(), "scale")),
    };
    let Some(replicas) = replicas.filter(|r| *r >= 0) else {
        return Err(ApiError::invalid(
            "Scale",
            "autoscaling",
            name,
            vec![(
                "spec.replicas".into(),
                "Invalid value: must be greater than or equal to 0".into(),
            )],
        ));
    };
    let opts = WriteOptions {
        manager: manager(query, headers),
        dry_run: query.get("dryRun").is_some_and(|d| d == "All"),
        force: false,
        validation: FieldValidation::Ignore,
        status: false,
    };
    let updated = store.patch(
        rt,
        &p.version,
        ns,
        name,
        PatchKind::Merge,
        &json!({"spec": {"replicas": replicas}}),
        &opts,
    )?;
    Ok(Reply::Json(StatusCode::OK, scale_of(&updated)))
}

fn filter_of(ns: Option<&str>, query: &HashMap<String, String>) -> Result<Filter, ApiError> {
    Ok(Filter {
        namespace: ns.map(String::from),
        fields: Filter::parse_fields(query.get("fieldSelector").map(String::as_str).unwrap_or(""))?,
        labels: LabelSelector::parse(query.get("labelSelector").map(String::as_str).unwrap_or(""))
            .map_err(|e| ApiError::bad_request(format!("unable to parse requirement: {e}")))?,
    })
}

fn list(
    shared: &Shared,
    rt: &ResourceType,
    p: &ObjectPath,
    query: &HashMap<String, String>,
    form: Form,
    include_object: bool,
) -> Result<Reply, ApiError> {
    use base64::Engine;
    let filter = filter_of(p.namespace.as_deref(), query)?;
    filter.check_fields(rt)?;
    let limit = match query.get("limit").map(String::as_str) {
        None | Some("") | Some("0") => None,
        Some(l) => Some(
            l.parse::<usize>()
                .map_err(|_| ApiError::bad_request(format!("limit: invalid value \"{l}\"")))?,
        ),
    };
    let after = match query.get("continue").filter(|c| !c.is_empty()) {
        None => None,
        Some(c) => {
            let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(c)
                .ok()
                .and_then(|b| serde_json::from_slice::<(String, String)>(&b).ok())
                .ok_or_else(|| {
                    ApiError::bad_request("continue key is not valid: illegal base64 data")
                })?;
            Some(raw)
        }
    };
    let (items, next, remaining, rv) = {
        let store = shared.lock();
        let (items, next, remaining) = store.list(rt, &filter, after.as_ref(), limit);
        (items, next, remaining, store.resource_version())
    };
    let mut meta = json!({"resourceVersion": rv.to_string()});
    if let Some(k) = next {
        let token = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(serde_json::to_vec(&k).unwrap_or_default());
        meta["continue"] = json!(token);
        // A real server cannot count what remains when selectors filter the list.
        if filter.fields.is_empty() && filter.labels.is_empty() {
            meta["remainingItemCount"] = json!(remaining);
        }
    }
    if form == Form::Full && p.version == rt.versions[0] {
        let head = json!({"kind": format!("{}List", rt.kind),
            "apiVersion": rt.api_version(), "metadata": meta});
        let mut out = serde_json::to_vec(&head).unwrap_or_default();
        out.pop(); // the closing brace
        out.extend_from_slice(b",\"items\":[");
        for (i, o) in items.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(&o.json);
        }
        out.extend_from_slice(b"]}");
        return Ok(Reply::Raw(Bytes::from(out)));
    }
    let items: Vec<Value> = items
        .iter()
        .map(|o| in_version(&o.value(), rt, &p.version))
        .collect();
    let v = match form {
        Form::Table => table::table(rt, &items, meta, include_object),
        Form::Metadata => table::partial_list(&items, meta),
        Form::Full => json!({"kind": format!("{}List", rt.kind),
            "apiVersion": api_version(&rt.group, &p.version), "metadata": meta, "items": items}),
    };
    Ok(Reply::Json(StatusCode::OK, v))
}

/// One line of a watch stream.
fn event_line(kind: &str, object: Value) -> Bytes {
    let mut line = serde_json::to_vec(&json!({"type": kind, "object": object})).unwrap_or_default();
    line.push(b'\n');
    Bytes::from(line)
}

/// One line of a watch stream around an already serialized object.
fn raw_event_line(kind: &str, object: &[u8]) -> Bytes {
    let mut line = Vec::with_capacity(object.len() + 32);
    line.extend_from_slice(b"{\"type\":\"");
    line.extend_from_slice(kind.as_bytes());
    line.extend_from_slice(b"\",\"object\":");
    line.extend_from_slice(object);
    line.extend_from_slice(b"}\n");
    Bytes::from(line)
}

struct WatchSpec {
    rt: ResourceType,
    version: String,
    /// Events go out as length-prefixed protobuf `WatchEvent`s instead of JSON lines.
    protobuf: bool,
    filter: Filter,
    form: Form,
    include_object: bool,
    bookmarks: bool,
}

impl WatchSpec {
    /// The event line for a stored object: its bytes as they are when the client
    /// wants full objects in the stored version, otherwise converted.
    fn line(&self, kind: &str, obj: &Stored) -> Bytes {
        if self.form == Form::Full && self.version == self.rt.versions[0] && !self.protobuf {
            return raw_event_line(kind, &obj.json);
        }
        let v = shape_one(
            in_version(&obj.value(), &self.rt, &self.version),
            &self.rt,
            self.form,
            self.include_object,
        );
        self.event(kind, v)
    }

    /// One event in the stream's encoding. An object the protobuf table cannot write
    /// becomes an ERROR event saying so, never a truncated object; the client then
    /// lists and watches again, and can ask for JSON.
    fn event(&self, kind: &str, object: Value) -> Bytes {
        if !self.protobuf {
            return event_line(kind, object);
        }
        match proto_encode::watch_frame(kind, &object) {
            Ok(frame) => Bytes::from(frame),
            Err(why) => {
                let e = ApiError::internal(format!(
                    "the object cannot be written in protobuf ({why}): watch with Accept: application/json"
                ));
                Bytes::from(proto_encode::watch_frame("ERROR", &e.to_status()).unwrap_or_default())
            }
        }
    }

    /// The event a watcher with this filter sees for a change, if any.
    fn translate(&self, ev: &WatchEvent) -> Option<Bytes> {
        if ev.group != self.rt.group || ev.plural != self.rt.plural {
            return None;
        }
        let now = self.filter.matches(&ev.object);
        let kind = match ev.kind {
            EventKind::Added if now => EventKind::Added,
            EventKind::Deleted if now => EventKind::Deleted,
            EventKind::Modified => {
                let before = ev.previous_labels.as_ref().map_or(now, |labels| {
                    self.filter.matches_with_labels(&ev.object, labels)
                });
                match (before, now) {
                    (true, true) => EventKind::Modified,
                    (false, true) => EventKind::Added,
                    (true, false) => EventKind::Deleted,
                    (false, false) => return None,
                }
            }
            _ => return None,
        };
        Some(self.line(kind.as_str(), &ev.object))
    }

    fn bookmark(&self, rv: u64, initial_end: bool) -> Bytes {
        let mut meta = json!({"resourceVersion": rv.to_string()});
        if initial_end {
            meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
        }
        self.event(
            "BOOKMARK",
            json!({"kind": self.rt.kind, "apiVersion": api_version(&self.rt.group, &self.version), "metadata": meta}),
        )
    }
}

fn watch(
    shared: Arc<Shared>,
    rt: ResourceType,
    p: &ObjectPath,
    query: &HashMap<String, String>,
    form: Form,
    protobuf: bool,
) -> Result<Response, ApiError> {
    let mut filter = filter_of(p.namespace.as_deref(), query)?;
    filter.check_fields(&rt)?;
    if let Some(name) = &p.name {
        filter
            .fields
            .push(("metadata.name".into(), true, name.clone()));
    }
    let spec = WatchSpec {
        rt,
        version: p.version.clone(),
        protobuf,
        filter,
        form,
        include_object: query.get("includeObject").is_some_and(|v| v == "Object"),
        bookmarks: query
            .get("allowWatchBookmarks")
            .is_some_and(|v| v == "true"),
    };
    let rv_param = query.get("resourceVersion").cloned().unwrap_or_default();
    let send_initial = match query.get("sendInitialEvents").map(String::as_str) {
        Some("true") => true,
        Some("false") => false,
        _ => rv_param.is_empty() || rv_param == "0",
    };
    let timeout = query
        .get("timeoutSeconds")
        .and_then(|t| t.parse::<u64>().ok())
        .map(Duration::from_secs);

    let (tx, rx) = mpsc::channel::<Bytes>(1024);
    // Initial state and subscription are taken under one lock so no change falls
    // between them.
    let (initial, replay, mut events, start_rv) = {
        let store = shared.lock();
        let current = store.resource_version();
        if send_initial {
            let (items, _, _) = store.list(&spec.rt, &spec.filter, None, None);
            let (_, rx) = store.subscribe(&spec.rt, current)?;
            (items, Vec::new(), rx, current)
        } else {
            let from: u64 = rv_param.parse().map_err(|_| {
                ApiError::bad_request(format!("resourceVersion: Invalid value: \"{rv_param}\""))
            })?;
            match store.subscribe(&spec.rt, from) {
                Ok((replay, rx)) => (Vec::new(), replay, rx, current),
                Err(e) => {
                    // A real server answers 200 and sends the error as a watch event.
                    let line = spec.event("ERROR", e.to_status());
                    let stream =
                        futures_util::stream::once(async move { Ok::<_, Infallible>(line) });
                    return Ok(stream_response(Body::from_stream(stream), protobuf));
                }
            }
        }
    };
    let initial_marker =
        send_initial && query.get("sendInitialEvents").is_some_and(|v| v == "true");
    let mut stopped = shared.shutdown.clone();
    let mut cut = shared.disconnect.subscribe();
    let interval = shared.bookmark_interval;
    tokio::spawn(async move {
        let deadline = timeout.map(|t| tokio::time::Instant::now() + t);
        let mut last_rv = start_rv;
        for o in &initial {
            if tx.send(spec.line("ADDED", o)).await.is_err() {
                return;
            }
        }
        if initial_marker {
            let _ = tx.send(spec.bookmark(start_rv, true)).await;
        }
        for ev in &replay {
            last_rv = last_rv.max(ev.rv);
            if let Some(line) = spec.translate(ev)
                && tx.send(line).await.is_err()
            {
                return;
            }
        }
        let mut ticker = tokio::time::interval(interval);
        ticker.tick().await;
        loop {
            let sleep_until = deadline
                .unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(86_400));
            tokio::select! {
                r = events.recv() => match r {
                    Ok(ev) => {
                        if ev.rv <= last_rv {
                            continue;
                        }
                        last_rv = last_rv.max(ev.rv);
                        if let Some(line) = spec.translate(&ev)
                            && tx.send(line).await.is_err() {
                                return;
                            }
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        let e = ApiError::gone(format!("too old resource version: {last_rv}"));
                        let _ = tx.send(spec.event("ERROR", e.to_status())).await;
                        return;
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                },
                _ = ticker.tick(), if spec.bookmarks => {
                    if tx.send(spec.bookmark(last_rv, false)).await.is_err() {
                        return;
                    }
                }
                _ = tx.closed() => return,
                _ = cut.changed() => return,
                _ = tokio::time::sleep_until(sleep_until) => return,
                _ = async { let _ = stopped.wait_for(|s| *s).await; } => return,
            }
        }
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|b| (Ok::<_, Infallible>(b), rx))
    });
    Ok(stream_response(Body::from_stream(stream), protobuf))
}

fn stream_response(body: Body, protobuf: bool) -> Response {
    let content_type = if protobuf {
        "application/vnd.kubernetes.protobuf;stream=watch"
    } else {
        "application/json"
    };
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, content_type)
        .header(header::CACHE_CONTROL, "no-cache, private")
        .body(body)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_route_to_objects_collections_and_subresources() {
        match route("/apis/apps/v1/namespaces/default/deployments/web/status") {
            Route::Object(p) => {
                assert_eq!(
                    (p.group.as_str(), p.plural.as_str()),
                    ("apps", "deployments")
                );
                assert_eq!(p.namespace.as_deref(), Some("default"));
                assert_eq!(p.name.as_deref(), Some("web"));
                assert_eq!(p.subresource.as_deref(), Some("status"));
            }
            other => panic!("{other:?}"),
        }
        match route("/api/v1/namespaces/prod") {
            Route::Object(p) => {
                assert_eq!(p.plural, "namespaces");
                assert_eq!(p.name.as_deref(), Some("prod"));
                assert_eq!(p.namespace, None);
            }
            other => panic!("{other:?}"),
        }
        assert!(
            matches!(route("/apis/apps/v1"), Route::Resources(g, v) if g == "apps" && v == "v1")
        );
    }
}
