//! The Deployment and ReplicaSet controllers of a simulated cluster, after the real
//! ones: a Deployment owns one ReplicaSet per pod template, named
//! `<deployment>-<pod-template-hash>` and carrying the `deployment.kubernetes.io/revision`
//! annotation (so `kubectl rollout history`, `undo`, `pause`, `resume` and `restart`
//! work); a rolling update moves replicas from the old ReplicaSets to the new one
//! within `maxSurge` and `maxUnavailable`, a Recreate one scales the old ones to zero
//! first; a ReplicaSet creates and deletes Pods to match its replicas. Every status is
//! derived from what the level below reports (Pods from the kubelet, ReplicaSets from
//! their Pods), as on a real cluster; a rollout that does not complete within
//! `progressDeadlineSeconds` (an image tagged `broken`) turns the Progressing condition
//! to `ProgressDeadlineExceeded`.
//!
//! As the real controllers do, a Deployment adopts a ReplicaSet without a controller
//! whose labels its selector matches (say one left by an orphaning delete: applying
//! the Deployment again takes it back, Pods and all), and a ReplicaSet adopts such
//! Pods; a Pod counts as available once it has been Ready for `minReadySeconds`.

use crate::controllers::common::controller_ref;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Map, Value, json};

use crate::apiserver::kinds::ResourceType;
use crate::apiserver::store::{DeleteOptions, Filter, PatchKind, Store, Stored};
use crate::controllers::common::NODE;
use crate::controllers::common::{
    CONTROLLER, Memory, by_owner, condition, controller_write, keep_transition_times, signature,
};

/// The revision of a ReplicaSet (and the Deployment's current one).
pub const REVISION: &str = "deployment.kubernetes.io/revision";
/// Earlier revisions a ReplicaSet had, when a rollback made it current again.
const REVISION_HISTORY: &str = "deployment.kubernetes.io/revision-history";
const DESIRED_REPLICAS: &str = "deployment.kubernetes.io/desired-replicas";
const MAX_REPLICAS: &str = "deployment.kubernetes.io/max-replicas";
/// The label that tells the Pods of one template from another's.
pub const HASH_LABEL: &str = "pod-template-hash";

/// Deployment annotations a ReplicaSet does not copy (the real controller's list).
const NOT_COPIED: &[&str] = &[
    "kubectl.kubernetes.io/last-applied-configuration",
    REVISION,
    REVISION_HISTORY,
    DESIRED_REPLICAS,
    MAX_REPLICAS,
    "deprecated.deployment.rollback.to",
];

/// The key under which [`Memory::since`] keeps when a Pod was first seen Ready (real
/// generations start at 1).
const READY_SINCE: i64 = -1;

/// How soon a controller tries again after a write failed.
const RETRY: Duration = Duration::from_secs(1);

/// Most Pods a ReplicaSet creates in one pass, as the real controller's burst.
const BURST: i64 = 500;

/// The pod-template-hash of a template, as the real controller computes it: FNV-1a
/// (32 bits) of the template, plus the collision count when there is one, written in
/// decimal and each digit mapped onto the alphabet of generated names.
pub fn pod_template_hash(template: &Value, collision_count: Option<i64>) -> String {
    let mut text = String::new();
    canonical(&strip_nulls(template), &mut text);
    if let Some(c) = collision_count {
        text.push_str(&c.to_string());
    }
    let mut h: u32 = 0x811c_9dc5;
    for b in text.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    h.to_string()
        .bytes()
        .map(|d| ALPHABET[usize::from(d) % ALPHABET.len()] as char)
        .collect()
}

/// JSON with map keys sorted, so equal templates hash alike whatever their order.
fn canonical(v: &Value, out: &mut String) {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(k.clone()).to_string());
                out.push(':');
                canonical(&m[k], out);
            }
            out.push('}');
        }
        Value::Array(a) => {
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                canonical(x, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

/// The value without null members: a real server's typed objects do not tell a null
/// field from a missing one (`creationTimestamp: null` in templates).
fn strip_nulls(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(_, x)| !x.is_null())
                .map(|(k, x)| (k.clone(), strip_nulls(x)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(strip_nulls).collect()),
        other => other.clone(),
    }
}

/// A pod template without the pod-template-hash label, for comparison.
fn without_hash(template: &Value) -> Value {
    let mut t = strip_nulls(template);
    if let Some(labels) = t["metadata"]["labels"].as_object_mut() {
        labels.remove(HASH_LABEL);
        if labels.is_empty() {
            t["metadata"].as_object_mut().map(|m| m.remove("labels"));
        }
    }
    if t["metadata"].as_object().is_some_and(Map::is_empty) {
        t.as_object_mut().map(|m| m.remove("metadata"));
    }
    t
}

/// Whether two pod templates are the same but for the pod-template-hash label.
pub fn equal_ignore_hash(a: &Value, b: &Value) -> bool {
    without_hash(a) == without_hash(b)
}

/// The revision annotation of a ReplicaSet, 0 when missing.
pub fn revision(obj: &Value) -> i64 {
    obj["metadata"]["annotations"][REVISION]
        .as_str()
        .and_then(|r| r.parse().ok())
        .unwrap_or(0)
}

/// Whether `obj` is controlled by the object with this uid.
pub(crate) fn controlled_by(obj: &Value, uid: &str) -> bool {
    obj["metadata"]["ownerReferences"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|r| r["uid"] == uid && r["controller"] == true)
}

fn int(v: &Value) -> i64 {
    v.as_i64().unwrap_or(0)
}

fn spec_replicas(obj: &Value) -> i64 {
    obj["spec"]["replicas"].as_i64().unwrap_or(1)
}

fn deleting(obj: &Value) -> bool {
    !obj["metadata"]["deletionTimestamp"].is_null()
}

/// `maxSurge` or `maxUnavailable`: a count, or a percentage of `total` rounded up for
/// surge and down for unavailability.
fn int_or_percent(v: &Value, default: &str, total: i64, round_up: bool) -> i64 {
    let v = if v.is_null() {
        json!(default)
    } else {
        v.clone()
    };
    match &v {
        Value::Number(n) => n.as_i64().unwrap_or(0),
        Value::String(s) => {
            let pct: i64 = s.trim_end_matches('%').parse().unwrap_or(0);
            if round_up {
                (pct * total + 99) / 100
            } else {
                pct * total / 100
            }
        }
        _ => 0,
    }
}

/// (maxSurge, maxUnavailable) of a Deployment; Recreate allows neither.
fn rolling_limits(d: &Value, desired: i64) -> (i64, i64) {
    let strategy = &d["spec"]["strategy"];
    if strategy["type"] == "Recreate" {
        return (0, 0);
    }
    let ru = &strategy["rollingUpdate"];
    let surge = int_or_percent(&ru["maxSurge"], "25%", desired, true);
    let unavailable = int_or_percent(&ru["maxUnavailable"], "25%", desired, false);
    if surge == 0 && unavailable == 0 {
        (0, 1)
    } else {
        (surge, unavailable.min(desired))
    }
}

fn write_error(kind: &str, name: &str, e: &crate::apiserver::api_error::ApiError) {
    tracing::warn!(kind, name, error = %e.message, "simulated controller could not write");
}

fn types(store: &Store) -> Option<(ResourceType, ResourceType, ResourceType)> {
    Some((
        store.registry.by_kind("apps", "Deployment")?.clone(),
        store.registry.by_kind("apps", "ReplicaSet")?.clone(),
        store.registry.by_kind("", "Pod")?.clone(),
    ))
}

/// The ReplicaSet controller: Pods created or deleted to match each ReplicaSet's
/// replicas, and its status from them.
pub(crate) fn sync_replicasets(
    store: &mut Store,
    memory: &mut Memory,
    now: Instant,
    live: &mut HashSet<String>,
) {
    let Some((_, rs_type, pod_type)) = types(store) else {
        return;
    };
    adopt_orphans(store, &rs_type, &pod_type);
    let pods = by_owner(store, "", "Pod");
    let (sets, _, _) = store.list(&rs_type, &Filter::default(), None, None);
    for rs in sets {
        live.insert(rs.uid.clone());
        let children = pods.get(&rs.uid).map(Vec::as_slice).unwrap_or(&[]);
        let sig = signature(&rs, children);
        if !memory.needs_look(&rs.uid, sig, now) {
            continue;
        }
        let wake = sync_replicaset(
            store,
            memory,
            &rs_type,
            &pod_type,
            &rs.value(),
            children,
            now,
        );
        memory.looked_at(&rs.uid, sig, wake);
    }
}

fn sync_replicaset(
    store: &mut Store,
    memory: &mut Memory,
    rs_type: &ResourceType,
    pod_type: &ResourceType,
    rs: &Value,
    children: &[Arc<Stored>],
    now: Instant,
) -> Option<Instant> {
    if deleting(rs) {
        return None;
    }
    let meta = &rs["metadata"];
    let ns = meta["namespace"].as_str().unwrap_or("");
    let name = meta["name"].as_str().unwrap_or("");
    let uid = meta["uid"].as_str().unwrap_or("");
    let desired = spec_replicas(rs);
    let mut pods: Vec<Value> = children
        .iter()
        .map(|p| p.value())
        .filter(|p| controlled_by(p, uid) && !deleting(p))
        .filter(|p| !matches!(p["status"]["phase"].as_str(), Some("Succeeded" | "Failed")))
        .collect();
    let mut wake = None;
    let have = pods.len() as i64;
    if have < desired {
        for _ in 0..(desired - have).min(BURST) {
            match store.create(
                pod_type,
                "v1",
                Some(ns),
                pod_from_template(rs),
                &controller_write(CONTROLLER, false),
            ) {
                Ok(p) => pods.push((*p).clone()),
                Err(e) => {
                    write_error("Pod", name, &e);
                    wake = Some(now + RETRY);
                    break;
                }
            }
        }
    } else if have > desired {
        // Like the real controller: the least useful Pods go first (not ready, not
        // running, then the newest).
        pods.sort_by_key(|p| {
            (
                crate::controllers::common::is_ready(p),
                p["status"]["phase"] == "Running",
                std::cmp::Reverse(
                    p["metadata"]["creationTimestamp"]
                        .as_str()
                        .unwrap_or("")
                        .to_string(),
                ),
            )
        });
        let excess = (have - desired) as usize;
        for p in pods.drain(..excess) {
            let pod_name = p["metadata"]["name"].as_str().unwrap_or("");
            if let Err(e) = store.delete(
                pod_type,
                Some(ns),
                pod_name,
                &DeleteOptions {
                    propagation: "Background".into(),
                    ..Default::default()
                },
            ) {
                write_error("Pod", pod_name, &e);
            }
        }
    }
    let ready = pods
        .iter()
        .filter(|p| crate::controllers::common::is_ready(p))
        .count() as i64;
    // Available: Ready for minReadySeconds, by the clock of when this controller
    // first saw each Pod Ready.
    let min_ready = Duration::from_secs(int(&rs["spec"]["minReadySeconds"]).max(0) as u64);
    let mut available = 0;
    for p in pods
        .iter()
        .filter(|p| crate::controllers::common::is_ready(p))
    {
        let pod_uid = p["metadata"]["uid"].as_str().unwrap_or("");
        let at = memory.since(pod_uid, READY_SINCE, now) + min_ready;
        if at <= now {
            available += 1;
        } else {
            wake = Some(wake.map_or(at, |w: Instant| w.min(at)));
        }
    }
    let mut status = Map::new();
    status.insert("replicas".into(), json!(pods.len()));
    for (field, n) in [
        ("fullyLabeledReplicas", pods.len() as i64),
        ("readyReplicas", ready),
        ("availableReplicas", available),
    ] {
        if n > 0 {
            status.insert(field.into(), json!(n));
        }
    }
    status.insert("observedGeneration".into(), meta["generation"].clone());
    // Pods go at once here (no grace period runs out), so none is ever terminating.
    status.insert("terminatingReplicas".into(), json!(0));
    let status = Value::Object(status);
    if rs["status"] != status {
        let mut updated = rs.clone();
        updated["status"] = status;
        if let Err(e) = store.update(
            rs_type,
            "v1",
            Some(ns),
            name,
            updated,
            &controller_write(CONTROLLER, true),
        ) {
            write_error("ReplicaSet", name, &e);
        }
    }
    wake
}

/// A Pod of a ReplicaSet's template, bound to the Node at once (the simulated
/// scheduler has one Node to choose from).
fn pod_from_template(rs: &Value) -> Value {
    let template = &rs["spec"]["template"];
    let name = rs["metadata"]["name"].as_str().unwrap_or("");
    let mut meta = json!({"generateName": format!("{name}-"),
        "ownerReferences": [controller_ref(rs)]});
    for f in ["labels", "annotations"] {
        if let Some(m) = template["metadata"][f].as_object() {
            meta[f] = Value::Object(m.clone());
        }
    }
    let mut spec = template["spec"].clone();
    spec["nodeName"] = json!(NODE);
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec})
}

/// The Deployment controller: a ReplicaSet per template, replicas moved between
/// them, the revision annotation, old ReplicaSets cleaned up beyond
/// `revisionHistoryLimit`, and the status from the ReplicaSets.
pub(crate) fn sync_deployments(
    store: &mut Store,
    memory: &mut Memory,
    now: Instant,
    live: &mut HashSet<String>,
) {
    let Some((d_type, rs_type, _)) = types(store) else {
        return;
    };
    adopt_orphans(store, &d_type, &rs_type);
    let sets = by_owner(store, "apps", "ReplicaSet");
    let (deployments, _, _) = store.list(&d_type, &Filter::default(), None, None);
    for d in deployments {
        live.insert(d.uid.clone());
        let children = sets.get(&d.uid).map(Vec::as_slice).unwrap_or(&[]);
        let sig = signature(&d, children);
        if !memory.needs_look(&d.uid, sig, now) {
            continue;
        }
        let since = memory.since(&d.uid, d.generation, now);
        let wake = sync_deployment(store, &d_type, &rs_type, &d.value(), children, since, now);
        memory.looked_at(&d.uid, sig, wake);
    }
}

/// Adoption, as the real controllers do it: an object of `dependent_type` without
/// owners, not being deleted (and for Pods not finished), whose labels the selector
/// of an `owner_type` object in its namespace matches, gets that object as its
/// controller.
pub(crate) fn adopt_orphans(
    store: &mut Store,
    owner_type: &ResourceType,
    dependent_type: &ResourceType,
) {
    if store
        .list(owner_type, &Filter::default(), None, Some(1))
        .0
        .is_empty()
    {
        return;
    }
    let (dependents, _, _) = store.list(dependent_type, &Filter::default(), None, None);
    let orphans: Vec<Value> = dependents
        .iter()
        // Only objects without any owner: one with owners but no controller is rare,
        // and telling needs a parse of every owned Pod on every pass.
        .filter(|d| d.owners.is_empty())
        .map(|d| d.value())
        .filter(|d| {
            !deleting(d) && !matches!(d["status"]["phase"].as_str(), Some("Succeeded" | "Failed"))
        })
        .collect();
    if orphans.is_empty() {
        return;
    }
    let (owners, _, _) = store.list(owner_type, &Filter::default(), None, None);
    let owners: Vec<Value> = owners
        .iter()
        .map(|o| o.value())
        .filter(|o| !deleting(o))
        .collect();
    for orphan in orphans {
        let ns = orphan["metadata"]["namespace"].as_str().unwrap_or("");
        let labels = orphan["metadata"]["labels"]
            .as_object()
            .cloned()
            .unwrap_or_default();
        let owner = owners.iter().find(|o| {
            let selector = &o["spec"]["selector"];
            o["metadata"]["namespace"] == ns
                && selector.as_object().is_some_and(|s| !s.is_empty())
                && crate::controllers::common::selects(selector, &labels)
        });
        let Some(owner) = owner else {
            continue;
        };
        let mut refs = orphan["metadata"]["ownerReferences"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        refs.push(controller_ref(owner));
        let patch = json!({"metadata": {"ownerReferences": refs}});
        let name = orphan["metadata"]["name"].as_str().unwrap_or("");
        let version = dependent_type.versions[0].clone();
        if let Err(e) = store.patch(
            dependent_type,
            &version,
            Some(ns),
            name,
            PatchKind::Merge,
            &patch,
            &controller_write(CONTROLLER, false),
        ) {
            write_error(&dependent_type.kind, name, &e);
        }
    }
}

/// The annotations a Deployment passes on to its new ReplicaSet.
fn copied_annotations(d: &Value) -> Map<String, Value> {
    d["metadata"]["annotations"]
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(k, _)| !NOT_COPIED.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

fn new_replicaset(d: &Value, replicas: i64, revision: i64, max_replicas: i64, hash: &str) -> Value {
    let name = d["metadata"]["name"].as_str().unwrap_or("");
    let mut template = d["spec"]["template"].clone();
    template["metadata"]["labels"][HASH_LABEL] = json!(hash);
    let mut selector = d["spec"]["selector"].clone();
    selector["matchLabels"][HASH_LABEL] = json!(hash);
    let mut annotations = copied_annotations(d);
    annotations.insert(REVISION.into(), json!(revision.to_string()));
    annotations.insert(DESIRED_REPLICAS.into(), json!(spec_replicas(d).to_string()));
    annotations.insert(MAX_REPLICAS.into(), json!(max_replicas.to_string()));
    let mut spec = json!({"replicas": replicas, "selector": selector, "template": template});
    if int(&d["spec"]["minReadySeconds"]) > 0 {
        spec["minReadySeconds"] = d["spec"]["minReadySeconds"].clone();
    }
    json!({"apiVersion": "apps/v1", "kind": "ReplicaSet",
        "metadata": {"name": format!("{name}-{hash}"),
            "labels": template["metadata"]["labels"].clone(),
            "annotations": annotations,
            "ownerReferences": [controller_ref(d)]},
        "spec": spec})
}

/// New replicas for each ReplicaSet (the new one at `new`) under the Deployment's
/// strategy, from their current replicas and available Pods.
fn scale_targets(
    d: &Value,
    sets: &[Value],
    new: usize,
    desired: i64,
    (surge, max_unavailable): (i64, i64),
) -> Vec<i64> {
    let mut scale: Vec<i64> = sets.iter().map(spec_replicas).collect();
    let available: Vec<i64> = sets
        .iter()
        .map(|s| int(&s["status"]["availableReplicas"]))
        .collect();
    let old: Vec<usize> = (0..sets.len()).filter(|i| *i != new).collect();
    if d["spec"]["strategy"]["type"] == "Recreate" {
        if old.iter().any(|i| scale[*i] > 0) {
            for i in &old {
                scale[*i] = 0;
            }
        } else if old
            .iter()
            .all(|i| int(&sets[*i]["status"]["replicas"]) == 0)
        {
            scale[new] = desired;
        }
        return scale;
    }
    let total: i64 = scale.iter().sum();
    if scale[new] > desired {
        scale[new] = desired;
    } else if scale[new] < desired && total < desired + surge {
        scale[new] = (scale[new] + desired + surge - total).min(desired);
    }
    if old.iter().all(|i| scale[*i] == 0) {
        return scale;
    }
    let min_available = desired - max_unavailable;
    let new_unavailable = scale[new] - available[new];
    let mut max_down = scale.iter().sum::<i64>() - min_available - new_unavailable;
    if max_down <= 0 {
        return scale;
    }
    // Unhealthy old replicas go first, then old ones while enough stay available.
    for i in &old {
        if max_down <= 0 {
            break;
        }
        let unhealthy = scale[*i] - available[*i];
        if scale[*i] == 0 || unhealthy <= 0 {
            continue;
        }
        let n = unhealthy.min(max_down);
        scale[*i] -= n;
        max_down -= n;
    }
    let available_total: i64 = available.iter().sum();
    let mut left = available_total - min_available;
    for i in &old {
        if left <= 0 {
            break;
        }
        let n = scale[*i].min(left);
        scale[*i] -= n;
        left -= n;
    }
    scale
}

#[allow(clippy::too_many_arguments)]
fn sync_deployment(
    store: &mut Store,
    d_type: &ResourceType,
    rs_type: &ResourceType,
    d: &Value,
    children: &[Arc<Stored>],
    since: Instant,
    now: Instant,
) -> Option<Instant> {
    if deleting(d) {
        return None;
    }
    let meta = &d["metadata"];
    let ns = meta["namespace"].as_str().unwrap_or("").to_string();
    let name = meta["name"].as_str().unwrap_or("").to_string();
    let uid = meta["uid"].as_str().unwrap_or("");
    let template = &d["spec"]["template"];
    let desired = spec_replicas(d);
    let paused = d["spec"]["paused"] == true;
    let limits = rolling_limits(d, desired);
    let write = controller_write(CONTROLLER, false);
    let mut sets: Vec<Value> = children
        .iter()
        .map(|c| c.value())
        .filter(|rs| controlled_by(rs, uid) && !deleting(rs))
        .collect();
    sets.sort_by_key(|rs| {
        (
            rs["metadata"]["creationTimestamp"]
                .as_str()
                .unwrap_or("")
                .to_string(),
            rs["metadata"]["name"].as_str().unwrap_or("").to_string(),
        )
    });
    let mut new = sets
        .iter()
        .position(|rs| equal_ignore_hash(&rs["spec"]["template"], template));
    let max_old_revision = sets
        .iter()
        .enumerate()
        .filter(|(i, _)| Some(*i) != new)
        .map(|(_, rs)| revision(rs))
        .max()
        .unwrap_or(0);
    let mut created = false;
    if !paused {
        match new {
            None => {
                let current: i64 = sets.iter().map(spec_replicas).sum();
                let recreate = d["spec"]["strategy"]["type"] == "Recreate";
                let replicas = if current == 0
                    && (!recreate || sets.iter().all(|s| int(&s["status"]["replicas"]) == 0))
                {
                    desired
                } else if recreate {
                    0
                } else {
                    (desired + limits.0 - current).clamp(0, desired)
                };
                let collisions = d["status"]["collisionCount"].as_i64();
                let hash = pod_template_hash(template, collisions);
                let body =
                    new_replicaset(d, replicas, max_old_revision + 1, desired + limits.0, &hash);
                match store.create(rs_type, "v1", Some(&ns), body, &write) {
                    Ok(rs) => {
                        sets.push((*rs).clone());
                        new = Some(sets.len() - 1);
                        created = true;
                    }
                    Err(e) if e.code == 409 => {
                        // Another object took the name: count a collision, as the real
                        // controller does, and hash again.
                        let mut bumped = d.clone();
                        bumped["status"]["collisionCount"] = json!(collisions.unwrap_or(0) + 1);
                        if let Err(e) = store.update(
                            d_type,
                            "v1",
                            Some(&ns),
                            &name,
                            bumped,
                            &controller_write(CONTROLLER, true),
                        ) {
                            write_error("Deployment", &name, &e);
                        }
                        return Some(now + RETRY);
                    }
                    Err(e) => {
                        write_error("ReplicaSet", &name, &e);
                        return Some(now + RETRY);
                    }
                }
            }
            Some(i) => {
                // The Deployment's annotations follow onto its current ReplicaSet; a
                // rollback makes an old ReplicaSet the newest revision again.
                let rs = &sets[i];
                let mut notes = rs["metadata"]["annotations"]
                    .as_object()
                    .cloned()
                    .unwrap_or_default();
                notes.extend(copied_annotations(d));
                let current = revision(rs);
                if current <= max_old_revision {
                    notes.insert(REVISION.into(), json!((max_old_revision + 1).to_string()));
                    let history = match notes.get(REVISION_HISTORY).and_then(Value::as_str) {
                        Some(h) if !h.is_empty() => format!("{h},{current}"),
                        _ => current.to_string(),
                    };
                    notes.insert(REVISION_HISTORY.into(), json!(history));
                }
                // So does minReadySeconds, as the real controller keeps it in step.
                let min_ready = int(&d["spec"]["minReadySeconds"]);
                let min_ready_changed = int(&rs["spec"]["minReadySeconds"]) != min_ready;
                if rs["metadata"]["annotations"].as_object() != Some(&notes) || min_ready_changed {
                    let rs_name = rs["metadata"]["name"].as_str().unwrap_or("").to_string();
                    let mut patch = json!({"metadata": {"annotations": notes}});
                    if min_ready_changed {
                        patch["spec"] = json!({"minReadySeconds":
                            if min_ready > 0 { json!(min_ready) } else { Value::Null }});
                    }
                    match store.patch(
                        rs_type,
                        "v1",
                        Some(&ns),
                        &rs_name,
                        PatchKind::Merge,
                        &patch,
                        &write,
                    ) {
                        Ok(v) => sets[i] = (*v).clone(),
                        Err(e) => write_error("ReplicaSet", &rs_name, &e),
                    }
                }
            }
        }
    }
    if let Some(n) = new {
        let old_active = sets
            .iter()
            .enumerate()
            .any(|(i, s)| i != n && spec_replicas(s) > 0);
        // Paused, a Deployment still scales when no rollout is under way.
        let targets = if !paused {
            scale_targets(d, &sets, n, desired, limits)
        } else if !old_active {
            let mut t: Vec<i64> = sets.iter().map(spec_replicas).collect();
            t[n] = desired;
            t
        } else {
            sets.iter().map(spec_replicas).collect()
        };
        for (i, want) in targets.into_iter().enumerate() {
            if want == spec_replicas(&sets[i]) {
                continue;
            }
            let rs_name = sets[i]["metadata"]["name"]
                .as_str()
                .unwrap_or("")
                .to_string();
            let patch = json!({"metadata": {"annotations": {
                    DESIRED_REPLICAS: desired.to_string(),
                    MAX_REPLICAS: (desired + limits.0).to_string()}},
                "spec": {"replicas": want}});
            match store.patch(
                rs_type,
                "v1",
                Some(&ns),
                &rs_name,
                PatchKind::Merge,
                &patch,
                &write,
            ) {
                Ok(v) => sets[i] = (*v).clone(),
                Err(e) => write_error("ReplicaSet", &rs_name, &e),
            }
        }
    }
    let mut d = d.clone();
    if let Some(n) = new {
        let rev = revision(&sets[n]).to_string();
        if d["metadata"]["annotations"][REVISION] != json!(rev) {
            let patch = json!({"metadata": {"annotations": {REVISION: rev}}});
            match store.patch(
                d_type,
                "v1",
                Some(&ns),
                &name,
                PatchKind::Merge,
                &patch,
                &write,
            ) {
                Ok(v) => d = (*v).clone(),
                Err(e) => write_error("Deployment", &name, &e),
            }
        }
    }
    let (status, complete) = deployment_status(&d, &sets, new, limits, paused, created, since, now);
    if complete {
        clean_up_history(store, rs_type, &d, &sets, new);
    }
    if d["status"] != status {
        let mut updated = d.clone();
        updated["status"] = status;
        if let Err(e) = store.update(
            d_type,
            "v1",
            Some(&ns),
            &name,
            updated,
            &controller_write(CONTROLLER, true),
        ) {
            write_error("Deployment", &name, &e);
        }
    }
    let deadline =
        since + Duration::from_secs(d["spec"]["progressDeadlineSeconds"].as_u64().unwrap_or(600));
    (!paused && !complete && now < deadline).then_some(deadline)
}

/// The Deployment's status from its ReplicaSets, and whether the rollout is complete.
#[allow(clippy::too_many_arguments)]
fn deployment_status(
    d: &Value,
    sets: &[Value],
    new: Option<usize>,
    (_, max_unavailable): (i64, i64),
    paused: bool,
    created: bool,
    since: Instant,
    now: Instant,
) -> (Value, bool) {
    let desired = spec_replicas(d);
    let sum = |f: &str| -> i64 { sets.iter().map(|s| int(&s["status"][f])).sum() };
    let replicas = sum("replicas");
    let available = sum("availableReplicas");
    let updated = new.map_or(0, |n| int(&sets[n]["status"]["replicas"]));
    let total: i64 = sets.iter().map(spec_replicas).sum();
    let rs_name = new
        .and_then(|n| sets[n]["metadata"]["name"].as_str())
        .unwrap_or("")
        .to_string();
    let complete =
        new.is_some() && updated == desired && replicas == desired && available == desired;
    let mut status = Map::new();
    status.insert(
        "observedGeneration".into(),
        d["metadata"]["generation"].clone(),
    );
    for (field, n) in [
        ("replicas", replicas),
        ("updatedReplicas", updated),
        ("readyReplicas", sum("readyReplicas")),
        ("availableReplicas", available),
        ("unavailableReplicas", (total - available).max(0)),
    ] {
        if n > 0 {
            status.insert(field.into(), json!(n));
        }
    }
    let available_condition = if available >= desired - max_unavailable {
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
    let deadline =
        Duration::from_secs(d["spec"]["progressDeadlineSeconds"].as_u64().unwrap_or(600));
    let progressing = if paused {
        let mut c = condition(
            "Progressing",
            false,
            "DeploymentPaused",
            "Deployment is paused",
        );
        c["status"] = json!("Unknown");
        c
    } else if complete {
        condition(
            "Progressing",
            true,
            "NewReplicaSetAvailable",
            &format!("ReplicaSet \"{rs_name}\" has successfully progressed."),
        )
    } else if now.saturating_duration_since(since) >= deadline {
        condition(
            "Progressing",
            false,
            "ProgressDeadlineExceeded",
            &format!("ReplicaSet \"{rs_name}\" has timed out progressing."),
        )
    } else if created {
        condition(
            "Progressing",
            true,
            "NewReplicaSetCreated",
            &format!("Created new replica set \"{rs_name}\""),
        )
    } else {
        condition(
            "Progressing",
            true,
            "ReplicaSetUpdated",
            &format!("ReplicaSet \"{rs_name}\" is progressing."),
        )
    };
    status.insert("terminatingReplicas".into(), json!(0));
    status.insert(
        "conditions".into(),
        json!([available_condition, progressing]),
    );
    if let Some(c) = d["status"].get("collisionCount") {
        status.insert("collisionCount".into(), c.clone());
    }
    let mut status = Value::Object(status);
    keep_transition_times(&d["status"], &mut status);
    (status, complete)
}

/// Old ReplicaSets scaled to zero beyond `revisionHistoryLimit` are deleted, the oldest
/// revisions first.
fn clean_up_history(
    store: &mut Store,
    rs_type: &ResourceType,
    d: &Value,
    sets: &[Value],
    new: Option<usize>,
) {
    let limit = d["spec"]["revisionHistoryLimit"]
        .as_i64()
        .unwrap_or(10)
        .max(0) as usize;
    let mut idle: Vec<&Value> = sets
        .iter()
        .enumerate()
        .filter(|(i, s)| {
            Some(*i) != new && spec_replicas(s) == 0 && int(&s["status"]["replicas"]) == 0
        })
        .map(|(_, s)| s)
        .collect();
    if idle.len() <= limit {
        return;
    }
    idle.sort_by_key(|s| revision(s));
    let ns = d["metadata"]["namespace"].as_str().unwrap_or("");
    for s in &idle[..idle.len() - limit] {
        let name = s["metadata"]["name"].as_str().unwrap_or("");
        if let Err(e) = store.delete(
            rs_type,
            Some(ns),
            name,
            &DeleteOptions {
                propagation: "Background".into(),
                ..Default::default()
            },
        ) {
            write_error("ReplicaSet", name, &e);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hash_ignores_key_order_nulls_and_its_own_label() {
        let a = json!({"metadata": {"labels": {"app": "web", "tier": "x"}}, "spec": {"containers": [{"name": "web", "image": "a"}]}});
        let b = json!({"spec": {"containers": [{"image": "a", "name": "web"}]}, "metadata": {"creationTimestamp": null, "labels": {"tier": "x", "app": "web"}}});
        assert_eq!(pod_template_hash(&a, None), pod_template_hash(&b, None));
        assert_ne!(pod_template_hash(&a, None), pod_template_hash(&a, Some(1)));
        let h = pod_template_hash(&a, None);
        assert!(
            h.len() <= 10
                && h.bytes()
                    .all(|c| b"bcdfghjklmnpqrstvwxz2456789".contains(&c)),
            "{h}"
        );
        let mut hashed = a.clone();
        hashed["metadata"]["labels"][HASH_LABEL] = json!(h);
        assert!(equal_ignore_hash(&hashed, &b));
    }

    fn rs(replicas: i64, available: i64) -> Value {
        json!({"spec": {"replicas": replicas}, "status": {"replicas": replicas, "availableReplicas": available}})
    }

    #[test]
    fn a_rolling_update_surges_then_scales_old_replicas_down_as_new_ones_become_available() {
        let d = json!({"spec": {"replicas": 2, "strategy": {"type": "RollingUpdate"}}});
        let limits = rolling_limits(&d, 2);
        assert_eq!(limits, (1, 0));
        // The new ReplicaSet (index 1) may add one replica over the desired two.
        assert_eq!(
            scale_targets(&d, &[rs(2, 2), rs(0, 0)], 1, 2, limits),
            vec![2, 1]
        );
        // Its replica is not available yet: nothing old goes.
        assert_eq!(
            scale_targets(&d, &[rs(2, 2), rs(1, 0)], 1, 2, limits),
            vec![2, 1]
        );
        // Once it is, one old replica goes.
        assert_eq!(
            scale_targets(&d, &[rs(2, 2), rs(1, 1)], 1, 2, limits),
            vec![1, 1]
        );
        assert_eq!(
            scale_targets(&d, &[rs(1, 1), rs(1, 1)], 1, 2, limits),
            vec![1, 2]
        );
        assert_eq!(
            scale_targets(&d, &[rs(1, 1), rs(2, 2)], 1, 2, limits),
            vec![0, 2]
        );
    }

    #[test]
    fn a_broken_rollout_keeps_the_old_replicas_and_a_newer_one_clears_the_broken_ones() {
        let d = json!({"spec": {"replicas": 1}});
        let limits = rolling_limits(&d, 1);
        assert_eq!(
            scale_targets(&d, &[rs(1, 1), rs(1, 0)], 1, 1, limits),
            vec![1, 1]
        );
        // A third template: the broken ReplicaSet's unavailable replica goes first.
        assert_eq!(
            scale_targets(&d, &[rs(1, 1), rs(1, 0), rs(0, 0)], 2, 1, limits),
            vec![1, 0, 0]
        );
    }
}
