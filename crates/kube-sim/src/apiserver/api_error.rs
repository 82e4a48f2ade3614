//! Kubernetes `Status` error bodies: the code, reason and message a real API server
//! sends, so clients (kubectl, kube-rs) print and classify our errors as theirs.

use serde_json::{Value, json};

use crate::apiserver::kinds::ResourceType;

/// A failed API request, rendered as a `metav1.Status` body.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    /// HTTP status code.
    pub code: u16,
    /// Machine-readable reason (`NotFound`, `Conflict`, `Invalid`, ...).
    pub reason: &'static str,
    /// Human-readable message, worded like the real API server's.
    pub message: String,
    /// `details` (name, group, kind, causes), when the real server sends them.
    pub details: Option<Value>,
}

impl ApiError {
    fn new(code: u16, reason: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            code,
            reason,
            message: message.into(),
            details: None,
        }
    }

    /// 400: the request body or parameters are malformed.
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(400, "BadRequest", message)
    }

    /// 404 for one named object: `deployments.apps "web" not found`.
    pub fn not_found(group: &str, plural: &str, name: &str) -> ApiError {
        let resource = qualified(group, plural);
        ApiError::new(404, "NotFound", format!("{resource} \"{name}\" not found"))
            .with_details(details(group, plural, name))
    }

    /// 404 for a path that names no resource: a real server says only this, with
    /// empty `details`.
    pub fn no_route() -> ApiError {
        ApiError::new(
            404,
            "NotFound",
            "the server could not find the requested resource",
        )
        .with_details(json!({}))
    }

    /// 406: the client accepts no media type the simulator can answer in.
    pub fn not_acceptable(accept: &str) -> ApiError {
        ApiError::new(
            406,
            "NotAcceptable",
            format!(
                "only the following media types are accepted: application/json, application/yaml, application/vnd.kubernetes.protobuf (the request accepts {accept})"
            ),
        )
    }

    /// 406: the client accepts protobuf only and this answer cannot be written in
    /// it; `why` says which value stands in the way.
    pub fn not_acceptable_in_protobuf(why: &str) -> ApiError {
        ApiError::new(
            406,
            "NotAcceptable",
            format!(
                "the answer cannot be written in application/vnd.kubernetes.protobuf ({why}): accept application/json as well"
            ),
        )
    }

    /// 415: a request body in a media type (or of a kind) the simulator cannot read.
    pub fn unsupported_media_type(message: impl Into<String>) -> ApiError {
        ApiError::new(415, "UnsupportedMediaType", message)
    }

    /// 405: the resource does not support the verb.
    pub fn method_not_allowed(verb: &str, resource: &str) -> ApiError {
        ApiError::new(
            405,
            "MethodNotAllowed",
            format!(
                "the server does not allow this method on the requested resource ({verb} {resource})"
            ),
        )
    }

    /// 409 on create of an existing object.
    pub fn already_exists(group: &str, plural: &str, name: &str) -> ApiError {
        let resource = qualified(group, plural);
        ApiError::new(
            409,
            "AlreadyExists",
            format!("{resource} \"{name}\" already exists"),
        )
        .with_details(details(group, plural, name))
    }

    /// 409 on a write with a stale resourceVersion.
    pub fn stale(group: &str, plural: &str, name: &str) -> ApiError {
        let resource = qualified(group, plural);
        ApiError::new(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {resource} \"{name}\": the object has been modified; please apply your changes to the latest version and try again"
            ),
        )
        .with_details(details(group, plural, name))
    }

    /// 409 from server-side apply, with one cause per conflicting field.
    pub fn apply_conflict(message: String, causes: Vec<Value>) -> ApiError {
        ApiError::new(409, "Conflict", message).with_details(json!({ "causes": causes }))
    }

    /// 410: the requested resourceVersion is no longer in the watch window.
    pub fn gone(message: impl Into<String>) -> ApiError {
        ApiError::new(410, "Expired", message)
    }

    /// 422: the object fails validation.
    pub fn invalid(kind: &str, group: &str, name: &str, causes: Vec<(String, String)>) -> ApiError {
        let list: Vec<String> = causes.iter().map(|(f, m)| format!("{f}: {m}")).collect();
        let message = if list.len() == 1 {
            format!(
                "{kind}.{g} \"{name}\" is invalid: {}",
                list[0],
                g = group_or_core(group)
            )
        } else {
            format!(
                "{kind}.{g} \"{name}\" is invalid: [{}]",
                list.join(", "),
                g = group_or_core(group)
            )
        };
        let message = message.replace(".core \"", " \"");
        let causes: Vec<Value> = causes
            .into_iter()
            .map(|(f, m)| json!({"reason": cause_reason(&m), "message": m, "field": f}))
            .collect();
        ApiError::new(422, "Invalid", message)
            .with_details(json!({"name": name, "group": group, "kind": kind, "causes": causes}))
    }

    /// 429, with the seconds the client should wait in `details.retryAfterSeconds`.
    pub fn too_many_requests(retry_after_seconds: u64) -> ApiError {
        ApiError::new(
            429,
            "TooManyRequests",
            "the server has received too many requests and has asked us to try again later",
        )
        .with_details(json!({ "retryAfterSeconds": retry_after_seconds }))
    }

    /// 500: something failed inside the server (or a fault was injected).
    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(500, "InternalError", message)
    }

    /// 503: the server is not ready to serve (injected fault).
    pub fn unavailable(message: impl Into<String>) -> ApiError {
        ApiError::new(503, "ServiceUnavailable", message)
    }

    fn with_details(mut self, mut details: Value) -> ApiError {
        // A real server leaves out an empty group (the core group), as Go's omitempty.
        if let Some(d) = details.as_object_mut()
            && d.get("group").is_some_and(|g| g == "")
        {
            d.remove("group");
        }
        self.details = Some(details);
        self
    }

    /// The `Status` object a real server sends in the response body.
    pub fn to_status(&self) -> Value {
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        if let Some(d) = &self.details {
            status["details"] = d.clone();
        }
        status
    }
}

/// The cause reason a real server gives a field error, from the start of its message.
fn cause_reason(message: &str) -> &'static str {
    for (prefix, reason) in [
        ("Required value", "FieldValueRequired"),
        ("Unsupported value", "FieldValueNotSupported"),
        ("Duplicate value", "FieldValueDuplicate"),
        ("Forbidden", "FieldValueForbidden"),
        ("Too long", "FieldValueTooLong"),
        ("Too many", "FieldValueTooMany"),
        ("Not found", "FieldValueNotFound"),
    ] {
        if message.starts_with(prefix) {
            return reason;
        }
    }
    "FieldValueInvalid"
}

/// `details` naming one object; a real server leaves `group` out for the core group.
fn details(group: &str, plural: &str, name: &str) -> Value {
    let mut d = json!({"name": name, "kind": plural});
    if !group.is_empty() {
        d["group"] = json!(group);
    }
    d
}

fn group_or_core(group: &str) -> &str {
    if group.is_empty() { "core" } else { group }
}

/// `deployments.apps`, or just `configmaps` for the core group.
pub fn qualified(group: &str, plural: &str) -> String {
    if group.is_empty() {
        plural.to_string()
    } else {
        format!("{plural}.{group}")
    }
}

/// What a real server answers to a `DELETE` of one object that is gone at once: a
/// success `Status` naming it, except for the kinds whose storage returns the deleted
/// object (Pods, ServiceAccounts, Services, volumes and claims, storage and priority
/// classes, CRDs and custom resources). An object that is only marked for deletion
/// (finalizers, a namespace emptying) is answered as it is now: `None` then.
pub fn deleted_answer(rt: &ResourceType, obj: &Value) -> Option<Value> {
    if !obj["metadata"]["deletionTimestamp"].is_null() {
        return None;
    }
    let returns_object = match rt.group.as_str() {
        "" => matches!(
            rt.kind.as_str(),
            "Pod" | "ServiceAccount" | "Service" | "PersistentVolume" | "PersistentVolumeClaim"
        ),
        "storage.k8s.io" => rt.kind == "StorageClass",
        "scheduling.k8s.io" | "apiextensions.k8s.io" => true,
        g => !manifest::schema::is_builtin_group(g),
    };
    if returns_object {
        return None;
    }
    let mut details = json!({"name": obj["metadata"]["name"], "kind": rt.plural,
        "uid": obj["metadata"]["uid"]});
    if !rt.group.is_empty() {
        details["group"] = json!(rt.group);
    }
    Some(
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
        "details": details}),
    )
}
