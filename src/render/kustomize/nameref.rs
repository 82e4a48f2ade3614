//! Name references: after prefixes, suffixes, namespaces and hash suffixes have renamed
//! objects, fields that refer to them by name (a Deployment's ConfigMap volume, a
//! RoleBinding's roleRef, an Ingress backend, ...) are rewritten to the new names.

use std::collections::HashMap;

use serde_json::Value;

use super::KustomizeError;
use super::config::NameBackRef;
use super::fields::split_path;
use super::resource::{Gvk, ResId, Resource};

/// A kind that can be referred to, and the paths (in referrers of a kind) that name it.
struct Referral {
    group: String,
    kind: String,
    referrers: Vec<(String, String, String)>, // (group filter, kind, path)
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

fn in_pod_specs(rel: &[&str]) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    for (kind, base) in POD_SPECS {
        for r in rel {
            out.push((String::new(), kind.to_string(), format!("{base}/{r}")));
        }
    }
    out
}

fn on(kind: &str, path: &str) -> (String, String, String) {
    (String::new(), kind.to_string(), path.to_string())
}

fn referral(group: &str, kind: &str, referrers: Vec<(String, String, String)>) -> Referral {
    Referral {
        group: group.to_string(),
        kind: kind.to_string(),
        referrers,
    }
}

fn table(custom: &[NameBackRef]) -> Vec<Referral> {
    let mut config_map = in_pod_specs(&[
        "volumes/configMap/name",
        "containers/env/valueFrom/configMapKeyRef/name",
        "initContainers/env/valueFrom/configMapKeyRef/name",
        "containers/envFrom/configMapRef/name",
        "initContainers/envFrom/configMapRef/name",
        "volumes/projected/sources/configMap/name",
    ]);
    config_map.extend([
        on("Node", "spec/configSource/configMap"),
        on("Role", "rules/resourceNames"),
        on("ClusterRole", "rules/resourceNames"),
        on(
            "Ingress",
            "metadata/annotations/nginx.ingress.kubernetes.io\\/fastcgi-params-configmap",
        ),
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
        on("ServiceAccount", "imagePullSecrets/name"),
        on("ServiceAccount", "secrets/name"),
        on("Ingress", "spec/tls/secretName"),
        on(
            "Ingress",
            "metadata/annotations/ingress.kubernetes.io\\/auth-secret",
        ),
        on(
            "Ingress",
            "metadata/annotations/nginx.ingress.kubernetes.io\\/auth-secret",
        ),
        on(
            "Ingress",
            "metadata/annotations/nginx.ingress.kubernetes.io\\/auth-tls-secret",
        ),
        on("StorageClass", "parameters/secretName"),
        on("StorageClass", "parameters/adminSecretName"),
        on("StorageClass", "parameters/userSecretName"),
        on("StorageClass", "parameters/secretRef"),
        on("Role", "rules/resourceNames"),
        on("ClusterRole", "rules/resourceNames"),
        (
            "serving.knative.dev".to_string(),
            "Service".to_string(),
            "spec/template/spec/containers/env/valueFrom/secretKeyRef/name".to_string(),
        ),
        on("PersistentVolume", "spec/azureFile/secretName"),
    ]);
    let mut service_account = in_pod_specs(&["serviceAccountName"]);
    service_account.retain(|(_, k, _)| k != "PodTemplate" && k != "ReplicaSet");
    service_account.extend([
        on("RoleBinding", "subjects"),
        on("ClusterRoleBinding", "subjects"),
    ]);
    let mut pvc = in_pod_specs(&["volumes/persistentVolumeClaim/claimName"]);
    pvc.retain(|(_, k, _)| k != "PodTemplate" && k != "ReplicaSet");
    let mut priority = in_pod_specs(&["priorityClassName"]);
    priority.retain(|(_, k, _)| k != "PodTemplate" && k != "ReplicaSet");
    let scale = [
        "Deployment",
        "ReplicaSet",
        "StatefulSet",
        "ReplicationController",
    ];
    let mut out: Vec<Referral> = scale
        .iter()
        .map(|k| {
            referral(
                "",
                k,
                vec![on("HorizontalPodAutoscaler", "spec/scaleTargetRef/name")],
            )
        })
        .collect();
    out.extend([
        referral("", "ConfigMap", config_map),
        referral("", "Secret", secret),
        referral(
            "",
            "Service",
            vec![
                on("StatefulSet", "spec/serviceName"),
                on("Ingress", "spec/rules/http/paths/backend/serviceName"),
                on("Ingress", "spec/backend/serviceName"),
                on("Ingress", "spec/rules/http/paths/backend/service/name"),
                on("Ingress", "spec/defaultBackend/service/name"),
                on("APIService", "spec/service/name"),
                on(
                    "ValidatingWebhookConfiguration",
                    "webhooks/clientConfig/service",
                ),
                on(
                    "MutatingWebhookConfiguration",
                    "webhooks/clientConfig/service",
                ),
            ],
        ),
        referral(
            "rbac.authorization.k8s.io",
            "Role",
            vec![on("RoleBinding", "roleRef/name")],
        ),
        referral(
            "rbac.authorization.k8s.io",
            "ClusterRole",
            vec![
                on("RoleBinding", "roleRef/name"),
                on("ClusterRoleBinding", "roleRef/name"),
            ],
        ),
        referral("", "ServiceAccount", service_account),
        referral("", "PersistentVolumeClaim", pvc),
        referral(
            "",
            "PersistentVolume",
            vec![
                on("PersistentVolumeClaim", "spec/volumeName"),
                on("ClusterRole", "rules/resourceNames"),
            ],
        ),
        referral(
            "storage.k8s.io",
            "StorageClass",
            vec![
                on("PersistentVolume", "spec/storageClassName"),
                on("PersistentVolumeClaim", "spec/storageClassName"),
                on(
                    "StatefulSet",
                    "spec/volumeClaimTemplates/spec/storageClassName",
                ),
            ],
        ),
        referral("scheduling.k8s.io", "PriorityClass", priority),
        referral(
            "networking.k8s.io",
            "IngressClass",
            vec![on("Ingress", "spec/ingressClassName")],
        ),
        referral(
            "admissionregistration.k8s.io",
            "ValidatingAdmissionPolicy",
            vec![on("ValidatingAdmissionPolicyBinding", "spec/policyName")],
        ),
    ]);
    for b in custom {
        let referrers = b
            .field_specs
            .iter()
            .map(|f| (f.group.to_string(), f.kind.to_string(), f.path.to_string()))
            .collect();
        out.push(referral(&b.group, &b.kind, referrers));
    }
    out
}

/// A referral kind, a referrer path and its segments.
type ReferrerPath<'a> = (&'a Referral, &'a str, &'a str, Vec<&'a str>);

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
            cluster_scoped: cur.gvk.is_cluster_scoped_in_kustomize(),
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
    // kustomize's SameEndingSubSlice: an empty list matches only an empty list.
    fn same_ending(a: &[String], b: &[String]) -> bool {
        let (short, long) = if a.len() <= b.len() { (a, b) } else { (b, a) };
        if short.is_empty() {
            return long.is_empty();
        }
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
                .any(|p| selected(p, &referral.group, &referral.kind))
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

/// Visits the values at `segs` (lists are entered element by element). As in
/// kustomize, a value that is neither a map, a list nor null where the path goes on
/// (`env[].valueFrom: cfg`) is an error: the object is malformed where a reference
/// is looked for.
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
    match node {
        Value::Object(m) => {
            if let Some(child) = m.get_mut(*first) {
                visit_refs(child, rest, f)?;
            }
            Ok(())
        }
        Value::Null => Ok(()),
        other => Err(KustomizeError::NameReference {
            message: format!(
                "found the value {other} where a map holding '{}' is expected",
                segs.join("/")
            ),
        }),
    }
}

fn rewrite_one(
    v: &mut Value,
    id: &str,
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
            // A reference written as a map must name its object, even when nothing it
            // could refer to was renamed: kustomize checks every one.
            if !m.contains_key("name") {
                return Err(KustomizeError::NameReference {
                    message: format!(
                        "{id}: field '{path}' refers to a {} but has no 'name'; add the name or remove the field (kustomize refuses it too)",
                        referral.kind
                    ),
                });
            }
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
pub fn fix_name_references(
    all: &mut [Resource],
    custom: &[NameBackRef],
) -> Result<(), KustomizeError> {
    // kustomize refuses a RoleBinding whose ServiceAccount subject has a blank
    // `namespace:` (null) while it fixes name references.
    for r in all.iter() {
        if r.gvk().kind != "RoleBinding" {
            continue;
        }
        if let Some(Value::Array(subjects)) = r.obj.get("subjects") {
            for s in subjects {
                let is_sa = s.get("kind").and_then(Value::as_str) == Some("ServiceAccount");
                if is_sa && s.get("namespace").is_some_and(|ns| !ns.is_string()) {
                    return Err(KustomizeError::NameReference {
                        message: format!(
                            "{}: subject ServiceAccount '{}' has a blank namespace; give it one or remove the field (kustomize refuses it too)",
                            r.cur_id(),
                            s.get("name").and_then(Value::as_str).unwrap_or("")
                        ),
                    });
                }
            }
        }
    }
    let table = table(custom);
    let cands: Vec<Candidate> = all
        .iter()
        .map(|r| {
            let cur = r.cur_id();
            Candidate {
                cluster_scoped: cur.gvk.is_cluster_scoped_in_kustomize(),
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
    // Referrer kind -> (referral, path segments).
    let mut by_kind: HashMap<&str, Vec<ReferrerPath<'_>>> = HashMap::new();
    let segments: Vec<Vec<Vec<String>>> = table
        .iter()
        .map(|r| r.referrers.iter().map(|(_, _, p)| split_path(p)).collect())
        .collect();
    for (referral, segs) in table.iter().zip(&segments) {
        for ((group, kind, path), segs) in referral.referrers.iter().zip(segs) {
            by_kind.entry(kind).or_default().push((
                referral,
                group.as_str(),
                path.as_str(),
                segs.iter().map(String::as_str).collect(),
            ));
        }
    }
    let any_kind = by_kind.remove("").unwrap_or_default();
    for r in all.iter_mut() {
        let org_gvk: Gvk = r.org_id().gvk;
        let entries: Vec<&ReferrerPath<'_>> = by_kind
            .get(org_gvk.kind.as_str())
            .into_iter()
            .flatten()
            .chain(any_kind.iter())
            .filter(|(_, g, _, _)| g.is_empty() || *g == org_gvk.group)
            .collect();
        if entries.is_empty() {
            continue;
        }
        let referrer = Referrer::of(r);
        let id = r.cur_id().to_string();
        let mut obj = Value::Object(std::mem::take(&mut r.obj));
        let mut result = Ok(());
        for (referral, _, path, segs) in entries {
            result = visit_refs(&mut obj, segs, &mut |v| {
                rewrite_one(v, &id, referral, &referrer, path, &cands, &by_prev_name)
            })
            .map_err(|e| match e {
                KustomizeError::NameReference { message } if !message.starts_with(&id) => {
                    KustomizeError::NameReference {
                        message: format!(
                            "{id}: field '{path}': {message}; fix the object (kustomize refuses it too)"
                        ),
                    }
                }
                other => other,
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
