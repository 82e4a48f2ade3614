//! Which agent writes which clusters' statuses. The fleet repository does not say
//! (an agent config lists its clusters, and the configs live with each agent, not
//! in the fleet), so by default every cluster has an agent of its own, as one agent
//! runs in each cluster in the usual deployment (deploy/; Flux and Argo CD's
//! per-cluster agents alike). Agent configs given to `hub init` group their clusters
//! under one agent named after the config's file; the fleet's other clusters keep an
//! agent each.
//!
//! An agent authenticates to the hub as the ServiceAccount `hub init` makes for it,
//! with a token in its config's `hub:` kubeconfig; unless it runs in the hub's own
//! cluster (`hub: {inCluster: true}`), where it is its pod's ServiceAccount. That
//! one is not in the fleet either: by default it is the one `deploy/` makes
//! ([`IN_CLUSTER_IDENTITY`]), and `--agent-identity AGENT=SUBJECT` names any other,
//! for any agent.

use std::collections::BTreeMap;
use std::path::Path;

use super::HubInitError;
use super::objects::{Subject, agent_service_account, writer_role};
use crate::agent::config::{AgentConfig, Connection};
use crate::status::object::object_name;

/// One agent: the identity that writes the statuses of `clusters`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Agent {
    /// Its name, in the names of its ServiceAccount and Roles: the cluster's name, or
    /// the agent config's file name without its extension.
    pub name: String,
    /// The clusters it serves, sorted.
    pub clusters: Vec<String>,
    /// Where it was read from: `clusters/<name>.yaml`, or the agent config's path.
    pub from: String,
    /// Who it authenticates to the hub as, when not as the ServiceAccount `hub init`
    /// makes for it ([`agent_service_account`]): its pod's own in the hub's cluster,
    /// or what `--agent-identity` says.
    pub identity: Option<Subject>,
}

/// The namespace and name of the ServiceAccount `deploy/` runs an agent as: who an
/// agent config with `hub: {inCluster: true}` is, unless `--agent-identity` says.
pub const IN_CLUSTER_IDENTITY: (&str, &str) = ("rollwave-system", "rollwave-agent");

/// `--agent-identity AGENT=SUBJECT`: the agent named AGENT authenticates to the hub
/// as SUBJECT; its Roles are bound to that instead of a ServiceAccount of its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The agent's name (a cluster's, or an agent config's file name).
    pub agent: String,
    /// Who it is.
    pub subject: Subject,
}

/// Reads `AGENT=user:NAME`, `AGENT=group:NAME` or
/// `AGENT=serviceaccount:NAMESPACE:NAME`.
pub fn parse_identity(text: &str) -> Result<Identity, HubInitError> {
    let bad = || HubInitError::Identity(text.to_string());
    let (agent, subject) = text.split_once('=').ok_or_else(bad)?;
    if agent.is_empty() {
        return Err(bad());
    }
    let subject = super::objects::parse_subject(subject).map_err(|_| bad())?;
    Ok(Identity {
        agent: agent.to_string(),
        subject,
    })
}

/// The agents of a fleet whose clusters are `clusters` (their names): one per agent
/// config of `configs` (its path and content), one per cluster no config names.
/// Sorted by name. `namespace`: the hub namespace being initialized, which a
/// config's `hub.namespace` must agree with. `identities`: who agents are, where
/// not the ServiceAccount made for them; no two agents may be the same subject, as
/// each could then write the other's statuses.
pub fn agents(
    clusters: &[String],
    configs: &[(&Path, &AgentConfig)],
    namespace: &str,
    identities: &[Identity],
) -> Result<Vec<Agent>, HubInitError> {
    for c in clusters {
        object_name(c)?;
    }
    let mut served: BTreeMap<&str, String> = BTreeMap::new();
    let mut all: BTreeMap<String, Agent> = BTreeMap::new();
    for (path, config) in configs {
        let file = path.display().to_string();
        if let Some(hub) = &config.hub
            && hub.namespace != namespace
        {
            return Err(HubInitError::Namespace {
                file,
                config: hub.namespace.clone(),
                namespace: namespace.to_string(),
            });
        }
        let mut own = Vec::new();
        for (index, c) in config.clusters.iter().enumerate() {
            let Some(known) = clusters.iter().find(|k| **k == c.name) else {
                return Err(HubInitError::UnknownCluster {
                    file,
                    index,
                    cluster: c.name.clone(),
                });
            };
            if let Some(first) = served.insert(known, file.clone()) {
                return Err(HubInitError::ServedTwice {
                    cluster: c.name.clone(),
                    first,
                    second: file,
                });
            }
            own.push(c.name.clone());
        }
        let name = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let in_hub_cluster = config
            .hub
            .as_ref()
            .is_some_and(|h| h.connection == Connection::InCluster);
        let (ns, sa) = IN_CLUSTER_IDENTITY;
        add(
            &mut all,
            Agent {
                name,
                clusters: own,
                from: file,
                identity: in_hub_cluster
                    .then(|| Subject::ServiceAccount(ns.to_string(), sa.to_string())),
            },
        )?;
    }
    for c in clusters.iter().filter(|c| !served.contains_key(c.as_str())) {
        add(
            &mut all,
            Agent {
                name: c.clone(),
                clusters: vec![c.clone()],
                from: format!("clusters/{c}.yaml"),
                identity: None,
            },
        )?;
    }
    for given in identities {
        let Some(agent) = all.get_mut(&given.agent) else {
            let known: Vec<&str> = all.keys().map(String::as_str).collect();
            return Err(HubInitError::UnknownAgent {
                agent: given.agent.clone(),
                known: known.join(", "),
            });
        };
        agent.identity = Some(given.subject.clone());
    }
    let mut seen: Vec<(&Subject, &str)> = Vec::new();
    for agent in all.values() {
        let Some(subject) = &agent.identity else {
            continue;
        };
        if let Some((_, first)) = seen.iter().find(|(s, _)| *s == subject) {
            return Err(HubInitError::SharedIdentity {
                subject: subject.to_string(),
                first: first.to_string(),
                second: agent.name.clone(),
            });
        }
        seen.push((subject, &agent.name));
    }
    Ok(all.into_values().collect())
}

/// Adds `agent` after checking its name names its objects and no other agent's.
fn add(all: &mut BTreeMap<String, Agent>, mut agent: Agent) -> Result<(), HubInitError> {
    let problem = |problem: String| HubInitError::AgentName {
        source_of: agent.from.clone(),
        agent: agent.name.clone(),
        problem,
    };
    let fits = |n: String| crate::names::is_dns_subdomain(&n);
    if !fits(agent_service_account(&agent.name)) || !fits(writer_role(&agent.name)) {
        return Err(problem(format!(
            "cannot name its ServiceAccount '{}' (lowercase letters, digits, '-' and '.', at most 253 characters in all); rename the file",
            agent_service_account(&agent.name)
        )));
    }
    if agent.clusters.is_empty() {
        return Err(problem(
            "serves no cluster (its `clusters` list is empty); leave the config out".into(),
        ));
    }
    if let Some(other) = all.get(&agent.name) {
        return Err(problem(format!(
            "is also the name of the agent of {}; the two would share a ServiceAccount: rename the agent config",
            other.from
        )));
    }
    agent.clusters.sort();
    all.insert(agent.name.clone(), agent);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::config::{ClusterConfig, Connection, HubConfig};

    fn fleet() -> Vec<String> {
        ["prod-1", "prod-2", "prod-3", "test-1"]
            .map(String::from)
            .to_vec()
    }

    fn config(clusters: &[&str], hub_namespace: Option<&str>) -> AgentConfig {
        AgentConfig {
            clusters: clusters
                .iter()
                .map(|c| ClusterConfig {
                    name: c.to_string(),
                    connection: Connection::InCluster,
                    prometheus: None,
                })
                .collect(),
            hub: hub_namespace.map(|n| HubConfig {
                connection: Connection::InCluster,
                namespace: n.into(),
            }),
            ..AgentConfig::default()
        }
    }

    #[test]
    fn without_agent_configs_every_cluster_has_an_agent_of_its_own() {
        let a = agents(&fleet(), &[], "rollwave-status", &[]).unwrap();
        let names: Vec<_> = a
            .iter()
            .map(|a| (a.name.as_str(), a.clusters.clone()))
            .collect();
        assert_eq!(
            names,
            [
                ("prod-1", vec!["prod-1".to_string()]),
                ("prod-2", vec!["prod-2".into()]),
                ("prod-3", vec!["prod-3".into()]),
                ("test-1", vec!["test-1".into()]),
            ]
        );
        assert_eq!(a[0].from, "clusters/prod-1.yaml");
    }

    #[test]
    fn an_agent_config_groups_its_clusters_under_its_file_name_and_the_rest_stay_alone() {
        let prod = config(&["prod-3", "prod-2"], Some("rollwave-status"));
        let path = Path::new("agents/prod-bj.yaml");
        let a = agents(&fleet(), &[(path, &prod)], "rollwave-status", &[]).unwrap();
        let names: Vec<_> = a
            .iter()
            .map(|a| (a.name.as_str(), a.clusters.clone()))
            .collect();
        assert_eq!(
            names,
            [
                ("prod-1", vec!["prod-1".to_string()]),
                ("prod-bj", vec!["prod-2".into(), "prod-3".into()]),
                ("test-1", vec!["test-1".into()]),
            ]
        );
        assert_eq!(a[1].from, "agents/prod-bj.yaml");
    }

    #[test]
    fn an_unknown_cluster_names_the_config_and_the_field() {
        let c = config(&["prod-1", "prod-9"], None);
        let e = agents(
            &fleet(),
            &[(Path::new("a.yaml"), &c)],
            "rollwave-status",
            &[],
        )
        .unwrap_err()
        .to_string();
        assert_eq!(
            e,
            "a.yaml: field 'clusters[1].name': cluster 'prod-9' is not in the fleet (no clusters/prod-9.yaml); add the cluster to the fleet or take it out of this agent config"
        );
    }

    #[test]
    fn a_cluster_in_two_configs_is_refused() {
        let a = config(&["prod-1"], None);
        let b = config(&["prod-2", "prod-1"], None);
        let e = agents(
            &fleet(),
            &[(Path::new("a.yaml"), &a), (Path::new("b.yaml"), &b)],
            "rollwave-status",
            &[],
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.starts_with("cluster 'prod-1' is served by two agent configs, a.yaml and b.yaml"),
            "{e}"
        );
    }

    #[test]
    fn a_config_for_another_hub_namespace_is_refused() {
        let a = config(&["prod-1"], Some("statuses"));
        let e = agents(
            &fleet(),
            &[(Path::new("a.yaml"), &a)],
            "rollwave-status",
            &[],
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("a.yaml: field 'hub.namespace': 'statuses'"),
            "{e}"
        );
        assert!(e.contains("--hub-namespace statuses"), "{e}");
    }

    #[test]
    fn an_agent_name_that_cannot_name_a_service_account_or_is_taken_is_refused() {
        let a = config(&["prod-1"], None);
        let e = agents(
            &fleet(),
            &[(Path::new("Prod_BJ.yaml"), &a)],
            "rollwave-status",
            &[],
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.starts_with("Prod_BJ.yaml: agent name 'Prod_BJ' cannot name"),
            "{e}"
        );
        // A config named after a cluster it does not serve.
        let e = agents(
            &fleet(),
            &[(Path::new("prod-2.yaml"), &a)],
            "rollwave-status",
            &[],
        )
        .unwrap_err()
        .to_string();
        assert_eq!(
            e,
            "clusters/prod-2.yaml: agent name 'prod-2' is also the name of the agent of prod-2.yaml; the two would share a ServiceAccount: rename the agent config"
        );
        let empty = config(&[], None);
        let e = agents(
            &fleet(),
            &[(Path::new("none.yaml"), &empty)],
            "rollwave-status",
            &[],
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("serves no cluster"), "{e}");
    }

    #[test]
    fn a_cluster_name_that_cannot_name_an_object_is_refused() {
        let e = agents(&["Prod_1".to_string()], &[], "rollwave-status", &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("cluster 'Prod_1'"), "{e}");
    }

    fn in_cluster_hub(clusters: &[&str]) -> AgentConfig {
        config(clusters, Some("rollwave-status"))
    }

    fn sa(ns: &str, name: &str) -> Subject {
        Subject::ServiceAccount(ns.into(), name.into())
    }

    #[test]
    fn an_agent_in_the_hubs_own_cluster_is_its_pods_service_account_unless_told() {
        // prod-bj.yaml reaches the hub in-cluster; prod-1 has an agent of its own.
        let mut outside = config(&["prod-1"], None);
        outside.hub = Some(HubConfig {
            connection: Connection::Kubeconfig {
                path: Some("/etc/hub".into()),
                context: None,
            },
            namespace: "rollwave-status".into(),
        });
        let inside = in_cluster_hub(&["prod-2", "prod-3"]);
        let configs = [
            (Path::new("prod-bj.yaml"), &inside),
            (Path::new("outside.yaml"), &outside),
        ];
        let a = agents(&fleet(), &configs, "rollwave-status", &[]).unwrap();
        let identity = |name: &str| a.iter().find(|a| a.name == name).unwrap().identity.clone();
        assert_eq!(
            identity("prod-bj"),
            Some(sa("rollwave-system", "rollwave-agent"))
        );
        assert_eq!(identity("outside"), None);
        assert_eq!(identity("test-1"), None);

        // --agent-identity names another one, for any agent.
        let given = [
            parse_identity("prod-bj=serviceaccount:gitops:rollwave").unwrap(),
            parse_identity("test-1=user:test-agent").unwrap(),
        ];
        let a = agents(&fleet(), &configs, "rollwave-status", &given).unwrap();
        let identity = |name: &str| a.iter().find(|a| a.name == name).unwrap().identity.clone();
        assert_eq!(identity("prod-bj"), Some(sa("gitops", "rollwave")));
        assert_eq!(identity("test-1"), Some(Subject::User("test-agent".into())));
    }

    #[test]
    fn identities_that_name_no_agent_or_are_shared_are_refused() {
        let e = agents(
            &fleet(),
            &[],
            "rollwave-status",
            &[parse_identity("prod-9=user:x").unwrap()],
        )
        .unwrap_err()
        .to_string();
        assert_eq!(
            e,
            "--agent-identity: no agent is named 'prod-9'; the agents are prod-1, prod-2, prod-3, test-1 (a cluster's name, or an agent config's file name without its extension)"
        );
        // Two configs in the hub's cluster, both deploy/'s ServiceAccount.
        let a = in_cluster_hub(&["prod-1"]);
        let b = in_cluster_hub(&["prod-2"]);
        let e = agents(
            &fleet(),
            &[(Path::new("a.yaml"), &a), (Path::new("b.yaml"), &b)],
            "rollwave-status",
            &[],
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.starts_with("agents 'a' and 'b' would both be serviceaccount:rollwave-system:rollwave-agent, and each could write the other's statuses; give each its own with --agent-identity"),
            "{e}"
        );
        // Telling one of them apart resolves it.
        let given = [parse_identity("b=serviceaccount:rollwave-system:agent-b").unwrap()];
        let configs = [(Path::new("a.yaml"), &a), (Path::new("b.yaml"), &b)];
        assert!(agents(&fleet(), &configs, "rollwave-status", &given).is_ok());
        for bad in [
            "prod-1",
            "=user:x",
            "prod-1=robot:x",
            "prod-1=serviceaccount:x",
        ] {
            let e = parse_identity(bad).unwrap_err().to_string();
            assert!(
                e.starts_with(&format!("agent identity '{bad}': expected AGENT=user:NAME")),
                "{e}"
            );
        }
    }
}
