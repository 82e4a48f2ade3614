//! Validation a real API server does before storing an object: decoding into the
//! kind's schema (built-ins through the k8s-openapi types, custom resources through
//! their CRD's `openAPIV3Schema`), unknown-field handling (`fieldValidation`), names,
//! and the few semantic rules clients rely on (a workload's selector must match its
//! template). Errors carry the codes and wording of a real server: 400 for decoding,
//! 422 for invalid values.

use k8s_openapi::api::{
    admissionregistration::v1 as admission, apps::v1 as apps, autoscaling::v2 as autoscaling,
    batch::v1 as batch, coordination::v1 as coordination, core::v1 as core,
    discovery::v1 as discovery, events::v1 as events, networking::v1 as networking,
    policy::v1 as policy, rbac::v1 as rbac, scheduling::v1 as scheduling, storage::v1 as storage,
};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1 as apiextensions;
use serde_json::{Map, Value};

use crate::apiserver::api_error::ApiError;
use crate::apiserver::kinds::ResourceType;

/// What to do with fields the schema does not declare (`?fieldValidation=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FieldValidation {
    /// Drop them silently.
    Ignore,
    /// Drop them (a real server also sends a warning header).
    #[default]
    Warn,
    /// Refuse the request with 400.
    Strict,
}

impl FieldValidation {
    /// Parses the query parameter value.
    pub fn parse(s: &str) -> Result<FieldValidation, ApiError> {
        match s {
            "" | "Warn" => Ok(FieldValidation::Warn),
            "Ignore" => Ok(FieldValidation::Ignore),
            "Strict" => Ok(FieldValidation::Strict),
            other => Err(ApiError::bad_request(format!(
                "fieldValidation must be one of Ignore, Warn or Strict, got \"{other}\""
            ))),
        }
    }
}

macro_rules! roundtrip {
    ($obj:expr, $t:ty) => {
        serde_json::from_value::<$t>($obj.clone())
            .map_err(|e| e.to_string())
            .and_then(|x| serde_json::to_value(x).map_err(|e| e.to_string()))
    };
}

/// Decodes a built-in object through its typed schema and returns what survives the
/// round trip, or `None` for kinds without a typed schema here.
fn typed_roundtrip(rt: &ResourceType, obj: &Value) -> Option<Result<Value, String>> {
    let r = match (rt.group.as_str(), rt.kind.as_str()) {
        ("", "Namespace") => roundtrip!(obj, core::Namespace),
        ("", "ConfigMap") => roundtrip!(obj, core::ConfigMap),
        ("", "Secret") => roundtrip!(obj, core::Secret),
        ("", "Service") => roundtrip!(obj, core::Service),
        ("", "ServiceAccount") => roundtrip!(obj, core::ServiceAccount),
        ("", "Pod") => roundtrip!(obj, core::Pod),
        ("", "PersistentVolumeClaim") => roundtrip!(obj, core::PersistentVolumeClaim),
        ("", "PersistentVolume") => roundtrip!(obj, core::PersistentVolume),
        ("", "Event") => roundtrip!(obj, core::Event),
        ("", "LimitRange") => roundtrip!(obj, core::LimitRange),
        ("", "ResourceQuota") => roundtrip!(obj, core::ResourceQuota),
        ("", "Node") => roundtrip!(obj, core::Node),
        ("apps", "Deployment") => roundtrip!(obj, apps::Deployment),
        ("apps", "StatefulSet") => roundtrip!(obj, apps::StatefulSet),
        ("apps", "DaemonSet") => roundtrip!(obj, apps::DaemonSet),
        ("apps", "ReplicaSet") => roundtrip!(obj, apps::ReplicaSet),
        ("apps", "ControllerRevision") => roundtrip!(obj, apps::ControllerRevision),
        ("batch", "Job") => roundtrip!(obj, batch::Job),
        ("batch", "CronJob") => roundtrip!(obj, batch::CronJob),
        ("networking.k8s.io", "Ingress") => roundtrip!(obj, networking::Ingress),
        ("networking.k8s.io", "IngressClass") => roundtrip!(obj, networking::IngressClass),
        ("networking.k8s.io", "NetworkPolicy") => roundtrip!(obj, networking::NetworkPolicy),
        ("autoscaling", "HorizontalPodAutoscaler") => {
            roundtrip!(obj, autoscaling::HorizontalPodAutoscaler)
        }
        ("policy", "PodDisruptionBudget") => roundtrip!(obj, policy::PodDisruptionBudget),
        ("rbac.authorization.k8s.io", "Role") => roundtrip!(obj, rbac::Role),
        ("rbac.authorization.k8s.io", "RoleBinding") => roundtrip!(obj, rbac::RoleBinding),
        ("rbac.authorization.k8s.io", "ClusterRole") => roundtrip!(obj, rbac::ClusterRole),
        ("rbac.authorization.k8s.io", "ClusterRoleBinding") => {
            roundtrip!(obj, rbac::ClusterRoleBinding)
        }
        ("apiextensions.k8s.io", "CustomResourceDefinition") => {
            roundtrip!(obj, apiextensions::CustomResourceDefinition)
        }
        ("coordination.k8s.io", "Lease") => roundtrip!(obj, coordination::Lease),
        ("discovery.k8s.io", "EndpointSlice") => roundtrip!(obj, discovery::EndpointSlice),
        ("events.k8s.io", "Event") => roundtrip!(obj, events::Event),
        ("storage.k8s.io", "StorageClass") => roundtrip!(obj, storage::StorageClass),
        ("scheduling.k8s.io", "PriorityClass") => roundtrip!(obj, scheduling::PriorityClass),
        ("admissionregistration.k8s.io", "ValidatingWebhookConfiguration") => {
            roundtrip!(obj, admission::ValidatingWebhookConfiguration)
        }
        ("admissionregistration.k8s.io", "MutatingWebhookConfiguration") => {
            roundtrip!(obj, admission::MutatingWebhookConfiguration)
        }
        _ => return None,
    };
    Some(r)
}

/// Paths (dotted, with `[i]` for list items) present in `original` but absent from
/// `kept`: the fields the schema does not declare.
fn missing_fields(original: &Value, kept: &Value, path: &str, out: &mut Vec<String>) {
    match (original, kept) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in a {
                let p = format!("{path}.{k}");
                match b.get(k) {
                    Some(bv) => missing_fields(v, bv, &p, out),
                    None if !v.is_null() => out.push(p),
                    None => {}
                }
            }
        }
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => {
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                missing_fields(x, y, &format!("{path}[{i}]"), out);
            }
        }
        _ => {}
    }
}

/// Removes one dotted/indexed path produced by [`missing_fields`].
fn prune(obj: &mut Value, path: &str) {
    let mut cur = obj;
    let parts: Vec<&str> = path.trim_start_matches('.').split('.').collect();
    for (n, part) in parts.iter().enumerate() {
        let (field, indexes) = match part.find('[') {
            Some(i) => (&part[..i], &part[i..]),
            None => (*part, ""),
        };
        let last = n + 1 == parts.len() && indexes.is_empty();
        if last {
            if let Value::Object(m) = cur {
                m.remove(field);
            }
            return;
        }
        let Some(next) = cur.get_mut(field) else {
            return;
        };
        cur = next;
        for idx in indexes
            .split(['[', ']'])
            .filter(|s| !s.is_empty())
            .filter_map(|s| s.parse::<usize>().ok())
        {
            let Some(next) = cur.get_mut(idx) else { return };
            cur = next;
        }
    }
}

/// Validates `obj` (already carrying apiVersion, kind and metadata) for `rt`; unknown
/// fields are dropped or refused according to `fields`. Returns the object to store.
pub fn validate(
    rt: &ResourceType,
    mut obj: Value,
    fields: FieldValidation,
) -> Result<Value, ApiError> {
    let name = obj["metadata"]["name"].as_str().unwrap_or("").to_string();
    check_name(rt, &name)?;
    check_metadata(rt, &obj, &name)?;
    let mut unknown = Vec::new();
    if let Some(r) = typed_roundtrip(rt, &obj) {
        let kept = r.map_err(|e| {
            ApiError::bad_request(format!(
                "{kind} in version \"{v}\" cannot be handled as a {kind}: {e}",
                kind = rt.kind,
                v = rt.versions[0]
            ))
        })?;
        missing_fields(&obj, &kept, "", &mut unknown);
    } else if let Some(schema) = &rt.schema {
        let mut errors = Vec::new();
        for (k, v) in obj.as_object().into_iter().flatten() {
            if k == "apiVersion" || k == "kind" || k == "metadata" {
                continue;
            }
            match schema["properties"].get(k) {
                Some(s) => check_schema(v, s, k, &mut errors, &mut unknown),
                None if preserves_unknown(schema) => {}
                None => unknown.push(format!(".{k}")),
            }
        }
        for req in schema["required"].as_array().into_iter().flatten() {
            if let Some(r) = req.as_str()
                && obj.get(r).is_none_or(Value::is_null)
            {
                errors.push((r.to_string(), "Required value".to_string()));
            }
        }
        if !errors.is_empty() {
            return Err(ApiError::invalid(&rt.kind, &rt.group, &name, errors));
        }
        for u in &mut unknown {
            if !u.starts_with('.') {
                u.insert(0, '.');
            }
        }
    }
    if !unknown.is_empty() {
        if fields == FieldValidation::Strict {
            let list: Vec<String> = unknown
                .iter()
                .map(|p| format!("unknown field \"{}\"", p.trim_start_matches('.')))
                .collect();
            return Err(ApiError::bad_request(format!(
                "{kind} in version \"{v}\" cannot be handled as a {kind}: strict decoding error: {}",
                list.join(", "),
                kind = rt.kind,
                v = rt.versions[0]
            )));
        }
        for p in unknown.iter().rev() {
            prune(&mut obj, p);
        }
    }
    check_semantics(rt, &obj, &name)?;
    Ok(obj)
}

fn preserves_unknown(schema: &Value) -> bool {
    schema["x-kubernetes-preserve-unknown-fields"] == true
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// A structural-schema check of one value, as the API server validates custom
/// resources: types, required properties, enums and numeric bounds.
fn check_schema(
    v: &Value,
    schema: &Value,
    path: &str,
    errors: &mut Vec<(String, String)>,
    unknown: &mut Vec<String>,
) {
    if v.is_null() && schema["nullable"] == true {
        return;
    }
    let actual = type_name(v);
    if schema["x-kubernetes-int-or-string"] == true {
        if actual != "integer" && actual != "string" {
            errors.push((
                path.to_string(),
                format!("Invalid value: \"{actual}\": {path} in body must be of type integer,string: \"{actual}\""),
            ));
        }
        return;
    }
    if let Some(want) = schema["type"].as_str() {
        let ok = want == actual || (want == "number" && actual == "integer");
        if !ok {
            errors.push((
                path.to_string(),
                format!("Invalid value: \"{actual}\": {path} in body must be of type {want}: \"{actual}\""),
            ));
            return;
        }
    }
    if let Some(options) = schema["enum"].as_array()
        && !options.contains(v)
    {
        let list: Vec<String> = options.iter().map(|o| o.to_string()).collect();
        errors.push((
            path.to_string(),
            format!(
                "Unsupported value: {v}: supported values: {}",
                list.join(", ")
            ),
        ));
    }
    if let (Some(n), Some(min)) = (v.as_f64(), schema["minimum"].as_f64())
        && n < min
    {
        errors.push((
            path.to_string(),
            format!("Invalid value: {v}: {path} in body should be greater than or equal to {min}"),
        ));
    }
    if let (Some(n), Some(max)) = (v.as_f64(), schema["maximum"].as_f64())
        && n > max
    {
        errors.push((
            path.to_string(),
            format!("Invalid value: {v}: {path} in body should be less than or equal to {max}"),
        ));
    }
    match v {
        Value::Object(m) => {
            for req in schema["required"].as_array().into_iter().flatten() {
                if let Some(r) = req.as_str()
                    && m.get(r).is_none_or(Value::is_null)
                {
                    errors.push((format!("{path}.{r}"), "Required value".into()));
                }
            }
            let props = schema["properties"].as_object();
            let additional = schema.get("additionalProperties");
            for (k, child) in m {
                let p = format!("{path}.{k}");
                match props.and_then(|ps| ps.get(k)) {
                    Some(s) => check_schema(child, s, &p, errors, unknown),
                    None => match additional {
                        Some(Value::Object(s)) => {
                            check_schema(child, &Value::Object(s.clone()), &p, errors, unknown)
                        }
                        Some(Value::Bool(true)) => {}
                        _ if preserves_unknown(schema) => {}
                        _ if props.is_none() && schema.get("type").is_none() => {}
                        _ => unknown.push(p),
                    },
                }
            }
        }
        Value::Array(items) => {
            if let Some(s) = schema.get("items") {
                for (i, it) in items.iter().enumerate() {
                    check_schema(it, s, &format!("{path}[{i}]"), errors, unknown);
                }
            }
        }
        _ => {}
    }
}

const DNS1123_SUBDOMAIN: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
const DNS1123_LABEL: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')";

fn check_name(rt: &ResourceType, name: &str) -> Result<(), ApiError> {
    if name.is_empty() {
        return Err(ApiError::invalid(
            &rt.kind,
            &rt.group,
            name,
            vec![(
                "metadata.name".into(),
                "Required value: name or generateName is required".into(),
            )],
        ));
    }
    let label_only = matches!(rt.kind.as_str(), "Namespace" | "Service");
    let rbac = rt.group == "rbac.authorization.k8s.io";
    let ok = if rbac {
        !name.contains('/') && !name.contains('%') && name != "." && name != ".."
    } else if label_only {
        manifest::names::is_dns_label(name)
    } else {
        manifest::names::is_dns_subdomain(name)
    };
    if ok {
        return Ok(());
    }
    let rule = if label_only {
        DNS1123_LABEL
    } else {
        DNS1123_SUBDOMAIN
    };
    Err(ApiError::invalid(
        &rt.kind,
        &rt.group,
        name,
        vec![(
            "metadata.name".into(),
            format!("Invalid value: \"{name}\": {rule}"),
        )],
    ))
}

fn check_metadata(rt: &ResourceType, obj: &Value, name: &str) -> Result<(), ApiError> {
    let mut errors = Vec::new();
    for field in ["labels", "annotations"] {
        match &obj["metadata"][field] {
            Value::Null => {}
            Value::Object(m) => {
                for (k, v) in m {
                    if !v.is_string() {
                        return Err(ApiError::bad_request(format!(
                            "{kind} in version \"{ver}\" cannot be handled as a {kind}: json: cannot unmarshal {t} into Go struct field ObjectMeta.metadata.{field} of type string",
                            kind = rt.kind,
                            ver = rt.versions[0],
                            t = type_name(v),
                        )));
                    }
                    if field == "labels" {
                        let value = v.as_str().unwrap_or("");
                        if value.len() > 63
                            || !value
                                .bytes()
                                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
                        {
                            errors.push((
                                "metadata.labels".to_string(),
                                format!("Invalid value: \"{value}\": a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character"),
                            ));
                        }
                        let _ = k;
                    }
                }
            }
            other => {
                return Err(ApiError::bad_request(format!(
                    "{kind} in version \"{ver}\" cannot be handled as a {kind}: json: cannot unmarshal {t} into Go struct field ObjectMeta.metadata.{field} of type map[string]string",
                    kind = rt.kind,
                    ver = rt.versions[0],
                    t = type_name(other),
                )));
            }
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(ApiError::invalid(&rt.kind, &rt.group, name, errors))
    }
}

/// A map value as the apiserver prints it in field errors (its JSON).
fn go_map(m: &Map<String, Value>) -> String {
    serde_json::to_string(m).unwrap_or_default()
}

fn check_semantics(rt: &ResourceType, obj: &Value, name: &str) -> Result<(), ApiError> {
    let mut errors = Vec::new();
    let workload = rt.group == "apps"
        && matches!(
            rt.kind.as_str(),
            "Deployment" | "StatefulSet" | "DaemonSet" | "ReplicaSet"
        );
    if workload {
        let spec = &obj["spec"];
        let selector = &spec["selector"];
        let labels = spec["template"]["metadata"]["labels"].as_object();
        if selector.is_null() {
            errors.push(("spec.selector".into(), "Required value".into()));
        } else if let Some(ml) = selector["matchLabels"].as_object() {
            let matched = labels.is_some_and(|l| ml.iter().all(|(k, v)| l.get(k) == Some(v)));
            if !matched {
                let shown = labels.map(go_map).unwrap_or_else(|| "null".into());
                errors.push((
                    "spec.template.metadata.labels".into(),
                    format!("Invalid value: {shown}: `selector` does not match template `labels`"),
                ));
            }
        }
        check_containers(&spec["template"]["spec"], "spec.template.spec", &mut errors);
    }
    if rt.group.is_empty() && rt.kind == "Pod" {
        check_containers(&obj["spec"], "spec", &mut errors);
    }
    if rt.group.is_empty() && rt.kind == "Service" {
        // Ports are told apart by name once there are several.
        let ports = obj["spec"]["ports"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        if ports.len() > 1 {
            for (i, p) in ports.iter().enumerate() {
                if p["name"].as_str().is_none_or(str::is_empty) {
                    errors.push((format!("spec.ports[{i}].name"), "Required value".into()));
                }
            }
        }
    }
    if rt.group == "batch" && rt.kind == "Job" {
        check_containers(
            &obj["spec"]["template"]["spec"],
            "spec.template.spec",
            &mut errors,
        );
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(ApiError::invalid(&rt.kind, &rt.group, name, errors))
    }
}

fn check_containers(pod_spec: &Value, path: &str, errors: &mut Vec<(String, String)>) {
    match pod_spec["containers"].as_array() {
        None => errors.push((format!("{path}.containers"), "Required value".into())),
        Some(list) if list.is_empty() => {
            errors.push((format!("{path}.containers"), "Required value".into()))
        }
        Some(list) => {
            for (i, c) in list.iter().enumerate() {
                for f in ["name", "image"] {
                    if c[f].as_str().is_none_or(str::is_empty) {
                        errors.push((
                            format!("{path}.containers[{i}].{f}"),
                            "Required value".into(),
                        ));
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apiserver::kinds::Registry;
    use serde_json::json;

    fn deployment_type() -> ResourceType {
        Registry::builtin()
            .by_kind("apps", "Deployment")
            .unwrap()
            .clone()
    }

    #[test]
    fn a_selector_that_does_not_match_the_template_is_invalid() {
        let obj = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
            "spec": {"selector": {"matchLabels": {"app": "web"}}, "template": {
                "metadata": {"labels": {"app": "api"}},
                "spec": {"containers": [{"name": "web", "image": "nginx"}]}}}});
        let err = validate(&deployment_type(), obj, FieldValidation::Strict).unwrap_err();
        assert_eq!(err.code, 422);
        assert!(
            err.message
                .starts_with("Deployment.apps \"web\" is invalid: spec.template.metadata.labels"),
            "{}",
            err.message
        );
    }

    #[test]
    fn unknown_fields_are_refused_under_strict_and_dropped_otherwise() {
        let obj = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
            "spec": {"replica": 2, "selector": {"matchLabels": {"app": "web"}}, "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "web", "image": "nginx"}]}}}});
        let err = validate(&deployment_type(), obj.clone(), FieldValidation::Strict).unwrap_err();
        assert_eq!(err.code, 400);
        assert!(
            err.message.contains("unknown field \"spec.replica\""),
            "{}",
            err.message
        );
        let kept = validate(&deployment_type(), obj, FieldValidation::Warn).unwrap();
        assert!(kept["spec"].get("replica").is_none());
    }

    #[test]
    fn a_wrongly_typed_field_is_a_bad_request() {
        let obj = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
            "spec": {"replicas": "two"}});
        let err = validate(&deployment_type(), obj, FieldValidation::Strict).unwrap_err();
        assert_eq!(err.code, 400);
    }
}
