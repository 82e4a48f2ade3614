//! Health of live objects, in the closed vocabulary of [`Health`]: what a controller's
//! status says about a workload (observedGeneration, updated and available replicas,
//! the Progressing condition), a Job, Pod, PVC, LoadBalancer Service or CRD, and the
//! `Ready` / `Stalled` conditions of anything else (kstatus conventions). Pure: an
//! object in, a verdict out.

use std::time::Duration;

use serde_json::Value;

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
        ("apps", "StatefulSet") => {
            if !observed(obj) {
                return Verdict::progressing("the new generation is not observed yet");
            }
            let want = obj["spec"]["replicas"].as_i64().unwrap_or(1);
            let ready = int(&s["readyReplicas"]);
            if ready < want {
                return Verdict::progressing(format!("{ready} of {want} replicas ready"));
            }
            if obj["spec"]["updateStrategy"]["type"] != "OnDelete"
                && !s["updateRevision"].is_null()
                && s["updateRevision"] != s["currentRevision"]
            {
                return Verdict::progressing("the rolling update is not complete");
            }
            Verdict::healthy()
        }
        ("apps", "DaemonSet") => {
            if !observed(obj) {
                return Verdict::progressing("the new generation is not observed yet");
            }
            let want = int(&s["desiredNumberScheduled"]);
            if int(&s["updatedNumberScheduled"]) < want {
                return Verdict::progressing(format!(
                    "{} of {want} pods updated",
                    int(&s["updatedNumberScheduled"])
                ));
            }
            if int(&s["numberAvailable"]) < want {
                return Verdict::progressing(format!(
                    "{} of {want} pods available",
                    int(&s["numberAvailable"])
                ));
            }
            Verdict::healthy()
        }
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
        ("batch", "Job") => {
            if condition(obj, "Failed").is_some_and(|c| c["status"] == "True") {
                return Verdict::degraded("the job failed");
            }
            if condition(obj, "Complete").is_some_and(|c| c["status"] == "True") {
                return Verdict::healthy();
            }
            Verdict::progressing("the job is running")
        }
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
        _ => {
            if condition(obj, "Stalled").is_some_and(|c| c["status"] == "True") {
                return Verdict::degraded(
                    condition(obj, "Stalled")
                        .and_then(|c| c["message"].as_str())
                        .unwrap_or("stalled")
                        .to_string(),
                );
            }
            if let Some(ready) = condition(obj, "Ready") {
                if ready["status"] == "True" {
                    return Verdict::healthy();
                }
                return Verdict::progressing(format!(
                    "not ready: {}",
                    ready["message"]
                        .as_str()
                        .or(ready["reason"].as_str())
                        .unwrap_or("")
                ));
            }
            Verdict::healthy()
        }
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
}
