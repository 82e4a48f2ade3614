//! Name references: after prefixes, suffixes, namespaces and hash suffixes have renamed
//! objects, fields that refer to them by name (a Deployment's ConfigMap volume, a
//! RoleBinding's roleRef, an Ingress backend, ...) are rewritten to the new names.

use serde_json::Value;

use super::KustomizeError;
use super::resource::{Gvk, ResId, Resource};

/// A kind that can be referred to, and the paths (in referrers of a kind) that name it.
struct Referral {
    group: &'static str,
    kind: &'static str,
    referrers: Vec<(&'static str, &'static str, String)>, // (group filter, kind, path)
}

/// Pod spec location per workload kind.
const POD_SPECS: &[(&str, &str)] = &[
    ("Pod", "spec"),
    ("PodTemplate", "template/spec"),
    ("ReplicationController", "spec/template/spec"),
    ("Deployment", "spec/template/spec"),
    ("ReplicaSet", "spec/template/spec"),
    ("DaemonSet", "spec/template/spec"),
    ("StatefulSet", "spec/template/spec"),
    ("Job", "spec/template/spec"),
    ("CronJob", "spec/jobTemplate/spec/template/spec"),
];

fn in_pod_specs(rel: &[&str]) -> Vec<(&'static str, &'static str, String)> {
    let mut out = Vec::new();
    for (kind, base) in POD_SPECS {
        for r in rel {
            out.push(("", *kind, format!("{base}/{r}")));
        }
    }
    out
}

fn table() -> Vec<Referral> {
    let config_map = in_pod_specs(&[
        "volumes/configMap/name",
        "containers/env/valueFrom/configMapKeyRef/name",
        "initContainers/env/valueFrom/configMapKeyRef/name",
        "containers/envFrom/configMapRef/name",
        "initContainers/envFrom/configMapRef/name",
        "volumes/projected/sources/configMap/name",
    ]);
    let mut secret = in_pod_specs(&[
        "volumes/secret/secretName",
        "containers/env/valueFrom/secretKeyRef/name",
        "initContainers/env/valueFrom/secretKeyRef/name",
        "containers/envFrom/secretRef/name",
        "initContainers/envFrom/secretRef/name",
        "imagePullSecrets/name",
        "volumes/projected/sources/secret/name",
    ]);
    secret.extend([
        ("", "ServiceAccount", "imagePullSecrets/name".to_string()),
        ("", "ServiceAccount", "secrets/name".to_string()),
        ("", "Ingress", "spec/tls/secretName".to_string()),
    ]);
    let mut service_account = in_pod_specs(&["serviceAccountName"]);
    service_account.extend([
        ("", "RoleBinding", "subjects".to_string()),
        ("", "ClusterRoleBinding", "subjects".to_string()),
    ]);
    let mut pvc = in_pod_specs(&["volumes/persistentVolumeClaim/claimName"]);
    pvc.retain(|(_, k, _)| *k != "PodTemplate");
    let priority = in_pod_specs(&["priorityClassName"]);
    let scale = ["Deployment", "ReplicaSet", "StatefulSet", "ReplicationController"];
    let mut out: Vec<Referral> = scale
        .iter()
        .map(|k| Referral {
            group: "",
            kind: k,
            referrers: vec![("", "HorizontalPodAutoscaler", "spec/scaleTargetRef/name".into())],
        })
        .collect();
    out.extend([
        Referral { group: "", kind: "ConfigMap", referrers: config_map },
        Referral { group: "", kind: "Secret", referrers: secret },
        Referral {
            group: "",
            kind: "Service",
            referrers: vec![
                ("", "StatefulSet", "spec/serviceName".into()),
                ("", "Ingress", "spec/rules/http/paths/backend/serviceName".into()),
                ("", "Ingress", "spec/backend/serviceName".into()),
                ("", "Ingress", "spec/rules/http/paths/backend/service/name".into()),
                ("", "Ingress", "spec/defaultBackend/service/name".into()),
                ("", "APIService", "spec/service/name".into()),
                ("", "ValidatingWebhookConfiguration", "webhooks/clientConfig/service".into()),
                ("", "MutatingWebhookConfiguration", "webhooks/clientConfig/service".into()),
            ],
        },
        Referral {
            group: "rbac.authorization.k8s.io",
            kind: "Role",
            referrers: vec![("", "RoleBinding", "roleRef/name".into())],
        },
        Referral {
            group: "rbac.authorization.k8s.io",
            kind: "ClusterRole",
            referrers: vec![
                ("", "RoleBinding", "roleRef/name".into()),
                ("", "ClusterRoleBinding", "roleRef/name".into()),
            ],
        },
        Referral { group: "", kind: "ServiceAccount", referrers: service_account },
        Referral { group: "", kind: "PersistentVolumeClaim", referrers: pvc },
        Referral {
            group: "",
            kind: "PersistentVolume",
            referrers: vec![("", "PersistentVolumeClaim", "spec/volumeName".into())],
        },
        Referral {
            group: "storage.k8s.io",
            kind: "StorageClass",
            referrers: vec![
                ("", "PersistentVolume", "spec/storageClassName".into()),
                ("", "PersistentVolumeClaim", "spec/storageClassName".into()),
                ("", "StatefulSet", "spec/volumeClaimTemplates/spec/storageClassName".into()),
            ],
        },
        Referral { group: "scheduling.k8s.io", kind: "PriorityClass", referrers: priority },
        Referral {
            group: "networking.k8s.io",
            kind: "IngressClass",
            referrers: vec![("", "Ingress", "spec/ingressClassName".into())],
        },
    ]);
    out
}

/// What the rewrite needs to know about a candidate referral.
struct Candidate {
    cur: ResId,
    prev: Vec<ResId>,
    prefixes: Vec<String>,
    suffixes: Vec<String>,
}

fn subset_for(referrer: &Resource, all: &[Resource]) -> Vec<usize> {
    let rid = referrer.cur_id();
    if rid.gvk.is_cluster_scoped() {
        return (0..all.len()).collect();
    }
    let mut binding_namespaces: Vec<String> = Vec::new();
    if rid.gvk.kind == "RoleBinding"
        && let Some(Value::Array(subjects)) = referrer.obj.get("subjects")
    {
        for s in subjects {
            if s.get("kind").and_then(Value::as_str) == Some("ServiceAccount")
                && let Some(ns) = s.get("namespace").and_then(Value::as_str)
            {
                binding_namespaces.push(ns.to_string());
            }
        }
    }
    all.iter()
        .enumerate()
        .filter(|(_, c)| {
            let id = c.cur_id();
            id.gvk.is_cluster_scoped()
                || id.effective_namespace() == rid.effective_namespace()
                || binding_namespaces.iter().any(|n| n == c.namespace())
        })
        .map(|(i, _)| i)
        .collect()
}

fn selected(id: &ResId, group: &str, kind: &str) -> bool {
    id.gvk.is_selected_by(group, "", kind)
}

fn select_referral<'c>(
    old_name: &str,
    cands: Vec<&'c Candidate>,
    referral: &Referral,
    referrer: &Resource,
    path: &str,
    same_identity: &dyn Fn(&[&Candidate]) -> bool,
) -> Result<Option<&'c Candidate>, KustomizeError> {
    let mut c: Vec<&Candidate> = cands
        .into_iter()
        .filter(|c| c.prev.iter().any(|p| p.name == old_name))
        .filter(|c| c.prev.iter().any(|p| selected(p, referral.group, referral.kind)))
        .collect();
    if path.ends_with("roleRef/name") {
        let rr = referrer.obj.get("roleRef");
        let g = rr.and_then(|r| r.get("apiGroup")).and_then(Value::as_str);
        let k = rr.and_then(|r| r.get("kind")).and_then(Value::as_str);
        if let (Some(g), Some(k)) = (g, k) {
            c.retain(|c| c.prev.iter().any(|p| selected(p, g, k)));
        }
    }
    let rid = referrer.cur_id();
    if !rid.gvk.is_cluster_scoped() {
        c.retain(|c| {
            c.cur.gvk.is_cluster_scoped()
                || c.cur.gvk.kind == "ServiceAccount"
                || c.cur.effective_namespace() == rid.effective_namespace()
        });
    }
    if c.len() == 1 {
        return Ok(Some(c[0]));
    }
    c.retain(|x| affixes_equal(x, referrer, true));
    if c.len() > 1 {
        c.retain(|x| affixes_equal(x, referrer, false));
    }
    match c.len() {
        0 => Ok(None),
        1 => Ok(Some(c[0])),
        _ if same_identity(&c) => Ok(Some(c[0])),
        _ => Err(KustomizeError::NameReference {
            message: format!(
                "{}: field '{path}' refers to '{old_name}', which matches several objects: {}",
                referrer.cur_id(),
                c.iter().map(|x| x.cur.to_string()).collect::<Vec<_>>().join(", ")
            ),
        }),
    }
}

fn visit_refs(
    node: &mut Value,
    segs: &[&str],
    f: &mut dyn FnMut(&mut Value) -> Result<(), KustomizeError>,
) -> Result<(), KustomizeError> {
    if let Value::Array(items) = node {
        for item in items {
            visit_refs(item, segs, f)?;
        }
        return Ok(());
    }
    let Some((first, rest)) = segs.split_first() else {
        return f(node);
    };
    if let Some(child) = node.as_object_mut().and_then(|m| m.get_mut(*first)) {
        visit_refs(child, rest, f)?;
    }
    Ok(())
}

/// Rewrites every name reference in `all` to the current name of what it refers to.
pub fn fix_name_references(all: &mut [Resource]) -> Result<(), KustomizeError> {
    let table = table();
    let cands: Vec<Candidate> = all
        .iter()
        .map(|r| Candidate {
            cur: r.cur_id(),
            prev: r.prev_ids.clone(),
            prefixes: r.prefixes.clone(),
            suffixes: r.suffixes.clone(),
        })
        .collect();
    for i in 0..all.len() {
        let subset_idx = subset_for(&all[i], all);
        let org_gvk: Gvk = all[i].org_id().gvk;
        for referral in &table {
            for (group, kind, path) in &referral.referrers {
                if !org_gvk.is_selected_by(group, "", kind) {
                    continue;
                }
                let segs: Vec<&str> = path.split('/').collect();
                let referrer = all[i].clone();
                let mut obj = Value::Object(std::mem::take(&mut all[i].obj));
                let subset: Vec<&Candidate> = subset_idx.iter().map(|j| &cands[*j]).collect();
                let result = visit_refs(&mut obj, &segs, &mut |v| {
                    match v {
                        Value::String(old) => {
                            let names_same = |c: &[&Candidate]| c.iter().all(|x| x.cur.name == c[0].cur.name);
                            if let Some(hit) = select_referral(old, subset.clone(), referral, &referrer, path, &names_same)? {
                                *old = hit.cur.name.clone();
                            }
                        }
                        Value::Object(m) => {
                            if referral.kind == "ServiceAccount"
                                && m.get("kind").and_then(Value::as_str).is_some_and(|k| k != "ServiceAccount")
                            {
                                return Ok(());
                            }
                            let Some(old) = m.get("name").and_then(Value::as_str).map(String::from) else {
                                return Ok(());
                            };
                            let by_ns: Vec<&Candidate> = match m.get("namespace").and_then(Value::as_str) {
                                None => subset.clone(),
                                Some(ns) => {
                                    let orig: Vec<&Candidate> = cands
                                        .iter()
                                        .filter(|c| c.prev.first().unwrap_or(&c.cur).effective_namespace() == ns)
                                        .collect();
                                    if orig.is_empty() {
                                        cands.iter().filter(|c| c.cur.effective_namespace() == ns).collect()
                                    } else {
                                        orig
                                    }
                                }
                            };
                            let same = |c: &[&Candidate]| {
                                c.iter().all(|x| x.cur.name == c[0].cur.name && x.cur.namespace == c[0].cur.namespace)
                            };
                            if let Some(hit) = select_referral(&old, by_ns, referral, &referrer, path, &same)? {
                                m.insert("name".into(), Value::String(hit.cur.name.clone()));
                                if !hit.cur.namespace.is_empty() {
                                    m.insert("namespace".into(), Value::String(hit.cur.namespace.clone()));
                                }
                            }
                        }
                        _ => {}
                    }
                    Ok(())
                });
                all[i].obj = match obj {
                    Value::Object(m) => m,
                    _ => Default::default(),
                };
                result?;
            }
        }
    }
    Ok(())
}

fn affixes_equal(c: &Candidate, r: &Resource, allow_empty: bool) -> bool {
    fn same_ending(a: &[String], b: &[String]) -> bool {
        let (short, long) = if a.len() <= b.len() { (a, b) } else { (b, a) };
        long[long.len() - short.len()..] == *short
    }
    let ok = |x: &[String], y: &[String]| {
        (allow_empty && (x.is_empty() || y.is_empty())) || same_ending(x, y)
    };
    ok(&c.prefixes, &r.prefixes) && ok(&c.suffixes, &r.suffixes)
}
