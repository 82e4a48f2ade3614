//! What the simulated controllers share: how a controller writes, what it remembers
//! between passes ([`Memory`]), owner lookups, conditions, and the few facts of Pods
//! (ready, broken image) and of the one simulated Node that several of them read.
//! Nothing here calls a controller, so the controllers depend on this file and the
//! driver ([`super::workload`]) on them, never the other way round.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use crate::apiserver::store::{Filter, Store, Stored, WriteOptions, now_rfc3339};
use crate::apiserver::validate::FieldValidation;

/// The field manager the simulated controllers write with.
pub const CONTROLLER: &str = "kube-controller-manager";

/// Options of a write by a simulated controller.
pub(crate) fn controller_write(manager: &str, status: bool) -> WriteOptions {
    WriteOptions {
        manager: manager.into(),
        dry_run: false,
        force: false,
        validation: FieldValidation::Ignore,
        status,
    }
}

/// What an object's controller last saw of it and of what it owns, so an unchanged
/// object is not parsed again: its resourceVersion, the newest resourceVersion among
/// its dependents and their number (a deletion lowers the count, anything else raises
/// the newest version).
pub(crate) type Signature = (u64, u64, usize);

/// The signature of `obj` with `dependents`.
pub(crate) fn signature(obj: &Stored, dependents: &[Arc<Stored>]) -> Signature {
    (
        obj.rv,
        dependents.iter().map(|d| d.rv).max().unwrap_or(0),
        dependents.len(),
    )
}

/// Objects of a kind grouped by the uid of each of their owners.
pub(crate) fn by_owner(
    store: &Store,
    group: &str,
    kind: &str,
) -> HashMap<String, Vec<Arc<Stored>>> {
    let mut out: HashMap<String, Vec<Arc<Stored>>> = HashMap::new();
    let Some(rt) = store.registry.by_kind(group, kind) else {
        return out;
    };
    let (objects, _, _) = store.list(rt, &Filter::default(), None, None);
    for o in objects {
        for owner in &o.owners {
            out.entry(owner.clone()).or_default().push(o.clone());
        }
    }
    out
}

/// What the simulator remembers between passes.
#[derive(Debug, Default)]
pub struct Memory {
    /// When each (uid, generation) was first seen: the clock of its rollout.
    pub(crate) seen: HashMap<(String, i64), Instant>,
    /// Objects whose status is final, by uid, at the resourceVersion checked; they
    /// are not parsed again until they change.
    pub(crate) settled: HashMap<String, u64>,
    /// What each controller last saw of an object, by uid, and when time alone will
    /// change its state.
    pub(crate) looked: HashMap<String, (Signature, Option<Instant>)>,
    /// The store's resourceVersion when the last pass started.
    pub(crate) last_rv: u64,
    /// The earliest timer of the last pass.
    pub(crate) wake: Option<Instant>,
    /// Pod IPs handed out so far.
    pub(crate) pod_ips: u32,
}

impl Memory {
    /// Whether an object with this signature needs its controller: it changed, or a
    /// timer of its is due.
    pub(crate) fn needs_look(&mut self, uid: &str, sig: Signature, now: Instant) -> bool {
        match self.looked.get(uid).copied() {
            Some((s, wake)) if s == sig && wake.is_none_or(|w| now < w) => {
                // Not yet: its timer stays set for a later pass.
                self.wake_at(wake);
                false
            }
            _ => true,
        }
    }

    /// Records what a controller saw and its next timer.
    pub(crate) fn looked_at(&mut self, uid: &str, sig: Signature, wake: Option<Instant>) {
        self.looked.insert(uid.to_string(), (sig, wake));
        self.wake_at(wake);
    }

    /// Asks for a pass at `at`.
    pub(crate) fn wake_at(&mut self, at: Option<Instant>) {
        if let Some(at) = at {
            self.wake = Some(self.wake.map_or(at, |w| w.min(at)));
        }
    }

    /// When the (uid, generation) was first seen.
    pub(crate) fn since(&mut self, uid: &str, generation: i64, now: Instant) -> Instant {
        *self
            .seen
            .entry((uid.to_string(), generation))
            .or_insert(now)
    }
}

/// Whether an image reference has the tag `broken`.
pub fn is_broken_image(image: &str) -> bool {
    let last = image.rsplit('/').next().unwrap_or(image);
    let without_digest = last.split('@').next().unwrap_or(last);
    without_digest
        .rsplit_once(':')
        .is_some_and(|(_, tag)| tag == "broken")
}

pub(crate) fn pod_spec_broken(pod_spec: &Value) -> bool {
    ["containers", "initContainers"].iter().any(|list| {
        pod_spec[list].as_array().is_some_and(|cs| {
            cs.iter()
                .any(|c| is_broken_image(c["image"].as_str().unwrap_or("")))
        })
    })
}

/// The revision hash of a workload's pod template, as StatefulSets and DaemonSets
/// label their Pods with.
pub(crate) fn template_hash(obj: &Value) -> String {
    let h = Sha256::digest(serde_json::to_vec(&obj["spec"]["template"]).unwrap_or_default());
    h.iter().take(5).map(|b| format!("{b:02x}")).collect()
}

/// Conditions keep their `lastTransitionTime` (and `lastUpdateTime`) while their
/// status and reason stay the same, so a steady object is not rewritten every tick.
pub(crate) fn keep_transition_times(old: &Value, new: &mut Value) {
    // `get_mut`, not indexing: indexing a missing member would add it as null.
    let conds = new
        .get_mut("conditions")
        .and_then(Value::as_array_mut)
        .into_iter()
        .flatten();
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

pub(crate) fn condition(kind: &str, status: bool, reason: &str, message: &str) -> Value {
    let now = now_rfc3339();
    json!({"type": kind, "status": if status { "True" } else { "False" }, "reason": reason,
        "message": message, "lastUpdateTime": now, "lastTransitionTime": now})
}

/// An ownerReference to `owner` as its controller.
pub(crate) fn controller_ref(owner: &Value) -> Value {
    json!({"apiVersion": owner["apiVersion"], "kind": owner["kind"],
        "name": owner["metadata"]["name"], "uid": owner["metadata"]["uid"],
        "controller": true, "blockOwnerDeletion": true})
}

/// The name of the simulated Node.
pub const NODE: &str = "node-1";

/// Whether a Pod's Ready condition is True.
pub fn is_ready(pod: &Value) -> bool {
    pod["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| c["type"] == "Ready" && c["status"] == "True")
}

/// Whether a metav1 LabelSelector selects these labels. An empty selector selects
/// everything, as for a PodDisruptionBudget in policy/v1.
pub(crate) fn selects(selector: &Value, labels: &Map<String, Value>) -> bool {
    let label = |k: &str| labels.get(k).and_then(Value::as_str);
    let matched = selector["matchLabels"]
        .as_object()
        .into_iter()
        .flatten()
        .all(|(k, v)| label(k) == v.as_str());
    matched
        && selector["matchExpressions"]
            .as_array()
            .into_iter()
            .flatten()
            .all(|e| {
                let key = e["key"].as_str().unwrap_or("");
                let values: Vec<&str> = e["values"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .collect();
                match e["operator"].as_str() {
                    Some("In") => label(key).is_some_and(|v| values.contains(&v)),
                    Some("NotIn") => label(key).is_none_or(|v| !values.contains(&v)),
                    Some("Exists") => label(key).is_some(),
                    Some("DoesNotExist") => label(key).is_none(),
                    _ => false,
                }
            })
}
