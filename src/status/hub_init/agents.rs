//! Which agent writes which clusters' statuses. The fleet repository does not say
//! (an agent config lists its clusters, and the configs live with each agent, not
//! in the fleet), so by default every cluster has an agent of its own, as one agent
//! runs in each cluster in the usual deployment (deploy/; Flux and Argo CD's
//! per-cluster agents alike). Agent configs given to `hub init` group their clusters
//! under one agent named after the config's file; the fleet's other clusters keep an
//! agent each.

use std::collections::BTreeMap;
use std::path::Path;

use super::HubInitError;
use super::objects::{agent_service_account, writer_role};
use crate::agent::config::AgentConfig;
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
}

/// The agents of a fleet whose clusters are `clusters` (their names): one per agent
/// config of `configs` (its path and content), one per cluster no config names.
/// Sorted by name. `namespace`: the hub namespace being initialized, which a
/// config's `hub.namespace` must agree with.
pub fn agents(
    clusters: &[String],
    configs: &[(&Path, &AgentConfig)],
    namespace: &str,
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
        add(
            &mut all,
            Agent {
                name,
                clusters: own,
                from: file,
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
            },
        )?;
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
        let a = agents(&fleet(), &[], "rollwave-status").unwrap();
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
        let a = agents(&fleet(), &[(path, &prod)], "rollwave-status").unwrap();
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
        let e = agents(&fleet(), &[(Path::new("a.yaml"), &c)], "rollwave-status")
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
        let e = agents(&fleet(), &[(Path::new("a.yaml"), &a)], "rollwave-status")
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
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("serves no cluster"), "{e}");
    }

    #[test]
    fn a_cluster_name_that_cannot_name_an_object_is_refused() {
        let e = agents(&["Prod_1".to_string()], &[], "rollwave-status")
            .unwrap_err()
            .to_string();
        assert!(e.contains("cluster 'Prod_1'"), "{e}");
    }
}
