//! The resource types a simulated cluster serves: the built-in kinds the agent and
//! kubectl use, plus the kinds registered by CustomResourceDefinitions, and the
//! discovery documents (`/api`, `/apis`, `/apis/<group>/<version>`) built from them.

use std::collections::BTreeMap;

use serde_json::{Value, json};

/// How a resource's lists merge under server-side apply when no built-in rule applies:
/// custom resources take `x-kubernetes-list-type: map` keys from their CRD schema.
pub type ListKeys = BTreeMap<String, Vec<String>>;

/// One served resource (`deployments` in `apps/v1`).
#[derive(Debug, Clone, PartialEq)]
pub struct ResourceType {
    /// API group, empty for the core group.
    pub group: String,
    /// Versions served, preferred first; objects are stored once and served in any.
    pub versions: Vec<String>,
    /// Kind, e.g. `Deployment`.
    pub kind: String,
    /// Lower-case plural used in URLs.
    pub plural: String,
    /// Lower-case singular.
    pub singular: String,
    /// Whether objects live in namespaces.
    pub namespaced: bool,
    /// Short names for kubectl (`deploy`).
    pub short_names: Vec<String>,
    /// Whether a `/status` subresource exists (status is then ignored on the main
    /// resource, and spec on the subresource).
    pub status_subresource: bool,
    /// Associative list keys by dotted path (from a CRD's schema).
    pub list_keys: ListKeys,
    /// The CRD's `openAPIV3Schema` per version, for validation of custom resources.
    pub schema: Option<Value>,
    /// Groupings kubectl expands (`all` for `kubectl get all`).
    pub categories: Vec<String>,
    /// A CRD's `additionalPrinterColumns` by version, for Table output.
    pub printer_columns: BTreeMap<String, Vec<Value>>,
    /// Whether the resource is only ever created and answered, never stored (access
    /// and token reviews).
    pub create_only: bool,
}

impl ResourceType {
    /// `group/version` for the preferred version, `v1` for core.
    pub fn api_version(&self) -> String {
        api_version(&self.group, &self.versions[0])
    }

    /// Whether `version` is served.
    pub fn serves(&self, version: &str) -> bool {
        self.versions.iter().any(|v| v == version)
    }
}

/// `apps/v1`, or `v1` for the core group.
pub fn api_version(group: &str, version: &str) -> String {
    if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    }
}

struct Builtin {
    group: &'static str,
    version: &'static str,
    kind: &'static str,
    plural: &'static str,
    namespaced: bool,
    short: &'static [&'static str],
    status: bool,
}

const fn b(
    group: &'static str,
    version: &'static str,
    kind: &'static str,
    plural: &'static str,
    namespaced: bool,
    short: &'static [&'static str],
    status: bool,
) -> Builtin {
    Builtin {
        group,
        version,
        kind,
        plural,
        namespaced,
        short,
        status,
    }
}

const BUILTINS: &[Builtin] = &[
    b("", "v1", "Namespace", "namespaces", false, &["ns"], true),
    b("", "v1", "ConfigMap", "configmaps", true, &["cm"], false),
    b("", "v1", "Secret", "secrets", true, &[], false),
    b("", "v1", "Service", "services", true, &["svc"], true),
    b(
        "",
        "v1",
        "ServiceAccount",
        "serviceaccounts",
        true,
        &["sa"],
        false,
    ),
    b("", "v1", "Pod", "pods", true, &["po"], true),
    b(
        "",
        "v1",
        "PersistentVolumeClaim",
        "persistentvolumeclaims",
        true,
        &["pvc"],
        true,
    ),
    b(
        "",
        "v1",
        "PersistentVolume",
        "persistentvolumes",
        false,
        &["pv"],
        true,
    ),
    b("", "v1", "Event", "events", true, &["ev"], false),
    b("", "v1", "Endpoints", "endpoints", true, &["ep"], false),
    b(
        "",
        "v1",
        "LimitRange",
        "limitranges",
        true,
        &["limits"],
        false,
    ),
    b(
        "",
        "v1",
        "ResourceQuota",
        "resourcequotas",
        true,
        &["quota"],
        true,
    ),
    b("", "v1", "Node", "nodes", false, &["no"], true),
    b(
        "",
        "v1",
        "ReplicationController",
        "replicationcontrollers",
        true,
        &["rc"],
        true,
    ),
    b("", "v1", "PodTemplate", "podtemplates", true, &[], false),
    b(
        "apps",
        "v1",
        "Deployment",
        "deployments",
        true,
        &["deploy"],
        true,
    ),
    b(
        "apps",
        "v1",
        "StatefulSet",
        "statefulsets",
        true,
        &["sts"],
        true,
    ),
    b("apps", "v1", "DaemonSet", "daemonsets", true, &["ds"], true),
    b(
        "apps",
        "v1",
        "ReplicaSet",
        "replicasets",
        true,
        &["rs"],
        true,
    ),
    b(
        "apps",
        "v1",
        "ControllerRevision",
        "controllerrevisions",
        true,
        &[],
        false,
    ),
    b("batch", "v1", "Job", "jobs", true, &[], true),
    b("batch", "v1", "CronJob", "cronjobs", true, &["cj"], true),
    b(
        "networking.k8s.io",
        "v1",
        "Ingress",
        "ingresses",
        true,
        &["ing"],
        true,
    ),
    b(
        "networking.k8s.io",
        "v1",
        "IngressClass",
        "ingressclasses",
        false,
        &[],
        false,
    ),
    b(
        "networking.k8s.io",
        "v1",
        "NetworkPolicy",
        "networkpolicies",
        true,
        &["netpol"],
        false,
    ),
    b(
        "autoscaling",
        "v2",
        "HorizontalPodAutoscaler",
        "horizontalpodautoscalers",
        true,
        &["hpa"],
        true,
    ),
    b(
        "policy",
        "v1",
        "PodDisruptionBudget",
        "poddisruptionbudgets",
        true,
        &["pdb"],
        true,
    ),
    b(
        "rbac.authorization.k8s.io",
        "v1",
        "Role",
        "roles",
        true,
        &[],
        false,
    ),
    b(
        "rbac.authorization.k8s.io",
        "v1",
        "RoleBinding",
        "rolebindings",
        true,
        &[],
        false,
    ),
    b(
        "rbac.authorization.k8s.io",
        "v1",
        "ClusterRole",
        "clusterroles",
        false,
        &[],
        false,
    ),
    b(
        "rbac.authorization.k8s.io",
        "v1",
        "ClusterRoleBinding",
        "clusterrolebindings",
        false,
        &[],
        false,
    ),
    b(
        "apiextensions.k8s.io",
        "v1",
        "CustomResourceDefinition",
        "customresourcedefinitions",
        false,
        &["crd", "crds"],
        true,
    ),
    b(
        "discovery.k8s.io",
        "v1",
        "EndpointSlice",
        "endpointslices",
        true,
        &[],
        false,
    ),
    b(
        "coordination.k8s.io",
        "v1",
        "Lease",
        "leases",
        true,
        &[],
        false,
    ),
    b(
        "events.k8s.io",
        "v1",
        "Event",
        "events",
        true,
        &["ev"],
        false,
    ),
    b(
        "storage.k8s.io",
        "v1",
        "StorageClass",
        "storageclasses",
        false,
        &["sc"],
        false,
    ),
    b(
        "scheduling.k8s.io",
        "v1",
        "PriorityClass",
        "priorityclasses",
        false,
        &["pc"],
        false,
    ),
    b(
        "admissionregistration.k8s.io",
        "v1",
        "ValidatingWebhookConfiguration",
        "validatingwebhookconfigurations",
        false,
        &[],
        false,
    ),
    b(
        "admissionregistration.k8s.io",
        "v1",
        "MutatingWebhookConfiguration",
        "mutatingwebhookconfigurations",
        false,
        &[],
        false,
    ),
];

/// `kubectl get all` and friends: the categories a real server puts kinds in.
const CATEGORIES: &[(&str, &str, &[&str])] = &[
    ("", "pods", &["all"]),
    ("", "replicationcontrollers", &["all"]),
    ("", "services", &["all"]),
    ("apps", "daemonsets", &["all"]),
    ("apps", "deployments", &["all"]),
    ("apps", "replicasets", &["all"]),
    ("apps", "statefulsets", &["all"]),
    ("autoscaling", "horizontalpodautoscalers", &["all"]),
    ("batch", "cronjobs", &["all"]),
    ("batch", "jobs", &["all"]),
    (
        "apiextensions.k8s.io",
        "customresourcedefinitions",
        &["api-extensions"],
    ),
    (
        "admissionregistration.k8s.io",
        "mutatingwebhookconfigurations",
        &["api-extensions"],
    ),
    (
        "admissionregistration.k8s.io",
        "validatingwebhookconfigurations",
        &["api-extensions"],
    ),
];

/// Versions served besides the preferred one (objects are stored once; see
/// `http::in_version` for the conversion).
const OLDER_VERSIONS: &[(&str, &str, &str)] = &[("autoscaling", "horizontalpodautoscalers", "v1")];

/// Resources that are created and answered but never stored: a real server computes
/// the answer from its authenticator and authorizer. The simulator has neither, so
/// every review says yes (see `crate::apiserver::reviews`).
const REVIEWS: &[(&str, &str, &str, bool)] = &[
    (
        "authorization.k8s.io",
        "SelfSubjectAccessReview",
        "selfsubjectaccessreviews",
        false,
    ),
    (
        "authorization.k8s.io",
        "SelfSubjectRulesReview",
        "selfsubjectrulesreviews",
        false,
    ),
    (
        "authorization.k8s.io",
        "SubjectAccessReview",
        "subjectaccessreviews",
        false,
    ),
    (
        "authorization.k8s.io",
        "LocalSubjectAccessReview",
        "localsubjectaccessreviews",
        true,
    ),
    (
        "authentication.k8s.io",
        "SelfSubjectReview",
        "selfsubjectreviews",
        false,
    ),
    (
        "authentication.k8s.io",
        "TokenReview",
        "tokenreviews",
        false,
    ),
];

/// Every resource type a cluster serves, keyed by (group, plural).
#[derive(Debug, Clone)]
pub struct Registry {
    types: BTreeMap<(String, String), ResourceType>,
}

impl Default for Registry {
    fn default() -> Self {
        Self::builtin()
    }
}

impl Registry {
    /// The built-in kinds only.
    pub fn builtin() -> Registry {
        let mut types = BTreeMap::new();
        for bi in BUILTINS {
            let mut versions = vec![bi.version.to_string()];
            versions.extend(
                OLDER_VERSIONS
                    .iter()
                    .filter(|(g, p, _)| *g == bi.group && *p == bi.plural)
                    .map(|(_, _, v)| v.to_string()),
            );
            let categories = CATEGORIES
                .iter()
                .find(|(g, p, _)| *g == bi.group && *p == bi.plural)
                .map(|(_, _, c)| c.iter().map(|c| c.to_string()).collect())
                .unwrap_or_default();
            let t = ResourceType {
                group: bi.group.into(),
                versions,
                kind: bi.kind.into(),
                plural: bi.plural.into(),
                singular: bi.kind.to_ascii_lowercase(),
                namespaced: bi.namespaced,
                short_names: bi.short.iter().map(|s| s.to_string()).collect(),
                status_subresource: bi.status,
                list_keys: ListKeys::new(),
                schema: None,
                categories,
                printer_columns: BTreeMap::new(),
                create_only: false,
            };
            types.insert((t.group.clone(), t.plural.clone()), t);
        }
        for (group, kind, plural, namespaced) in REVIEWS {
            let t = ResourceType {
                group: group.to_string(),
                versions: vec!["v1".into()],
                kind: kind.to_string(),
                plural: plural.to_string(),
                singular: kind.to_ascii_lowercase(),
                namespaced: *namespaced,
                short_names: Vec::new(),
                status_subresource: false,
                list_keys: ListKeys::new(),
                schema: None,
                categories: Vec::new(),
                printer_columns: BTreeMap::new(),
                create_only: true,
            };
            types.insert((t.group.clone(), t.plural.clone()), t);
        }
        Registry { types }
    }

    /// The type served at `group`/`version`/`plural`.
    pub fn by_plural(&self, group: &str, version: &str, plural: &str) -> Option<&ResourceType> {
        self.types
            .get(&(group.to_string(), plural.to_string()))
            .filter(|t| t.serves(version))
    }

    /// The type of `kind` in `group` (any version).
    pub fn by_kind(&self, group: &str, kind: &str) -> Option<&ResourceType> {
        self.types
            .values()
            .find(|t| t.group == group && t.kind == kind)
    }

    /// Registers (or replaces) a type, as an established CRD does.
    pub fn insert(&mut self, t: ResourceType) {
        self.types.insert((t.group.clone(), t.plural.clone()), t);
    }

    /// Removes a type, as deleting its CRD does.
    pub fn remove(&mut self, group: &str, plural: &str) -> Option<ResourceType> {
        self.types.remove(&(group.to_string(), plural.to_string()))
    }

    /// All types.
    pub fn all(&self) -> impl Iterator<Item = &ResourceType> {
        self.types.values()
    }

    /// Groups other than core with their versions, in discovery order.
    fn groups(&self) -> BTreeMap<&str, Vec<&str>> {
        let mut groups: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for t in self.types.values().filter(|t| !t.group.is_empty()) {
            let vs = groups.entry(&t.group).or_default();
            for v in &t.versions {
                if !vs.contains(&v.as_str()) {
                    vs.push(v);
                }
            }
        }
        groups
    }

    /// `GET /api`.
    pub fn core_versions(&self) -> Value {
        json!({"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": [
            {"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"}]})
    }

    /// `GET /apis`.
    pub fn group_list(&self) -> Value {
        let groups: Vec<Value> = self
            .groups()
            .into_iter()
            .map(|(g, vs)| {
                let versions: Vec<Value> = vs
                    .iter()
                    .map(|v| json!({"groupVersion": format!("{g}/{v}"), "version": v}))
                    .collect();
                json!({"name": g, "versions": versions, "preferredVersion": versions[0]})
            })
            .collect();
        json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
    }

    /// `GET /apis/<group>`, or `None` when the group is not served.
    pub fn group(&self, group: &str) -> Option<Value> {
        let groups = self.groups();
        let vs = groups.get(group)?;
        let versions: Vec<Value> = vs
            .iter()
            .map(|v| json!({"groupVersion": format!("{group}/{v}"), "version": v}))
            .collect();
        Some(
            json!({"kind": "APIGroup", "apiVersion": "v1", "name": group,
            "versions": versions, "preferredVersion": versions[0]}),
        )
    }

    /// `GET /api/v1` or `/apis/<group>/<version>`, or `None` when not served.
    pub fn resource_list(&self, group: &str, version: &str) -> Option<Value> {
        let mut resources = Vec::new();
        for t in self
            .types
            .values()
            .filter(|t| t.group == group && t.serves(version))
        {
            let mut verbs = vec![
                "create",
                "delete",
                "deletecollection",
                "get",
                "list",
                "patch",
                "update",
                "watch",
            ];
            if t.create_only {
                verbs = vec!["create"];
            } else if t.group.is_empty() && t.kind == "Namespace" {
                // Namespaces are deleted one by one (their contents go with them).
                verbs.retain(|v| *v != "deletecollection");
            }
            let mut r = json!({
                "name": t.plural, "singularName": t.singular, "namespaced": t.namespaced,
                "kind": t.kind, "verbs": verbs,
            });
            if !t.short_names.is_empty() {
                r["shortNames"] = json!(t.short_names);
            }
            if !t.categories.is_empty() {
                r["categories"] = json!(t.categories);
            }
            resources.push(r);
            let sub = |name: &str, kind: &str, verbs: &[&str]| {
                json!({"name": format!("{}/{name}", t.plural), "singularName": "",
                    "namespaced": t.namespaced, "kind": kind, "verbs": verbs})
            };
            if has_scale(t) {
                let mut s = sub("scale", "Scale", &["get", "patch", "update"]);
                s["group"] = json!("autoscaling");
                s["version"] = json!("v1");
                resources.push(s);
            }
            if t.status_subresource {
                resources.push(sub("status", &t.kind, &["get", "patch", "update"]));
            }
            match (t.group.as_str(), t.kind.as_str()) {
                ("", "Namespace") => resources.push(sub("finalize", "Namespace", &["update"])),
                ("", "Pod") => resources.push(sub(
                    "ephemeralcontainers",
                    "Pod",
                    &["get", "patch", "update"],
                )),
                ("", "ServiceAccount") => {
                    let mut s = sub("token", "TokenRequest", &["create"]);
                    s["group"] = json!("authentication.k8s.io");
                    s["version"] = json!("v1");
                    resources.push(s);
                }
                _ => {}
            }
        }
        if resources.is_empty() {
            return None;
        }
        Some(json!({"kind": "APIResourceList", "apiVersion": "v1",
            "groupVersion": api_version(group, version), "resources": resources}))
    }
}

/// Whether `t` has a `/scale` subresource (`kubectl scale`, autoscalers).
pub fn has_scale(t: &ResourceType) -> bool {
    matches!(
        (t.group.as_str(), t.kind.as_str()),
        ("apps", "Deployment" | "StatefulSet" | "ReplicaSet") | ("", "ReplicationController")
    )
}

/// Reads the resource type a CustomResourceDefinition declares, or the reason it
/// cannot be served (reported as 422 on create, as a real server validates CRDs).
pub fn type_from_crd(crd: &Value) -> Result<ResourceType, Vec<(String, String)>> {
    let spec = &crd["spec"];
    let mut errors = Vec::new();
    let s = |v: &Value| v.as_str().unwrap_or("").to_string();
    let group = s(&spec["group"]);
    let kind = s(&spec["names"]["kind"]);
    let plural = s(&spec["names"]["plural"]);
    let singular = match s(&spec["names"]["singular"]) {
        x if x.is_empty() => kind.to_ascii_lowercase(),
        x => x,
    };
    if group.is_empty() {
        errors.push(("spec.group".into(), "Required value".into()));
    }
    if kind.is_empty() {
        errors.push(("spec.names.kind".into(), "Required value".into()));
    }
    if plural.is_empty() {
        errors.push(("spec.names.plural".into(), "Required value".into()));
    }
    let name = s(&crd["metadata"]["name"]);
    if !plural.is_empty() && !group.is_empty() && name != format!("{plural}.{group}") {
        errors.push((
            "metadata.name".into(),
            format!("Invalid value: \"{name}\": must be spec.names.plural+\".\"+spec.group"),
        ));
    }
    let scope = s(&spec["scope"]);
    if scope != "Namespaced" && scope != "Cluster" {
        errors.push((
            "spec.scope".into(),
            format!(
                "Unsupported value: \"{scope}\": supported values: \"Cluster\", \"Namespaced\""
            ),
        ));
    }
    let mut versions = Vec::new();
    let mut storage_schema = None;
    let mut status_subresource = false;
    let mut printer_columns = BTreeMap::new();
    for v in spec["versions"].as_array().into_iter().flatten() {
        if v["served"].as_bool() == Some(false) {
            continue;
        }
        let vname = s(&v["name"]);
        if vname.is_empty() {
            errors.push(("spec.versions[].name".into(), "Required value".into()));
            continue;
        }
        if v["storage"].as_bool() == Some(true) {
            versions.insert(0, vname);
            storage_schema = v["schema"].get("openAPIV3Schema").cloned();
        } else {
            versions.push(vname);
        }
        status_subresource |= v["subresources"].get("status").is_some();
        if let Some(cols) = v["additionalPrinterColumns"].as_array() {
            printer_columns.insert(s(&v["name"]), cols.clone());
        }
    }
    if versions.is_empty() {
        errors.push((
            "spec.versions".into(),
            "Invalid value: must have exactly one version marked as storage version".into(),
        ));
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    let mut list_keys = ListKeys::new();
    if let Some(schema) = &storage_schema {
        collect_list_keys(schema, "", &mut list_keys);
    }
    Ok(ResourceType {
        group,
        versions,
        kind,
        plural,
        singular,
        namespaced: scope == "Namespaced",
        short_names: spec["names"]["shortNames"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|x| x.as_str().map(String::from))
            .collect(),
        status_subresource,
        list_keys,
        schema: storage_schema,
        categories: spec["names"]["categories"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|x| x.as_str().map(String::from))
            .collect(),
        printer_columns,
        create_only: false,
    })
}

fn collect_list_keys(schema: &Value, path: &str, out: &mut ListKeys) {
    if let Some(props) = schema["properties"].as_object() {
        for (k, v) in props {
            let p = if path.is_empty() {
                k.clone()
            } else {
                format!("{path}.{k}")
            };
            collect_list_keys(v, &p, out);
        }
    }
    if schema["type"] == "array" {
        if schema["x-kubernetes-list-type"] == "map" {
            let keys: Vec<String> = schema["x-kubernetes-list-map-keys"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|k| k.as_str().map(String::from))
                .collect();
            if !keys.is_empty() {
                out.insert(path.to_string(), keys);
            }
        }
        collect_list_keys(&schema["items"], path, out);
    }
}
