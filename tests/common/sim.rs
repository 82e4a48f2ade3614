//! The simulated cluster of the tests ([`rollwave::sim::testing`]), and a reconciler
//! connected to it as an agent would connect.

#![allow(dead_code)]

#[allow(unused_imports)] // each test binary uses some of them
pub use rollwave::sim::testing::{TestCluster, eventually, require_kubectl, wait_output};

/// A reconciler for `cluster`, through its kubeconfig as an agent would connect.
pub async fn reconciler(cluster: &TestCluster) -> rollwave::apply::Reconciler {
    let kc = kube::config::Kubeconfig::read_from(&cluster.kubeconfig).unwrap();
    let options = kube::config::KubeConfigOptions::default();
    let config = kube::Config::from_custom_kubeconfig(kc, &options)
        .await
        .unwrap();
    rollwave::apply::Reconciler::new(kube::Client::try_from(config).unwrap(), "rollwave-system")
}
