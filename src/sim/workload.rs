//! The workload simulator: plays the controllers of a real cluster for the kinds whose
//! status the agent reads. After `ready_after`, Deployments, StatefulSets, DaemonSets
//! and ReplicaSets report all replicas updated and available, Jobs complete, Pods run,
//! PVCs bind and LoadBalancer Services get an address. A pod template with an image
//! tagged `broken` never becomes available, so a Deployment's Progressing condition
//! turns to `ProgressDeadlineExceeded` after its `progressDeadlineSeconds`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::sync::watch;

use super::Shared;
use super::kinds::ResourceType;
use super::store::{Filter, Store, WriteOptions, now_rfc3339};
use super::validate::FieldValidation;

/// Timing of the simulated controllers.
#[derive(Debug, Clone)]
pub struct WorkloadOptions {
    /// How long after a change a healthy workload becomes ready.
    pub ready_after: Duration,
    /// How often workloads are looked at.
    pub tick: Duration,
}

/// Simulated nodes, for DaemonSets.
const NODES: i64 = 3;

/// The field manager the simulated controllers write status with.
pub const CONTROLLER: &str = "kube-controller-manager";

pub(crate) fn spawn(
    shared: Arc<Shared>,
    options: WorkloadOptions,
    mut stop: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut memory = Memory::default();
        let mut ticker = tokio::time::interval(options.tick);
        loop {
            tokio::select! {
                _ = ticker.tick() => {
                    let mut store = shared.lock();
                    step(&mut store, &mut memory, Instant::now(), &options);
                }
                _ = async { let _ = stop.wait_for(|s| *s).await; } => return,
            }
        }
    })
}

/// Whether an image reference has the tag `broken`.
pub fn is_broken_image(image: &str) -> bool {
    let last = image.rsplit('/').next().unwrap_or(image);
    let without_digest = last.split('@').next().unwrap_or(last);
    without_digest
        .rsplit_once(':')
        .is_some_and(|(_, tag)| tag == "broken")
}

fn pod_spec_broken(pod_spec: &Value) -> bool {
    ["containers", "initContainers"].iter().any(|list| {
        pod_spec[list].as_array().is_some_and(|cs| {
            cs.iter()
                .any(|c| is_broken_image(c["image"].as_str().unwrap_or("")))
        })
    })
}

fn template_hash(obj: &Value) -> String {
    let h = Sha256::digest(serde_json::to_vec(&obj["spec"]["template"]).unwrap_or_default());
    h.iter().take(5).map(|b| format!("{b:02x}")).collect()
}

/// What the simulator remembers between passes.
#[derive(Debug, Default)]
pub struct Memory {
    /// When each (uid, generation) was first seen: the clock of its rollout.
    seen: HashMap<(String, i64), Instant>,
    /// Objects whose status is final, by uid, at the resourceVersion checked; they
    /// are not parsed again until they change.
    settled: HashMap<String, u64>,
}

/// One pass over every simulated kind: status writes for whatever moved on.
pub fn step(store: &mut Store, memory: &mut Memory, now: Instant, options: &WorkloadOptions) {
    let mut live = std::collections::HashSet::new();
    let kinds: [(&str, &str); 8] = [
        ("apps", "Deployment"),
        ("apps", "StatefulSet"),
        ("apps", "DaemonSet"),
        ("apps", "ReplicaSet"),
        ("batch", "Job"),
        ("", "Pod"),
        ("", "PersistentVolumeClaim"),
        ("", "Service"),
    ];
    for (group, kind) in kinds {
        let Some(rt) = store.registry.by_kind(group, kind).cloned() else {
            continue;
        };
        let (objects, _, _) = store.list(&rt, &Filter::default(), None, None);
        for stored in objects {
            let key = (stored.uid.clone(), stored.generation);
            let since = *memory.seen.entry(key.clone()).or_insert(now);
            live.insert(key);
            if memory.settled.get(&stored.uid) == Some(&stored.rv) {
                continue;
            }
            let obj = stored.value();
            let elapsed = now.saturating_duration_since(since);
            let Some((mut status, last)) = desired_status(&rt, &obj, elapsed, options.ready_after)
            else {
                memory.settled.insert(stored.uid.clone(), stored.rv);
                continue;
            };
            keep_transition_times(&obj["status"], &mut status);
            if obj["status"] == status {
                if last {
                    memory.settled.insert(stored.uid.clone(), stored.rv);
                }
                continue;
            }
            let mut updated = obj;
            updated["status"] = status;
            let opts = WriteOptions {
                manager: CONTROLLER.into(),
                dry_run: false,
                force: false,
                validation: FieldValidation::Ignore,
                status: rt.status_subresource,
            };
            let version = rt.versions[0].clone();
            let ns = (!stored.namespace.is_empty()).then_some(stored.namespace.as_str());
            if let Err(e) = store.update(&rt, &version, ns, &stored.name, updated, &opts) {
                tracing::warn!(kind, name = %stored.name, error = %e.message, "simulated controller could not write status");
            }
        }
    }
    let uids: std::collections::HashSet<&String> = live.iter().map(|(u, _)| u).collect();
    memory.settled.retain(|uid, _| uids.contains(uid));
    memory.seen.retain(|k, _| live.contains(k));
}

/// Conditions keep their `lastTransitionTime` (and `lastUpdateTime`) while their
/// status and reason stay the same, so a steady object is not rewritten every tick.
fn keep_transition_times(old: &Value, new: &mut Value) {
    let Some(conds) = new["conditions"].as_array_mut() else {
        return;
    };
    for c in conds {
        let prev = old["conditions"]
            .as_array()
            .and_then(|a| a.iter().find(|o| o["type"] == c["type"]));
        if let Some(p) = prev
            && p["status"] == c["status"]
            && p["reason"] == c["reason"]
        {
            for f in ["lastTransitionTime", "lastUpdateTime", "lastProbeTime"] {
                if c.get(f).is_some() {
                    c[f] = p[f].clone();
                }
            }
        }
    }
    for f in ["startTime", "completionTime"] {
        if old.get(f).is_some() && new.get(f).is_some() {
            new[f] = old[f].clone();
        }
    }
}

fn condition(kind: &str, status: bool, reason: &str, message: &str) -> Value {
    let now = now_rfc3339();
    json!({"type": kind, "status": if status { "True" } else { "False" }, "reason": reason,
        "message": message, "lastUpdateTime": now, "lastTransitionTime": now})
}

/// The status a controller would have written by now, and whether it is final (will
/// not change with time alone), or `None` for objects the simulator leaves alone.
fn desired_status(
    rt: &ResourceType,
    obj: &Value,
    elapsed: Duration,
    ready_after: Duration,
) -> Option<(Value, bool)> {
    let status = status_by_now(rt, obj, elapsed, ready_after)?;
    Some((status, is_final(rt, obj, elapsed, ready_after)))
}

fn is_final(rt: &ResourceType, obj: &Value, elapsed: Duration, ready_after: Duration) -> bool {
    let spec = &obj["spec"];
    let ready = elapsed >= ready_after;
    let replicas = spec["replicas"].as_i64().unwrap_or(1);
    match (rt.group.as_str(), rt.kind.as_str()) {
        ("apps", "Deployment") => {
            let broken = pod_spec_broken(&spec["template"]["spec"]);
            let deadline =
                Duration::from_secs(spec["progressDeadlineSeconds"].as_u64().unwrap_or(600));
            replicas == 0 || (ready && !broken) || (broken && elapsed >= deadline)
        }
        ("apps", _) => ready || replicas == 0 || pod_spec_broken(&spec["template"]["spec"]),
        ("batch", "Job") => {
            let broken = pod_spec_broken(&spec["template"]["spec"]);
            (ready && !broken) || (broken && elapsed >= ready_after * 3)
        }
        ("", "Pod") => ready || pod_spec_broken(spec),
        _ => ready,
    }
}

/// The status itself; see [`desired_status`].
fn status_by_now(
    rt: &ResourceType,
    obj: &Value,
    elapsed: Duration,
    ready_after: Duration,
) -> Option<Value> {
    let spec = &obj["spec"];
    let generation = obj["metadata"]["generation"].as_i64().unwrap_or(1);
    let name = obj["metadata"]["name"].as_str().unwrap_or("");
    let ready = elapsed >= ready_after;
    let old = &obj["status"];
    match (rt.group.as_str(), rt.kind.as_str()) {
        ("apps", "Deployment") => {
            let replicas = spec["replicas"].as_i64().unwrap_or(1);
            let broken = pod_spec_broken(&spec["template"]["spec"]);
            let rs = format!("{name}-{}", template_hash(obj));
            let deadline =
                Duration::from_secs(spec["progressDeadlineSeconds"].as_u64().unwrap_or(600));
            if replicas == 0 || (ready && !broken) {
                return Some(json!({
                    "observedGeneration": generation, "replicas": replicas,
                    "updatedReplicas": replicas, "readyReplicas": replicas,
                    "availableReplicas": replicas,
                    "conditions": [
                        condition("Available", true, "MinimumReplicasAvailable", "Deployment has minimum availability."),
                        condition("Progressing", true, "NewReplicaSetAvailable", &format!("ReplicaSet \"{rs}\" has successfully progressed.")),
                    ],
                }));
            }
            // Old pods keep serving while the new ReplicaSet comes up.
            let old_available = old["availableReplicas"].as_i64().unwrap_or(0).min(replicas);
            let surge = (replicas + 3) / 4;
            let min_available = replicas - replicas / 4;
            let progressing = if broken && elapsed >= deadline {
                condition(
                    "Progressing",
                    false,
                    "ProgressDeadlineExceeded",
                    &format!("ReplicaSet \"{rs}\" has timed out progressing."),
                )
            } else {
                condition(
                    "Progressing",
                    true,
                    "ReplicaSetUpdated",
                    &format!("ReplicaSet \"{rs}\" is progressing."),
                )
            };
            let available = if old_available >= min_available {
                condition(
                    "Available",
                    true,
                    "MinimumReplicasAvailable",
                    "Deployment has minimum availability.",
                )
            } else {
                condition(
                    "Available",
                    false,
                    "MinimumReplicasUnavailable",
                    "Deployment does not have minimum availability.",
                )
            };
            Some(json!({
                "observedGeneration": generation, "replicas": old_available + surge,
                "updatedReplicas": surge, "readyReplicas": old_available,
                "availableReplicas": old_available,
                "unavailableReplicas": (replicas - old_available).max(0),
                "conditions": [available, progressing],
            }))
        }
        ("apps", "StatefulSet") | ("apps", "ReplicaSet") => {
            let replicas = spec["replicas"].as_i64().unwrap_or(1);
            let broken = pod_spec_broken(&spec["template"]["spec"]);
            let revision = format!("{name}-{}", template_hash(obj));
            let done = replicas == 0 || (ready && !broken);
            let ready_count = if done {
                replicas
            } else {
                old["readyReplicas"].as_i64().unwrap_or(0).min(replicas)
            };
            let mut s = json!({
                "observedGeneration": generation, "replicas": replicas,
                "readyReplicas": ready_count, "availableReplicas": ready_count,
            });
            if rt.kind == "StatefulSet" {
                s["currentReplicas"] = json!(ready_count);
                s["updatedReplicas"] = json!(if done { replicas } else { 0 });
                s["updateRevision"] = json!(revision);
                s["currentRevision"] = if done {
                    json!(revision)
                } else {
                    old["currentRevision"].clone()
                };
                if s["currentRevision"].is_null() {
                    s.as_object_mut().map(|m| m.remove("currentRevision"));
                }
            } else {
                s["fullyLabeledReplicas"] = json!(replicas);
            }
            Some(s)
        }
        ("apps", "DaemonSet") => {
            let broken = pod_spec_broken(&spec["template"]["spec"]);
            let done = ready && !broken;
            let prev_ready = old["numberReady"].as_i64().unwrap_or(0);
            let ready_count = if done { NODES } else { prev_ready };
            Some(json!({
                "observedGeneration": generation, "desiredNumberScheduled": NODES,
                "currentNumberScheduled": NODES, "numberMisscheduled": 0,
                "numberReady": ready_count, "numberAvailable": ready_count,
                "numberUnavailable": NODES - ready_count,
                "updatedNumberScheduled": if done { NODES } else { 0 },
            }))
        }
        ("batch", "Job") => {
            let broken = pod_spec_broken(&spec["template"]["spec"]);
            let completions = spec["completions"].as_i64().unwrap_or(1);
            let now = now_rfc3339();
            if broken && elapsed >= ready_after * 3 {
                return Some(json!({"startTime": now, "failed": 1, "active": 0,
                    "conditions": [{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded",
                        "message": "Job has reached the specified backoff limit",
                        "lastProbeTime": now, "lastTransitionTime": now}]}));
            }
            if ready && !broken {
                return Some(
                    json!({"startTime": now, "completionTime": now, "succeeded": completions,
                    "active": 0, "ready": 0,
                    "conditions": [
                        {"type": "SuccessCriteriaMet", "status": "True", "reason": "CompletionsReached",
                         "message": "Reached expected number of succeeded pods", "lastProbeTime": now, "lastTransitionTime": now},
                        {"type": "Complete", "status": "True", "reason": "CompletionsReached",
                         "message": "Reached expected number of succeeded pods", "lastProbeTime": now, "lastTransitionTime": now}]}),
                );
            }
            Some(json!({"startTime": now, "active": 1, "ready": 0}))
        }
        ("", "Pod") => {
            let broken = pod_spec_broken(spec);
            let now = now_rfc3339();
            if broken {
                return Some(json!({"phase": "Pending", "conditions": [
                    {"type": "Ready", "status": "False", "reason": "ContainersNotReady", "lastProbeTime": null, "lastTransitionTime": now}],
                    "containerStatuses": spec["containers"].as_array().into_iter().flatten().map(|c| json!({
                        "name": c["name"], "image": c["image"], "ready": false, "restartCount": 0,
                        "state": {"waiting": {"reason": "ImagePullBackOff", "message": format!("Back-off pulling image {}", c["image"])}}})).collect::<Vec<_>>()}));
            }
            if !ready {
                return Some(json!({"phase": "Pending"}));
            }
            Some(json!({"phase": "Running", "conditions": [
                {"type": "Ready", "status": "True", "lastProbeTime": null, "lastTransitionTime": now}],
                "containerStatuses": spec["containers"].as_array().into_iter().flatten().map(|c| json!({
                    "name": c["name"], "image": c["image"], "ready": true, "restartCount": 0,
                    "state": {"running": {"startedAt": now}}})).collect::<Vec<_>>()}))
        }
        ("", "PersistentVolumeClaim") => {
            if !ready {
                return Some(json!({"phase": "Pending"}));
            }
            let mut s = json!({"phase": "Bound", "accessModes": spec["accessModes"].clone()});
            if let Some(size) = spec["resources"]["requests"].get("storage") {
                s["capacity"] = json!({"storage": size});
            }
            Some(s)
        }
        ("", "Service") => {
            if spec["type"] != "LoadBalancer" || !ready {
                return None;
            }
            let n = name
                .bytes()
                .fold(0u32, |a, b| a.wrapping_mul(31).wrapping_add(b as u32))
                % 250
                + 1;
            Some(
                json!({"loadBalancer": {"ingress": [{"ip": format!("192.0.2.{n}"), "ipMode": "VIP"}]}}),
            )
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_broken_tag_is_broken() {
        assert!(is_broken_image("nginx:broken"));
        assert!(is_broken_image("registry.local:5000/team/web:broken"));
        assert!(!is_broken_image("registry.local:5000/broken"));
        assert!(!is_broken_image("broken:1.0"));
        assert!(!is_broken_image("nginx"));
    }
}
