//! The columns a real API server prints for each built-in kind in `Table` answers
//! (`kubectl get`, `get -o wide`, `get -w`), and each row's cells computed from the
//! object the way the server's printers compute them. Every column is always
//! filled; kubectl shows those of priority 1 only with `-o wide`.

use std::collections::BTreeSet;
use std::time::SystemTime;

use serde_json::{Value, json};

use crate::apiserver::kinds::ResourceType;

/// One column: name, type (`string`, `integer`, `boolean`, `date`), priority (1 for
/// `-o wide` only) and description.
pub type Column = (&'static str, &'static str, u8, &'static str);

const NAME: Column = (
    "Name",
    "string",
    0,
    "Name must be unique within a namespace.",
);
const AGE: Column = (
    "Age",
    "string",
    0,
    "CreationTimestamp is the server time when this object was created.",
);
const CREATED_AT: Column = (
    "Created At",
    "date",
    0,
    "CreationTimestamp is the server time when this object was created.",
);
const CONTAINERS: Column = (
    "Containers",
    "string",
    1,
    "Names of each container in the template.",
);
const IMAGES: Column = (
    "Images",
    "string",
    1,
    "Images referenced by each container in the template.",
);
const SELECTOR: Column = (
    "Selector",
    "string",
    1,
    "Label selector for the pods this object manages.",
);

/// The columns of `rt`'s table.
pub fn columns(rt: &ResourceType) -> Vec<Column> {
    let c = |name, ty, priority, description| (name, ty, priority, description);
    match (rt.group.as_str(), rt.kind.as_str()) {
        ("", "Pod") => vec![
            NAME,
            c(
                "Ready",
                "string",
                0,
                "The aggregate readiness state of this pod for accepting traffic.",
            ),
            c(
                "Status",
                "string",
                0,
                "The aggregate status of the containers in this pod.",
            ),
            c(
                "Restarts",
                "string",
                0,
                "The number of times the containers in this pod have been restarted.",
            ),
            AGE,
            c("IP", "string", 1, "The pod's IP address."),
            c("Node", "string", 1, "The node the pod is scheduled on."),
            c(
                "Nominated Node",
                "string",
                1,
                "The node the pod is nominated for after a preemption.",
            ),
            c(
                "Readiness Gates",
                "string",
                1,
                "Readiness gates that are true, of all the pod's gates.",
            ),
        ],
        ("", "PodTemplate") => vec![
            NAME,
            c(
                "Containers",
                "string",
                0,
                "Names of each container in the template.",
            ),
            c(
                "Images",
                "string",
                0,
                "Images referenced by each container in the template.",
            ),
            c(
                "Pod Labels",
                "string",
                0,
                "The labels for the pod template.",
            ),
        ],
        ("", "ReplicationController") | ("apps", "ReplicaSet") => vec![
            NAME,
            c("Desired", "integer", 0, "The number of desired replicas."),
            c("Current", "integer", 0, "The number of replicas observed."),
            c("Ready", "integer", 0, "The number of ready replicas."),
            AGE,
            CONTAINERS,
            IMAGES,
            SELECTOR,
        ],
        ("apps", "Deployment") => vec![
            NAME,
            c("Ready", "string", 0, "Number of the pod with ready state"),
            c(
                "Up-to-date",
                "string",
                0,
                "Total number of non-terminating pods targeted by this deployment that have the desired template spec.",
            ),
            c(
                "Available",
                "string",
                0,
                "Total number of available non-terminating pods targeted by this deployment.",
            ),
            AGE,
            CONTAINERS,
            IMAGES,
            SELECTOR,
        ],
        ("apps", "StatefulSet") => vec![
            NAME,
            c("Ready", "string", 0, "Number of the pod with ready state"),
            AGE,
            CONTAINERS,
            IMAGES,
        ],
        ("apps", "DaemonSet") => vec![
            NAME,
            c(
                "Desired",
                "integer",
                0,
                "The number of nodes that should run the daemon pod.",
            ),
            c(
                "Current",
                "integer",
                0,
                "The number of nodes running at least one daemon pod.",
            ),
            c(
                "Ready",
                "integer",
                0,
                "The number of nodes with a ready daemon pod.",
            ),
            c(
                "Up-to-date",
                "integer",
                0,
                "The number of nodes running the updated daemon pod.",
            ),
            c(
                "Available",
                "integer",
                0,
                "The number of nodes with an available daemon pod.",
            ),
            c(
                "Node Selector",
                "string",
                0,
                "The node labels a daemon pod needs.",
            ),
            AGE,
            CONTAINERS,
            IMAGES,
            SELECTOR,
        ],
        ("apps", "ControllerRevision") => vec![
            NAME,
            c("Controller", "string", 0, "Controller of the object"),
            c(
                "Revision",
                "string",
                0,
                "Revision indicates the revision of the state represented by Data.",
            ),
            AGE,
        ],
        ("batch", "Job") => vec![
            NAME,
            c("Status", "string", 0, "Status of the job."),
            c(
                "Completions",
                "string",
                0,
                "The number of pods which reached phase Succeeded.",
            ),
            c(
                "Duration",
                "string",
                0,
                "Time required to complete the job.",
            ),
            AGE,
            CONTAINERS,
            IMAGES,
            SELECTOR,
        ],
        ("batch", "CronJob") => vec![
            NAME,
            c("Schedule", "string", 0, "The schedule in Cron format."),
            c("Timezone", "string", 0, "The time zone of the schedule."),
            c(
                "Suspend",
                "boolean",
                0,
                "Whether later executions are suspended.",
            ),
            c("Active", "integer", 0, "The number of running jobs."),
            c(
                "Last Schedule",
                "string",
                0,
                "When the job was last scheduled.",
            ),
            AGE,
            CONTAINERS,
            IMAGES,
            SELECTOR,
        ],
        ("", "Service") => vec![
            NAME,
            c("Type", "string", 0, "How the Service is exposed."),
            c(
                "Cluster-IP",
                "string",
                0,
                "The IP address of the service inside the cluster.",
            ),
            c(
                "External-IP",
                "string",
                0,
                "The addresses the service is reachable at from outside.",
            ),
            c(
                "Port(s)",
                "string",
                0,
                "The ports that are exposed by this service.",
            ),
            AGE,
            c(
                "Selector",
                "string",
                1,
                "The labels of the pods the service routes to.",
            ),
        ],
        ("networking.k8s.io", "Ingress") => vec![
            NAME,
            c(
                "Class",
                "string",
                0,
                "The name of the IngressClass resource that should be used for additional configuration",
            ),
            c(
                "Hosts",
                "string",
                0,
                "Hosts that incoming requests are matched against before the ingress rule",
            ),
            c(
                "Address",
                "string",
                0,
                "Address is a list containing ingress points for the load-balancer",
            ),
            c(
                "Ports",
                "string",
                0,
                "Ports of TLS configurations that open",
            ),
            AGE,
        ],
        ("networking.k8s.io", "IngressClass") => vec![
            NAME,
            c(
                "Controller",
                "string",
                0,
                "Controller that is responsible for handling this class",
            ),
            c(
                "Parameters",
                "string",
                0,
                "A reference to a resource with additional parameters",
            ),
            AGE,
        ],
        ("networking.k8s.io", "NetworkPolicy") => vec![
            NAME,
            c(
                "Pod-Selector",
                "string",
                0,
                "The pods this policy applies to.",
            ),
            AGE,
        ],
        ("", "Endpoints") => vec![
            NAME,
            c(
                "Endpoints",
                "string",
                0,
                "The addresses and ports of the endpoints.",
            ),
            AGE,
        ],
        ("discovery.k8s.io", "EndpointSlice") => vec![
            NAME,
            c(
                "AddressType",
                "string",
                0,
                "The type of the addresses in this slice.",
            ),
            c("Ports", "string", 0, "The network ports of the endpoints."),
            c("Endpoints", "string", 0, "The addresses of the endpoints."),
            AGE,
        ],
        ("", "Node") => vec![
            NAME,
            c("Status", "string", 0, "The status of the node"),
            c("Roles", "string", 0, "The roles of the node"),
            AGE,
            c(
                "Version",
                "string",
                0,
                "Kubelet Version reported by the node.",
            ),
            c("Internal-IP", "string", 1, "The node's internal address."),
            c("External-IP", "string", 1, "The node's external address."),
            c("OS-Image", "string", 1, "OS Image reported by the node."),
            c(
                "Kernel-Version",
                "string",
                1,
                "Kernel Version reported by the node.",
            ),
            c(
                "Container-Runtime",
                "string",
                1,
                "Container runtime version reported by the node.",
            ),
        ],
        ("", "Event") | ("events.k8s.io", "Event") => vec![
            c(
                "Last Seen",
                "string",
                0,
                "The time at which the most recent occurrence of this event was recorded.",
            ),
            c("Type", "string", 0, "Type of this event (Normal, Warning)"),
            c(
                "Reason",
                "string",
                0,
                "Why the event happened, in CamelCase.",
            ),
            c(
                "Object",
                "string",
                0,
                "The object that this event is about.",
            ),
            c(
                "Subobject",
                "string",
                1,
                "The part of the object the event is about.",
            ),
            c("Source", "string", 1, "The component reporting this event."),
            c(
                "Message",
                "string",
                0,
                "A human-readable description of the status of this operation.",
            ),
            c(
                "First Seen",
                "string",
                1,
                "The time at which the event was first recorded.",
            ),
            c(
                "Count",
                "string",
                1,
                "The number of times this event has occurred.",
            ),
            (NAME.0, NAME.1, 1, NAME.3),
        ],
        ("", "Namespace") => vec![
            NAME,
            c("Status", "string", 0, "The status of the namespace"),
            AGE,
        ],
        ("", "Secret") => vec![
            NAME,
            c(
                "Type",
                "string",
                0,
                "Used to facilitate programmatic handling of secret data.",
            ),
            c("Data", "string", 0, "The number of keys in the secret."),
            AGE,
        ],
        ("", "ConfigMap") => vec![
            NAME,
            c("Data", "string", 0, "The number of keys in the config map."),
            AGE,
        ],
        ("", "ServiceAccount") => vec![NAME, AGE],
        ("", "PersistentVolume") => vec![
            NAME,
            c("Capacity", "string", 0, "The volume's size."),
            c(
                "Access Modes",
                "string",
                0,
                "The ways the volume can be mounted.",
            ),
            c(
                "Reclaim Policy",
                "string",
                0,
                "What happens to the volume when its claim is released.",
            ),
            c("Status", "string", 0, "The phase of the volume."),
            c("Claim", "string", 0, "The claim bound to the volume."),
            c("StorageClass", "string", 0, "StorageClass of the pv"),
            c(
                "VolumeAttributesClass",
                "string",
                0,
                "VolumeAttributesClass of the pv",
            ),
            c("Reason", "string", 0, "Why the volume is in its phase."),
            AGE,
            c(
                "VolumeMode",
                "string",
                1,
                "Whether the volume is a filesystem or a raw block device.",
            ),
        ],
        ("", "PersistentVolumeClaim") => vec![
            NAME,
            c("Status", "string", 0, "The phase of the claim."),
            c("Volume", "string", 0, "The volume bound to the claim."),
            c("Capacity", "string", 0, "The size of the bound volume."),
            c(
                "Access Modes",
                "string",
                0,
                "The ways the bound volume can be mounted.",
            ),
            c("StorageClass", "string", 0, "StorageClass of the pvc"),
            c(
                "VolumeAttributesClass",
                "string",
                0,
                "VolumeAttributesClass of the pvc",
            ),
            AGE,
            c(
                "VolumeMode",
                "string",
                1,
                "Whether the volume is a filesystem or a raw block device.",
            ),
        ],
        ("rbac.authorization.k8s.io", "RoleBinding" | "ClusterRoleBinding") => vec![
            NAME,
            c("Role", "string", 0, "The role the binding grants."),
            AGE,
            c("Users", "string", 1, "Users in the binding"),
            c("Groups", "string", 1, "Groups in the binding"),
            c(
                "ServiceAccounts",
                "string",
                1,
                "ServiceAccounts in the binding",
            ),
        ],
        ("autoscaling", "HorizontalPodAutoscaler") => vec![
            NAME,
            c(
                "Reference",
                "string",
                0,
                "The object the autoscaler scales.",
            ),
            c("Targets", "string", 0, "The metrics and their targets."),
            c(
                "MinPods",
                "string",
                0,
                "The lower limit for the number of replicas.",
            ),
            c(
                "MaxPods",
                "string",
                0,
                "The upper limit for the number of replicas.",
            ),
            c("Replicas", "string", 0, "The current number of replicas."),
            AGE,
        ],
        ("storage.k8s.io", "StorageClass") => vec![
            NAME,
            c(
                "Provisioner",
                "string",
                0,
                "provisioner indicates the type of the provisioner.",
            ),
            c(
                "ReclaimPolicy",
                "string",
                0,
                "What happens to dynamically provisioned volumes when released.",
            ),
            c("VolumeBindingMode", "string", 0, "When claims are bound."),
            c(
                "AllowVolumeExpansion",
                "string",
                0,
                "Whether volumes of this class may grow.",
            ),
            AGE,
        ],
        ("coordination.k8s.io", "Lease") => vec![
            NAME,
            c(
                "Holder",
                "string",
                0,
                "The identity of the holder of the lease.",
            ),
            AGE,
        ],
        ("", "ResourceQuota") => vec![
            NAME,
            c(
                "Request",
                "string",
                0,
                "Requests used of the quota's hard limits.",
            ),
            c(
                "Limit",
                "string",
                0,
                "Limits used of the quota's hard limits.",
            ),
            AGE,
        ],
        ("scheduling.k8s.io", "PriorityClass") => vec![
            NAME,
            c(
                "Value",
                "integer",
                0,
                "The priority pods of this class receive.",
            ),
            c(
                "Global-Default",
                "boolean",
                0,
                "Whether pods without a class get this one.",
            ),
            AGE,
            c(
                "PreemptionPolicy",
                "string",
                0,
                "Whether pods of this class preempt others.",
            ),
        ],
        ("policy", "PodDisruptionBudget") => vec![
            NAME,
            c(
                "Min Available",
                "string",
                0,
                "The minimum number of pods that must be available.",
            ),
            c(
                "Max Unavailable",
                "string",
                0,
                "The maximum number of pods that may be unavailable.",
            ),
            c(
                "Allowed Disruptions",
                "integer",
                0,
                "Calculated number of pods that may be disrupted at this time.",
            ),
            AGE,
        ],
        (
            "admissionregistration.k8s.io",
            "ValidatingWebhookConfiguration" | "MutatingWebhookConfiguration",
        ) => vec![
            NAME,
            c(
                "Webhooks",
                "integer",
                0,
                "Webhooks indicates the number of webhooks registered in this configuration",
            ),
            AGE,
        ],
        ("apiextensions.k8s.io", "CustomResourceDefinition") => vec![
            NAME,
            c("Scope", "string", 0, "Cluster/Namespaced"),
            c("Versions", "string", 0, "Served versions"),
            CREATED_AT,
            c("Group", "string", 1, "API group"),
            c("Kind", "string", 1, "CustomResource kind"),
            c("ShortNames", "string", 1, "Short names"),
            c("Established", "boolean", 1, "Established status"),
        ],
        _ => vec![NAME, CREATED_AT],
    }
}

fn s(v: &Value) -> &str {
    v.as_str().unwrap_or("")
}

fn int(v: &Value) -> i64 {
    v.as_i64().unwrap_or(0)
}

fn list(v: &Value) -> &[Value] {
    v.as_array().map(Vec::as_slice).unwrap_or(&[])
}

/// Seconds since an RFC 3339 time, `None` when absent or unreadable.
fn since(ts: &Value) -> Option<i64> {
    let t = humantime::parse_rfc3339_weak(ts.as_str()?).ok()?;
    Some(match SystemTime::now().duration_since(t) {
        Ok(d) => d.as_secs() as i64,
        Err(e) => -(e.duration().as_secs() as i64),
    })
}

/// A duration as kubectl prints ages: `45s`, `3m20s`, `15m`, `5h10m`, `2d3h`, `400d`.
pub fn human_duration(secs: i64) -> String {
    if secs < -1 {
        return "<invalid>".into();
    }
    if secs < 0 {
        return "0s".into();
    }
    if secs < 120 {
        return format!("{secs}s");
    }
    let minutes = secs / 60;
    if minutes < 10 {
        return match secs % 60 {
            0 => format!("{minutes}m"),
            s => format!("{minutes}m{s}s"),
        };
    }
    if minutes < 180 {
        return format!("{minutes}m");
    }
    let hours = secs / 3600;
    if hours < 8 {
        return match minutes % 60 {
            0 => format!("{hours}h"),
            m => format!("{hours}h{m}m"),
        };
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    if hours < 24 * 8 {
        return match hours % 24 {
            0 => format!("{}d", hours / 24),
            h => format!("{}d{h}h", hours / 24),
        };
    }
    if hours < 24 * 365 * 2 {
        return format!("{}d", hours / 24);
    }
    if hours < 24 * 365 * 8 {
        let years = hours / 24 / 365;
        return match (hours / 24) % 365 {
            0 => format!("{years}y"),
            d => format!("{years}y{d}d"),
        };
    }
    format!("{}y", hours / 24 / 365)
}

/// The age of a timestamp, `<unknown>` without one.
pub fn age(ts: &Value) -> String {
    since(ts).map_or_else(|| "<unknown>".into(), human_duration)
}

/// `k=v,k2=v2` sorted by key, as `labels.FormatLabels`; `<none>` when empty.
fn format_labels(m: &Value) -> String {
    let mut pairs: Vec<String> = m
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| format!("{k}={}", s(v)))
        .collect();
    pairs.sort();
    if pairs.is_empty() {
        "<none>".into()
    } else {
        pairs.join(",")
    }
}

/// A label selector as `metav1.FormatLabelSelector` writes it: `app=web,tier in
/// (a,b),!legacy`; `<none>` when it selects by nothing.
fn format_selector(sel: &Value) -> String {
    let mut parts: Vec<String> = sel["matchLabels"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| format!("{k}={}", s(v)))
        .collect();
    for e in list(&sel["matchExpressions"]) {
        let mut values: Vec<&str> = list(&e["values"]).iter().map(s).collect();
        values.sort();
        let key = s(&e["key"]);
        parts.push(match s(&e["operator"]) {
            "In" => format!("{key} in ({})", values.join(",")),
            "NotIn" => format!("{key} notin ({})", values.join(",")),
            "Exists" => key.to_string(),
            "DoesNotExist" => format!("!{key}"),
            other => format!("{key} {other} ({})", values.join(",")),
        });
    }
    parts.sort();
    if parts.is_empty() {
        "<none>".into()
    } else {
        parts.join(",")
    }
}

/// Container names and images, comma-separated.
fn containers(pod_spec: &Value) -> (String, String) {
    let cs = list(&pod_spec["containers"]);
    let names: Vec<&str> = cs.iter().map(|c| s(&c["name"])).collect();
    let images: Vec<&str> = cs.iter().map(|c| s(&c["image"])).collect();
    (names.join(","), images.join(","))
}

fn load_balancer(status: &Value) -> String {
    let set: BTreeSet<&str> = list(&status["loadBalancer"]["ingress"])
        .iter()
        .filter_map(|i| {
            [&i["ip"], &i["hostname"]]
                .into_iter()
                .map(s)
                .find(|x| !x.is_empty())
        })
        .collect();
    set.into_iter().collect::<Vec<_>>().join(",")
}

fn or_none(x: &str) -> String {
    if x.is_empty() {
        "<none>".into()
    } else {
        x.to_string()
    }
}

/// The cells of `obj`'s row, one per column of [`columns`].
pub fn cells(rt: &ResourceType, obj: &Value) -> Vec<Value> {
    let meta = &obj["metadata"];
    let name = json!(s(&meta["name"]));
    let age = json!(age(&meta["creationTimestamp"]));
    let spec = &obj["spec"];
    let status = &obj["status"];
    let template_spec = &spec["template"]["spec"];
    match (rt.group.as_str(), rt.kind.as_str()) {
        ("", "Pod") => pod_cells(obj, name, age),
        ("", "PodTemplate") => {
            let (c, i) = containers(template_spec);
            vec![
                name,
                json!(c),
                json!(i),
                json!(format_labels(&obj["template"]["metadata"]["labels"])),
            ]
        }
        ("", "ReplicationController") | ("apps", "ReplicaSet") => {
            let (c, i) = containers(template_spec);
            let selector = if rt.group.is_empty() {
                format_labels(&spec["selector"])
            } else {
                format_selector(&spec["selector"])
            };
            vec![
                name,
                json!(spec["replicas"].as_i64().unwrap_or(1)),
                json!(int(&status["replicas"])),
                json!(int(&status["readyReplicas"])),
                age,
                json!(c),
                json!(i),
                json!(selector),
            ]
        }
        ("apps", "Deployment") => {
            let (c, i) = containers(template_spec);
            vec![
                name,
                json!(format!(
                    "{}/{}",
                    int(&status["readyReplicas"]),
                    spec["replicas"].as_i64().unwrap_or(1)
                )),
                json!(int(&status["updatedReplicas"])),
                json!(int(&status["availableReplicas"])),
                age,
                json!(c),
                json!(i),
                json!(format_selector(&spec["selector"])),
            ]
        }
        ("apps", "StatefulSet") => {
            let (c, i) = containers(template_spec);
            vec![
                name,
                json!(format!(
                    "{}/{}",
                    int(&status["readyReplicas"]),
                    spec["replicas"].as_i64().unwrap_or(1)
                )),
                age,
                json!(c),
                json!(i),
            ]
        }
        ("apps", "DaemonSet") => {
            let (c, i) = containers(template_spec);
            vec![
                name,
                json!(int(&status["desiredNumberScheduled"])),
                json!(int(&status["currentNumberScheduled"])),
                json!(int(&status["numberReady"])),
                json!(int(&status["updatedNumberScheduled"])),
                json!(int(&status["numberAvailable"])),
                json!(format_labels(&template_spec["nodeSelector"])),
                age,
                json!(c),
                json!(i),
                json!(format_selector(&spec["selector"])),
            ]
        }
        ("apps", "ControllerRevision") => {
            let controller = list(&meta["ownerReferences"])
                .iter()
                .find(|r| r["controller"] == true)
                .map(|r| {
                    let group = s(&r["apiVersion"]).rsplit_once('/').map_or("", |(g, _)| g);
                    let kind = s(&r["kind"]).to_ascii_lowercase();
                    if group.is_empty() {
                        format!("{kind}/{}", s(&r["name"]))
                    } else {
                        format!("{kind}.{group}/{}", s(&r["name"]))
                    }
                })
                .unwrap_or_else(|| "<none>".into());
            vec![name, json!(controller), json!(int(&obj["revision"])), age]
        }
        ("batch", "Job") => {
            let (c, i) = containers(template_spec);
            vec![
                name,
                json!(job_status(obj)),
                json!(job_completions(obj)),
                json!(job_duration(status)),
                age,
                json!(c),
                json!(i),
                json!(format_selector(&spec["selector"])),
            ]
        }
        ("batch", "CronJob") => {
            let job_spec = &spec["jobTemplate"]["spec"];
            let (c, i) = containers(&job_spec["template"]["spec"]);
            let suspend = match spec["suspend"].as_bool() {
                Some(true) => "True",
                Some(false) => "False",
                None => "<unset>",
            };
            let last = if status["lastScheduleTime"].is_string() {
                self::age(&status["lastScheduleTime"])
            } else {
                "<none>".into()
            };
            vec![
                name,
                json!(s(&spec["schedule"])),
                json!(or_none(s(&spec["timeZone"]))),
                json!(suspend),
                json!(list(&status["active"]).len()),
                json!(last),
                age,
                json!(c),
                json!(i),
                json!(format_selector(&job_spec["selector"])),
            ]
        }
        ("", "Service") => service_cells(obj, name, age),
        ("networking.k8s.io", "Ingress") => {
            let rules = list(&spec["rules"]);
            let hosts: Vec<&str> = rules
                .iter()
                .map(|r| s(&r["host"]))
                .filter(|h| !h.is_empty())
                .collect();
            let hosts = match hosts.len() {
                0 => "*".to_string(),
                n if n > 3 || rules.len() > 3 => {
                    format!(
                        "{} + {} more...",
                        hosts[..3.min(n)].join(","),
                        rules.len() - 3
                    )
                }
                _ => hosts.join(","),
            };
            let ports = if list(&spec["tls"]).is_empty() {
                "80"
            } else {
                "80, 443"
            };
            vec![
                name,
                json!(or_none(s(&spec["ingressClassName"]))),
                json!(hosts),
                json!(load_balancer(status)),
                json!(ports),
                age,
            ]
        }
        ("networking.k8s.io", "IngressClass") => {
            let p = &spec["parameters"];
            let params = if p.is_object() {
                let group = s(&p["apiGroup"]);
                let kind = s(&p["kind"]);
                let gk = if group.is_empty() {
                    kind.to_string()
                } else {
                    format!("{kind}.{group}")
                };
                format!("{gk}/{}", s(&p["name"]))
            } else {
                "<none>".into()
            };
            vec![name, json!(s(&spec["controller"])), json!(params), age]
        }
        ("networking.k8s.io", "NetworkPolicy") => {
            vec![name, json!(format_selector(&spec["podSelector"])), age]
        }
        ("", "Endpoints") => vec![name, json!(endpoints(obj)), age],
        ("discovery.k8s.io", "EndpointSlice") => {
            let ports: Vec<String> = list(&obj["ports"])
                .iter()
                .map(|p| {
                    p["port"]
                        .as_i64()
                        .map_or("<unset>".into(), |n| n.to_string())
                })
                .collect();
            let addrs: Vec<&str> = list(&obj["endpoints"])
                .iter()
                .flat_map(|e| list(&e["addresses"]).iter().map(s))
                .collect();
            let shown = if addrs.len() > 3 {
                format!("{} + {} more...", addrs[..3].join(","), addrs.len() - 3)
            } else if addrs.is_empty() {
                "<unset>".into()
            } else {
                addrs.join(",")
            };
            vec![
                name,
                json!(s(&obj["addressType"])),
                json!(if ports.is_empty() {
                    "<unset>".into()
                } else {
                    ports.join(",")
                }),
                json!(shown),
                age,
            ]
        }
        ("", "Node") => node_cells(obj, name, age),
        ("", "Event") | ("events.k8s.io", "Event") => event_cells(obj),
        ("", "Namespace") => vec![name, json!(s(&status["phase"])), age],
        ("", "Secret") => vec![
            name,
            json!(s(&obj["type"])),
            json!(obj["data"].as_object().map_or(0, |m| m.len())),
            age,
        ],
        ("", "ConfigMap") => vec![
            name,
            json!(
                obj["data"].as_object().map_or(0, |m| m.len())
                    + obj["binaryData"].as_object().map_or(0, |m| m.len())
            ),
            age,
        ],
        ("", "ServiceAccount") => vec![name, age],
        ("", "PersistentVolume") => {
            let claim = &spec["claimRef"];
            let claim = if claim.is_object() {
                format!("{}/{}", s(&claim["namespace"]), s(&claim["name"]))
            } else {
                String::new()
            };
            vec![
                name,
                json!(s(&spec["capacity"]["storage"])),
                json!(access_modes(&spec["accessModes"])),
                json!(s(&spec["persistentVolumeReclaimPolicy"])),
                json!(s(&status["phase"])),
                json!(claim),
                json!(s(&spec["storageClassName"])),
                json!(or_unset(s(&spec["volumeAttributesClassName"]))),
                json!(s(&status["reason"])),
                age,
                json!(or_default(s(&spec["volumeMode"]), "Filesystem")),
            ]
        }
        ("", "PersistentVolumeClaim") => {
            let bound = s(&status["phase"]) == "Bound";
            vec![
                name,
                json!(s(&status["phase"])),
                json!(s(&spec["volumeName"])),
                json!(if bound {
                    s(&status["capacity"]["storage"])
                } else {
                    ""
                }),
                json!(if bound {
                    access_modes(&status["accessModes"])
                } else {
                    String::new()
                }),
                json!(s(&spec["storageClassName"])),
                json!(or_unset(s(&spec["volumeAttributesClassName"]))),
                age,
                json!(or_default(s(&spec["volumeMode"]), "Filesystem")),
            ]
        }
        ("rbac.authorization.k8s.io", "RoleBinding" | "ClusterRoleBinding") => {
            let (mut users, mut groups, mut sas) = (Vec::new(), Vec::new(), Vec::new());
            for subject in list(&obj["subjects"]) {
                let n = s(&subject["name"]);
                match s(&subject["kind"]) {
                    "User" => users.push(n.to_string()),
                    "Group" => groups.push(n.to_string()),
                    "ServiceAccount" => {
                        sas.push(format!("{}/{n}", s(&subject["namespace"])));
                    }
                    _ => {}
                }
            }
            let role = &obj["roleRef"];
            vec![
                name,
                json!(format!("{}/{}", s(&role["kind"]), s(&role["name"]))),
                age,
                json!(users.join(", ")),
                json!(groups.join(", ")),
                json!(sas.join(", ")),
            ]
        }
        ("autoscaling", "HorizontalPodAutoscaler") => {
            let target = &spec["scaleTargetRef"];
            vec![
                name,
                json!(format!("{}/{}", s(&target["kind"]), s(&target["name"]))),
                json!(hpa_targets(obj)),
                json!(
                    spec["minReplicas"]
                        .as_i64()
                        .map_or("<unset>".into(), |n| n.to_string())
                ),
                json!(int(&spec["maxReplicas"])),
                json!(int(&status["currentReplicas"])),
                age,
            ]
        }
        ("storage.k8s.io", "StorageClass") => {
            let mut class_name = s(&meta["name"]).to_string();
            if meta["annotations"]["storageclass.kubernetes.io/is-default-class"] == "true" {
                class_name.push_str(" (default)");
            }
            vec![
                json!(class_name),
                json!(s(&obj["provisioner"])),
                json!(or_default(s(&obj["reclaimPolicy"]), "Delete")),
                json!(or_default(s(&obj["volumeBindingMode"]), "Immediate")),
                json!(obj["allowVolumeExpansion"].as_bool().unwrap_or(false)),
                age,
            ]
        }
        ("coordination.k8s.io", "Lease") => {
            vec![name, json!(s(&spec["holderIdentity"])), age]
        }
        ("", "ResourceQuota") => quota_cells(obj, name, age),
        ("scheduling.k8s.io", "PriorityClass") => vec![
            name,
            json!(int(&obj["value"])),
            json!(obj["globalDefault"].as_bool().unwrap_or(false)),
            age,
            json!(s(&obj["preemptionPolicy"])),
        ],
        ("policy", "PodDisruptionBudget") => {
            let show = |v: &Value| match v {
                Value::Null => "N/A".to_string(),
                Value::String(x) => x.clone(),
                other => other.to_string(),
            };
            vec![
                name,
                json!(show(&spec["minAvailable"])),
                json!(show(&spec["maxUnavailable"])),
                json!(int(&status["disruptionsAllowed"])),
                age,
            ]
        }
        (
            "admissionregistration.k8s.io",
            "ValidatingWebhookConfiguration" | "MutatingWebhookConfiguration",
        ) => vec![name, json!(list(&obj["webhooks"]).len()), age],
        ("apiextensions.k8s.io", "CustomResourceDefinition") => {
            let served: Vec<&str> = list(&spec["versions"])
                .iter()
                .filter(|v| v["served"] != false)
                .map(|v| s(&v["name"]))
                .collect();
            let established = list(&status["conditions"])
                .iter()
                .any(|c| c["type"] == "Established" && c["status"] == "True");
            let short: Vec<&str> = list(&spec["names"]["shortNames"]).iter().map(s).collect();
            vec![
                name,
                json!(s(&spec["scope"])),
                json!(served.join(",")),
                meta["creationTimestamp"].clone(),
                json!(s(&spec["group"])),
                json!(s(&spec["names"]["kind"])),
                json!(short.join(",")),
                json!(established),
            ]
        }
        _ => vec![name, meta["creationTimestamp"].clone()],
    }
}

fn or_unset(x: &str) -> String {
    if x.is_empty() {
        "<unset>".into()
    } else {
        x.to_string()
    }
}

fn or_default(x: &str, default: &str) -> String {
    if x.is_empty() {
        default.into()
    } else {
        x.to_string()
    }
}

/// `RWO,ROX` from access modes.
fn access_modes(modes: &Value) -> String {
    let short = |m: &str| match m {
        "ReadWriteOnce" => "RWO",
        "ReadOnlyMany" => "ROX",
        "ReadWriteMany" => "RWX",
        "ReadWriteOncePod" => "RWOP",
        _ => "",
    };
    let mut out: Vec<&str> = Vec::new();
    for m in list(modes) {
        let x = short(s(m));
        if !x.is_empty() && !out.contains(&x) {
            out.push(x);
        }
    }
    out.join(",")
}

fn pod_cells(pod: &Value, name: Value, age: Value) -> Vec<Value> {
    let spec = &pod["spec"];
    let status = &pod["status"];
    let mut reason = s(&status["phase"]).to_string();
    if !s(&status["reason"]).is_empty() {
        reason = s(&status["reason"]).to_string();
    }
    let conditions = list(&status["conditions"]);
    if conditions
        .iter()
        .any(|c| c["type"] == "PodScheduled" && c["reason"] == "SchedulingGated")
    {
        reason = "SchedulingGated".into();
    }
    let total = list(&spec["containers"]).len();
    let mut ready = 0;
    let mut restarts = 0;
    let mut initializing = false;
    let inits = list(&spec["initContainers"]).len();
    for (i, c) in list(&status["initContainerStatuses"]).iter().enumerate() {
        restarts += int(&c["restartCount"]);
        let state = &c["state"];
        if state["terminated"].is_object() && int(&state["terminated"]["exitCode"]) == 0 {
            continue;
        }
        reason = if state["terminated"].is_object() {
            let t = &state["terminated"];
            if !s(&t["reason"]).is_empty() {
                format!("Init:{}", s(&t["reason"]))
            } else if int(&t["signal"]) != 0 {
                format!("Init:Signal:{}", int(&t["signal"]))
            } else {
                format!("Init:ExitCode:{}", int(&t["exitCode"]))
            }
        } else if !s(&state["waiting"]["reason"]).is_empty()
            && s(&state["waiting"]["reason"]) != "PodInitializing"
        {
            format!("Init:{}", s(&state["waiting"]["reason"]))
        } else {
            format!("Init:{i}/{inits}")
        };
        initializing = true;
        break;
    }
    if !initializing {
        restarts = 0;
        let mut has_running = false;
        let mut error_reason = String::new();
        for c in list(&status["containerStatuses"]).iter().rev() {
            restarts += int(&c["restartCount"]);
            let state = &c["state"];
            if !s(&state["waiting"]["reason"]).is_empty() {
                reason = s(&state["waiting"]["reason"]).to_string();
            } else if state["terminated"].is_object() {
                let t = &state["terminated"];
                reason = if !s(&t["reason"]).is_empty() {
                    s(&t["reason"]).to_string()
                } else if int(&t["signal"]) != 0 {
                    format!("Signal:{}", int(&t["signal"]))
                } else {
                    format!("ExitCode:{}", int(&t["exitCode"]))
                };
                if int(&t["exitCode"]) != 0 {
                    error_reason = reason.clone();
                }
            } else if c["ready"] == true && state["running"].is_object() {
                has_running = true;
                ready += 1;
            }
        }
        if reason == "Completed" {
            let pod_ready = conditions
                .iter()
                .any(|c| c["type"] == "Ready" && c["status"] == "True");
            if has_running && pod_ready {
                reason = "Running".into();
            } else if !error_reason.is_empty() {
                reason = error_reason;
            } else if has_running {
                reason = "NotReady".into();
            }
        }
    }
    let phase = s(&status["phase"]);
    if pod["metadata"]["deletionTimestamp"].is_string() {
        if s(&status["reason"]) == "NodeLost" {
            reason = "Unknown".into();
        } else if phase != "Succeeded" && phase != "Failed" {
            reason = "Terminating".into();
        }
    }
    let ip = list(&status["podIPs"])
        .first()
        .map(|p| s(&p["ip"]))
        .unwrap_or("");
    let gates = list(&spec["readinessGates"]);
    let gates = if gates.is_empty() {
        "<none>".to_string()
    } else {
        let true_gates = gates
            .iter()
            .filter(|g| {
                conditions
                    .iter()
                    .any(|c| c["type"] == g["conditionType"] && c["status"] == "True")
            })
            .count();
        format!("{true_gates}/{}", gates.len())
    };
    vec![
        name,
        json!(format!("{ready}/{total}")),
        json!(reason),
        json!(restarts.to_string()),
        age,
        json!(or_none(ip)),
        json!(or_none(s(&spec["nodeName"]))),
        json!(or_none(s(&status["nominatedNodeName"]))),
        json!(gates),
    ]
}

fn service_cells(svc: &Value, name: Value, age: Value) -> Vec<Value> {
    let spec = &svc["spec"];
    let ty = s(&spec["type"]);
    let external_ips: Vec<&str> = list(&spec["externalIPs"]).iter().map(s).collect();
    let external = match ty {
        "ClusterIP" | "NodePort" | "" if !external_ips.is_empty() => external_ips.join(","),
        "ClusterIP" | "NodePort" => "<none>".into(),
        "LoadBalancer" => {
            let lb = load_balancer(&svc["status"]);
            let mut all: Vec<String> = if lb.is_empty() {
                Vec::new()
            } else {
                lb.split(',').map(String::from).collect()
            };
            all.extend(external_ips.iter().map(|x| x.to_string()));
            if all.is_empty() {
                "<pending>".into()
            } else {
                all.join(",")
            }
        }
        "ExternalName" => s(&spec["externalName"]).to_string(),
        _ => "<unknown>".into(),
    };
    let ports: Vec<String> = list(&spec["ports"])
        .iter()
        .map(|p| {
            let protocol = or_default(s(&p["protocol"]), "TCP");
            match int(&p["nodePort"]) {
                0 => format!("{}/{protocol}", int(&p["port"])),
                n => format!("{}:{n}/{protocol}", int(&p["port"])),
            }
        })
        .collect();
    let cluster_ip = list(&spec["clusterIPs"])
        .first()
        .map(s)
        .unwrap_or_else(|| s(&spec["clusterIP"]));
    let cluster_ip = if cluster_ip.is_empty() || cluster_ip == "None" && ty == "ExternalName" {
        "<none>".to_string()
    } else {
        cluster_ip.to_string()
    };
    vec![
        name,
        json!(ty),
        json!(cluster_ip),
        json!(external),
        json!(if ports.is_empty() {
            "<none>".into()
        } else {
            ports.join(",")
        }),
        age,
        json!(format_labels(&spec["selector"])),
    ]
}

fn endpoints(ep: &Value) -> String {
    let mut shown = Vec::new();
    let mut total = 0;
    for subset in list(&ep["subsets"]) {
        let ports = list(&subset["ports"]);
        for a in list(&subset["addresses"]) {
            let ip = s(&a["ip"]);
            if ports.is_empty() {
                total += 1;
                if shown.len() < 3 {
                    shown.push(ip.to_string());
                }
            }
            for p in ports {
                total += 1;
                if shown.len() < 3 {
                    shown.push(format!("{ip}:{}", int(&p["port"])));
                }
            }
        }
    }
    if shown.is_empty() {
        return "<none>".into();
    }
    let mut out = shown.join(",");
    if total > shown.len() {
        out.push_str(&format!(" + {} more...", total - shown.len()));
    }
    out
}

fn node_cells(node: &Value, name: Value, age: Value) -> Vec<Value> {
    let status = &node["status"];
    let mut conditions: Vec<&str> = list(&status["conditions"])
        .iter()
        .filter(|c| c["status"] == "True")
        .map(|c| s(&c["type"]))
        .filter(|t| *t == "Ready")
        .collect();
    if conditions.is_empty() {
        conditions.push(if list(&status["conditions"]).is_empty() {
            "Unknown"
        } else {
            "NotReady"
        });
    }
    let mut state = conditions.join(",");
    if node["spec"]["unschedulable"] == true {
        state.push_str(",SchedulingDisabled");
    }
    let mut roles: Vec<String> = node["metadata"]["labels"]
        .as_object()
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| {
            if let Some(role) = k.strip_prefix("node-role.kubernetes.io/") {
                Some(role.to_string())
            } else if k == "kubernetes.io/role" {
                Some(s(v).to_string())
            } else {
                None
            }
        })
        .filter(|r| !r.is_empty())
        .collect();
    roles.sort();
    let address = |ty: &str| {
        list(&status["addresses"])
            .iter()
            .find(|a| a["type"] == ty)
            .map(|a| s(&a["address"]).to_string())
            .unwrap_or_else(|| "<none>".into())
    };
    let info = &status["nodeInfo"];
    let unknown = |x: &str| {
        if x.is_empty() {
            "<unknown>".to_string()
        } else {
            x.to_string()
        }
    };
    let kernel = unknown(s(&info["kernelVersion"]));
    let arch = s(&info["architecture"]);
    vec![
        name,
        json!(state),
        json!(if roles.is_empty() {
            "<none>".into()
        } else {
            roles.join(",")
        }),
        age,
        json!(s(&info["kubeletVersion"])),
        json!(address("InternalIP")),
        json!(address("ExternalIP")),
        json!(unknown(s(&info["osImage"]))),
        json!(if arch.is_empty() {
            kernel
        } else {
            format!("{kernel} ({arch})")
        }),
        json!(unknown(s(&info["containerRuntimeVersion"]))),
    ]
}

fn event_cells(ev: &Value) -> Vec<Value> {
    // core/v1 and events.k8s.io/v1 name the same fields differently.
    let first = [
        &ev["firstTimestamp"],
        &ev["deprecatedFirstTimestamp"],
        &ev["eventTime"],
    ]
    .into_iter()
    .find(|t| t.is_string())
    .cloned()
    .unwrap_or(Value::Null);
    let last = [
        &ev["series"]["lastObservedTime"],
        &ev["lastTimestamp"],
        &ev["deprecatedLastTimestamp"],
        &ev["eventTime"],
    ]
    .into_iter()
    .find(|t| t.is_string())
    .cloned()
    .unwrap_or(Value::Null);
    let regarding = if ev["regarding"].is_object() {
        &ev["regarding"]
    } else {
        &ev["involvedObject"]
    };
    let component = [
        &ev["source"]["component"],
        &ev["deprecatedSource"]["component"],
        &ev["reportingController"],
    ]
    .into_iter()
    .map(s)
    .find(|x| !x.is_empty())
    .unwrap_or("");
    let host = [
        &ev["source"]["host"],
        &ev["deprecatedSource"]["host"],
        &ev["reportingInstance"],
    ]
    .into_iter()
    .map(s)
    .find(|x| !x.is_empty())
    .unwrap_or("");
    let source = if host.is_empty() {
        component.to_string()
    } else {
        format!("{component}, {host}")
    };
    let count = ev["series"]["count"]
        .as_i64()
        .or(ev["count"].as_i64())
        .or(ev["deprecatedCount"].as_i64())
        .unwrap_or(1);
    let message = [&ev["message"], &ev["note"]]
        .into_iter()
        .map(s)
        .find(|x| !x.is_empty())
        .unwrap_or("");
    vec![
        json!(age(&last)),
        json!(s(&ev["type"])),
        json!(s(&ev["reason"])),
        json!(format!(
            "{}/{}",
            s(&regarding["kind"]).to_ascii_lowercase(),
            s(&regarding["name"])
        )),
        json!(s(&regarding["fieldPath"])),
        json!(source),
        json!(message.trim()),
        json!(age(&first)),
        json!(count),
        json!(s(&ev["metadata"]["name"])),
    ]
}

fn job_status(job: &Value) -> &'static str {
    let has = |ty: &str| {
        list(&job["status"]["conditions"])
            .iter()
            .any(|c| c["type"] == ty && c["status"] == "True")
    };
    if has("Complete") {
        "Complete"
    } else if has("Failed") {
        "Failed"
    } else if job["metadata"]["deletionTimestamp"].is_string() {
        "Terminating"
    } else if has("Suspended") {
        "Suspended"
    } else if has("FailureTarget") {
        "FailureTarget"
    } else if has("SuccessCriteriaMet") {
        "SuccessCriteriaMet"
    } else {
        "Running"
    }
}

fn job_completions(job: &Value) -> String {
    let succeeded = int(&job["status"]["succeeded"]);
    let spec = &job["spec"];
    match spec["completions"].as_i64() {
        Some(c) => format!("{succeeded}/{c}"),
        None => match spec["parallelism"].as_i64().unwrap_or(0) {
            p if p > 1 => format!("{succeeded}/1 of {p}"),
            _ => format!("{succeeded}/1"),
        },
    }
}

fn job_duration(status: &Value) -> String {
    let Some(started) = since(&status["startTime"]) else {
        return String::new();
    };
    match since(&status["completionTime"]) {
        Some(completed) => human_duration(started - completed),
        None => human_duration(started),
    }
}

fn hpa_targets(hpa: &Value) -> String {
    let specs = list(&hpa["spec"]["metrics"]);
    if specs.is_empty() {
        return "<none>".into();
    }
    let current = list(&hpa["status"]["currentMetrics"]);
    let mut shown = Vec::new();
    for (i, m) in specs.iter().enumerate() {
        let cur = current.get(i);
        let text = match s(&m["type"]) {
            "Resource" | "ContainerResource" => {
                let key = if s(&m["type"]) == "Resource" {
                    "resource"
                } else {
                    "containerResource"
                };
                let target = &m[key]["target"];
                let name = s(&m[key]["name"]);
                let cur = cur.map(|c| &c[key]["current"]);
                if let Some(u) = target["averageUtilization"].as_i64() {
                    let now = cur
                        .and_then(|c| c["averageUtilization"].as_i64())
                        .map_or("<unknown>".into(), |v| format!("{v}%"));
                    format!("{name}: {now}/{u}%")
                } else {
                    let now = cur
                        .and_then(|c| c["averageValue"].as_str())
                        .unwrap_or("<unknown>");
                    format!("{name}: {now}/{}", s(&target["averageValue"]))
                }
            }
            other => format!("<{other} metric>"),
        };
        shown.push(text);
    }
    if shown.len() > 2 {
        let more = shown.len() - 2;
        shown.truncate(2);
        return format!("{} + {more} more...", shown.join(", "));
    }
    shown.join(", ")
}

fn quota_cells(quota: &Value, name: Value, age: Value) -> Vec<Value> {
    let hard = quota["status"]["hard"].as_object();
    let used = &quota["status"]["used"];
    let mut requests = Vec::new();
    let mut limits = Vec::new();
    let mut keys: Vec<&String> = hard.into_iter().flat_map(|m| m.keys()).collect();
    keys.sort();
    for k in keys {
        let h = s(&quota["status"]["hard"][k.as_str()]);
        let u = used[k.as_str()].as_str().unwrap_or("0");
        let cell = format!("{k}: {u}/{h}");
        if k.starts_with("limits.") {
            limits.push(cell);
        } else {
            requests.push(cell);
        }
    }
    vec![
        name,
        json!(requests.join(", ")),
        json!(limits.join(", ")),
        age,
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apiserver::kinds::Registry;

    fn rt(group: &str, kind: &str) -> ResourceType {
        Registry::builtin().by_kind(group, kind).unwrap().clone()
    }

    #[test]
    fn ages_read_like_kubectl() {
        assert_eq!(human_duration(45), "45s");
        assert_eq!(human_duration(200), "3m20s");
        assert_eq!(human_duration(900), "15m");
        assert_eq!(human_duration(5 * 3600 + 600), "5h10m");
        assert_eq!(human_duration(30 * 3600), "30h");
        assert_eq!(human_duration(3 * 86400 + 3600), "3d1h");
        assert_eq!(human_duration(400 * 86400), "400d");
    }

    #[test]
    fn every_row_has_a_cell_per_column() {
        let objects = [
            ("", "Pod"),
            ("apps", "Deployment"),
            ("apps", "StatefulSet"),
            ("apps", "DaemonSet"),
            ("apps", "ReplicaSet"),
            ("", "ReplicationController"),
            ("batch", "Job"),
            ("batch", "CronJob"),
            ("", "Service"),
            ("networking.k8s.io", "Ingress"),
            ("", "Node"),
            ("", "Event"),
            ("events.k8s.io", "Event"),
            ("", "PersistentVolume"),
            ("", "PersistentVolumeClaim"),
            ("rbac.authorization.k8s.io", "ClusterRoleBinding"),
            ("autoscaling", "HorizontalPodAutoscaler"),
            ("apiextensions.k8s.io", "CustomResourceDefinition"),
            ("rbac.authorization.k8s.io", "Role"),
        ];
        for (group, kind) in objects {
            let t = rt(group, kind);
            let obj = json!({"metadata": {"name": "x"}});
            assert_eq!(columns(&t).len(), cells(&t, &obj).len(), "{group}/{kind}");
        }
    }

    #[test]
    fn a_deployment_row_shows_readiness_and_its_containers() {
        let obj = json!({"metadata": {"name": "web"},
            "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}},
                "template": {"spec": {"containers": [
                    {"name": "web", "image": "nginx:1.27"}, {"name": "log", "image": "busybox"}]}}},
            "status": {"readyReplicas": 2, "updatedReplicas": 3, "availableReplicas": 2}});
        let row = cells(&rt("apps", "Deployment"), &obj);
        assert_eq!(row[1], "2/3");
        assert_eq!((row[2].clone(), row[3].clone()), (json!(3), json!(2)));
        assert_eq!(row[5], "web,log");
        assert_eq!(row[6], "nginx:1.27,busybox");
        assert_eq!(row[7], "app=web");
    }

    #[test]
    fn service_rows_show_type_addresses_and_ports() {
        let t = rt("", "Service");
        let lb = json!({"metadata": {"name": "lb"}, "spec": {"type": "LoadBalancer",
            "clusterIP": "10.0.0.9", "clusterIPs": ["10.0.0.9"], "selector": {"app": "lb"},
            "ports": [{"port": 80, "nodePort": 30080, "protocol": "TCP"}]}});
        let row = cells(&t, &lb);
        assert_eq!(
            &row[1..5],
            &[
                json!("LoadBalancer"),
                json!("10.0.0.9"),
                json!("<pending>"),
                json!("80:30080/TCP")
            ]
        );
        assert_eq!(row[6], "app=lb");
        let ext = json!({"metadata": {"name": "en"}, "spec": {"type": "ExternalName",
            "externalName": "example.com"}});
        let row = cells(&t, &ext);
        assert_eq!(
            &row[1..5],
            &[
                json!("ExternalName"),
                json!("<none>"),
                json!("example.com"),
                json!("<none>")
            ]
        );
    }

    #[test]
    fn a_pod_waiting_on_its_image_shows_the_reason() {
        let pod = json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c"}]},
            "status": {"phase": "Pending", "containerStatuses": [{"name": "c", "ready": false,
                "restartCount": 0, "state": {"waiting": {"reason": "ImagePullBackOff"}}}]}});
        let row = cells(&rt("", "Pod"), &pod);
        assert_eq!(
            &row[1..4],
            &[json!("0/1"), json!("ImagePullBackOff"), json!("0")]
        );
    }
}
