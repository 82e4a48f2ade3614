//! API defaulting of built-in kinds: the values a real API server fills in when a
//! client leaves them out (a Deployment's strategy and replicas, a container's
//! imagePullPolicy, a Service port's protocol and targetPort, ...), and the few fields
//! its registry sets on create (allocated cluster IPs and node ports, a Job's
//! generated selector, a new Pod's status).
//!
//! Why two steps: a real server defaults the decoded object before its field manager
//! records a write, so a create or an update owns the defaulted fields it caused
//! (they appear in its `managedFields`), while server-side apply records the applied
//! configuration first and defaults the merged result afterwards, so an applier owns
//! only what it sent. [`default_object`] is that defaulting and is safe to run on
//! every write (it only fills what is missing); [`prepare_for_create`] is what the
//! registry does on create after the field manager, owned by no one. The values
//! follow Kubernetes v1.37, as the differential suite (`tests/sim_conformance.rs`)
//! checks against a real apiserver.

use serde_json::{Map, Value, json};

/// Fills the defaults a real API server gives an object of `kind` in `group`.
pub fn default_object(group: &str, kind: &str, obj: &mut Value) {
    if !obj.is_object() {
        return;
    }
    match (group, kind) {
        ("apps", "Deployment") => {
            let spec = object_at(obj, "spec");
            fill(spec, "replicas", json!(1));
            fill(spec, "revisionHistoryLimit", json!(10));
            fill(spec, "progressDeadlineSeconds", json!(600));
            let strategy = object_at(spec, "strategy");
            fill(strategy, "type", json!("RollingUpdate"));
            if strategy["type"] == "RollingUpdate" {
                let ru = object_at(strategy, "rollingUpdate");
                fill(ru, "maxUnavailable", json!("25%"));
                fill(ru, "maxSurge", json!("25%"));
            }
            if let Some(t) = spec.get_mut("template") {
                default_pod_template(t);
            }
        }
        ("apps", "StatefulSet") => {
            let spec = object_at(obj, "spec");
            fill(spec, "replicas", json!(1));
            fill(spec, "revisionHistoryLimit", json!(10));
            fill(spec, "podManagementPolicy", json!("OrderedReady"));
            let strategy = object_at(spec, "updateStrategy");
            fill(strategy, "type", json!("RollingUpdate"));
            if strategy["type"] == "RollingUpdate" {
                let ru = object_at(strategy, "rollingUpdate");
                fill(ru, "partition", json!(0));
                fill(ru, "maxUnavailable", json!(1));
            }
            let retention = object_at(spec, "persistentVolumeClaimRetentionPolicy");
            fill(retention, "whenDeleted", json!("Retain"));
            fill(retention, "whenScaled", json!("Retain"));
            if let Some(claims) = spec
                .get_mut("volumeClaimTemplates")
                .and_then(Value::as_array_mut)
            {
                for claim in claims {
                    default_claim(claim);
                }
            }
            if let Some(t) = spec.get_mut("template") {
                default_pod_template(t);
            }
        }
        ("apps", "DaemonSet") => {
            // The template generation a real server keeps in an annotation (converted
            // from an internal field, so the writer of a create owns it).
            let notes = object_at(object_at(obj, "metadata"), "annotations");
            fill(
                notes,
                "deprecated.daemonset.template.generation",
                json!("1"),
            );
            let spec = object_at(obj, "spec");
            fill(spec, "revisionHistoryLimit", json!(10));
            let strategy = object_at(spec, "updateStrategy");
            fill(strategy, "type", json!("RollingUpdate"));
            if strategy["type"] == "RollingUpdate" {
                let ru = object_at(strategy, "rollingUpdate");
                fill(ru, "maxUnavailable", json!(1));
                fill(ru, "maxSurge", json!(0));
            }
            if let Some(t) = spec.get_mut("template") {
                default_pod_template(t);
            }
        }
        ("apps", "ReplicaSet") => {
            let spec = object_at(obj, "spec");
            fill(spec, "replicas", json!(1));
            if let Some(t) = spec.get_mut("template") {
                default_pod_template(t);
            }
        }
        ("batch", "Job") => {
            let spec = object_at(obj, "spec");
            if spec["completions"].is_null() && spec["parallelism"].is_null() {
                spec["completions"] = json!(1);
            }
            fill(spec, "parallelism", json!(1));
            fill(spec, "backoffLimit", json!(6));
            fill(spec, "completionMode", json!("NonIndexed"));
            fill(spec, "suspend", json!(false));
            fill(spec, "manualSelector", json!(false));
            let replacement = if spec["podFailurePolicy"].is_null() {
                "TerminatingOrFailed"
            } else {
                "Failed"
            };
            fill(spec, "podReplacementPolicy", json!(replacement));
            if let Some(t) = spec.get_mut("template") {
                default_pod_template(t);
            }
        }
        ("batch", "CronJob") => {
            let spec = object_at(obj, "spec");
            fill(spec, "concurrencyPolicy", json!("Allow"));
            fill(spec, "suspend", json!(false));
            fill(spec, "successfulJobsHistoryLimit", json!(3));
            fill(spec, "failedJobsHistoryLimit", json!(1));
            let job = object_at(spec, "jobTemplate");
            object_at(job, "metadata");
            let job_spec = object_at(job, "spec");
            if let Some(t) = job_spec.get_mut("template") {
                default_pod_template(t);
            }
        }
        ("", "Pod") => {
            let spec = object_at(obj, "spec");
            default_pod_spec(spec);
            fill(spec, "enableServiceLinks", json!(true));
        }
        ("", "Service") => default_service(obj),
        ("", "Secret") => fill(obj, "type", json!("Opaque")),
        ("", "PersistentVolumeClaim") => default_claim(obj),
        ("", "Namespace") => {
            let name = obj["metadata"]["name"].clone();
            if name.is_string() {
                let labels = object_at(object_at(obj, "metadata"), "labels");
                labels["kubernetes.io/metadata.name"] = name;
            }
        }
        ("rbac.authorization.k8s.io", "RoleBinding" | "ClusterRoleBinding") => {
            for subject in obj
                .get_mut("subjects")
                .and_then(Value::as_array_mut)
                .into_iter()
                .flatten()
            {
                let api_group = match subject["kind"].as_str() {
                    Some("ServiceAccount") => "",
                    _ => "rbac.authorization.k8s.io",
                };
                if let Some(s) = subject.as_object_mut() {
                    s.entry("apiGroup").or_insert(json!(api_group));
                }
            }
        }
        _ => {}
    }
}

/// What the registry of a real server sets when it creates an object, after its field
/// manager recorded the write (so no manager owns these). `alloc` hands out cluster
/// IPs and node ports.
pub fn prepare_for_create(group: &str, kind: &str, obj: &mut Value, alloc: &mut Allocator) {
    match (group, kind) {
        ("", "Namespace") => {
            fill(object_at(obj, "spec"), "finalizers", json!(["kubernetes"]));
            obj["status"] = json!({"phase": "Active"});
        }
        ("", "Service") => {
            let spec = object_at(obj, "spec");
            let kind = spec["type"].as_str().unwrap_or("ClusterIP").to_string();
            if kind != "ExternalName" {
                if spec["clusterIP"].is_null() || spec["clusterIP"] == "" {
                    spec["clusterIP"] = json!(alloc.cluster_ip());
                }
                if spec["clusterIPs"].is_null() {
                    spec["clusterIPs"] = json!([spec["clusterIP"].clone()]);
                }
                fill(spec, "ipFamilies", json!(["IPv4"]));
                fill(spec, "ipFamilyPolicy", json!("SingleStack"));
            }
            if kind == "NodePort" || kind == "LoadBalancer" {
                for port in spec
                    .get_mut("ports")
                    .and_then(Value::as_array_mut)
                    .into_iter()
                    .flatten()
                {
                    if port["nodePort"].is_null() {
                        port["nodePort"] = json!(alloc.node_port());
                    }
                }
            }
            fill(object_at(obj, "status"), "loadBalancer", json!({}));
        }
        ("", "Pod") => {
            let qos = qos_class(&obj["spec"]);
            let status = object_at(obj, "status");
            fill(status, "phase", json!("Pending"));
            fill(status, "qosClass", json!(qos));
        }
        ("", "PersistentVolumeClaim") => {
            fill(object_at(obj, "status"), "phase", json!("Pending"));
        }
        ("batch", "Job") => {
            generate_job_selector(obj);
            fill(obj, "status", json!({}));
        }
        // Their status is a struct, not a pointer, in a real server's types: a new
        // object has an empty one until its controller writes it.
        ("apps", "Deployment") | ("batch", "CronJob") => fill(obj, "status", json!({})),
        ("apps", "ReplicaSet") => fill(obj, "status", json!({"replicas": 0})),
        ("apps", "StatefulSet") => {
            fill(
                obj,
                "status",
                json!({"replicas": 0, "availableReplicas": 0}),
            );
        }
        ("apps", "DaemonSet") => fill(
            obj,
            "status",
            json!({"currentNumberScheduled": 0, "numberMisscheduled": 0,
                "desiredNumberScheduled": 0, "numberReady": 0}),
        ),
        _ => {}
    }
}

/// What the registry of a real server sets when it updates an object: a Service that
/// becomes NodePort or LoadBalancer gets node ports for its ports (keeping those the
/// old object had for the same port), and one that stops being either loses the node
/// ports the update did not change.
pub fn prepare_for_update(
    group: &str,
    kind: &str,
    old: &Value,
    new: &mut Value,
    alloc: &mut Allocator,
) {
    if (group, kind) != ("", "Service") {
        return;
    }
    let type_of = |s: &Value| {
        s["spec"]["type"]
            .as_str()
            .unwrap_or("ClusterIP")
            .to_string()
    };
    let node_ports = |t: &str| t == "NodePort" || t == "LoadBalancer";
    let (old_type, new_type) = (type_of(old), type_of(new));
    let old_port = |port: &Value| {
        old["spec"]["ports"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|p| {
                p["port"] == port["port"]
                    && p["protocol"].as_str().unwrap_or("TCP")
                        == port["protocol"].as_str().unwrap_or("TCP")
            })
            .map(|p| p["nodePort"].clone())
            .unwrap_or(Value::Null)
    };
    let ports = new["spec"]
        .get_mut("ports")
        .and_then(Value::as_array_mut)
        .into_iter()
        .flatten();
    for port in ports {
        let was = old_port(port);
        if node_ports(&new_type) {
            if port["nodePort"].is_null() || port["nodePort"] == 0 {
                port["nodePort"] = if was.is_null() {
                    json!(alloc.node_port())
                } else {
                    was
                };
            }
        } else if node_ports(&old_type)
            && port["nodePort"] == was
            && let Some(p) = port.as_object_mut()
        {
            p.remove("nodePort");
        }
    }
}

/// The object a real server's field manager compares a create with: the kind's typed
/// zero value as JSON. Maps and lists present here do not count as created by the
/// writer (no `"."` member in its managedFields); everything else it sends does.
pub fn empty_object(group: &str, kind: &str) -> Value {
    let template = || json!({"metadata": {}, "spec": {"containers": []}});
    match (group, kind) {
        ("apps", "Deployment") => {
            json!({"metadata": {}, "spec": {"strategy": {}, "template": template()}, "status": {}})
        }
        ("apps", "StatefulSet" | "DaemonSet") => json!({"metadata": {},
            "spec": {"updateStrategy": {}, "template": template()}, "status": {}}),
        ("apps", "ReplicaSet") | ("batch", "Job") => {
            json!({"metadata": {}, "spec": {"template": template()}, "status": {}})
        }
        ("batch", "CronJob") => json!({"metadata": {},
            "spec": {"jobTemplate": {"metadata": {}, "spec": {"template": template()}}},
            "status": {}}),
        ("", "Pod") => json!({"metadata": {}, "spec": {"containers": []}, "status": {}}),
        ("", "Service") => json!({"metadata": {}, "spec": {}, "status": {"loadBalancer": {}}}),
        ("", "Namespace" | "PersistentVolume") => {
            json!({"metadata": {}, "spec": {}, "status": {}})
        }
        ("", "PersistentVolumeClaim") => {
            json!({"metadata": {}, "spec": {"resources": {}}, "status": {}})
        }
        ("rbac.authorization.k8s.io", "Role" | "ClusterRole") => {
            json!({"metadata": {}, "rules": []})
        }
        ("rbac.authorization.k8s.io", "RoleBinding" | "ClusterRoleBinding") => {
            json!({"metadata": {}, "roleRef": {}})
        }
        _ => json!({"metadata": {}}),
    }
}

/// Hands out what a real server allocates: cluster IPs from 10.96.0.0/12 (as kubeadm
/// configures it) and node ports from 30000-32767.
#[derive(Debug, Clone)]
pub struct Allocator {
    next_ip: u32,
    next_port: u32,
}

impl Default for Allocator {
    fn default() -> Self {
        Allocator {
            next_ip: 10,
            next_port: 30_000,
        }
    }
}

impl Allocator {
    fn cluster_ip(&mut self) -> String {
        self.next_ip += 1;
        format!("10.96.{}.{}", (self.next_ip >> 8) & 255, self.next_ip & 255)
    }

    fn node_port(&mut self) -> u32 {
        let port = self.next_port;
        self.next_port = if port >= 32_767 { 30_000 } else { port + 1 };
        port
    }
}

/// A JSON object, whether held as a value or as a map.
trait AsMap {
    /// The map; a value that is not an object becomes an empty one.
    fn as_map(&mut self) -> &mut Map<String, Value>;
}

impl AsMap for Value {
    fn as_map(&mut self) -> &mut Map<String, Value> {
        if !self.is_object() {
            *self = json!({});
        }
        self.as_object_mut().expect("just made an object")
    }
}

impl AsMap for Map<String, Value> {
    fn as_map(&mut self) -> &mut Map<String, Value> {
        self
    }
}

/// The map at `key` of `v`, created when missing (or not a map).
fn object_at<'v>(v: &'v mut (impl AsMap + ?Sized), key: &str) -> &'v mut Value {
    let child = v
        .as_map()
        .entry(key.to_string())
        .or_insert_with(|| json!({}));
    child.as_map();
    child
}

/// Sets `key` to `value` when it is missing or null.
fn fill(m: &mut (impl AsMap + ?Sized), key: &str, value: Value) {
    let m = m.as_map();
    if m.get(key).is_none_or(Value::is_null) {
        m.insert(key.to_string(), value);
    }
}

fn default_pod_template(template: &mut Value) {
    if !template.is_object() {
        return;
    }
    // A template's metadata is a plain struct in the Go types: always serialized.
    object_at(template, "metadata");
    default_pod_spec(object_at(template, "spec"));
}

fn default_pod_spec(spec: &mut Value) {
    fill(spec, "restartPolicy", json!("Always"));
    fill(spec, "terminationGracePeriodSeconds", json!(30));
    fill(spec, "dnsPolicy", json!("ClusterFirst"));
    fill(spec, "securityContext", json!({}));
    fill(spec, "schedulerName", json!("default-scheduler"));
    let host_network = spec["hostNetwork"] == true;
    for list in ["initContainers", "containers", "ephemeralContainers"] {
        for c in spec
            .get_mut(list)
            .and_then(Value::as_array_mut)
            .into_iter()
            .flatten()
        {
            if c.is_object() {
                default_container(c, host_network);
            }
        }
    }
    for volume in spec
        .get_mut("volumes")
        .and_then(Value::as_array_mut)
        .into_iter()
        .flatten()
    {
        default_volume(volume);
    }
}

fn default_container(c: &mut Value, host_network: bool) {
    let policy = c["image"].as_str().map(pull_policy);
    if let Some(p) = policy {
        fill(c, "imagePullPolicy", json!(p));
    }
    fill(c, "terminationMessagePath", json!("/dev/termination-log"));
    fill(c, "terminationMessagePolicy", json!("File"));
    // `resources` is a plain struct in the Go types: always serialized.
    fill(c, "resources", json!({}));
    for port in c
        .get_mut("ports")
        .and_then(Value::as_array_mut)
        .into_iter()
        .flatten()
    {
        if let Some(p) = port.as_object_mut() {
            fill(p, "protocol", json!("TCP"));
            if host_network && let Some(cp) = p.get("containerPort").cloned() {
                fill(p, "hostPort", cp);
            }
        }
    }
    for env in c
        .get_mut("env")
        .and_then(Value::as_array_mut)
        .into_iter()
        .flatten()
    {
        if let Some(field_ref) = env
            .pointer_mut("/valueFrom/fieldRef")
            .and_then(Value::as_object_mut)
        {
            fill(field_ref, "apiVersion", json!("v1"));
        }
    }
    for probe in ["livenessProbe", "readinessProbe", "startupProbe"] {
        if let Some(p) = c.get_mut(probe).and_then(Value::as_object_mut) {
            fill(p, "timeoutSeconds", json!(1));
            fill(p, "periodSeconds", json!(10));
            fill(p, "successThreshold", json!(1));
            fill(p, "failureThreshold", json!(3));
            if let Some(get) = p.get_mut("httpGet").and_then(Value::as_object_mut) {
                fill(get, "scheme", json!("HTTP"));
            }
        }
    }
}

/// `Always` for an image without a tag or tagged `latest`, else `IfNotPresent` (an
/// image pinned by digest included).
fn pull_policy(image: &str) -> &'static str {
    if image.contains('@') {
        return "IfNotPresent";
    }
    let last = image.rsplit('/').next().unwrap_or(image);
    match last.rsplit_once(':') {
        Some((_, tag)) if tag != "latest" => "IfNotPresent",
        _ => "Always",
    }
}

fn default_volume(volume: &mut Value) {
    for source in ["secret", "configMap", "projected", "downwardAPI"] {
        if let Some(s) = volume.get_mut(source).and_then(Value::as_object_mut) {
            fill(s, "defaultMode", json!(420));
        }
    }
    if let Some(h) = volume.get_mut("hostPath").and_then(Value::as_object_mut) {
        fill(h, "type", json!(""));
    }
}

fn default_claim(claim: &mut Value) {
    if !claim.is_object() {
        return;
    }
    let spec = object_at(claim, "spec");
    fill(spec, "volumeMode", json!("Filesystem"));
}

fn default_service(obj: &mut Value) {
    let spec = object_at(obj, "spec");
    fill(spec, "type", json!("ClusterIP"));
    fill(spec, "sessionAffinity", json!("None"));
    let kind = spec["type"].as_str().unwrap_or("").to_string();
    if kind != "ExternalName" {
        fill(spec, "internalTrafficPolicy", json!("Cluster"));
    }
    if kind == "NodePort" || kind == "LoadBalancer" {
        fill(spec, "externalTrafficPolicy", json!("Cluster"));
    }
    if kind == "LoadBalancer" {
        fill(spec, "allocateLoadBalancerNodePorts", json!(true));
    }
    for port in spec
        .get_mut("ports")
        .and_then(Value::as_array_mut)
        .into_iter()
        .flatten()
    {
        if let Some(p) = port.as_object_mut() {
            fill(p, "protocol", json!("TCP"));
            if let Some(n) = p.get("port").cloned() {
                fill(p, "targetPort", n);
            }
        }
    }
}

/// `BestEffort` without any request or limit, `Guaranteed` when every container limits
/// cpu and memory and requests no other amounts, else `Burstable`.
fn qos_class(spec: &Value) -> &'static str {
    let containers: Vec<&Value> = ["initContainers", "containers"]
        .iter()
        .flat_map(|l| spec[*l].as_array().into_iter().flatten())
        .collect();
    let empty = |v: &Value| v.as_object().is_none_or(Map::is_empty);
    if containers
        .iter()
        .all(|c| empty(&c["resources"]["requests"]) && empty(&c["resources"]["limits"]))
    {
        return "BestEffort";
    }
    let guaranteed = containers.iter().all(|c| {
        let limits = &c["resources"]["limits"];
        let requests = &c["resources"]["requests"];
        ["cpu", "memory"].iter().all(|r| !limits[*r].is_null())
            && requests
                .as_object()
                .is_none_or(|m| m.iter().all(|(k, v)| limits[k] == *v))
    });
    if guaranteed {
        "Guaranteed"
    } else {
        "Burstable"
    }
}

/// A Job without `manualSelector: true` gets a selector on its own uid, and its
/// template the labels that selector and people look for.
fn generate_job_selector(obj: &mut Value) {
    if obj["spec"]["manualSelector"] == true {
        return;
    }
    let uid = obj["metadata"]["uid"].as_str().unwrap_or("").to_string();
    let name = obj["metadata"]["name"].as_str().unwrap_or("").to_string();
    let spec = object_at(obj, "spec");
    if spec["selector"].is_null() {
        spec["selector"] = json!({"matchLabels": {"batch.kubernetes.io/controller-uid": uid}});
    }
    if let Some(template) = spec.get_mut("template").filter(|t| t.is_object()) {
        let labels = object_at(object_at(template, "metadata"), "labels");
        for (k, v) in [
            ("batch.kubernetes.io/controller-uid", &uid),
            ("batch.kubernetes.io/job-name", &name),
            ("controller-uid", &uid),
            ("job-name", &name),
        ] {
            fill(labels, k, json!(v));
        }
    }
    // A Job without labels of its own shows its template's.
    let template_labels = obj["spec"]["template"]["metadata"]["labels"].clone();
    let meta = object_at(obj, "metadata");
    if meta["labels"].as_object().is_none_or(Map::is_empty) && template_labels.is_object() {
        meta["labels"] = template_labels;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pull_policy_is_always_for_latest_or_no_tag_only() {
        assert_eq!(pull_policy("nginx"), "Always");
        assert_eq!(pull_policy("nginx:latest"), "Always");
        assert_eq!(pull_policy("registry.example.com:5000/app"), "Always");
        assert_eq!(
            pull_policy("registry.example.com:5000/app:1.2"),
            "IfNotPresent"
        );
        assert_eq!(pull_policy("nginx@sha256:abcd"), "IfNotPresent");
    }

    #[test]
    fn defaulting_twice_changes_nothing_more() {
        let mut d = json!({"spec": {"template": {"spec": {"containers": [{"name": "a", "image": "x:1"}]}}}});
        default_object("apps", "Deployment", &mut d);
        let once = d.clone();
        default_object("apps", "Deployment", &mut d);
        assert_eq!(d, once);
        assert_eq!(d["spec"]["strategy"]["rollingUpdate"]["maxSurge"], "25%");
    }

    #[test]
    fn a_recreate_strategy_gets_no_rolling_update_parameters() {
        let mut d = json!({"spec": {"strategy": {"type": "Recreate"}}});
        default_object("apps", "Deployment", &mut d);
        assert_eq!(d["spec"]["strategy"], json!({"type": "Recreate"}));
    }
}
