//! The policy controllers of a simulated cluster: the resource quota controller
//! (`status.hard` from the spec, `status.used` counted from the namespace's objects)
//! and the disruption controller (a PodDisruptionBudget's healthy, desired and allowed
//! counts from the Pods it selects), so `kubectl describe quota|pdb|namespace` shows
//! what a real cluster shows.
//!
//! Left out: quota is not enforced (a create over the hard limit is accepted), usage
//! is counted for object counts (`pods`, `services`, `count/<resource>`, ...) and for
//! Pods' cpu and memory requests and limits only, and a budget's expected Pods are the
//! Pods it selects rather than the scale of their controllers.

use crate::controllers::common::selects;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use serde_json::{Map, Value, json};

use crate::apiserver::kinds::ResourceType;
use crate::apiserver::store::{Filter, Store, Stored};
use crate::controllers::common::is_ready;
use crate::controllers::common::{
    CONTROLLER, Memory, condition, controller_write, keep_transition_times, signature,
};

/// One pass of both controllers.
pub(crate) fn sync(
    store: &mut Store,
    memory: &mut Memory,
    now: Instant,
    live: &mut HashSet<String>,
) {
    sync_quotas(store, live);
    sync_budgets(store, memory, now, live);
}

/// Whether a Pod counts against quota and budgets: not finished, not being deleted.
fn active_pod(pod: &Value) -> bool {
    pod["metadata"]["deletionTimestamp"].is_null()
        && !matches!(
            pod["status"]["phase"].as_str(),
            Some("Succeeded" | "Failed")
        )
}

fn write_status(
    store: &mut Store,
    rt: &ResourceType,
    stored: &Stored,
    mut obj: Value,
    status: Value,
) {
    if obj["status"] == status {
        return;
    }
    obj["status"] = status;
    let ns = (!stored.namespace.is_empty()).then_some(stored.namespace.as_str());
    let version = rt.versions[0].clone();
    let opts = controller_write(CONTROLLER, rt.status_subresource);
    if let Err(e) = store.update(rt, &version, ns, &stored.name, obj, &opts) {
        tracing::warn!(kind = %rt.kind, name = %stored.name, error = %e.message, "simulated controller could not write status");
    }
}

fn sync_quotas(store: &mut Store, live: &mut HashSet<String>) {
    let Some(rt) = store.registry.by_kind("", "ResourceQuota").cloned() else {
        return;
    };
    let (quotas, _, _) = store.list(&rt, &Filter::default(), None, None);
    for q in quotas {
        live.insert(q.uid.clone());
        let obj = q.value();
        let Some(hard) = obj["spec"]["hard"].as_object().cloned() else {
            continue;
        };
        let mut used = Map::new();
        for resource in hard.keys() {
            if let Some(v) = usage(store, &q.namespace, resource) {
                used.insert(resource.clone(), json!(v));
            }
        }
        let status = json!({"hard": hard, "used": used});
        write_status(store, &rt, &q, obj, status);
    }
}

/// Objects of a namespace of the type named as quota names it: a plural, with its
/// group after a dot for grouped kinds.
fn objects_named(store: &Store, ns: &str, name: &str) -> Vec<Arc<Stored>> {
    let (plural, group) = name.split_once('.').unwrap_or((name, ""));
    let Some(rt) = store
        .registry
        .all()
        .find(|r| r.plural == plural && r.group == group)
        .cloned()
    else {
        return Vec::new();
    };
    let filter = Filter {
        namespace: Some(ns.to_string()),
        ..Filter::default()
    };
    store.list(&rt, &filter, None, None).0
}

/// The usage of one quota resource in a namespace, as the quota controller formats it;
/// `None` for resources it does not count.
fn usage(store: &Store, ns: &str, resource: &str) -> Option<String> {
    let count = |name: &str| objects_named(store, ns, name).len().to_string();
    match resource {
        "pods" | "count/pods" => Some(
            objects_named(store, ns, "pods")
                .iter()
                .filter(|p| active_pod(&p.value()))
                .count()
                .to_string(),
        ),
        "services"
        | "configmaps"
        | "secrets"
        | "persistentvolumeclaims"
        | "replicationcontrollers"
        | "resourcequotas" => Some(count(resource)),
        "services.nodeports" | "services.loadbalancers" => {
            let services = objects_named(store, ns, "services");
            let n: usize = services
                .iter()
                .map(|s| {
                    let s = s.value();
                    let t = s["spec"]["type"].as_str().unwrap_or("ClusterIP");
                    let ports = s["spec"]["ports"].as_array().map_or(0, Vec::len);
                    match resource {
                        "services.loadbalancers" => usize::from(t == "LoadBalancer"),
                        _ if t == "NodePort" || t == "LoadBalancer" => ports,
                        _ => 0,
                    }
                })
                .sum();
            Some(n.to_string())
        }
        r if r.starts_with("count/") => Some(count(&r["count/".len()..])),
        "cpu" | "requests.cpu" | "limits.cpu" | "memory" | "requests.memory" | "limits.memory" => {
            let (section, name) = match resource.split_once('.') {
                Some((s, n)) => (s, n),
                None => ("requests", resource),
            };
            let mut total: u128 = 0;
            for p in objects_named(store, ns, "pods") {
                let p = p.value();
                if !active_pod(&p) {
                    continue;
                }
                for c in p["spec"]["containers"].as_array().into_iter().flatten() {
                    if let Some(q) = c["resources"][section][name].as_str() {
                        total += milli_units(q).unwrap_or(0);
                    }
                }
            }
            Some(if name == "cpu" {
                format_cpu(total)
            } else {
                format_bytes(total / 1000)
            })
        }
        _ => None,
    }
}

/// A quantity in thousandths of its unit (`100m` is 100, `1Gi` is 1024³ × 1000);
/// `None` for what is not a quantity.
pub fn milli_units(q: &str) -> Option<u128> {
    let q = q.trim();
    let split = q
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(q.len());
    let (number, suffix) = q.split_at(split);
    let (whole, frac) = number.split_once('.').unwrap_or((number, ""));
    let whole: u128 = if whole.is_empty() {
        0
    } else {
        whole.parse().ok()?
    };
    let mut milli = whole * 1000;
    for (i, d) in frac.chars().take(3).enumerate() {
        milli += u128::from(d.to_digit(10)?) * 10u128.pow(2 - i as u32);
    }
    let factor: u128 = match suffix {
        "" => return Some(milli),
        "m" => return Some(milli / 1000),
        "k" => 1_000,
        "M" => 1_000_000,
        "G" => 1_000_000_000,
        "T" => 1_000_000_000_000,
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        "Ti" => 1 << 40,
        _ => return None,
    };
    Some(milli * factor)
}

/// Cpu in thousandths as a real server prints a sum: whole cores, else millicores.
fn format_cpu(milli: u128) -> String {
    if milli.is_multiple_of(1000) {
        (milli / 1000).to_string()
    } else {
        format!("{milli}m")
    }
}

/// Bytes as a real server prints a sum of binary quantities: the largest binary
/// suffix that divides them.
fn format_bytes(bytes: u128) -> String {
    for (suffix, shift) in [("Ti", 40), ("Gi", 30), ("Mi", 20), ("Ki", 10)] {
        if bytes > 0 && bytes.is_multiple_of(1u128 << shift) {
            return format!("{}{suffix}", bytes >> shift);
        }
    }
    bytes.to_string()
}

/// A count or a percentage of `total`, rounded up as the disruption controller does.
fn scaled(v: &Value, total: i64) -> i64 {
    match v {
        Value::Number(n) => n.as_i64().unwrap_or(0),
        Value::String(s) => {
            let pct: i64 = s.trim_end_matches('%').parse().unwrap_or(0);
            (pct * total + 99) / 100
        }
        _ => 0,
    }
}

fn sync_budgets(store: &mut Store, memory: &mut Memory, now: Instant, live: &mut HashSet<String>) {
    let (Some(rt), Some(pod_type)) = (
        store
            .registry
            .by_kind("policy", "PodDisruptionBudget")
            .cloned(),
        store.registry.by_kind("", "Pod").cloned(),
    ) else {
        return;
    };
    let (budgets, _, _) = store.list(&rt, &Filter::default(), None, None);
    if budgets.is_empty() {
        return;
    }
    let (pods, _, _) = store.list(&pod_type, &Filter::default(), None, None);
    let mut by_ns: HashMap<&str, Vec<&Arc<Stored>>> = HashMap::new();
    for p in &pods {
        by_ns.entry(p.namespace.as_str()).or_default().push(p);
    }
    for b in &budgets {
        live.insert(b.uid.clone());
        let obj = b.value();
        let spec = &obj["spec"];
        // Selected by the labels kept beside each stored Pod: nothing is parsed
        // unless the budget or one of its Pods changed.
        let selected: Vec<Arc<Stored>> = by_ns
            .get(b.namespace.as_str())
            .into_iter()
            .flatten()
            .filter(|p| selects(&spec["selector"], &p.labels))
            .map(|p| Arc::clone(p))
            .collect::<Vec<_>>();
        let sig = signature(b, &selected);
        if !memory.needs_look(&b.uid, sig, now) {
            continue;
        }
        memory.looked_at(&b.uid, sig, None);
        let selected: Vec<Value> = selected
            .iter()
            .map(|p| p.value())
            .filter(active_pod)
            .collect();
        let expected = selected.len() as i64;
        let healthy = selected.iter().filter(|p| is_ready(p)).count() as i64;
        let desired = if !spec["minAvailable"].is_null() {
            scaled(&spec["minAvailable"], expected)
        } else if !spec["maxUnavailable"].is_null() {
            (expected - scaled(&spec["maxUnavailable"], expected)).max(0)
        } else {
            expected
        };
        let allowed = (healthy - desired).max(0);
        let generation = obj["metadata"]["generation"].clone();
        let mut cond = if allowed > 0 {
            condition("DisruptionAllowed", true, "SufficientPods", "")
        } else {
            condition("DisruptionAllowed", false, "InsufficientPods", "")
        };
        if let Some(c) = cond.as_object_mut() {
            c.remove("lastUpdateTime");
            c.insert("observedGeneration".into(), generation.clone());
        }
        let mut status = json!({"observedGeneration": generation,
            "disruptionsAllowed": allowed, "currentHealthy": healthy,
            "desiredHealthy": desired, "expectedPods": expected,
            "conditions": [cond]});
        keep_transition_times(&obj["status"], &mut status);
        write_status(store, &rt, b, obj, status);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_add_up_in_thousandths() {
        assert_eq!(milli_units("100m"), Some(100));
        assert_eq!(milli_units("1.5"), Some(1500));
        assert_eq!(milli_units("2"), Some(2000));
        assert_eq!(milli_units("128Mi"), Some(128 * 1024 * 1024 * 1000));
        assert_eq!(milli_units("1k"), Some(1_000_000));
        assert_eq!(milli_units("lots"), None);
        assert_eq!(format_cpu(1500), "1500m");
        assert_eq!(format_cpu(2000), "2");
        assert_eq!(format_bytes(256 << 20), "256Mi");
        assert_eq!(format_bytes(1000), "1000");
    }

    #[test]
    fn selectors_match_labels_and_expressions() {
        let labels = json!({"app": "web", "tier": "front"});
        let labels = labels.as_object().unwrap();
        assert!(selects(&json!({"matchLabels": {"app": "web"}}), labels));
        assert!(!selects(&json!({"matchLabels": {"app": "api"}}), labels));
        assert!(selects(
            &json!({"matchExpressions": [{"key": "tier", "operator": "In", "values": ["front", "back"]}]}),
            labels
        ));
        assert!(!selects(
            &json!({"matchExpressions": [{"key": "tier", "operator": "DoesNotExist"}]}),
            labels
        ));
        assert!(selects(&json!({}), labels));
    }
}
