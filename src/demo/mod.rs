//! `rollwave demo`'s story ([`story`]: simulated clusters, their agents, a good change,
//! a bad one and its revert, each expectation checked) and what it runs beside the
//! clusters: a real Prometheus scraping their traffic ([`prometheus`]).

pub mod prometheus;
pub mod story;

/// Why the demo could not set up or run its story (a failed expectation is not an
/// error: the story says which, and exits 1).
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    /// A step of the setup failed; the message says which and what to do.
    #[error("{0}")]
    Setup(String),
    /// A file or process of the demo's own failed.
    #[error("demo: {0}")]
    Io(std::io::Error),
    /// The example fleet does not read.
    #[error(transparent)]
    Tree(#[from] crate::tree::TreeError),
    /// The example fleet does not load.
    #[error(transparent)]
    Fleet(#[from] crate::fleet::FleetError),
    /// A simulated cluster did not start.
    #[error(transparent)]
    Sim(#[from] crate::sim::SimError),
    /// The web view did not start.
    #[error(transparent)]
    Ui(#[from] crate::ui::UiError),
    /// A simulated cluster's kubeconfig does not read.
    #[error("kubeconfig of a simulated cluster: {0}")]
    Kubeconfig(kube::config::KubeconfigError),
    /// The Prometheus beside the clusters cannot be asked.
    #[error(transparent)]
    Prometheus(#[from] crate::prometheus::PrometheusError),
}

impl From<std::io::Error> for DemoError {
    fn from(e: std::io::Error) -> DemoError {
        DemoError::Io(e)
    }
}

impl From<kube::config::KubeconfigError> for DemoError {
    fn from(e: kube::config::KubeconfigError) -> DemoError {
        DemoError::Kubeconfig(e)
    }
}
