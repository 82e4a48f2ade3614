//! Tenancy (DESIGN §6.1): what each app may touch, as fleet.yaml's `tenancy` says.
//!
//! A fleet repository is shared by teams that own their `apps/<app>/`; the platform
//! team owns fleet.yaml. A policy lists the namespaces an app may write to, the
//! cluster-scoped kinds it may own, kinds it may never ship, the ClusterRoles its
//! RoleBindings may refer to, and the ServiceAccount its writes are impersonated as.
//! Only fleet.yaml maps apps to policies; app.yaml has no say.
//!
//! [`check_objects`] is the matcher: pure, every rendered object against one policy,
//! each violation naming the object and the rule. The agent runs it before the dry
//! run and `rollwave validate` before merge.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;
use serde_saphyr::Spanned;

use super::FleetError;

/// `tenancy` of fleet.yaml as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TenancyFile {
    #[serde(default)]
    default_policy: Option<Spanned<String>>,
    #[serde(default)]
    policies: BTreeMap<String, Spanned<PolicyFile>>,
    #[serde(default)]
    apps: BTreeMap<String, Spanned<String>>,
}

/// One policy as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct PolicyFile {
    #[serde(default)]
    namespaces: Option<Vec<Spanned<String>>>,
    #[serde(default)]
    cluster_scoped: Vec<Spanned<String>>,
    #[serde(default)]
    deny: Vec<Spanned<String>>,
    #[serde(default)]
    cluster_roles: Vec<Spanned<String>>,
    #[serde(default)]
    service_account: Option<Spanned<String>>,
}

/// A namespace a policy allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NamespaceRule {
    /// `self`: the app's own namespace (app.yaml `namespace`).
    Own,
    /// `*`: any namespace.
    Any,
    /// A namespace by name.
    Named(String),
}

/// A set of names written as a list, where `*` means every name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NameSet {
    /// `*`.
    Any,
    /// These names only (none when empty).
    Only(Vec<String>),
}

impl NameSet {
    /// Whether `name` is in the set.
    pub fn contains(&self, name: &str) -> bool {
        match self {
            NameSet::Any => true,
            NameSet::Only(names) => names.iter().any(|n| n == name),
        }
    }

    fn describe(&self) -> String {
        match self {
            NameSet::Any => "*".into(),
            NameSet::Only(n) if n.is_empty() => "none".into(),
            NameSet::Only(n) => n.join(", "),
        }
    }
}

/// A `deny` entry: a kind, optionally only in one namespace (`RoleBinding/kube-system`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DenyRule {
    /// The kind, as Kubernetes spells it.
    pub kind: String,
    /// The namespace it is denied in; every namespace when `None`.
    pub namespace: Option<String>,
}

impl std::fmt::Display for DenyRule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.namespace {
            Some(ns) => write!(f, "{}/{ns}", self.kind),
            None => write!(f, "{}", self.kind),
        }
    }
}

/// A validated policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// Its name (the key under `tenancy.policies`).
    pub name: String,
    /// Namespaces the app's namespaced objects may be in (default: `self`).
    pub namespaces: Vec<NamespaceRule>,
    /// Cluster-scoped kinds the app may own (default: none).
    pub cluster_scoped: NameSet,
    /// Kinds the app may never ship, whatever else allows them.
    pub deny: Vec<DenyRule>,
    /// ClusterRoles a RoleBinding of the app may refer to (default: none). A RoleBinding
    /// grants its role's rules in its own namespace only, but binding `admin` there
    /// also grants rights to bind further roles: the platform chooses which.
    pub cluster_roles: NameSet,
    /// The ServiceAccount of the app's namespace whose identity the app's requests
    /// carry (Kubernetes impersonation), so the cluster's RBAC is the final word.
    pub service_account: Option<String>,
}

impl Policy {
    /// Whether this policy allows everything (namespaces `*`, cluster-scoped `*`, no
    /// deny, any ClusterRole, no impersonation): what an app has without `tenancy`.
    pub fn is_unrestricted(&self) -> bool {
        self.namespaces.contains(&NamespaceRule::Any)
            && self.cluster_scoped == NameSet::Any
            && self.deny.is_empty()
            && self.cluster_roles == NameSet::Any
            && self.service_account.is_none()
    }

    /// Whether objects may be in `namespace`, for an app whose namespace is `own`.
    fn allows_namespace(&self, namespace: &str, own: Option<&str>) -> bool {
        self.namespaces.iter().any(|r| match r {
            NamespaceRule::Own => own == Some(namespace),
            NamespaceRule::Any => true,
            NamespaceRule::Named(n) => n == namespace,
        })
    }

    fn describe_namespaces(&self, own: Option<&str>) -> String {
        if self.namespaces.is_empty() {
            return "none".into();
        }
        self.namespaces
            .iter()
            .map(|r| match (r, own) {
                (NamespaceRule::Own, Some(ns)) => format!("self = {ns}"),
                (NamespaceRule::Own, None) => "self (the app has no namespace)".into(),
                (NamespaceRule::Any, _) => "*".into(),
                (NamespaceRule::Named(n), _) => n.clone(),
            })
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Validated `tenancy`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tenancy {
    /// The policy of every app fleet.yaml does not map.
    pub default_policy: String,
    /// The policies by name.
    pub policies: BTreeMap<String, Policy>,
    /// App to policy name, with the line it is written on.
    pub apps: BTreeMap<String, (String, u64)>,
}

impl Tenancy {
    /// The policy `app` runs under.
    pub fn policy_of(&self, app: &str) -> &Policy {
        let name = self
            .apps
            .get(app)
            .map(|(p, _)| p)
            .unwrap_or(&self.default_policy);
        &self.policies[name]
    }
}

fn invalid(line: u64, message: String) -> FleetError {
    FleetError::Invalid {
        file: "fleet.yaml".into(),
        line: Some(line),
        message,
    }
}

/// Whether `s` reads as a Kubernetes kind: an upper-case letter, then letters and
/// digits (`ClusterRoleBinding`).
fn is_kind(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_uppercase())
        && chars.all(|c| c.is_ascii_alphanumeric())
        && s.len() <= 63
}

/// A list of kinds or `*`.
fn kind_set(list: &[Spanned<String>], field: &str) -> Result<NameSet, FleetError> {
    if list.iter().any(|k| k.value == "*") {
        if list.len() > 1 {
            return Err(invalid(
                list[0].referenced.line(),
                format!("{field}: '*' allows every kind; list nothing else with it"),
            ));
        }
        return Ok(NameSet::Any);
    }
    let mut kinds = Vec::new();
    for k in list {
        if !is_kind(&k.value) {
            return Err(invalid(
                k.referenced.line(),
                format!(
                    "{field}: '{}' is not a kind; write it as Kubernetes spells it, e.g. Namespace, or '*' for every kind",
                    k.value
                ),
            ));
        }
        if kinds.contains(&k.value) {
            return Err(invalid(
                k.referenced.line(),
                format!("{field}: '{}' is listed twice", k.value),
            ));
        }
        kinds.push(k.value.clone());
    }
    Ok(NameSet::Only(kinds))
}

impl PolicyFile {
    fn validate(&self, name: &str, line: u64) -> Result<Policy, FleetError> {
        let field = format!("tenancy.policies.{name}");
        if !crate::names::is_dns_label(name) {
            return Err(invalid(
                line,
                format!(
                    "tenancy.policies: '{name}' is not a valid policy name: lower-case letters, digits and '-' (at most 63)"
                ),
            ));
        }
        let namespaces = match &self.namespaces {
            None => vec![NamespaceRule::Own],
            Some(list) => {
                let mut out = Vec::new();
                for n in list {
                    let rule = match n.value.as_str() {
                        "self" => NamespaceRule::Own,
                        "*" => NamespaceRule::Any,
                        other if crate::names::is_dns_label(other) => {
                            NamespaceRule::Named(other.to_string())
                        }
                        other => {
                            return Err(invalid(
                                n.referenced.line(),
                                format!(
                                    "{field}.namespaces: '{other}' is not a namespace; write a namespace name, 'self' (the app's namespace) or '*' (any)"
                                ),
                            ));
                        }
                    };
                    if out.contains(&rule) {
                        return Err(invalid(
                            n.referenced.line(),
                            format!("{field}.namespaces: '{}' is listed twice", n.value),
                        ));
                    }
                    out.push(rule);
                }
                out
            }
        };
        let cluster_scoped = kind_set(&self.cluster_scoped, &format!("{field}.clusterScoped"))?;
        let mut deny = Vec::new();
        for d in &self.deny {
            let (kind, namespace) = match d.value.split_once('/') {
                Some((k, ns)) => (k, Some(ns)),
                None => (d.value.as_str(), None),
            };
            let ns_ok = namespace.is_none_or(crate::names::is_dns_label);
            if !is_kind(kind) || !ns_ok {
                return Err(invalid(
                    d.referenced.line(),
                    format!(
                        "{field}.deny: '{}' is not a kind with an optional namespace; write e.g. ClusterRoleBinding or RoleBinding/kube-system",
                        d.value
                    ),
                ));
            }
            let rule = DenyRule {
                kind: kind.to_string(),
                namespace: namespace.map(String::from),
            };
            if deny.contains(&rule) {
                return Err(invalid(
                    d.referenced.line(),
                    format!("{field}.deny: '{}' is listed twice", d.value),
                ));
            }
            deny.push(rule);
        }
        let mut cluster_roles = if self.cluster_roles.iter().any(|r| r.value == "*") {
            NameSet::Any
        } else {
            let mut names = Vec::new();
            for r in &self.cluster_roles {
                if !crate::names::is_dns_subdomain(&r.value.replace(':', "-")) {
                    return Err(invalid(
                        r.referenced.line(),
                        format!(
                            "{field}.clusterRoles: '{}' is not a ClusterRole name; write e.g. view, or '*' for any",
                            r.value
                        ),
                    ));
                }
                names.push(r.value.clone());
            }
            NameSet::Only(names)
        };
        let service_account = match &self.service_account {
            None => None,
            Some(sa) if crate::names::is_dns_subdomain(&sa.value) => Some(sa.value.clone()),
            Some(sa) => {
                return Err(invalid(
                    sa.referenced.line(),
                    format!(
                        "{field}.serviceAccount: '{}' is not a ServiceAccount name: lower-case letters, digits, '-' and '.'",
                        sa.value
                    ),
                ));
            }
        };
        // A wide policy written without clusterRoles still lets RoleBindings refer to
        // any ClusterRole: it may create ClusterRoleBindings anyway.
        if namespaces.contains(&NamespaceRule::Any)
            && cluster_scoped == NameSet::Any
            && self.cluster_roles.is_empty()
        {
            cluster_roles = NameSet::Any;
        }
        Ok(Policy {
            name: name.to_string(),
            namespaces,
            cluster_scoped,
            deny,
            cluster_roles,
            service_account,
        })
    }
}

impl TenancyFile {
    /// Checks the policies and the app map; `line` is where `tenancy` starts.
    pub fn validate(&self, line: u64) -> Result<Tenancy, FleetError> {
        let Some(default) = &self.default_policy else {
            return Err(invalid(
                line,
                "tenancy.defaultPolicy: required: name the policy of every app that tenancy.apps does not map, e.g. restricted".into(),
            ));
        };
        let mut policies = BTreeMap::new();
        for (name, p) in &self.policies {
            policies.insert(name.clone(), p.value.validate(name, p.referenced.line())?);
        }
        let known = if policies.is_empty() {
            "none are defined under tenancy.policies".to_string()
        } else {
            format!(
                "the policies are {}",
                policies.keys().cloned().collect::<Vec<_>>().join(", ")
            )
        };
        if !policies.contains_key(&default.value) {
            return Err(invalid(
                default.referenced.line(),
                format!(
                    "tenancy.defaultPolicy: '{}' is not a policy ({})",
                    default.value, known
                ),
            ));
        }
        let mut apps = BTreeMap::new();
        for (app, p) in &self.apps {
            if !crate::names::is_dns_label(app) {
                return Err(invalid(
                    p.referenced.line(),
                    format!("tenancy.apps: '{app}' is not an app name (a directory under apps/)"),
                ));
            }
            if !policies.contains_key(&p.value) {
                return Err(invalid(
                    p.referenced.line(),
                    format!(
                        "tenancy.apps.{app}: '{}' is not a policy ({})",
                        p.value, known
                    ),
                ));
            }
            apps.insert(app.clone(), (p.value.clone(), p.referenced.line()));
        }
        Ok(Tenancy {
            default_policy: default.value.clone(),
            policies,
            apps,
        })
    }
}

/// One object a policy refuses, and the rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// The object: `Kind/name`, or `Kind/namespace/name` when namespaced.
    pub object: String,
    /// The rule it breaks, naming the policy.
    pub rule: String,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.object, self.rule)
    }
}

fn str_at<'a>(v: &'a Value, path: &[&str]) -> &'a str {
    let mut v = v;
    for p in path {
        v = &v[*p];
    }
    v.as_str().unwrap_or("")
}

/// The namespace an in-cluster DNS name points into: `db.data.svc`,
/// `db.data.svc.cluster.local` (any cluster domain) name namespace `data`.
fn service_dns_namespace(host: &str) -> Option<&str> {
    let labels: Vec<&str> = host.trim_end_matches('.').split('.').collect();
    let svc = labels.iter().position(|l| *l == "svc")?;
    (svc >= 2).then(|| labels[svc - 1])
}

/// Checks every object against `policy` for an app whose namespace is `own`;
/// `namespaced` says whether an object's kind is namespaced (from the cluster's
/// discovery in the agent, from the built-in kinds and the rendering's CRDs before
/// merge). Returns every violation, in object order.
///
/// Rules, in order for each object: a `deny` entry matching its kind (and namespace);
/// a cluster-scoped kind must be in `clusterScoped`, and a Namespace's name must also
/// be an allowed namespace; a namespaced object must be in an allowed namespace; a
/// RoleBinding referring to a ClusterRole needs it in `clusterRoles`; a Service of type
/// ExternalName must not point at a service of a namespace the policy does not allow.
pub fn check_objects(
    policy: &Policy,
    own: Option<&str>,
    objects: &[Value],
    namespaced: &dyn Fn(&Value) -> bool,
) -> Vec<Violation> {
    let mut out = Vec::new();
    let name_of = &policy.name;
    for obj in objects {
        let kind = str_at(obj, &["kind"]);
        let name = str_at(obj, &["metadata", "name"]);
        let ns = str_at(obj, &["metadata", "namespace"]);
        let is_namespaced = namespaced(obj);
        let object = if is_namespaced && !ns.is_empty() {
            format!("{kind}/{ns}/{name}")
        } else {
            format!("{kind}/{name}")
        };
        let mut refuse = |rule: String| {
            out.push(Violation {
                object: object.clone(),
                rule,
            })
        };
        // A Namespace object is its namespace for `deny` entries.
        let deny_ns = if kind == "Namespace" && !is_namespaced {
            name
        } else {
            ns
        };
        if let Some(d) = policy
            .deny
            .iter()
            .find(|d| d.kind == kind && d.namespace.as_deref().is_none_or(|n| n == deny_ns))
        {
            refuse(format!("denied by policy '{name_of}' (deny: {d})"));
            continue;
        }
        if !is_namespaced {
            if !policy.cluster_scoped.contains(kind) {
                refuse(format!(
                    "cluster-scoped kind not allowed by policy '{name_of}'"
                ));
                continue;
            }
            if kind == "Namespace" && !policy.allows_namespace(name, own) {
                refuse(format!(
                    "namespace '{name}' not allowed by policy '{name_of}' (namespaces: {})",
                    policy.describe_namespaces(own)
                ));
            }
            continue;
        }
        if ns.is_empty() {
            refuse(format!(
                "has no namespace and the app has none (app.yaml namespace); policy '{name_of}' allows namespaces: {}",
                policy.describe_namespaces(own)
            ));
            continue;
        }
        if !policy.allows_namespace(ns, own) {
            refuse(format!(
                "namespace '{ns}' not allowed by policy '{name_of}' (namespaces: {})",
                policy.describe_namespaces(own)
            ));
            continue;
        }
        if kind == "RoleBinding"
            && str_at(obj, &["roleRef", "kind"]) == "ClusterRole"
            && !policy
                .cluster_roles
                .contains(str_at(obj, &["roleRef", "name"]))
        {
            refuse(format!(
                "roleRef ClusterRole '{}' not allowed by policy '{name_of}' (clusterRoles: {})",
                str_at(obj, &["roleRef", "name"]),
                policy.cluster_roles.describe()
            ));
            continue;
        }
        if kind == "Service" && str_at(obj, &["spec", "type"]) == "ExternalName" {
            let host = str_at(obj, &["spec", "externalName"]);
            if let Some(target) = service_dns_namespace(host)
                && !policy.allows_namespace(target, own)
            {
                refuse(format!(
                    "externalName '{host}' points into namespace '{target}', not allowed by policy '{name_of}' (namespaces: {})",
                    policy.describe_namespaces(own)
                ));
            }
        }
    }
    out
}

/// Whether `obj` is namespaced, judged without a cluster: the built-in
/// cluster-scoped kinds, and the scope of a CustomResourceDefinition among
/// `objects` for its kind; any other kind is taken as namespaced.
pub fn namespaced_offline(obj: &Value, objects: &[Value]) -> bool {
    let api_version = str_at(obj, &["apiVersion"]);
    let kind = str_at(obj, &["kind"]);
    let group = api_version.rsplit_once('/').map(|(g, _)| g).unwrap_or("");
    if crate::schema::is_cluster_scoped_kind(group, kind) {
        return false;
    }
    let crd = objects.iter().find(|c| {
        c["kind"] == "CustomResourceDefinition"
            && str_at(c, &["spec", "group"]) == group
            && str_at(c, &["spec", "names", "kind"]) == kind
    });
    crd.is_none_or(|c| str_at(c, &["spec", "scope"]) != "Cluster")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn tenancy(text: &str) -> Result<Tenancy, FleetError> {
        #[derive(Deserialize)]
        struct Wrap {
            tenancy: Spanned<TenancyFile>,
        }
        let w: Wrap = crate::yaml::parse_typed("fleet.yaml", text)?;
        w.tenancy.value.validate(w.tenancy.referenced.line())
    }

    const SPEC: &str = "tenancy:
  defaultPolicy: restricted
  policies:
    restricted:
      namespaces: [self]
      clusterScoped: [Namespace]
      deny: [ClusterRoleBinding, RoleBinding/kube-system]
      clusterRoles: [view]
      serviceAccount: rollwave-app
    platform: {namespaces: ['*'], clusterScoped: ['*']}
  apps: {platform: platform}
";

    #[test]
    fn the_designs_example_reads_as_written() {
        let t = tenancy(SPEC).unwrap();
        assert_eq!(t.default_policy, "restricted");
        let r = t.policy_of("web");
        assert_eq!(r.name, "restricted");
        assert_eq!(r.namespaces, vec![NamespaceRule::Own]);
        assert_eq!(r.cluster_scoped, NameSet::Only(vec!["Namespace".into()]));
        assert_eq!(
            r.deny,
            vec![
                DenyRule {
                    kind: "ClusterRoleBinding".into(),
                    namespace: None
                },
                DenyRule {
                    kind: "RoleBinding".into(),
                    namespace: Some("kube-system".into())
                }
            ]
        );
        assert_eq!(r.service_account.as_deref(), Some("rollwave-app"));
        let p = t.policy_of("platform");
        assert!(p.is_unrestricted(), "{p:?}");
        assert_eq!(t.apps["platform"], ("platform".into(), 11));
    }

    #[test]
    fn mistakes_name_the_line_and_the_field() {
        let cases: &[(&str, &str)] = &[
            (
                "tenancy:\n  policies: {a: {}}\n",
                "fleet.yaml:2: tenancy.defaultPolicy: required: name the policy of every app that tenancy.apps does not map, e.g. restricted",
            ),
            (
                "tenancy:\n  defaultPolicy: strict\n  policies: {a: {}}\n",
                "fleet.yaml:2: tenancy.defaultPolicy: 'strict' is not a policy (the policies are a)",
            ),
            (
                "tenancy:\n  defaultPolicy: a\n",
                "fleet.yaml:2: tenancy.defaultPolicy: 'a' is not a policy (none are defined under tenancy.policies)",
            ),
            (
                "tenancy:\n  defaultPolicy: a\n  policies: {a: {}}\n  apps:\n    web: wide\n",
                "fleet.yaml:5: tenancy.apps.web: 'wide' is not a policy (the policies are a)",
            ),
            (
                "tenancy:\n  defaultPolicy: a\n  policies:\n    a:\n      deny: [clusterrolebinding]\n",
                "fleet.yaml:5: tenancy.policies.a.deny: 'clusterrolebinding' is not a kind with an optional namespace; write e.g. ClusterRoleBinding or RoleBinding/kube-system",
            ),
            (
                "tenancy:\n  defaultPolicy: a\n  policies:\n    a:\n      deny: [RoleBinding/Kube_System]\n",
                "fleet.yaml:5: tenancy.policies.a.deny: 'RoleBinding/Kube_System' is not a kind with an optional namespace; write e.g. ClusterRoleBinding or RoleBinding/kube-system",
            ),
            (
                "tenancy:\n  defaultPolicy: a\n  policies:\n    a:\n      deny: [Secret, Secret]\n",
                "fleet.yaml:5: tenancy.policies.a.deny: 'Secret' is listed twice",
            ),
            (
                "tenancy:\n  defaultPolicy: a\n  policies:\n    a:\n      namespaces: [self, Other]\n",
                "fleet.yaml:5: tenancy.policies.a.namespaces: 'Other' is not a namespace; write a namespace name, 'self' (the app's namespace) or '*' (any)",
            ),
            (
                "tenancy:\n  defaultPolicy: a\n  policies:\n    a:\n      clusterScoped: ['*', Namespace]\n",
                "fleet.yaml:5: tenancy.policies.a.clusterScoped: '*' allows every kind; list nothing else with it",
            ),
            (
                "tenancy:\n  defaultPolicy: a\n  policies:\n    a:\n      clusterScoped: [namespace]\n",
                "fleet.yaml:5: tenancy.policies.a.clusterScoped: 'namespace' is not a kind; write it as Kubernetes spells it, e.g. Namespace, or '*' for every kind",
            ),
            (
                "tenancy:\n  defaultPolicy: a\n  policies:\n    a:\n      serviceAccount: Deployer\n",
                "fleet.yaml:5: tenancy.policies.a.serviceAccount: 'Deployer' is not a ServiceAccount name: lower-case letters, digits, '-' and '.'",
            ),
            (
                "tenancy:\n  defaultPolicy: A\n  policies:\n    A: {}\n",
                "fleet.yaml:4: tenancy.policies: 'A' is not a valid policy name: lower-case letters, digits and '-' (at most 63)",
            ),
        ];
        for (text, want) in cases {
            let got = tenancy(text).map(|_| ()).unwrap_err().to_string();
            assert_eq!(&got, want, "for:\n{text}");
        }
        let unknown =
            tenancy("tenancy:\n  defaultPolicy: a\n  policies:\n    a: {namespace: [x]}\n")
                .unwrap_err()
                .to_string();
        assert!(unknown.starts_with("fleet.yaml:4"), "{unknown}");
    }

    fn obj(api_version: &str, kind: &str, ns: &str, name: &str) -> Value {
        let mut o = json!({"apiVersion": api_version, "kind": kind, "metadata": {"name": name}});
        if !ns.is_empty() {
            o["metadata"]["namespace"] = ns.into();
        }
        o
    }

    #[test]
    fn the_matcher_decides_each_object_by_the_first_rule_it_breaks() {
        let t = tenancy(SPEC).unwrap();
        let restricted = t.policy_of("web");
        let wide = t.policy_of("platform");
        let rbac = "rbac.authorization.k8s.io/v1";
        let binding = |ns: &str, role_kind: &str, role: &str| {
            let mut b = obj(rbac, "RoleBinding", ns, "b");
            b["roleRef"] =
                json!({"apiGroup": "rbac.authorization.k8s.io", "kind": role_kind, "name": role});
            b
        };
        let external = |host: &str| {
            let mut s = obj("v1", "Service", "web", "db");
            s["spec"] = json!({"type": "ExternalName", "externalName": host});
            s
        };
        let crd = json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": "widgets.x.io"},
            "spec": {"group": "x.io", "scope": "Cluster", "names": {"kind": "Widget"}}});
        // (policy, app namespace, object, expected violation or None)
        let cases: Vec<(&Policy, Option<&str>, Value, Option<&str>)> = vec![
            (
                restricted,
                Some("web"),
                obj("apps/v1", "Deployment", "web", "web"),
                None,
            ),
            (
                restricted,
                Some("web"),
                obj("apps/v1", "Deployment", "api", "web"),
                Some(
                    "Deployment/api/web: namespace 'api' not allowed by policy 'restricted' (namespaces: self = web)",
                ),
            ),
            (
                restricted,
                None,
                obj("v1", "ConfigMap", "", "c"),
                Some(
                    "ConfigMap/c: has no namespace and the app has none (app.yaml namespace); policy 'restricted' allows namespaces: self (the app has no namespace)",
                ),
            ),
            (
                restricted,
                Some("web"),
                obj(rbac, "ClusterRoleBinding", "", "web-admin"),
                Some(
                    "ClusterRoleBinding/web-admin: denied by policy 'restricted' (deny: ClusterRoleBinding)",
                ),
            ),
            (
                restricted,
                Some("web"),
                obj(rbac, "ClusterRole", "", "web-admin"),
                Some(
                    "ClusterRole/web-admin: cluster-scoped kind not allowed by policy 'restricted'",
                ),
            ),
            (
                restricted,
                Some("web"),
                obj("v1", "Namespace", "", "web"),
                None,
            ),
            (
                restricted,
                Some("web"),
                obj("v1", "Namespace", "", "kube-system"),
                Some(
                    "Namespace/kube-system: namespace 'kube-system' not allowed by policy 'restricted' (namespaces: self = web)",
                ),
            ),
            (
                restricted,
                Some("kube-system"),
                binding("kube-system", "Role", "r"),
                Some(
                    "RoleBinding/kube-system/b: denied by policy 'restricted' (deny: RoleBinding/kube-system)",
                ),
            ),
            (restricted, Some("web"), binding("web", "Role", "r"), None),
            (
                restricted,
                Some("web"),
                binding("web", "ClusterRole", "view"),
                None,
            ),
            (
                restricted,
                Some("web"),
                binding("web", "ClusterRole", "admin"),
                Some(
                    "RoleBinding/web/b: roleRef ClusterRole 'admin' not allowed by policy 'restricted' (clusterRoles: view)",
                ),
            ),
            (
                restricted,
                Some("web"),
                external("db.web.svc.cluster.local"),
                None,
            ),
            (restricted, Some("web"), external("db.example.com"), None),
            (
                restricted,
                Some("web"),
                external("db.payments.svc.cluster.local"),
                Some(
                    "Service/web/db: externalName 'db.payments.svc.cluster.local' points into namespace 'payments', not allowed by policy 'restricted' (namespaces: self = web)",
                ),
            ),
            (
                restricted,
                Some("web"),
                external("db.payments.svc"),
                Some(
                    "Service/web/db: externalName 'db.payments.svc' points into namespace 'payments', not allowed by policy 'restricted' (namespaces: self = web)",
                ),
            ),
            (
                restricted,
                Some("web"),
                obj("x.io/v1", "Widget", "", "w"),
                Some("Widget/w: cluster-scoped kind not allowed by policy 'restricted'"),
            ),
            (
                wide,
                Some("platform"),
                obj(rbac, "ClusterRoleBinding", "", "x"),
                None,
            ),
            (
                wide,
                Some("platform"),
                obj("apps/v1", "Deployment", "kube-system", "x"),
                None,
            ),
            (
                wide,
                Some("platform"),
                binding("a", "ClusterRole", "cluster-admin"),
                None,
            ),
            (wide, Some("platform"), external("db.payments.svc"), None),
        ];
        for (policy, own, o, want) in cases {
            let objects = vec![crd.clone(), o.clone()];
            let got = check_objects(policy, own, &objects[1..], &|x| {
                namespaced_offline(x, &objects)
            });
            let got: Vec<String> = got.iter().map(ToString::to_string).collect();
            let want: Vec<String> = want.into_iter().map(String::from).collect();
            assert_eq!(got, want, "{} under {}", o, policy.name);
        }
    }

    #[test]
    fn every_violation_is_reported_not_only_the_first() {
        let t = tenancy(SPEC).unwrap();
        let objects = vec![
            obj("v1", "ConfigMap", "a", "x"),
            obj("v1", "ConfigMap", "web", "ok"),
            obj("storage.k8s.io/v1", "StorageClass", "", "fast"),
        ];
        let got = check_objects(t.policy_of("web"), Some("web"), &objects, &|o| {
            namespaced_offline(o, &objects)
        });
        assert_eq!(got.len(), 2, "{got:?}");
        assert_eq!(got[1].object, "StorageClass/fast");
    }
}
