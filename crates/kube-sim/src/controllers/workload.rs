//! The workload simulator: plays the controllers and the kubelet of a real cluster.
//! Each pass runs, in order, the namespace controllers (a `default` ServiceAccount and
//! the `kube-root-ca.crt` ConfigMap in every namespace), the garbage collector's part
//! of foreground deletions (dependents first, then the owner), the kubelet of the one
//! simulated Node ([`crate::controllers::kubelet`]: Pods bound, Running and Ready after
//! `ready_after`, never for an image tagged `broken`), the ReplicaSet and Deployment
//! controllers ([`crate::controllers::deployments`]: ReplicaSets named with the pod-template-hash,
//! revisions, rolling updates, status derived from the Pods), the endpoint controllers
//! (`endpoints.rs`), the quota and disruption controllers (`policy.rs`), the
//! StatefulSet, DaemonSet and Job controllers (`sets.rs`: their Pods and the
//! status computed from them), and computed status for PVCs (bound after
//! `ready_after`) and LoadBalancer Services (an address after `ready_after`).
//!
//! A pass costs nothing while nothing changes: it is skipped when no write happened
//! since the last one and no timer (a Pod turning ready, a progress deadline) is due,
//! and within a pass an object is looked at again only when it, or what it owns,
//! changed.

use crate::controllers::common::{controller_write, keep_transition_times};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::sync::watch;

use crate::Shared;
// The parts of the controllers' shared state that callers of `step` name.
use crate::apiserver::kinds::ResourceType;
use crate::apiserver::store::{Filter, Store};
pub use crate::controllers::common::{CONTROLLER, Memory, is_broken_image};

/// Timing of the simulated controllers.
#[derive(Debug, Clone)]
pub struct WorkloadOptions {
    /// How long after a change a healthy workload becomes ready.
    pub ready_after: Duration,
    /// How often workloads are looked at.
    pub tick: Duration,
}

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

/// One pass of every simulated controller: writes for whatever moved on.
pub fn step(store: &mut Store, memory: &mut Memory, now: Instant, options: &WorkloadOptions) {
    let rv = store.resource_version();
    if rv == memory.last_rv && memory.wake.is_none_or(|w| now < w) {
        return;
    }
    // Taken before this pass writes: its own writes cause one more pass, which sees
    // their effect on the other controllers and finds nothing more to do.
    memory.last_rv = rv;
    memory.wake = None;
    let mut live = std::collections::HashSet::new();
    store.fill_namespaces();
    store.collect_foreground();
    crate::controllers::kubelet::register_node(store);
    crate::controllers::kubelet::sync_pods(store, memory, now, options.ready_after, &mut live);
    crate::controllers::deployments::sync_replicasets(store, memory, now, &mut live);
    crate::controllers::deployments::sync_deployments(store, memory, now, &mut live);
    crate::controllers::endpoints::sync(store, memory, now, &mut live);
    crate::controllers::policy::sync(store, memory, now, &mut live);
    crate::controllers::sets::sync(store, memory, now, options.ready_after, &mut live);
    computed_statuses(store, memory, now, options, &mut live);
    memory.settled.retain(|uid, _| live.contains(uid));
    memory.looked.retain(|uid, _| live.contains(uid));
    memory.seen.retain(|(uid, _), _| live.contains(uid));
}

/// Status of the kinds whose Pods are not simulated, computed from the time since
/// their generation was first seen.
fn computed_statuses(
    store: &mut Store,
    memory: &mut Memory,
    now: Instant,
    options: &WorkloadOptions,
    live: &mut std::collections::HashSet<String>,
) {
    let kinds: [(&str, &str); 2] = [("", "PersistentVolumeClaim"), ("", "Service")];
    for (group, kind) in kinds {
        let Some(rt) = store.registry.by_kind(group, kind).cloned() else {
            continue;
        };
        let (objects, _, _) = store.list(&rt, &Filter::default(), None, None);
        for stored in objects {
            live.insert(stored.uid.clone());
            let since = memory.since(&stored.uid, stored.generation, now);
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
            if !last {
                memory.wake_at(next_change(since, now, options.ready_after));
            }
            keep_transition_times(&obj["status"], &mut status);
            if obj["status"] == status {
                if last {
                    memory.settled.insert(stored.uid.clone(), stored.rv);
                }
                continue;
            }
            let mut updated = obj;
            updated["status"] = status;
            let opts = controller_write(CONTROLLER, rt.status_subresource);
            let version = rt.versions[0].clone();
            let ns = (!stored.namespace.is_empty()).then_some(stored.namespace.as_str());
            if let Err(e) = store.update(&rt, &version, ns, &stored.name, updated, &opts) {
                tracing::warn!(kind, name = %stored.name, error = %e.message, "simulated controller could not write status");
            }
        }
    }
}

/// When time alone next changes a computed status that is not final.
fn next_change(since: Instant, now: Instant, ready_after: Duration) -> Option<Instant> {
    Some(since + ready_after).filter(|t| *t > now)
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
    Some((status, elapsed >= ready_after))
}

/// The status itself; see [`desired_status`].
fn status_by_now(
    rt: &ResourceType,
    obj: &Value,
    elapsed: Duration,
    ready_after: Duration,
) -> Option<Value> {
    let spec = &obj["spec"];
    let name = obj["metadata"]["name"].as_str().unwrap_or("");
    let ready = elapsed >= ready_after;
    let old = &obj["status"];
    match (rt.group.as_str(), rt.kind.as_str()) {
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
            if spec["type"] != "LoadBalancer" {
                return None;
            }
            if !ready {
                // Not final: looked at again when its address is due.
                return Some(old.clone());
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

#[cfg(test)]
mod controller_tests {
    use super::*;
    use crate::apiserver::store::PatchKind;

    fn options() -> WorkloadOptions {
        WorkloadOptions {
            ready_after: Duration::from_secs(2),
            tick: Duration::from_millis(100),
        }
    }

    /// Passes at `now` until one writes nothing; returns how many wrote.
    fn settle(store: &mut Store, memory: &mut Memory, now: Instant) -> usize {
        for writing in 0..50 {
            let rv = store.resource_version();
            step(store, memory, now, &options());
            if store.resource_version() == rv {
                return writing;
            }
        }
        panic!("the controllers never settled");
    }

    fn deployment(image: &str) -> Value {
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
            "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}}, "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "web", "image": image}]}}}})
    }

    fn status(store: &Store) -> Value {
        let d = store.registry.by_kind("apps", "Deployment").unwrap();
        store.get(d, Some("default"), "web").unwrap()["status"].clone()
    }

    #[test]
    fn a_deployment_becomes_available_through_its_replicaset_and_pods_then_nothing_is_written() {
        let mut store = Store::new(1000);
        let mut memory = Memory::default();
        let d = store
            .registry
            .by_kind("apps", "Deployment")
            .cloned()
            .unwrap();
        let w = controller_write("test", false);
        store
            .create(&d, "v1", Some("default"), deployment("nginx:1.27"), &w)
            .unwrap();
        let t0 = Instant::now();
        settle(&mut store, &mut memory, t0);
        let s = status(&store);
        assert_eq!(s["updatedReplicas"], 2, "{s}");
        assert!(
            s.get("availableReplicas").is_none(),
            "not before ready_after: {s}"
        );
        let later = t0 + Duration::from_secs(3);
        assert!(settle(&mut store, &mut memory, later) > 0);
        let s = status(&store);
        assert_eq!(
            (
                &s["replicas"],
                &s["availableReplicas"],
                &s["observedGeneration"]
            ),
            (&json!(2), &json!(2), &json!(1)),
            "{s}"
        );
        // Steady: later passes are skipped and write nothing.
        assert_eq!(
            settle(&mut store, &mut memory, later + Duration::from_secs(60)),
            0
        );

        // A broken image: the old Pods keep serving, the deadline passes.
        let broken = json!({"spec": {"progressDeadlineSeconds": 5, "template": {"spec": {
            "containers": [{"name": "web", "image": "nginx:broken"}]}}}});
        store
            .patch(
                &d,
                "v1",
                Some("default"),
                "web",
                PatchKind::Strategic,
                &broken,
                &w,
            )
            .unwrap();
        let t1 = later + Duration::from_secs(61);
        settle(&mut store, &mut memory, t1);
        settle(&mut store, &mut memory, t1 + Duration::from_secs(3));
        let s = status(&store);
        assert_eq!(
            (&s["availableReplicas"], &s["updatedReplicas"]),
            (&json!(2), &json!(1)),
            "{s}"
        );
        settle(&mut store, &mut memory, t1 + Duration::from_secs(6));
        let s = status(&store);
        assert_eq!(
            s["conditions"][1]["reason"], "ProgressDeadlineExceeded",
            "{s}"
        );
        assert_eq!(
            settle(&mut store, &mut memory, t1 + Duration::from_secs(60)),
            0
        );
    }
}
