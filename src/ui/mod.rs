//! `rollwave ui` (DESIGN §7): a read-only web page of the fleet's rollouts and the
//! JSON API behind it, read from the repository and its status refs and updated live.
//! [`model`] builds the views (pure), [`load`] reads what they are built from, and
//! [`server`] serves them.

pub mod load;
pub mod model;
pub mod server;

pub use load::{Loader, Views};

/// Why the web view could not read the fleet or start serving.
#[derive(Debug, thiserror::Error)]
pub enum UiError {
    /// The repository or a commit of it could not be read.
    #[error(transparent)]
    Repo(#[from] crate::source::repo::RepoError),
    /// Git failed below the repository.
    #[error(transparent)]
    Source(#[from] crate::source::SourceError),
    /// An app's releases could not be read.
    #[error(transparent)]
    History(#[from] crate::plan::history::HistoryError),
    /// The fleet moved its statuses to a hub this process cannot reach.
    #[error(
        "the page cannot show statuses: {0}; restart `rollwave ui` with --hub-kubeconfig and --hub-context (given from the start, the page follows such a move without a restart)"
    )]
    Store(crate::status::store::StoreError),
    /// The repository was not read (a read that failed before said why).
    #[error("{0}: not read")]
    NotRead(String),
    /// The listening socket failed.
    #[error("cannot serve the page: {0}")]
    Serve(std::io::Error),
    /// The first read of the fleet did not finish.
    #[error("the first read of the fleet stopped: {0}")]
    FirstRead(tokio::task::JoinError),
}
pub use server::UiServer;

/// Where `rollwave ui` listens unless told otherwise: loopback only, since the page
/// has no authentication of its own (put it behind a proxy that has, to share it).
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
