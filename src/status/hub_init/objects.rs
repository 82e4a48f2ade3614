//! The hub's objects, a pure function of the agents: what `hub init` prints, checks
//! and applies, in the order `kubectl apply -f` needs (the namespace first).
//!
//! - the namespace;
//! - the reader Role [`READER`] (get, list and watch on ConfigMaps: the agents' watch,
//!   `rollwave status`, `plan` and `ui`), a ServiceAccount of that name for the
//!   readers that are not agents (the web view), bound with any `--reader`;
//! - per agent: ServiceAccount `rollwave-agent-<agent>`, Role and RoleBinding
//!   `rollwave-status-writer-<agent>` allowing get, update and patch on its own
//!   clusters' status objects only (`resourceNames`), RoleBinding
//!   `rollwave-status-reader-<agent>` to the reader Role, and each of its clusters'
//!   status object, empty ([`crate::status::object::placeholder`]). Kubernetes cannot
//!   limit `create` to a name, so the objects exist before their agents write: an
//!   agent allowed to create could take another cluster's object first.

use serde_json::{Value, json};

use super::{Agent, HubInitError};
use crate::status::object::placeholder;

/// The reader Role, its RoleBinding and the readers' ServiceAccount.
const READER: &str = "rollwave-status-reader";
/// The verbs an agent has on its own clusters' status objects: it writes them with
/// server-side apply (`patch`); `get` and `update` give nothing more on those names,
/// and let a person holding the agent's token look at and fix them with kubectl.
const WRITER_VERBS: [&str; 3] = ["get", "patch", "update"];
const RBAC: &str = "rbac.authorization.k8s.io";

/// The ServiceAccount an agent writes with.
pub fn agent_service_account(agent: &str) -> String {
    format!("rollwave-agent-{agent}")
}

/// The Role (and its RoleBinding) that lets an agent write its clusters' statuses.
pub fn writer_role(agent: &str) -> String {
    format!("rollwave-status-writer-{agent}")
}

/// The RoleBinding of an agent to the reader Role.
fn reader_binding(agent: &str) -> String {
    format!("{READER}-{agent}")
}

/// Someone who reads every status besides the agents: a subject of the readers'
/// RoleBinding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subject {
    /// A user, as the hub authenticates them.
    User(String),
    /// A group.
    Group(String),
    /// A ServiceAccount (namespace, name).
    ServiceAccount(String, String),
}

impl std::fmt::Display for Subject {
    /// As [`parse_subject`] reads it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Subject::User(n) => write!(f, "user:{n}"),
            Subject::Group(n) => write!(f, "group:{n}"),
            Subject::ServiceAccount(ns, n) => write!(f, "serviceaccount:{ns}:{n}"),
        }
    }
}

impl Subject {
    fn to_value(&self) -> Value {
        match self {
            Subject::User(n) => json!({"kind": "User", "apiGroup": RBAC, "name": n}),
            Subject::Group(n) => json!({"kind": "Group", "apiGroup": RBAC, "name": n}),
            Subject::ServiceAccount(ns, n) => {
                json!({"kind": "ServiceAccount", "name": n, "namespace": ns})
            }
        }
    }
}

/// `user:NAME`, `group:NAME` or `serviceaccount:NAMESPACE:NAME` (kubectl's
/// `--serviceaccount` form).
pub fn parse_subject(text: &str) -> Result<Subject, HubInitError> {
    let bad = || HubInitError::Reader(text.to_string());
    let (kind, rest) = text.split_once(':').ok_or_else(bad)?;
    let subject = match kind {
        "user" => Subject::User(rest.to_string()),
        "group" => Subject::Group(rest.to_string()),
        "serviceaccount" => {
            let (ns, name) = rest.split_once(':').ok_or_else(bad)?;
            if !crate::names::is_dns_label(ns) || !crate::names::is_dns_subdomain(name) {
                return Err(bad());
            }
            Subject::ServiceAccount(ns.to_string(), name.to_string())
        }
        _ => return Err(bad()),
    };
    match &subject {
        Subject::User(n) | Subject::Group(n) if n.is_empty() => Err(bad()),
        _ => Ok(subject),
    }
}

/// Every object the hub needs, in apply order.
#[derive(Debug, Clone, PartialEq)]
pub struct HubObjects {
    /// The hub namespace they are in.
    pub namespace: String,
    /// The objects, the namespace first.
    pub objects: Vec<Value>,
}

impl HubObjects {
    /// A multi-document YAML stream, as `kubectl apply --server-side -f -` takes it.
    pub fn to_yaml(&self) -> String {
        crate::yaml::to_yaml_stream(&self.objects)
    }
}

/// The labels of the objects other than status objects (which carry the agent's
/// own, [`placeholder`]): what they are part of, for `kubectl get -l`.
fn labels() -> Value {
    json!({"app.kubernetes.io/part-of": "rollwave", "app.kubernetes.io/component": "status-hub"})
}

fn meta(name: &str, namespace: &str) -> Value {
    json!({"name": name, "namespace": namespace, "labels": labels()})
}

fn role_binding(name: &str, namespace: &str, role: &str, subjects: Vec<Value>) -> Value {
    json!({
        "apiVersion": format!("{RBAC}/v1"),
        "kind": "RoleBinding",
        "metadata": meta(name, namespace),
        "roleRef": {"apiGroup": RBAC, "kind": "Role", "name": role},
        "subjects": subjects,
    })
}

fn service_account(name: &str, namespace: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta(name, namespace)})
}

/// The objects of a hub in `namespace` for `agents` ([`super::agents`]), with
/// `readers` bound to the reader Role beside the readers' ServiceAccount.
pub fn objects(
    namespace: &str,
    agents: &[Agent],
    readers: &[Subject],
) -> Result<HubObjects, HubInitError> {
    let sa = |name: &str| Subject::ServiceAccount(namespace.to_string(), name.to_string());
    let mut out = vec![
        json!({"apiVersion": "v1", "kind": "Namespace",
               "metadata": {"name": namespace, "labels": labels()}}),
        json!({
            "apiVersion": format!("{RBAC}/v1"),
            "kind": "Role",
            "metadata": meta(READER, namespace),
            "rules": [{"apiGroups": [""], "resources": ["configmaps"],
                       "verbs": ["get", "list", "watch"]}],
        }),
        service_account(READER, namespace),
        role_binding(
            READER,
            namespace,
            READER,
            std::iter::once(sa(READER))
                .chain(readers.iter().cloned())
                .map(|s| s.to_value())
                .collect(),
        ),
    ];
    for agent in agents {
        let writer = writer_role(&agent.name);
        let subject = match &agent.identity {
            Some(identity) => identity.to_value(),
            None => {
                let account = agent_service_account(&agent.name);
                out.push(service_account(&account, namespace));
                sa(&account).to_value()
            }
        };
        out.push(json!({
            "apiVersion": format!("{RBAC}/v1"),
            "kind": "Role",
            "metadata": meta(&writer, namespace),
            "rules": [{"apiGroups": [""], "resources": ["configmaps"],
                       "resourceNames": agent.clusters, "verbs": WRITER_VERBS}],
        }));
        out.push(role_binding(
            &writer,
            namespace,
            &writer,
            vec![subject.clone()],
        ));
        out.push(role_binding(
            &reader_binding(&agent.name),
            namespace,
            READER,
            vec![subject],
        ));
        for cluster in &agent.clusters {
            out.push(placeholder(cluster, namespace)?);
        }
    }
    Ok(HubObjects {
        namespace: namespace.to_string(),
        objects: out,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::object::{LABEL, NAMESPACE, is_placeholder};

    fn agent(name: &str, clusters: &[&str]) -> Agent {
        Agent {
            name: name.into(),
            clusters: clusters.iter().map(|c| c.to_string()).collect(),
            from: format!("{name}.yaml"),
            identity: None,
        }
    }

    fn two_agents() -> HubObjects {
        objects(
            NAMESPACE,
            &[
                agent("prod-bj-1", &["prod-bj-1"]),
                agent("prod-sh", &["prod-sh-1", "prod-sh-2"]),
            ],
            &[],
        )
        .unwrap()
    }

    fn find<'a>(o: &'a HubObjects, kind: &str, name: &str) -> &'a Value {
        o.objects
            .iter()
            .find(|v| v["kind"] == kind && v["metadata"]["name"] == name)
            .unwrap_or_else(|| panic!("no {kind} {name}"))
    }

    fn names(o: &HubObjects) -> Vec<String> {
        o.objects
            .iter()
            .map(|v| {
                format!(
                    "{} {}",
                    v["kind"].as_str().unwrap(),
                    v["metadata"]["name"].as_str().unwrap()
                )
            })
            .collect()
    }

    #[test]
    fn the_namespace_and_the_reader_come_first_then_each_agent_with_its_clusters() {
        assert_eq!(
            names(&two_agents()),
            [
                "Namespace rollwave-status",
                "Role rollwave-status-reader",
                "ServiceAccount rollwave-status-reader",
                "RoleBinding rollwave-status-reader",
                "ServiceAccount rollwave-agent-prod-bj-1",
                "Role rollwave-status-writer-prod-bj-1",
                "RoleBinding rollwave-status-writer-prod-bj-1",
                "RoleBinding rollwave-status-reader-prod-bj-1",
                "ConfigMap prod-bj-1",
                "ServiceAccount rollwave-agent-prod-sh",
                "Role rollwave-status-writer-prod-sh",
                "RoleBinding rollwave-status-writer-prod-sh",
                "RoleBinding rollwave-status-reader-prod-sh",
                "ConfigMap prod-sh-1",
                "ConfigMap prod-sh-2",
            ]
        );
        let o = two_agents();
        for v in &o.objects[1..] {
            assert_eq!(v["metadata"]["namespace"], NAMESPACE, "{v}");
        }
    }

    #[test]
    fn each_agent_may_write_its_own_clusters_objects_only() {
        let o = two_agents();
        let sh = find(&o, "Role", "rollwave-status-writer-prod-sh");
        assert_eq!(
            sh["rules"],
            json!([{"apiGroups": [""], "resources": ["configmaps"],
                    "resourceNames": ["prod-sh-1", "prod-sh-2"],
                    "verbs": ["get", "patch", "update"]}])
        );
        let bj = find(&o, "Role", "rollwave-status-writer-prod-bj-1");
        assert_eq!(bj["rules"][0]["resourceNames"], json!(["prod-bj-1"]));
        let binding = find(&o, "RoleBinding", "rollwave-status-writer-prod-sh");
        assert_eq!(
            binding["roleRef"],
            json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                   "name": "rollwave-status-writer-prod-sh"})
        );
        assert_eq!(
            binding["subjects"],
            json!([{"kind": "ServiceAccount", "name": "rollwave-agent-prod-sh",
                    "namespace": NAMESPACE}])
        );
        // No rule anywhere lets anyone create, or write without resourceNames.
        for v in o.objects.iter().filter(|v| v["kind"] == "Role") {
            for rule in v["rules"].as_array().unwrap() {
                let verbs: Vec<&str> = rule["verbs"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_str().unwrap())
                    .collect();
                assert!(
                    !verbs.contains(&"create") && !verbs.contains(&"delete"),
                    "{v}"
                );
                let writes = verbs.iter().any(|v| ["patch", "update"].contains(v));
                assert!(!writes || rule["resourceNames"].is_array(), "{v}");
            }
        }
    }

    #[test]
    fn every_agent_and_the_readers_bind_to_the_reader_role() {
        let o = objects(
            NAMESPACE,
            &[agent("a", &["a"])],
            &[
                parse_subject("group:fleet-viewers").unwrap(),
                parse_subject("serviceaccount:web:rollwave-ui").unwrap(),
            ],
        )
        .unwrap();
        let reader = find(&o, "Role", READER);
        assert_eq!(reader["rules"][0]["verbs"], json!(["get", "list", "watch"]));
        assert!(reader["rules"][0].get("resourceNames").is_none());
        let a = find(&o, "RoleBinding", "rollwave-status-reader-a");
        assert_eq!(a["roleRef"]["name"], READER);
        assert_eq!(a["subjects"][0]["name"], "rollwave-agent-a");
        let readers = find(&o, "RoleBinding", READER);
        assert_eq!(
            readers["subjects"],
            json!([
                {"kind": "ServiceAccount", "name": READER, "namespace": NAMESPACE},
                {"kind": "Group", "apiGroup": "rbac.authorization.k8s.io", "name": "fleet-viewers"},
                {"kind": "ServiceAccount", "name": "rollwave-ui", "namespace": "web"},
            ])
        );
    }

    #[test]
    fn status_objects_are_what_the_agents_write_without_a_status() {
        let o = two_agents();
        let cm = find(&o, "ConfigMap", "prod-sh-2");
        assert_eq!(cm["metadata"]["labels"][LABEL], "true");
        assert!(is_placeholder(cm));
        // The agent's own write of a status has the same name, namespace and labels.
        let status = crate::status::ClusterStatus::parse(
            "prod-sh-2",
            br#"{"cluster":"prod-sh-2","agent":"t","heartbeat":"2026-11-23T10:00:00Z","interval":60,"apps":{}}"#,
        )
        .unwrap();
        let written = crate::status::object::to_object(&status, NAMESPACE).unwrap();
        assert_eq!(written["metadata"], cm["metadata"]);
        assert_eq!(
            crate::status::object::from_object(&written).unwrap(),
            status
        );
    }

    #[test]
    fn another_namespace_is_used_throughout() {
        let o = objects("statuses", &[agent("a", &["a"])], &[]).unwrap();
        assert_eq!(o.objects[0]["metadata"]["name"], "statuses");
        assert!(
            o.objects[1..]
                .iter()
                .all(|v| v["metadata"]["namespace"] == "statuses")
        );
        let b = find(&o, "RoleBinding", "rollwave-status-writer-a");
        assert_eq!(b["subjects"][0]["namespace"], "statuses");
    }

    #[test]
    fn the_yaml_stream_reads_back_as_the_same_objects() {
        let o = two_agents();
        let text = o.to_yaml();
        assert_eq!(text.matches("\n---\n").count(), o.objects.len() - 1);
        let back = crate::yaml::parse_documents("hub.yaml", &text).unwrap();
        assert_eq!(back, o.objects);
    }

    #[test]
    fn readers_are_parsed_as_kubectl_spells_them() {
        assert_eq!(
            parse_subject("user:alice").unwrap(),
            Subject::User("alice".into())
        );
        assert_eq!(
            parse_subject("serviceaccount:ci:rollwave").unwrap(),
            Subject::ServiceAccount("ci".into(), "rollwave".into())
        );
        for bad in [
            "alice",
            "user:",
            "robot:x",
            "serviceaccount:ci",
            "serviceaccount:Ci:x",
        ] {
            let e = parse_subject(bad).unwrap_err().to_string();
            assert!(
                e.starts_with(&format!("reader '{bad}': expected user:NAME")),
                "{e}"
            );
        }
    }

    #[test]
    fn an_agent_with_an_identity_gets_no_service_account_and_its_roles_name_it() {
        let mut inside = agent("prod-sh", &["prod-sh-1"]);
        inside.identity = Some(Subject::ServiceAccount(
            "rollwave-system".into(),
            "rollwave-agent".into(),
        ));
        let o = objects(NAMESPACE, &[inside], &[]).unwrap();
        assert!(
            !names(&o).contains(&"ServiceAccount rollwave-agent-prod-sh".to_string()),
            "{:?}",
            names(&o)
        );
        let it = json!([{"kind": "ServiceAccount", "name": "rollwave-agent",
                         "namespace": "rollwave-system"}]);
        for binding in [
            "rollwave-status-writer-prod-sh",
            "rollwave-status-reader-prod-sh",
        ] {
            assert_eq!(
                find(&o, "RoleBinding", binding)["subjects"],
                it,
                "{binding}"
            );
        }
        assert_eq!(
            Subject::ServiceAccount("a".into(), "b".into()).to_string(),
            "serviceaccount:a:b"
        );
    }
}
