//! Why an agent could not start or a pass failed. A pass's error is logged for its
//! cluster and the agent carries on with its other clusters and its next pass; an
//! error at start says which cluster or setting to fix. A message includes its cause's
//! text, so nothing here is marked as an error source (a chain would print it twice).

use git2::Oid;

use super::config::ConfigError;
use super::connect::ConnectError;
use super::notify::NotifyError;
use crate::apply::ApplyError;
use crate::fleet::FleetError;
use crate::prometheus::PrometheusError;
use crate::source::SourceError;
use crate::source::repo::RepoError;
use crate::status::store::StoreError;

/// Why an agent could not start, or one cluster's pass failed.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The agent's config is wrong.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The hub cannot be reached with the connection the config gives.
    #[error("hub: {0}")]
    Hub(ConnectError),
    /// A cluster cannot be reached with the connection the config gives.
    #[error("cluster '{cluster}': {error}")]
    Connect {
        /// The cluster.
        cluster: String,
        /// Why.
        error: ConnectError,
    },
    /// A cluster's Prometheus (for the analysis of bakes) is configured wrongly.
    #[error("cluster '{cluster}': {error}")]
    Prometheus {
        /// The cluster.
        cluster: String,
        /// Why.
        error: PrometheusError,
    },
    /// A notification endpoint is unusable.
    #[error(transparent)]
    Notify(#[from] NotifyError),
    /// The keys for signed commits (`repo.verify`) cannot be read.
    #[error("repo.verify: {0}")]
    Verify(SourceError),
    /// The agent's HTTP port cannot be opened.
    #[error("cannot listen on {addr}: {error}")]
    Listen {
        /// The address from the config.
        addr: std::net::SocketAddr,
        /// Why.
        error: std::io::Error,
    },
    /// The repository could not be read this round (the message is the one every
    /// cluster's pass reports).
    #[error("{0}")]
    Input(String),
    /// The repository, or a commit of it, could not be read.
    #[error(transparent)]
    Repo(#[from] RepoError),
    /// Git failed below the repository (history, trees, status refs).
    #[error(transparent)]
    Source(#[from] SourceError),
    /// No commit within reach is signed by a trusted key.
    #[error(
        "no commit of the last {looked_at} on the branch is signed by a trusted key ({refused})"
    )]
    Untrusted {
        /// How many commits were looked at.
        looked_at: usize,
        /// Why the newest was refused.
        refused: String,
    },
    /// The fleet (fleet.yaml or a cluster file) does not load at a commit.
    #[error("fleet at {commit}: {error}")]
    Fleet {
        /// The commit.
        commit: Oid,
        /// Why.
        error: FleetError,
    },
    /// The cluster this agent serves is not in the fleet.
    #[error("cluster '{cluster}' is not in clusters/ at {head}")]
    NotInFleet {
        /// The cluster.
        cluster: String,
        /// The head read.
        head: Oid,
    },
    /// A planned release is not a commit id (a corrupt status).
    #[error("planned release '{release}': {error}")]
    Release {
        /// What the plan said.
        release: String,
        /// Why it is not a commit id.
        error: git2::Error,
    },
    /// fleet.yaml keeps statuses on a hub and this agent has none configured.
    #[error(
        "fleet.yaml says `status: {{store: kubernetes}}` but this agent's config has no `hub:` (how to reach the status hub); nothing is applied and no status is published until it has one, and peers see this cluster as Unknown"
    )]
    NoHub,
    /// Statuses could not be read or recorded.
    #[error(transparent)]
    Store(StoreError),
    /// A cluster refused or failed a request.
    #[error(transparent)]
    Apply(Box<ApplyError>),
}

impl From<ApplyError> for AgentError {
    fn from(e: ApplyError) -> AgentError {
        AgentError::Apply(Box::new(e))
    }
}

impl From<StoreError> for AgentError {
    fn from(e: StoreError) -> AgentError {
        match e {
            StoreError::NoHub => AgentError::NoHub,
            other => AgentError::Store(other),
        }
    }
}
