//! The one Node of a simulated cluster and its kubelet: the Node registers Ready, Pods
//! are bound to it (the simulated scheduler has no other choice), start with
//! `ContainerCreating` and turn Running and Ready after `ready_after` with an IP from
//! the pod network, except those with an image tagged `broken`, which stay Pending in
//! `ImagePullBackOff` (`ContainersNotReady`). `kubectl logs` gets a few synthetic lines
//! from a running container.
//!
//! A Pod that does not restart (`restartPolicy` Never or OnFailure, as a Job's) runs
//! for `ready_after`, then its containers exit 0 and it turns `Succeeded`.
//!
//! Left out: containers do not run, so Pods never fail or restart, probes are not
//! run, and resource requests are not checked against the Node's capacity.

use crate::controllers::common::NODE;
use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::apiserver::api_error::ApiError;
use crate::apiserver::kinds::ResourceType;
use crate::apiserver::store::{Filter, PatchKind, Store, now_rfc3339};
use crate::controllers::common::{Memory, controller_write, keep_transition_times};

/// Its address.
const NODE_IP: &str = "172.18.0.2";

/// Registers the Node once, as a kubelet does when it starts.
pub(crate) fn register_node(store: &mut Store) {
    let Some(rt) = store.registry.by_kind("", "Node").cloned() else {
        return;
    };
    if store.exists(&rt, None, NODE) {
        return;
    }
    let labels = json!({"kubernetes.io/hostname": NODE, "kubernetes.io/os": "linux",
        "kubernetes.io/arch": "amd64", "beta.kubernetes.io/os": "linux",
        "beta.kubernetes.io/arch": "amd64"});
    let node = json!({"apiVersion": "v1", "kind": "Node",
        "metadata": {"name": NODE, "labels": labels},
        "spec": {"podCIDR": "10.244.0.0/16", "podCIDRs": ["10.244.0.0/16"]}});
    let created = match store.create(&rt, "v1", None, node, &controller_write("kubelet", false)) {
        Ok(n) => n,
        Err(e) => {
            tracing::warn!(error = %e.message, "simulated kubelet could not register its Node");
            return;
        }
    };
    let now = now_rfc3339();
    let cond = |t: &str, status: &str, reason: &str, message: &str| {
        json!({"type": t, "status": status, "reason": reason, "message": message,
            "lastHeartbeatTime": now, "lastTransitionTime": now})
    };
    let capacity =
        json!({"cpu": "8", "memory": "16Gi", "pods": "110", "ephemeral-storage": "100Gi"});
    let mut node = (*created).clone();
    node["status"] = json!({
        "conditions": [
            cond("MemoryPressure", "False", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
            cond("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
            cond("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
            cond("Ready", "True", "KubeletReady", "kubelet is posting ready status"),
        ],
        "addresses": [{"type": "InternalIP", "address": NODE_IP}, {"type": "Hostname", "address": NODE}],
        "capacity": capacity, "allocatable": capacity,
        "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
        "nodeInfo": {"architecture": "amd64", "bootID": "", "containerRuntimeVersion": "containerd://1.7.0",
            "kernelVersion": "6.1.0", "kubeProxyVersion": "", "kubeletVersion": "v1.32.0",
            "machineID": "", "operatingSystem": "linux", "osImage": "rollwave simulated node",
            "systemUUID": ""},
    });
    if let Err(e) = store.update(
        &rt,
        "v1",
        None,
        NODE,
        node,
        &controller_write("kubelet", true),
    ) {
        tracing::warn!(error = %e.message, "simulated kubelet could not report its Node ready");
    }
}

/// Binds and reports every Pod that changed or whose containers are due to start.
pub(crate) fn sync_pods(
    store: &mut Store,
    memory: &mut Memory,
    now: Instant,
    ready_after: Duration,
    live: &mut HashSet<String>,
) {
    let Some(rt) = store.registry.by_kind("", "Pod").cloned() else {
        return;
    };
    let (pods, _, _) = store.list(&rt, &Filter::default(), None, None);
    for pod in pods {
        live.insert(pod.uid.clone());
        let sig = (pod.rv, 0, 0);
        if !memory.needs_look(&pod.uid, sig, now) {
            continue;
        }
        // The clock of a Pod starts when the kubelet first sees it.
        let born = memory.since(&pod.uid, 0, now);
        let wake = sync_pod(
            store,
            &rt,
            pod.value(),
            born,
            now,
            ready_after,
            &mut memory.pod_ips,
        );
        memory.looked_at(&pod.uid, sig, wake);
    }
}

/// What the kubelet reports of a Pod's containers.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Phase {
    Creating,
    PullFailing,
    Running,
    /// Every container exited 0: a Pod that does not restart (`restartPolicy` Never or
    /// OnFailure) after it ran for `ready_after`.
    Succeeded,
}

/// Whether a Pod's containers run to completion rather than forever.
fn runs_to_completion(pod: &Value) -> bool {
    matches!(
        pod["spec"]["restartPolicy"].as_str(),
        Some("Never" | "OnFailure")
    )
}

fn sync_pod(
    store: &mut Store,
    rt: &ResourceType,
    mut pod: Value,
    born: Instant,
    now: Instant,
    ready_after: Duration,
    ips: &mut u32,
) -> Option<Instant> {
    if !pod["metadata"]["deletionTimestamp"].is_null()
        || matches!(
            pod["status"]["phase"].as_str(),
            Some("Succeeded" | "Failed")
        )
    {
        return None;
    }
    let ns = pod["metadata"]["namespace"]
        .as_str()
        .unwrap_or("")
        .to_string();
    let name = pod["metadata"]["name"].as_str().unwrap_or("").to_string();
    if pod["spec"]["nodeName"].as_str().unwrap_or("").is_empty() {
        let bind = json!({"spec": {"nodeName": NODE}});
        match store.patch(
            rt,
            "v1",
            Some(&ns),
            &name,
            PatchKind::Merge,
            &bind,
            &controller_write("kube-scheduler", false),
        ) {
            Ok(p) => pod = (*p).clone(),
            Err(e) => {
                tracing::warn!(pod = %name, error = %e.message, "simulated scheduler could not bind");
                return Some(now + Duration::from_secs(1));
            }
        }
    }
    let broken = crate::controllers::common::pod_spec_broken(&pod["spec"]);
    let (phase, wake) = if broken {
        (Phase::PullFailing, None)
    } else if now < born + ready_after {
        (Phase::Creating, Some(born + ready_after))
    } else if runs_to_completion(&pod) && now < born + ready_after * 2 {
        (Phase::Running, Some(born + ready_after * 2))
    } else if runs_to_completion(&pod) {
        (Phase::Succeeded, None)
    } else {
        (Phase::Running, None)
    };
    let ip = match pod["status"]["podIP"].as_str() {
        Some(ip) => Some(ip.to_string()),
        None if phase != Phase::Creating => {
            *ips += 1;
            Some(format!("10.244.{}.{}", *ips / 250, *ips % 250 + 1))
        }
        None => None,
    };
    let mut status = pod_status(&pod, phase, ip.as_deref());
    keep_transition_times(&pod["status"], &mut status);
    keep_container_start(&pod["status"], &mut status);
    if phase == Phase::Succeeded
        && let Some(start) = pod["status"].get("startTime")
    {
        status["startTime"] = start.clone();
    }
    if pod["status"] != status {
        pod["status"] = status;
        if let Err(e) = store.update(
            rt,
            "v1",
            Some(&ns),
            &name,
            pod,
            &controller_write("kubelet", true),
        ) {
            tracing::warn!(pod = %name, error = %e.message, "simulated kubelet could not write status");
        }
    }
    wake
}

fn short_hash(s: &str) -> String {
    Sha256::digest(s.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn pod_status(pod: &Value, phase: Phase, ip: Option<&str>) -> Value {
    let now = now_rfc3339();
    let containers: Vec<&Value> = pod["spec"]["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .collect();
    let names: Vec<&str> = containers
        .iter()
        .map(|c| c["name"].as_str().unwrap_or(""))
        .collect();
    let unready = format!("containers with unready status: [{}]", names.join(" "));
    let done = phase == Phase::Succeeded;
    let cond = |t: &str, ok: bool| {
        let mut c = json!({"type": t, "status": if ok { "True" } else { "False" },
            "lastProbeTime": null, "lastTransitionTime": now});
        if done && matches!(t, "Initialized" | "Ready" | "ContainersReady") {
            c["reason"] = json!("PodCompleted");
        } else if !ok && matches!(t, "Ready" | "ContainersReady") {
            c["reason"] = json!("ContainersNotReady");
            c["message"] = json!(unready);
        }
        c
    };
    let running = phase == Phase::Running;
    let uid = pod["metadata"]["uid"].as_str().unwrap_or("");
    let statuses: Vec<Value> = containers
        .iter()
        .map(|c| {
            let cname = c["name"].as_str().unwrap_or("");
            let image = c["image"].as_str().unwrap_or("");
            let mut s = json!({"name": cname, "image": image, "imageID": "", "ready": running,
                "restartCount": 0, "started": running});
            s["state"] = match phase {
                Phase::Creating => json!({"waiting": {"reason": "ContainerCreating"}}),
                Phase::PullFailing => json!({"waiting": {"reason": "ImagePullBackOff",
                    "message": format!("Back-off pulling image \"{image}\"")}}),
                Phase::Running | Phase::Succeeded => {
                    let repo = image.split('@').next().unwrap_or(image);
                    let repo = match repo.rsplit_once(':') {
                        Some((r, tag)) if !tag.contains('/') => r,
                        _ => repo,
                    };
                    s["imageID"] = json!(format!("{repo}@sha256:{}", short_hash(image)));
                    s["containerID"] = json!(format!(
                        "containerd://{}",
                        short_hash(&format!("{uid}/{cname}"))
                    ));
                    if done {
                        let started = pod["status"]["containerStatuses"]
                            .as_array()
                            .and_then(|a| a.iter().find(|o| o["name"] == cname))
                            .and_then(|o| o["state"]["running"]["startedAt"].as_str())
                            .unwrap_or(&now)
                            .to_string();
                        json!({"terminated": {"exitCode": 0, "reason": "Completed",
                            "startedAt": started, "finishedAt": now,
                            "containerID": s["containerID"].clone()}})
                    } else {
                        json!({"running": {"startedAt": now}})
                    }
                }
            };
            s
        })
        .collect();
    let mut status = json!({
        "phase": match phase {
            Phase::Running => "Running",
            Phase::Succeeded => "Succeeded",
            _ => "Pending",
        },
        "conditions": [
            cond("PodReadyToStartContainers", matches!(phase, Phase::Running | Phase::PullFailing)),
            cond("Initialized", true),
            cond("Ready", running),
            cond("ContainersReady", running),
            cond("PodScheduled", true),
        ],
        "hostIP": NODE_IP, "hostIPs": [{"ip": NODE_IP}],
        "startTime": now,
        "containerStatuses": statuses,
    });
    if let Some(ip) = ip {
        status["podIP"] = json!(ip);
        status["podIPs"] = json!([{"ip": ip}]);
    }
    if let Some(q) = pod["status"].get("qosClass") {
        status["qosClass"] = q.clone();
    }
    status
}

/// A running container keeps the time it started.
fn keep_container_start(old: &Value, new: &mut Value) {
    let Some(statuses) = new["containerStatuses"].as_array_mut() else {
        return;
    };
    for s in statuses {
        let prev = old["containerStatuses"]
            .as_array()
            .and_then(|a| a.iter().find(|o| o["name"] == s["name"]));
        if let Some(p) = prev
            && p["state"]["running"].is_object()
            && s["state"]["running"].is_object()
        {
            s["state"] = p["state"].clone();
        }
    }
}

/// `GET pods/<name>/log`: a few lines a container would have written, or the
/// error a real server gives for a container that does not run.
pub fn logs(pod: &Value, query: &HashMap<String, String>) -> Result<String, ApiError> {
    let name = pod["metadata"]["name"].as_str().unwrap_or("");
    let containers: Vec<&Value> = pod["spec"]["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .collect();
    let names: Vec<&str> = containers
        .iter()
        .map(|c| c["name"].as_str().unwrap_or(""))
        .collect();
    let container = match query.get("container").filter(|c| !c.is_empty()) {
        Some(c) => c.as_str(),
        None if names.len() == 1 => names[0],
        None => {
            return Err(ApiError::bad_request(format!(
                "a container name must be specified for pod {name}, choose one of: [{}]",
                names.join(" ")
            )));
        }
    };
    let Some(spec) = containers.iter().find(|c| c["name"] == container) else {
        return Err(ApiError::bad_request(format!(
            "container {container} is not valid for pod {name}"
        )));
    };
    let state = pod["status"]["containerStatuses"]
        .as_array()
        .and_then(|a| a.iter().find(|s| s["name"] == container))
        .map(|s| s["state"].clone())
        .unwrap_or(Value::Null);
    let started = state["running"]["startedAt"]
        .as_str()
        .or(state["terminated"]["startedAt"].as_str());
    let Some(started) = started else {
        let why = match state["waiting"]["reason"].as_str() {
            Some("ImagePullBackOff" | "ErrImagePull") => "trying and failing to pull image",
            Some(other) => other,
            None => "ContainerCreating",
        };
        return Err(ApiError::bad_request(format!(
            "container \"{container}\" in pod \"{name}\" is waiting to start: {why}"
        )));
    };
    let image = spec["image"].as_str().unwrap_or("");
    let mut lines = vec![format!(
        "simulated container {container} started from image {image}"
    )];
    for p in spec["ports"].as_array().into_iter().flatten() {
        if let Some(port) = p["containerPort"].as_i64() {
            lines.push(format!("listening on port {port}"));
        }
    }
    lines.push("ready".to_string());
    if let Some(n) = query.get("tailLines").and_then(|n| n.parse::<usize>().ok()) {
        let skip = lines.len().saturating_sub(n);
        lines.drain(..skip);
    }
    let stamp = query.get("timestamps").is_some_and(|t| t == "true");
    let started = started.replace('Z', ".000000000Z");
    Ok(lines
        .into_iter()
        .map(|l| {
            if stamp {
                format!("{started} {l}\n")
            } else {
                format!("{l}\n")
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(containers: Value, status: Value) -> Value {
        json!({"metadata": {"name": "web-1"}, "spec": {"containers": containers}, "status": status})
    }

    #[test]
    fn logs_come_from_running_containers_only_and_name_the_choice_when_several() {
        let running = json!({"containerStatuses": [{"name": "web", "state": {"running": {"startedAt": "2026-01-01T00:00:00Z"}}}]});
        let one = pod(
            json!([{"name": "web", "image": "nginx:1.27", "ports": [{"containerPort": 80}]}]),
            running,
        );
        let out = logs(&one, &HashMap::new()).unwrap();
        assert_eq!(
            out,
            "simulated container web started from image nginx:1.27\nlistening on port 80\nready\n"
        );
        let tail: HashMap<String, String> = [
            ("tailLines".to_string(), "1".to_string()),
            ("timestamps".to_string(), "true".to_string()),
        ]
        .into();
        assert_eq!(
            logs(&one, &tail).unwrap(),
            "2026-01-01T00:00:00.000000000Z ready\n"
        );
        let two = pod(
            json!([{"name": "a", "image": "x"}, {"name": "b", "image": "y"}]),
            json!({}),
        );
        assert_eq!(
            logs(&two, &HashMap::new()).unwrap_err().message,
            "a container name must be specified for pod web-1, choose one of: [a b]"
        );
        let pulling = pod(
            json!([{"name": "web", "image": "nginx:broken"}]),
            json!({"containerStatuses": [{"name": "web", "state": {"waiting": {"reason": "ImagePullBackOff"}}}]}),
        );
        assert_eq!(
            logs(&pulling, &HashMap::new()).unwrap_err().message,
            "container \"web\" in pod \"web-1\" is waiting to start: trying and failing to pull image"
        );
    }
}
