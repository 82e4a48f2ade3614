//! `rollwave hub init`: everything the status hub needs before agents write to it
//! (DESIGN §5.1), made from the fleet instead of by hand: the namespace, a reader
//! Role, and per agent a ServiceAccount allowed to write its own clusters' status
//! objects only, with those objects created empty.
//!
//! Who the agents are is decided in [`agents`] (one per cluster unless agent configs
//! group clusters); the objects are a pure function of that ([`objects`]); comparing
//! them with what a hub holds is pure too (a [`Difference`] per object). Only [`check`] (reads) and
//! [`apply`] (writes what differs, with server-side apply) talk to the hub.

mod agents;
mod compare;
mod objects;
mod sync;

pub use agents::{Agent, IN_CLUSTER_IDENTITY, Identity, agents, parse_identity};
pub use compare::Difference;
pub use objects::{HubObjects, Subject, agent_service_account, objects, parse_subject};
pub use sync::{Applied, Finding, Outcome, State, apply, check};

/// Why the hub's objects could not be made, read or written.
#[derive(Debug, thiserror::Error)]
pub enum HubInitError {
    /// A cluster's name cannot name its status object.
    #[error(transparent)]
    Cluster(#[from] super::object::ObjectError),
    /// An agent config names a cluster the fleet does not define.
    #[error(
        "{file}: field 'clusters[{index}].name': cluster '{cluster}' is not in the fleet (no clusters/{cluster}.yaml); add the cluster to the fleet or take it out of this agent config"
    )]
    UnknownCluster {
        /// The agent config.
        file: String,
        /// The position of the entry in its `clusters` list.
        index: usize,
        /// The name it gives.
        cluster: String,
    },
    /// Two agent configs serve the same cluster: its status object would have two
    /// writers.
    #[error(
        "cluster '{cluster}' is served by two agent configs, {first} and {second}; a cluster's status has one writer: keep it in one of them"
    )]
    ServedTwice {
        /// The cluster.
        cluster: String,
        /// The first config that names it.
        first: String,
        /// The second.
        second: String,
    },
    /// An agent's name (its config's file name, or its cluster's name) cannot name
    /// its ServiceAccount and Roles, or two agents would share one.
    #[error("{source_of}: agent name '{agent}' {problem}")]
    AgentName {
        /// Where the name comes from (the agent config, or the cluster file).
        source_of: String,
        /// The name.
        agent: String,
        /// What is wrong and what to do.
        problem: String,
    },
    /// An agent config says its hub namespace is another one than the one initialized.
    #[error(
        "{file}: field 'hub.namespace': '{config}', but the hub is being initialized in namespace '{namespace}'; pass --hub-namespace {config}, or change the config"
    )]
    Namespace {
        /// The agent config.
        file: String,
        /// What it says.
        config: String,
        /// The namespace initialized.
        namespace: String,
    },
    /// A `--reader` is not `user:NAME`, `group:NAME` or `serviceaccount:NAMESPACE:NAME`.
    #[error(
        "reader '{0}': expected user:NAME, group:NAME or serviceaccount:NAMESPACE:NAME (as kubectl create rolebinding takes them)"
    )]
    Reader(String),
    /// An `--agent-identity` is not `AGENT=SUBJECT`.
    #[error(
        "agent identity '{0}': expected AGENT=user:NAME, AGENT=group:NAME or AGENT=serviceaccount:NAMESPACE:NAME, AGENT being a cluster's name or an agent config's file name"
    )]
    Identity(String),
    /// An `--agent-identity` names no agent of the fleet.
    #[error(
        "--agent-identity: no agent is named '{agent}'; the agents are {known} (a cluster's name, or an agent config's file name without its extension)"
    )]
    UnknownAgent {
        /// The name given.
        agent: String,
        /// The agents there are, comma-separated.
        known: String,
    },
    /// Two agents would authenticate as the same subject.
    #[error(
        "agents '{first}' and '{second}' would both be {subject}, and each could write the other's statuses; give each its own with --agent-identity AGENT=SUBJECT (an agent running in the hub's own cluster is its pod's ServiceAccount)"
    )]
    SharedIdentity {
        /// The subject.
        subject: String,
        /// The first agent.
        first: String,
        /// The second.
        second: String,
    },
    /// The hub answered with an error or could not be reached.
    #[error("status hub, {operation}: {message}")]
    Api {
        /// What was attempted (`list roles in rollwave-status`, `apply Role ...`).
        operation: String,
        /// The API's answer, with what to do for the usual ones.
        message: String,
    },
}
