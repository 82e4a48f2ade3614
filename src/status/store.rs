//! The one place that decides where statuses are read and recorded: the status refs
//! of the fleet repository, or the hub (fleet.yaml `status.store`, DESIGN §5.1). The
//! agent, `status`, `plan` and the web view all go through a [`Store`], so a fleet
//! that moves between stores is read the same way everywhere.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::hub::{Hub, HubError};
use super::refs::{RefError, read_statuses, read_statuses_shared, write_status};
use super::{ClusterStatus, StatusError, StoreKind};

/// Why statuses could not be read or recorded.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// fleet.yaml names the hub and this process was given no way to reach it.
    #[error(
        "fleet.yaml keeps statuses on a hub (`status: {{store: kubernetes}}`) and no hub is configured here"
    )]
    NoHub,
    /// The hub did not answer or refused.
    #[error(transparent)]
    Hub(#[from] HubError),
    /// The status ref could not be written.
    #[error(transparent)]
    Refs(#[from] RefError),
}

/// Every cluster's status, with the statuses that could not be read and why.
pub type Statuses = (BTreeMap<String, ClusterStatus>, Vec<StatusError>);

/// [`Statuses`] behind an `Arc`: the hub hands the same map to every reader until a
/// status changes, and a pass only reads it.
pub type SharedStatuses = (Arc<BTreeMap<String, ClusterStatus>>, Vec<StatusError>);

/// Where a fleet's statuses live, with the way to reach them.
#[derive(Clone)]
pub enum Store {
    /// Status refs in the fleet repository (`refs/rollwave/status/<cluster>`).
    Refs,
    /// One object per cluster on the hub.
    Hub(Arc<Hub>),
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Store::Refs => "Store::Refs",
            Store::Hub(_) => "Store::Hub",
        })
    }
}

impl Store {
    /// The store `kind` (what fleet.yaml says), reached through `hub` when it is the
    /// hub; [`StoreError::NoHub`] when the hub is named and none is given.
    pub fn open(kind: StoreKind, hub: Option<&Arc<Hub>>) -> Result<Store, StoreError> {
        match (kind, hub) {
            (StoreKind::Git, _) => Ok(Store::Refs),
            (StoreKind::Kubernetes, Some(hub)) => Ok(Store::Hub(hub.clone())),
            (StoreKind::Kubernetes, None) => Err(StoreError::NoHub),
        }
    }

    /// Which kind it is.
    pub fn kind(&self) -> StoreKind {
        match self {
            Store::Refs => StoreKind::Git,
            Store::Hub(_) => StoreKind::Kubernetes,
        }
    }

    /// Every status as of now: the refs in `repo`, or the hub's (from its watch once
    /// synced, else listed now, with this process's own as last recorded).
    pub async fn read(&self, repo: &git2::Repository) -> Result<SharedStatuses, StoreError> {
        match self {
            Store::Refs => Ok(read_statuses_shared(repo)),
            Store::Hub(hub) => Ok(hub.read().await?),
        }
    }

    /// Every status without waiting: the refs in `repo`, or what the hub's watch has
    /// seen so far (for readers that cannot wait, such as the web view's refresh).
    pub fn read_now(&self, repo: &git2::Repository) -> Statuses {
        match self {
            Store::Refs => read_statuses(repo),
            Store::Hub(hub) => hub.snapshot(),
        }
    }

    /// Records `status` of one of this process's clusters: as its status ref in
    /// `repo` (pushed by the caller), or with the hub, where this process's other
    /// clusters read it at once and [`Store::publish`] writes it.
    pub fn record(
        &self,
        repo: &git2::Repository,
        status: &ClusterStatus,
    ) -> Result<(), StoreError> {
        match self {
            Store::Refs => {
                write_status(repo, status)?;
            }
            Store::Hub(hub) => hub.remember(status),
        }
        Ok(())
    }

    /// Writes `status` to the hub; status refs are pushed with the repository
    /// instead, so for them this does nothing.
    pub async fn publish(&self, status: &ClusterStatus) -> Result<(), StoreError> {
        match self {
            Store::Refs => Ok(()),
            Store::Hub(hub) => Ok(hub.write(status).await?),
        }
    }
}
