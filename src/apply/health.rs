//! Health of live objects, in the closed vocabulary of [`Health`]: what a controller's
//! status says about a workload (observedGeneration, updated and available replicas,
//! the Progressing condition), a Job (its conditions), a CronJob (its last Job), Pod,
//! PVC, LoadBalancer Service or CRD; for any other kind the fleet's CEL rule for it
//! (`health:` in fleet.yaml) or else the kstatus conventions (`observedGeneration`,
//! `Ready`, `Reconciling`, `Stalled`). Each rule reads the fields the real controllers
//! write (`tests/real_cluster_workloads.rs` checks them against those controllers).
//! Pure: an object in, a verdict out.

use std::time::Duration;

use serde_json::Value;

use crate::fleet::health::{Expression, HealthRule};

/// How an object (or an app, the worst of its objects) is doing, best first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
pub enum Health {
    /// Serving as specified.
    Healthy,
    /// Converging: a rollout, a bind, a job still running.
    Progressing,
    /// Failed or stuck: it will not get better on its own.
    Degraded,
}

impl Health {
    /// The variant's name, as it is serialized and as the metrics' `phase` label spells
    /// it, without formatting.
    pub fn name(self) -> &'static str {
        match self {
            Health::Healthy => "Healthy",
            Health::Progressing => "Progressing",
            Health::Degraded => "Degraded",
        }
    }
}

/// A verdict with the reason a person would want to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// The health.
    pub health: Health,
    /// Why, empty when healthy.
    pub reason: String,
}

impl Verdict {
    fn healthy() -> Verdict {
        Verdict {
            health: Health::Healthy,
            reason: String::new(),
        }
    }

    fn progressing(reason: impl Into<String>) -> Verdict {
        Verdict {
            health: Health::Progressing,
            reason: reason.into(),
        }
    }

    fn degraded(reason: impl Into<String>) -> Verdict {
        Verdict {
            health: Health::Degraded,
            reason: reason.into(),
        }
    }
}

fn condition<'v>(obj: &'v Value, kind: &str) -> Option<&'v Value> {
    obj["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == kind)
}

fn int(v: &Value) -> i64 {
    v.as_i64().unwrap_or(0)
}

/// Whether the controller has seen the current spec.
fn observed(obj: &Value) -> bool {
    let generation = obj["metadata"]["generation"].as_i64().unwrap_or(0);
    obj["status"]["observedGeneration"]
        .as_i64()
        .is_some_and(|g| g >= generation)
}

/// The health of one live object.
pub fn health_of(obj: &Value) -> Verdict {
    let api_version = obj["apiVersion"].as_str().unwrap_or("");
    let group = api_version.rsplit_once('/').map(|(g, _)| g).unwrap_or("");
    let kind = obj["kind"].as_str().unwrap_or("");
    let s = &obj["status"];
    match (group, kind) {
        ("apps", "Deployment") => {
            if let Some(p) = condition(obj, "Progressing")
                && p["reason"] == "ProgressDeadlineExceeded"
            {
                return Verdict::degraded(format!(
                    "progress deadline exceeded: {}",
                    p["message"].as_str().unwrap_or("")
                ));
            }
            if !observed(obj) {
                return Verdict::progressing("the new generation is not observed yet");
            }
            let want = obj["spec"]["replicas"].as_i64().unwrap_or(1);
            let updated = int(&s["updatedReplicas"]);
            let available = int(&s["availableReplicas"]);
            if updated < want {
                return Verdict::progressing(format!("{updated} of {want} replicas updated"));
            }
            if int(&s["replicas"]) > updated {
                return Verdict::progressing(format!(
                    "{} old replicas pending termination",
                    int(&s["replicas"]) - updated
                ));
            }
            if available < want {
                return Verdict::progressing(format!("{available} of {want} replicas available"));
            }
            Verdict::healthy()
        }
        ("apps", "StatefulSet") => stateful_set(obj),
        ("apps", "DaemonSet") => daemon_set(obj),
        ("apps", "ReplicaSet") => {
            let want = obj["spec"]["replicas"].as_i64().unwrap_or(1);
            if !observed(obj) || int(&s["availableReplicas"]) < want {
                return Verdict::progressing(format!(
                    "{} of {want} replicas available",
                    int(&s["availableReplicas"])
                ));
            }
            Verdict::healthy()
        }
        ("batch", "Job") => job(obj),
        ("batch", "CronJob") => cron_job(obj),
        ("", "Pod") => {
            let phase = s["phase"].as_str().unwrap_or("Pending");
            for cs in s["containerStatuses"].as_array().into_iter().flatten() {
                let reason = cs["state"]["waiting"]["reason"].as_str().unwrap_or("");
                if matches!(
                    reason,
                    "ImagePullBackOff"
                        | "ErrImagePull"
                        | "CrashLoopBackOff"
                        | "CreateContainerConfigError"
                        | "InvalidImageName"
                ) {
                    return Verdict::degraded(format!(
                        "container {}: {reason}",
                        cs["name"].as_str().unwrap_or("")
                    ));
                }
            }
            match phase {
                "Succeeded" => Verdict::healthy(),
                "Failed" => Verdict::degraded("the pod failed"),
                "Running" if condition(obj, "Ready").is_some_and(|c| c["status"] == "True") => {
                    Verdict::healthy()
                }
                other => Verdict::progressing(format!("pod is {other}")),
            }
        }
        ("", "PersistentVolumeClaim") => match s["phase"].as_str().unwrap_or("Pending") {
            "Bound" => Verdict::healthy(),
            "Lost" => Verdict::degraded("the volume was lost"),
            other => Verdict::progressing(format!("claim is {other}")),
        },
        ("", "Service") => {
            if obj["spec"]["type"] == "LoadBalancer"
                && s["loadBalancer"]["ingress"]
                    .as_array()
                    .is_none_or(|a| a.is_empty())
            {
                return Verdict::progressing("waiting for a load balancer address");
            }
            Verdict::healthy()
        }
        ("apiextensions.k8s.io", "CustomResourceDefinition") => {
            if condition(obj, "NamesAccepted").is_some_and(|c| c["status"] == "False") {
                return Verdict::degraded("the CRD's names were not accepted");
            }
            if condition(obj, "Established").is_some_and(|c| c["status"] == "True") {
                return Verdict::healthy();
            }
            Verdict::progressing("the CRD is not established yet")
        }
        _ => by_kstatus(obj),
    }
}

/// What a condition says, for messages: its message, else its reason.
fn said(c: &Value) -> &str {
    c["message"]
        .as_str()
        .filter(|m| !m.is_empty())
        .or(c["reason"].as_str())
        .unwrap_or("")
}

/// Any other kind, by the kstatus conventions well-behaved controllers follow
/// (DESIGN §6.2): `Stalled=True` is Degraded; a generation not yet observed
/// (`status.observedGeneration` below `metadata.generation`) or `Reconciling=True` is
/// Progressing; then `Ready` decides (not True: Progressing, which the app's
/// `progressDeadline` turns into Degraded). An object without any of these, or
/// without a status, is Healthy once applied.
fn by_kstatus(obj: &Value) -> Verdict {
    let is_true = |name: &str| condition(obj, name).filter(|c| c["status"] == "True");
    if let Some(stalled) = is_true("Stalled") {
        let why = said(stalled);
        return Verdict::degraded(if why.is_empty() { "stalled" } else { why }.to_string());
    }
    if let (Some(seen), Some(generation)) = (
        obj["status"]["observedGeneration"].as_i64(),
        obj["metadata"]["generation"].as_i64(),
    ) && seen < generation
    {
        return Verdict::progressing("the new generation is not observed yet");
    }
    if let Some(reconciling) = is_true("Reconciling") {
        return Verdict::progressing(format!("reconciling: {}", said(reconciling)));
    }
    if let Some(ready) = condition(obj, "Ready") {
        if ready["status"] == "True" {
            return Verdict::healthy();
        }
        return Verdict::progressing(format!("not ready: {}", said(ready)));
    }
    Verdict::healthy()
}

/// The health of one live object, by the fleet's `health` rule for its apiVersion and
/// kind when there is one, else by [`health_of`].
pub fn health_with(obj: &Value, rules: &[HealthRule]) -> Verdict {
    let api_version = obj["apiVersion"].as_str().unwrap_or("");
    let kind = obj["kind"].as_str().unwrap_or("");
    match rules
        .iter()
        .find(|r| r.api_version == api_version && r.kind == kind)
    {
        Some(rule) => by_rule(obj, rule),
        None => health_of(obj),
    }
}

/// An object by its CEL rule, in Flux's order: `inProgress` true is Progressing,
/// `failed` true is Degraded, `current` true is Healthy, none of them Progressing. The
/// object's top-level fields are the expressions' variables (`status`, `spec`,
/// `metadata`). A field the object does not have yet (no status before its controller
/// wrote one) makes that expression false; any other error is Progressing with the
/// rule's file, line and the error, so a broken rule never reads as Healthy.
fn by_rule(obj: &Value, rule: &HealthRule) -> Verdict {
    let mut context = cel::Context::default();
    for (name, value) in obj.as_object().into_iter().flatten() {
        if context.add_variable(name.as_str(), value).is_err() {
            return Verdict::progressing(format!(
                "health rule for {} {}: the object's {name} cannot be read by CEL",
                rule.api_version, rule.kind
            ));
        }
    }
    // Fields every object may lack until its controller writes them.
    for name in ["status", "spec", "metadata"] {
        if obj.get(name).is_none() {
            let _ = context.add_variable(name, serde_json::Map::new());
        }
    }
    let holds = |e: &Expression| -> Result<bool, String> {
        let program = cel::Program::compile(&e.text)
            .map_err(|err| format!("health rule {}: {err}", e.source))?;
        match program.execute(&context) {
            Ok(cel::Value::Bool(b)) => Ok(b),
            Ok(other) => Err(format!(
                "health rule {}: gave {other:?}, not true or false",
                e.source
            )),
            Err(cel::ExecutionError::NoSuchKey(_)) => Ok(false),
            Err(err) => Err(format!("health rule {}: {err}", e.source)),
        }
    };
    let outcome = (|| -> Result<Verdict, String> {
        if let Some(e) = &rule.in_progress
            && holds(e)?
        {
            return Ok(Verdict::progressing(format!("in progress ({})", e.text)));
        }
        if let Some(e) = &rule.failed
            && holds(e)?
        {
            return Ok(Verdict::degraded(format!("failed ({})", e.text)));
        }
        if holds(&rule.current)? {
            return Ok(Verdict::healthy());
        }
        Ok(Verdict::progressing(format!(
            "not current yet ({})",
            rule.current.text
        )))
    })();
    outcome.unwrap_or_else(Verdict::progressing)
}

/// A StatefulSet, as the statefulset controller reports it: the current generation
/// observed, no replica left over from a scale-down, every replica ready and available
/// (ready for `minReadySeconds`), and the rolling update finished: every replica from
/// the partition up on the update revision, and with no partition the controller
/// having made the update revision current (it does once every replica is updated and
/// ready). Under `OnDelete` replicas are updated only as people delete them, so ready
/// and available is enough. A StatefulSet has no progress deadline of its own: one
/// that does not converge (an image that cannot be pulled) stays Progressing until the
/// app's `progressDeadline` makes the app Degraded.
fn stateful_set(obj: &Value) -> Verdict {
    if !observed(obj) {
        return Verdict::progressing("the new generation is not observed yet");
    }
    let (spec, s) = (&obj["spec"], &obj["status"]);
    let want = spec["replicas"].as_i64().unwrap_or(1);
    let replicas = int(&s["replicas"]);
    if replicas > want {
        return Verdict::progressing(format!("{} replicas pending termination", replicas - want));
    }
    let ready = int(&s["readyReplicas"]);
    if ready < want {
        return Verdict::progressing(format!("{ready} of {want} replicas ready"));
    }
    // The controller leaves out availableReplicas when it is 0; clusters before
    // Kubernetes 1.22 do not write it at all. Without minReadySeconds a ready replica
    // is available.
    let available = match s.get("availableReplicas") {
        Some(a) => int(a),
        None if int(&spec["minReadySeconds"]) == 0 => ready,
        None => 0,
    };
    if available < want {
        return Verdict::progressing(format!("{available} of {want} replicas available"));
    }
    if spec["updateStrategy"]["type"] == "OnDelete" {
        return Verdict::healthy();
    }
    let partition = int(&spec["updateStrategy"]["rollingUpdate"]["partition"]).clamp(0, want);
    let updated = int(&s["updatedReplicas"]);
    if updated < want - partition {
        return Verdict::progressing(format!(
            "{updated} of {} replicas updated",
            want - partition
        ));
    }
    if partition == 0
        && !s["updateRevision"].is_null()
        && s["updateRevision"] != s["currentRevision"]
    {
        return Verdict::progressing("the rolling update is not complete");
    }
    Verdict::healthy()
}

/// A DaemonSet, as the daemonset controller reports it: the current generation
/// observed, and on every Node that should run it (`desiredNumberScheduled`) a Pod
/// scheduled, updated to the current template and available. No eligible Node is
/// Healthy: there is nothing to run.
fn daemon_set(obj: &Value) -> Verdict {
    if !observed(obj) {
        return Verdict::progressing("the new generation is not observed yet");
    }
    let s = &obj["status"];
    let want = int(&s["desiredNumberScheduled"]);
    for (field, what) in [
        ("currentNumberScheduled", "scheduled"),
        ("updatedNumberScheduled", "updated"),
        ("numberAvailable", "available"),
    ] {
        let n = int(&s[field]);
        if n < want {
            return Verdict::progressing(format!("{n} of {want} pods {what}"));
        }
    }
    Verdict::healthy()
}

/// A Job, by the job controller's conditions: Degraded once it failed or is about to
/// (`FailureTarget`: its Pods are being stopped), Healthy once it succeeded
/// (`SuccessCriteriaMet` comes first, `Complete` once its Pods are gone) or while
/// suspended (as its spec asks), Progressing while it runs. A Job whose Pods never
/// start (an image that cannot be pulled) runs until its `activeDeadlineSeconds`, or
/// until the app's `progressDeadline` makes the app Degraded.
fn job(obj: &Value) -> Verdict {
    let is_true = |kind: &str| condition(obj, kind).filter(|c| c["status"] == "True");
    if let Some(c) = is_true("Failed").or_else(|| is_true("FailureTarget")) {
        let why = [&c["reason"], &c["message"]]
            .iter()
            .filter_map(|v| v.as_str().filter(|s| !s.is_empty()))
            .collect::<Vec<_>>()
            .join(": ");
        return Verdict::degraded(if why.is_empty() {
            "the job failed".to_string()
        } else {
            format!("the job failed: {why}")
        });
    }
    if is_true("Complete").is_some()
        || is_true("SuccessCriteriaMet").is_some()
        || is_true("Suspended").is_some()
    {
        return Verdict::healthy();
    }
    let s = &obj["status"];
    Verdict::progressing(format!(
        "the job is running: {} active, {} succeeded",
        int(&s["active"]),
        int(&s["succeeded"])
    ))
}

/// A CronJob is Healthy once applied: it runs on its schedule, and a Job it is running
/// has health of its own, which is not the app's (it is not in the app). It is
/// Degraded when its last Job did not succeed: the cronjob controller, in one status
/// write, drops a finished Job from `active` and moves `lastSuccessfulTime` to the
/// Job's completion if it succeeded, so no active Job and no success since
/// `lastScheduleTime` means the last Job failed (or was deleted before it finished).
/// The next successful run makes it Healthy again.
fn cron_job(obj: &Value) -> Verdict {
    let s = &obj["status"];
    if s["active"].as_array().is_some_and(|a| !a.is_empty()) {
        return Verdict::healthy();
    }
    let time = |v: &Value| {
        v.as_str()
            .and_then(|t| humantime::parse_rfc3339_weak(t).ok())
    };
    let Some(scheduled) = time(&s["lastScheduleTime"]) else {
        return Verdict::healthy();
    };
    match time(&s["lastSuccessfulTime"]) {
        Some(succeeded) if succeeded >= scheduled => Verdict::healthy(),
        _ => Verdict::degraded(format!(
            "the job scheduled at {} did not succeed",
            s["lastScheduleTime"].as_str().unwrap_or("")
        )),
    }
}

/// An app that has been progressing for longer than its `progressDeadline` is
/// degraded: a rollout that does not converge is a failed rollout.
pub fn with_deadline(health: Health, progressing_for: Duration, deadline: Duration) -> Health {
    if health == Health::Progressing && progressing_for > deadline {
        Health::Degraded
    } else {
        health
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn deployment(status: Value) -> Value {
        json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "generation": 2}, "spec": {"replicas": 3}, "status": status})
    }

    #[test]
    fn deployment_verdicts_follow_the_controllers_status() {
        let cases = [
            (
                json!({"observedGeneration": 1, "updatedReplicas": 3, "availableReplicas": 3, "replicas": 3}),
                Health::Progressing,
            ),
            (
                json!({"observedGeneration": 2, "updatedReplicas": 1, "availableReplicas": 3, "replicas": 4}),
                Health::Progressing,
            ),
            (
                json!({"observedGeneration": 2, "updatedReplicas": 3, "availableReplicas": 2, "replicas": 3}),
                Health::Progressing,
            ),
            (
                json!({"observedGeneration": 2, "updatedReplicas": 3, "availableReplicas": 3, "replicas": 3}),
                Health::Healthy,
            ),
            (
                json!({"observedGeneration": 2, "updatedReplicas": 1, "availableReplicas": 3, "replicas": 4,
                "conditions": [{"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded"}]}),
                Health::Degraded,
            ),
        ];
        for (status, want) in cases {
            assert_eq!(
                health_of(&deployment(status.clone())).health,
                want,
                "{status}"
            );
        }
    }

    #[test]
    fn other_kinds_and_conditions() {
        let job_failed = json!({"apiVersion": "batch/v1", "kind": "Job", "status": {"conditions": [{"type": "Failed", "status": "True"}]}});
        assert_eq!(health_of(&job_failed).health, Health::Degraded);
        let pvc = json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "status": {"phase": "Pending"}});
        assert_eq!(health_of(&pvc).health, Health::Progressing);
        let lb = json!({"apiVersion": "v1", "kind": "Service", "spec": {"type": "LoadBalancer"}, "status": {}});
        assert_eq!(health_of(&lb).health, Health::Progressing);
        let cm = json!({"apiVersion": "v1", "kind": "ConfigMap"});
        assert_eq!(health_of(&cm).health, Health::Healthy);
        let custom = json!({"apiVersion": "example.com/v1", "kind": "Db", "status": {"conditions": [{"type": "Ready", "status": "False", "message": "provisioning"}]}});
        assert_eq!(
            health_of(&custom),
            Verdict {
                health: Health::Progressing,
                reason: "not ready: provisioning".into()
            }
        );
        let pod = json!({"apiVersion": "v1", "kind": "Pod", "status": {"phase": "Pending", "containerStatuses": [{"name": "web", "state": {"waiting": {"reason": "ImagePullBackOff"}}}]}});
        assert_eq!(health_of(&pod).health, Health::Degraded);
    }

    fn stateful_set(spec: Value, status: Value) -> Verdict {
        let mut sts = json!({"apiVersion": "apps/v1", "kind": "StatefulSet",
            "metadata": {"name": "db", "generation": 2}, "spec": {"replicas": 3}, "status": status});
        for (k, v) in spec.as_object().unwrap() {
            sts["spec"][k] = v.clone();
        }
        health_of(&sts)
    }

    #[test]
    fn a_stateful_set_is_healthy_once_every_replica_is_ready_available_and_updated() {
        let done = json!({"observedGeneration": 2, "replicas": 3, "readyReplicas": 3,
            "availableReplicas": 3, "updatedReplicas": 3, "currentReplicas": 3,
            "currentRevision": "db-2", "updateRevision": "db-2"});
        assert_eq!(stateful_set(json!({}), done.clone()), Verdict::healthy());
        let with = |patch: Value| {
            let mut s = done.clone();
            for (k, v) in patch.as_object().unwrap() {
                s[k] = v.clone();
            }
            stateful_set(json!({}), s)
        };
        let cases = [
            (
                json!({"observedGeneration": 1}),
                "the new generation is not observed yet",
            ),
            (json!({"replicas": 4}), "1 replicas pending termination"),
            (
                json!({"readyReplicas": 2, "availableReplicas": 2}),
                "2 of 3 replicas ready",
            ),
            (json!({"availableReplicas": 1}), "1 of 3 replicas available"),
            (
                json!({"updatedReplicas": 1, "currentRevision": "db-1"}),
                "1 of 3 replicas updated",
            ),
            // Every replica updated and ready, the controller not yet caught up.
            (
                json!({"currentRevision": "db-1"}),
                "the rolling update is not complete",
            ),
        ];
        for (patch, reason) in cases {
            assert_eq!(with(patch.clone()), Verdict::progressing(reason), "{patch}");
        }
    }

    #[test]
    fn a_stateful_set_without_available_replicas_counts_ready_ones_unless_it_has_min_ready_seconds()
    {
        let status = json!({"observedGeneration": 2, "replicas": 3, "readyReplicas": 3,
            "updatedReplicas": 3, "currentRevision": "db-2", "updateRevision": "db-2"});
        assert_eq!(
            stateful_set(json!({}), status.clone()).health,
            Health::Healthy
        );
        assert_eq!(
            stateful_set(json!({"minReadySeconds": 10}), status),
            Verdict::progressing("0 of 3 replicas available")
        );
    }

    #[test]
    fn a_partitioned_or_on_delete_stateful_set_is_healthy_when_what_it_updates_is_updated() {
        // Partition 2 of 3: only ordinal 2 moves; the current revision stays the old one.
        let status = json!({"observedGeneration": 2, "replicas": 3, "readyReplicas": 3,
            "availableReplicas": 3, "updatedReplicas": 1, "currentRevision": "db-1",
            "updateRevision": "db-2"});
        let partition =
            json!({"updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 2}}});
        assert_eq!(stateful_set(partition, status.clone()), Verdict::healthy());
        let partition =
            json!({"updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 1}}});
        assert_eq!(
            stateful_set(partition, status.clone()),
            Verdict::progressing("1 of 2 replicas updated")
        );
        let on_delete = json!({"updateStrategy": {"type": "OnDelete"}});
        assert_eq!(stateful_set(on_delete, status), Verdict::healthy());
    }

    #[test]
    fn a_daemon_set_is_healthy_once_every_node_it_should_run_on_has_an_updated_available_pod() {
        let ds = |status: Value| {
            health_of(&json!({"apiVersion": "apps/v1", "kind": "DaemonSet",
                "metadata": {"name": "agent", "generation": 3}, "status": status}))
        };
        let done = json!({"observedGeneration": 3, "desiredNumberScheduled": 2,
            "currentNumberScheduled": 2, "updatedNumberScheduled": 2, "numberReady": 2,
            "numberAvailable": 2, "numberMisscheduled": 0});
        assert_eq!(ds(done.clone()), Verdict::healthy());
        let cases = [
            (
                "observedGeneration",
                2,
                "the new generation is not observed yet",
            ),
            ("currentNumberScheduled", 1, "1 of 2 pods scheduled"),
            ("updatedNumberScheduled", 0, "0 of 2 pods updated"),
            ("numberAvailable", 1, "1 of 2 pods available"),
        ];
        for (field, value, reason) in cases {
            let mut s = done.clone();
            s[field] = json!(value);
            assert_eq!(ds(s), Verdict::progressing(reason), "{field}");
        }
        // No Node is eligible: nothing to run.
        assert_eq!(
            ds(json!({"observedGeneration": 3, "desiredNumberScheduled": 0})),
            Verdict::healthy()
        );
        // Created, not yet seen by the controller.
        assert_eq!(ds(json!({})).health, Health::Progressing);
    }

    fn job(status: Value) -> Verdict {
        health_of(&json!({"apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": "migrate"}, "status": status}))
    }

    #[test]
    fn a_job_follows_the_job_controllers_conditions() {
        let cond = |t: &str, s: &str| json!({"type": t, "status": s});
        assert_eq!(
            job(json!({"active": 1})),
            Verdict::progressing("the job is running: 1 active, 0 succeeded")
        );
        assert_eq!(job(json!({})).health, Health::Progressing);
        let succeeded = json!({"succeeded": 1, "conditions": [cond("SuccessCriteriaMet", "True")]});
        assert_eq!(job(succeeded), Verdict::healthy());
        let complete = json!({"succeeded": 1, "conditions": [cond("SuccessCriteriaMet", "True"), cond("Complete", "True")]});
        assert_eq!(job(complete), Verdict::healthy());
        let suspended = json!({"conditions": [cond("Suspended", "True")]});
        assert_eq!(job(suspended), Verdict::healthy());
        let resumed = json!({"active": 1, "conditions": [cond("Suspended", "False")]});
        assert_eq!(job(resumed).health, Health::Progressing);
        let failing = json!({"active": 1, "conditions": [{"type": "FailureTarget", "status": "True",
            "reason": "DeadlineExceeded", "message": "Job was active longer than specified deadline"}]});
        assert_eq!(
            job(failing),
            Verdict::degraded(
                "the job failed: DeadlineExceeded: Job was active longer than specified deadline"
            )
        );
        let failed = json!({"conditions": [{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded"}]});
        assert_eq!(
            job(failed),
            Verdict::degraded("the job failed: BackoffLimitExceeded")
        );
        let bare = json!({"conditions": [cond("Failed", "True")]});
        assert_eq!(job(bare), Verdict::degraded("the job failed"));
    }

    #[test]
    fn a_cron_job_is_healthy_unless_its_last_job_did_not_succeed() {
        let cron = |status: Value| {
            health_of(&json!({"apiVersion": "batch/v1", "kind": "CronJob",
                "metadata": {"name": "report"}, "spec": {"schedule": "* * * * *"}, "status": status}))
        };
        // Never scheduled yet.
        assert_eq!(cron(json!({})), Verdict::healthy());
        // Its Job runs.
        let running = json!({"active": [{"kind": "Job", "name": "report-1"}],
            "lastScheduleTime": "2026-12-06T13:01:00Z"});
        assert_eq!(cron(running), Verdict::healthy());
        // The last Job succeeded (completion after its schedule).
        let succeeded = json!({"lastScheduleTime": "2026-12-06T13:01:00Z",
            "lastSuccessfulTime": "2026-12-06T13:01:07Z"});
        assert_eq!(cron(succeeded), Verdict::healthy());
        // The last Job finished without success; an earlier one had succeeded.
        let failed = json!({"lastScheduleTime": "2026-12-06T13:02:00Z",
            "lastSuccessfulTime": "2026-12-06T13:01:07Z"});
        assert_eq!(
            cron(failed),
            Verdict::degraded("the job scheduled at 2026-12-06T13:02:00Z did not succeed")
        );
        let never = json!({"lastScheduleTime": "2026-12-06T13:02:00Z"});
        assert_eq!(cron(never).health, Health::Degraded);
        // A later run of the same CronJob is running: its outcome is not known yet.
        let retry = json!({"active": [{"kind": "Job", "name": "report-3"}],
            "lastScheduleTime": "2026-12-06T13:03:00Z", "lastSuccessfulTime": "2026-12-06T13:01:07Z"});
        assert_eq!(cron(retry), Verdict::healthy());
    }

    #[test]
    fn a_long_progressing_app_is_degraded() {
        let d = Duration::from_secs(600);
        assert_eq!(
            with_deadline(Health::Progressing, Duration::from_secs(601), d),
            Health::Degraded
        );
        assert_eq!(
            with_deadline(Health::Progressing, Duration::from_secs(599), d),
            Health::Progressing
        );
        assert_eq!(
            with_deadline(Health::Healthy, Duration::from_secs(9999), d),
            Health::Healthy
        );
    }

    fn widget(generation: i64, status: Value) -> Value {
        json!({"apiVersion": "example.com/v1", "kind": "Widget",
            "metadata": {"name": "w", "generation": generation}, "spec": {"size": 3}, "status": status})
    }

    fn conditions(list: &[(&str, &str, &str)]) -> Value {
        let list: Vec<Value> = list
            .iter()
            .map(|(t, s, m)| json!({"type": t, "status": s, "message": m}))
            .collect();
        json!(list)
    }

    #[test]
    fn any_other_kind_follows_the_kstatus_conventions() {
        let cases = [
            (widget(1, json!(null)), Health::Healthy, ""),
            (
                widget(
                    2,
                    json!({"observedGeneration": 1, "conditions": conditions(&[("Ready", "True", "")])}),
                ),
                Health::Progressing,
                "the new generation is not observed yet",
            ),
            (
                widget(
                    2,
                    json!({"observedGeneration": 2, "conditions": conditions(&[("Ready", "True", "")])}),
                ),
                Health::Healthy,
                "",
            ),
            (
                widget(
                    2,
                    json!({"observedGeneration": 2, "conditions": conditions(&[("Reconciling", "True", "scaling up"), ("Ready", "True", "")])}),
                ),
                Health::Progressing,
                "reconciling: scaling up",
            ),
            (
                widget(
                    2,
                    json!({"observedGeneration": 2, "conditions": conditions(&[("Ready", "False", "waiting for disks")])}),
                ),
                Health::Progressing,
                "not ready: waiting for disks",
            ),
            (
                widget(
                    2,
                    json!({"observedGeneration": 2, "conditions": conditions(&[("Stalled", "True", "quota exceeded"), ("Reconciling", "True", "")])}),
                ),
                Health::Degraded,
                "quota exceeded",
            ),
            (
                widget(
                    2,
                    json!({"conditions": conditions(&[("Stalled", "False", ""), ("Ready", "True", "")])}),
                ),
                Health::Healthy,
                "",
            ),
            // A status without conditions (a controller that writes only counters).
            (widget(2, json!({"replicas": 3})), Health::Healthy, ""),
        ];
        for (obj, health, reason) in cases {
            let v = health_of(&obj);
            assert_eq!((v.health, v.reason.as_str()), (health, reason), "{obj}");
        }
    }

    fn rule(current: &str, in_progress: Option<&str>, failed: Option<&str>) -> HealthRule {
        let e = |t: &str| Expression {
            text: t.into(),
            source: "fleet.yaml:3 current".into(),
        };
        HealthRule {
            api_version: "postgresql.cnpg.io/v1".into(),
            kind: "Cluster".into(),
            current: e(current),
            in_progress: in_progress.map(e),
            failed: failed.map(e),
        }
    }

    #[test]
    fn a_cel_rule_decides_the_health_of_its_kind_in_fluxs_order() {
        let rules = [rule(
            "status.readyInstances == spec.instances",
            Some("status.phase != 'Cluster in healthy state'"),
            Some("status.phase == 'Failed'"),
        )];
        let db = |status: Value| {
            json!({"apiVersion": "postgresql.cnpg.io/v1", "kind": "Cluster",
                "metadata": {"name": "db"}, "spec": {"instances": 3}, "status": status})
        };
        let cases = [
            // No status yet: the fields the rules read are missing, none holds.
            (db(json!(null)), Health::Progressing),
            (
                db(json!({"phase": "Setting up primary", "readyInstances": 0})),
                Health::Progressing,
            ),
            (
                db(json!({"phase": "Cluster in healthy state", "readyInstances": 3})),
                Health::Healthy,
            ),
            (
                db(json!({"phase": "Cluster in healthy state", "readyInstances": 2})),
                Health::Progressing,
            ),
            // inProgress is checked first: a failed phase is also "not healthy".
            (
                db(json!({"phase": "Failed", "readyInstances": 0})),
                Health::Progressing,
            ),
        ];
        for (obj, want) in cases {
            assert_eq!(health_with(&obj, &rules).health, want, "{obj}");
        }
        let failed_first = [rule(
            "status.readyInstances == spec.instances",
            None,
            Some("status.phase == 'Failed'"),
        )];
        let v = health_with(
            &db(json!({"phase": "Failed", "readyInstances": 0})),
            &failed_first,
        );
        assert_eq!(v.health, Health::Degraded);
        assert_eq!(v.reason, "failed (status.phase == 'Failed')");
        // Other kinds keep rollwave's own rules.
        let cm = json!({"apiVersion": "v1", "kind": "ConfigMap"});
        assert_eq!(health_with(&cm, &rules).health, Health::Healthy);
    }

    #[test]
    fn a_rule_that_cannot_be_evaluated_is_progressing_with_where_it_is_written() {
        let rules = [rule("status.readyInstances + 'x'", None, None)];
        let obj = json!({"apiVersion": "postgresql.cnpg.io/v1", "kind": "Cluster",
            "metadata": {"name": "db"}, "status": {"readyInstances": 3}});
        let v = health_with(&obj, &rules);
        assert_eq!(v.health, Health::Progressing);
        assert!(
            v.reason.starts_with("health rule fleet.yaml:3 current: "),
            "{}",
            v.reason
        );
        let rules = [rule("status.readyInstances", None, None)];
        let v = health_with(&obj, &rules);
        assert_eq!(v.health, Health::Progressing);
        assert!(v.reason.contains("not true or false"), "{}", v.reason);
    }
}
