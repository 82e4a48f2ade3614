//! Name references: after prefixes, suffixes, namespaces and hash suffixes have renamed
//! objects, fields that refer to them by name (a Deployment's ConfigMap volume, a
//! RoleBinding's roleRef, an Ingress backend, ...) are rewritten to the new names.

use std::collections::HashMap;

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
    let scale = [
        "Deployment",
        "ReplicaSet",
        "StatefulSet",
        "ReplicationController",
    ];
    let mut out: Vec<Referral> = scale
        .iter()
        .map(|k| Referral {
            group: "",
            kind: k,
            referrers: vec![(
                "",
                "HorizontalPodAutoscaler",
                "spec/scaleTargetRef/name".into(),
            )],
        })
        .collect();
    out.extend([
        Referral {
            group: "",
            kind: "ConfigMap",
            referrers: config_map,
        },
        Referral {
            group: "",
            kind: "Secret",
            referrers: secret,
        },
        Referral {
            group: "",
            kind: "Service",
            referrers: vec![
                ("", "StatefulSet", "spec/serviceName".into()),
                (
                    "",
                    "Ingress",
                    "spec/rules/http/paths/backend/serviceName".into(),
                ),
                ("", "Ingress", "spec/backend/serviceName".into()),
                (
                    "",
                    "Ingress",
                    "spec/rules/http/paths/backend/service/name".into(),
                ),
                ("", "Ingress", "spec/defaultBackend/service/name".into()),
                ("", "APIService", "spec/service/name".into()),
                (
                    "",
                    "ValidatingWebhookConfiguration",
                    "webhooks/clientConfig/service".into(),
                ),
                (
                    "",
                    "MutatingWebhookConfiguration",
                    "webhooks/clientConfig/service".into(),
                ),
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
        Referral {
            group: "",
            kind: "ServiceAccount",
            referrers: service_account,
        },
        Referral {
            group: "",
            kind: "PersistentVolumeClaim",
            referrers: pvc,
        },
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
                (
                    "",
                    "StatefulSet",
                    "spec/volumeClaimTemplates/spec/storageClassName".into(),
                ),
            ],
        },
        Referral {
            group: "scheduling.k8s.io",
            kind: "PriorityClass",
            referrers: priority,
        },
        Referral {
            group: "networking.k8s.io",
            kind: "IngressClass",
            referrers: vec![("", "Ingress", "spec/ingressClassName".into())],
        },
    ]);
    out
}

/// A referral kind, a referrer path and its segments.
type ReferrerPath<'a> = (&'a Referral, &'a str, Vec<&'a str>);

/// What the rewrite needs to know about a candidate referral.
struct Candidate {
    cur: ResId,
    prev: Vec<ResId>,
    prefixes: Vec<String>,
    suffixes: Vec<String>,
    cluster_scoped: bool,
    effective_ns: String,
}

/// What the rewrite needs to know about the referrer.
struct Referrer {
    cur: ResId,
    effective_ns: String,
    cluster_scoped: bool,
    prefixes: Vec<String>,
    suffixes: Vec<String>,
    role_ref: Option<(String, String)>,
    binding_namespaces: Vec<String>,
}

impl Referrer {
    fn of(r: &Resource) -> Self {
        let cur = r.cur_id();
        let role_ref = r.obj.get("roleRef").and_then(|rr| {
            let g = rr.get("apiGroup").and_then(Value::as_str)?;
            let k = rr.get("kind").and_then(Value::as_str)?;
            Some((g.to_string(), k.to_string()))
        });
        let mut binding_namespaces = Vec::new();
        if cur.gvk.kind == "RoleBinding"
            && let Some(Value::Array(subjects)) = r.obj.get("subjects")
        {
            for s in subjects {
                if s.get("kind").and_then(Value::as_str) == Some("ServiceAccount")
                    && let Some(ns) = s.get("namespace").and_then(Value::as_str)
                {
                    binding_namespaces.push(ns.to_string());
                }
            }
        }
        Referrer {
            effective_ns: cur.effective_namespace().to_string(),
            cluster_scoped: cur.gvk.is_cluster_scoped(),
            cur,
            prefixes: r.prefixes.clone(),
            suffixes: r.suffixes.clone(),
            role_ref,
            binding_namespaces,
        }
    }

    /// kustomize's "subset that could be referenced by" this referrer.
    fn could_reference(&self, c: &Candidate) -> bool {
        self.cluster_scoped
            || c.cluster_scoped
            || c.effective_ns == self.effective_ns
            || self.binding_namespaces.contains(&c.cur.namespace)
    }
}

fn selected(id: &ResId, group: &str, kind: &str) -> bool {
    id.gvk.is_selected_by(group, "", kind)
}

fn affixes_equal(c: &Candidate, r: &Referrer, allow_empty: bool) -> bool {
    fn same_ending(a: &[String], b: &[String]) -> bool {
        let (short, long) = if a.len() <= b.len() { (a, b) } else { (b, a) };
        long[long.len() - short.len()..] == *short
    }
    let ok = |x: &[String], y: &[String]| {
        (allow_empty && (x.is_empty() || y.is_empty())) || same_ending(x, y)
    };
    ok(&c.prefixes, &r.prefixes) && ok(&c.suffixes, &r.suffixes)
}

fn select_referral<'c>(
    old_name: &str,
    cands: Vec<&'c Candidate>,
    referral: &Referral,
    referrer: &Referrer,
    path: &str,
    same_identity: &dyn Fn(&[&Candidate]) -> bool,
) -> Result<Option<&'c Candidate>, KustomizeError> {
    let mut c: Vec<&Candidate> = cands
        .into_iter()
        .filter(|c| c.prev.iter().any(|p| p.name == old_name))
        .filter(|c| {
            c.prev
                .iter()
                .any(|p| selected(p, referral.group, referral.kind))
        })
        .collect();
    if path.ends_with("roleRef/name")
        && let Some((g, k)) = &referrer.role_ref
    {
        c.retain(|c| c.prev.iter().any(|p| selected(p, g, k)));
    }
    if !referrer.cluster_scoped {
        c.retain(|c| {
            c.cluster_scoped
                || c.cur.gvk.kind == "ServiceAccount"
                || c.effective_ns == referrer.effective_ns
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
                referrer.cur,
                c.iter()
                    .map(|x| x.cur.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
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

fn rewrite_one(
    v: &mut Value,
    referral: &Referral,
    referrer: &Referrer,
    path: &str,
    cands: &[Candidate],
    by_prev_name: &HashMap<&str, Vec<usize>>,
) -> Result<(), KustomizeError> {
    let named = |name: &str| -> Vec<&Candidate> {
        by_prev_name
            .get(name)
            .map(|ix| {
                ix.iter()
                    .map(|i| &cands[*i])
                    .filter(|c| referrer.could_reference(c))
                    .collect()
            })
            .unwrap_or_default()
    };
    match v {
        Value::String(old) => {
            let names_same = |c: &[&Candidate]| c.iter().all(|x| x.cur.name == c[0].cur.name);
            if let Some(hit) =
                select_referral(old, named(old), referral, referrer, path, &names_same)?
            {
                *old = hit.cur.name.clone();
            }
        }
        Value::Object(m) => {
            if referral.kind == "ServiceAccount"
                && m.get("kind")
                    .and_then(Value::as_str)
                    .is_some_and(|k| k != "ServiceAccount")
            {
                return Ok(());
            }
            let Some(old) = m.get("name").and_then(Value::as_str).map(String::from) else {
                return Ok(());
            };
            let mut found = named(&old);
            if let Some(ns) = m.get("namespace").and_then(Value::as_str) {
                let by_original: Vec<&Candidate> = found
                    .iter()
                    .copied()
                    .filter(|c| {
                        c.prev
                            .first()
                            .map_or(c.effective_ns.as_str(), |p| p.effective_namespace())
                            == ns
                    })
                    .collect();
                found = if by_original.is_empty() {
                    found.into_iter().filter(|c| c.effective_ns == ns).collect()
                } else {
                    by_original
                };
            }
            let same = |c: &[&Candidate]| {
                c.iter()
                    .all(|x| x.cur.name == c[0].cur.name && x.cur.namespace == c[0].cur.namespace)
            };
            if let Some(hit) = select_referral(&old, found, referral, referrer, path, &same)? {
                m.insert("name".into(), Value::String(hit.cur.name.clone()));
                if !hit.cur.namespace.is_empty() {
                    m.insert("namespace".into(), Value::String(hit.cur.namespace.clone()));
                }
            }
        }
        _ => {}
    }
    Ok(())
}

/// Rewrites every name reference in `all` to the current name of what it refers to.
pub fn fix_name_references(all: &mut [Resource]) -> Result<(), KustomizeError> {
    let table = table();
    let cands: Vec<Candidate> = all
        .iter()
        .map(|r| {
            let cur = r.cur_id();
            Candidate {
                cluster_scoped: cur.gvk.is_cluster_scoped(),
                effective_ns: cur.effective_namespace().to_string(),
                cur,
                prev: r.prev_ids.clone(),
                prefixes: r.prefixes.clone(),
                suffixes: r.suffixes.clone(),
            }
        })
        .collect();
    // Only renamed objects can need a rewrite; index them by every earlier name.
    let mut by_prev_name: HashMap<&str, Vec<usize>> = HashMap::new();
    for (i, c) in cands.iter().enumerate() {
        let mut names: Vec<&str> = c.prev.iter().map(|p| p.name.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        for n in names {
            by_prev_name.entry(n).or_default().push(i);
        }
    }
    if by_prev_name.is_empty() {
        return Ok(());
    }
    // Referrer kind -> (referral, path segments).
    let mut by_kind: HashMap<&str, Vec<ReferrerPath<'_>>> = HashMap::new();
    for referral in &table {
        for (_group, kind, path) in &referral.referrers {
            by_kind.entry(kind).or_default().push((
                referral,
                path.as_str(),
                path.split('/').collect(),
            ));
        }
    }
    for r in all.iter_mut() {
        let org_gvk: Gvk = r.org_id().gvk;
        let Some(entries) = by_kind.get(org_gvk.kind.as_str()) else {
            continue;
        };
        let referrer = Referrer::of(r);
        let mut obj = Value::Object(std::mem::take(&mut r.obj));
        let mut result = Ok(());
        for (referral, path, segs) in entries {
            result = visit_refs(&mut obj, segs, &mut |v| {
                rewrite_one(v, referral, &referrer, path, &cands, &by_prev_name)
            });
            if result.is_err() {
                break;
            }
        }
        r.obj = match obj {
            Value::Object(m) => m,
            _ => Default::default(),
        };
        result?;
    }
    Ok(())
}
