//! The endpoint controllers of a simulated cluster: for every Service with a selector,
//! an `Endpoints` object of the same name and `EndpointSlice`s (one per set of
//! ports) listing the IPs of the Pods it selects, ready or not, with each Service port
//! resolved against the Pod's containers (a named `targetPort` by container port
//! name), as the real controllers write them. Services without a selector are left to
//! whoever manages their endpoints; the Endpoints of a deleted Service go with it (the
//! slices, owned by the Service, go through garbage collection).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use serde_json::{Map, Value, json};

use crate::apiserver::kinds::ResourceType;
use crate::apiserver::store::{DeleteOptions, Filter, Store, Stored};
use crate::controllers::common::controller_ref;
use crate::controllers::common::is_ready;
use crate::controllers::common::{CONTROLLER, Memory, controller_write};

const SERVICE_NAME: &str = "kubernetes.io/service-name";
const SLICE_MANAGER_LABEL: &str = "endpointslice.kubernetes.io/managed-by";
const SLICE_MANAGER: &str = "endpointslice-controller.k8s.io";
const ENDPOINTS_MANAGER_LABEL: &str = "endpoints.kubernetes.io/managed-by";
const ENDPOINTS_MANAGER: &str = "endpoint-controller";

struct Types {
    service: ResourceType,
    pod: ResourceType,
    endpoints: ResourceType,
    slice: ResourceType,
}

fn types(store: &Store) -> Option<Types> {
    Some(Types {
        service: store.registry.by_kind("", "Service")?.clone(),
        pod: store.registry.by_kind("", "Pod")?.clone(),
        endpoints: store.registry.by_kind("", "Endpoints")?.clone(),
        slice: store
            .registry
            .by_kind("discovery.k8s.io", "EndpointSlice")?
            .clone(),
    })
}

/// The newest resourceVersion and the number of objects, per namespace.
fn per_namespace(objects: &[Arc<Stored>], into: &mut HashMap<String, (u64, usize)>) {
    for o in objects {
        let e = into.entry(o.namespace.clone()).or_default();
        e.0 = e.0.max(o.rv);
        e.1 += 1;
    }
}

/// Brings the endpoints of every Service whose namespace changed up to date.
pub(crate) fn sync(
    store: &mut Store,
    memory: &mut Memory,
    now: Instant,
    live: &mut HashSet<String>,
) {
    let Some(t) = types(store) else {
        return;
    };
    let all = Filter::default();
    let (services, _, _) = store.list(&t.service, &all, None, None);
    let (pods, _, _) = store.list(&t.pod, &all, None, None);
    let (endpoints, _, _) = store.list(&t.endpoints, &all, None, None);
    let (slices, _, _) = store.list(&t.slice, &all, None, None);
    let mut pods_by_ns: HashMap<&str, Vec<Arc<Stored>>> = HashMap::new();
    for p in &pods {
        pods_by_ns
            .entry(p.namespace.as_str())
            .or_default()
            .push(p.clone());
    }
    let mut slices_by_service: HashMap<(&str, &str), Vec<Arc<Stored>>> = HashMap::new();
    for sl in &slices {
        if sl.labels.get(SLICE_MANAGER_LABEL).and_then(Value::as_str) == Some(SLICE_MANAGER)
            && let Some(svc) = sl.labels.get(SERVICE_NAME).and_then(Value::as_str)
        {
            slices_by_service
                .entry((sl.namespace.as_str(), svc))
                .or_default()
                .push(sl.clone());
        }
    }
    let mut changes = HashMap::new();
    per_namespace(&pods, &mut changes);
    per_namespace(&endpoints, &mut changes);
    per_namespace(&slices, &mut changes);
    for svc in &services {
        live.insert(svc.uid.clone());
        let (newest, count) = changes.get(&svc.namespace).copied().unwrap_or_default();
        let sig = (svc.rv, newest, count);
        if !memory.needs_look(&svc.uid, sig, now) {
            continue;
        }
        let in_ns = pods_by_ns
            .get(svc.namespace.as_str())
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        let own = slices_by_service
            .get(&(svc.namespace.as_str(), svc.name.as_str()))
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        sync_service(store, &t, &svc.value(), in_ns, own);
        memory.looked_at(&svc.uid, sig, None);
    }
    // Endpoints of Services that are gone.
    for ep in &endpoints {
        if ep
            .labels
            .get(ENDPOINTS_MANAGER_LABEL)
            .and_then(Value::as_str)
            == Some(ENDPOINTS_MANAGER)
            && !store.exists(&t.service, Some(&ep.namespace), &ep.name)
        {
            let _ = store.delete(
                &t.endpoints,
                Some(&ep.namespace),
                &ep.name,
                &DeleteOptions::default(),
            );
        }
    }
}

/// One Pod's address and the ports it serves, as the controllers list them.
struct Address {
    pod: String,
    ip: String,
    ready: bool,
    uid: Value,
    ports: Vec<(String, i64, String)>,
}

/// The endpoints of one Service, from the Pods of its namespace; `slices` are the
/// EndpointSlices the controller made for it before.
fn sync_service(
    store: &mut Store,
    t: &Types,
    svc: &Value,
    pods: &[Arc<Stored>],
    slices: &[Arc<Stored>],
) {
    let meta = &svc["metadata"];
    let ns = meta["namespace"].as_str().unwrap_or("");
    let name = meta["name"].as_str().unwrap_or("");
    let Some(selector) = svc["spec"]["selector"]
        .as_object()
        .filter(|s| !s.is_empty())
    else {
        return;
    };
    if svc["spec"]["type"] == "ExternalName" || !meta["deletionTimestamp"].is_null() {
        return;
    }
    let mut addresses: Vec<Address> = pods
        .iter()
        .filter(|p| p.namespace == ns && selector.iter().all(|(k, v)| p.labels.get(k) == Some(v)))
        .map(|p| p.value())
        .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
        .filter_map(|p| {
            let ip = p["status"]["podIP"].as_str()?.to_string();
            Some(Address {
                pod: p["metadata"]["name"].as_str().unwrap_or("").to_string(),
                ip,
                ready: is_ready(&p),
                uid: p["metadata"]["uid"].clone(),
                ports: resolve_ports(svc, &p),
            })
        })
        .filter(|a| {
            !a.ports.is_empty() || svc["spec"]["ports"].as_array().is_none_or(Vec::is_empty)
        })
        .collect();
    addresses.sort_by(|a, b| a.pod.cmp(&b.pod));
    let mut groups: BTreeMap<Vec<(String, i64, String)>, Vec<&Address>> = BTreeMap::new();
    for a in &addresses {
        groups.entry(a.ports.clone()).or_default().push(a);
    }
    let target = |a: &Address| json!({"kind": "Pod", "namespace": ns, "name": a.pod, "uid": a.uid});
    let mut labels: Map<String, Value> = meta["labels"].as_object().cloned().unwrap_or_default();
    if svc["spec"]["clusterIP"] == "None" {
        labels.insert("service.kubernetes.io/headless".into(), json!(""));
    }

    // Endpoints: one subset per set of ports, addresses sorted by IP.
    let subsets: Vec<Value> = groups
        .iter()
        .map(|(ports, members)| {
            let mut subset = Map::new();
            let mut sorted = members.clone();
            sorted.sort_by(|a, b| a.ip.cmp(&b.ip));
            for (field, ready) in [("addresses", true), ("notReadyAddresses", false)] {
                let list: Vec<Value> = sorted
                    .iter()
                    .filter(|a| a.ready == ready)
                    .map(|a| json!({"ip": a.ip, "nodeName": crate::controllers::common::NODE, "targetRef": target(a)}))
                    .collect();
                if !list.is_empty() {
                    subset.insert(field.into(), json!(list));
                }
            }
            let ports: Vec<Value> = ports
                .iter()
                .map(|(n, port, proto)| {
                    let mut p = json!({"port": port, "protocol": proto});
                    if !n.is_empty() {
                        p["name"] = json!(n);
                    }
                    p
                })
                .collect();
            if !ports.is_empty() {
                subset.insert("ports".into(), json!(ports));
            }
            Value::Object(subset)
        })
        .collect();
    let mut ep_labels = labels.clone();
    ep_labels.insert(ENDPOINTS_MANAGER_LABEL.into(), json!(ENDPOINTS_MANAGER));
    let mut desired = json!({"apiVersion": "v1", "kind": "Endpoints",
        "metadata": {"name": name, "namespace": ns, "labels": ep_labels}});
    if !subsets.is_empty() {
        desired["subsets"] = json!(subsets);
    }
    let write = controller_write(CONTROLLER, false);
    match store.get(&t.endpoints, Some(ns), name) {
        Ok(current) => {
            if current["subsets"] != desired["subsets"]
                || current["metadata"]["labels"] != desired["metadata"]["labels"]
            {
                let mut updated = (*current).clone();
                updated["metadata"]["labels"] = desired["metadata"]["labels"].take();
                match desired.get("subsets") {
                    Some(s) => updated["subsets"] = s.clone(),
                    None => {
                        updated.as_object_mut().map(|m| m.remove("subsets"));
                    }
                }
                if let Err(e) = store.update(&t.endpoints, "v1", Some(ns), name, updated, &write) {
                    tracing::warn!(service = name, error = %e.message, "simulated endpoint controller could not write");
                }
            }
        }
        Err(_) => {
            if let Err(e) = store.create(&t.endpoints, "v1", Some(ns), desired, &write) {
                tracing::warn!(service = name, error = %e.message, "simulated endpoint controller could not write");
            }
        }
    }

    // EndpointSlices: one per set of ports, a placeholder when no Pod is selected.
    let mut slice_labels = labels;
    slice_labels.insert(SERVICE_NAME.into(), json!(name));
    slice_labels.insert(SLICE_MANAGER_LABEL.into(), json!(SLICE_MANAGER));
    let mut wanted: Vec<Value> = groups
        .iter()
        .map(|(ports, members)| {
            let endpoints: Vec<Value> = members
                .iter()
                .map(|a| {
                    json!({"addresses": [a.ip],
                    "conditions": {"ready": a.ready, "serving": a.ready, "terminating": false},
                    "nodeName": crate::controllers::common::NODE, "targetRef": target(a)})
                })
                .collect();
            let ports: Vec<Value> = ports
                .iter()
                .map(|(n, port, proto)| json!({"name": n, "port": port, "protocol": proto}))
                .collect();
            json!({"endpoints": endpoints, "ports": ports})
        })
        .collect();
    if wanted.is_empty() {
        wanted.push(json!({"endpoints": []}));
    }
    let mut existing: Vec<Value> = slices.iter().map(|s| s.value()).collect();
    existing.sort_by(|a, b| {
        a["metadata"]["name"]
            .as_str()
            .cmp(&b["metadata"]["name"].as_str())
    });
    let labels = Value::Object(slice_labels);
    for (i, want) in wanted.iter().enumerate() {
        match existing.get(i) {
            Some(current) => {
                if current["endpoints"] != want["endpoints"]
                    || current["ports"] != want["ports"]
                    || current["metadata"]["labels"] != labels
                {
                    let mut updated = current.clone();
                    updated["metadata"]["labels"] = labels.clone();
                    updated["endpoints"] = want["endpoints"].clone();
                    match want.get("ports") {
                        Some(p) => updated["ports"] = p.clone(),
                        None => {
                            updated.as_object_mut().map(|m| m.remove("ports"));
                        }
                    }
                    let slice_name = current["metadata"]["name"]
                        .as_str()
                        .unwrap_or("")
                        .to_string();
                    if let Err(e) =
                        store.update(&t.slice, "v1", Some(ns), &slice_name, updated, &write)
                    {
                        tracing::warn!(service = name, error = %e.message, "simulated endpointslice controller could not write");
                    }
                }
            }
            None => {
                let mut body = json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                    "metadata": {"generateName": format!("{name}-"), "namespace": ns,
                        "labels": labels, "ownerReferences": [controller_ref(svc)]},
                    "addressType": "IPv4", "endpoints": want["endpoints"]});
                if let Some(p) = want.get("ports") {
                    body["ports"] = p.clone();
                }
                if let Err(e) = store.create(&t.slice, "v1", Some(ns), body, &write) {
                    tracing::warn!(service = name, error = %e.message, "simulated endpointslice controller could not write");
                }
            }
        }
    }
    for extra in existing.iter().skip(wanted.len()) {
        let slice_name = extra["metadata"]["name"].as_str().unwrap_or("");
        let _ = store.delete(&t.slice, Some(ns), slice_name, &DeleteOptions::default());
    }
}

/// The Service's ports as a Pod serves them: (name, port, protocol), a named
/// `targetPort` looked up among the Pod's container ports; a port the Pod does not
/// have is left out.
fn resolve_ports(svc: &Value, pod: &Value) -> Vec<(String, i64, String)> {
    let mut out = Vec::new();
    for p in svc["spec"]["ports"].as_array().into_iter().flatten() {
        let name = p["name"].as_str().unwrap_or("").to_string();
        let protocol = p["protocol"].as_str().unwrap_or("TCP").to_string();
        let target = if p["targetPort"].is_null() {
            &p["port"]
        } else {
            &p["targetPort"]
        };
        let port = match target {
            Value::Number(n) => n.as_i64(),
            Value::String(s) => match s.parse::<i64>() {
                Ok(n) => Some(n),
                Err(_) => pod["spec"]["containers"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .flat_map(|c| c["ports"].as_array().into_iter().flatten())
                    .find(|cp| cp["name"] == *s)
                    .and_then(|cp| cp["containerPort"].as_i64()),
            },
            _ => None,
        };
        if let Some(port) = port {
            out.push((name, port, protocol));
        }
    }
    out
}
