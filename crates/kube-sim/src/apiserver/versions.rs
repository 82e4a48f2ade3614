//! Conversion between the versions a built-in kind is served in. Objects are stored
//! once, in the preferred version; this module turns a request body of an older
//! version into the stored form and a stored object into the version a client asked
//! for. Only HorizontalPodAutoscaler has two versions (`autoscaling/v2`, preferred,
//! and `autoscaling/v1`, which `kubectl autoscale` and older clients use); custom
//! resources are served in every version as stored, as a CRD without a conversion
//! webhook is.

use serde_json::{Value, json};

use crate::apiserver::kinds::{ResourceType, api_version};

fn is_hpa(rt: &ResourceType) -> bool {
    rt.group == "autoscaling" && rt.kind == "HorizontalPodAutoscaler"
}

/// The version to hand the store for a write sent in `version`: the stored version
/// when the body was converted to it.
pub fn stored_version<'a>(rt: &'a ResourceType, version: &'a str) -> &'a str {
    if is_hpa(rt) { &rt.versions[0] } else { version }
}

/// A request body sent in `version`, in the stored version.
pub fn to_stored(rt: &ResourceType, version: &str, mut obj: Value) -> Value {
    if !is_hpa(rt) || version == rt.versions[0] || !obj.is_object() {
        return obj;
    }
    obj["apiVersion"] = json!(rt.api_version());
    if let Some(map) = obj.get_mut("spec").and_then(Value::as_object_mut)
        && let Some(target) = map.remove("targetCPUUtilizationPercentage")
    {
        map.insert(
            "metrics".into(),
            json!([{"type": "Resource", "resource": {"name": "cpu",
                "target": {"type": "Utilization", "averageUtilization": target}}}]),
        );
    }
    if let Some(status) = obj.get_mut("status").and_then(Value::as_object_mut)
        && let Some(current) = status.remove("currentCPUUtilizationPercentage")
    {
        status.insert(
            "currentMetrics".into(),
            json!([{"type": "Resource", "resource": {"name": "cpu",
                "current": {"averageUtilization": current}}}]),
        );
    }
    obj
}

/// A stored object as served in `version`.
pub fn to_served(rt: &ResourceType, version: &str, mut obj: Value) -> Value {
    if !is_hpa(rt) || version == rt.versions[0] || !obj.is_object() {
        return obj;
    }
    obj["apiVersion"] = json!(api_version(&rt.group, version));
    let cpu = |metrics: &Value, field: &str| {
        metrics
            .as_array()
            .into_iter()
            .flatten()
            .find(|m| m["type"] == "Resource" && m["resource"]["name"] == "cpu")
            .and_then(|m| m["resource"][field]["averageUtilization"].as_i64())
    };
    if let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) {
        let target = spec.get("metrics").and_then(|m| cpu(m, "target"));
        spec.remove("metrics");
        spec.remove("behavior");
        if let Some(t) = target {
            spec.insert("targetCPUUtilizationPercentage".into(), json!(t));
        }
    }
    if let Some(status) = obj.get_mut("status").and_then(Value::as_object_mut) {
        let current = status.get("currentMetrics").and_then(|m| cpu(m, "current"));
        status.remove("currentMetrics");
        status.remove("conditions");
        if let Some(c) = current {
            status.insert("currentCPUUtilizationPercentage".into(), json!(c));
        }
    }
    obj
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apiserver::kinds::Registry;

    #[test]
    fn an_autoscaling_v1_target_is_stored_as_a_v2_cpu_metric_and_served_back_as_v1() {
        let registry = Registry::builtin();
        let rt = registry
            .by_kind("autoscaling", "HorizontalPodAutoscaler")
            .unwrap();
        let v1 = json!({"apiVersion": "autoscaling/v1", "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": "web"},
            "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
                "minReplicas": 1, "maxReplicas": 5, "targetCPUUtilizationPercentage": 70}});
        let stored = to_stored(rt, "v1", v1.clone());
        assert_eq!(stored["apiVersion"], "autoscaling/v2");
        assert_eq!(
            stored["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"],
            70
        );
        assert!(
            stored["spec"]
                .get("targetCPUUtilizationPercentage")
                .is_none()
        );
        assert_eq!(to_served(rt, "v1", stored.clone()), v1);
        assert_eq!(to_served(rt, "v2", stored.clone()), stored);
    }
}
