//! The StatefulSet, DaemonSet and Job controllers of a simulated cluster, after the
//! real ones, each with its status computed from its Pods (which the simulated kubelet
//! runs):
//!
//! - a StatefulSet's Pods are named `<set>-0`, `<set>-1`, ... with the
//!   `controller-revision-hash`, `statefulset.kubernetes.io/pod-name` and
//!   `apps.kubernetes.io/pod-index` labels and a PVC per volume claim template
//!   (`<claim>-<set>-<ordinal>`); under `OrderedReady` one Pod is created at a time,
//!   each after the one before it is Ready, and scale-down removes the highest ordinal
//!   first; a rolling update replaces Pods from the highest ordinal down to the
//!   partition, one at a time;
//! - a DaemonSet runs one Pod on each simulated Node (there is one), replaced when the
//!   template changes under `RollingUpdate`;
//! - a Job runs up to `parallelism` Pods until `completions` succeeded (the kubelet
//!   completes Pods that do not restart), then turns `Complete`; a suspended Job runs
//!   none.
//!
//! Left out: ControllerRevisions (so `kubectl rollout history` and `undo` of a
//! StatefulSet or DaemonSet find no revisions), `Indexed` completion mode, pod
//! failure policies and backoff (Pods never fail: a Job whose image is tagged `broken`
//! is marked `Failed` with `BackoffLimitExceeded` after three times `ready_after`), and
//! `minReadySeconds` of StatefulSets and DaemonSets.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Map, Value, json};

use crate::apiserver::kinds::ResourceType;
use crate::apiserver::store::{DeleteOptions, Filter, Store, Stored, now_rfc3339};
use crate::controllers::common::controller_ref;
use crate::controllers::common::{
    CONTROLLER, Memory, by_owner, controller_write, keep_transition_times, pod_spec_broken,
    signature, template_hash,
};
use crate::controllers::common::{NODE, is_ready};
use crate::controllers::deployments::controlled_by;

const REVISION_LABEL: &str = "controller-revision-hash";
const POD_NAME_LABEL: &str = "statefulset.kubernetes.io/pod-name";
const POD_INDEX_LABEL: &str = "apps.kubernetes.io/pod-index";
const TEMPLATE_GENERATION_LABEL: &str = "pod-template-generation";

/// One pass of the three controllers.
pub(crate) fn sync(
    store: &mut Store,
    memory: &mut Memory,
    now: Instant,
    ready_after: Duration,
    live: &mut HashSet<String>,
) {
    let pods = by_owner(store, "", "Pod");
    for (kind, group) in [
        ("StatefulSet", "apps"),
        ("DaemonSet", "apps"),
        ("Job", "batch"),
    ] {
        let (Some(rt), Some(pod_type)) = (
            store.registry.by_kind(group, kind).cloned(),
            store.registry.by_kind("", "Pod").cloned(),
        ) else {
            continue;
        };
        let (owners, _, _) = store.list(&rt, &Filter::default(), None, None);
        for owner in owners {
            live.insert(owner.uid.clone());
            let children = pods.get(&owner.uid).map(Vec::as_slice).unwrap_or(&[]);
            let sig = signature(&owner, children);
            if !memory.needs_look(&owner.uid, sig, now) {
                continue;
            }
            let since = memory.since(&owner.uid, owner.generation, now);
            let obj = owner.value();
            if !obj["metadata"]["deletionTimestamp"].is_null() {
                memory.looked_at(&owner.uid, sig, None);
                continue;
            }
            let uid = owner.uid.clone();
            let mine: Vec<Value> = children
                .iter()
                .map(|p| p.value())
                .filter(|p| controlled_by(p, &uid) && p["metadata"]["deletionTimestamp"].is_null())
                .collect();
            let mut ctx = Ctx {
                store,
                rt: &rt,
                pod_type: &pod_type,
                owner: &owner,
            };
            let wake = match kind {
                "StatefulSet" => ctx.stateful_set(&obj, mine),
                "DaemonSet" => ctx.daemon_set(&obj, mine),
                _ => ctx.job(&obj, mine, since, now, ready_after),
            };
            memory.looked_at(&owner.uid, sig, wake);
        }
    }
}

/// What one controller works on.
struct Ctx<'a> {
    store: &'a mut Store,
    rt: &'a ResourceType,
    pod_type: &'a ResourceType,
    owner: &'a Arc<Stored>,
}

fn name_of(v: &Value) -> &str {
    v["metadata"]["name"].as_str().unwrap_or("")
}

fn label<'v>(v: &'v Value, key: &str) -> &'v str {
    v["metadata"]["labels"][key].as_str().unwrap_or("")
}

fn finished(pod: &Value) -> bool {
    matches!(
        pod["status"]["phase"].as_str(),
        Some("Succeeded" | "Failed")
    )
}

impl Ctx<'_> {
    fn ns(&self) -> Option<&str> {
        (!self.owner.namespace.is_empty()).then_some(self.owner.namespace.as_str())
    }

    /// A Pod of `owner`'s template with these extra labels and name (or a generated
    /// one), bound to the Node as the real controllers' Pods end up.
    fn create_pod(
        &mut self,
        owner: &Value,
        name: Option<String>,
        labels: &Map<String, Value>,
        spec: Value,
    ) {
        let template = &owner["spec"]["template"];
        let mut meta = json!({"ownerReferences": [controller_ref(owner)]});
        match name {
            Some(n) => meta["name"] = json!(n),
            None => meta["generateName"] = json!(format!("{}-", name_of(owner))),
        }
        let mut all = template["metadata"]["labels"]
            .as_object()
            .cloned()
            .unwrap_or_default();
        all.extend(labels.clone());
        meta["labels"] = Value::Object(all);
        if let Some(a) = template["metadata"]["annotations"].as_object() {
            meta["annotations"] = Value::Object(a.clone());
        }
        let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec});
        let ns = self.ns().map(str::to_string);
        if let Err(e) = self.store.create(
            self.pod_type,
            "v1",
            ns.as_deref(),
            pod,
            &controller_write(CONTROLLER, false),
        ) {
            tracing::warn!(owner = %self.owner.name, error = %e.message, "simulated controller could not create a Pod");
        }
    }

    fn delete_pod(&mut self, pod: &Value) {
        let ns = self.ns().map(str::to_string);
        let opts = DeleteOptions {
            propagation: "Background".into(),
            ..Default::default()
        };
        if let Err(e) = self
            .store
            .delete(self.pod_type, ns.as_deref(), name_of(pod), &opts)
        {
            tracing::warn!(pod = %name_of(pod), error = %e.message, "simulated controller could not delete a Pod");
        }
    }

    fn write_status(&mut self, obj: &Value, mut status: Value) {
        keep_transition_times(&obj["status"], &mut status);
        if obj["status"] == status {
            return;
        }
        let mut updated = obj.clone();
        updated["status"] = status;
        let ns = self.ns().map(str::to_string);
        let version = self.rt.versions[0].clone();
        let opts = controller_write(CONTROLLER, self.rt.status_subresource);
        if let Err(e) = self.store.update(
            self.rt,
            &version,
            ns.as_deref(),
            &self.owner.name,
            updated,
            &opts,
        ) {
            tracing::warn!(owner = %self.owner.name, error = %e.message, "simulated controller could not write status");
        }
    }

    /// The StatefulSet controller; see the module documentation.
    fn stateful_set(&mut self, sts: &Value, pods: Vec<Value>) -> Option<Instant> {
        let spec = &sts["spec"];
        let set = name_of(sts).to_string();
        let desired = spec["replicas"].as_i64().unwrap_or(1).max(0);
        let parallel = spec["podManagementPolicy"] == "Parallel";
        let update = format!("{set}-{}", template_hash(sts));
        let mut by_ordinal: BTreeMap<i64, Value> = BTreeMap::new();
        for p in pods {
            let ordinal = name_of(&p)
                .strip_prefix(&format!("{set}-"))
                .and_then(|n| n.parse::<i64>().ok());
            match ordinal {
                Some(o) => {
                    by_ordinal.insert(o, p);
                }
                // Not one of its ordinals: the real controller would not make it.
                None => self.delete_pod(&p),
            }
        }
        // Create the missing ordinals: in order, each after the one before is Ready.
        for ordinal in 0..desired {
            match by_ordinal.get(&ordinal) {
                Some(p) if parallel || is_ready(p) => continue,
                Some(_) => break,
                None => {
                    self.create_set_pod(sts, &set, ordinal, &update);
                    if !parallel {
                        break;
                    }
                }
            }
        }
        // Scale down from the highest ordinal.
        let extra: Vec<i64> = by_ordinal.range(desired..).map(|(o, _)| *o).rev().collect();
        for o in extra.iter().take(if parallel { extra.len() } else { 1 }) {
            if let Some(p) = by_ordinal.remove(o) {
                self.delete_pod(&p);
            }
        }
        // A rolling update replaces the highest outdated ordinal at or above the
        // partition once every Pod is Ready.
        let strategy = &spec["updateStrategy"];
        let rolling = strategy["type"].as_str().unwrap_or("RollingUpdate") == "RollingUpdate";
        let partition = strategy["rollingUpdate"]["partition"].as_i64().unwrap_or(0);
        let all_ready = by_ordinal.len() as i64 == desired && by_ordinal.values().all(is_ready);
        if rolling && all_ready {
            let outdated = by_ordinal
                .iter()
                .rev()
                .find(|(o, p)| **o >= partition && label(p, REVISION_LABEL) != update)
                .map(|(o, _)| *o);
            if let Some(o) = outdated
                && let Some(p) = by_ordinal.remove(&o)
            {
                self.delete_pod(&p);
            }
        }
        let ready = by_ordinal.values().filter(|p| is_ready(p)).count() as i64;
        let updated = by_ordinal
            .values()
            .filter(|p| label(p, REVISION_LABEL) == update)
            .count() as i64;
        let mut current = sts["status"]["currentRevision"]
            .as_str()
            .unwrap_or(&update)
            .to_string();
        if updated == desired && ready == desired {
            current = update.clone();
        }
        let current_count = by_ordinal
            .values()
            .filter(|p| label(p, REVISION_LABEL) == current)
            .count() as i64;
        let mut status = json!({"observedGeneration": sts["metadata"]["generation"],
            "replicas": by_ordinal.len(), "availableReplicas": ready,
            "currentRevision": current, "updateRevision": update, "collisionCount": 0});
        for (field, n) in [
            ("readyReplicas", ready),
            ("currentReplicas", current_count),
            ("updatedReplicas", updated),
        ] {
            if n > 0 {
                status[field] = json!(n);
            }
        }
        self.write_status(sts, status);
        None
    }

    fn create_set_pod(&mut self, sts: &Value, set: &str, ordinal: i64, revision: &str) {
        let pod_name = format!("{set}-{ordinal}");
        let mut labels = Map::new();
        labels.insert(REVISION_LABEL.into(), json!(revision));
        labels.insert(POD_NAME_LABEL.into(), json!(pod_name));
        labels.insert(POD_INDEX_LABEL.into(), json!(ordinal.to_string()));
        let mut spec = sts["spec"]["template"]["spec"].clone();
        spec["hostname"] = json!(pod_name);
        if let Some(service) = sts["spec"]["serviceName"]
            .as_str()
            .filter(|s| !s.is_empty())
        {
            spec["subdomain"] = json!(service);
        }
        spec["nodeName"] = json!(NODE);
        for claim in sts["spec"]["volumeClaimTemplates"]
            .as_array()
            .cloned()
            .unwrap_or_default()
        {
            let claim_name = format!("{}-{pod_name}", name_of(&claim));
            self.ensure_claim(sts, &claim, &claim_name);
            let volumes = spec["volumes"].as_array().cloned().unwrap_or_default();
            if !volumes
                .iter()
                .any(|v| v["name"] == claim["metadata"]["name"])
            {
                let mut volumes = volumes;
                volumes.push(json!({"name": claim["metadata"]["name"],
                    "persistentVolumeClaim": {"claimName": claim_name}}));
                spec["volumes"] = json!(volumes);
            }
        }
        self.create_pod(sts, Some(pod_name), &labels, spec);
    }

    /// The PVC of a volume claim template for one ordinal, created when missing and
    /// kept when the Pod goes (the default retention policy).
    fn ensure_claim(&mut self, sts: &Value, claim: &Value, claim_name: &str) {
        let Some(pvc) = self
            .store
            .registry
            .by_kind("", "PersistentVolumeClaim")
            .cloned()
        else {
            return;
        };
        let ns = self.ns().map(str::to_string);
        if self.store.exists(&pvc, ns.as_deref(), claim_name) {
            return;
        }
        let mut labels = claim["metadata"]["labels"]
            .as_object()
            .cloned()
            .unwrap_or_default();
        if let Some(sel) = sts["spec"]["selector"]["matchLabels"].as_object() {
            labels.extend(sel.clone());
        }
        let body = json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": {"name": claim_name, "labels": labels},
            "spec": claim["spec"].clone()});
        if let Err(e) = self.store.create(
            &pvc,
            "v1",
            ns.as_deref(),
            body,
            &controller_write(CONTROLLER, false),
        ) {
            tracing::warn!(claim = claim_name, error = %e.message, "simulated controller could not create a PVC");
        }
    }

    /// The DaemonSet controller; see the module documentation.
    fn daemon_set(&mut self, ds: &Value, mut pods: Vec<Value>) -> Option<Instant> {
        let hash = template_hash(ds);
        let generation = ds["metadata"]["generation"].as_i64().unwrap_or(1);
        let rolling = ds["spec"]["updateStrategy"]["type"]
            .as_str()
            .unwrap_or("RollingUpdate")
            == "RollingUpdate";
        // One Pod on the Node: extras go, and an outdated one under RollingUpdate.
        pods.sort_by_key(|p| (!is_ready(p), p["metadata"]["creationTimestamp"].to_string()));
        while pods.len() > 1 {
            let p = pods.pop().expect("more than one");
            self.delete_pod(&p);
        }
        if rolling
            && let Some(p) = pods.first()
            && label(p, REVISION_LABEL) != hash
        {
            let p = pods.remove(0);
            self.delete_pod(&p);
        }
        if pods.is_empty() {
            let mut labels = Map::new();
            labels.insert(REVISION_LABEL.into(), json!(hash));
            labels.insert(
                TEMPLATE_GENERATION_LABEL.into(),
                json!(generation.to_string()),
            );
            let mut spec = ds["spec"]["template"]["spec"].clone();
            spec["nodeName"] = json!(NODE);
            spec["affinity"]["nodeAffinity"] = json!({"requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [{"matchFields": [{"key": "metadata.name", "operator": "In", "values": [NODE]}]}]}});
            let mut tolerations = spec["tolerations"].as_array().cloned().unwrap_or_default();
            for (key, effect) in [
                ("node.kubernetes.io/not-ready", "NoExecute"),
                ("node.kubernetes.io/unreachable", "NoExecute"),
                ("node.kubernetes.io/disk-pressure", "NoSchedule"),
                ("node.kubernetes.io/memory-pressure", "NoSchedule"),
                ("node.kubernetes.io/pid-pressure", "NoSchedule"),
                ("node.kubernetes.io/unschedulable", "NoSchedule"),
            ] {
                tolerations.push(json!({"key": key, "operator": "Exists", "effect": effect}));
            }
            spec["tolerations"] = json!(tolerations);
            self.create_pod(ds, None, &labels, spec);
        }
        let scheduled = pods.len() as i64;
        let ready = pods.iter().filter(|p| is_ready(p)).count() as i64;
        let updated = pods
            .iter()
            .filter(|p| label(p, REVISION_LABEL) == hash)
            .count() as i64;
        let mut status = json!({"observedGeneration": generation,
            "desiredNumberScheduled": 1, "currentNumberScheduled": scheduled,
            "numberMisscheduled": 0, "numberReady": ready});
        for (field, n) in [
            ("numberAvailable", ready),
            ("numberUnavailable", 1 - ready),
            ("updatedNumberScheduled", updated),
        ] {
            if n > 0 {
                status[field] = json!(n);
            }
        }
        self.write_status(ds, status);
        None
    }

    /// The Job controller; see the module documentation.
    fn job(
        &mut self,
        job: &Value,
        pods: Vec<Value>,
        since: Instant,
        now: Instant,
        ready_after: Duration,
    ) -> Option<Instant> {
        let spec = &job["spec"];
        let old = &job["status"];
        let done = old["conditions"].as_array().into_iter().flatten().any(|c| {
            matches!(c["type"].as_str(), Some("Complete" | "Failed")) && c["status"] == "True"
        });
        if done {
            return None;
        }
        let stamp = now_rfc3339();
        let start = old["startTime"].as_str().unwrap_or(&stamp).to_string();
        let succeeded = pods
            .iter()
            .filter(|p| p["status"]["phase"] == "Succeeded")
            .count() as i64;
        let active: Vec<&Value> = pods.iter().filter(|p| !finished(p)).collect();
        let ready = active.iter().filter(|p| is_ready(p)).count() as i64;
        if spec["suspend"] == true {
            for p in active {
                self.delete_pod(p);
            }
            let mut status = json!({"conditions": [{"type": "Suspended", "status": "True",
                "reason": "JobSuspended", "message": "Job suspended",
                "lastProbeTime": stamp, "lastTransitionTime": stamp}]});
            if succeeded > 0 {
                status["succeeded"] = json!(succeeded);
            }
            self.write_status(job, status);
            return None;
        }
        let parallelism = spec["parallelism"].as_i64().unwrap_or(1).max(0);
        // Without completions, the first Pod that succeeds completes the Job.
        let completions = spec["completions"].as_i64();
        let complete = match completions {
            Some(c) => succeeded >= c,
            None => succeeded >= 1 && active.is_empty(),
        };
        if complete {
            let cond = |t: &str| {
                json!({"type": t, "status": "True", "reason": "CompletionsReached",
                    "message": "Reached expected number of succeeded pods",
                    "lastProbeTime": stamp, "lastTransitionTime": stamp})
            };
            let status = json!({"startTime": start, "completionTime": stamp,
                "succeeded": succeeded, "ready": 0, "terminating": 0,
                "uncountedTerminatedPods": {},
                "conditions": [cond("SuccessCriteriaMet"), cond("Complete")]});
            self.write_status(job, status);
            return None;
        }
        // Pods never fail here: a broken image stands for a Job out of retries.
        let broken = pod_spec_broken(&spec["template"]["spec"]);
        let mut wake = None;
        if broken {
            let deadline = since + ready_after * 3;
            if now >= deadline {
                for p in &active {
                    self.delete_pod(p);
                }
                let status = json!({"startTime": start, "failed": 1, "ready": 0,
                    "terminating": 0, "uncountedTerminatedPods": {},
                    "conditions": [{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded",
                        "message": "Job has reached the specified backoff limit",
                        "lastProbeTime": stamp, "lastTransitionTime": stamp}]});
                self.write_status(job, status);
                return None;
            }
            wake = Some(deadline);
        }
        // Without completions, no new Pod starts once one has succeeded.
        let remaining = match completions {
            Some(c) => (c - succeeded).min(parallelism),
            None if succeeded > 0 => 0,
            None => parallelism,
        };
        let mut running = active.len() as i64;
        while running < remaining {
            let mut spec = job["spec"]["template"]["spec"].clone();
            spec["nodeName"] = json!(NODE);
            self.create_pod(job, None, &Map::new(), spec);
            running += 1;
        }
        let mut status = json!({"startTime": start, "ready": ready, "terminating": 0,
            "uncountedTerminatedPods": {}});
        if running > 0 {
            status["active"] = json!(running);
        }
        if succeeded > 0 {
            status["succeeded"] = json!(succeeded);
        }
        self.write_status(job, status);
        wake
    }
}
